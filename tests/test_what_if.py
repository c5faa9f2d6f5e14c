"""What-if (marginsim.what_if): for every method, ``after`` equals margining the book with the
trade added from scratch, to the cent; change = after - before; CFD's funding rule; the JSON,
the table, the best hedge and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import marginsim
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.params.account import AccountFunds, AccountParams
from marginsim.scenario import Position, load_scenario, parse_scenario
from marginsim.testing import scenarios
from marginsim.trades import leg_cash_change
from marginsim.whatif import REJECTED_REASON, best_hedge, order_time, what_if

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
TAKAS = ROOT.parent / "shared" / "data" / "span" / "takas.spn"
CENT = 0.005


def scenario(name: str, **changes):
    """A bundled scenario, with top-level keys changed (smaller grids keep the tests fast)."""
    path = SCENARIOS / name
    if not changes:
        return load_scenario(path)
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    return parse_scenario(data, file=path)


def from_scratch(sc, trade: dict, methods):
    """Margin of the book with the trade's legs added as positions of its account (CFD legs: new
    orders at the path's first step, as what_if places them)."""
    inputs = marginsim.load(sc)
    kinds = dict(zip(inputs.contracts["contract"].values.tolist(), inputs.contracts["type"].values.tolist()))
    when = order_time(sc)
    added = [
        Position(
            contract=c,
            quantity=q,
            account=trade["account"],
            opened=when if kinds[inputs.contracts["contract"].values[_index(inputs, c)]] == "cfd" else None,
        )
        for c, q in trade["legs"]
    ]
    sc2 = sc.model_copy(update={"positions": list(sc.positions) + added})
    return marginsim.margin(paid(sc2, trade["account"], trade["legs"]), methods=methods)


def paid(sc, account: str, legs):
    """The scenario with ``account``'s cash changed by what ``legs`` [(contract, quantity)] pay
    (marginsim.trades.leg_cash_change), written into the file's sections as a user would: portfolio
    and strategy margin's cash [reporting currency] where given (legs of stocks and options on
    spot: the securities account they margin), the account layer's
    accounts.<account>.cash.<group>.<currency> (an entry made when the section has none)."""
    inputs = marginsim.load(sc)
    k = np.array([_index(inputs, c) for c, _ in legs], dtype=np.int64)
    amount, ccy, fx = leg_cash_change(inputs, k, np.array([q for _, q in legs], dtype=float))
    update = {}
    c = inputs.contracts
    # securities: stocks and options on spot, as the scenario file says (a clearing-house
    # file's contracts: none of this file's portfolio or strategy margin)
    defined = [sc.contracts.get(str(c["contract"].values[i])) for i in k.tolist()]
    spot = np.array([d is not None and (d.type == "stock" or d.option_on == "spot") for d in defined])
    for name in ("portfolio_margin", "strategy"):
        params = sc.section(name)
        if params is not None and account in params.cash:
            sec = np.where(spot, amount * fx, 0.0)
            cash = {**params.cash, account: params.cash[account] + float(sec.sum())}
            update[name] = params.model_copy(update={"cash": cash})
    params = sc.section("account") or AccountParams()
    if (amount != 0).any():
        old = params.accounts.get(account)
        cash = {g: dict(r) for g, r in (old.cash if old is not None else {}).items()}
        for j, i in enumerate(k.tolist()):  # the trade's few legs
            g = params.cash_group(
                str(c["contract"].values[i]),
                str(c["group"].values[i]),
                str(c["underlying"].values[i]),
                ccy[j],
            )
            cash.setdefault(g, {})[ccy[j]] = cash.get(g, {}).get(ccy[j], 0.0) + float(amount[j])
        funds = old.model_copy(update={"cash": cash}) if old is not None else AccountFunds(cash=cash)
        update["account"] = params.model_copy(update={"accounts": {**params.accounts, account: funds}})
    return sc.model_copy(update=update) if update else sc


def _index(inputs, name):
    ids = inputs.contracts["contract"].values.tolist()
    if name in ids:
        return ids.index(name)
    return ids.index(inputs.normalise_contract_id(name))


