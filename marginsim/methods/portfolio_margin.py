"""Risk-based portfolio margin for stocks and stock/index options (``spec/portfolio-margin.md``).

An xarray wrapper over the numpy kernels of :mod:`marginsim.kernels.portfolio_margin`.

Every stock and every option on a spot underlying belongs to the **class group** of its
underlying. Each contract is revalued once over one stacked set of stresses (dim ``stress``):

- the ten-point theoretical-value scan (price points x implied vol shifts, a scenario set built
  with :func:`marginsim.scenario_sets.custom`), ranges by product class;
- the extreme price scan (``multiple`` x the range, vol shifted as in the scan);
- the concentration stresses (+/-30 % and +/-5 %, vol unchanged);
- the single-name stresses (small cap, China concept, default, Hong Kong property);
- the large-position stress.

Pnl is summed into (account, class group) with a sparse membership matrix, so accounts and grid
dims are array axes: nothing loops over positions, accounts, scenarios or grid points. The
components are then

``maintenance = max(base, extreme, concentration, single_name) + large_position``, with
``base = sum over class groups of max(scan, option minimum)``, and
``initial = sum over class groups of ratio x (its part of the binding component + its large
position charge) + days-to-liquidate add-on``, ratio 1.10 (US) or 1.25 (non-US).

Futures, CFDs and options on futures are not part of this method (SPAN and the CFD method margin
them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import xarray as xr

from .. import scenario_sets
from ..errors import InputError
from ..kernels import portfolio_margin as K
from ..kernels import pricing
from ..kernels.grouping import apply_to_entries, group_sum, membership
from ..model import DAYS_PER_YEAR, Inputs, flat_grid
from ..params.portfolio_margin import PortfolioMarginParams
from ..result import to_plain
from ..scenario import ScenarioFile, Underlying

__all__ = [
    "PortfolioMarginParams",
    "COMPONENTS",
    "SINGLE_NAME_METHODS",
    "VOL_POINTS",
    "portfolio_margin",
    "pm_applies",
    "pm_to_dict",
    "pm_table",
    "scan_scenario_set",
]

#: Components of the JSON contract, in report order.
COMPONENTS = (
    "scan",
    "extreme",
    "minimum",
    "concentration",
    "single_name",
    "large_position",
    "days_to_liquidate",
)
#: Single-name methods, in evaluation order.
SINGLE_NAME_METHODS = ("small_cap", "china_concept", "default", "hk_property")
#: Implied vol points of the scan [multiples of the vol shift].
VOL_POINTS = (-1.0, 0.0, 1.0)
# rows of the text table, in order
_TABLE_ROWS = (
    "base",
    "scan",
    "minimum",
    "extreme",
    "concentration",
    "single_name",
    "large_position",
    "days_to_liquidate",
)


def pm_applies(sc: ScenarioFile) -> bool:
    """Whether the book needs portfolio margin: a ``portfolio_margin`` section, or stocks or options on spot."""
    if sc.portfolio_margin is not None:
        return True
    for p in sc.positions:
        c = sc.contracts.get(p.contract)
        if c is not None and (c.type == "stock" or (c.type in ("call", "put") and c.option_on == "spot")):
            return True
    return False


def scan_scenario_set(points_per_side: int = 5) -> xr.Dataset:
    """The theoretical-value scan as a scenario set: price points x implied vol points.

    Parameters
    ----------
    points_per_side
        Price points up and down (5: the ten-point scan).

    Returns
    -------
    xarray.Dataset
        Over ``scenario`` (price-point major): ``price_move`` [fractions of the class group's scan
        range, up or down], ``vol_move`` [multiples of the vol shift], ``weight`` (1).
    """
    fr = K.scan_fractions(points_per_side)
    n_v = len(VOL_POINTS)
    return scenario_sets.custom(
        np.repeat(fr, n_v).tolist(), np.tile(VOL_POINTS, len(fr)).tolist(), name="portfolio_margin_scan"
    )


# ------------------------------------------------------------------------------------------------
# class groups
# ------------------------------------------------------------------------------------------------


# an underlying without a scenario-file entry (e.g. from a clearing-house file): no stock data
_NO_DATA = Underlying(price=1.0)


@dataclass
class _Groups:
    names: list[str]
    product_class: list[str]
    up: np.ndarray  # (C,) scan range up [fraction]
    down: np.ndarray  # (C,) scan range down [fraction]
    is_stock: np.ndarray  # (C,) bool
    is_us: np.ndarray  # (C,) bool
    ratio: np.ndarray  # (C,) initial / maintenance
    shares_outstanding: np.ndarray  # (C,) NaN where unknown or not a stock
    adv: np.ndarray  # (C,) NaN where unknown or not a stock
    sn_applies: np.ndarray  # (C, M) bool
    sn_moves: np.ndarray  # (C, M, 2) [+up, -down] [fraction]
    currency: list[str]
    fx: np.ndarray  # (C,)


def _class_groups(inputs: Inputs, und_index: np.ndarray, params: PortfolioMarginParams) -> _Groups:
    """Per-class-group data from the market entries (a loop over underlyings, not positions)."""
    sc = inputs.scenario
    names = [str(inputs.market["underlying"].values[u]) for u in und_index]
    n_c = len(names)
    sn = params.single_name
    pcs: list[str] = []
    up = np.zeros(n_c)
    down = np.zeros(n_c)
    is_stock = np.zeros(n_c, dtype=bool)
    is_us = np.zeros(n_c, dtype=bool)
    so = np.full(n_c, np.nan)
    adv = np.full(n_c, np.nan)
    applies = np.zeros((n_c, len(SINGLE_NAME_METHODS)), dtype=bool)
    moves = np.zeros((n_c, len(SINGLE_NAME_METHODS), 2))
    currency = [str(c) for c in inputs.market["currency"].values[und_index]]
    fx = inputs.market["fx"].values[und_index].astype(float)
    for c, name in enumerate(names):
        u = sc.market.get(name) or _NO_DATA
        pc = u.product_class or params.default_product_class
        pcs.append(pc)
        rng = params.ranges[pc]
        up[c], down[c] = rng.up, rng.down
        listing = (u.listing or "").upper()
        domicile = (u.domicile or "").upper()
        house = params.dynamic_house_scan.get(listing)
        if house is not None:
            up[c], down[c] = max(up[c], house), max(down[c], house)
        is_us[c] = listing == "US" if u.listing else currency[c] == "USD"
        if pc != "equity":
            continue
        is_stock[c] = True
        so[c] = np.nan if u.shares_outstanding is None else u.shares_outstanding
        adv[c] = np.nan if u.adv is None else u.adv
        cap = u.market_cap
        if cap is not None and cap <= sn.small_cap.max_market_cap:
            applies[c, 0] = True
            moves[c, 0] = K.stress_moves(*K.market_cap_moves(cap, sn.small_cap.market_cap_change))
        if domicile in sn.china_concept.domiciles:
            if cap is None:
                raise InputError(
                    "a China-concept stock (domicile "
                    f"{domicile}) needs market_cap [USD] for its single-name stress",
                    file=sc.file,
                    key_path=("market", name, "market_cap"),
                )
            applies[c, 1] = True
            moves[c, 1] = K.stress_moves(*K.market_cap_moves(cap, sn.china_concept.market_cap_change))
        hk = sn.hk_property
        if (listing in hk.countries or domicile in hk.countries) and (
            u.sector or ""
        ).strip().lower() in hk.sectors:
            applies[c, 3] = True
            moves[c, 3] = K.stress_moves(hk.move, hk.move)
        if sn.default.applies_to_all or not applies[c].any():
            applies[c, 2] = True
            moves[c, 2] = K.stress_moves(sn.default.up, sn.default.down)
    ratio = np.where(is_us, params.initial_ratio_us, params.initial_ratio_non_us)
    return _Groups(names, pcs, up, down, is_stock, is_us, ratio, so, adv, applies, moves, currency, fx)


# ------------------------------------------------------------------------------------------------
# stresses
# ------------------------------------------------------------------------------------------------


@dataclass
class _Stresses:
    moves: np.ndarray  # (C, S) relative price moves
    vol_step: np.ndarray  # (S,) multiples of the vol shift
    scaled: np.ndarray  # (S,) bool: moves scale with the grid's price_scan_scale
    blocks: dict[str, slice]


def _stresses(groups: _Groups, params: PortfolioMarginParams) -> _Stresses:
    n_c = len(groups.names)
    fr = K.scan_fractions(params.points_per_side)
    vp = np.asarray(VOL_POINTS)
    n_v = len(vp)
    scan = np.repeat(K.scan_moves(fr, groups.up, groups.down), n_v, axis=1)  # (C, P*V)
    m = params.extreme.multiple
    ext = np.repeat(K.stress_moves(m * groups.up, m * groups.down), n_v, axis=1)  # (C, 2V)
    cp = params.concentration
    conc = np.broadcast_to(
        np.concatenate(
            [K.stress_moves(cp.top_stress, cp.top_stress), K.stress_moves(cp.rest_stress, cp.rest_stress)]
        ),
        (n_c, 4),
    )
    sn = groups.sn_moves.reshape(n_c, 2 * len(SINGLE_NAME_METHODS))  # (C, M*2)
    lp = np.broadcast_to(K.stress_moves(params.large_position.stress, params.large_position.stress), (n_c, 2))
    parts = [
        ("scan", scan, np.tile(vp, len(fr)), True),
        ("extreme", ext, np.tile(vp, 2), True),
        ("concentration", conc, np.zeros(4), False),
        ("single_name", sn, np.zeros(sn.shape[1]), False),
        ("large_position", lp, np.zeros(2), False),
    ]
    blocks: dict[str, slice] = {}
    start = 0
    for name, mv, _, _ in parts:
        blocks[name] = slice(start, start + mv.shape[1])
        start += mv.shape[1]
    return _Stresses(
        moves=np.concatenate([p[1] for p in parts], axis=1),
        vol_step=np.concatenate([p[2] for p in parts]),
        scaled=np.concatenate([np.full(p[1].shape[1], p[3]) for p in parts]),
        blocks=blocks,
    )


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _pm_contract_mask(contracts: xr.Dataset) -> np.ndarray:
    """Stocks and options on a spot (Black-Scholes model code)."""
    return (contracts["type"].values == "stock") | (
        contracts["is_option"].values & (contracts["model"].values == pricing.BSM)
    )


def _revalue(fn, contracts: xr.Dataset, s, vol, t, r, q) -> xr.DataArray:
    return xr.apply_ufunc(
        fn,
        contracts["model"],
        s,
        contracts["strike"].fillna(0.0),
        t,
        vol,
        r,
        q,
        contracts["is_call"],
        contracts["american"],
        dask="parallelized",
        output_dtypes=[float],
    )


def _grid_coord(inputs: Inputs, dim: str, size: int) -> np.ndarray:
    for ds in (inputs.market, inputs.grid):
        if dim in ds.coords:
            return ds[dim].values
    return np.arange(size)


def _usd_rate(sc: ScenarioFile, key_path: str) -> float:
    return sc.fx_rate("USD", key_path=key_path)


# ------------------------------------------------------------------------------------------------
# the method
# ------------------------------------------------------------------------------------------------


def portfolio_margin(
    inputs: Inputs, params: PortfolioMarginParams | None = None, *, engine: pricing.Engine = "auto"
) -> xr.Dataset:
    """Risk-based portfolio margin of every account of the book.

    Parameters
    ----------
    inputs
        The data model (:func:`marginsim.model.build_inputs`).
    params
        Method parameters; default: the scenario file's ``portfolio_margin`` section, else the
        defaults of :class:`~marginsim.params.portfolio_margin.PortfolioMarginParams`.
    engine
        Pricing engine: ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    xarray.Dataset
        Amounts in the scenario's reporting currency, non-negative; every grid dim of the inputs
        is a dim of the result.

        - per account: ``maintenance``, ``initial``, the components ``scan``, ``minimum``,
          ``base`` (sum over class groups of max(scan, minimum)), ``extreme``, ``concentration``,
          ``single_name``, ``large_position``, ``days_to_liquidate`` (initial only), ``binding``
          (name of the binding component; ``""`` when the requirement is 0),
          ``single_name_driver``, ``concentration_driver`` (dim ``driver_rank``; ``""`` = none),
          ``market_value``, and with ``cash`` (else NaN): ``equity``, ``available_funds``,
          ``excess_liquidity``, ``opening_equity_met``, ``minimum_equity_met`` (1.0 / 0.0);
        - per account and class group (dim ``group``): ``group_scan``, ``group_minimum``,
          ``group_base``, ``group_extreme``, ``concentration_loss_top`` / ``_rest``,
          ``concentration_contribution``, ``concentration_top``, ``single_name_loss`` (dim
          ``single_name_method``; NaN where the method does not apply), ``group_single_name``,
          ``delta_shares``, ``shares_outstanding_fraction``, ``large_position_charge``,
          ``adv_multiple``, ``days_to_liquidate_charge``, ``option_contracts``, ``held``;
        - ``scan_loss`` (account, group, ``price_point``, ``vol_point``): the loss grid of each
          class group [losses positive], with ``price_move`` (group, price_point) the actual moves;
        - per class group: ``product_class``, ``scan_range_up`` / ``_down``, ``us_security``,
          ``initial_ratio``, ``single_name_applies``, ``single_name_move_up`` / ``_down``.

        Lazy (dask-backed) inputs are refused: margin them with :func:`marginsim.margin`, which
        runs the method chunk by chunk.
    """
    inputs.require_in_memory("portfolio_margin")
    sc = inputs.scenario
    file = sc.file
    params = params or sc.portfolio_margin or PortfolioMarginParams()
    book = inputs.book
    allc = inputs.contracts

    # -- the positions of this method ----------------------------------------------------------------
    in_pm = _pm_contract_mask(allc)
    pos_sel = np.flatnonzero(in_pm[book["contract_index"].values])
    # held by the whole book (inputs.universe, for a chunk of accounts): the same class groups in every chunk
    held = np.intersect1d(inputs.held_contracts(), np.flatnonzero(in_pm))
    contracts = allc.isel(contract=held)
    n_k = len(held)
    local = np.full(allc.sizes["contract"], -1, dtype=np.int64)
    local[held] = np.arange(n_k)
    und_of_k = contracts["underlying_index"].values
    und_groups = np.unique(und_of_k)
    group_of_k = np.searchsorted(und_groups, und_of_k)
    groups = _class_groups(inputs, und_groups, params)
    n_c = len(groups.names)
    n_a = book.sizes["account"]

    gd = list(inputs.grid_dims)
    gsizes = {d: int(inputs.market.sizes.get(d) or inputs.grid.sizes.get(d)) for d in gd}
    gshape = tuple(gsizes[d] for d in gd)
    n_g = int(np.prod(gshape)) if gshape else 1

    pos_k = local[book["contract_index"].values[pos_sel]]
    pos_a = book["account_index"].values[pos_sel]
    qty = book["quantity"].values[pos_sel]
    rows = pos_a * n_c + group_of_k[pos_k]
    R = membership(rows, pos_k, qty, n_a * n_c, n_k)
    held_ac = np.bincount(rows, minlength=n_a * n_c).reshape(n_a, n_c) > 0

    # -- revaluation over every stress ---------------------------------------------------------------
    st = _stresses(groups, params)
    n_s = st.moves.shape[1]
    sub = {"contract": contracts["contract"].values}
    level = inputs.underlying_level().sel(sub)
    vol = inputs.contract_vol().sel(sub).where(contracts["is_option"], 0.0)
    r = inputs.rate().sel(sub)
    q = inputs.dividend_yield().sel(sub)
    t_now = contracts["t"].fillna(0.0)
    t_after = (t_now - params.lookahead_days / DAYS_PER_YEAR).clip(min=0.0)
    value = partial(pricing.value, engine=engine)

    moves = xr.DataArray(st.moves, dims=("class_group", "stress"))
    if "price_scan_scale" in inputs.grid.coords:
        scaled = xr.DataArray(st.scaled, dims="stress")
        moves = xr.where(scaled, (moves * inputs.grid["price_scan_scale"]).clip(min=-1.0), moves)
    moves_k = moves.isel(class_group=xr.DataArray(group_of_k, dims="contract"))
    vol_size = (
        xr.full_like(vol, params.vol_shift)
        if params.vol_shift is not None
        else params.vol_shift_relative * vol
    )
    if "vol_scan_scale" in inputs.grid.coords:
        vol_size = vol_size * inputs.grid["vol_scan_scale"]
    vol_moved = (vol + xr.DataArray(st.vol_step, dims="stress") * vol_size).clip(min=0.0)
    level_moved = (level * (1.0 + moves_k)).clip(min=0.0)

    fx_k = xr.DataArray(groups.fx[group_of_k], dims="contract")
    unit = contracts["multiplier"] * fx_k  # reporting currency per price point per contract
    v_now = _revalue(value, contracts, level, vol, t_now, r, q)
    v_moved = _revalue(value, contracts, level_moved, vol_moved, t_after, r, q)
    pnl_unit = (v_moved - v_now) * unit
    pnl = group_sum(R, flat_grid(pnl_unit, ["contract", "stress"], gd, gshape)).reshape(n_a, n_c, n_s, n_g)

    def block(name: str) -> np.ndarray:
        return pnl[:, :, st.blocks[name]]

    # -- theoretical-value scan, option minimum, extreme scan -----------------------------------------
    n_p = 2 * params.points_per_side
    n_v = len(VOL_POINTS)
    scan_loss = -block("scan").reshape(n_a, n_c, n_p, n_v, n_g) + 0.0
    group_scan = K.worst_loss(block("scan"), axis=2)  # (A, C, G)
    group_extreme = params.extreme.cover_fraction * K.worst_loss(block("extreme"), axis=2)

    is_opt = contracts["is_option"].values
    mult = contracts["multiplier"].values
    opt_contracts = np.asarray(apply_to_entries(R, lambda v, k: np.abs(v) * is_opt[k]).sum(axis=1)).reshape(
        n_a, n_c
    )
    opt_units = np.asarray(
        apply_to_entries(R, lambda v, k: np.abs(v) * mult[k] * is_opt[k]).sum(axis=1)
    ).reshape(n_a, n_c)
    usd_min = _usd_rate(sc, "portfolio_margin.option_minimum") if opt_units.any() else 1.0
    group_minimum = params.option_minimum * usd_min * opt_units  # (A, C)
    group_base = np.maximum(group_scan, group_minimum[..., None])

    # -- concentration ---------------------------------------------------------------------------------
    conc = block("concentration")
    conc_top = K.worst_loss(conc[:, :, 0:2], axis=2)
    conc_rest = K.worst_loss(conc[:, :, 2:4], axis=2)
    top_n = params.concentration.top_n
    in_conc = held_ac & np.isin(groups.product_class, params.concentration.product_classes)[None, :]
    concentration, conc_contrib, conc_is_top = K.top_n_concentration(
        np.moveaxis(conc_top, 1, -1), np.moveaxis(conc_rest, 1, -1), in_conc[:, None, :], top_n
    )  # (A, G), (A, G, C), (A, G, C)
    key = np.where(conc_is_top & (np.moveaxis(conc_top, 1, -1) > 0), np.moveaxis(conc_top, 1, -1), -np.inf)
    order = np.argsort(-key, axis=-1, kind="stable")[..., :top_n]  # (A, G, min(top_n, C))
    valid = np.take_along_axis(key, order, axis=-1) > -np.inf
    names = np.array([*groups.names, ""], dtype=object)  # "" = no driver
    conc_drivers = np.full((n_a, n_g, top_n), "", dtype=object)
    conc_drivers[..., : order.shape[-1]] = names[np.where(valid, order, n_c)]

    # -- single-name methods ---------------------------------------------------------------------------
    n_m = len(SINGLE_NAME_METHODS)
    sn_pnl = block("single_name").reshape(n_a, n_c, n_m, 2, n_g)
    sn_loss = K.worst_loss(sn_pnl, axis=3)  # (A, C, M, G)
    app = groups.sn_applies[None, :, :, None]
    sn_loss_rep = np.where(app, sn_loss, np.nan)
    group_sn = np.max(np.where(app, sn_loss, 0.0), axis=2)  # (A, C, G)
    eligible = held_ac & groups.is_stock[None, :]
    single_name, sn_idx = K.largest_group(np.moveaxis(group_sn, 1, -1), eligible[:, None, :])  # (A, G)
    sn_driver = names[np.where(sn_idx >= 0, sn_idx, n_c)].astype(str)

    # -- add-ons: large position, days to liquidate ----------------------------------------------------
    d_unit = _revalue(partial(pricing.delta, engine=engine), contracts, level, vol, t_now, r, q)
    shares_unit = d_unit * contracts["multiplier"]
    delta_shares = group_sum(R, flat_grid(shares_unit, ["contract"], gd, gshape)).reshape(n_a, n_c, n_g)
    with np.errstate(divide="ignore", invalid="ignore"):
        so_frac = np.abs(delta_shares) / groups.shares_outstanding[None, :, None]
        adv_mult = np.abs(delta_shares) / groups.adv[None, :, None]
    lp = params.large_position
    lp_on = held_ac[..., None] & (np.nan_to_num(so_frac, nan=0.0) >= lp.threshold)
    lp_charge = np.where(lp_on, K.worst_loss(block("large_position"), axis=2), 0.0)
    dp = params.days_to_liquidate
    dtl_charge = K.liquidity_factor(adv_mult, dp.threshold, dp.scaling, dp.cap) * group_base
    dtl_charge = np.where(held_ac[..., None], dtl_charge, 0.0)

    # -- sums, binding component, maintenance and initial ----------------------------------------------
    scan = group_scan.sum(axis=1)
    minimum = np.broadcast_to(group_minimum.sum(axis=1)[:, None], (n_a, n_g))
    base = group_base.sum(axis=1)
    extreme = group_extreme.sum(axis=1)
    large_position = lp_charge.sum(axis=1)
    days_to_liquidate = dtl_charge.sum(axis=1)
    core, core_idx = K.binding_component(np.stack([base, extreme, concentration, single_name], axis=-1))
    maintenance = core + large_position
    labels = np.array(["scan", "extreme", "concentration", "single_name", ""], dtype=object)
    binding = labels[np.where(core_idx >= 0, core_idx, 4)]
    binding = np.where((core_idx == 0) & (base > scan * (1 + 1e-12) + 1e-9), "minimum", binding).astype(str)

    c_axis = np.arange(n_c)
    sn_part = np.where(c_axis[None, None, :] == sn_idx[..., None], np.moveaxis(group_sn, 1, -1), 0.0)
    parts = np.stack(
        [np.moveaxis(group_base, 1, -1), np.moveaxis(group_extreme, 1, -1), conc_contrib, sn_part]
    )  # (4, A, G, C)
    chosen = np.take_along_axis(parts, np.maximum(core_idx, 0)[None, ..., None], axis=0)[0]
    chosen = np.where((core_idx >= 0)[..., None], chosen, 0.0)
    initial = K.initial_requirement(
        chosen, groups.ratio, np.moveaxis(lp_charge, 1, -1), np.moveaxis(dtl_charge, 1, -1)
    )

    # -- equity and account thresholds -----------------------------------------------------------------
    base_level = inputs.market["base_price"].isel(underlying=contracts["underlying_index"])
    v_base = _revalue(value, contracts, base_level, contracts["base_vol"].fillna(0.0), t_now, r, q)
    given = contracts["price"].where(contracts["is_option"])
    mv_unit = xr.where(given.notnull(), given + v_now - v_base, v_now) * unit
    Ra = membership(pos_a, pos_k, qty, n_a, n_k)
    market_value = group_sum(Ra, flat_grid(mv_unit, ["contract"], gd, gshape))  # (A, G)
    accounts = inputs.accounts
    cash = np.full(n_a, np.nan)
    row_of = {a: i for i, a in enumerate(accounts)}
    in_book = inputs.book_accounts()
    for name, amount in params.cash.items():
        if name not in in_book:
            raise InputError(
                f"account {name!r} has no positions in the book",
                file=file,
                key_path=("portfolio_margin", "cash", name),
            )
        if name in row_of:  # else: in another chunk of the book's accounts
            cash[row_of[name]] = amount
    equity = cash[:, None] + market_value
    has_cash = ~np.isnan(cash)[:, None] & np.ones((1, n_g), dtype=bool)
    open_min, keep_min = params.equity_thresholds()

    def flag(threshold, key):
        """True / False where the account's cash is given; NaN where unknown or no threshold."""
        if threshold is None or not has_cash.any():
            return np.full((n_a, n_g), np.nan)
        amount = threshold.amount * sc.fx_rate(threshold.currency, key_path=f"portfolio_margin.{key}")
        return np.where(has_cash, (equity >= amount).astype(float), np.nan)

    opening_met = flag(open_min, "opening_equity")
    minimum_met = flag(keep_min, "minimum_equity")

    # -- result ----------------------------------------------------------------------------------------
    fr = K.scan_fractions(params.points_per_side)

    def a_(x):
        return (("account", *gd), np.asarray(x).reshape((n_a, *gshape)))

    def ac(x):
        x = np.broadcast_to(np.asarray(x)[..., None] if np.ndim(x) == 2 else x, (n_a, n_c, n_g))
        return (("account", "group", *gd), x.reshape((n_a, n_c, *gshape)))

    coords: dict[str, Any] = {
        "account": accounts,
        "group": groups.names,
        "price_point": fr,
        "vol_point": np.asarray(VOL_POINTS),
        "single_name_method": list(SINGLE_NAME_METHODS),
        "driver_rank": np.arange(1, top_n + 1),
    }
    for d in gd:
        coords[d] = _grid_coord(inputs, d, gsizes[d])
    price_move = xr.DataArray(K.scan_moves(fr, groups.up, groups.down), dims=("group", "price_point"))
    if "price_scan_scale" in inputs.grid.coords:
        price_move = (price_move * inputs.grid["price_scan_scale"]).clip(min=-1.0)
    ds = xr.Dataset(
        {
            "maintenance": a_(maintenance),
            "initial": a_(initial),
            "base": a_(base),
            "scan": a_(scan),
            "minimum": a_(minimum),
            "extreme": a_(extreme),
            "concentration": a_(concentration),
            "single_name": a_(single_name),
            "large_position": a_(large_position),
            "days_to_liquidate": a_(days_to_liquidate),
            "binding": a_(binding),
            "single_name_driver": a_(sn_driver),
            "concentration_driver": (
                ("account", "driver_rank", *gd),
                np.moveaxis(conc_drivers, -1, 1).reshape((n_a, top_n, *gshape)).astype(str),
            ),
            "market_value": a_(market_value),
            "equity": a_(equity),
            "available_funds": a_(equity - initial),
            "excess_liquidity": a_(equity - maintenance),
            "opening_equity_met": a_(opening_met),
            "minimum_equity_met": a_(minimum_met),
            "group_scan": ac(group_scan),
            "group_minimum": ac(group_minimum),
            "group_base": ac(group_base),
            "group_extreme": ac(group_extreme),
            "concentration_loss_top": ac(conc_top),
            "concentration_loss_rest": ac(conc_rest),
            "concentration_contribution": ac(np.moveaxis(conc_contrib, -1, 1)),
            "concentration_top": ac(np.moveaxis(conc_is_top, -1, 1)),
            "single_name_loss": (
                ("account", "group", "single_name_method", *gd),
                sn_loss_rep.reshape((n_a, n_c, n_m, *gshape)),
            ),
            "group_single_name": ac(group_sn),
            "delta_shares": ac(delta_shares),
            "shares_outstanding_fraction": ac(np.where(held_ac[..., None], so_frac, np.nan)),
            "large_position_charge": ac(lp_charge),
            "adv_multiple": ac(np.where(held_ac[..., None], adv_mult, np.nan)),
            "days_to_liquidate_charge": ac(dtl_charge),
            "option_contracts": (("account", "group"), opt_contracts),
            "held": (("account", "group"), held_ac),
            "scan_loss": (
                ("account", "group", "price_point", "vol_point", *gd),
                scan_loss.reshape((n_a, n_c, n_p, n_v, *gshape)),
            ),
            "price_move": price_move,
            "product_class": ("group", np.array(groups.product_class, dtype=object)),
            "scan_range_up": ("group", groups.up),
            "scan_range_down": ("group", groups.down),
            "us_security": ("group", groups.is_us),
            "initial_ratio": ("group", groups.ratio),
            "single_name_applies": (("group", "single_name_method"), groups.sn_applies),
            "single_name_move_up": (("group", "single_name_method"), groups.sn_moves[..., 0]),
            "single_name_move_down": (("group", "single_name_method"), -groups.sn_moves[..., 1]),
            "group_currency": ("group", np.array(groups.currency, dtype=object)),
            "group_fx": ("group", groups.fx),
        },
        coords=coords,
        attrs={
            "method": "portfolio_margin",
            "currency": sc.currency,
            "scenario": sc.name,
            "vol_shift": float(
                params.vol_shift if params.vol_shift is not None else params.vol_shift_relative
            ),
            "vol_shift_kind": "absolute" if params.vol_shift is not None else "relative",
            "extreme_multiple": params.extreme.multiple,
            "extreme_cover_fraction": params.extreme.cover_fraction,
        },
    )
    _describe(ds, sc.currency)
    return ds


