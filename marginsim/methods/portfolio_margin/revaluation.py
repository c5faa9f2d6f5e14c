"""Theoretical values: every contract revalued once over every stress, summed per class group.

Values come from :func:`marginsim.kernels.pricing.value` (Black-Scholes-Merton, American by
binomial tree) in the contract's currency per unit of price; ``unit`` (multiplier x FX) turns them
into the reporting currency per contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import xarray as xr

from ...kernels import pricing
from ...kernels.grouping import group_sum, membership
from ...model import DAYS_PER_YEAR, Inputs, flat_grid
from ...params.portfolio_margin import PortfolioMarginParams
from .book import PmBook
from .stresses import Stresses, vol_shift

__all__ = ["Market", "revalue", "market_of", "stress_pnl", "delta_shares", "market_value"]


@dataclass
class Market:
    """Market data of the method's contracts (dim ``contract``, and any grid dims).

    Attributes
    ----------
    level
        Underlying level [price].
    vol
        Implied vol [annualised]; 0 for stocks.
    rate, dividend_yield
        Continuous rates [per year].
    t_now
        Time to expiry [years]; 0 for stocks.
    unit
        Reporting currency per point of price per contract (multiplier x FX).
    value_now
        Theoretical value now [price].
    """

    level: xr.DataArray
    vol: xr.DataArray
    rate: xr.DataArray
    dividend_yield: xr.DataArray
    t_now: xr.DataArray
    unit: xr.DataArray
    value_now: xr.DataArray


def revalue(
    fn: Callable[..., np.ndarray],
    contracts: xr.Dataset,
    s: xr.DataArray,
    vol: xr.DataArray,
    t: xr.DataArray,
    r: xr.DataArray,
    q: xr.DataArray,
) -> xr.DataArray:
    """``fn`` (a pricing function: value or delta) of every contract at level ``s``, vol ``vol``, time ``t``."""
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


def market_of(inputs: Inputs, book: PmBook, engine: pricing.Engine) -> Market:
    """Market data and current theoretical values of the book's contracts."""
    contracts = book.contracts
    sub = {"contract": contracts["contract"].values}
    level = inputs.underlying_level().sel(sub)
    vol = inputs.contract_vol().sel(sub).where(contracts["is_option"], 0.0)
    r = inputs.rate().sel(sub)
    q = inputs.dividend_yield().sel(sub)
    t_now = inputs.time_to_expiry(contracts).fillna(0.0)  # per date over a date grid dim
    fx_k = xr.DataArray(book.groups.fx[book.group_of_k], dims="contract")
    unit = contracts["multiplier"] * fx_k  # reporting currency per price point per contract
    v_now = revalue(partial(pricing.value, engine=engine), contracts, level, vol, t_now, r, q)
    return Market(level, vol, r, q, t_now, unit, v_now)


def stress_pnl(
    inputs: Inputs,
    book: PmBook,
    mk: Market,
    st: Stresses,
    params: PortfolioMarginParams,
    engine: pricing.Engine,
    per_contract: bool = False,
) -> np.ndarray:
    """Pnl of every (account, class group) under every stress [reporting currency].

    The stressed values are taken ``lookahead_days`` later; the scan and extreme moves scale with
    the grid's ``price_scan_scale`` and the vol shift with its ``vol_scan_scale``.

    Returns
    -------
    numpy.ndarray
        Shape ``(A, C, S, G)``: gains positive, ``G`` grid points (1 without grid dims); with
        ``per_contract``, the pnl of one long contract of each of the book's contracts instead,
        shape ``(K, S, G)``.
    """
    contracts = book.contracts
    grid = book.grid
    t_after = (mk.t_now - params.lookahead_days / DAYS_PER_YEAR).clip(min=0.0)
    moves = xr.DataArray(st.moves, dims=("class_group", "stress"))
    if "price_scan_scale" in inputs.grid.coords:
        scaled = xr.DataArray(st.scaled, dims="stress")
        moves = xr.where(scaled, (moves * inputs.grid["price_scan_scale"]).clip(min=-1.0), moves)
    moves_k = moves.isel(class_group=xr.DataArray(book.group_of_k, dims="contract"))
    size, kind = vol_shift(params)
    vol_size = xr.full_like(mk.vol, size) if kind == "absolute" else size * mk.vol
    if "vol_scan_scale" in inputs.grid.coords:
        vol_size = vol_size * inputs.grid["vol_scan_scale"]
    vol_moved = (mk.vol + xr.DataArray(st.vol_step, dims="stress") * vol_size).clip(min=0.0)
    level_moved = (mk.level * (1.0 + moves_k)).clip(min=0.0)
    value = partial(pricing.value, engine=engine)
    v_moved = revalue(value, contracts, level_moved, vol_moved, t_after, mk.rate, mk.dividend_yield)
    pnl_unit = (v_moved - mk.value_now) * mk.unit
    n_s = st.moves.shape[1]
    flat = flat_grid(pnl_unit, ["contract", "stress"], grid.dims, grid.shape)
    if per_contract:
        return flat
    return group_sum(book.member, flat).reshape(book.n_accounts, book.n_groups, n_s, grid.size)


def delta_shares(book: PmBook, mk: Market, engine: pricing.Engine) -> np.ndarray:
    """Delta-equivalent shares of every (account, class group) [shares], shape ``(A, C, G)``."""
    d_unit = revalue(
        partial(pricing.delta, engine=engine),
        book.contracts,
        mk.level,
        mk.vol,
        mk.t_now,
        mk.rate,
        mk.dividend_yield,
    )
    shares_unit = d_unit * book.contracts["multiplier"]
    grid = book.grid
    flat = flat_grid(shares_unit, ["contract"], grid.dims, grid.shape)
    return group_sum(book.member, flat).reshape(book.n_accounts, book.n_groups, grid.size)


def market_value(inputs: Inputs, book: PmBook, mk: Market, engine: pricing.Engine) -> np.ndarray:
    """Value of each account's stocks and options, long positive [reporting currency], shape ``(A, G)``.

    An option with a given ``price`` is worth that price moved by the change of its theoretical
    value from the base market; others are worth their theoretical value.
    """
    contracts = book.contracts
    base_level = inputs.market["base_price"].isel(underlying=contracts["underlying_index"])
    v_base = revalue(
        partial(pricing.value, engine=engine),
        contracts,
        base_level,
        contracts["base_vol"].fillna(0.0),
        mk.t_now,
        mk.rate,
        mk.dividend_yield,
    )
    given = contracts["price"].where(contracts["is_option"])
    mv_unit = xr.where(given.notnull(), given + mk.value_now - v_base, mk.value_now) * mk.unit
    per_account = membership(
        book.pos_account, book.pos_contract, book.quantity, book.n_accounts, book.n_contracts
    )
    grid = book.grid
    return group_sum(per_account, flat_grid(mv_unit, ["contract"], grid.dims, grid.shape))
