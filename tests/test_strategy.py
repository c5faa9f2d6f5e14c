"""Strategy-based margin (issue 17): each rule on a hand-computed case, the pairing optimum against
brute force and a greedy pairing, the comparison with portfolio margin, the CLI and bad input."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import marginsim
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.methods.strategy import strategy_book
from marginsim.methods.strategy.pairing import solve
from marginsim.methods.strategy.rules import candidates, standalone
from marginsim.params.strategy import StrategyParams

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "scenarios" / "strategy_reg_t_book.yaml"


@pytest.fixture(scope="module")
def book_result():
    return marginsim.margin(str(BOOK), methods=["strategy"])["strategy"]


# account: (initial, maintenance, opening deposit), from the rule text (see the scenario's header)
HAND = {
    "covered": (5000.0, 2500.0, 4800.0),  # covered call: 50 % / 25 % of 10,000; deposit - 200 proceeds
    "debit": (200.0, 200.0, 100.0),  # debit call spread: the net debit 2.00 - 1.00
    "credit": (600.0, 600.0, 400.0),  # credit call spread: max loss 500 - 100 net credit
    "strangle": (1850.0, 1850.0, 1500.0),  # call side 200 + max(2,000 - 500, 1,000) + put proceeds 150
    "index_put": (58000.0, 58000.0, 55000.0),  # 3,000 + max(15 % x 500,000 - 20,000, 10 % x 480,000)
    "collar": (5150.0, 1600.0, 4950.0),  # 5,000 + 150; 150 + min(950 + 500, 2,625)
    "shorts": (4000.0, 3600.0, 4000.0),  # PNY max(3,000, 2,500) both; STK 50 % = 1,000 / max(600, 500)
    "leap": (900.0, 900.0, 900.0),  # long-dated call: 75 % x 1,200
}


@pytest.mark.parametrize("account", sorted(HAND))
def test_each_rule_on_the_hand_checked_book(book_result, account):
    ini, mnt, dep = HAND[account]
    d = book_result.sel(account=account)
    assert float(d["initial"]) == pytest.approx(ini, abs=1e-6)
    assert float(d["maintenance"]) == pytest.approx(mnt, abs=1e-6)
    assert float(d["opening_deposit"]) == pytest.approx(dep, abs=1e-6)


def test_unpaired_requirements_and_rules_chosen(book_result):
    d = book_result.sel(account="covered")
    assert float(d["initial_unpaired"]) == pytest.approx(5000 + 1700)  # the call alone: 200 + 1,500
    rows = book_result["strategy_account"].values == "collar"
    maint = rows & (book_result["strategy_basis"].values == "maintenance")
    assert list(book_result["strategy_rule"].values[maint]) == ["collar"]
    rows = book_result["strategy_account"].values == "credit"
    assert set(book_result["strategy_rule"].values[rows]) == {"credit_call_spread"}


def _scenario(positions, contracts=None, market=None, **extra):
    """A small book on XYZ at 100 (options of 100 shares, premiums given)."""
    sc = {
        "name": "t",
        "as_of": "2026-11-20",
        "currency": "USD",
        "methods": ["strategy"],
        "market": {"XYZ": {"price": 100.0, "vol": 0.3, "product_class": "equity"}},
        "contracts": {
            "XYZ": {"type": "stock", "underlying": "XYZ"},
            "C105": {"type": "call", "underlying": "XYZ", "option_on": "spot", "strike": 105, "expiry": "2027-03-19", "multiplier": 100, "price": 2.0},
            "C110": {"type": "call", "underlying": "XYZ", "option_on": "spot", "strike": 110, "expiry": "2027-03-19", "multiplier": 100, "price": 1.0},
            "C150": {"type": "call", "underlying": "XYZ", "option_on": "spot", "strike": 150, "expiry": "2027-03-19", "multiplier": 100, "price": 0.10},
            "P95": {"type": "put", "underlying": "XYZ", "option_on": "spot", "strike": 95, "expiry": "2027-03-19", "multiplier": 100, "price": 1.5},
            "P100": {"type": "put", "underlying": "XYZ", "option_on": "spot", "strike": 100, "expiry": "2027-03-19", "multiplier": 100, "price": 4.0},
            "P50": {"type": "put", "underlying": "XYZ", "option_on": "spot", "strike": 50, "expiry": "2027-03-19", "multiplier": 100, "price": 0.05},
            "C105-DEC": {"type": "call", "underlying": "XYZ", "option_on": "spot", "strike": 105, "expiry": "2026-12-18", "multiplier": 100, "price": 0.8},
            "C100": {"type": "call", "underlying": "XYZ", "option_on": "spot", "strike": 100, "expiry": "2027-03-19", "multiplier": 100, "price": 5.0},
        },
        "positions": [dict(account=p[0], contract=p[1], quantity=p[2]) for p in positions],
        "strategy": {"comparison": {"enabled": False}},
    }
    sc["contracts"].update(contracts or {})
    sc["market"].update(market or {})
    sc.update(extra)
    return sc


def _run(positions, **kw):
    return marginsim.margin(_scenario(positions, **kw), methods=["strategy"])["strategy"]


def test_stock_rules_and_the_low_price_floor():
    r = _run([("long", "XYZ", 100), ("short", "XYZ", -100)])
    assert float(r["initial"].sel(account="long")) == pytest.approx(5000)  # Reg T 50 %
    assert float(r["maintenance"].sel(account="long")) == pytest.approx(2500)  # FINRA 25 %
    assert float(r["initial"].sel(account="short")) == pytest.approx(5000)  # 150 % of proceeds less the proceeds
    assert float(r["maintenance"].sel(account="short")) == pytest.approx(3000)  # 30 % (> 5 a share)
    low = _run(
        [("a", "LOW", -100)],
        market={"LOW": {"price": 4.0, "vol": 0.3}},
        contracts={"LOW": {"type": "stock", "underlying": "LOW"}},
    )
    assert float(low["maintenance"].sel(account="a")) == pytest.approx(400)  # 100 % > 2.50 a share
    assert float(low["initial"].sel(account="a")) == pytest.approx(400)  # never below maintenance


def test_no_loan_value_stock_is_margined_at_100_percent():
    sc = _scenario([("a", "XYZ", 100)])
    sc["strategy"]["stock"] = {"no_loan_value": ["XYZ"]}
    r = marginsim.margin(sc, methods=["strategy"])["strategy"]
    assert float(r["initial"].sel(account="a")) == pytest.approx(10000)
    assert float(r["maintenance"].sel(account="a")) == pytest.approx(10000)


def test_uncovered_minimums_call_on_underlying_put_on_exercise_price():
    r = _run([("c", "C150", -1), ("p", "P50", -1)])
    # deep out of the money: 20 % x 10,000 - 4,500 < 10 % x 10,000 -> proceeds 10 + 1,000
    assert float(r["initial"].sel(account="c")) == pytest.approx(10 + 1000)
    # put: 20 % x 10,000 - 5,000 < 10 % x 5,000 (exercise price) -> proceeds 5 + 500
    assert float(r["initial"].sel(account="p")) == pytest.approx(5 + 500)
    assert float(r["opening_deposit"].sel(account="p")) == pytest.approx(500)


def test_straddle_protective_put_covered_put_protective_call_reversal():
    r = _run(
        [
            ("straddle", "C100", -1), ("straddle", "P100", -1),
            ("pp", "XYZ", 100), ("pp", "P95", 1),
            ("cp", "XYZ", -100), ("cp", "P95", -1),
            ("pc", "XYZ", -100), ("pc", "C105", 1),
            ("rev", "XYZ", -100), ("rev", "P100", -1), ("rev", "C100", 1),
        ]
    )
    call = 500 + 2000  # 5.00 + 20 % x 10,000 (at the money)
    put = 400 + 2000
    assert float(r["initial"].sel(account="straddle")) == pytest.approx(call + 400)
    rows = r["strategy_account"].values == "straddle"
    assert "short_straddle" in set(r["strategy_rule"].values[rows])
    assert float(r["initial"].sel(account="straddle")) < call + put
    # protective put: initial 5,000 + 150; maintenance 150 + min(10 % x 9,500 + 500, 2,500)
    assert float(r["initial"].sel(account="pp")) == pytest.approx(5150)
    assert float(r["maintenance"].sel(account="pp")) == pytest.approx(1600)
    # covered put: the short stock's requirement only (the put's proceeds still reduce the deposit)
    assert float(r["initial"].sel(account="cp")) == pytest.approx(5000)
    assert float(r["maintenance"].sel(account="cp")) == pytest.approx(3000)
    assert float(r["opening_deposit"].sel(account="cp")) == pytest.approx(5000 - 150)
    # protective call: 5,000 + 200; maintenance 200 + min(10 % x 10,500 + 500, 3,000) = 1,750
    assert float(r["initial"].sel(account="pc")) == pytest.approx(5200)
    assert float(r["maintenance"].sel(account="pc")) == pytest.approx(1750)
    # reversal (short stock, short put, long call at 100): 5,000 + 500; 500 + min(1,000, 3,000)
    assert float(r["initial"].sel(account="rev")) == pytest.approx(5500)
    assert float(r["maintenance"].sel(account="rev")) == pytest.approx(1500)
    rows = (r["strategy_account"].values == "rev") & (r["strategy_basis"].values == "maintenance")
    assert list(r["strategy_rule"].values[rows]) == ["reversal"]


def test_butterfly_is_margined_as_its_two_spreads_and_partial_quantities_pair():
    # long 1 C100, short 2 C105, long 1 C110: debit spread 100/105 (500) + credit spread 110/105 (100 + 500)
    r = _run([("fly", "C100", 1), ("fly", "C105", -2), ("fly", "C110", 1), ("part", "XYZ", 250), ("part", "C105", -3)])
    assert float(r["initial"].sel(account="fly")) == pytest.approx(500 + 600)
    # 250 shares cover two calls; the third is uncovered (200 + 1,500), 50 shares alone at 50 %
    assert float(r["initial"].sel(account="part")) == pytest.approx(2 * 5000 + 1700 + 2500)


def test_a_spread_whose_long_leg_expires_first_is_not_a_spread():
    # long C105 expiring in December, short C105 in March: the short is uncovered
    r = _run([("a", "C105-DEC", 1), ("a", "C105", -1)])
    assert float(r["initial"].sel(account="a")) == pytest.approx(80 + 200 + 1500)
    assert set(r["strategy_rule"].values) == {"long_call", "uncovered_call"}
    # the other way round (long expiring last) is a spread: 200 paid, exposure 0
    r = _run([("a", "C105-DEC", -1), ("a", "C105", 1)])
    assert float(r["initial"].sel(account="a")) == pytest.approx(200)


# -- the pairing optimum --------------------------------------------------------------------------------

NAMES = ["XYZ", "C100", "C105", "C110", "P95", "P100", "P50", "C150"]


def _random_accounts(seed, n_accounts, n_pos, qmax):
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(n_accounts):  # test data only
        picks = rng.choice(len(NAMES), size=n_pos, replace=False)
        for k in picks:
            q = int(rng.integers(1, qmax + 1)) * (1 if rng.random() < 0.5 else -1)
            rows.append((f"a{a:03d}", NAMES[k], q * (100 if NAMES[k] == "XYZ" else 1)))
    return rows


def _problem(positions, basis):
    """Per account: the quantities, the candidates' legs, coefs and savings, and the unpaired total."""
    inputs = marginsim.load(_scenario(positions))
    params = StrategyParams()
    b = strategy_book(inputs, params)
    alone = standalone(b, params)
    c = candidates(b, params, alone)
    total, single = (c.initial, alone.initial) if basis == "initial" else (c.maintenance, alone.maintenance)
    saving = c.saving(total, single)[:, 0]
    names = inputs.accounts
    out = {}
    for a in range(len(names)):  # the reference, account by account
        pos = np.flatnonzero(b.account == a)
        cand = np.flatnonzero(np.isin(c.legs[:, 0], pos))
        unpaired = float((np.abs(b.quantity[pos]) * single[pos, 0]).sum())
        out[names[a]] = (b.quantity, c.legs[cand], c.coef[cand], saving[cand], unpaired)
    return out


