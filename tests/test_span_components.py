"""Hand-computed cases for each SPAN component (spec/span.md sections 4-7)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import marginsim

AS_OF = "2026-11-20"


def future(und, expiry, price=None, mult=1.0, group=None):
    c = {"type": "future", "underlying": und, "expiry": expiry, "multiplier": mult}
    if price is not None:
        c["price"] = price
    if group is not None:
        c["group"] = group
    return c


def scenario(market, contracts, positions, span, **kw):
    return {
        "name": "t",
        "as_of": AS_OF,
        "currency": "USD",
        "market": market,
        "contracts": contracts,
        "positions": positions,
        "span": span,
        **kw,
    }


def run(sc, **kw):
    return marginsim.margin(sc, **kw)["span"]


CAL = {
    "market": {"ABC": {"price": 1000.0}},
    "contracts": {
        "DEC": future("ABC", "2026-12-18", 1000.0),
        "MAR": future("ABC", "2027-03-19", 1010.0),
        "JUN": future("ABC", "2027-06-18", 1020.0),
    },
}


def cal(positions, **cc):
    params = {"price_scan_amount": 1000.0, **cc}
    return scenario(CAL["market"], CAL["contracts"], positions, {"combined_commodities": {"ABC": params}})


def test_flat_intra_spread_charge():
    # long 2 Dec, short 1 Mar: one spread at 90; net long 1 scans 1,000 (scenario 13, first of the tie)
    ds = run(
        cal(
            [{"contract": "DEC", "quantity": 2}, {"contract": "MAR", "quantity": -1}],
            intra_spreads=[
                {"priority": 1, "rate": 90, "legs": [{"tier": 0, "side": "A"}, {"tier": 0, "side": "B"}]}
            ],
        )
    )
    g = ds.sel(account="main", group="ABC")
    assert float(g["scan_risk"]) == 1000.0
    assert int(g["active_scenario"]) == 13
    assert float(g["intra_spread_charge"]) == 90.0
    assert float(g["risk"]) == 1090.0
    assert float(ds["maintenance"].sel(account="main")) == 1090.0


def test_tiered_intra_spreads_in_priority_order_with_ratios():
    tiers = [{"tier": 1, "months": [202612, 202612]}, {"tier": 2, "months": [202703, 202706]}]
    spreads = [
        # priority 1: 2 deltas of tier 1 against 1 of tier 2, 50 per spread
        {"priority": 1, "rate": 50, "legs": [{"tier": 1, "side": "A", "ratio": 2}, {"tier": 2, "side": "B"}]},
        # priority 2: within tier 2 (flat), 30 per spread
        {"priority": 2, "rate": 30, "legs": [{"tier": 2, "side": "A"}, {"tier": 2, "side": "B"}]},
    ]
    # Dec +3, Mar -4, Jun +1: p1: min(3/2, 3/1)=1.5 spreads -> 75, consumes Dec 3 and 1.5 of tier-2 shorts
    # (all from Mar, the only short month). Left: Mar -2.5, Jun +1 -> p2: 1 spread -> 30.
    ds = run(
        cal(
            [
                {"contract": "DEC", "quantity": 3},
                {"contract": "MAR", "quantity": -4},
                {"contract": "JUN", "quantity": 1},
            ],
            tiers=tiers,
            intra_spreads=spreads,
        )
    )
    assert float(ds["intra_spread_charge"].sel(account="main", group="ABC")) == pytest.approx(75.0 + 30.0)


def test_spot_month_charge_on_consumed_and_remaining_delta():
    # flat spread consumes 2 of Dec's 3 deltas; Dec is the spot month
    ds = run(
        cal(
            [{"contract": "DEC", "quantity": 3}, {"contract": "MAR", "quantity": -2}],
            intra_spreads=[
                {"priority": 1, "rate": 90, "legs": [{"tier": 0, "side": "A"}, {"tier": 0, "side": "B"}]}
            ],
            spot={"months": [202612], "rate_spread": 10, "rate_outright": 20},
        )
    )
    g = ds.sel(account="main", group="ABC")
    assert float(g["intra_spread_charge"]) == 180.0
    assert float(g["spot_charge"]) == 10 * 2 + 20 * 1
    assert float(g["risk"]) == 1000.0 + 180.0 + 40.0


INTER = scenario(
    {"AAA": {"price": 50.0}, "IDX": {"price": 2000.0}},
    {"AAA-F": future("AAA", "2026-12-18", mult=100.0), "IDX-F": future("IDX", "2026-12-18", mult=10.0)},
    [{"contract": "AAA-F", "quantity": 2}, {"contract": "IDX-F", "quantity": -1}],
    {
        "combined_commodities": {"AAA": {"price_scan_amount": 500.0}, "IDX": {"price_scan_amount": 800.0}},
        "inter_spreads": [
            {
                "priority": 1,
                "credit_rate": 0.6,
                "legs": [{"group": "AAA", "side": "A", "ratio": 2}, {"group": "IDX", "side": "B"}],
            }
        ],
    },
)


def test_inter_commodity_credit_uses_wfpr():
    ds = run(INTER).sel(account="main")
    # AAA: scan 1000, price risk 1000, net delta 2 -> WFPR 500; one spread uses 2 deltas: 2*500*0.6 = 600
    # IDX: scan 800 (short, scenario 11), WFPR 800; 1*800*0.6 = 480
    assert float(ds["scan_risk"].sel(group="AAA")) == 1000.0
    assert float(ds["scan_risk"].sel(group="IDX")) == 800.0
    assert int(ds["active_scenario"].sel(group="IDX")) == 11
    assert float(ds["inter_spread_credit"].sel(group="AAA")) == pytest.approx(600.0)
    assert float(ds["inter_spread_credit"].sel(group="IDX")) == pytest.approx(480.0)
    assert float(ds["maintenance"]) == pytest.approx(400.0 + 320.0)


def test_inter_spread_needs_opposite_sides():
    sc = {**INTER, "positions": [{"contract": "AAA-F", "quantity": 2}, {"contract": "IDX-F", "quantity": 1}]}
    ds = run(sc).sel(account="main")
    assert float(ds["inter_spread_credit"].sum()) == 0.0
    assert float(ds["maintenance"]) == 1800.0


def opt(und, kind, strike, price, ra, mult=100.0):
    return {
        "type": kind,
        "underlying": und,
        "option_on": "future",
        "strike": strike,
        "expiry": "2026-12-18",
        "multiplier": mult,
        "price": price,
        "risk_array": ra,
        "composite_delta": 0.0,
    }


@pytest.mark.parametrize("method,expected", [("gross", 3 * 15.0), ("net", 2 * 15.0)])
def test_short_option_minimum(method, expected):
    small = [1.0] * 16  # deep out-of-the-money: tiny scan loss
    sc = scenario(
        {"ABC": {"price": 1000.0}},
        {
            "C1": opt("ABC", "call", 1300, 0.01, small),
            "C2": opt("ABC", "call", 1400, 0.01, [-1.0] * 16),
            "P1": opt("ABC", "put", 700, 0.01, small),
        },
        [
            {"contract": "C1", "quantity": -3},
            {"contract": "C2", "quantity": 4},
            {"contract": "P1", "quantity": -2},
        ],
        {"combined_commodities": {"ABC": {"price_scan": 0.06, "som": {"rate": 15, "method": method}}}},
    )
    g = run(sc).sel(account="main", group="ABC")
    # scan: 3*(-1) + ... per scenario: -3*1 + 4*(-1) - 2*1 = -9 -> scan risk 0
    assert float(g["scan_risk"]) == 0.0
    assert float(g["short_option_minimum"]) == expected
    assert float(g["risk"]) == expected


def test_net_option_value_and_initial_ratio():
    ra = [100.0] * 16
    sc = scenario(
        {"ABC": {"price": 1000.0}},
        {"P": opt("ABC", "put", 950, 12.5, ra)},
        [{"contract": "P", "quantity": 2}],
        {"combined_commodities": {"ABC": {"price_scan": 0.06, "initial_ratio": 1.1}}},
    )
    acct = run(sc).sel(account="main")
    assert float(acct["span_risk"]) == 200.0
    assert float(acct["net_option_value"]) == pytest.approx(2 * 12.5 * 100)  # long options positive
    assert float(acct["maintenance"]) == 0.0  # max(0, 200 - 2500)
    short = {**sc, "positions": [{"contract": "P", "quantity": -2}]}
    acct = run(short).sel(account="main")
    # short: scan risk = max(-200) -> 0 ... every scenario is a gain: 0; NOV -2500 adds the premium
    assert float(acct["net_option_value"]) == pytest.approx(-2500.0)
    assert float(acct["maintenance"]) == pytest.approx(2500.0)
    assert float(acct["initial"]) == pytest.approx(2500.0)  # 1.1 x 0 risk - NOV


def test_initial_is_ratio_times_cc_risk():
    ds = run(cal([{"contract": "DEC", "quantity": 1}], initial_ratio=1.1)).sel(account="main")
    assert float(ds["maintenance"]) == 1000.0
    assert float(ds["initial"]) == pytest.approx(1100.0)


def black76(f, k, t, vol, r, call):
    d1 = (np.log(f / k) + 0.5 * vol**2 * t) / (vol * np.sqrt(t))
    d2 = d1 - vol * np.sqrt(t)
    df = np.exp(-r * t)
    return (
        df * (f * norm.cdf(d1) - k * norm.cdf(d2)) if call else df * (k * norm.cdf(-d2) - f * norm.cdf(-d1))
    )


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_option_risk_array_from_black76_with_lookahead(engine):
    sc = scenario(
        {"ABC": {"price": 1000.0, "vol": 0.25, "rate": 0.03}},
        {
            "C": {
                "type": "call",
                "underlying": "ABC",
                "option_on": "future",
                "strike": 1020,
                "expiry": "2027-02-19",
                "multiplier": 50,
            }
        },
        [{"contract": "C", "quantity": 1}],
        {"combined_commodities": {"ABC": {"price_scan": 0.06, "vol_scan": 0.04, "lookahead_days": 1}}},
    )
    ra = run(sc, engine=engine)["risk_array"].sel(contract="C").values
    t = 91 / 365
    v0 = black76(1000.0, 1020.0, t, 0.25, 0.03, True)
    moves = np.array([0, 0, 1, 1, -1, -1, 2, 2, -2, -2, 3, 3, -3, -3, 9, -9]) / 3
    vols = np.array([1, -1] * 7 + [0, 0])
    w = np.array([1.0] * 14 + [0.32, 0.32])
    expect = (
        -(black76(1000 * (1 + 0.06 * moves), 1020.0, t - 1 / 365, 0.25 + 0.04 * vols, 0.03, True) - v0)
        * 50
        * w
    )
    np.testing.assert_allclose(ra, expect, atol=1e-6)


def test_grid_shift_broadcasts_and_equals_separate_runs():
    base = cal([{"contract": "DEC", "quantity": 2}, {"contract": "MAR", "quantity": -1}], price_scan=0.06)
    base["span"]["combined_commodities"]["ABC"].pop("price_scan_amount")
    gridded = {**base, "grid": {"shift": [-0.1, 0.0, 0.2]}}
    res = marginsim.margin(gridded)
    m = res["span"]["maintenance"].sel(account="main")
    assert m.dims == ("shift",)
    for s in (-0.1, 0.0, 0.2):
        one = {
            **base,
            "market": {"ABC": {"price": 1000.0 * (1 + s)}},
            "contracts": {k: {**v, "price": v["price"] * (1 + s)} for k, v in CAL["contracts"].items()},
        }
        assert float(m.sel(shift=s)) == pytest.approx(
            float(run(one)["maintenance"].sel(account="main")), rel=1e-12
        )
    d = res.to_dict()
    assert d["dims"] == {"shift": [-0.1, 0.0, 0.2]}
    assert len(d["accounts"]["main"]["span"]["maintenance"]) == 3
    assert len(d["accounts"]["main"]["span"]["risk_arrays"]["DEC"]) == 3
    assert len(d["accounts"]["main"]["span"]["risk_arrays"]["DEC"][0]) == 16


def test_many_accounts_in_one_call_equal_separate_runs():
    positions = [
        {"contract": "DEC", "quantity": 2, "account": "a"},
        {"contract": "MAR", "quantity": -1, "account": "a"},
        {"contract": "JUN", "quantity": 3, "account": "b"},
    ]
    spreads = [{"priority": 1, "rate": 90, "legs": [{"tier": 0, "side": "A"}, {"tier": 0, "side": "B"}]}]
    both = run(cal(positions, intra_spreads=spreads))
    assert list(both["account"].values) == ["a", "b"]
    for acct in ("a", "b"):
        alone = run(
            cal([{**p, "account": acct} for p in positions if p["account"] == acct], intra_spreads=spreads)
        )
        assert float(both["maintenance"].sel(account=acct)) == float(alone["maintenance"].sel(account=acct))
    assert float(both["maintenance"].sel(account="a")) == 1090.0
    assert float(both["maintenance"].sel(account="b")) == 3000.0


def test_currency_conversion_of_cc_risk():
    sc = cal([{"contract": "DEC", "quantity": 1}])
    sc["market"] = {"ABC": {"price": 1000.0, "currency": "EUR"}}
    sc["fx"] = {"EUR": 1.08}
    ds = run(sc).sel(account="main")
    assert float(ds["maintenance"]) == pytest.approx(1080.0)
    assert str(ds["group_currency"].sel(group="ABC").values) == "EUR"


def test_span_margins_only_futures_and_options_on_futures_in_a_mixed_book():
    sc = scenario(
        {"ABC": {"price": 1000.0, "vol": 0.2}, "XYZ": {"price": 50.0, "vol": 0.3}},
        {
            "DEC": future("ABC", "2026-12-18", 1000.0),
            "XYZ": {"type": "stock", "underlying": "XYZ"},
            "XYZ-C": {
                "type": "call",
                "underlying": "XYZ",
                "option_on": "spot",
                "strike": 55,
                "expiry": "2027-01-15",
                "multiplier": 100,
            },
        },
        [
            {"contract": "DEC", "quantity": 1},
            {"contract": "XYZ", "quantity": 1000},
            {"contract": "XYZ-C", "quantity": -5},
        ],
        {"combined_commodities": {"ABC": {"price_scan_amount": 1000.0}}},
    )
    ds = run(sc)
    assert list(ds["group"].values) == ["ABC"]
    assert float(ds["maintenance"].sel(account="main")) == 1000.0
    from marginsim.methods import applicable_methods
    from marginsim.scenario import parse_scenario

    assert "span" not in applicable_methods(
        parse_scenario({**sc, "span": None, "positions": sc["positions"][1:]})
    )