_DESCRIPTIONS = {
    "maintenance": "max(base, extreme, concentration, single_name) + large_position",
    "initial": "sum over class groups of ratio x (part of the binding component + large position) + days to liquidate",
    "base": "sum over class groups of max(scan loss, option minimum)",
    "scan": "sum over class groups of the largest loss of the theoretical-value scan",
    "minimum": "sum over class groups of the option minimum (0.375 USD x multiplier per contract)",
    "extreme": "sum over class groups of cover fraction x largest extreme-scan loss",
    "concentration": "riskiest class groups at the hard stress, the others at the mild stress",
    "single_name": "largest single-name stress loss of one stock with its derivatives",
    "large_position": "loss under the large-position stress of class groups at or above the share threshold",
    "days_to_liquidate": "initial-margin add-on for positions large against average daily volume",
    "market_value": "value of the stocks and options of the method, long positive",
    "equity": "cash + market value",
    "available_funds": "equity - initial",
    "excess_liquidity": "equity - maintenance",
    "scan_loss": "loss of the class group per scan point (losses positive)",
    "delta_shares": "delta-equivalent shares of the class group",
}
_MONEY = (
    "maintenance initial base scan minimum extreme concentration single_name large_position days_to_liquidate "
    "market_value equity available_funds excess_liquidity group_scan group_minimum group_base group_extreme "
    "concentration_loss_top concentration_loss_rest concentration_contribution single_name_loss "
    "group_single_name large_position_charge days_to_liquidate_charge scan_loss"
).split()