def _brute_force(q, legs, coef, saving, unpaired):
    """The least requirement over every integer grouping (every candidate, saving or not)."""
    held = np.abs(q)
    ub = [int(min(held[leg] / c for leg, c in zip(lg, cf) if leg >= 0) + 1e-9) for lg, cf in zip(legs, coef)]
    best = 0.0
    for x in itertools.product(*[range(u + 1) for u in ub]):
        used = np.zeros_like(held)
        for xi, lg, cf in zip(x, legs, coef):
            for leg, c in zip(lg, cf):
                if leg >= 0:
                    used[leg] += xi * c
        if np.all(used <= held + 1e-9):
            best = min(best, float(np.dot(x, saving)))
    return unpaired + best


def _greedy(q, legs, coef, saving, unpaired):
    """Take the strategy saving most per unit first, as many units as its legs allow, and repeat."""
    held = np.abs(q).astype(float)
    total = unpaired
    for s in np.argsort(saving, kind="stable"):
        if saving[s] >= 0:
            break
        units = min(np.floor(held[leg] / c + 1e-9) for leg, c in zip(legs[s], coef[s]) if leg >= 0)
        for leg, c in zip(legs[s], coef[s]):
            if leg >= 0:
                held[leg] -= units * c
        total += units * saving[s]
    return total


