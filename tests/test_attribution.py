"""Margin attribution (issue 15): per method, account and position, the ``contribution`` (the
method's allocation of the maintenance: the parts sum to it) and the ``marginal`` (the maintenance
minus that of the account without the position: exact leave-one-out)."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import marginsim
from marginsim.attribution import leave_one_out
from marginsim.cli import main
from marginsim.io.book import write_book
from marginsim.kernels import numba_available
from marginsim.kernels import span_whatif as W
from marginsim.kernels.leave_one_out import variant_rows
from marginsim.methods.span import attribution as span_att
from marginsim.methods.span import span_attribution
from marginsim.model import Inputs, Universe, as_names, book_from_arrays
from marginsim.registry import REGISTRY
from marginsim.testing import scenarios

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
RTOL = 1e-9


def _contributions(inputs, name, ds):
    """The method's hook: contribution (position, grid...) and the account index of each position."""
    att = REGISTRY[name].attribution(inputs, ds)["contribution"]
    rows = np.searchsorted(inputs.book["position"].values, att["position"].values)
    assert (inputs.book["position"].values[rows] == att["position"].values).all()
    return att, inputs.book["account_index"].values[rows]


def _assert_sums(inputs, result):
    """Every method's contributions sum per account and grid point to its maintenance."""
    checked = []
    for name, ds in result.items():
        if REGISTRY[name].attribution is None:
            continue
        att, acct = _contributions(inputs, name, ds)
        m = ds["maintenance"].transpose("account", ...)
        c = att.transpose("position", *m.dims[1:]).values
        total = np.zeros(m.shape)
        np.add.at(total, acct, c)
        gross = np.zeros(m.shape)
        np.add.at(gross, acct, np.abs(c))
        scale = np.maximum(np.maximum(np.abs(m.values), gross), 1.0)
        assert np.all(np.abs(total - m.values) <= RTOL * scale), (name, total, m.values)
        checked.append(name)
    return checked


_SLOW = settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)


# -- the sums hold on random books, for every method ---------------------------------------------------


@_SLOW
@given(scenario=scenarios(), grid=st.sampled_from([None, {"shift": [-0.2, 0.0, 0.15]}]))
def test_contributions_sum_to_the_maintenance_on_random_mixed_books(scenario, grid):
    sc = copy.deepcopy(scenario)
    if grid is not None:
        sc["grid"] = grid
        sc["methods"] = ["span", "portfolio_margin", "account"]  # (CFD: along paths, below)
    inputs = marginsim.load(sc)
    checked = _assert_sums(inputs, marginsim.margin(inputs))
    assert "span" in checked or "portfolio_margin" in checked


def test_contributions_sum_on_the_bundled_scenarios():
    """Every bundled scenario (SPAN with spreads, inter-commodity credits, a clearing-house file;
    portfolio margin with every single-name method; CFD along paths; the account layer)."""
    seen = set()
    for path in sorted(SCENARIOS.glob("*.yaml")):
        inputs = marginsim.load(path)
        seen.update(_assert_sums(inputs, marginsim.margin(inputs)))
    assert seen == {"span", "portfolio_margin", "cfd", "account"}


@_SLOW
@given(data=st.data())
def test_span_contributions_sum_on_random_books_of_the_takasbank_file(data):
    base = marginsim.load(SCENARIOS / "span_takasbank.yaml")
    ids = base.contracts["contract"].values
    n = data.draw(st.integers(1, 40))
    pick = data.draw(st.lists(st.integers(0, ids.size - 1), min_size=n, max_size=n))
    qty = data.draw(st.lists(st.integers(-50, 50).filter(bool), min_size=n, max_size=n))
    acct = data.draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=n, max_size=n))
    inputs = base.with_book(ids[pick], np.asarray(qty, dtype=float), acct)
    assert _assert_sums(inputs, marginsim.margin(inputs, methods=["span"])) == ["span"]


@_SLOW
@given(qty=st.lists(st.integers(-20, 20), min_size=5, max_size=5), shift=st.booleans())
def test_span_contributions_sum_with_spreads_spot_and_short_option_minimum(qty, shift):
    """The calendar-spread scenario (tiered intra spreads, spot month, SOM, NOV) with random quantities."""
    sc = yaml.safe_load((SCENARIOS / "span_calendar_spread.yaml").read_text())
    sc["positions"] = [dict(p, quantity=q or 1) for p, q in zip(sc["positions"], qty)]
    if shift:
        sc["grid"] = {"shift": [-0.1, 0.0, 0.1]}
    inputs = marginsim.load(sc)
    assert _assert_sums(inputs, marginsim.margin(inputs)) == ["span"]


# -- the rules on hand cases -----------------------------------------------------------------------------