def _describe(ds: xr.Dataset, currency: str) -> None:
    for v in _MONEY:
        ds[v].attrs["units"] = currency
    for v, text in _DESCRIPTIONS.items():
        ds[v].attrs["description"] = text
    ds["delta_shares"].attrs["units"] = "shares"
    ds["shares_outstanding_fraction"].attrs["units"] = "1"
    ds["adv_multiple"].attrs["units"] = "days of average daily volume"
    ds["price_move"].attrs.update(units="fraction of price", description="scan move of each price point")
    ds["price_point"].attrs.update(units="fraction of the scan range")
    ds["vol_point"].attrs.update(units="multiples of the vol shift")


# ------------------------------------------------------------------------------------------------
# JSON and text
# ------------------------------------------------------------------------------------------------


def _drop_empty(x: Any) -> Any:
    """Innermost lists without "" (drivers that do not exist)."""
    if isinstance(x, list):
        if all(not isinstance(v, list) for v in x):
            return [v for v in x if v != ""]
        return [_drop_empty(v) for v in x]
    return x


def _names(x: Any) -> Any:
    """Empty string (no name) -> None, in nested lists too."""
    if isinstance(x, list):
        return [_names(v) for v in x]
    return x or None


def _flags(x: Any) -> Any:
    """1.0 / 0.0 / None (unknown) -> True / False / None, in nested lists too."""
    if isinstance(x, list):
        return [_flags(v) for v in x]
    return None if x is None or x != x else bool(x)