@pytest.mark.parametrize("basis", ["initial", "maintenance"])
def test_pairing_equals_brute_force_on_small_random_accounts(basis):
    positions = _random_accounts(7, 40, 3, 2)
    result = _run(positions)
    for name, prob in _problem(positions, basis).items():
        assert float(result[basis].sel(account=name)) == pytest.approx(_brute_force(*prob), abs=1e-6), name


def test_optimal_pairing_beats_greedy():
    positions = _random_accounts(11, 200, 4, 3)
    result = _run(positions)
    saved = []
    for name, prob in _problem(positions, "initial").items():
        opt, greedy = float(result["initial"].sel(account=name)), _greedy(*prob)
        assert opt <= greedy + 1e-6
        saved.append(greedy - opt)
    assert max(saved) > 1.0  # optimisation saves on some accounts
    # a book where a short call could be covered by the stock or spread against the long call
    one = _run([("h", "XYZ", 100), ("h", "C105", -1), ("h", "C110", 1), ("h", "C100", -1)])
    prob = _problem([("h", "XYZ", 100), ("h", "C105", -1), ("h", "C110", 1), ("h", "C100", -1)], "initial")["h"]
    assert float(one["initial"].sel(account="h")) == pytest.approx(_brute_force(*prob))


# -- the comparison -------------------------------------------------------------------------------------