def random_trades(inputs, rng, n: int, pool=None):
    """``n`` random trades of 1-3 legs, in contracts the account holds (or of ``pool``)."""
    acct = np.asarray(inputs.accounts, dtype=object)[inputs.book["account_index"].values]
    held = inputs.book["contract"].values
    out = []
    for i in range(n):  # drawing the test's cases
        a = str(rng.choice(np.asarray(inputs.accounts, dtype=object)))
        choices = held[acct == a] if pool is None else np.asarray(pool, dtype=object)
        legs = [
            (str(rng.choice(choices)), float(rng.choice([-7, -2, -1, 1, 3, 4.5])))
            for _ in range(int(rng.integers(1, 4)))
        ]
        out.append({"id": f"t{i}", "account": a, "legs": legs})
    return out


def check_exact(sc, trades, compared, methods=None):
    """what_if's before / after / change against margin() of the book and of each after-book."""
    res = what_if(
        sc, [{**t, "legs": [{"contract": c, "quantity": q} for c, q in t["legs"]]} for t in trades], methods
    )
    names = list(res)
    assert names
    before = marginsim.margin(sc, methods=names)
    for j, t in enumerate(trades):
        ref = from_scratch(sc, t, names)
        for m in names:
            got = res[m].isel(trade=j)
            assert str(got["trade"].values) == t["id"] and str(got["account"].values) == t["account"]
            for x in compared:
                if f"{x}_after" not in got:
                    continue
                exp_after = ref[m][x].sel(account=t["account"]).values
                exp_before = before[m][x].sel(account=t["account"]).values
                np.testing.assert_allclose(
                    got[f"{x}_after"].values, exp_after, rtol=0, atol=CENT, err_msg=f"{m}.{x}"
                )
                np.testing.assert_allclose(got[f"{x}_before"].values, exp_before, rtol=0, atol=CENT)
                np.testing.assert_allclose(
                    got[f"{x}_change"].values,
                    got[f"{x}_after"].values - got[f"{x}_before"].values,
                    rtol=0,
                    atol=0,
                )
    return res


MI = ("maintenance", "initial")


def test_span_model_priced_exact():
    sc = scenario("span_inter_commodity.yaml")
    inputs = marginsim.load(sc)
    trades = random_trades(inputs, np.random.default_rng(1), 2, pool=inputs.contracts["contract"].values)
    res = check_exact(sc, trades, MI)
    assert res["span"]["maintenance_after"].dims == ("trade", "shift")


@pytest.mark.skipif(not TAKAS.exists(), reason="../shared/data/span/takas.spn is not available")
def test_span_takasbank_exact():
    sc = scenario("span_takasbank.yaml")
    inputs = marginsim.load(sc)
    # held contracts and others of the file (an option spelled with another strike form)
    pool = list(inputs.book["contract"].values) + ["XU030:F:201608S0", "AKBNKE:C:201606S0:8.00"]
    trades = random_trades(inputs, np.random.default_rng(2), 4, pool=pool)
    check_exact(sc, trades, MI)


def test_portfolio_margin_exact():
    sc = scenario("pm_diversified_large_cap.yaml")
    inputs = marginsim.load(sc)
    check_exact(sc, random_trades(inputs, np.random.default_rng(3), 3), MI + ("equity",))


def test_cfd_along_paths_exact():
    sc = scenario(
        "cfd_retail_book.yaml", grid={"monte_carlo": {"paths": 40, "steps": 5, "step_days": 1, "seed": 7}}
    )
    inputs = marginsim.load(sc)
    res = check_exact(sc, random_trades(inputs, np.random.default_rng(4), 3), MI + ("equity",))
    assert res["cfd"]["accepted"].dims == ("trade", "path")


def test_account_layer_exact():
    for name, seed, n in (("account_forced_conversion.yaml", 5, 2), ("account_hk_margin_call.yaml", 6, 1)):
        sc = scenario(name)
        inputs = marginsim.load(sc)
        res = check_exact(
            sc,
            random_trades(inputs, np.random.default_rng(seed), n),
            MI + ("available_funds", "excess_liquidity", "state"),
        )
        ds = res["account"]
        for x in ("available_funds", "excess_liquidity", "state"):
            assert f"{x}_before" in ds and f"{x}_after" in ds and f"{x}_change" in ds