def pm_to_dict(ds: xr.Dataset, gd: list[str]) -> dict[str, Any]:
    """Per account: the ``portfolio_margin`` object of the JSON contract.

    Parameters
    ----------
    ds
        Result of :func:`portfolio_margin`.
    gd
        Grid dims, in the order of the JSON ``dims``.

    Returns
    -------
    dict
        Account name -> object with the fixed keys ``maintenance``, ``initial``, ``binding``,
        ``components``, ``single_name_driver``, ``concentration_drivers``, plus ``base``,
        ``currency``, equity figures and ``class_groups`` (per class group breakdown and its
        ``loss_grid``). Numbers that vary along grid dims are nested lists in the order of ``gd``.
    """
    out: dict[str, Any] = {}
    for a, acct in enumerate(ds["account"].values.tolist()):
        d = ds.isel(account=a)
        obj: dict[str, Any] = {
            "maintenance": to_plain(d["maintenance"], gd),
            "initial": to_plain(d["initial"], gd),
            "binding": _names(to_plain(d["binding"], gd)),
            "components": {k: to_plain(d[k], gd) for k in COMPONENTS},
            "single_name_driver": _names(to_plain(d["single_name_driver"], gd)),
            "concentration_drivers": _drop_empty(to_plain(d["concentration_driver"], [*gd, "driver_rank"])),
            "base": to_plain(d["base"], gd),
            "currency": ds.attrs.get("currency"),
            "market_value": to_plain(d["market_value"], gd),
            "equity": to_plain(d["equity"], gd),
            "available_funds": to_plain(d["available_funds"], gd),
            "excess_liquidity": to_plain(d["excess_liquidity"], gd),
            "opening_equity_met": _flags(to_plain(d["opening_equity_met"], gd)),
            "minimum_equity_met": _flags(to_plain(d["minimum_equity_met"], gd)),
        }
        cgs: dict[str, Any] = {}
        for g, name in enumerate(ds["group"].values.tolist()):
            if not bool(d["held"].values[g]):
                continue
            dg = d.isel(group=g)
            methods = {}
            for m, meth in enumerate(SINGLE_NAME_METHODS):
                if bool(ds["single_name_applies"].values[g, m]):
                    methods[meth] = {
                        "up": float(ds["single_name_move_up"].values[g, m]),
                        "down": float(ds["single_name_move_down"].values[g, m]),
                        "loss": to_plain(dg["single_name_loss"].isel(single_name_method=m), gd),
                    }
            cgs[name] = {
                "product_class": str(ds["product_class"].values[g]),
                "us_security": bool(ds["us_security"].values[g]),
                "initial_ratio": float(ds["initial_ratio"].values[g]),
                "margin_currency": str(ds["group_currency"].values[g]),
                "fx_rate": float(ds["group_fx"].values[g]),
                "scan_range": {
                    "up": float(ds["scan_range_up"].values[g]),
                    "down": float(ds["scan_range_down"].values[g]),
                },
                "scan": to_plain(dg["group_scan"], gd),
                "minimum": to_plain(dg["group_minimum"], gd),
                "option_contracts": float(dg["option_contracts"]),
                "base": to_plain(dg["group_base"], gd),
                "extreme": to_plain(dg["group_extreme"], gd),
                "concentration": {
                    "loss_top": to_plain(dg["concentration_loss_top"], gd),
                    "loss_rest": to_plain(dg["concentration_loss_rest"], gd),
                    "riskiest": to_plain(dg["concentration_top"], gd),
                    "contribution": to_plain(dg["concentration_contribution"], gd),
                },
                "single_name": {"loss": to_plain(dg["group_single_name"], gd), "methods": methods},
                "delta_shares": to_plain(dg["delta_shares"], gd),
                "shares_outstanding_fraction": to_plain(dg["shares_outstanding_fraction"], gd),
                "large_position": to_plain(dg["large_position_charge"], gd),
                "adv_multiple": to_plain(dg["adv_multiple"], gd),
                "days_to_liquidate": to_plain(dg["days_to_liquidate_charge"], gd),
                "loss_grid": {
                    "price_moves": to_plain(ds["price_move"].isel(group=g), [*gd, "price_point"]),
                    "vol_points": ds["vol_point"].values.tolist(),
                    "vol_shift": {ds.attrs["vol_shift_kind"]: ds.attrs["vol_shift"]},
                    "loss": to_plain(dg["scan_loss"], [*gd, "price_point", "vol_point"]),
                },
            }
        obj["class_groups"] = cgs
        out[acct] = obj
    return out


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{float(x):,.2f}"