def test_comparison_with_portfolio_margin():
    res = marginsim.margin(str(BOOK), methods=["strategy", "portfolio_margin"])
    st, pm = res["strategy"], res["portfolio_margin"]
    for acct in ("covered", "collar", "strangle"):
        s = st.sel(account=acct)
        assert float(s["pm_initial"]) == pytest.approx(float(pm["initial"].sel(account=acct)))
        assert float(s["saving"]) == pytest.approx(float(s["initial"]) - float(pm["initial"].sel(account=acct)))
    # covered: equity 120,000 + 9,800 >= 110,000 and portfolio margin needs less: choose it
    c = st.sel(account="covered")
    assert str(c["qualifies_for"].values) == "portfolio_margin" and str(c["choose"].values) == "portfolio_margin"
    assert float(c["keeps_portfolio_margin"]) == 1.0
    # collar: equity 29,950 < 110,000: strategy-based, although portfolio margin would need less
    k = st.sel(account="collar")
    assert float(k["saving"]) > 0
    assert str(k["qualifies_for"].values) == "strategy" and str(k["choose"].values) == "strategy"
    # strangle: no cash; portfolio margin needs more: strategy
    assert str(st.sel(account="strangle")["choose"].values) == "strategy"
    doc = res.to_dict()["accounts"]["covered"]["strategy"]
    assert doc["comparison"]["choose"] == "portfolio_margin"
    assert doc["comparison"]["strategy_initial"] == pytest.approx(5000)
    assert doc["strategies"][0]["rule"] == "covered_call"
    assert doc["strategies"][0]["legs"] == [{"contract": "XYZ", "quantity": 100.0}, {"contract": "XYZ-C105", "quantity": -1.0}]


