"""The P&L matrix: every contract of the book revalued under every scenario, summed per account.

Futures, stocks and CFDs are linear (value = level); options are fully revalued with the pricing
kernels (:func:`marginsim.kernels.pricing.value`: Black-76, Black-Scholes-Merton, American by
tree) at the scenario level and vol, with the time to expiry of now (the move is instant: no
time decay over the holding period). The contracts are revalued block by block (a bounded
working set) and each block's P&L is added into the accounts' rows by
:func:`marginsim.kernels.var.accumulate_pnl` (numba: parallel over scenario columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ...errors import InputError
from ...kernels import pricing
from ...kernels.grouping import group_sum, membership
from ...kernels.var import accumulate_pnl, scenario_levels
from ...model import Inputs, flat_grid
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
    level, vol, rate, dividend_yield
        ``(K, G)`` market now per contract and grid point.
    unit
        ``(K,)`` reporting currency per price point per contract (multiplier x FX).
    grid_dims, grid_shape
        The grid dims flattened into ``G`` and their sizes.
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
    unit: np.ndarray
    grid_dims: list[str]
    grid_shape: tuple[int, ...]

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
    present = set(level.dims) | set(vol.dims) | set(rate.dims) | set(q.dims)
    gd = [d for d in inputs.grid_dims if d in present]
    sizes = {**level.sizes, **vol.sizes, **rate.sizes, **q.sizes}
    shape = tuple(int(sizes[d]) for d in gd)
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
        unit=c["multiplier"].values * fx,
        grid_dims=gd,
        grid_shape=shape,
    )


def account_pnl(bm: BookMarket, scen: ScenarioSet, n_accounts: int, engine: pricing.Engine) -> np.ndarray:
    """P&L of every account under every scenario [reporting currency], gains positive.

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
    strike = c["strike"].fillna(0.0).values
    t = c["t"].fillna(0.0).values
    is_call, american = c["is_call"].values, c["american"].values
    # value now: once per contract; its part of every scenario's P&L is one (account, grid) term
    v_now = pricing.value(
        model[:, None],
        bm.level,
        strike[:, None],
        t[:, None],
        bm.vol,
        bm.rate,
        bm.dividend_yield,
        is_call[:, None],
        american[:, None],
        engine=engine,
    )  # (K, G)
    weight = bm.quantity * bm.unit[bm.row]  # reporting currency per price point, per position
    now = group_sum(membership(bm.account, bm.row, weight, n_accounts, n_k), v_now)  # (A, G)
    order = np.argsort(bm.row, kind="stable")  # positions by contract row: a block's are contiguous
    bounds = np.searchsorted(bm.row[order], np.arange(n_k + 1))
    block = max(1, BLOCK_ELEMENTS // max(n_s * g, 1))
    buffer = np.empty((min(block, n_k), n_s * g))  # scenario levels of a block, reused
    for k0 in range(0, n_k, block):  # blocks of contracts (a bounded working set), not positions
        k1 = min(k0 + block, n_k)
        b = slice(k0, k1)
        u = bm.und[b]
        n_b = k1 - k0
        shape = (n_b, n_s * g)
        lvl = scenario_levels(bm.level[b], u, scen.price, buffer, engine=engine)  # (B, S x G)
        vol = bm.vol[b][:, None, :]
        if scen.vol is not None:
            vol = vol * scen.vol[u][:, :, None]
        v_new = pricing.value(
            model[b, None],
            lvl,
            strike[b, None],
            t[b, None],
            vol.reshape(shape) if vol.shape[1] == n_s else _per_grid(bm.vol[b], n_s),
            _per_grid(bm.rate[b], n_s),
            _per_grid(bm.dividend_yield[b], n_s),
            is_call[b, None],
            american[b, None],
            engine=engine,
        )
        ps = order[bounds[k0] : bounds[k1]]
        accumulate_pnl(bm.account[ps], bm.row[ps] - k0, weight[ps], v_new, out, engine=engine)
    pnl = out.reshape(n_accounts, n_s, g)
    pnl -= now[:, None, :]
    return pnl


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
        c["t"].fillna(0.0).values[:, None],
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