def pm_table(ds: xr.Dataset, account: str) -> str:
    """A readable portfolio-margin breakdown of one account (first grid point when there are grid dims)."""
    d = ds.sel(account=account)
    gd = list(d["maintenance"].dims)
    note = ""
    if gd:
        d = d.isel({dim: 0 for dim in gd})
        note = "  (first grid point: " + ", ".join(f"{dim}={ds[dim].values[0]}" for dim in gd) + ")"
    ccy = ds.attrs.get("currency", "")
    binding = d["binding"].item()
    lines = [f"PORTFOLIO MARGIN  account {account}  [{ccy}]{note}"]
    w = 15
    head = (
        f"{'class group':<14}{'class':<21}{'scan':>{w}}{'minimum':>{w}}{'extreme':>{w}}"
        f"{'concentration':>{w + 1}}{'single name':>{w}}{'large pos.':>{w}}{'DTL':>{w}}"
    )
    lines += [head, "-" * len(head)]
    for g, name in enumerate(ds["group"].values.tolist()):
        if not bool(d["held"].values[g]):
            continue
        dg = d.isel(group=g)
        star = "*" if bool(dg["concentration_top"]) else " "
        sn = dg["group_single_name"].item() if ds["product_class"].values[g] == "equity" else None
        lines.append(
            f"{name:<14}{str(ds['product_class'].values[g]):<21}{_fmt(dg['group_scan'].item()):>{w}}"
            f"{_fmt(dg['group_minimum'].item()):>{w}}{_fmt(dg['group_extreme'].item()):>{w}}"
            f"{_fmt(dg['concentration_contribution'].item()):>{w}}{star}{_fmt(sn):>{w}}"
            f"{_fmt(dg['large_position_charge'].item()):>{w}}{_fmt(dg['days_to_liquidate_charge'].item()):>{w}}"
        )
    lines.append("-" * len(head))
    for k in _TABLE_ROWS:
        mark = "  <- binding" if k == binding or (k == "base" and binding in ("scan", "minimum")) else ""
        extra = ""
        if k == "concentration":
            drv = [x for x in d["concentration_driver"].values.tolist() if x]
            extra = f"  drivers: {', '.join(drv) if drv else '-'}"
        elif k == "single_name":
            extra = f"  driver: {d['single_name_driver'].item() or '-'}"
        elif k == "days_to_liquidate":
            extra = "  (initial only)"
        lines.append(f"{k:<22}{_fmt(d[k].item()):>16}{mark}{extra}")
    lines.append(f"{'maintenance':<22}{_fmt(d['maintenance'].item()):>16}  binding: {binding or '-'}")
    lines.append(f"{'initial':<22}{_fmt(d['initial'].item()):>16}")
    lines.append(f"{'market value':<22}{_fmt(d['market_value'].item()):>16}")
    if not np.isnan(d["equity"].item()):
        lines.append(f"{'equity':<22}{_fmt(d['equity'].item()):>16}")
        lines.append(f"{'available funds':<22}{_fmt(d['available_funds'].item()):>16}")
        lines.append(f"{'excess liquidity':<22}{_fmt(d['excess_liquidity'].item()):>16}")
        lines.append(
            f"{'opening equity met':<22}{str(_flags(d['opening_equity_met'].item())):>16}"
            f"   {'minimum equity met':<20}{str(_flags(d['minimum_equity_met'].item())):>6}"
        )
    return "\n".join(lines)