def test_cli_prints_both_methods(capsys):
    assert main(["margin", str(BOOK), "--method", "strategy", "--method", "portfolio_margin"]) == 0
    out = capsys.readouterr().out
    assert "STRATEGY-BASED MARGIN  account covered" in out
    assert "PORTFOLIO MARGIN  account covered" in out and "comparison with portfolio margin" in out
    assert main(["margin", str(BOOK), "--method", "strategy", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["accounts"]["debit"]["strategy"]["opening_deposit"] == pytest.approx(100)


# -- bad input ------------------------------------------------------------------------------------------


def test_option_on_an_underlying_without_a_price_is_an_input_error():
    sc = _scenario([("a", "Q1", -1)], contracts={"Q1": {"type": "call", "underlying": "NOPE", "option_on": "spot", "strike": 10, "expiry": "2027-03-19", "multiplier": 100, "price": 1.0}})
    with pytest.raises(InputError, match="NOPE"):
        marginsim.margin(sc, methods=["strategy"])


def test_bad_strategy_section_exits_2(tmp_path, capsys):
    sc = _scenario([("a", "XYZ", 100)])
    bad = copy.deepcopy(sc)
    bad["strategy"]["stock"] = {"long_initial": 1.5}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["margin", str(path)]) == 2
    err = capsys.readouterr().err
    assert "strategy.stock.long_initial" in err
    bad = copy.deepcopy(sc)
    bad["strategy"]["rates"] = 1
    path.write_text(yaml.safe_dump(bad))
    assert main(["margin", str(path)]) == 2


def test_integer_step_when_the_relaxation_is_fractional():
    # three positions of one unit, three strategies pairing each two of them (an odd cycle): the
    # relaxation takes half of each (saving 1.5), the integer optimum one strategy (saving 1)
    legs = np.array([[0, 1, -1], [1, 2, -1], [0, 2, -1], [3, 4, -1]])
    coef = np.array([[1.0, 1.0, 0.0]] * 4)
    saving = np.array([[-1.0], [-1.0], [-1.0], [-2.0]])
    block = np.array([0, 0, 0, 1])
    cand, g, units = solve(saving, legs, coef, block, np.array([1.0, -1.0, 1.0, 2.0, -3.0]), batch_variables=100)
    assert float(np.dot(saving[cand, g], units)) == pytest.approx(-1.0 - 4.0)
    assert units.tolist() == [1.0, 2.0] and cand[-1] == 3


READY = {
    "listed_since": "2025-12-01",
    "electronic_quotes": True,
    "median_volume_shares": 100_000,
    "free_float_cap_usd": [6e8] * 10,
}


@pytest.mark.parametrize(("listed_since", "initial"), [("2025-12-01", 10_000.0), ("2025-12-11", 20_000.0)])
def test_foreign_stock_without_a_ready_market_has_no_loan_value(listed_since, initial):
    # the account layer's ready-market test (listed 99 days: ready; 89 days: not): 50 % or 100 %
    sc = _scenario(
        [("main", "FOO", 1000)],
        market={"FOO": {"price": 20.0, "currency": "USD", "domicile": "DE", "listing": "DE"}},
        contracts={"FOO": {"type": "stock", "underlying": "FOO"}},
        as_of="2026-03-10",
        account={"accounts": {"main": {"cash": {"NonHK_": {"USD": 100_000}}}}, "stocks": {"FOO": {**READY, "listed_since": listed_since}}},
    )
    sc["contracts"] = {"FOO": sc["contracts"]["FOO"]}
    r = marginsim.margin(sc, methods=["strategy"])["strategy"]
    assert float(r["initial"].sel(account="main")) == pytest.approx(initial)


def test_relaxation_first_and_integer_only_give_the_same_optimum():
    positions = _random_accounts(5, 60, 6, 3)
    sc = _scenario(positions)
    first = marginsim.margin(sc, methods=["strategy"])["strategy"]
    sc["strategy"]["relaxation_first"] = False
    only = marginsim.margin(sc, methods=["strategy"])["strategy"]
    for basis in ("initial", "maintenance"):
        np.testing.assert_allclose(first[basis].values, only[basis].values, rtol=0, atol=1e-6)


def test_requirements_over_a_market_shift_and_rows_at_the_base_point():
    sc = _scenario([("cov", "XYZ", 100), ("cov", "C105", -1), ("stock", "XYZ", -100)], grid={"shift": [-0.1, 0.0, 0.1]})
    r = marginsim.margin(sc, methods=["strategy"])["strategy"]
    # covered call: 50 % of the stock at 90, 100, 110 (the call covered at every point)
    np.testing.assert_allclose(r["initial"].sel(account="cov").values, [4500, 5000, 5500])
    np.testing.assert_allclose(r["maintenance"].sel(account="stock").values, [2700, 3000, 3300])
    rows = r["strategy_account"].values == "cov"
    assert set(r["strategy_rule"].values[rows]) == {"covered_call"}
    assert r["strategy_initial"].values[rows][0] == pytest.approx(5000)  # at shift 0


def test_chunks_choose_the_same_strategies_as_one_piece():
    # many groupings of equal requirement (short calls and puts pair into strangles in many ways):
    # the tie-break takes the same one whatever else is in the program
    sc = _scenario(_random_accounts(3, 150, 6, 4))
    whole = marginsim.margin(sc, methods=["strategy"])["strategy"]
    chunked = marginsim.margin(sc, methods=["strategy"], chunks=20)["strategy"]
    for name in ("strategy_account", "strategy_basis", "strategy_rule", "leg_contract"):
        np.testing.assert_array_equal(chunked[name].values, whole[name].values)
    np.testing.assert_allclose(chunked["strategy_units"].values, whole["strategy_units"].values)
    np.testing.assert_allclose(chunked["initial"].values, whole["initial"].values, rtol=1e-12)
