"""SPAN risk arrays: the revaluation inputs of each contract and its risk array and composite delta.

Combined commodities (``group``) of the contracts, their scenario sets, price and vol scan ranges
and look-ahead times; risk arrays given by the scenario or a clearing-house file are used as they
are, the others are computed in one fused pass of :func:`marginsim.kernels.scan.revalue_scan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import xarray as xr

from ... import scenario_sets
from ...errors import InputError
from ...kernels import pricing
from ...kernels.scan import revalue_scan, scan_losses
from ...model import DAYS_PER_YEAR, Inputs
from ...params.span import CombinedCommodityParams, SpanParams

__all__ = ["in_scope", "risk_arrays"]


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
    scope = c["is_option"].values & on_future
    rest = np.flatnonzero(~scope)  # each further test only where the ones before fail
    scope[rest] = c["type"].values[rest] == "future"
    rest = rest[~scope[rest]]
    if rest.size:
        given = ~np.isnan(c["risk_array"].transpose("contract", ...).values[rest]).any(axis=1)
        named = _named_groups(c["group"].values[rest], list(params.combined_commodities))
        scope[rest] = given | named
    return scope


def _named_groups(group: np.ndarray, names: list[str]) -> np.ndarray:
    """Whether each contract's combined commodity (``group``) is one of ``names``: the test on
    the distinct groups (a few), not on every contract's text."""
    if not names or group.size == 0:
        return np.zeros(group.shape, dtype=bool)
    codes, uniq = pd.factorize(group, use_na_sentinel=False)
    return np.isin(np.asarray(uniq).astype(str), names)[codes]


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
    idx = groups.index_of_contract

    def per_contract(field: str) -> np.ndarray:  # a parameter of each group, NaN where not set
        values = [getattr(p, field) for p in groups.params]
        return np.array([np.nan if v is None else v for v in values], dtype=float)[idx]

    frac, points, amount, vabs, vrel = (
        per_contract(f)
        for f in ("price_scan", "price_scan_points", "price_scan_amount", "vol_scan", "vol_scan_relative")
    )
    dim = contracts["multiplier"].dims
    if level.dims == dim and vol.dims == dim:
        # no grid dim: the same selections on the numpy arrays, a branch computed only where a
        # group takes it (coords and attrs as xr.where gives them: those of level and vol)
        lv, mult = level.values, contracts["multiplier"].values
        by_frac = ~np.isnan(frac)
        pr = frac * lv
        if not by_frac.all():
            pr = np.where(by_frac, pr, np.where(~np.isnan(points), points, amount / mult))
        by_rel = ~np.isnan(vrel)
        vr = vrel * vol.values
        if not by_rel.all():
            vr = np.where(by_rel, vr, np.where(np.isnan(vabs), 0.0, vabs))
        price_range, vol_range = level.copy(deep=False, data=pr), vol.copy(deep=False, data=vr)
    else:
        frac_da, points_da, amount_da, vabs_da, vrel_da = (
            xr.DataArray(a, dims=dim) for a in (frac, points, amount, vabs, vrel)
        )
        price_range = xr.where(
            frac_da.notnull(),
            frac_da * level,
            xr.where(points_da.notnull(), points_da, amount_da / contracts["multiplier"]),
        )
        vol_range = xr.where(vrel_da.notnull(), vrel_da * vol, vabs_da.fillna(0.0))
    if "price_scan_scale" in inputs.grid.coords:
        price_range = price_range * inputs.grid["price_scan_scale"]
    if "vol_scan_scale" in inputs.grid.coords:
        vol_range = vol_range * inputs.grid["vol_scan_scale"]
    return price_range, vol_range


