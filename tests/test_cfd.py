"""CFD margin under the ESMA / CBI retail rules (spec/cfd.md), with path simulation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import marginsim
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.kernels import cfd as K
from marginsim.methods.cfd import applied_rates, broker_rates, cfd_margin, classify_underlying
from marginsim.params.cfd import CfdParams

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "scenarios" / "cfd_seed_example.yaml"
TWO_FILLS = ROOT / "scenarios" / "cfd_two_fills.yaml"
BOOK = ROOT / "scenarios" / "cfd_retail_book.yaml"


def scenario(
    positions: list[dict],
    market: dict,
    *,
    cash: float | dict = 2000.0,
    currency: str = "EUR",
    fx: dict | None = None,
    path: dict | None = None,
    cfd: dict | None = None,
    contracts: dict | None = None,
    grid: dict | None = None,
    as_of: str = "2026-11-20",
) -> dict:
    """A scenario mapping: one CFD contract ``<U>-CFD`` per market entry unless given."""
    cfd = dict(cfd or {})
    cfd.setdefault("accounts", {"main": {"cash": cash}})
    grid = dict(grid or {})
    if path is not None:
        grid["path"] = path
    out = {
        "name": "t",
        "as_of": as_of,
        "currency": currency,
        "fx": fx or {},
        "methods": ["cfd"],
        "market": market,
        "contracts": contracts or {f"{u}-CFD": {"type": "cfd", "underlying": u} for u in market},
        "positions": positions,
        "cfd": cfd,
    }
    if grid:
        out["grid"] = grid
    return out


def run(sc: dict, engine: str = "auto"):
    return marginsim.margin(sc, engine=engine)["cfd"]


# ---------------------------------------------------------------------------------------------
# the seed example (spec section 7), every row
# ---------------------------------------------------------------------------------------------

# state: cash, equity, position, price, value, unrealised, IM, MM, available cash, deficiency
SEED_TABLE = [
    ("before", 2000, 2000, 0, None, 0, 0, 0, 0, 2000, False),
    ("after fill 1", 2000, 2000, 50, 100, 5000, 0, 1000, 500, 1000, False),
    ("after fill 2", 2000, 2000, 100, 100, 10000, 0, 2000, 1000, 0, False),
    ("price 110", 2000, 3000, 100, 110, 11000, 1000, 2000, 1000, 0, False),
    ("price 95", 2000, 1500, 100, 95, 9500, -500, 2000, 1000, 0, False),
    ("price 85", 2000, 500, 100, 85, 8500, -1500, 2000, 1000, 0, True),
]


@pytest.fixture(scope="module")
def two_fills():
    return marginsim.margin(TWO_FILLS)["cfd"].sel(account="main")


@pytest.mark.parametrize("row", range(len(SEED_TABLE)), ids=[r[0] for r in SEED_TABLE])
def test_every_row_of_the_seed_table(two_fills, row):
    _, cash, equity, qty, price, value, unreal, im, mm, avail, defic = SEED_TABLE[row]
    d = two_fills.isel(step=row)
    assert float(d["cash"]) == cash
    assert float(d["equity"]) == equity
    assert float(d["unrealised"]) == unreal
    assert float(d["value"]) == value
    assert float(d["initial"]) == im
    assert float(d["maintenance"]) == mm
    assert float(d["available_cash"]) == avail
    assert bool(d["deficiency"]) is defic
    held = (d["open_step"] <= row) & ((d["close_step"] < 0) | (d["close_step"] >= row))
    assert float(d["quantity"].where(held, 0).sum()) == qty
    if price is not None:
        assert float(d["price"].sel(underlying="XYZ")) == price


def test_equity_is_cash_plus_unrealised(two_fills):
    np.testing.assert_array_equal(two_fills["equity"], two_fills["cash"] + two_fills["unrealised"])


def test_margin_is_fixed_at_opening_and_does_not_move_with_price(two_fills):
    np.testing.assert_array_equal(two_fills["initial"].values[2:], [2000.0] * 4)
    np.testing.assert_array_equal(two_fills["maintenance"].values[2:], [1000.0] * 4)


def test_unrealised_profit_does_not_fund_initial_margin(two_fills):
    # at 110 the equity is 3000 but no new position can be opened: available cash is still 0
    d = two_fills.isel(step=3)
    assert float(d["equity"]) == 3000.0 and float(d["available_cash"]) == 0.0


def test_two_fills_close_out_takes_the_most_recent_fill_first(two_fills):
    # at 85: equity 500 < MM 1000. Closing fill 2 (MM 500) leaves MM 500 <= equity 500: fill 1 stays
    assert two_fills["close_step"].sel(position=1).item() == 5
    assert two_fills["close_step"].sel(position=0).item() == -1
    last = two_fills.isel(step=5)
    assert float(last["realised"]) == -750.0
    assert float(last["cash_after"]) == 1250.0
    assert float(last["equity_after"]) == 500.0


def test_seed_example_along_the_path():
    ds = marginsim.margin(SEED)["cfd"].sel(account="main")
    np.testing.assert_array_equal(ds["equity"], [2000, 3000, 1500, 500])
    np.testing.assert_array_equal(ds["initial"], [2000] * 4)
    np.testing.assert_array_equal(ds["maintenance"], [1000] * 4)
    np.testing.assert_array_equal(ds["available_cash"], [0] * 4)
    np.testing.assert_array_equal(ds["deficiency"], [False, False, False, True])
    np.testing.assert_array_equal(ds["cash_after"], [2000, 2000, 2000, 500])
    assert ds["written_off"].sum() == 0


def test_seed_example_through_the_cli_json():
    out = subprocess.run(
        [sys.executable, "-m", "marginsim.cli", "margin", str(SEED), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["dims"] == {"step": [0, 1, 2, 3]}
    cfd = res["accounts"]["main"]["cfd"]
    for key in (
        "initial",
        "maintenance",
        "cash",
        "equity",
        "unrealised",
        "available_cash",
        "deficiency",
        "close_out",
        "written_off",
    ):
        assert key in cfd
    assert cfd["equity"] == [2000, 3000, 1500, 500]
    assert cfd["initial"] == [2000] * 4 and cfd["maintenance"] == [1000] * 4
    assert cfd["available_cash"] == [0] * 4
    assert cfd["deficiency"] == [False, False, False, True]
    assert cfd["close_out"][:3] == [[], [], []]
    assert [e["position"] for e in cfd["close_out"][3]] == [0]
    assert cfd["close_out"][3][0]["realised"] == -1500.0
    assert cfd["written_off"] == [0, 0, 0, 0]


def test_cli_table_prints_every_step(capsys):
    assert main(["margin", str(TWO_FILLS)]) == 0
    out = capsys.readouterr().out
    assert "CFD  account main  [EUR]  client retail" in out
    assert "closed at step 5" in out


# ---------------------------------------------------------------------------------------------
# rates: leverage classes, broker's own rate, applied rates
# ---------------------------------------------------------------------------------------------

# stock, broker MM, broker IM, applied IM, applied MM (spec section 2)
STOCKS = [
    ("A", 0.10, 0.125, 0.20, 0.10),
    ("B", 0.15, 0.1875, 0.20, 0.15),
    ("C", 0.20, 0.25, 0.25, 0.20),
    ("D", 0.30, 0.375, 0.375, 0.30),
]


@pytest.mark.parametrize("stock,bmm,bim,im,mm", STOCKS, ids=[s[0] for s in STOCKS])
def test_applied_rate_table(stock, bmm, bim, im, mm):
    got_mm, got_bim = broker_rates(
        np.nan, bmm, np.nan, z=2.33, horizon_days=10, minimum=0.0, initial_ratio=1.25
    )
    assert got_bim == pytest.approx(bim, abs=1e-15)
    got_im, got_amm = applied_rates(0.2, got_mm, got_bim, close_out_fraction=0.5)
    assert got_im == pytest.approx(im, abs=1e-15)
    assert got_amm == pytest.approx(mm, abs=1e-15)


def test_applied_rate_table_through_a_scenario():
    market = {s: {"price": 100.0, "cfd_class": "individual_equity"} for s, *_ in STOCKS}
    cfd = {"underlyings": {s: {"broker_maintenance": bmm} for s, bmm, *_ in STOCKS}}
    ds = run(
        scenario([{"contract": f"{s}-CFD", "quantity": 100} for s, *_ in STOCKS], market, cash=1e5, cfd=cfd)
    )
    np.testing.assert_allclose(ds["broker_initial_rate"], [s[2] for s in STOCKS], atol=1e-15)
    np.testing.assert_allclose(ds["initial_rate"], [s[3] for s in STOCKS], atol=1e-15)
    np.testing.assert_allclose(ds["maintenance_rate"], [s[4] for s in STOCKS], atol=1e-15)
    # amounts: 100 shares at 100
    np.testing.assert_allclose(ds["position_initial"], [10000 * s[3] for s in STOCKS], atol=1e-9)
    np.testing.assert_allclose(ds["position_maintenance"], [10000 * s[4] for s in STOCKS], atol=1e-9)


def test_broker_rate_from_historical_vol():
    mm, im = broker_rates(0.35, np.nan, np.nan, z=2.33, horizon_days=10, minimum=0.0, initial_ratio=1.25)
    assert mm == pytest.approx(2.33 * 0.35 * np.sqrt(10 / 365))
    assert im == pytest.approx(1.25 * mm)
    # a minimum and an explicit broker initial rate
    mm, im = broker_rates(0.01, np.nan, 0.3, z=2.33, horizon_days=10, minimum=0.05, initial_ratio=1.25)
    assert mm == 0.05 and im == 0.3


def test_eurusd_100000_at_30_to_1():
    # 100,000 EUR of EUR.USD at 1.08 (USD 108,000) in a EUR account: initial 3,333.33
    ds = run(
        scenario(
            [{"contract": "EUR.USD-CFD", "quantity": 100000}],
            {"EUR.USD": {"price": 1.08, "currency": "USD"}},
            fx={"USD": 1 / 1.08},
            cash=5000,
        )
    )
    assert str(ds["cfd_class"].item()) == "major_fx"
    assert float(ds["initial"].sel(account="main")) == pytest.approx(3333.33, abs=0.005)
    assert float(ds["initial"].sel(account="main")) == pytest.approx(100000 / 30)


def test_uk100_index_cfd_at_7650():
    ds = run(
        scenario(
            [{"contract": "UK 100-CFD", "quantity": 1}],
            {"UK 100": {"price": 7650, "currency": "GBP"}},
            currency="GBP",
            cash=1000,
        )
    )
    assert str(ds["cfd_class"].item()) == "major_index"
    assert float(ds["initial"].sel(account="main")) == pytest.approx(382.50, abs=1e-9)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(191.25, abs=1e-9)


def test_gbp_10000_share_cfd():
    ds = run(
        scenario(
            [{"contract": "VOD-CFD", "quantity": 100}],
            {"VOD": {"price": 100, "currency": "GBP"}},
            currency="GBP",
            cash=5000,
        )
    )
    assert str(ds["cfd_class"].item()) == "individual_equity"
    assert float(ds["initial"].sel(account="main")) == pytest.approx(2000.0)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(1000.0)


def test_gbp_share_cfd_in_a_eur_account_converts_with_fx():
    ds = run(
        scenario(
            [{"contract": "VOD-CFD", "quantity": 100}],
            {"VOD": {"price": 100, "currency": "GBP"}},
            fx={"GBP": 1.17},
            cash=5000,
        )
    )
    assert float(ds["initial"].sel(account="main")) == pytest.approx(2340.0)
    assert ds.attrs["currency"] == "EUR" and ds["initial"].attrs["units"] == "EUR"


def test_missing_fx_rate_is_an_input_error():
    with pytest.raises(InputError, match="no FX rate for GBP"):
        run(scenario([{"contract": "VOD-CFD", "quantity": 1}], {"VOD": {"price": 100, "currency": "GBP"}}))


@pytest.mark.parametrize(
    "name,expected",
    [
        ("EUR.USD", "major_fx"),
        ("GBP/JPY", "major_fx"),
        ("USDCHF", "major_fx"),
        ("EUR.TRY", "nonmajor_fx"),
        ("AUD.USD", "nonmajor_fx"),
        ("XAU.USD", "gold"),
        ("GOLD", "gold"),
        ("XAG.USD", "commodity"),
        ("UK 100", "major_index"),
        ("FTSE 100", "major_index"),
        ("S&P 500", "major_index"),
        ("DE40", "major_index"),
        ("EURO STOXX 50", "major_index"),
        ("NIKKEI 225", "major_index"),
        ("IBM", "individual_equity"),
    ],
)
def test_classification_table(name, expected):
    assert classify_underlying(name, CfdParams()) == expected


def test_classification_is_data_the_user_extends():
    params = CfdParams.model_validate(
        {
            "leverage": {"frontier_index": 4},
            "major_currencies": ["AUD"],
            "major_indices": {"Hang Seng": ["HSI", "HK50"]},
            "underlyings": {"KSE100": {"cfd_class": "frontier_index"}},
        }
    )
    assert params.leverage["major_fx"] == 30 and params.leverage["frontier_index"] == 4
    assert classify_underlying("AUD.USD", params) == "major_fx"
    assert classify_underlying("HK50", params) == "major_index"
    assert classify_underlying("FTSE 100", params) == "major_index"  # defaults kept
    assert classify_underlying("KSE100", params) == "frontier_index"
    assert classify_underlying("SPY", params, product_class="broad_index") == "nonmajor_index"
    assert classify_underlying("BTC", params, cfd_class="crypto") == "crypto"


def test_unknown_class_is_rejected():
    with pytest.raises(InputError, match="not a class of `leverage`"):
        run(
            scenario(
                [{"contract": "X-CFD", "quantity": 1}],
                {"X": {"price": 1}},
                cfd={"underlyings": {"X": {"cfd_class": "nope"}}},
            )
        )


def test_crypto_and_commodity_caps():
    ds = run(
        scenario(
            [{"contract": "BTC-CFD", "quantity": 1}, {"contract": "BRENT-CFD", "quantity": 100}],
            {
                "BTC": {"price": 60000, "cfd_class": "crypto"},
                "BRENT": {"price": 80, "cfd_class": "commodity"},
            },
            cash=1e5,
        )
    )
    np.testing.assert_allclose(ds["initial_rate"], [0.5, 0.1])
    np.testing.assert_allclose(ds["position_initial"], [30000, 800])


# ---------------------------------------------------------------------------------------------
# professional clients, funding
# ---------------------------------------------------------------------------------------------


def test_professional_client_has_no_caps_and_no_protection():
    sc = scenario(
        [{"contract": "XYZ-CFD", "quantity": 100, "open_price": 100}],
        {"XYZ": {"price": 100}},
        cash=1000,
        path={"XYZ": [100, 85]},
        cfd={"client": "professional", "underlyings": {"XYZ": {"broker_maintenance": 0.04}}},
    )
    ds = run(sc).sel(account="main")
    assert float(ds["initial_rate"].item()) == pytest.approx(0.05)  # broker 1.25 x 4 %, not the 20 % cap
    assert float(ds["maintenance_rate"].item()) == pytest.approx(0.04)
    assert float(ds["initial"].isel(step=0)) == pytest.approx(500.0)
    # a 15 % fall: equity -500 < 0, close-out, and the client owes the debit (nothing written off)
    last = ds.isel(step=1)
    assert bool(last["deficiency"]) and float(last["written_off"]) == 0.0
    assert float(last["cash_after"]) == pytest.approx(-500.0)
    assert str(ds["client"].values) == "professional"


def test_professional_without_a_broker_rate_is_an_input_error():
    with pytest.raises(InputError, match="broker's rate"):
        run(
            scenario(
                [{"contract": "XYZ-CFD", "quantity": 1}],
                {"XYZ": {"price": 100}},
                cfd={"client": "professional"},
            )
        )


def test_retail_caps_bind_over_a_lower_broker_rate_and_per_account_client():
    sc = scenario(
        [
            {"contract": "XYZ-CFD", "quantity": 100, "account": "r"},
            {"contract": "XYZ-CFD", "quantity": 100, "account": "p"},
        ],
        {"XYZ": {"price": 100}},
        cfd={
            "accounts": {"r": {"cash": 5000}, "p": {"cash": 5000, "client": "professional"}},
            "underlyings": {"XYZ": {"historical_vol": 0.2}},
        },
    )
    ds = run(sc)
    bmm = 2.33 * 0.2 * np.sqrt(10 / 365)
    np.testing.assert_allclose(ds["initial_rate"], [0.2, 1.25 * bmm])
    np.testing.assert_allclose(ds["maintenance_rate"], [max(bmm, 0.1), bmm])
    np.testing.assert_array_equal(ds["negative_balance_protection"], [True, False])


def test_cash_used_elsewhere_is_not_available():
    sc = scenario(
        [{"contract": "XYZ-CFD", "quantity": 10, "open_price": 100}],
        {"XYZ": {"price": 100}},
        cfd={"accounts": {"main": {"cash": {"EUR": 5000}, "other_initial_margin": {"EUR": 4500}}}},
    )
    d = run(sc).sel(account="main")
    assert float(d["cfd_cash_start"]) == 500.0
    assert float(d["available_cash"]) == 300.0  # 500 - 20 % of 1,000


def test_a_margin_loan_leaves_no_cash_for_cfds():
    sc = scenario(
        [{"contract": "XYZ-CFD", "quantity": 10, "open_price": 100, "opened": "2026-11-21T10:00:00"}],
        {"XYZ": {"price": 100}},
        cash=-2000,
        path={"XYZ": [100, 100]},
        cfd={"step_days": 1},
    )
    d = run(sc).sel(account="main")
    assert float(d["cfd_cash_start"]) == 0.0
    assert bool(d["rejected"].item())
    assert int(d["open_positions"].isel(step=1)) == 0


def test_new_order_needs_available_cash_and_unrealised_profit_does_not_count():
    # 100 at 100 held (IM 2,000 = cash); the price rises to 110 (+1,000 unrealised); a new order
    # of 10 (IM 220) is rejected, as the available cash is 0 whatever the equity
    sc = scenario(
        [
            {"contract": "XYZ-CFD", "quantity": 100, "open_price": 100},
            {"contract": "XYZ-CFD", "quantity": 10, "opened": "2026-11-21T12:00:00"},
        ],
        {"XYZ": {"price": 100}},
        path={"XYZ": [100, 110]},
        cfd={"step_days": 1},
    )
    d = run(sc).sel(account="main")
    assert float(d["equity"].isel(step=1)) > 2900
    assert bool(d["rejected"].sel(position=1))
    assert float(d["initial"].isel(step=1)) == 2000.0


def test_new_order_at_the_market_fills_at_the_step_price_and_fixes_its_margin():
    sc = scenario(
        [{"contract": "XYZ-CFD", "quantity": 10, "opened": "2026-11-21T12:00:00"}],
        {"XYZ": {"price": 100}},
        path={"XYZ": [100, 120, 90]},
        cfd={"step_days": 1},
    )
    d = run(sc).sel(account="main")
    assert float(d["open_price"].item()) == 120.0
    np.testing.assert_array_equal(d["initial"], [0.0, 240.0, 240.0])
    np.testing.assert_array_equal(d["unrealised"], [0.0, 0.0, -300.0])


def test_realised_profit_is_cash_at_once():
    # the old long loses, the recent short gains: the close-out takes the short first and its
    # profit is cash at once (cash_after), which is enough to keep the long open
    sc = scenario(
        [
            {"contract": "A-CFD", "quantity": 100, "open_price": 100, "opened": "2026-11-01T10:00:00"},
            {"contract": "B-CFD", "quantity": -100, "open_price": 100, "opened": "2026-11-10T10:00:00"},
        ],
        {"A": {"price": 100}, "B": {"price": 100}},
        cash=4000,
        path={"A": [100, 75], "B": [100, 96]},
    )
    d = run(sc).sel(account="main").isel(step=1)
    # equity 4000 - 2500 + 400 = 1900 < MM 2000: close B (most recent), realise +400
    assert bool(d["deficiency"])
    assert float(d["realised"]) == 400.0
    assert float(d["cash_after"]) == 4400.0
    assert int(d["closed_positions"]) == 1
    assert float(d["equity_after"]) == 1900.0  # >= the remaining maintenance (1,000)


def test_missing_account_funding_is_an_input_error(tmp_path, capsys):
    sc = scenario([{"contract": "X-CFD", "quantity": 1, "account": "acct-9"}], {"X": {"price": 1}})
    with pytest.raises(InputError, match=r"cfd.accounts.acct-9.cash"):
        run(sc)
    f = tmp_path / "bad.yaml"
    import yaml

    f.write_text(yaml.safe_dump(sc))
    assert main(["margin", str(f)]) == 2
    assert "bad.yaml: cfd.accounts" in capsys.readouterr().err


def test_unknown_cfd_key_is_an_input_error():
    sc = scenario([], {"X": {"price": 1}}, cfd={"leverage_caps": {}})
    with pytest.raises(InputError, match="cfd.leverage_caps: unknown key"):
        marginsim.load(sc)


# ---------------------------------------------------------------------------------------------
# close-out order, negative balance protection, financing
# ---------------------------------------------------------------------------------------------


def test_close_out_order_follows_opened_times_not_the_file_order():
    # rows in file order: B (opened 3rd), A (1st), C (2nd). Most recent first: B, C, A.
    pos = [
        {"contract": "X-CFD", "quantity": 10, "open_price": 100, "opened": "2026-11-19T10:00:00"},
        {"contract": "X-CFD", "quantity": 10, "open_price": 100, "opened": "2026-11-17T10:00:00"},
        {"contract": "X-CFD", "quantity": 10, "open_price": 100, "opened": "2026-11-18T10:00:00"},
    ]
    # 30 at 100: IM 600, MM 300 (100 each). Cash 600; at 85 equity 150: close B (MM left 200 > 150),
    # then C (MM left 100 <= 150): A stays open
    d = run(scenario(pos, {"X": {"price": 100}}, cash=600, path={"X": [100, 85]})).sel(account="main")
    np.testing.assert_array_equal(d["close_step"], [1, -1, 1])
    assert int(d["open_positions"].isel(step=1)) == 3 and int(d["closed_positions"].isel(step=1)) == 2
    res = marginsim.margin(scenario(pos, {"X": {"price": 100}}, cash=600, path={"X": [100, 85]})).to_dict()
    closed = res["accounts"]["main"]["cfd"]["close_out"][1]
    assert [e["position"] for e in closed] == [0, 2]


def test_write_off_under_a_gap_move():
    # EUR 2,000 and 100 at 100: the price gaps to 75. Equity -500: everything is closed and the
    # broker writes off 500; the client's CFD equity is zero, never negative
    d = run(
        scenario(
            [{"contract": "XYZ-CFD", "quantity": 100, "open_price": 100}],
            {"XYZ": {"price": 100}},
            path={"XYZ": [100, 75, 80]},
        )
    ).sel(account="main")
    gap = d.isel(step=1)
    assert float(gap["equity"]) == -500.0 and bool(gap["deficiency"])
    assert float(gap["realised"]) == -2500.0
    assert float(gap["written_off"]) == 500.0
    assert float(gap["cash_after"]) == 0.0 and float(gap["equity_after"]) == 0.0
    after = d.isel(step=2)
    assert float(after["equity"]) == 0.0 and float(after["written_off"]) == 0.0
    assert int(after["open_positions"]) == 0


def test_short_position_gap_up_is_written_off():
    d = run(
        scenario(
            [{"contract": "XYZ-CFD", "quantity": -100, "open_price": 100}],
            {"XYZ": {"price": 100}},
            path={"XYZ": [100, 130]},
        )
    ).sel(account="main")
    assert float(d["written_off"].isel(step=1)) == 1000.0


def test_overnight_financing_retail_pays_the_extra_spread():
    pos = [
        {"contract": "X-CFD", "quantity": 100, "open_price": 100, "account": "r"},
        {"contract": "X-CFD", "quantity": -100, "open_price": 100, "account": "r"},
        {"contract": "X-CFD", "quantity": 100, "open_price": 100, "account": "p"},
    ]
    sc = scenario(
        pos,
        {"X": {"price": 100, "rate": 0.03}},
        path={"X": [100, 100, 100]},
        cfd={
            "accounts": {"r": {"cash": 1e5}, "p": {"cash": 1e5, "client": "professional"}},
            "underlyings": {"X": {"broker_maintenance": 0.1}},
            "step_days": 1,
            "financing": {"spread": 0.015, "retail_extra_spread": 0.01},
        },
    )
    ds = run(sc)
    np.testing.assert_allclose(ds["financing_rate"], [0.055, -0.005, 0.045])
    # one night per step on 10,000 of notional each
    np.testing.assert_allclose(ds["financing"].sel(account="r"), [0, 10000 * 0.05 / 365, 10000 * 0.05 / 365])
    np.testing.assert_allclose(
        ds["financing"].sel(account="p"), [0, 10000 * 0.045 / 365, 10000 * 0.045 / 365]
    )
    np.testing.assert_allclose(ds["cash"].sel(account="p").isel(step=2), 1e5 - 2 * 10000 * 0.045 / 365)


def test_financing_counts_nights_between_step_times():
    sc = scenario(
        [{"contract": "X-CFD", "quantity": 100, "open_price": 100}],
        {"X": {"price": 100}},
        as_of="2026-11-20T12:00:00",
        path={"X": [100, 100, 100]},
        cfd={
            "step_times": ["2026-11-20T12:00:00", "2026-11-20T18:00:00", "2026-11-23T09:00:00"],
            "financing": {"benchmark": {"EUR": 0.02}},
        },
    )
    d = run(sc).sel(account="main")
    np.testing.assert_allclose(d["financing"], [0, 0, 3 * 10000 * 0.045 / 365])


def test_step_times_must_match_the_path():
    sc = scenario(
        [{"contract": "X-CFD", "quantity": 1}],
        {"X": {"price": 100}},
        path={"X": [100, 100]},
        cfd={"step_times": ["2026-11-20T12:00:00"]},
    )
    with pytest.raises(InputError, match="step_times has 1 times; the path has 2 steps"):
        run(sc)


# ---------------------------------------------------------------------------------------------
# concentration
# ---------------------------------------------------------------------------------------------


def _conc_book(mode: str = "auto") -> dict:
    market = {u: {"price": 100} for u in ("A", "B", "C", "D")}
    contracts = {f"{u}-CFD": {"type": "cfd", "underlying": u} for u in market}
    contracts.update({u: {"type": "stock", "underlying": u} for u in market})
    pos = [
        {"contract": "A-CFD", "quantity": 100, "open_price": 100},  # 10,000
        {"contract": "A", "quantity": 100},  # + 10,000 shares: A = 20,000
        {"contract": "B", "quantity": -150},  # 15,000 short
        {"contract": "C-CFD", "quantity": 50, "open_price": 100},  # 5,000
        {"contract": "D", "quantity": 20},  # 2,000
    ]
    return scenario(pos, market, contracts=contracts, cash=1e5, cfd={"concentration": {"mode": mode}})


def test_concentration_when_cfds_and_stocks_are_margined_together():
    d = run(_conc_book()).sel(account="main")
    assert bool(d["concentration_applies"])
    # two largest: A 20,000 and B 15,000 at 30 %; C 5,000 and D 2,000 at 5 %
    assert float(d["concentration_loss"]) == pytest.approx(0.3 * 35000 + 0.05 * 7000)
    # standard: CFD maintenance 10 % x 15,000 + stock 25 % x 27,000
    assert float(d["standard_requirement"]) == pytest.approx(1500 + 0.25 * 27000)
    assert float(d["combined_maintenance"]) == pytest.approx(10850.0)
    assert bool(d["concentration_binding"])


def test_concentration_off_without_stocks_or_when_disabled():
    assert not bool(run(_conc_book("never"))["concentration_applies"].item())
    seed = marginsim.margin(SEED)["cfd"]
    assert not bool(seed["concentration_applies"].item())
    assert "concentration" not in marginsim.margin(SEED).to_dict()["accounts"]["main"]["cfd"]


# ---------------------------------------------------------------------------------------------
# grids: Monte Carlo paths, other what-if dims
# ---------------------------------------------------------------------------------------------


def _mc(paths=200, steps=10, seed=7, **kw) -> dict:
    return scenario(
        [{"contract": "XYZ-CFD", "quantity": 100, "open_price": 100}],
        {"XYZ": {"price": 100, "vol": 0.6}},
        grid={"monte_carlo": {"paths": paths, "steps": steps, "seed": seed, **kw}},
    )


def test_monte_carlo_paths_add_step_and_path_dims_and_are_reproducible():
    r1 = marginsim.margin(_mc())
    r2 = marginsim.margin(_mc())
    ds = r1["cfd"]
    assert ds["equity"].dims == ("account", "path", "step")
    assert r1.dims()["step"] == list(range(11)) and r1.dims()["path"] == list(range(200))
    np.testing.assert_array_equal(ds["equity"], r2["cfd"]["equity"])
    np.testing.assert_array_equal(ds["price"].isel(step=0), 100.0)
    other = marginsim.margin(_mc(seed=8))["cfd"]
    assert not np.array_equal(ds["equity"], other["equity"])
    # a 60 % vol over 10 days closes some paths out
    assert 0 < float(ds["close_out_probability"].item()) < 1
    js = r1.to_dict()
    cfd = js["accounts"]["main"]["cfd"]
    assert len(cfd["equity"]) == 11 and len(cfd["equity"][0]) == 200  # order of dims: step, path
    assert set(cfd["paths"]) == {
        "close_out_probability",
        "written_off_mean",
        "written_off_q99",
        "written_off_max",
    }


def test_monte_carlo_log_returns_have_the_given_vol():
    r = marginsim.margin(_mc(paths=20000, steps=1, seed=3))
    lr = np.log(r["cfd"]["price"].sel(underlying="XYZ").isel(step=1).values / 100.0)
    assert lr.std() * np.sqrt(365) == pytest.approx(0.6, rel=0.02)


def test_monte_carlo_daily_steps_charge_financing():
    ds = marginsim.margin(_mc(paths=5, steps=3))["cfd"]
    assert float(ds["financing"].sel(account="main").isel(step=1, path=0)) > 0


def test_monte_carlo_bad_inputs():
    sc = _mc()
    sc["grid"]["path"] = {"XYZ": [100, 90]}
    with pytest.raises(InputError, match="not both"):
        marginsim.load(sc)
    sc = _mc(correlation=-0.9)
    sc["market"].update({"B": {"price": 1, "vol": 0.1}, "C": {"price": 1, "vol": 0.1}})
    with pytest.raises(InputError, match="correlation"):
        marginsim.load(sc)
    with pytest.raises(InputError, match="unknown underlying 'NOPE'"):
        marginsim.load(_mc(vol={"NOPE": 0.2}))


def test_shift_grid_without_steps():
    sc = scenario(
        [{"contract": "XYZ-CFD", "quantity": 100, "open_price": 100}],
        {"XYZ": {"price": 100}},
        grid={"shift": [-0.3, -0.1, 0.0, 0.1]},
    )
    r = marginsim.margin(sc)
    d = r["cfd"].sel(account="main")
    assert d["equity"].dims == ("shift",)
    np.testing.assert_allclose(d["equity"], [-1000, 1000, 2000, 3000])
    np.testing.assert_allclose(d["written_off"], [1000, 0, 0, 0])
    cfd = r.to_dict()["accounts"]["main"]["cfd"]
    assert [len(x) for x in cfd["close_out"]] == [1, 0, 0, 0]


def test_retail_book_scenario_runs():
    r = marginsim.margin(BOOK)
    ds = r["cfd"]
    assert set(ds["account"].values) == {"main", "pro"}
    assert ds.sizes["path"] == 2000 and ds.sizes["step"] == 21
    main_ = ds.sel(account="main")
    assert bool(main_["concentration_applies"]) and not bool(ds.sel(account="pro")["concentration_applies"])
    classes = set(main_["cfd_class"].values[main_["position_account"].values == "main"])
    assert classes == {"major_fx", "major_index", "gold", "commodity", "individual_equity", "crypto"}
    # the day-5 order fills on some paths only
    assert 0 < float(ds["rejected"].sel(position=8).mean()) < 1


# ---------------------------------------------------------------------------------------------
# engines and properties
# ---------------------------------------------------------------------------------------------


@st.composite
def books(draw):
    n_a = draw(st.integers(1, 3))
    n_k = draw(st.integers(0, 4))
    n_u = draw(st.integers(1, 3))
    n_b = draw(st.integers(1, 4))
    n_s = draw(st.integers(1, 6))
    # integer-ish prices make exact ties (equity == maintenance) likely: both engines must agree
    prices = np.array(
        draw(st.lists(st.integers(50, 150), min_size=n_b * n_s * n_u, max_size=n_b * n_s * n_u)), float
    ).reshape(n_b, n_s, n_u)
    shape = (n_a, n_k)
    size = n_a * n_k

    def arr(strategy, dtype=float):
        return np.array(draw(st.lists(strategy, min_size=size, max_size=size)), dtype).reshape(shape)

    und = arr(st.integers(-1, n_u - 1), np.int64)
    qty = arr(st.sampled_from([-20.0, -5.0, 1.0, 10.0, 30.0]))
    open_px = arr(st.one_of(st.just(np.nan), st.integers(50, 150).map(float)))
    mf = arr(st.sampled_from([1.0, 0.5, 1.17]))
    im = arr(st.sampled_from([0.05, 0.1, 0.2, 0.5]))
    mm = im * arr(st.sampled_from([0.5, 0.8, 1.0]))
    fin = arr(st.sampled_from([0.0, 0.025, -0.01]))
    # new orders (checked) sit in the most recent slots, the existing book (opening at step 0) after them
    n_new = np.array(draw(st.lists(st.integers(0, n_k), min_size=n_a, max_size=n_a)), np.int64)
    checked = np.arange(n_k)[None, :] < n_new[:, None]
    open_step = np.where(checked, arr(st.integers(0, n_s), np.int64), 0)
    cash0 = np.array(draw(st.lists(st.sampled_from([0.0, 100.0, 500.0, 2000.0]), min_size=n_a, max_size=n_a)))
    nbp = np.array(draw(st.lists(st.booleans(), min_size=n_a, max_size=n_a)))
    yf = np.array(draw(st.lists(st.sampled_from([0.0, 1 / 365, 3 / 365]), min_size=n_s, max_size=n_s)))
    return prices, und, qty, open_px, mf, im, mm, fin, open_step, checked, cash0, nbp, yf


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books())
def test_numba_numpy_and_the_reference_loop_agree_exactly(args):
    ref = K.simulate(*args, engine="python")
    for engine in ("numpy", "numba"):
        got = K.simulate(*args, engine=engine)
        for a, b in zip(ref, got):
            np.testing.assert_array_equal(a, b, err_msg=engine)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books())
def test_protection_and_close_out_invariants(args):
    prices, und, qty, open_px, mf, im, mm, fin, open_step, checked, cash0, nbp, yf = args
    acct, slot, close_step, rejected = K.simulate(*args, engine="numpy")
    v = {name: acct[..., i] for i, name in enumerate(K.ACCOUNT_VARS)}
    # the written-off loss is never negative, and only retail (protected) accounts have one
    assert (v["written_off"] >= 0).all()
    assert (v["written_off"][..., ~nbp] == 0).all()
    # with protection, equity is never counted below zero after the step
    assert (v["equity_after"][..., nbp] >= -1e-9).all()
    # after a close-out the equity covers the maintenance left (or nothing is left open)
    left = v["open_positions"] - (
        v["closed_positions"]
        - np.concatenate([np.zeros_like(v["closed_positions"][:, :1]), v["closed_positions"][:, :-1]], axis=1)
    )
    defic = v["deficiency"] > 0
    assert ((left[defic] == 0) | (v["equity_after"][defic] >= -1e-9)).all()
    # a deficiency is exactly equity below maintenance with positions open
    np.testing.assert_array_equal(defic, (v["open_positions"] > 0) & (v["equity"] < v["maintenance"]))
    # available cash is never negative and never above cash
    assert (v["available_cash"] >= 0).all()
    assert (v["available_cash"] <= np.maximum(v["cash"], 0) + 1e-9).all()
    # a slot is closed at most once, and a rejected order never opens
    assert not (rejected & (close_step >= 0)).any()
    assert np.isnan(slot[..., 0][rejected]).all()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(20, 200), min_size=2, max_size=8),
    st.floats(0, 5000),
    st.sampled_from([100.0, -100.0, 37.0]),
)
def test_initial_margin_is_fixed_while_nothing_opens_or_closes(path, cash, qty):
    sc = scenario(
        [{"contract": "X-CFD", "quantity": qty, "open_price": 100}],
        {"X": {"price": 100}},
        cash=cash,
        path={"X": [100.0, *path]},
    )
    d = run(sc, engine="numpy").sel(account="main")
    open_ = d["open_positions"].values > 0
    np.testing.assert_array_equal(d["initial"].values[open_], abs(qty) * 100 * 0.2)
    assert (d["written_off"] >= 0).all()
    assert (d["equity_after"] >= 0).all()
    # equity = cash + unrealised on arrival; written off = -equity after the close-out when negative
    np.testing.assert_allclose(d["equity"], d["cash"] + d["unrealised"])


def test_kernel_rejects_existing_positions_newer_than_new_orders():
    with pytest.raises(ValueError, match="older than the checked slots"):
        K.simulate(
            np.full((1, 1, 1), 100.0),
            np.zeros((1, 2), np.int64),
            1.0,
            np.nan,
            1.0,
            0.2,
            0.1,
            0.0,
            np.zeros((1, 2), np.int64),
            np.array([[False, True]]),
            [100.0],
            [True],
            [0.0],
        )


def test_engines_agree_on_the_retail_book():
    inputs = marginsim.load(BOOK)
    a = cfd_margin(inputs, engine="numba")
    b = cfd_margin(inputs, engine="numpy")
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_accounts_with_cash_only_and_stocks_only():
    sc = scenario(
        [{"contract": "S", "quantity": 5}],
        {"X": {"price": 10}},
        contracts={"S": {"type": "stock", "underlying": "X"}},
        cfd={
            "accounts": {"main": {"cash": 1000}, "other": {"cash": 5}},
            "concentration": {"mode": "always"},
        },
        path={"X": [10, 20]},
    )
    r = marginsim.margin(sc)
    ds = r["cfd"]
    np.testing.assert_array_equal(ds["available_cash"].sel(account="other"), [5.0, 5.0])
    np.testing.assert_allclose(ds["concentration_loss"].sel(account="main"), [15.0, 30.0])
    out = r.to_dict()["accounts"]
    assert out["other"]["cfd"]["positions"] == {} and out["main"]["cfd"]["close_out"] == [[], []]