def test_cfd_cash_only_funding_rule():
    # EUR 2,000 cash, 20 % initial margin on XYZ at 100: at the first step (09:00, before the
    # book's own orders) 100 CFDs need 2,000 (funded), 101 need 2,020 (rejected)
    sc = scenario("cfd_two_fills.yaml")
    res = what_if(sc, [{"contract": "XYZ-CFD", "quantity": 100}, {"contract": "XYZ-CFD", "quantity": 101}])
    ds = res["cfd"]
    assert ds["accepted"].values.tolist() == [True, False]
    assert ds["rejected_reason"].values.tolist() == ["", REJECTED_REASON]
    # accepted: 2,000 of initial margin from step 0, and the book's own fills are then rejected
    assert ds["initial_after"].isel(trade=0).values.tolist() == [2000.0] * 6
    # rejected: nothing changes
    np.testing.assert_array_equal(ds["maintenance_change"].isel(trade=1).values, 0.0)
    np.testing.assert_array_equal(
        ds["initial_after"].isel(trade=1).values, ds["initial_before"].isel(trade=1).values
    )


def test_funded_account_without_positions():
    # a second CFD account, funded with EUR 1,000 and holding nothing: a trade may go to it
    sc = scenario(
        "cfd_two_fills.yaml",
        cfd={
            "client": "retail",
            "accounts": {"main": {"cash": {"EUR": 2000}}, "new": {"cash": {"EUR": 1000}}},
            "step_times": [
                "2026-11-20T09:00:00",
                "2026-11-20T10:00:00",
                "2026-11-20T10:05:00",
                "2026-11-20T12:00:00",
                "2026-11-20T14:00:00",
                "2026-11-20T16:00:00",
            ],
        },
    )
    trades = [
        {"id": "a", "account": "new", "legs": [("XYZ-CFD", 50)]},
        {"id": "b", "account": "new", "legs": [("XYZ-CFD", 51)]},
    ]
    res = check_exact(sc, trades, MI + ("equity",))
    ds = res["cfd"]
    assert ds["accepted"].values.tolist() == [True, False]  # 50 x 100 x 20 % = 1,000: just funded
    np.testing.assert_array_equal(ds["maintenance_before"].values, 0.0)
    assert ds["initial_after"].isel(trade=0).values.tolist() == [1000.0] * 6
    with pytest.raises(InputError, match=r"\[0\]\.account: the scenario has 2 accounts"):
        what_if(sc, [{"contract": "XYZ-CFD", "quantity": 1}])


def test_json_and_table():
    sc = scenario("span_seed_example.yaml")
    res = what_if(sc, [{"id": "hedge", "legs": [{"contract": "ABC-FUT", "quantity": -1}]}])
    d = json.loads(res.to_json())
    assert d["scenario"] == "span-seed-example" and d["currency"] == "USD" and d["dims"] == {}
    (t,) = d["trades"]
    assert t["id"] == "hedge" and t["account"] == "main"
    assert t["legs"] == [{"contract": "ABC-FUT", "quantity": -1.0}]
    m = t["methods"]["span"]["maintenance"]
    assert set(m) == {"before", "after", "change"}
    assert m["change"] == pytest.approx(m["after"] - m["before"])
    assert m["before"] == pytest.approx(609.3987942793271)
    # the seed's put alone: short the future leaves the long put's scanning risk
    alone = marginsim.margin(sc.model_copy(update={"positions": [sc.positions[1]]}))["span"]
    assert m["after"] == pytest.approx(float(alone["maintenance"].sel(account="main")), abs=CENT)
    text = res.table()
    assert "trade hedge  account main: -1 ABC-FUT" in text and "maintenance" in text


def test_grid_dims_nested_in_json():
    sc = scenario("span_inter_commodity.yaml")
    inputs = marginsim.load(sc)
    a = inputs.accounts[0]
    c = str(inputs.book["contract"].values[0])
    res = what_if(sc, [{"account": a, "contract": c, "quantity": 1}])
    d = res.to_dict()
    assert d["dims"] == {"shift": [-0.2, -0.1, 0.0, 0.1, 0.2]}
    after = d["trades"][0]["methods"]["span"]["maintenance"]["after"]
    assert len(after) == 5
    np.testing.assert_allclose(after, res["span"]["maintenance_after"].isel(trade=0).values)


