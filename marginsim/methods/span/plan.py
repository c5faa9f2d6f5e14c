"""The plan of a SPAN book: everything the margin needs that does not depend on the positions.

Contracts held and in scope, their combined commodities, risk arrays and composite deltas as
kernel tables, contract months, intra- and inter-commodity spread tables, short option minimum
rates, initial/maintenance ratios, FX rates and net option values per contract. A clearing-house
file with every definition given has one plan of all its contracts, made once per
:class:`~marginsim.model.Inputs` and shared by every book margined against it (:func:`_file_plan`).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ... import scenario_sets
from ...errors import InputError
from ...kernels import span as K
from ...kernels import span_pairs as SP
from ...model import Inputs, flat_grid
from ...params.span import InterSpread, SpanParams
from .arrays import _Groups, _resolve_groups, _risk_arrays, _scenario_arrays, _take, in_scope

__all__: list[str] = []


@dataclass
class _Plan:
    """Everything SPAN needs that does not depend on the positions: contracts held, combined
    commodities, risk arrays and deltas as kernel tables, spread definitions, rates."""

    contracts: xr.Dataset  # the contracts held and in scope
    held: np.ndarray  # their indices into inputs.contracts
    groups: _Groups
    arrays: xr.Dataset  # risk_array, composite_delta (xarray, for the result)
    gd: list[str]
    gshape: tuple[int, ...]
    risk_array: np.ndarray  # (K, G, S) [currency per long contract, losses positive]
    delta: np.ndarray  # (K, G) composite delta, NaN -> 0
    scenario_pair: np.ndarray  # (S,) 0-based pair of each scenario
    time_scenarios: np.ndarray  # 0-based scenarios of the time risk
    month_idx: np.ndarray  # (K,) month of each contract on its CC's month axis
    n_months: np.ndarray  # (C,) months per CC
    intra: SP.IntraTable | None
    inter: SP.InterTable | None
    super_: SP.InterTable | None  # super inter-commodity spreads (before the intra spreads)
    wfpr_mode: np.ndarray  # (C,) 0 normal, 1 scan range, 2 scan range cap
    wfpr_scan: np.ndarray  # (C,) price scan range per delta of the scan-range methods [CC currency]
    exposure: np.ndarray | None  # (K, 2) exposure margin per long / short contract [reporting currency]
    is_call: np.ndarray
    is_put: np.ndarray
    som_rate: np.ndarray  # (C,) [currency per short option]
    som_net: np.ndarray  # (C,) bool
    ratio: np.ndarray  # (C,) initial / maintenance
    initial_class: np.ndarray  # (C,) bool: the CC risk is the initial requirement (rate_class)
    fx: np.ndarray  # (C,) CC currency -> reporting currency
    nov: np.ndarray  # (K, G) net option value per long contract [reporting currency]
    local: np.ndarray  # (inputs' contracts,) index of each contract in the plan, -1 if not in it
    uniform: bool  # every combined commodity has the same scenario pairs and time-risk scenarios

    @property
    def cc_of_k(self) -> np.ndarray:
        return self.groups.index_of_contract

    @property
    def n_cc(self) -> int:
        return len(self.groups.names)

    @property
    def n_g(self) -> int:
        return int(np.prod(self.gshape)) if self.gshape else 1


def _plan(inputs: Inputs, params: SpanParams, held: np.ndarray, engine) -> _Plan:
    """The plan of the contracts ``held`` (sorted indices into ``inputs.contracts``)."""
    sc = inputs.scenario
    contracts = _take(inputs.contracts, held, inputs.contracts.sizes["contract"])
    groups = _resolve_groups(inputs, contracts, params)
    n_c = len(groups.names)
    gd = list(inputs.grid_dims)
    scen = _scenario_arrays(groups, params)
    market: dict = {}  # the contracts' level and vol, when the risk arrays compute them
    arrays = _risk_arrays(inputs, contracts, groups, params, engine, scen, scan_range=False, market=market)
    # a grid dim's size: from the risk arrays, else the market, else the grid
    gshape = tuple(
        int(arrays.sizes[d] if d in arrays.dims else (inputs.market.sizes.get(d) or inputs.grid.sizes[d]))
        for d in gd
    )
    ra = flat_grid(arrays["risk_array"], ["contract", "scenario"], gd, gshape)  # (K, S, G)
    n_s = ra.shape[1]
    scen_pair = scen.pair[0] - 1 if n_c else np.arange(n_s)
    scen_pair = np.where(scen_pair < 0, np.arange(n_s), scen_pair)
    time_idx = scenario_sets.time_risk_indices(scen.price_move[0]) if n_c else np.array([0])
    moves = np.unique(scen.price_move, axis=0)
    uniform = bool((scen.pair == scen.pair[:1]).all()) and all(
        np.array_equal(scenario_sets.time_risk_indices(m), time_idx) for m in moves
    )

    # contract months on each combined commodity's month axis
    cc_of_k = groups.index_of_contract
    month = contracts["month"].values.astype(np.int64)
    cc_month, month_idx = _cc_months(cc_of_k, month, n_c)  # (CC, month) pairs, sorted by CC
    first = np.searchsorted(cc_month[:, 0], np.arange(n_c + 1))
    month_idx = month_idx.reshape(-1) - first[cc_of_k]
    n_months = np.diff(first)
    n_m = max(int(n_months.max(initial=1)), 1)

    cdelta = flat_grid(arrays["composite_delta"], ["contract"], gd, gshape)  # (K, G)
    uses_delta = np.array([bool(p.intra_spreads or p.spot) for p in groups.params], dtype=bool)
    inter_ccs = {leg.group for sp in (*params.inter_spreads, *params.super_spreads) for leg in sp.legs}
    uses_delta |= np.array([n in inter_ccs for n in groups.names], dtype=bool)
    nan_delta = np.isnan(cdelta).any(axis=1) & uses_delta[cc_of_k]
    if nan_delta.any():
        name = str(contracts["contract"].values[int(np.flatnonzero(nan_delta)[0])])
        raise InputError(
            "a composite_delta is needed for spreads (or a vol to compute it)",
            file=sc.file,
            key_path=("contracts", name, "composite_delta"),
        )

    # intra spreads (tiers as masks over the CC's months) and spot months, per combined commodity
    cc_spreads: list[list[K.Spread]] = []
    cc_spot: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    for c, p in enumerate(groups.params):
        months = cc_month[first[c] : first[c + 1], 1]
        real = np.zeros(n_m, dtype=bool)
        real[: len(months)] = True
        padded = np.zeros(n_m, dtype=np.int64)
        padded[: len(months)] = months
        tier_mask: dict[int | tuple[str, int], np.ndarray] = {0: real}  # tiers; ("month", YYYYMM) legs
        for t in p.tiers:
            lo, hi = t.months
            tier_mask[t.tier] = real & (padded >= lo) & (padded <= hi)
        # a period leg (SPAN pLeg) draws from its one month: a mask of that month (empty if the
        # book holds no contract of it), keyed apart from the tiers
        for sp in p.intra_spreads:
            for leg in sp.legs:
                if leg.month is not None and ("month", leg.month) not in tier_mask:
                    tier_mask[("month", leg.month)] = real & (padded == leg.month)
        spreads = []
        for sp in sorted(p.intra_spreads, key=lambda s: s.priority):
            legs = _merge_legs(
                [
                    (leg.tier if leg.month is None else ("month", leg.month), leg.side, leg.ratio)
                    for leg in sp.legs
                ]
            )
            spreads.append(
                K.Spread(sp.rate, [K.SpreadLeg(tier_mask[t], side, ratio) for t, side, ratio in legs])
            )
        cc_spreads.append(spreads)
        if p.spot is None:
            cc_spot.append(None)
        else:
            # per month of the CC's month axis: the spot rates of that month (0 where not spot)
            rs_m, ro_m = p.spot.rates()
            order = np.argsort(p.spot.months)
            spot_months = np.asarray(p.spot.months, dtype=np.int64)[order]
            at = np.minimum(np.searchsorted(spot_months, padded), spot_months.size - 1)
            is_spot = real & (spot_months[at] == padded)
            rs_at = np.asarray(rs_m, dtype=float)[order][at]
            ro_at = np.asarray(ro_m, dtype=float)[order][at]
            cc_spot.append((is_spot, np.where(is_spot, rs_at, 0.0), np.where(is_spot, ro_at, 0.0)))
    intra = None
    if any(cc_spreads) or any(s is not None for s in cc_spot):
        intra = SP.intra_table(cc_spreads, cc_spot, n_m)

    # inter and super spreads between the combined commodities of this book, in priority order
    gindex = {n: i for i, n in enumerate(groups.names)}
    inter_spreads, _ = _inter_spreads(params.inter_spreads, gindex)
    super_spreads, super_months = _inter_spreads(params.super_spreads, gindex)
    super_table = None
    if super_spreads:
        super_table = SP.inter_table(super_spreads)
        if any(m is not None for m in super_months):  # period legs: their month on the CC's month axis
            leg_month = np.full(len(super_months), -1, dtype=np.int64)
            for j, m in enumerate(super_months):
                if m is not None:
                    leg_c = int(super_table.leg_cc[j])
                    months_of_c = cc_month[first[leg_c] : first[leg_c + 1], 1]
                    pos = int(np.searchsorted(months_of_c, m))
                    found = pos < months_of_c.size and months_of_c[pos] == m
                    leg_month[j] = pos if found else SP.NO_MONTH
            super_table = dataclasses.replace(super_table, leg_month=leg_month)
    wfpr_mode = np.array([_WFPR_MODES[p.wfpr_method] for p in groups.params], dtype=np.int64)
    wfpr_scan = np.array([p.wfpr_scan_range or 0.0 for p in groups.params], dtype=float)

    # net option value per long contract of premium-style options, reporting currency
    premium = inputs.option_premium(contracts, engine=engine, **market)
    ccy_code, ccys = _factorize(contracts["currency"].values)
    contract_fx = np.array([sc.fx_rate(str(c), key_path="market") for c in ccys])[ccy_code]
    prem = premium.transpose("contract", ...)
    factor = contracts["multiplier"].values * contracts["premium_style"].values
    nov = prem.values * factor.reshape((-1,) + (1,) * (prem.ndim - 1))
    nov = np.where(np.isnan(nov), 0.0, nov) * contract_fx.reshape((-1,) + (1,) * (prem.ndim - 1))
    nov = xr.DataArray(nov, dims=prem.dims)
    is_option = contracts["is_option"].values
    is_call = contracts["is_call"].values
    exposure = None
    if params.exposure_margin is not None:
        exposure = _exposure(inputs, contracts, params, contract_fx)
    return _Plan(
        contracts=contracts,
        held=held,
        groups=groups,
        arrays=arrays,
        gd=gd,
        gshape=gshape,
        risk_array=np.ascontiguousarray(np.moveaxis(ra, 1, -1)),
        delta=np.nan_to_num(cdelta),
        scenario_pair=scen_pair,
        time_scenarios=time_idx,
        month_idx=month_idx,
        n_months=n_months,
        intra=intra,
        inter=SP.inter_table(inter_spreads) if inter_spreads else None,
        super_=super_table,
        wfpr_mode=wfpr_mode,
        wfpr_scan=wfpr_scan,
        exposure=exposure,
        is_call=is_call & is_option,
        is_put=~is_call & is_option,
        som_rate=np.array([0.0 if p.som is None else p.som.rate for p in groups.params]),
        som_net=np.array([p.som is not None and p.som.method == "net" for p in groups.params], dtype=bool),
        ratio=np.array([p.initial_ratio or params.initial_ratio for p in groups.params]),
        initial_class=np.array([p.rate_class == "initial" for p in groups.params], dtype=bool),
        fx=groups.fx,
        nov=flat_grid(nov, ["contract"], gd, gshape),
        local=_ranks(held, inputs.contracts.sizes["contract"]),
        uniform=uniform,
    )


#: Key of the cached whole-file plan in :attr:`Inputs.derived`.
_FILE_PLAN = "span.file_plan"


def _fingerprint(inputs: Inputs, params: SpanParams) -> tuple:
    """What a plan of ``inputs`` depends on besides the book: the contents of the contracts,
    market and grid, the SPAN parameters and the reporting currency and FX rates (a cached plan
    must not outlive an in-place change to any of them). About 0.3 ms for a 2,800-contract file."""
    sc = inputs.scenario
    parts: list = [params.model_dump_json(), sc.currency, tuple(sorted(sc.fx.items()))]
    for ds in (inputs.contracts, inputs.market, inputs.grid):
        for name, v in ds.variables.items():
            a = np.asarray(v.values)
            if a.dtype == object:
                try:
                    digest = hash(tuple(a.ravel().tolist()))
                except TypeError:  # an unhashable element: its text
                    digest = hash(repr(a.tolist()))
            else:
                digest = zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes())
            parts.append((name, a.shape, a.dtype.str, digest))
    return tuple(parts)


def _file_plan(inputs: Inputs, params: SpanParams, engine: str) -> tuple[np.ndarray, _Plan] | None:
    """``(scope, plan)`` of every contract in scope, for inputs from a clearing-house file with
    every definition given (risk arrays, composite deltas, option premiums) and no grid dims.

    Made once per :class:`~marginsim.model.Inputs` and kept in :attr:`Inputs.derived` (shared by
    :meth:`~marginsim.model.Inputs.with_book`): many books margined against one file share it.
    A book's result is the same as with a plan of the contracts it holds (a combined commodity,
    month or spread leg a book does not hold adds zeros, in the same order). ``None`` when a
    definition must be computed, or when a contract the book may not hold lacks something (an FX
    rate, ...): the plan of the held contracts then decides, with its errors.
    """
    if inputs.span_file is None or inputs.grid_dims:
        return None  # a scenario's own contracts, or a grid: planned book by book
    key = (_FILE_PLAN, engine)
    fingerprint = _fingerprint(inputs, params)
    hit = inputs.derived.get(key)
    if hit is not None and hit[0] == fingerprint:
        return hit[1]
    out = None
    scope = in_scope(inputs, params)
    c = inputs.contracts
    all_given = (
        not np.isnan(c["risk_array"].values[scope]).any()
        and not np.isnan(c["composite_delta"].values[scope]).any()
        and not np.isnan(c["price"].values[scope & c["is_option"].values]).any()
    )
    if all_given:
        try:
            plan = _plan(inputs, params, np.flatnonzero(scope), engine)
        except InputError:
            plan = None
        if plan is not None and plan.uniform:
            out = (scope, plan)
    inputs.derived[key] = (fingerprint, out)
    return out


def _cc_months(cc_of_k: np.ndarray, month: np.ndarray, n_c: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (combined commodity, month) pairs, sorted, and the pair of each contract.

    ``np.unique(cc * span + month, return_inverse=True)`` without sorting the contracts: the pairs
    are marked in a table of every (CC, month) cell when it is small (months from the first).
    """
    m0 = int(month.min()) if month.size else 0
    rel = month - m0
    span_m = int(rel.max(initial=0)) + 1
    key = cc_of_k * span_m + rel
    n_cells = n_c * span_m
    if n_cells <= max(4 * key.size, 1 << 16):
        mark = np.zeros(n_cells, dtype=bool)
        mark[key] = True
        uniq = np.flatnonzero(mark)
        rank = np.cumsum(mark, dtype=np.int64) - 1
        inverse = rank[key]
    else:
        uniq, inverse = np.unique(key, return_inverse=True)
    return np.stack([uniq // span_m, uniq % span_m + m0], axis=1), inverse.reshape(-1)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(values)``, at the cost of one comparison when every value is the same."""
    if values.size and (values == values[0]).all():
        return np.zeros(values.size, dtype=np.int64), values[:1]
    return pd.factorize(values)


def _ranks(chosen: np.ndarray, n: int) -> np.ndarray:
    """Position of each of ``n`` items among ``chosen`` (-1 where not chosen)."""
    out = np.full(n, -1, dtype=np.int64)
    out[chosen] = np.arange(chosen.size)
    return out


#: Codes of the weighted futures price risk methods in :attr:`_Plan.wfpr_mode`.
_WFPR_MODES = {"normal": 0, "scan_range": 1, "scan_range_cap": 2}


def _inter_spreads(
    spreads: list[InterSpread], gindex: dict[str, int]
) -> tuple[list[K.Spread], list[int | None]]:
    """Inter (or super) spreads whose every leg's combined commodity is in ``gindex``, in priority
    order, as kernel spreads: method W with the spread's credit rate and each leg's own rate; method
    F with rate 0 and the flat amount shared equally by the spread's CCs (minus: a positive amount
    is a charge). Legs on the same CC, month and side are merged (ratios added; the first leg's
    rate). Also the month ``YYYYMM`` of each leg, flat in leg order (None: all the CC's months)."""
    out = []
    months: list[int | None] = []
    for isp in sorted(spreads, key=lambda s: s.priority):
        if not all(leg.group in gindex for leg in isp.legs):
            continue  # a leg's combined commodity is not in this book: no spread can form
        merged: dict[tuple[int, str, int | None], list] = {}
        for leg in isp.legs:
            key = (gindex[leg.group], leg.side, leg.month)
            if key in merged:
                merged[key][0] += leg.ratio
            else:
                merged[key] = [leg.ratio, leg.credit_rate]
        months.extend(m for (_, _, m) in merged)
        if isp.method == "F":
            assert isp.flat_rate is not None
            share = -isp.flat_rate / len({leg.group for leg in isp.legs})
            first_of_cc: set[int] = set()
            legs = []
            for (c, side, _), (ratio, _) in merged.items():
                legs.append(K.SpreadLeg(c, side, ratio, 0.0, 0.0 if c in first_of_cc else share))
                first_of_cc.add(c)
            out.append(K.Spread(0.0, legs))
        else:
            rate = 0.0 if isp.credit_rate is None else isp.credit_rate
            legs = [K.SpreadLeg(c, side, ratio, r) for (c, side, _), (ratio, r) in merged.items()]
            out.append(K.Spread(rate, legs))
    return out, months


def _exposure(inputs: Inputs, contracts: xr.Dataset, params: SpanParams, contract_fx: np.ndarray) -> np.ndarray:
    """Exposure margin per long and per short contract, shape ``(K, 2)`` [reporting currency] (charged
    on the net position of each account in each contract).

    A future's notional is its price (else its underlying's) x multiplier; an option's is its
    underlying's price x multiplier, and only a short option carries it. The rate is the
    ``exposure_margin`` rate of the contract's class (``futures`` / ``options``) for its combined
    commodity (``groups``), else the section's, else 0. Prices are the base prices (no grid shift).
    """
    em = params.exposure_margin
    assert em is not None
    under = inputs.market["base_price"].values[contracts["underlying_index"].values]
    is_option = contracts["is_option"].values
    is_future = contracts["type"].values == "future"
    own = contracts["price"].values
    price = np.where(is_future & np.isfinite(own), own, under)
    notional = price * contracts["multiplier"].values * contract_fx
    group = contracts["group"].values

    def rates(cls: str) -> np.ndarray:
        top = getattr(em, cls) or 0.0
        table = {g: getattr(r, cls) for g, r in em.groups.items() if getattr(r, cls) is not None}
        if not table:
            return np.full(group.size, top)
        names = np.array(list(table), dtype=object)
        hit = np.isin(group, names)
        values = np.full(group.size, top)
        if hit.any():
            values[hit] = pd.Series(table).reindex(group[hit]).to_numpy(dtype=float)
        return values

    per = np.where(is_future, rates("futures"), np.where(is_option, rates("options"), 0.0)) * notional
    per = np.where(np.isfinite(per), per, 0.0)
    return np.stack([np.where(is_option, 0.0, per), per], axis=1)


def _merge_legs(legs: list[tuple]) -> list[tuple]:
    """Legs on the same tier (or CC) and side draw from one pool: merge them by adding ratios."""
    merged: dict[tuple, float] = {}
    for key, side, ratio in legs:
        merged[(key, side)] = merged.get((key, side), 0.0) + ratio
    return [(key, side, ratio) for (key, side), ratio in merged.items()]


def _joined_sets(n_cc: int, tables: Sequence[SP.InterTable | None]) -> np.ndarray:
    """``(C,)`` int64: the set of each combined commodity, CCs joined by the spreads of ``tables``
    (the legs of one spread) in one set, the others alone; the risk of one set does not depend
    on the positions of another."""
    present = [t for t in tables if t is not None and t.n_spreads]
    if n_cc == 0 or not present:
        return np.arange(n_cc, dtype=np.int64)
    # scipy is imported here, on a what-if or an attribution with spreads only: at module level it
    # would cost every margin run (the methods are imported together) about 0.2 s
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    leg_cc = np.concatenate([t.leg_cc for t in present])
    first = np.concatenate(  # each leg joined to its spread's first
        [t.leg_cc[t.leg_ptr[:-1]][np.repeat(np.arange(t.n_spreads), np.diff(t.leg_ptr))] for t in present]
    )
    graph = sparse.coo_matrix((np.ones(first.size), (first, leg_cc)), shape=(n_cc, n_cc))
    return connected_components(graph, directed=False)[1].astype(np.int64)


#: Key of the plan of the last book margined (model-priced books) in :attr:`Inputs.derived`.
_RUN_PLAN = "span.run_plan"


def _keep_run_plan(
    inputs: Inputs,
    params: SpanParams,
    eng: str,
    scope: np.ndarray,
    plan: _Plan,
    maintenance: np.ndarray,
    netted: bool,
) -> None:
    """Keep the plan a margin run of ``inputs.book`` was made on, for that result's attribution
    (:func:`_run_plan`): one slot per :class:`~marginsim.model.Inputs`, replaced by the next run,
    emptied when the attribution takes it. ``maintenance`` is the run's ``(A, G)`` array (the
    result's ``maintenance`` is a view of it: it names the result); ``netted``: the book had
    repeated (account, contract) rows."""
    inputs.derived[_RUN_PLAN] = (inputs.book, params, eng, maintenance, scope, plan, netted)


def _run_plan(
    inputs: Inputs, params: SpanParams, eng: str, maintenance: np.ndarray
) -> tuple[np.ndarray, _Plan, bool] | None:
    """``(scope, plan, netted)`` kept by the margin run whose result's ``maintenance`` is
    ``maintenance``, of the same book, parameters and resolved engine ``eng`` (then taken out of
    the slot); else ``None`` (the plan is made again: the same numbers)."""
    hit = inputs.derived.get(_RUN_PLAN)
    if hit is None:
        return None
    book, kept_params, kept_eng, kept_maintenance, scope, plan, netted = hit
    if (
        book is not inputs.book
        or kept_eng != eng
        or kept_params != params
        or not np.may_share_memory(kept_maintenance, maintenance)  # kept alive: not reused
    ):
        return None
    del inputs.derived[_RUN_PLAN]
    return scope, plan, netted