def test_span_seed_example_by_hand():
    """spec/span.md section 3: scanning risk 1,125 at scenario 14 (-3/3, vol down). The future loses
    6,000 there, the put gains 4,875; the put's net option value (long: positive) comes off it."""
    inputs = marginsim.load(SCENARIOS / "span_seed_example.yaml")
    ds = marginsim.margin(inputs)["span"]
    att = REGISTRY["span"].attribution(inputs, ds)
    nov = float(ds["net_option_value"].values[0])
    assert int(ds["active_scenario"].values[0, 0]) == 14
    np.testing.assert_allclose(att["contribution"].values, [6000.0, -4875.0 - nov], rtol=1e-12)
    np.testing.assert_allclose(att["risk_part"].values, [6000.0, -4875.0], rtol=1e-12)
    assert att["contribution"].values.sum() == pytest.approx(609.3987942793, rel=1e-9)


def test_span_and_account_layer_in_another_currency():
    """The seed example margined in EUR and reported in USD at 1.1: every figure x 1.1, and the
    account layer (SPAN as its source, no mark-up) gives the same contributions."""
    sc = _scenario_dict(SCENARIOS / "span_seed_example.yaml")
    sc["market"]["ABC"]["currency"] = "EUR"
    sc["fx"] = {"EUR": 1.1}
    sc["span"]["combined_commodities"]["ABC"]["currency"] = "EUR"
    res = marginsim.margin(sc, methods=["span", "account"], attribution=True)
    span, account = res["span"], res["account"]
    assert span["contribution"].values[0] == pytest.approx(6000.0 * 1.1, rel=1e-12)
    assert span["contribution"].values.sum() == pytest.approx(609.3987942793 * 1.1, rel=1e-9)
    np.testing.assert_allclose(account["contribution"].values, span["contribution"].values, rtol=1e-12)
    np.testing.assert_allclose(account["marginal"].values, span["marginal"].values, rtol=1e-12)


def test_account_layer_marks_up_spans_risk_part_before_the_option_value():
    """account.maintenance_markup 20 %: the SPAN line is 1,125 x 1.2 - 515.60 = 834.40; the future
    contributes 6,000 x 1.2, the put -4,875 x 1.2 less its net option value."""
    sc = _scenario_dict(SCENARIOS / "span_seed_example.yaml")
    sc["account"] = {"maintenance_markup": 0.2}
    span = marginsim.margin(sc, methods=["span"])["span"]
    nov = float(span["net_option_value"].values[0])
    ds = marginsim.margin(sc, methods=["account"], attribution=True)["account"]
    assert float(ds["maintenance"].values[0]) == pytest.approx(1125 * 1.2 - nov, rel=1e-12)
    np.testing.assert_allclose(ds["contribution"].values, [7200.0, -4875 * 1.2 - nov], rtol=1e-12)


def _som_case():
    flat = lambda v: [v] * 16  # noqa: E731 - a risk array with the same loss in every scenario
    return {
        "name": "som-hand-case",
        "as_of": "2026-11-20",
        "currency": "USD",
        "market": {"ABC": {"price": 1000, "vol": 0.2, "rate": 0.03, "currency": "USD"}},
        "contracts": {
            "F": {
                "type": "future",
                "underlying": "ABC",
                "multiplier": 10,
                "expiry": "2026-12-18",
                "risk_array": flat(3.0),
                "composite_delta": 1.0,
            },
            "C": {
                "type": "call",
                "underlying": "ABC",
                "option_on": "future",
                "strike": 1100,
                "expiry": "2026-12-18",
                "multiplier": 10,
                "price": 2.0,
                "risk_array": flat(-5.0),
                "composite_delta": 0.2,
            },
            "P": {
                "type": "put",
                "underlying": "ABC",
                "option_on": "future",
                "strike": 900,
                "expiry": "2026-12-18",
                "multiplier": 10,
                "price": 1.5,
                "risk_array": flat(-4.0),
                "composite_delta": -0.2,
            },
        },
        "positions": [
            {"contract": "F", "quantity": 1},
            {"contract": "C", "quantity": -2},
            {"contract": "P", "quantity": -1},
        ],
        "span": {
            "combined_commodities": {"ABC": {"price_scan": 0.06, "vol_scan": 0.04, "som": {"rate": 100}}}
        },
    }


def test_span_short_option_minimum_goes_to_the_short_options():
    """Scan: F loses 3, C 2 x 5 = 10, P 4 in every scenario (active scenario 1): 17. SOM (gross) =
    100 x max(2 short calls, 1 short put) = 200 > 17: the excess 183 goes to the 3 short options
    pro rata (C 2/3: 122, P 1/3: 61). NOV: C -2 x 2 x 10 = -40, P -1.5 x 10 = -15 (short: negative),
    so C 10 + 122 + 40 = 172, P 4 + 61 + 15 = 80, F 3; maintenance 200 + 55 = 255."""
    inputs = marginsim.load(_som_case())
    ds = marginsim.margin(inputs)["span"]
    assert float(ds["maintenance"].values[0]) == pytest.approx(255.0, rel=1e-12)
    att = REGISTRY["span"].attribution(inputs, ds)
    np.testing.assert_allclose(att["contribution"].values, [3.0, 172.0, 80.0], rtol=1e-12)