def test_best_hedge_is_the_lowest_candidate():
    sc = scenario("span_seed_example.yaml")
    hedge = best_hedge(sc, max_quantity=3)
    res = hedge.what_if
    assert len(res.trades) == 2 * 6  # 2 contracts x quantities -3..3 but 0
    ch = res["span"]["maintenance_change"].values
    best = hedge.best["main"]["span"]
    assert best["maintenance"]["change"] == pytest.approx(ch.min())
    assert best["maintenance"]["change"] < 0
    j = int(np.argmin(ch))
    assert (
        best["contract"] == str(res.trades.leg_contract[j]) and best["quantity"] == res.trades.leg_quantity[j]
    )
    # the chosen trade margined from scratch
    ref = from_scratch(sc, {"account": "main", "legs": [(best["contract"], best["quantity"])]}, ["span"])
    assert best["maintenance"]["after"] == pytest.approx(
        float(ref["span"]["maintenance"].sel(account="main")), abs=CENT
    )
    only_put = best_hedge(sc, contracts="*P950", max_quantity=2)
    assert set(only_put.what_if.trades.leg_contract.tolist()) == {"ABC-P950"}
    with pytest.raises(InputError, match="no contract matches"):
        best_hedge(sc, contracts="NOPE*")
    with pytest.raises(InputError, match="whole number >= 1"):
        best_hedge(sc, max_quantity=0)


def test_bad_trades_are_input_errors(tmp_path):
    sc = scenario("span_seed_example.yaml")
    with pytest.raises(InputError, match=r"\[0\]\.legs\[1\]\.contract: unknown contract 'XYZ'"):
        what_if(sc, [{"legs": [{"contract": "ABC-FUT", "quantity": 1}, {"contract": "XYZ", "quantity": 1}]}])
    # a CFD trade in an account without CFD funding: the method's own error, on the base account
    mixed = scenario("cfd_retail_book.yaml", grid=None)
    inputs = marginsim.load(mixed)
    cfd = str(inputs.book["contract"].values[0])
    funded = set(mixed.cfd.accounts)
    assert funded == set(inputs.accounts)  # every account is funded: no error
    what_if(mixed, [{"account": inputs.accounts[0], "contract": cfd, "quantity": 1}])