def _lookahead(contracts: xr.Dataset, groups: _Groups, t_now: xr.DataArray | None = None) -> xr.DataArray:
    """Time to expiry after the look-ahead [years]; ``t_now``: the time now when it has grid
    dims (a ``date`` dim: :meth:`Inputs.time_to_expiry`), default the contracts' own ``t``."""
    days = np.array([p.lookahead_days for p in groups.params], dtype=float)[groups.index_of_contract]
    if t_now is not None and t_now.dims != ("contract",):
        return (t_now - xr.DataArray(days / DAYS_PER_YEAR, dims="contract")).clip(min=0.0)
    t_after = np.maximum(contracts["t"].values - days / DAYS_PER_YEAR, 0.0)
    # the contracts' own coords (their index objects: no index comparison when aligned with them)
    return xr.DataArray(t_after, dims="contract", coords=contracts["t"].coords)


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
    market: dict | None = None,
) -> xr.Dataset:
    """:func:`risk_arrays` of ``contracts``; ``market``, when given, receives the contracts'
    ``level`` and ``vol`` when they are computed, and ``model_now`` (their model value now, the
    scan's value now) when every contract is revalued with a vol (for the caller to reuse)."""
    file = inputs.scenario.file
    scen = _scenario_arrays(groups, params) if scen is None else scen
    given = contracts["risk_array"].transpose("contract", "scenario")
    given_nan = np.isnan(given.values)
    need = given_nan.any(axis=1)
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
    if market is not None:
        market.update(level=level, vol=vol)

    price_range, vol_range = _scan_ranges(inputs, contracts, groups, level, vol)
    t_now = inputs.time_to_expiry(contracts)  # the contracts' t, or per date (a date grid dim)
    t_after = _lookahead(contracts, groups, t_now)

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
    loss, deltas, v_now = xr.apply_ufunc(
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
        _take(t_now, idx, n_all).fillna(0.0),
        _take(t_after, idx, n_all),
        inputs.rate(c),
        inputs.dividend_yield(c),
        c["is_call"],
        c["american"],
        xr.DataArray(groups.index_of_contract[idx], dims="contract"),
        c["multiplier"],
        output_core_dims=[["scenario"], ["delta_point"], []],
        dask="parallelized",
        output_dtypes=[float, float, float],
        dask_gufunc_kwargs={
            "output_sizes": {"scenario": scen.price_move.shape[1], "delta_point": dp.sizes["delta_point"]}
        },
    )
    if market is not None and idx.size == n_all:
        _offer_model_now(market, v_now, level, vol)
    loss = loss.assign_coords(scenario=contracts["scenario"])
    if idx.size != n_all:
        loss = loss.reindex(contract=contracts["contract"].values)
    cdelta_model = _weighted_sum(deltas, dp["weight"].values, overwrite=True)  # deltas not used after
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

    if need.all() and given_nan.all():  # no risk array given: the model's (attrs as xr.where's)
        ra = loss.copy(deep=False)
        ra.attrs = dict(given.attrs)
    else:
        ra = xr.where(given.notnull(), given, loss)
    gd = [d for d in inputs.grid_dims if d in ra.dims]
    ra = ra.transpose("contract", "scenario", *gd)
    like = ra.isel(scenario=0, drop=True)
    if set(cdelta.dims) != set(like.dims) or not set(like.coords) <= set(cdelta.coords):
        cdelta = cdelta.broadcast_like(like)  # (a new contract index: only when a dim or coord lacks)
    cdelta = cdelta.transpose("contract", *gd)
    ra.attrs.update(_RISK_ARRAY_ATTRS)
    out = xr.Dataset({"risk_array": ra, "composite_delta": cdelta, "computed": ("contract", need)})
    out["composite_delta"].attrs.update(_DELTA_ATTRS)
    if scan_range:
        out["price_scan_range"] = price_range.broadcast_like(cdelta)
        out["price_scan_range"].attrs.update(
            units="price points", description="price scan range per contract"
        )
    return out


def _weighted_sum(deltas: xr.DataArray, weight: np.ndarray, *, overwrite: bool = False) -> xr.DataArray:
    """``(deltas * weight).sum("delta_point")`` (NaN skipped): composite deltas [delta per
    contract]. With ``delta_point`` the last axis of a C-contiguous array, on numpy: the same
    product, NaN set to 0 (as xarray's skipna sum does) and the same ``np.sum`` over the axis;
    with ``overwrite``, the product is written over the deltas' own (writeable) data."""
    data = deltas.data
    if deltas.dims[-1] != "delta_point" or not (isinstance(data, np.ndarray) and data.flags.c_contiguous):
        return (deltas * weight).sum("delta_point")
    w = np.multiply(data, weight, out=data) if overwrite and data.flags.writeable else data * weight
    nan = np.isnan(w)
    if nan.any():
        w[nan] = 0.0
    return deltas.isel(delta_point=0, drop=True).copy(deep=False, data=w.sum(axis=-1))


_DELTA_ATTRS = {"units": "delta per contract", "description": "SPAN composite delta"}
_RISK_ARRAY_ATTRS = {
    "units": "currency per long contract",
    "description": "SPAN risk array, losses positive",
    "convention": "SPAN: loss = -pnl",
}


def _offer_model_now(market: dict, v_now: xr.DataArray, level: xr.DataArray, vol: xr.DataArray) -> None:
    """Put the scan's value now of every contract in ``market["model_now"]`` when it is what
    :meth:`Inputs.revalue` gives for the premium (``level``, ``vol.fillna(0)``, the contracts'
    time): no NaN vol, the same dims (put in the order of the premium's), numpy data. The pricing
    of an element does not depend on its neighbours (same operations per element, no SIMD
    variant), so the numbers are the same."""
    dims = tuple(dict.fromkeys(("contract", *level.dims, *vol.dims)))
    if set(v_now.dims) != set(dims) or not isinstance(v_now.data, np.ndarray):
        return
    if not isinstance(vol.data, np.ndarray) or np.isnan(vol.data).any():
        return
    market["model_now"] = v_now.transpose(*dims)


def _loss_items(*items, price_moves, vol_moves, weights, delta_moves, decimals, engine):
    """apply_ufunc kernel: risk arrays (weighted losses, rounded), deltas and values now of items.

    ``items`` are the item arrays of :func:`marginsim.kernels.scan.revalue_scan` (model, level,
    strike, price range, vol, vol range, time now, time after the look-ahead, rate, yield, call
    flag, American flag, scenario-set row) followed by the multiplier. Broadcasts them, runs the
    fused scan, turns values into losses in place (:func:`~marginsim.kernels.scan.scan_losses`) and restores
    the shape with trailing ``scenario`` / ``delta_point``.
    """
    arrays = np.broadcast_arrays(*items)
    shape = arrays[0].shape
    flat = [np.ravel(a) for a in arrays]
    model, level, strike, p_range, vol, v_range, t_now, t_after, r, q, is_call, american, set_index = flat[
        :13
    ]
    v_now, loss, deltas = revalue_scan(
        model,
        level,
        strike,
        p_range,
        vol,
        v_range,
        t_now,
        t_after,
        r,
        q,
        is_call,
        american,
        set_index,
        price_moves,
        vol_moves,
        delta_moves,
        engine=engine,
    )
    scan_losses(v_now, loss, flat[13], weights, flat[12], decimals, engine=engine)
    return (
        loss.reshape(shape + (price_moves.shape[-1],)),
        deltas.reshape(shape + (delta_moves.shape[-1],)),
        v_now.reshape(shape),
    )