def test_span_spread_charges_and_credits_go_pro_rata_to_absolute_delta():
    inputs = marginsim.load(SCENARIOS / "span_calendar_spread.yaml")
    ds = marginsim.margin(inputs)["span"]
    att = REGISTRY["span"].attribution(inputs, ds)
    charges = float(ds["intra_spread_charge"].values[0, 0] + ds["spot_charge"].values[0, 0])
    assert charges > 0
    q = inputs.book["quantity"].values
    delta = ds["composite_delta"].sel(contract=inputs.book["contract"].values).values
    ra = ds["risk_array"].sel(contract=inputs.book["contract"].values).values
    active = int(ds["active_scenario"].values[0, 0]) - 1
    scan_part = q * ra[:, active]
    weight = np.abs(q * delta)
    # no SOM excess here (the scan and charges exceed it): risk part = scan loss + delta share
    assert float(ds["risk"].values[0, 0]) > float(ds["short_option_minimum"].values[0, 0])
    np.testing.assert_allclose(
        att["risk_part"].values, scan_part + charges * weight / weight.sum(), rtol=1e-12
    )


def test_cfd_contribution_is_the_positions_own_maintenance_while_open():
    inputs = marginsim.load(SCENARIOS / "cfd_two_fills.yaml")
    ds = marginsim.margin(inputs)["cfd"]
    att = REGISTRY["cfd"].attribution(inputs, ds)["contribution"]
    assert set(att.dims) == {"position", "step"}
    # before a position's order fills it contributes nothing; then its fixed maintenance
    mm = np.nan_to_num(ds["position_maintenance"].values)
    for p in range(att.sizes["position"]):
        c = att.isel(position=p).values
        assert set(np.round(c, 9)) <= {0.0, round(float(mm[p]), 9)}
    np.testing.assert_allclose(att.sum("position").values, ds["maintenance"].isel(account=0).values)


def test_portfolio_margin_a_position_alone_in_its_class_group_gets_the_groups_part():
    """pm_diversified_large_cap (the scan binds): a stock alone in its class group contributes the
    group's base (max(scan, option minimum)) plus its large-position charge; the two SPX options of
    one class group share theirs (scan losses at the group's worst point, the rest by notional)."""
    inputs = marginsim.load(SCENARIOS / "pm_diversified_large_cap.yaml")
    ds = marginsim.margin(inputs)["portfolio_margin"]
    att, acct = _contributions(inputs, "portfolio_margin", ds)
    assert (ds["binding"].values == "scan").all()
    part = (ds["group_base"] + ds["large_position_charge"]).values  # (account, group)
    rows = np.searchsorted(inputs.book["position"].values, att["position"].values)
    und = inputs.contracts["underlying_index"].values[inputs.book["contract_index"].values[rows]]
    group = und
    assert list(ds["group"].values) == list(inputs.market["underlying"].values)
    alone = 0
    for a, g in set(zip(acct.tolist(), group.tolist())):
        mine = (acct == a) & (group == g)
        np.testing.assert_allclose(att.values[mine].sum(), part[a, g], rtol=1e-12)
        if mine.sum() == 1:
            alone += 1
    assert alone >= 8


def test_account_layer_rule_positions_get_their_own_line():
    inputs = marginsim.load(SCENARIOS / "account_hk_margin_call.yaml")
    ds = marginsim.margin(inputs, methods=["account"])["account"]
    att, acct = _contributions(inputs, "account", ds)
    m = ds["maintenance"].transpose("account", ...).values
    total = np.zeros(m.shape)
    np.add.at(total, acct, att.transpose("position", ...).values)
    np.testing.assert_allclose(total, m, rtol=1e-12)
    assert (att.values >= 0).all()  # exchange rules: a charge per position, never a credit


# -- marginal: the exact leave-one-out, through margin(..., attribution=True) ----------------------------


def _without(sc: dict, i: int) -> dict:
    out = copy.deepcopy(sc)
    del out["positions"][i]
    return out


def _scenario_dict(path):
    sc = yaml.safe_load(Path(path).read_text())
    span = sc.get("span") or {}
    if "source" in span:  # relative to the scenario file
        span["source"] = str((Path(path).parent / span["source"]).resolve())
    return sc


@pytest.mark.parametrize(
    "path, method",
    [
        ("span_calendar_spread.yaml", "span"),
        ("span_inter_commodity.yaml", "span"),
        ("pm_diversified_large_cap.yaml", "portfolio_margin"),
        ("cfd_two_fills.yaml", "cfd"),
        ("account_hk_margin_call.yaml", "account"),
    ],
)
def test_marginal_is_the_margin_without_the_position(path, method):
    sc = _scenario_dict(SCENARIOS / path)
    res = marginsim.margin(sc, methods=[method], attribution=True)
    ds = res[method]
    base = ds["maintenance"]
    positions = ds["position"].values
    rng = np.random.default_rng(3)
    for p in rng.choice(positions, size=min(2, positions.size), replace=False).tolist():
        acct = str(ds["attribution_account"].sel(position=p).values)
        other = marginsim.margin(_without(sc, int(p)), methods=[method])[method]["maintenance"]
        if acct in other["account"].values:
            want = base.sel(account=acct) - other.sel(account=acct)
        else:  # the account's only position: without it, no requirement
            want = base.sel(account=acct)
        got = ds["marginal"].sel(position=p)
        np.testing.assert_allclose(got.transpose(*want.dims).values, want.values, rtol=1e-9, atol=1e-6)
    # the contributions ride along, summing to the maintenance
    _assert_sums(res.inputs, res)