def test_cli(tmp_path, capsys):
    f = SCENARIOS / "span_seed_example.yaml"
    trades = tmp_path / "t.yaml"
    trades.write_text(
        "- {id: a, contract: ABC-FUT, quantity: -1}\n- {id: b, legs: [{contract: ABC-P950, quantity: 2}]}\n"
    )
    assert main(["what-if", str(f), "--trades", str(trades), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in d["trades"]] == ["a", "b"]
    assert main(["what-if", str(f), "--trade", "ABC-FUT", "-1", "--trade", "ABC-P950", "2", "--json"]) == 0
    d2 = json.loads(capsys.readouterr().out)
    assert [t["methods"]["span"] for t in d2["trades"]] == [t["methods"]["span"] for t in d["trades"]]
    assert main(["what-if", str(f), "--trade", "ABC-FUT", "-1"]) == 0
    assert "trade 0  account main: -1 ABC-FUT" in capsys.readouterr().out
    assert main(["what-if", str(f), "--best-hedge", "--max-quantity", "2", "--json"]) == 0
    hedge = json.loads(capsys.readouterr().out)
    assert hedge["candidates"] == 8 and hedge["accounts"]["main"]["span"]["maintenance"]["change"] < 0
    # bad input: exit 2, one line naming where
    for argv, text in (
        (["--trade", "ABC-FUT", "0"], "--trade 1: a quantity must not be zero"),
        (["--trade", "ABC-FUT", "x"], "--trade 1: quantity 'x' is not a number"),
        (["--trade", "NOPE", "1"], "--trade 1: unknown contract 'NOPE'"),
        (["--trade", "ABC-FUT", "1", "--account", "other"], "--account 1: unknown account 'other'"),
        (["--trades", str(tmp_path / "none.yaml")], "trades file not found"),
        (["--best-hedge", "--trade", "ABC-FUT", "1"], "not both"),
        (["--trade", "ABC-FUT", "1", "--max-quantity", "10"], "go with --best-hedge"),
        (
            ["--best-hedge", "--max-quantity", "0"],
            "--max-quantity: the largest quantity must be a whole number >= 1",
        ),
        ([], "give --trades FILE, --trade CONTRACT QUANTITY or --best-hedge"),
    ):
        assert main(["what-if", str(f), *argv]) == 2
        err = capsys.readouterr().err
        assert text in err and len(err.strip().splitlines()) == 1, err
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {contract: ABC-FUT, quantity: 1, price: 3}\n")
    assert main(["what-if", str(f), "--trades", str(bad)]) == 2
    assert f"{bad}: [0].price: unknown key 'price'" in capsys.readouterr().err


@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(data=st.data(), book=scenarios(max_positions=6))
def test_random_mixed_books_every_method_exact(data, book):
    """Hypothesis books of the mixed book (SPAN, portfolio margin, CFD and the account layer all
    apply) and a random trade of 1-2 legs: after = margin from scratch, for every method."""
    sc = parse_scenario(book)
    held = sorted({p["account"] for p in book["positions"]})
    names = sorted(book["contracts"])
    leg = st.tuples(st.sampled_from(names), st.integers(1, 5), st.booleans())
    trades = data.draw(
        st.lists(
            st.tuples(st.sampled_from(held), st.lists(leg, min_size=1, max_size=2)), min_size=1, max_size=2
        )
    )
    cases = [
        {"id": f"t{i}", "account": a, "legs": [(c, float(-q if short else q)) for c, q, short in legs]}
        for i, (a, legs) in enumerate(trades)
    ]
    res = check_exact(sc, cases, MI + ("available_funds", "excess_liquidity", "state", "equity"))
    assert set(res) == {"span", "portfolio_margin", "cfd", "account"}


def test_the_public_name_is_the_function_whatever_is_imported():
    """``marginsim.what_if`` stays the function after its module is imported (the module is
    ``marginsim.whatif``: a module named ``what_if`` would replace the package's name)."""
    import marginsim.whatif  # noqa: F401

    assert callable(marginsim.what_if) and marginsim.what_if.__name__ == "what_if"
    assert marginsim.best_hedge.__name__ == "best_hedge"


def test_a_trade_pays_for_what_it_buys():
    """Buying 500 MEGA (price 250) in ``hedged`` pays 500 x 250 = 125,000 USD: portfolio margin's
    equity is unchanged at the valuation price (the cash becomes shares), so the available funds
    fall by the initial requirement's change only (41,250: before this fix they rose by
    125,000 - 41,250 = 83,750). A future and a CFD move no cash; selling an option brings its
    given premium (IDX-MAR27-P5700: 120 x 50 per contract), into the account layer's cash but not
    into portfolio margin's (the securities account: stocks and options on spot)."""
    sc = load_scenario(SCENARIOS / "overview_mixed_book.yaml")
    trades = [
        {"id": "shares", "account": "hedged", "contract": "MEGA", "quantity": 500},
        {"id": "future", "account": "main", "contract": "IDX-DEC26", "quantity": -2},
        {"id": "cfd", "account": "main", "contract": "US500-CFD", "quantity": 2},
        {"id": "put", "account": "main", "contract": "IDX-MAR27-P5700", "quantity": -3},
    ]
    res = what_if(sc, trades, ["portfolio_margin", "account"])
    cash = res.cash_change.sel(currency="USD").values
    np.testing.assert_allclose(cash, [-125_000.0, 0.0, 0.0, 3 * 120.0 * 50], rtol=0, atol=1e-9)
    pm = res["portfolio_margin"].sel(trade="shares")
    np.testing.assert_allclose(float(pm["initial_change"]), 41_250.0, rtol=0, atol=CENT)
    np.testing.assert_allclose(float(pm["available_funds_change"]), -41_250.0, rtol=0, atol=CENT)
    # an option on a future is not of the securities account portfolio margin margins and values:
    # its premium is not taken from (nor added to) that account's cash
    pm_put = res["portfolio_margin"].sel(trade="put")
    assert float(pm_put["initial_change"]) == 0.0 and float(pm_put["available_funds_change"]) == 0.0
    # the account layer: the cash paid is the shares' value counted in equity
    acc = res["account"].sel(trade="shares")
    np.testing.assert_allclose(
        acc["available_funds_change"].values, -acc["initial_change"].values, rtol=0, atol=CENT
    )
    # the JSON: "cash_change" per trade, {} for a trade that moves no cash
    out = res.to_dict()["trades"]
    assert [t["cash_change"] for t in out] == [{"USD": -125_000.0}, {}, {}, {"USD": 18_000.0}]
