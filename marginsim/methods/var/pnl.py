"""The P&L matrix: every contract of the book revalued under every scenario, summed per account.

Futures, stocks and CFDs are linear (value = level); options are fully revalued with the pricing
kernels (:func:`marginsim.kernels.pricing.value`: Black-76, Black-Scholes-Merton, American by
tree) at the scenario level and vol, with the time to expiry of now (the move is instant: no
time decay over the holding period). European options are revalued and added into the
accounts' rows in one fused pass (:func:`marginsim.kernels.var.revalue_options`: numba, parallel
over scenario columns, ``ln(F / K)`` of a scenario = ``ln(F / K)`` now + the log move, nothing
materialised); American ones block by block of contracts (a bounded working set) by the tree,
each block's P&L added by :func:`marginsim.kernels.var.accumulate_pnl`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ...errors import InputError
from ...kernels import pricing
from ...kernels.grouping import group_sum, membership
from ...kernels.var import accumulate_pnl, revalue_options, scenario_levels
from ...model import DAYS_PER_YEAR, Inputs, flat_grid
from .scenarios import ScenarioSet

__all__ = ["BookMarket", "book_market", "account_pnl", "net_delta", "BLOCK_ELEMENTS"]

#: Elements (contracts x scenarios x grid points) revalued at once [count]: about 32 MB per array.
BLOCK_ELEMENTS = 4_000_000


@dataclass
class BookMarket:
    """The book's held contracts and their market now, flattened over the grid.

    Attributes
    ----------
    contracts
        The held contracts (a subset of :attr:`Inputs.contracts`), rows ``0..K-1``.
    account, row, quantity
        Per position: account index, row of its contract, quantity [contracts].
    und
        ``(K,)`` row of each contract's underlying in the scenario set.
    level, vol, rate, dividend_yield, t
        ``(K, G)`` market now per contract and grid point; ``t`` time to expiry [years] (from
        each date of a ``date`` dim, else from the valuation date).
    unit
        ``(K,)`` reporting currency per price point per contract (multiplier x FX).
    grid_dims, grid_shape
        The grid dims flattened into ``G`` and their sizes.
    date
        ``(G,)`` the valuation-date row of each grid point (0 without a ``date`` dim).
    """

    contracts: xr.Dataset
    account: np.ndarray
    row: np.ndarray
    quantity: np.ndarray
    und: np.ndarray
    level: np.ndarray
    vol: np.ndarray
    rate: np.ndarray
    dividend_yield: np.ndarray
    t: np.ndarray
    unit: np.ndarray
    grid_dims: list[str]
    grid_shape: tuple[int, ...]
    date: np.ndarray

    @property
    def grid_size(self) -> int:
        return int(np.prod(self.grid_shape))


def book_market(inputs: Inputs, scen: ScenarioSet) -> BookMarket:
    """The held contracts of ``inputs.book`` and their market, mapped to the scenario set's underlyings.

    Raises
    ------
    InputError
        A held contract whose underlying has no history (key path ``history.columns``).
    """
    book = inputs.book
    k_all = book["contract_index"].values.astype(np.int64)
    held, row = np.unique(k_all, return_inverse=True)
    c = inputs.contracts.isel(contract=held)
    und_names = c["underlying"].values
    und = pd.Index(scen.underlyings).get_indexer(und_names) if held.size else np.zeros(0, np.int64)
    missing = np.flatnonzero(und < 0)
    if missing.size:
        i = int(missing[0])
        raise InputError(
            f"contract {c['contract'].values[i]!r} is held but its underlying {und_names[i]!r} has no history "
            f"(the history's underlyings: {', '.join(scen.underlyings)}); map it with history.columns",
            file=inputs.scenario.file,
            key_path="history.columns",
        )
    level = inputs.underlying_level(c)
    vol = inputs.contract_vol(c).fillna(0.0)
    rate, q = inputs.rate(c), inputs.dividend_yield(c)
    t = c["t"].fillna(0.0)
    if "date" in inputs.market.dims:  # a backtest's dates: the time to expiry runs from each
        dates = inputs.market["date"].values.astype("datetime64[D]")
        days = (c["expiry"].values[:, None] - dates[None, :]).astype("timedelta64[D]").astype(float)
        t = xr.DataArray(np.nan_to_num(np.maximum(days, 0.0)) / DAYS_PER_YEAR, dims=("contract", "date"))
    present = set(level.dims) | set(vol.dims) | set(rate.dims) | set(q.dims) | set(t.dims)
    gd = [d for d in inputs.grid_dims if d in present]
    if "date" in present and "date" not in gd:
        gd.append("date")
    sizes = {**level.sizes, **vol.sizes, **rate.sizes, **q.sizes, **t.sizes}
    shape = tuple(int(sizes[d]) for d in gd)
    date = np.zeros(int(np.prod(shape)), dtype=np.int64)
    if "date" in gd:
        date = np.indices(shape)[gd.index("date")].reshape(-1).astype(np.int64)
    fx = inputs.market["fx"].values[c["underlying_index"].values]
    return BookMarket(
        contracts=c,
        account=book["account_index"].values.astype(np.int64),
        row=row.astype(np.int64).reshape(-1),
        quantity=book["quantity"].values.astype(float),
        und=und.astype(np.int64),
        level=flat_grid(level, ["contract"], gd, shape),
        vol=flat_grid(vol, ["contract"], gd, shape),
        rate=flat_grid(rate, ["contract"], gd, shape),
        dividend_yield=flat_grid(q, ["contract"], gd, shape),
        t=flat_grid(t, ["contract"], gd, shape),
        unit=c["multiplier"].values * fx,
        grid_dims=gd,
        grid_shape=shape,
        date=date,
    )


def account_pnl(bm: BookMarket, scen: ScenarioSet, n_accounts: int, engine: pricing.Engine) -> np.ndarray:
    """P&L of every account under every scenario [reporting currency], gains positive.

    Linear contracts (futures, stocks, CFDs): their P&L is linear in the scenario factors, so the
    positions are first summed into exposures per (account, underlying) (a sparse product) and
    the P&L is one dense product of exposures and ``factor - 1``. Options: revalued block by block
    of contracts and added per position (:func:`marginsim.kernels.var.accumulate_pnl`), minus
    their value now.

    Returns
    -------
    numpy.ndarray
        ``(A, S, G)``.
    """
    n_s, g = scen.size, bm.grid_size
    out = np.zeros((n_accounts, n_s * g))
    n_k = bm.und.size
    if n_k == 0 or n_s == 0:
        return out.reshape(n_accounts, n_s, g)
    c = bm.contracts
    model = c["model"].values
    weight = bm.quantity * bm.unit[bm.row]  # reporting currency per price point, per position
    pnl = out.reshape(n_accounts, n_s, g)
    linear = model[bm.row] == pricing.LINEAR
    if linear.any():
        n_u = scen.price.shape[0]
        m = membership(
            bm.account[linear] * n_u + bm.und[bm.row[linear]],
            bm.row[linear],
            weight[linear],
            n_accounts * n_u,
            n_k,
        )
        exposure = group_sum(m, bm.level).reshape(n_accounts, n_u, g)  # currency per unit of factor
        moves = scen.price - 1.0  # (U, S, D)
        if g == 1:
            pnl[:, :, 0] += exposure[:, :, 0] @ moves[:, :, 0]
        elif moves.shape[2] == 1:
            pnl += np.einsum("aug,us->asg", exposure, moves[:, :, 0], optimize=True)
        else:  # a date dim: each grid point's date has its own scenarios
            pnl += np.einsum("aug,usg->asg", exposure, moves[:, :, bm.date], optimize=True)
    options = np.flatnonzero(model != pricing.LINEAR)
    if options.size:
        _option_pnl(bm, scen, options, ~linear, weight, out, n_accounts, engine)
    return pnl


def _option_pnl(
    bm: BookMarket,
    scen: ScenarioSet,
    options: np.ndarray,
    held: np.ndarray,
    weight: np.ndarray,
    out: np.ndarray,
    n_accounts: int,
    engine: pricing.Engine,
) -> None:
    """Add the options' P&L into ``out`` ``(A, S x G)``: ``options`` are their contract rows,
    ``held`` flags the positions in them. European options: :func:`marginsim.kernels.var.revalue_options`
    (one fused pass); American ones: the tree, block by block of contracts."""
    c = bm.contracts.isel(contract=options)
    model = c["model"].values
    strike = c["strike"].fillna(0.0).values
    is_call, american = c["is_call"].values, c["american"].values
    level, vol, t = bm.level[options], bm.vol[options], bm.t[options]
    rate, q, und = bm.rate[options], bm.dividend_yield[options], bm.und[options]
    account, w = bm.account[held], weight[held]
    row = np.searchsorted(options, bm.row[held])  # row among the options
    n_o = options.size
    # value now: once per contract; its part of every scenario's P&L is one (account, grid) term
    v_now = pricing.value(
        model[:, None],
        level,
        strike[:, None],
        t,
        vol,
        rate,
        q,
        is_call[:, None],
        american[:, None],
        engine=engine,
    )  # (O, G)
    now = group_sum(membership(account, row, w, n_accounts, n_o), v_now)  # (A, G)
    euro = np.flatnonzero(~american)
    if euro.size:
        new_row = np.full(n_o, -1, dtype=np.int64)
        new_row[euro] = np.arange(euro.size)
        ps = new_row[row] >= 0
        revalue_options(
            model[euro],
            strike[euro],
            is_call[euro],
            und[euro],
            level[euro],
            vol[euro],
            t[euro],
            rate[euro],
            q[euro],
            scen.price,
            scen.log_price,
            scen.vol,
            bm.date,
            account[ps],
            new_row[row[ps]],
            w[ps],
            out,
            block_elements=BLOCK_ELEMENTS,
            engine=engine,
        )
    tree = np.flatnonzero(american)
    if tree.size:
        _tree_pnl(
            bm, scen, tree, model, strike, is_call, level, vol, t, rate, q, und, account, row, w, out, engine
        )
    pnl = out.reshape(n_accounts, scen.size, bm.grid_size)
    pnl -= now[:, None, :]


def _tree_pnl(
    bm: BookMarket,
    scen: ScenarioSet,
    tree: np.ndarray,
    model: np.ndarray,
    strike: np.ndarray,
    is_call: np.ndarray,
    level: np.ndarray,
    vol: np.ndarray,
    t: np.ndarray,
    rate: np.ndarray,
    q: np.ndarray,
    und: np.ndarray,
    account: np.ndarray,
    row: np.ndarray,
    w: np.ndarray,
    out: np.ndarray,
    engine: pricing.Engine,
) -> None:
    """Add the scenario values of the American options ``tree`` (rows among the options; ``row``:
    each option position's) into ``out``, block by block of contracts (the tree kernel)."""
    n_s, g = scen.size, bm.grid_size
    keep = np.isin(row, tree)
    account, w = account[keep], w[keep]
    row = np.searchsorted(tree, row[keep])  # row among the American options
    n_o = tree.size
    model, strike, is_call = model[tree], strike[tree], is_call[tree]
    level, vol, t, rate, q, und = level[tree], vol[tree], t[tree], rate[tree], q[tree], und[tree]
    block = max(1, BLOCK_ELEMENTS // max(n_s * g, 1))
    # positions by block of contracts (a block's are contiguous), then by account (each account's
    # row of the P&L matrix stays in cache while its positions are added)
    block_of = row // block
    order = np.lexsort((row, account, block_of))
    bounds = np.searchsorted(block_of[order], np.arange(-(-n_o // block) + 1))
    buffer = np.empty((min(block, n_o), n_s * g))  # scenario levels of a block, reused
    for i, k0 in enumerate(range(0, n_o, block)):  # blocks of contracts (a bounded working set)
        k1 = min(k0 + block, n_o)
        b = slice(k0, k1)
        u = und[b]
        shape = (k1 - k0, n_s * g)
        lvl = scenario_levels(level[b], u, scen.price, bm.date, buffer, engine=engine)  # (B, S x G)
        v = vol[b][:, None, :]
        if scen.vol is not None:
            v = v * scen.vol[u][:, :, bm.date]
        v_new = pricing.value(
            model[b, None],
            lvl,
            strike[b, None],
            _per_grid(t[b], n_s),
            v.reshape(shape) if v.shape[1] == n_s else _per_grid(vol[b], n_s),
            _per_grid(rate[b], n_s),
            _per_grid(q[b], n_s),
            is_call[b, None],
            True,
            engine=engine,
        )
        ps = order[bounds[i] : bounds[i + 1]]
        accumulate_pnl(account[ps], row[ps] - k0, w[ps], v_new, out, engine=engine)


def _per_grid(x: np.ndarray, n_s: int) -> np.ndarray:
    """``(B, G)`` values as the ``(B, S x G)`` scenario columns: one per item when ``G`` is 1 (the
    kernels repeat it, nothing is materialised), else repeated over the scenarios."""
    n_b, g = x.shape
    if g == 1:
        return x
    return np.broadcast_to(x[:, None, :], (n_b, n_s, g)).reshape(n_b, n_s * g)


def net_delta(bm: BookMarket, n_accounts: int, n_und: int, engine: pricing.Engine) -> np.ndarray:
    """Net delta-equivalent quantity of every (account, underlying) [units of the underlying]:
    the sum of quantity x multiplier x delta; shape ``(A, U, G)``."""
    g = bm.grid_size
    if bm.und.size == 0:
        return np.zeros((n_accounts, n_und, g))
    c = bm.contracts
    d = pricing.delta(
        c["model"].values[:, None],
        bm.level,
        c["strike"].fillna(0.0).values[:, None],
        bm.t,
        bm.vol,
        bm.rate,
        bm.dividend_yield,
        c["is_call"].values[:, None],
        c["american"].values[:, None],
        engine=engine,
    )
    per_unit = d * c["multiplier"].values[:, None]  # (K, G)
    m = membership(bm.account * n_und + bm.und[bm.row], bm.row, bm.quantity, n_accounts * n_und, bm.und.size)
    return group_sum(m, per_unit).reshape(n_accounts, n_und, g)