@settings(_SLOW, max_examples=2)
@given(scenario=scenarios(max_positions=5))
def test_marginal_on_random_mixed_books(scenario):
    res = marginsim.margin(scenario, attribution=True)
    for name, ds in res.items():
        p = int(ds["position"].values[0]) if ds.sizes.get("position") else None
        if p is None:
            continue
        acct = str(ds["attribution_account"].sel(position=p).values)
        rest = [q for i, q in enumerate(scenario["positions"]) if i != p and q["account"] == acct]
        if rest:
            other = marginsim.margin(_without(scenario, p), methods=[name])[name]["maintenance"]
            want = ds["maintenance"].sel(account=acct) - other.sel(account=acct)
        else:  # the account's only position: without it, no requirement
            want = ds["maintenance"].sel(account=acct)
        got = ds["marginal"].sel(position=p)
        np.testing.assert_allclose(got.values, want.values, rtol=1e-9, atol=1e-6)


def test_json_and_table_of_the_seed_example(capsys):
    path = str(SCENARIOS / "span_seed_example.yaml")
    assert main(["margin", path, "--attribution", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    rows = got["accounts"]["main"]["span"]["attribution"]
    assert [r["position"] for r in rows] == [0, 1]
    assert [r["contract"] for r in rows] == ["ABC-FUT", "ABC-P950"]
    assert [r["quantity"] for r in rows] == [1.0, 1.0]
    assert rows[0]["contribution"] == pytest.approx(6000.0, rel=1e-12)
    assert rows[0]["contribution"] + rows[1]["contribution"] == pytest.approx(
        got["accounts"]["main"]["span"]["maintenance"], rel=1e-12
    )
    # without the future the put alone: its loss at its own worst scenario less its value
    alone = marginsim.margin(_without(_scenario_dict(path), 0))["span"]["maintenance"].item()
    assert rows[0]["marginal"] == pytest.approx(609.3987942793 - alone, rel=1e-9)
    assert main(["margin", path, "--attribution"]) == 0
    table = capsys.readouterr().out
    assert "attribution" in table and "ABC-FUT" in table and "6,000.00" in table
    assert table.index("ABC-FUT") < table.index("ABC-P950")  # largest contribution first


def test_json_nests_grid_dims():
    sc = _scenario_dict(SCENARIOS / "span_seed_example.yaml")
    sc["grid"] = {"shift": [-0.05, 0.0, 0.05]}
    res = marginsim.margin(sc, attribution=True)
    rows = res.to_dict()["accounts"]["main"]["span"]["attribution"]
    assert len(rows[0]["contribution"]) == 3 and len(rows[0]["marginal"]) == 3
    m = res["span"]["maintenance"].isel(account=0).values
    np.testing.assert_allclose(np.add(rows[0]["contribution"], rows[1]["contribution"]), m, rtol=1e-12)


@pytest.mark.parametrize("path", ["overview_mixed_book.yaml", "account_hk_margin_call.yaml"])
def test_chunk_by_chunk_equals_in_one_piece(path, capsys):
    """Attribution is per account: chunks of accounts compute it on their own (--chunks)."""
    whole = marginsim.margin(SCENARIOS / path, attribution=True).to_dict()
    chunked = marginsim.margin(SCENARIOS / path, chunks=1, attribution=True).to_dict()
    assert chunked["accounts"].keys() == whole["accounts"].keys()
    for acct, methods in whole["accounts"].items():
        for name, obj in methods.items():
            got = chunked["accounts"][acct][name]["attribution"]
            want = obj["attribution"]
            assert [r["position"] for r in got] == [r["position"] for r in want]
            assert [r["contract"] for r in got] == [r["contract"] for r in want]
            for g, w in zip(got, want):
                np.testing.assert_allclose(g["contribution"], w["contribution"], rtol=1e-9, atol=1e-9)
                np.testing.assert_allclose(g["marginal"], w["marginal"], rtol=1e-9, atol=1e-9)
    assert main(["margin", str(SCENARIOS / path), "--attribution", "--chunks", "1", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["accounts"].keys() == whole["accounts"].keys()


def test_a_method_without_a_rule_gets_marginal_only():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import flat_rate
    finally:
        sys.path.pop(0)
    spec = marginsim.registry.register_method(flat_rate.SPEC)
    try:
        res = marginsim.margin(
            SCENARIOS / "pm_diversified_large_cap.yaml", methods=["flat_rate"], attribution=True
        )
        ds = res["flat_rate"]
        assert "contribution" not in ds and "no allocation rule" in ds.attrs["attribution_note"]
        rows = res.to_dict()["accounts"]
        some = next(iter(rows.values()))["flat_rate"]["attribution"]
        assert all(r["contribution"] is None for r in some)
        # flat rate x gross notional: the marginal of a position is its own rate x notional
        total = np.zeros(ds.sizes["account"])
        acct = pd.Index(ds["account"].values).get_indexer(ds["attribution_account"].values)
        np.add.at(total, acct, ds["marginal"].values)
        np.testing.assert_allclose(total, ds["maintenance"].values, rtol=1e-9)
        assert (ds["marginal"].values > 0).all() and ds.sizes["position"] == res.inputs.book.sizes["position"]
    finally:
        marginsim.registry.unregister_method(spec.name)


# -- a second leave-one-out, the reference of marginsim.attribution.leave_one_out ----------------


def leave_one_out_by_rank(
    inputs: Inputs, name: str, ds: xr.Dataset, rows: np.ndarray, *, engine: str = "auto"
) -> xr.DataArray:
    """:func:`leave_one_out` another way (the test's reference for it): the book's own accounts, one
    position left out of each, margined by the method's registered ``run`` in batches.

    Batch ``r`` holds every account whose ``r``-th position (in book order) is
    one of ``rows``, without that position (the accounts keep their names, so every per-account
    setting of the scenario applies as in the book). The batches margin sum(n - 1) rows over the
    accounts' n positions each, as many batches as the largest account has positions.

    Parameters
    ----------
    inputs
        The in-memory data model.
    name
        The method.
    ds
        Its result on ``inputs`` (``maintenance``: dims ``account`` and grid dims).
    rows
        ``(N,)`` rows of ``inputs.book`` (position indices) to leave out, one at a time.
    engine
        Pricing engine.

    Returns
    -------
    xarray.DataArray
        Dims ``position`` (length N, no coord) and the grid dims of ``maintenance``
        [reporting currency]; an account without its only position has no requirement.
    """
    spec = REGISTRY[name]
    book = inputs.book
    base = ds["maintenance"].transpose("account", ...)
    gd = [str(d) for d in base.dims[1:]]
    gshape = tuple(base.sizes[d] for d in gd)
    n_g = int(np.prod(gshape)) if gshape else 1
    account = book["account_index"].values.astype(np.int64)
    n = account.size
    # rank of each book row within its account (book order)
    order = np.argsort(account, kind="stable")
    first = np.searchsorted(account[order], np.arange(book.sizes["account"]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first[account[order]]
    out_of = np.full(n, -1, dtype=np.int64)
    out_of[rows] = np.arange(rows.size)
    names = np.asarray(as_names(book["account_name"].values))
    base_values = base.values.reshape(base.sizes["account"], n_g)
    base_at = pd.Index(np.asarray(ds["account"].values).astype(str)).get_indexer(names.astype(str))
    marginal = np.zeros((rows.size, n_g))
    ranks = np.unique(rank[rows])
    for r in ranks.tolist():  # batches of accounts (one position left out of each), not positions
        drop = np.flatnonzero((rank == r) & (out_of >= 0))
        in_batch = np.zeros(book.sizes["account"], dtype=bool)
        in_batch[account[drop]] = True
        keep = np.flatnonzero(in_batch[account])
        keep = keep[rank[keep] != r]
        without = np.zeros((drop.size, n_g))
        if keep.size:
            m = spec.run(_book_rows(inputs, keep), engine=engine, **spec.lean)["maintenance"]
            for d, size in zip(gd, gshape):
                if d not in m.dims:
                    m = m.expand_dims({d: size})
            m = m.transpose("account", *gd)
            at = pd.Index(np.asarray(m["account"].values).astype(str)).get_indexer(
                names[account[drop]].astype(str)
            )
            values = m.values.reshape(m.sizes["account"], n_g)
            without = np.where((at >= 0)[:, None], values[np.maximum(at, 0)], 0.0)
        marginal[out_of[drop]] = base_values[base_at[account[drop]]] - without
    return xr.DataArray(marginal.reshape((rows.size, *gshape)), dims=("position", *gd))


def _book_rows(inputs: Inputs, rows: np.ndarray) -> Inputs:
    """Inputs whose book is the rows ``rows`` of the book: the same accounts (by name) and
    scenario, with every account of the book known (a method's section may name an account that
    holds none of these rows, e.g. ``portfolio_margin.cash``)."""
    book = inputs.book
    k = np.asarray(book["contract_index"].values[rows], dtype=np.int64)
    new_book = book_from_arrays(
        inputs.contracts,
        contract=k,
        quantity=book["quantity"].values[rows],
        account=book["account_name"].values[book["account_index"].values[rows]],
    )
    sc = inputs.scenario
    if inputs.universe is not None or "open_price" in book or "opened" in book:
        # the rows keep their position numbers (which index the scenario's positions) and the
        # book's order data
        new_book = new_book.assign_coords(position=book["position"].values[rows])
        for name in ("open_price", "opened"):
            if name in book:
                new_book[name] = ("position", book[name].values[rows])
    elif len(sc.position_table()) == book.sizes["position"]:
        sc = sc.with_position_rows(rows)  # the scenario's positions, numbered as the new book's
    universe = Universe(np.unique(k), inputs.book_accounts())
    return dataclasses.replace(inputs, book=new_book, scenario=sc, universe=universe)


@settings(_SLOW, max_examples=2)
@given(scenario=scenarios(max_positions=6))
def test_the_two_leave_one_outs_agree(scenario):
    """As variants of the book (margin_variants: renamed accounts inheriting their data) and as the
    book's own accounts less one position each (leave_one_out_by_rank): the same figures."""
    inputs = marginsim.load(scenario)
    res = marginsim.margin(inputs)
    rows = np.arange(inputs.book.sizes["position"])
    for name, ds in res.items():
        a = leave_one_out(inputs, name, ds, rows)
        b = leave_one_out_by_rank(inputs, name, ds, rows)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-9, atol=1e-6, err_msg=name)


def test_a_stored_book_gets_its_attribution_chunk_by_chunk(tmp_path):
    path = SCENARIOS / "overview_mixed_book.yaml"
    inputs = marginsim.load(path)
    store = write_book(tmp_path / "book.zarr", inputs)
    whole = marginsim.margin(inputs, attribution=True)
    stored = marginsim.margin(path, book=store, chunks=1, attribution=True)
    for name, ds in whole.items():
        got = stored[name]
        assert list(got["position"].values) == list(ds["position"].values)
        np.testing.assert_allclose(got["contribution"].values, ds["contribution"].values, rtol=1e-9)
        np.testing.assert_allclose(got["marginal"].values, ds["marginal"].values, rtol=1e-9)


@settings(_SLOW, max_examples=3)
@given(data=st.data())
def test_spans_own_leave_one_out_equals_the_generic_one(data):
    """SPAN's marginal re-margins only the position's linked combined commodities (joined by
    inter-commodity spreads); the generic leave-one-out re-margins the whole account: the same."""
    path = data.draw(
        st.sampled_from(["span_takasbank.yaml", "span_inter_commodity.yaml", "span_calendar_spread.yaml"])
    )
    base = marginsim.load(SCENARIOS / path)
    ids = base.contracts["contract"].values
    n = data.draw(st.integers(1, 25))
    pick = data.draw(st.lists(st.integers(0, ids.size - 1), min_size=n, max_size=n))
    qty = data.draw(st.lists(st.integers(-30, 30).filter(bool), min_size=n, max_size=n))
    acct = data.draw(st.lists(st.sampled_from(["x", "y"]), min_size=n, max_size=n))
    inputs = base.with_book(ids[pick], np.asarray(qty, dtype=float), acct)
    ds = marginsim.margin(inputs, methods=["span"], attribution=True)["span"]
    rows = np.searchsorted(inputs.book["position"].values, ds["position"].values)
    generic = leave_one_out(inputs, "span", ds, rows)
    np.testing.assert_allclose(ds["marginal"].values, generic.values, rtol=1e-9, atol=1e-6)


# -- the SPAN file features: super spreads, F charges, WFPR methods, rate classes, exposure margin -----

SPAN_DATA = ROOT / "tests" / "data" / "span"
SPAN_FEATURE_FILES = {
    "inter_spreads.xml": ("EUR", "2024-01-02", {}),
    "exposure_nse.xml": ("INR", "2024-01-02", {"exposure_margin": {"futures": 0.03, "options": 0.02}}),
    "rate_classes_initial.xml": ("USD", "2026-01-05", {}),
    "tiers_spot.xml": ("EUR", "2026-01-05", {}),
    "period_legs.xml": ("INR", "2026-01-05", {}),
}


def _span_feature_book(name, tmp_path, seed):
    currency, as_of, span = SPAN_FEATURE_FILES[name]
    source = SPAN_DATA / name
    if name == "rate_classes_initial.xml":  # rate_classes.xml with its class 1 initial (isM 0)
        text = (
            (SPAN_DATA / "rate_classes.xml").read_text(encoding="utf-8")
            .replace("<r>1</r><isCust>1</isCust><acctType>S</acctType><isM>1</isM>", "<r>1</r><isCust>1</isCust><acctType>S</acctType><isM>0</isM>")
            .replace("<r>2</r><isCust>1</isCust><acctType>S</acctType><isM>0</isM>", "<r>2</r><isCust>1</isCust><acctType>S</acctType><isM>1</isM>")
            .replace("<val>1.25</val>", "<val>0.8</val>")
        )  # fmt: skip
        source = tmp_path / name
        source.write_text(text, encoding="utf-8")
    base = marginsim.load(
        {"name": name, "as_of": as_of, "currency": currency, "span": {"source": str(source), **span}}
    )
    rng = np.random.default_rng(seed)
    ids = base.contracts["contract"].values
    n = 40
    pick = rng.integers(0, ids.size, n)
    qty = (rng.integers(1, 6, n) * rng.choice([-1, 1], n)).astype(float)
    acct = rng.choice(["x", "y", "z", "w"], n)
    return base.with_book(ids[pick], qty, acct)


@pytest.mark.parametrize("name", list(SPAN_FEATURE_FILES))
def test_span_contributions_sum_and_own_marginal_on_the_feature_files(name, tmp_path):
    inputs = _span_feature_book(name, tmp_path, seed=len(name))
    res = marginsim.margin(inputs, methods=["span"], attribution=True)
    assert _assert_sums(inputs, res) == ["span"]
    ds = res["span"]
    rows = np.searchsorted(inputs.book["position"].values, ds["position"].values)
    generic = leave_one_out(inputs, "span", ds, rows)
    np.testing.assert_allclose(ds["marginal"].values, generic.values, rtol=1e-9, atol=1e-6)
    if name == "inter_spreads.xml":
        assert float(np.abs(ds["super_spread_credit"]).sum()) > 0
    if name == "exposure_nse.xml":
        assert float(ds["exposure_margin"].sum()) > 0
    if name == "rate_classes_initial.xml":
        assert (ds["maintenance"].values < ds["initial"].values).any()


def test_span_exposure_margin_goes_to_its_contract_by_hand():
    """exposure_nse.xml (test_span_inter's figures): +50 NIF future (exposure 0.03 x 50 x 20,100 =
    30,150) and -50 NIF call (0.02 x 50 x 20,000 = 20,000), SPAN risk 99,000 - NOV (-7,500)."""
    currency, as_of, span = SPAN_FEATURE_FILES["exposure_nse.xml"]
    inputs = marginsim.load(
        {"name": "nse", "as_of": as_of, "currency": currency,
         "span": {"source": str(SPAN_DATA / "exposure_nse.xml"), **span}}
    ).with_book(["NIF:F:20240328", "NIF:C:20240328:20000", "NIF:F:20240328"], [30.0, -50.0, 20.0])  # fmt: skip
    ds = marginsim.margin(inputs, methods=["span"])["span"]
    assert float(ds["maintenance"].sum()) == pytest.approx(156_650.0, abs=1e-6)
    att = REGISTRY["span"].attribution(inputs, ds)
    assert float(att["contribution"].sum()) == pytest.approx(156_650.0, abs=1e-6)
    # the future's 30,150 split 30:20 between its two rows, the call's 20,000 to the call
    np.testing.assert_allclose(att["exposure_part"].values, [18_090.0, 20_000.0, 12_060.0], rtol=1e-12)
    np.testing.assert_allclose(
        att["contribution"].values - att["exposure_part"].values,
        att["risk_part"].values - att["option_value"].values,
        rtol=1e-12,
    )


# -- the leave-one-out books of SPAN's own marginal ---------------------------------------------------


def test_variant_rows_by_hand():
    """Group 0 holds rows 0, 1, 3 (contracts 5, 5, 7), group 1 row 2: each row left out in turn."""
    key = np.array([0, 0, 1, 0])
    qty = np.array([1.0, 2.0, 4.0, 8.0])
    contract = np.array([5, 5, 9, 7])
    order = np.lexsort((contract, key))  # rows 0, 1, 3, 2
    engines = ["numpy"] + (["numba"] if numba_available() else [])
    for engine in engines:
        v, k, q = variant_rows(key, order, contract, qty, False, engine)
        assert v.tolist() == [0, 0, 1, 1, 2, 2]  # variant 3 (row 2, alone) is empty
        assert k.tolist() == [5, 7, 5, 7, 5, 5]
        assert q.tolist() == [2.0, 8.0, 1.0, 8.0, 1.0, 2.0]
        v, k, q = variant_rows(key, order, contract, qty, True, engine)  # contract 5 netted
        assert v.tolist() == [0, 0, 1, 1, 2]
        assert k.tolist() == [5, 7, 5, 7, 5]
        assert q.tolist() == [2.0, 8.0, 1.0, 8.0, 3.0]


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_variant_rows_engines_agree():
    rng = np.random.default_rng(3)
    n = 3000
    key = rng.integers(0, 400, n)
    contract = rng.integers(0, 30, n)
    qty = rng.normal(size=n) * 10.0
    for net, order in [(False, np.argsort(key, kind="stable")), (True, np.lexsort((contract, key)))]:
        a = variant_rows(key, order, contract, qty, net, "numpy")
        b = variant_rows(key, order, contract, qty, net, "numba")
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)  # the same rows and sums, bit for bit


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_span_attribution_on_the_margin_runs_plan_equals_a_new_plan():
    """The attribution of a model-priced book takes the plan of the margin run of that result
    (once); made again, the plan gives the same numbers, bit for bit."""
    base = marginsim.load(SCENARIOS / "span_inter_commodity.yaml")
    ids = base.contracts["contract"].values
    rng = np.random.default_rng(5)
    n = 60
    inputs = base.with_book(
        ids[rng.integers(0, ids.size, n)], rng.integers(-9, 10, n).astype(float), rng.choice(["x", "y"], n)
    )
    ds = marginsim.margin(inputs, methods=["span"], engine="numba")["span"]
    kept = len(inputs.derived)
    first = span_attribution(inputs, ds, engine="numba")  # on the run's plan, taken out
    assert len(inputs.derived) == kept - 1
    again = span_attribution(inputs, ds, engine="numba")  # on a new plan
    for name in ("contribution", "marginal"):
        np.testing.assert_array_equal(first[name].values, again[name].values)


# -- SPAN's incremental leave-one-out: the numbers of re-margining each variant's linked set ---------

TAKAS = ROOT.parent / "shared" / "data" / "span" / "takas.spn"


def _old_and_new(inputs, monkeypatch):
    """SPAN's attribution with the incremental leave-one-out and with the variants re-margined."""
    calls = []

    def counted(*args, **kwargs):
        out = W_risk_without(*args, **kwargs)
        calls.append(out.shape)
        return out

    W_risk_without = W.risk_without
    monkeypatch.setattr(W, "risk_without", counted)
    ds = marginsim.margin(inputs, methods=["span"], engine="numba")["span"]
    monkeypatch.setattr(span_att, "INCREMENTAL", True)
    new = span_attribution(inputs, ds, engine="numba")
    assert calls == [(ds.sizes["position"], int(np.prod([ds.sizes[d] for d in ds["maintenance"].dims[1:]])))]
    monkeypatch.setattr(span_att, "INCREMENTAL", False)
    old = span_attribution(inputs, ds, engine="numba")
    assert len(calls) == 1  # the variants re-margined
    return ds, new, old


@pytest.mark.skipif(not numba_available() or not TAKAS.exists(), reason="numba and takas.spn needed")
@pytest.mark.parametrize("repeated", [False, True])
def test_incremental_leave_one_out_is_the_variants_margin_bit_for_bit_on_takas(repeated, monkeypatch):
    """takas.spn (inter spreads, intra spreads, short option minimum), accounts of 1 to 60 rows,
    with repeated contracts (netted variants) or without (rows in book order)."""
    base = marginsim.load(
        {"name": "takas", "as_of": "2016-05-17", "currency": "TRY", "span": {"source": str(TAKAS)}}
    )
    rng = np.random.default_rng(21 + repeated)
    ids = base.contracts["contract"].values
    # a few underlyings' contracts, so that linked sets hold several positions
    pool = ids[np.flatnonzero(pd.Series(ids).str.match(r"^(AKBNK|GARAN|XU030|USDTRY|ISCTR)").values)]
    sizes = np.array([60, 25, 8, 1, 40, 2])
    n = int(sizes.sum())
    pick = rng.choice(pool, n, replace=repeated)
    qty = (rng.integers(1, 11, n) * rng.choice([-1, 1], n)).astype(float)
    acct = np.repeat([f"a{i}" for i in range(sizes.size)], sizes)
    inputs = base.with_book(pick, qty, acct)
    ds, new, old = _old_and_new(inputs, monkeypatch)
    np.testing.assert_array_equal(new["marginal"].values, old["marginal"].values)
    np.testing.assert_array_equal(new["contribution"].values, old["contribution"].values)
    # the marginal is the account's requirement without the position (the generic leave-one-out)
    rows = np.searchsorted(inputs.book["position"].values, new["position"].values)
    generic = leave_one_out(inputs, "span", ds, rows)
    np.testing.assert_allclose(new["marginal"].values, generic.values, rtol=1e-9, atol=1e-6)
    assert float(np.abs(ds["inter_spread_credit"]).sum()) > 0
    assert (new["marginal"].values != 0).any()


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
@pytest.mark.parametrize(
    "name", ["exposure_nse.xml", "rate_classes_initial.xml", "tiers_spot.xml", "period_legs.xml"]
)
def test_incremental_leave_one_out_is_the_variants_margin_bit_for_bit_on_the_feature_files(
    name, tmp_path, monkeypatch
):
    inputs = _span_feature_book(name, tmp_path, seed=3 + len(name))
    _, new, old = _old_and_new(inputs, monkeypatch)
    np.testing.assert_array_equal(new["marginal"].values, old["marginal"].values)


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_incremental_leave_one_out_is_the_variants_margin_bit_for_bit_with_a_grid(monkeypatch):
    base = marginsim.load(SCENARIOS / "span_inter_commodity.yaml")
    ids = base.contracts["contract"].values
    rng = np.random.default_rng(8)
    n = 50
    inputs = base.with_book(
        ids[rng.integers(0, ids.size, n)],
        rng.integers(-9, 10, n).astype(float),
        rng.choice(["x", "y", "z"], n),
    )
    ds, new, old = _old_and_new(inputs, monkeypatch)
    np.testing.assert_array_equal(new["marginal"].values, old["marginal"].values)
    assert float(np.abs(ds["inter_spread_credit"]).sum()) > 0
