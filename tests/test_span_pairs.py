"""SPAN over (account, combined commodity) pairs: layout, both engines, many accounts at once.

The aggregation of :func:`marginsim.methods.span.span_margin` runs over the pairs a book holds,
with a numba and a numpy engine (:mod:`marginsim.kernels.span_pairs`). These tests check that
the engines agree, that margining many accounts in one call equals margining each alone, and
the netting rule of the short option minimum; the component values themselves are checked by
hand in test_span_components.py and against the real file in test_span_file_margin.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import marginsim
from marginsim.kernels import span_pairs as SP
from marginsim.methods.span import span_margin

TAKAS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "span" / "takas.spn"

# two combined commodities with every component: tiers, spreads in priority order, spot month,
# gross and net short option minimum, an inter spread between them, options valued by the model
MARKET = {
    "IDX": {"price": 6000.0, "vol": 0.18, "rate": 0.04, "dividend_yield": 0.013},
    "ENG": {"price": 80.0, "vol": 0.35, "rate": 0.04},
}
CONTRACTS = {
    "IDX-DEC": {
        "type": "future",
        "underlying": "IDX",
        "multiplier": 50,
        "expiry": "2026-12-18",
        "price": 6004,
    },
    "IDX-MAR": {
        "type": "future",
        "underlying": "IDX",
        "multiplier": 50,
        "expiry": "2027-03-19",
        "price": 6045,
    },
    "IDX-JUN": {
        "type": "future",
        "underlying": "IDX",
        "multiplier": 50,
        "expiry": "2027-06-18",
        "price": 6086,
    },
    "IDX-MAR-C": {
        "type": "call",
        "underlying": "IDX",
        "option_on": "future",
        "strike": 6400,
        "expiry": "2027-03-19",
        "multiplier": 50,
        "price": 88.5,
    },
    "IDX-MAR-P": {
        "type": "put",
        "underlying": "IDX",
        "option_on": "future",
        "strike": 5600,
        "expiry": "2027-03-19",
        "multiplier": 50,
        "price": 96.0,
    },
    "ENG-DEC": {"type": "future", "underlying": "ENG", "multiplier": 1000, "expiry": "2026-12-18"},
    "ENG-MAR": {"type": "future", "underlying": "ENG", "multiplier": 1000, "expiry": "2027-03-19"},
    "ENG-DEC-C": {
        "type": "call",
        "underlying": "ENG",
        "option_on": "future",
        "strike": 85,
        "expiry": "2026-12-18",
        "multiplier": 1000,
    },
    "ENG-DEC-P": {
        "type": "put",
        "underlying": "ENG",
        "option_on": "future",
        "strike": 75,
        "expiry": "2026-12-18",
        "multiplier": 1000,
    },
}
SPAN = {
    "combined_commodities": {
        "IDX": {
            "price_scan": 0.06,
            "vol_scan": 0.04,
            "tiers": [{"tier": 1, "months": [202612, 202612]}, {"tier": 2, "months": [202703, 202706]}],
            "intra_spreads": [
                {"priority": 1, "rate": 450, "legs": [{"tier": 1, "side": "A"}, {"tier": 2, "side": "B"}]},
                {"priority": 2, "rate": 300, "legs": [{"tier": 2, "side": "A"}, {"tier": 2, "side": "B"}]},
            ],
            "spot": {"months": [202612], "rate_spread": 100, "rate_outright": 250},
            "som": {"rate": 600, "method": "gross"},
            "initial_ratio": 1.1,
        },
        "ENG": {
            "price_scan": 0.12,
            "vol_scan_relative": 0.25,
            "intra_spreads": [
                {"priority": 1, "rate": 900, "legs": [{"tier": 0, "side": "A"}, {"tier": 0, "side": "B"}]}
            ],
            "som": {"rate": 150, "method": "net"},
        },
    },
    "inter_spreads": [
        {
            "priority": 1,
            "credit_rate": 0.5,
            "legs": [{"group": "IDX", "side": "A", "ratio": 1}, {"group": "ENG", "side": "B", "ratio": 4}],
        }
    ],
}
NAMES = sorted(CONTRACTS)
ACCOUNTS = ["a", "b", "c", "d"]


def scenario(positions, **extra):
    return {
        "name": "pairs",
        "as_of": "2026-11-20",
        "currency": "USD",
        "market": MARKET,
        "contracts": CONTRACTS,
        "positions": [{"contract": c, "quantity": q, "account": a} for a, c, q in positions],
        "span": SPAN,
        **extra,
    }


books = st.lists(
    st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(NAMES), st.integers(-12, 12).filter(bool)),
    min_size=1,
    max_size=24,
)

PER_ACCOUNT = ("maintenance", "initial", "net_option_value", "span_risk")
PER_GROUP = (
    "scan_risk",
    "intra_spread_charge",
    "spot_charge",
    "inter_spread_credit",
    "short_option_minimum",
    "risk",
    "scan_loss",
)


def assert_same(a, b, names=PER_ACCOUNT + PER_GROUP + ("active_scenario", "held")):
    for v in names:
        x, y = a[v], b[v].transpose(*a[v].dims)
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x.values, y.values, rtol=1e-12, atol=1e-8, err_msg=v)
        else:
            np.testing.assert_array_equal(x.values, y.values, err_msg=v)


@settings(max_examples=25, deadline=None)
@given(books)
def test_engines_agree_on_random_books(positions):
    inputs = marginsim.load(scenario(positions))
    assert_same(span_margin(inputs, engine="numba"), span_margin(inputs, engine="numpy"))
    lean = PER_ACCOUNT + PER_GROUP[:-1] + ("active_scenario", "held")
    assert_same(
        span_margin(inputs, engine="numba", scan_loss=False),
        span_margin(inputs, engine="numpy", scan_loss=False),
        lean,
    )


@settings(max_examples=15, deadline=None)
@given(books)
def test_many_accounts_in_one_call_equal_each_account_alone(positions):
    both = marginsim.margin(scenario(positions))["span"]
    for acct in both["account"].values:
        alone = marginsim.margin(scenario([p for p in positions if p[0] == acct]))["span"]
        one = both.sel(account=[acct]).sel(group=alone["group"].values)
        assert_same(one, alone, PER_ACCOUNT + PER_GROUP + ("active_scenario",))
        # combined commodities the account does not hold carry nothing
        rest = both.sel(account=acct).drop_sel(group=alone["group"].values)
        assert not rest["held"].any()
        assert float(abs(rest["risk"]).sum()) == 0.0


def test_engines_agree_along_grid_dims():
    positions = [
        ("a", "IDX-DEC", 10),
        ("a", "IDX-MAR", -6),
        ("a", "IDX-MAR-C", -4),
        ("a", "ENG-DEC", -8),
        ("b", "ENG-DEC-C", -3),
        ("b", "ENG-DEC-P", 2),
        ("b", "ENG-MAR", 5),
    ]
    sc = scenario(positions, grid={"shift": [-0.1, 0.0, 0.1], "vol_scan_scale": [1.0, 2.0]})
    inputs = marginsim.load(sc)
    a = span_margin(inputs, engine="numba")
    b = span_margin(inputs, engine="numpy")
    assert a["maintenance"].dims == ("account", "shift", "vol_scan_scale")
    assert_same(a, b)
    # the grid point with no move equals the run without a grid
    base = span_margin(marginsim.load(scenario(positions)))
    point = a.sel(shift=0.0, vol_scan_scale=1.0)
    np.testing.assert_allclose(point["maintenance"].values, base["maintenance"].values, rtol=1e-12)


def test_long_and_short_of_one_series_net_before_the_short_option_minimum():
    # gross method: short calls vs short puts after netting each series inside the account
    ds = marginsim.margin(
        scenario(
            [
                ("a", "IDX-MAR-C", 5),
                ("a", "IDX-MAR-C", -3),  # same series: net long 2, no short call
                ("b", "IDX-MAR-C", -3),
                ("b", "IDX-MAR-P", -2),
            ]
        )
    )["span"]
    som = ds["short_option_minimum"].sel(group="IDX")
    assert float(som.sel(account="a")) == 0.0
    assert float(som.sel(account="b")) == 600 * 3
    # net method (ENG): a long put offsets short puts, not short calls
    ds = marginsim.margin(
        scenario(
            [("a", "ENG-DEC-C", -4), ("a", "ENG-DEC-P", -1), ("a", "ENG-DEC-P", 3), ("a", "ENG-DEC-P", -5)]
        )
    )["span"]
    assert float(ds["short_option_minimum"].sel(account="a", group="ENG")) == 150 * 4


def test_scan_loss_is_optional():
    inputs = marginsim.load(scenario([("a", "IDX-DEC", 1), ("b", "ENG-MAR", -2)]))
    full = span_margin(inputs)
    lean = span_margin(inputs, scan_loss=False)
    assert "scan_loss" in full and "scan_loss" not in lean
    assert_same(full, lean, PER_ACCOUNT + PER_GROUP[:-1] + ("active_scenario", "held"))
    # the scan risk is the largest scenario loss of each held pair
    held = full["held"]
    np.testing.assert_array_equal(
        full["scan_risk"].where(held, 0.0).values,
        full["scan_loss"].max("scenario").clip(min=0).where(held, 0.0).values,
    )


def test_pair_layout_is_account_major():
    pos_a = np.array([2, 0, 2, 1, 0, 2])
    pos_c = np.array([1, 3, 0, 3, 3, 1])
    pairs = SP.pairs_of(pos_a, pos_c, n_accounts=4, n_cc=4)
    assert pairs.account.tolist() == [0, 1, 2, 2]
    assert pairs.cc.tolist() == [3, 3, 0, 1]
    assert pairs.of_position.tolist() == [3, 0, 2, 1, 0, 3]
    assert pairs.account_ptr.tolist() == [0, 1, 2, 4, 4]  # account 3 holds nothing
    dense = pairs.to_dense(np.array([1.0, 2.0, 3.0, 4.0]))
    assert dense.shape == (4, 4)
    assert dense[2, 0] == 3.0 and dense[2, 1] == 4.0 and dense.sum() == 10.0
    order, ptr = pairs.of_cc
    assert [order[ptr[c] : ptr[c + 1]].tolist() for c in range(4)] == [[2], [3], [], [0, 1]]


@pytest.mark.parametrize("grouped", [True, False])
def test_one_pass_over_the_positions_equals_the_separate_steps(grouped):
    rng = np.random.default_rng(5)
    n, n_a, n_k, n_c, n_g, n_s = 400, 37, 12, 3, 2, 16
    pos_a = np.sort(rng.integers(0, n_a, n)) if grouped else rng.integers(0, n_a, n)
    contract = rng.integers(0, n_k, n)
    qty = rng.integers(-5, 6, n).astype(float)
    cc_of_k = rng.integers(0, n_c, n_k)
    months = rng.integers(0, 4, n_k)
    n_months = np.array([months[cc_of_k == c].max(initial=0) + 1 for c in range(n_c)])
    risk_array = np.round(rng.normal(0, 100, (n_k, n_g, n_s)), 2)
    delta = rng.normal(0, 1, (n_k, n_g))
    is_call = rng.random(n_k) < 0.4
    is_put = ~is_call & (rng.random(n_k) < 0.5)
    pairs = SP.pairs_of(pos_a, cc_of_k[contract], n_a, n_c)
    row0 = np.concatenate([[0], np.cumsum(n_months[pairs.cc])])
    scen_pair = np.arange(n_s) ^ 1
    time_idx = np.array([0, 1])
    common = (
        pairs,
        pos_a,
        contract,
        qty,
        risk_array,
        scen_pair,
        time_idx,
        row0,
        months,
        delta,
        is_call,
        is_put,
    )
    ref = SP.book_pass(*common, "numpy")
    loss_n = SP.segment_sum(pairs.of_position, contract, qty, risk_array, pairs.size, "numba")
    steps = (  # the compiled separate steps: the same sums in the same order
        loss_n,
        *SP.scan(loss_n, scen_pair, time_idx, "numba"),
        SP.segment_sum(row0[pairs.of_position] + months[contract], contract, qty, delta, row0[-1], "numba"),
        SP.option_counts(pos_a, n_a, pairs.of_position, contract, qty, is_call, is_put, pairs.size, "numba"),
    )
    for keep in (True, False):
        got = SP.book_pass(*common, "numba", keep_loss=keep)
        assert (got[0] is None) is not keep
        for a, b, c in zip(got[int(not keep) :], steps[int(not keep) :], ref[int(not keep) :]):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-9)
    # against the definitions
    loss = np.zeros((pairs.size, n_g, n_s))
    np.add.at(loss, pairs.of_position, qty[:, None, None] * risk_array[contract])
    np.testing.assert_allclose(ref[0], loss, atol=1e-9)
    np.testing.assert_allclose(ref[1], loss.max(axis=2).clip(min=0), atol=1e-9)
    ledger = np.zeros((row0[-1], n_g))
    np.add.at(ledger, row0[pairs.of_position] + months[contract], qty[:, None] * delta[contract])
    np.testing.assert_allclose(ref[4], ledger, atol=1e-9)


def test_segment_sum_engines_agree():
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 50, 2000)
    src = rng.integers(0, 30, 2000)
    w = rng.normal(size=2000)
    table = rng.normal(size=(30, 4, 3))
    a = SP.segment_sum(rows, src, w, table, 50, "numba")
    b = SP.segment_sum(rows, src, w, table, 50, "numpy")
    expect = np.zeros((50, 4, 3))
    np.add.at(expect, rows, w[:, None, None] * table[src])
    np.testing.assert_allclose(a, expect, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b, expect, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not TAKAS.exists(), reason="../shared/data/span/takas.spn is not available")
def test_engines_agree_on_many_portfolios_of_the_real_file():
    base = marginsim.load(
        {"name": "takas", "as_of": "2016-05-17", "currency": "TRY", "span": {"source": str(TAKAS)}}
    )
    names = base.contracts["contract"].values
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 21, 1500)
    account = np.repeat(np.arange(sizes.size), sizes)
    pick = rng.integers(0, names.size, sizes.sum())
    qty = rng.integers(-10, 11, sizes.sum()).astype(float)
    inputs = base.with_book(names[pick], qty, account)
    a = span_margin(inputs, engine="numba")
    b = span_margin(inputs, engine="numpy")
    assert_same(a, b)
    assert float(a["inter_spread_credit"].sum()) > 0 and float(a["intra_spread_charge"].sum()) > 0
    # a few portfolios margined alone equal their row of the vectorised result
    for acct in (0, 1, 2, 777):
        mine = account == acct
        alone = span_margin(base.with_book(names[pick[mine]], qty[mine], account[mine]))
        np.testing.assert_allclose(
            float(a["maintenance"].sel(account=str(acct))), float(alone["maintenance"][0]), rtol=1e-12
        )


def test_margin_without_detail_leaves_out_only_what_the_contract_does_not_carry():
    sc = scenario([("a", "IDX-DEC", 3), ("a", "IDX-MAR-C", -2), ("b", "ENG-MAR", -2)])
    full = marginsim.margin(sc)
    lean = marginsim.margin(sc, detail=False)
    assert "scan_loss" in full["span"] and "scan_loss" not in lean["span"]
    assert lean.to_dict() == full.to_dict()
    # chunk by chunk on dask as well
    chunked = marginsim.margin(sc, detail=False, chunks=1)
    assert "scan_loss" not in chunked["span"]
    assert chunked.to_dict() == full.to_dict()


@pytest.mark.skipif(not TAKAS.exists(), reason="../shared/data/span/takas.spn is not available")
@pytest.mark.parametrize("n_portfolios, pool", [(1, 3), (40, 25), (800, None)])
def test_the_whole_file_plan_gives_the_result_of_the_held_contracts_plan(monkeypatch, n_portfolios, pool):
    """Many books on one file share one plan of every contract; a book's result (contracts,
    combined commodities, their order, every value) is the one its own held contracts give.

    The account sums over combined commodities add in the file's order of combined commodities
    rather than the book's, so they agree to the last bits only (and no longer depend on what the
    other accounts of the book hold)."""
    import marginsim.methods.span as S

    base = marginsim.load(
        {"name": "takas", "as_of": "2016-05-17", "currency": "TRY", "span": {"source": str(TAKAS)}}
    )
    names = base.contracts["contract"].values
    rng = np.random.default_rng(n_portfolios)
    chosen = names if pool is None else rng.choice(names, pool, replace=False)
    sizes = rng.integers(1, 21, n_portfolios)
    account = np.repeat(np.arange(sizes.size), sizes)
    pick = rng.integers(0, chosen.size, sizes.sum())
    qty = rng.integers(-10, 11, sizes.sum()).astype(float)
    inputs = base.with_book(chosen[pick], qty, account)
    shared = span_margin(inputs)
    assert S._file_plan(inputs, inputs.span_params, "auto") is not None
    assert inputs.derived is base.derived  # with_book shares what was derived from the file
    monkeypatch.setattr(S, "_file_plan", lambda *a: None)
    own = span_margin(inputs)
    sums = ["maintenance", "initial", "span_risk"]
    xr.testing.assert_identical(shared.drop_vars(sums), own.drop_vars(sums))
    for name in sums:
        xr.testing.assert_allclose(shared[name], own[name], rtol=1e-14, atol=0)
        assert shared[name].attrs == own[name].attrs


@pytest.mark.skipif(not TAKAS.exists(), reason="../shared/data/span/takas.spn is not available")
def test_the_whole_file_plan_follows_in_place_changes():
    base = marginsim.load(
        {"name": "takas", "as_of": "2016-05-17", "currency": "TRY", "span": {"source": str(TAKAS)}}
    )
    inputs = base.with_book(["AKBNKE:F:201606S0"], [1.0])
    assert float(span_margin(inputs)["maintenance"][0]) == pytest.approx(90.0, abs=1e-9)
    k = int(np.flatnonzero(inputs.contracts["contract"].values == "AKBNKE:F:201606S0")[0])
    inputs.contracts["risk_array"].values[k] *= 2.0  # a notebook edits the file's numbers in place
    assert float(span_margin(inputs)["maintenance"][0]) == pytest.approx(180.0, abs=1e-9)
    inputs.span_params.initial_ratio = 1.5  # and the parameters
    # the file's rate class 1 is initial (isM 0): the risk arrays give the initial requirement and
    # the maintenance one is initial / 1.5
    assert float(span_margin(inputs)["initial"][0]) == pytest.approx(180.0, abs=1e-9)
    assert float(span_margin(inputs)["maintenance"][0]) == pytest.approx(120.0, abs=1e-9)
    # a worker's pickled copy carries the definitions, not what was derived from them
    import pickle

    assert base.derived and pickle.loads(pickle.dumps(base)).derived == {}


@pytest.mark.skipif(not TAKAS.exists(), reason="../shared/data/span/takas.spn is not available")
def test_with_book_finds_contracts_by_id_and_names_the_first_unknown_position():
    from marginsim.errors import InputError

    base = marginsim.load(
        {"name": "takas", "as_of": "2016-05-17", "currency": "TRY", "span": {"source": str(TAKAS)}}
    )
    names = base.contracts["contract"].values
    ids = np.array([names[5], names[0], names[5], "AKBNKE:F:201606S0"], dtype=object)
    book = base.with_book(ids, [1.0, 2.0, 3.0, 4.0], [7, 7, 8, 9]).book
    assert book["contract_index"].values.tolist()[:3] == [5, 0, 5]
    assert names[book["contract_index"].values[3]] == "AKBNKE:F:201606S0"
    assert book["account_name"].values.tolist() == ["7", "8", "9"]  # account numbers as names
    assert base.with_book(ids[:1], [1.0]).book["contract_index"].values.tolist() == [5]
    # another spelling of a strike is found through the canonical form
    opt = next(n for n in names if n.count(":") == 3 and n.endswith(".5"))
    spelled = opt + "0"
    assert base.with_book([names[0], spelled], [1.0, 1.0]).book["contract"].values.tolist() == [names[0], opt]
    with pytest.raises(InputError, match="unknown contract 'NOPE'") as err:
        base.with_book([names[0], names[1], "NOPE", "ALSO-NOPE"], [1.0] * 4)
    assert err.value.key_path == "positions[2].contract"


def test_rows_of_one_contract_are_netted():
    """SPAN margins an account's net quantity of each contract: rows -1, -5, +6 of one option are a
    flat position (nothing at risk, no short option), in both engines; rows +4, -1 are a long 3."""
    flat = marginsim.load(scenario([("a", "ENG-DEC-C", -1), ("a", "ENG-DEC-C", -5), ("a", "ENG-DEC-C", 6)]))
    for engine in ("numba", "numpy"):
        r = span_margin(flat, engine=engine)
        assert float(r["maintenance"].sum()) == 0.0
        assert float(r["scan_risk"].sum()) == 0.0
        assert float(r["short_option_minimum"].sum()) == 0.0
        assert float(r["net_option_value"].sum()) == 0.0
    rows = marginsim.load(scenario([("a", "ENG-DEC-C", 4), ("a", "ENG-DEC-C", -1), ("b", "ENG-DEC-C", 2)]))
    one = marginsim.load(scenario([("a", "ENG-DEC-C", 3), ("b", "ENG-DEC-C", 2)]))
    assert_same(span_margin(rows, engine="numba"), span_margin(one, engine="numba"), names=PER_ACCOUNT + PER_GROUP)
