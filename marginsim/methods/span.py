"""The SPAN method: an xarray wrapper over the numpy kernels of :mod:`marginsim.kernels.span`.

Steps (``spec/span.md``): risk arrays (model or given), scanning risk per combined commodity and
account, intra-commodity spread charge, spot-month charge, inter-commodity spread credit, short
option minimum, net option value, account requirement (maintenance and initial). Accounts,
combined commodities and grid dims are array axes: nothing loops over positions, accounts,
scenarios or grid points. Loops run over parameter definitions only (combined commodities and
their spread definitions).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import xarray as xr

from .. import scenario_sets
from ..errors import InputError
from ..kernels import pricing
from ..kernels import span as K
from ..kernels import span_pairs as SP
from ..kernels.scan import revalue_scan
from ..model import DAYS_PER_YEAR, Inputs, _as_names, flat_grid
from ..params.span import CombinedCommodityParams, SpanParams

__all__ = ["span_margin", "risk_arrays"]


@dataclass
class _Groups:
    names: list[str]
    params: list[CombinedCommodityParams]
    index_of_contract: np.ndarray  # combined commodity index of each held contract
    currency: list[str]
    fx: np.ndarray


def in_scope(inputs: Inputs, params: SpanParams) -> np.ndarray:
    """Which contracts SPAN margins (bool per contract).

    Futures, options on futures, contracts with a given risk array (clearing-house files: their
    physicals and options on the physical), and any contract of a combined commodity that the
    scenario gives SPAN parameters for. Stocks, CFDs and stock options outside those are left to
    the other methods.
    """
    c = inputs.contracts
    on_future = c["model"].values == pricing.BLACK76
    given = ~np.isnan(c["risk_array"].values).any(axis=1)
    named = np.isin(c["group"].values.astype(str), list(params.combined_commodities))
    return (c["type"].values == "future") | (c["is_option"].values & on_future) | given | named


def _held_contracts(inputs: Inputs, scope: np.ndarray | None = None) -> np.ndarray:
    """Contracts held (by the whole book when ``inputs.universe`` is set: the result's ``contract``
    and ``group`` coords are then the same for every chunk of accounts)."""
    n = inputs.contracts.sizes["contract"]
    held = np.zeros(n, dtype=bool)
    held[inputs.held_contracts()] = True
    if scope is not None:
        held &= scope
    return np.flatnonzero(held)


def _take(obj, idx: np.ndarray, size: int):
    """``obj.isel(contract=idx)``, skipped when ``idx`` is every contract in order (large books)."""
    if idx.size == size:
        return obj
    return obj.isel(contract=idx)


def _resolve_groups(inputs: Inputs, contracts: xr.Dataset, params: SpanParams) -> _Groups:
    sc = inputs.scenario
    codes, uniq = pd.factorize(contracts["group"].values)  # groups in order of first appearance
    names = [str(n) for n in uniq]
    first = np.zeros(len(names), dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.size)[::-1]
    ccp = [params.combined_commodities.get(n, CombinedCommodityParams()) for n in names]
    ccy_of_contract = contracts["currency"].values
    currency = [p.currency or str(ccy_of_contract[first[i]]) for i, p in enumerate(ccp)]
    fx = np.array(
        [sc.fx_rate(c, key_path=f"span.combined_commodities.{n}.currency") for n, c in zip(names, currency)]
    )
    return _Groups(names, ccp, codes.astype(np.int64), currency, fx)


@dataclass
class _Scenarios:
    """Scenario set per combined commodity, arrays of shape (group, scenario): price and vol
    moves [scan ranges], weights, 1-based pairs (0 = none)."""

    price_move: np.ndarray
    vol_move: np.ndarray
    weight: np.ndarray
    pair: np.ndarray


def _scenario_arrays(groups: _Groups, params: SpanParams) -> _Scenarios:
    """Scenario set per combined commodity.

    The user's (or clearing-house file's) set is shared by every combined commodity; otherwise
    each combined commodity gets the 16 SPAN scenarios with its own extreme move and cover fraction
    (sets with equal parameters are built once).
    """
    if params.scenario_set is not None:
        pts = params.scenario_set
        uniq = [
            (
                np.array([p.price for p in pts], dtype=float),
                np.array([p.vol for p in pts], dtype=float),
                np.array([p.weight for p in pts], dtype=float),
                np.array([p.pair or 0 for p in pts], dtype=np.int64),
            )
        ]
        keys = [0] * len(groups.names)
    else:
        pairs = [(p.extreme.multiplier, p.extreme.cover_fraction) for p in groups.params]
        distinct = list(dict.fromkeys(pairs)) or [
            (scenario_sets.DEFAULT_EXTREME_MULTIPLIER, scenario_sets.DEFAULT_COVER_FRACTION)
        ]
        uniq = [scenario_sets.span16_arrays(m, f) for m, f in distinct]
        keys = [distinct.index(k) for k in pairs]
    stacked = [np.stack([u[i] for u in uniq])[keys] for i in range(4)]
    return _Scenarios(*stacked)


def _scan_ranges(
    inputs: Inputs, contracts: xr.Dataset, groups: _Groups, level: xr.DataArray, vol: xr.DataArray
):
    """Price scan range [price points] and vol scan range [vol] per contract."""
    n = contracts.sizes["contract"]
    frac = np.full(n, np.nan)
    points = np.full(n, np.nan)
    amount = np.full(n, np.nan)
    vabs = np.full(n, np.nan)
    vrel = np.full(n, np.nan)
    for i, p in enumerate(groups.params):
        sel = groups.index_of_contract == i
        frac[sel] = np.nan if p.price_scan is None else p.price_scan
        points[sel] = np.nan if p.price_scan_points is None else p.price_scan_points
        amount[sel] = np.nan if p.price_scan_amount is None else p.price_scan_amount
        vabs[sel] = np.nan if p.vol_scan is None else p.vol_scan
        vrel[sel] = np.nan if p.vol_scan_relative is None else p.vol_scan_relative
    dim = contracts["multiplier"].dims
    frac, points, amount, vabs, vrel = (xr.DataArray(a, dims=dim) for a in (frac, points, amount, vabs, vrel))
    price_range = xr.where(
        frac.notnull(), frac * level, xr.where(points.notnull(), points, amount / contracts["multiplier"])
    )
    vol_range = xr.where(vrel.notnull(), vrel * vol, vabs.fillna(0.0))
    if "price_scan_scale" in inputs.grid.coords:
        price_range = price_range * inputs.grid["price_scan_scale"]
    if "vol_scan_scale" in inputs.grid.coords:
        vol_range = vol_range * inputs.grid["vol_scan_scale"]
    return price_range, vol_range


def _lookahead(contracts: xr.Dataset, groups: _Groups) -> xr.DataArray:
    days = np.array([p.lookahead_days for p in groups.params], dtype=float)[groups.index_of_contract]
    t_after = np.maximum(contracts["t"].values - days / DAYS_PER_YEAR, 0.0)
    return xr.DataArray(t_after, dims="contract")


def risk_arrays(
    inputs: Inputs,
    params: SpanParams | None = None,
    *,
    contracts: xr.Dataset | None = None,
    engine: pricing.Engine = "auto",
) -> xr.Dataset:
    """SPAN risk arrays and composite deltas of contracts.

    Given risk arrays (scenario file or clearing-house file) are used as they are; the others are
    computed by revaluing each contract at the scenario's price and vol after the look-ahead time.

    Parameters
    ----------
    inputs
        The data model.
    params
        SPAN parameters; default: the scenario file's.
    contracts
        The contracts to compute (default: those held in the book).
    engine
        Pricing engine: ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    xarray.Dataset
        ``risk_array`` (contract, scenario, grid dims) [currency per long contract, losses
        positive], ``composite_delta`` (contract, grid dims) [delta per contract], ``group``,
        ``computed`` (bool: from the model).
    """
    params = params or inputs.span_params or inputs.scenario.span or SpanParams()
    if contracts is None:
        contracts = _take(
            inputs.contracts,
            _held_contracts(inputs, in_scope(inputs, params)),
            inputs.contracts.sizes["contract"],
        )
    groups = _resolve_groups(inputs, contracts, params)
    return _risk_arrays(inputs, contracts, groups, params, engine)


def _risk_arrays(
    inputs: Inputs,
    contracts: xr.Dataset,
    groups: _Groups,
    params: SpanParams,
    engine,
    scen: _Scenarios | None = None,
    *,
    scan_range: bool = True,
) -> xr.Dataset:
    file = inputs.scenario.file
    scen = _scenario_arrays(groups, params) if scen is None else scen
    given = contracts["risk_array"].transpose("contract", "scenario")
    need = np.isnan(given.values).any(axis=1)
    given_cd = contracts["composite_delta"]
    if not scan_range and not need.any() and not inputs.grid_dims and not np.isnan(given_cd.values).any():
        # every array given (a clearing-house file) and no grid: nothing to compute
        return xr.Dataset(
            {
                "risk_array": xr.Variable(("contract", "scenario"), given.values, _RISK_ARRAY_ATTRS),
                "composite_delta": xr.Variable("contract", given_cd.values, _DELTA_ATTRS),
                "computed": ("contract", need),
            },
            coords={"contract": contracts["contract"].values, "scenario": given["scenario"].values},
        )

    level = inputs.underlying_level(contracts)
    vol = inputs.contract_vol(contracts)

    price_range, vol_range = _scan_ranges(inputs, contracts, groups, level, vol)
    t_after = _lookahead(contracts, groups).assign_coords(contract=contracts["contract"])

    # contracts whose risk array comes from the model must have a scan range
    missing_scan = need & price_range.isnull().any([d for d in price_range.dims if d != "contract"]).values
    if missing_scan.any():
        i = int(np.flatnonzero(missing_scan)[0])
        g = groups.names[groups.index_of_contract[i]]
        raise InputError(
            f"combined commodity {g!r} needs a price scan range (price_scan, price_scan_points or "
            f"price_scan_amount) to compute the risk array of {contracts['contract'].values[i]!r}",
            file=file,
            key_path=("span", "combined_commodities", g),
        )

    # revalue the contracts without a given risk array: one fused pass over scenarios and delta points
    dp = scenario_sets.composite_delta_points()
    idx = np.flatnonzero(need)
    n_all = contracts.sizes["contract"]
    c = _take(contracts, idx, n_all)
    loss, deltas = xr.apply_ufunc(
        partial(
            _loss_items,
            price_moves=scen.price_move,
            vol_moves=scen.vol_move,
            weights=scen.weight,
            delta_moves=dp["price_move"].values,
            decimals=params.array_precision,
            engine=engine,
        ),
        c["model"],
        _take(level, idx, n_all),
        c["strike"].fillna(0.0),
        _take(price_range, idx, n_all),
        _take(vol, idx, n_all),
        _take(vol_range, idx, n_all),
        c["t"].fillna(0.0),
        _take(t_after, idx, n_all),
        inputs.rate(c),
        inputs.dividend_yield(c),
        c["is_call"],
        c["american"],
        xr.DataArray(groups.index_of_contract[idx], dims="contract"),
        c["multiplier"],
        output_core_dims=[["scenario"], ["delta_point"]],
        dask="parallelized",
        output_dtypes=[float, float],
        dask_gufunc_kwargs={
            "output_sizes": {"scenario": scen.price_move.shape[1], "delta_point": dp.sizes["delta_point"]}
        },
    )
    loss = loss.assign_coords(scenario=contracts["scenario"])
    if idx.size != n_all:
        loss = loss.reindex(contract=contracts["contract"].values)
    cdelta_model = (deltas * dp["weight"].values).sum("delta_point")
    if idx.size != n_all:
        cdelta_model = cdelta_model.reindex(contract=contracts["contract"].values)
    # a given risk array without a composite delta: the model's delta where it can be computed
    lacking = ~need & given_cd.isnull().values
    if lacking.any():
        rest = np.flatnonzero(lacking)
        cr = contracts.isel(contract=rest)
        d_level = (level.isel(contract=rest) + dp["price_move"] * price_range.isel(contract=rest)).clip(
            min=0.0
        )
        d_rest = inputs.revalue(
            cr,
            d_level,
            vol.isel(contract=rest),
            t_after.isel(contract=rest),
            engine=engine,
            func=pricing.delta,
        )
        cd_rest = (d_rest * dp["weight"]).sum("delta_point")
        cd_rest = xr.where(cr["is_option"], cd_rest.where(np.isfinite(cd_rest)), 1.0)
        cdelta_model = cdelta_model.fillna(cd_rest.reindex(contract=contracts["contract"].values))
    cdelta = xr.where(given_cd.notnull(), given_cd, cdelta_model)

    ra = xr.where(given.notnull(), given, loss)
    gd = [d for d in inputs.grid_dims if d in ra.dims]
    ra = ra.transpose("contract", "scenario", *gd)
    cdelta = cdelta.broadcast_like(ra.isel(scenario=0, drop=True)).transpose("contract", *gd)
    ra.attrs.update(_RISK_ARRAY_ATTRS)
    out = xr.Dataset({"risk_array": ra, "composite_delta": cdelta, "computed": ("contract", need)})
    out["composite_delta"].attrs.update(_DELTA_ATTRS)
    if scan_range:
        out["price_scan_range"] = price_range.broadcast_like(cdelta)
        out["price_scan_range"].attrs.update(
            units="price points", description="price scan range per contract"
        )
    return out


_DELTA_ATTRS = {"units": "delta per contract", "description": "SPAN composite delta"}
_RISK_ARRAY_ATTRS = {
    "units": "currency per long contract",
    "description": "SPAN risk array, losses positive",
    "convention": "SPAN: loss = -pnl",
}


def _loss_items(*items, price_moves, vol_moves, weights, delta_moves, decimals, engine):
    """apply_ufunc kernel: risk arrays (weighted losses, rounded) and deltas of items.

    ``items`` are the item arrays of :func:`marginsim.kernels.scan.revalue_scan` (model, level,
    strike, price range, vol, vol range, time now, time after the look-ahead, rate, yield, call
    flag, American flag, scenario-set row) followed by the multiplier. Broadcasts them, runs the
    fused scan, turns values into losses in place (large books: no extra temporaries) and restores
    the shape with trailing ``scenario`` / ``delta_point``.
    """
    arrays = np.broadcast_arrays(*items)
    shape = arrays[0].shape
    flat = [np.ravel(a) for a in arrays]
    v_now, loss, deltas = revalue_scan(*flat[:13], price_moves, vol_moves, delta_moves, engine=engine)
    loss -= v_now[:, None]
    loss *= -flat[13][:, None]
    loss *= weights[flat[12]]
    np.round(loss, decimals, out=loss)
    loss += 0.0  # -0.0 -> 0.0
    return loss.reshape(shape + (price_moves.shape[-1],)), deltas.reshape(shape + (delta_moves.shape[-1],))


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
    is_call: np.ndarray
    is_put: np.ndarray
    som_rate: np.ndarray  # (C,) [currency per short option]
    som_net: np.ndarray  # (C,) bool
    ratio: np.ndarray  # (C,) initial / maintenance
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
    arrays = _risk_arrays(inputs, contracts, groups, params, engine, scen, scan_range=False)
    gsizes = {d: arrays.sizes[d] if d in arrays.dims else None for d in gd}
    for d in gd:
        if gsizes[d] is None:
            gsizes[d] = inputs.market.sizes.get(d) or inputs.grid.sizes.get(d)
    gshape = tuple(gsizes[d] for d in gd)
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
    span_m = month.max(initial=0) + 1
    key = cc_of_k * span_m + month
    uniq, month_idx = np.unique(key, return_inverse=True)  # (CC, month) pairs, sorted by CC
    cc_month = np.stack([uniq // span_m, uniq % span_m], axis=1)
    first = np.searchsorted(cc_month[:, 0], np.arange(n_c + 1))
    month_idx = month_idx.reshape(-1) - first[cc_of_k]
    n_months = np.diff(first)
    n_m = max(int(n_months.max(initial=1)), 1)

    cdelta = flat_grid(arrays["composite_delta"], ["contract"], gd, gshape)  # (K, G)
    uses_delta = np.array([bool(p.intra_spreads or p.spot) for p in groups.params], dtype=bool)
    inter_ccs = {leg.group for sp in params.inter_spreads for leg in sp.legs}
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
    cc_spot: list[tuple[np.ndarray, float, float] | None] = []
    for c, p in enumerate(groups.params):
        months = cc_month[first[c] : first[c + 1], 1]
        real = np.zeros(n_m, dtype=bool)
        real[: len(months)] = True
        padded = np.zeros(n_m, dtype=np.int64)
        padded[: len(months)] = months
        tier_mask = {0: real}
        for t in p.tiers:
            lo, hi = t.months
            tier_mask[t.tier] = real & (padded >= lo) & (padded <= hi)
        spreads = []
        for sp in sorted(p.intra_spreads, key=lambda s: s.priority):
            legs = _merge_legs([(leg.tier, leg.side, leg.ratio) for leg in sp.legs])
            spreads.append(
                K.Spread(sp.rate, [K.SpreadLeg(tier_mask[t], side, ratio) for t, side, ratio in legs])
            )
        cc_spreads.append(spreads)
        cc_spot.append(
            None
            if p.spot is None
            else (real & np.isin(padded, p.spot.months), p.spot.rate_spread, p.spot.rate_outright)
        )
    intra = None
    if any(cc_spreads) or any(s is not None for s in cc_spot):
        intra = SP.intra_table(cc_spreads, cc_spot, n_m)

    # inter spreads between the combined commodities of this book, in priority order
    gindex = {n: i for i, n in enumerate(groups.names)}
    inter_spreads = []
    for sp in sorted(params.inter_spreads, key=lambda s: s.priority):
        if not all(leg.group in gindex for leg in sp.legs):
            continue  # a leg's combined commodity is not in this book: no spread can form
        legs = _merge_legs([(gindex[leg.group], leg.side, leg.ratio) for leg in sp.legs])
        inter_spreads.append(
            K.Spread(sp.credit_rate, [K.SpreadLeg(i, side, ratio) for i, side, ratio in legs])
        )

    # net option value per long contract of premium-style options, reporting currency
    premium = inputs.option_premium(contracts, engine=engine)
    ccy_code, ccys = pd.factorize(contracts["currency"].values)
    contract_fx = np.array([sc.fx_rate(str(c), key_path="market") for c in ccys])[ccy_code]
    prem = premium.transpose("contract", ...)
    factor = contracts["multiplier"].values * contracts["premium_style"].values
    nov = prem.values * factor.reshape((-1,) + (1,) * (prem.ndim - 1))
    nov = np.where(np.isnan(nov), 0.0, nov) * contract_fx.reshape((-1,) + (1,) * (prem.ndim - 1))
    nov = xr.DataArray(nov, dims=prem.dims)
    is_option = contracts["is_option"].values
    is_call = contracts["is_call"].values
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
        is_call=is_call & is_option,
        is_put=~is_call & is_option,
        som_rate=np.array([0.0 if p.som is None else p.som.rate for p in groups.params]),
        som_net=np.array([p.som is not None and p.som.method == "net" for p in groups.params], dtype=bool),
        ratio=np.array([p.initial_ratio or params.initial_ratio for p in groups.params]),
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
                digest = zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
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


def span_margin(
    inputs: Inputs,
    params: SpanParams | None = None,
    *,
    engine: pricing.Engine = "auto",
    scan_loss: bool = True,
) -> xr.Dataset:
    """SPAN margin of every account of the book.

    Parameters
    ----------
    inputs
        The data model (:func:`marginsim.model.build_inputs`).
    params
        SPAN parameters; default: the scenario file's ``span`` section.
    engine
        ``"numba"``, ``"numpy"`` or ``"auto"``: pricing engine for computed risk arrays, and the
        engine of the aggregation over (account, combined commodity) pairs
        (:mod:`marginsim.kernels.span_pairs`; both give the same results).
    scan_loss
        Include ``scan_loss``, the loss of every (account, combined commodity) per scenario. It is
        the one result of size accounts x combined commodities x scenarios: leave it out for large
        books of many small portfolios when only the requirements are wanted.

    Returns
    -------
    xarray.Dataset
        Per account: ``maintenance``, ``initial``, ``net_option_value``, ``span_risk``; per account
        and combined commodity (``group``): ``scan_risk``, ``active_scenario`` (1-based),
        ``intra_spread_charge``, ``spot_charge``, ``inter_spread_credit``, ``short_option_minimum``,
        ``risk``, ``held``, ``scan_loss`` (per scenario; with ``scan_loss=True``); per contract:
        ``risk_array``, ``composite_delta``. Amounts per account and group are in the scenario's
        reporting currency; risk arrays in each contract's own currency. Every grid dim of the
        inputs is a dim of the result. Lazy (dask-backed) inputs are refused: margin them
        with :func:`marginsim.margin`, which runs the method chunk by chunk.
    """
    inputs.require_in_memory("span_margin")
    eng = pricing._resolve_engine(engine)
    params = params or inputs.span_params or inputs.scenario.span or SpanParams()
    # every definition first (contracts, combined commodities, spreads: no positions), then the
    # book in one pass of compiled kernels, then the result
    cached = _file_plan(inputs, params, engine)
    if cached is not None:  # the whole file's plan; the result keeps the book's contracts and CCs
        scope, plan = cached
        held = _held_contracts(inputs, scope)
        out_k = plan.local[held]  # the result's contracts (plan indices)
        out_cc = pd.unique(plan.cc_of_k[out_k])  # the result's CCs, in order of first appearance
    else:
        scope = in_scope(inputs, params)
        plan = _plan(inputs, params, _held_contracts(inputs, scope), engine)
        out_k, out_cc = np.arange(plan.held.size), np.arange(plan.n_cc)
    book = inputs.book
    if not scope[book["contract_index"].values].all():
        book = book.isel(position=np.flatnonzero(scope[book["contract_index"].values]))
    n_a, n_c, n_g, gshape, gd = book.sizes["account"], plan.n_cc, plan.n_g, plan.gshape, plan.gd
    pos_k = plan.local[book["contract_index"].values]
    pos_a = book["account_index"].values
    qty = np.asarray(book["quantity"].values, dtype=float)
    pairs = SP.pairs_of(pos_a, plan.cc_of_k[pos_k], n_a, n_c)  # the (account, CC) pairs held
    n_p = pairs.size

    # -- one pass over the positions: scanning risk, active scenario, price risk per pair; deltas by
    # month (the ledger: one row per pair and month of its CC); option counts for the SOM ----------
    row0 = np.concatenate([[0], np.cumsum(plan.n_months[pairs.cc])])  # rows of pair p: row0[p]:row0[p+1]
    loss, scan_risk, active, prisk, ledger, counts = SP.book_pass(
        pairs,
        pos_a,
        pos_k,
        qty,
        plan.risk_array,
        plan.scenario_pair,
        plan.time_scenarios,
        row0,
        plan.month_idx,
        plan.delta,
        plan.is_call,
        plan.is_put,
        eng,
        keep_loss=scan_loss,
    )
    net_delta = np.add.reduceat(ledger, row0[:-1], axis=0) if n_p else np.zeros((0, n_g))  # (P, G)

    # -- intra-commodity spreads and spot charge; inter-commodity credit ----------------------------
    if plan.intra is not None:
        intra, spot, net_left = SP.intra_and_spot(ledger, row0, pairs, plan.intra, eng)
    else:
        intra, spot, net_left = np.zeros((n_p, n_g)), np.zeros((n_p, n_g)), net_delta
    credit = np.zeros((n_p, n_g))
    if plan.inter is not None:
        wfpr = K.weighted_futures_price_risk(prisk, net_delta)
        credit = SP.inter_credit(net_left, wfpr, pairs, plan.inter, eng)

    # -- short option minimum --------------------------------------------------------------------------
    som = K.short_option_minimum(
        counts[:, 0],
        counts[:, 1],
        counts[:, 2],
        counts[:, 3],
        plan.som_rate[pairs.cc],
        plan.som_net[pairs.cc],
    )[:, None]  # (P, 1)

    # -- combined commodity risk, in its currency, then in the reporting currency ------------------
    risk_cc = np.maximum(scan_risk + intra + spot - credit, som)
    fx = plan.fx[pairs.cc][:, None]
    nov = SP.segment_sum(pos_a, pos_k, qty, plan.nov, n_a, eng)  # (A, G), premium-style options
    every_pair = np.arange(n_p)
    ones = np.ones(n_p)
    span_risk = SP.segment_sum(pairs.account, every_pair, ones, risk_cc * fx, n_a, eng)  # (A, G)
    initial_risk = SP.segment_sum(
        pairs.account, every_pair, ones, risk_cc * plan.ratio[pairs.cc][:, None] * fx, n_a, eng
    )
    maintenance = np.maximum(span_risk - nov, 0.0)
    initial = np.maximum(initial_risk - nov, 0.0)

    # -- result ---------------------------------------------------------------------------------------
    sc = inputs.scenario
    ccy = {"units": sc.currency}
    n_s = plan.risk_array.shape[-1]
    arrays, groups, contracts = plan.arrays, plan.groups, plan.contracts
    acg_dims = ("account", "group", *gd)
    n_out = out_cc.size  # the result's CCs: column of each pair in the (account, group) layout
    dense_index = pairs.account * n_out + _ranks(out_cc, n_c)[pairs.cc]

    per_pair = {  # (P, G) per pair -> (A, C, grid...), all in one allocation
        "scan_risk": (scan_risk * fx, 0.0),
        "active_scenario": (active + 1, 1),
        "intra_spread_charge": (intra * fx, 0.0),
        "spot_charge": (spot * fx, 0.0),
        "inter_spread_credit": (credit * fx, 0.0),
        "short_option_minimum": (np.broadcast_to(som * fx, (n_p, n_g)), 0.0),
        "risk": (risk_cc * fx, 0.0),
        "held": (np.ones(n_p, dtype=bool), False),
    }
    dense = dict(zip(per_pair, SP.to_dense_many(list(per_pair.values()), dense_index, n_a * n_out)))

    def acg(name, units=ccy):
        return xr.Variable(acg_dims, dense[name].reshape((n_a, n_out) + gshape), _attrs(name, units))

    def ag(name, a):
        return xr.Variable(("account", *gd), a.reshape((n_a,) + gshape), _attrs(name, ccy))

    coords = {
        "account": _as_names(book["account_name"].values, trusted=True),
        "group": np.array(groups.names, dtype=object)[out_cc],
        "scenario": arrays["scenario"].values,
        "contract": contracts["contract"].values[out_k],
        "position": book["position"].values,  # the book's position numbers (SPAN's positions only)
    }
    for d in gd:
        coords[d] = (
            arrays[d].values
            if d in arrays.coords
            else (inputs.market[d].values if d in inputs.market.coords else inputs.grid[d].values)
        )
    data = {
        "maintenance": ag("maintenance", maintenance),
        "initial": ag("initial", initial),
        "net_option_value": ag("net_option_value", nov),
        "span_risk": ag("span_risk", span_risk),
        "scan_risk": acg("scan_risk"),
        "active_scenario": acg("active_scenario", units=None),
        "intra_spread_charge": acg("intra_spread_charge"),
        "spot_charge": acg("spot_charge"),
        "inter_spread_credit": acg("inter_spread_credit"),
        "short_option_minimum": acg("short_option_minimum"),
        "risk": acg("risk"),
        "held": (("account", "group"), dense["held"].reshape(n_a, n_out), _attrs("held")),
        "position_account": ("position", pos_a),
        "position_contract": ("position", _ranks(out_k, plan.held.size)[pos_k]),
        "risk_array": arrays["risk_array"].variable[out_k],
        "composite_delta": arrays["composite_delta"].variable[out_k],
        "group_currency": xr.Variable("group", np.array(groups.currency, dtype=object)[out_cc]),
        "group_fx": ("group", groups.fx[out_cc]),
        "contract_currency": xr.Variable("contract", contracts["currency"].values[out_k], fastpath=True),
    }
    if scan_loss:
        flat = SP.to_dense_many([(loss * fx[..., None], 0.0)], dense_index, n_a * n_out)[0]  # (A C, G, S)
        by_scenario = np.moveaxis(flat.reshape(n_a, n_out, n_g, n_s), -1, 2)
        data["scan_loss"] = xr.Variable(
            ("account", "group", "scenario", *gd),
            by_scenario.reshape((n_a, n_out, n_s) + gshape),
            _attrs("scan_loss", ccy),
        )
    return xr.Dataset(
        data, coords=coords, attrs={"method": "span", "currency": sc.currency, "scenario": sc.name}
    )


def _ranks(chosen: np.ndarray, n: int) -> np.ndarray:
    """Position of each of ``n`` items among ``chosen`` (-1 where not chosen)."""
    out = np.full(n, -1, dtype=np.int64)
    out[chosen] = np.arange(chosen.size)
    return out


def _attrs(name: str, units: dict | None = None) -> dict:
    out = dict(units or {})
    if name in _DESCRIPTIONS:
        out["description"] = _DESCRIPTIONS[name]
    return out


_DESCRIPTIONS = {
    "maintenance": "SPAN requirement: max(0, sum of CC risks - net option value)",
    "initial": "maintenance with each CC risk scaled by its initial/maintenance ratio",
    "net_option_value": "value of premium-style options, long positive",
    "span_risk": "sum of combined commodity risks",
    "risk": "max(scan + intra + spot - inter credit, short option minimum)",
    "scan_loss": "loss per scenario (SPAN convention: losses positive)",
    "active_scenario": "1-based scenario of the scanning risk",
    "held": "the account holds a position in the combined commodity",
}


def _merge_legs(legs: list[tuple]) -> list[tuple]:
    """Legs on the same tier (or CC) and side draw from one pool: merge them by adding ratios."""
    merged: dict[tuple, float] = {}
    for key, side, ratio in legs:
        merged[(key, side)] = merged.get((key, side), 0.0) + ratio
    return [(key, side, ratio) for (key, side), ratio in merged.items()]
