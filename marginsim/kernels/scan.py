"""Scenario revaluation: every contract at every point of a scan, in one fused pass.

This is the hot path of SPAN risk arrays (and of any scan-based method): for each item (a
contract at one grid point) the value now, the values at each scenario's moved price and vol
after the look-ahead time, and the deltas at the delta points, evaluated by the pricing module's
engines (numba: compiled, blocked and parallel; numpy: array operations) on the broadcast item x
scenario arrays. American options go through the pricing module's tree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from . import pricing
from ._jit import Engine, compile_kernel, prange, resolve_engine

__all__ = ["revalue_scan", "scan_losses"]


def _moves(
    level, price_range, vol, vol_range, set_index, price_moves, vol_moves, x, v
):  # pragma: no cover - compiled
    """Compiled twin of the numpy branch of :func:`_moved`: writes the moved prices and vols
    (floored at 0; NaN stays NaN, as ``np.maximum``) into ``x`` and ``v``, parallel over items."""
    n_s = price_moves.shape[1]
    for i in prange(level.shape[0]):
        j = set_index[i]
        for s in range(n_s):
            xi = level[i] + price_moves[j, s] * price_range[i]
            vi = vol[i] + vol_moves[j, s] * vol_range[i]
            x[i, s] = 0.0 if xi < 0.0 else xi
            v[i, s] = 0.0 if vi < 0.0 else vi


@functools.cache
def _numba_moves() -> Callable[..., None]:
    """The compiled :func:`_moves` (built on first use; cached on disk)."""
    return compile_kernel(_moves, parallel=True, error_model="python")


def _moved(eng, level, price_range, vol, vol_range, set_index, price_moves, vol_moves):
    """Moved prices and vols ``(n, S)``, floored at 0."""
    if eng == "numba":
        x = np.empty((level.shape[0], price_moves.shape[1]))
        v = np.empty_like(x)
        _numba_moves()(level, price_range, vol, vol_range, set_index, price_moves, vol_moves, x, v)
        return x, v
    x = np.maximum(level[:, None] + price_moves[set_index] * price_range[:, None], 0.0)
    v = np.maximum(vol[:, None] + vol_moves[set_index] * vol_range[:, None], 0.0)
    return x, v


def revalue_scan(
    model: np.ndarray,
    level: np.ndarray,
    strike: np.ndarray,
    price_range: np.ndarray,
    vol: np.ndarray,
    vol_range: np.ndarray,
    t_now: np.ndarray,
    t_after: np.ndarray,
    r: np.ndarray,
    q: np.ndarray,
    is_call: np.ndarray,
    american: np.ndarray,
    set_index: np.ndarray,
    price_moves: np.ndarray,
    vol_moves: np.ndarray,
    delta_moves: np.ndarray,
    *,
    engine: Engine = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values now, values in every scenario, and deltas at the delta points.

    Parameters
    ----------
    model, level, strike, price_range, vol, vol_range, t_now, t_after, r, q, is_call, american, set_index
        One value per item (1-D, length n): pricing model code; price level [price units];
        strike [price units]; price scan range [price points]; vol [decimal]; vol scan range
        [decimal]; time to expiry now and after the look-ahead [years]; rate and dividend yield
        [decimal per year]; call flag; American flag; row of the item's scenario set in
        ``price_moves`` / ``vol_moves``.
    price_moves, vol_moves
        ``(n_sets, S)`` moves [multiples of the price / vol scan range].
    delta_moves
        ``(D,)`` price moves of the delta points [multiples of the price scan range].
    engine
        ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    v_now, v_moved, deltas
        Shapes ``(n,)``, ``(n, S)``, ``(n, D)`` [price units per unit; delta per unit].
    """
    eng = resolve_engine(engine)
    f = np.ascontiguousarray
    model = f(model, dtype=np.int64)
    level, strike, price_range, vol, vol_range, t_now, t_after, r, q = (
        f(a, dtype=float) for a in (level, strike, price_range, vol, vol_range, t_now, t_after, r, q)
    )
    is_call = f(is_call, dtype=bool)
    american = np.asarray(american, dtype=bool)
    set_index = f(set_index, dtype=np.int64)
    price_moves = f(np.atleast_2d(price_moves), dtype=float)
    vol_moves = f(np.atleast_2d(vol_moves), dtype=float)
    delta_moves = f(delta_moves, dtype=float)
    col = (model, strike, t_after, r, q, is_call)
    m, k, ta, r2, q2, c = (a[:, None] for a in col)
    v_now = pricing.value(model, level, strike, t_now, vol, r, q, is_call, engine=eng)
    x, v = _moved(eng, level, price_range, vol, vol_range, set_index, price_moves, vol_moves)
    v_moved = pricing.value(m, x, k, ta, v, r2, q2, c, engine=eng)
    no_vol_move = np.zeros((1, delta_moves.shape[0]))
    xd, vd = _moved(
        eng, level, price_range, vol, vol_range, np.zeros_like(set_index), delta_moves[None, :], no_vol_move
    )
    deltas = pricing.delta(m, xd, k, ta, vd, r2, q2, c, engine=eng)
    tree = american & (model != pricing.LINEAR)
    if tree.any():
        i = np.flatnonzero(tree)
        args = (model[i], strike[i], r[i], q[i], is_call[i])
        mi, ki, ri, qi, ci = args
        v_now[i] = pricing.value(mi, level[i], ki, t_now[i], vol[i], ri, qi, ci, True, engine=eng)
        x = np.maximum(level[i, None] + price_moves[set_index[i]] * price_range[i, None], 0.0)
        v = np.maximum(vol[i, None] + vol_moves[set_index[i]] * vol_range[i, None], 0.0)
        cols = [a[:, None] for a in args]
        v_moved[i] = pricing.value(
            cols[0], x, cols[1], t_after[i, None], v, cols[2], cols[3], cols[4], True, engine=eng
        )
        xd = np.maximum(level[i, None] + delta_moves[None, :] * price_range[i, None], 0.0)
        deltas[i] = pricing.delta(
            cols[0], xd, cols[1], t_after[i, None], vol[i, None], cols[2], cols[3], cols[4], True, engine=eng
        )
    return v_now, v_moved, deltas


def _losses(v_now, loss, multiplier, weights, set_index, scale):  # pragma: no cover - compiled
    """Compiled twin of the numpy branch of :func:`scan_losses` (``decimals >= 0``): the same
    operations in the same order, one pass, parallel over items. ``np.round(x, d)`` is
    ``rint(x * 10**d) / 10**d`` in numpy; ``+ 0.0`` turns -0.0 into 0.0."""
    n_s = loss.shape[1]
    for i in prange(loss.shape[0]):
        j = set_index[i]
        m = -multiplier[i]
        v0 = v_now[i]
        for s in range(n_s):
            x = (loss[i, s] - v0) * m
            x = x * weights[j, s]
            loss[i, s] = np.rint(x * scale) / scale + 0.0


@functools.cache
def _numba_losses() -> Callable[..., None]:
    """The compiled :func:`_losses` (built on first use; cached on disk)."""
    return compile_kernel(_losses, parallel=True)


def scan_losses(
    v_now: np.ndarray,
    v_moved: np.ndarray,
    multiplier: np.ndarray,
    weights: np.ndarray,
    set_index: np.ndarray,
    decimals: int,
    *,
    engine: Engine = "auto",
) -> np.ndarray:
    """Weighted losses of one long contract per scenario, rounded, written over ``v_moved``.

    ``round(-(v_moved - v_now) * multiplier * weight, decimals) + 0.0`` (losses positive, no
    -0.0): the SPAN risk array of each item from the values of :func:`revalue_scan`.

    Parameters
    ----------
    v_now
        ``(n,)`` value now [price units per unit].
    v_moved
        ``(n, S)`` C-contiguous float64 values in every scenario [price units per unit];
        overwritten with the losses.
    multiplier
        ``(n,)`` [currency per price point per contract].
    weights
        ``(n_sets, S)`` weight of each scenario of each scenario set.
    set_index
        ``(n,)`` row of each item's scenario set in ``weights``.
    decimals
        Decimals of the rounding (``>= 0``).
    engine
        ``"numba"``, ``"numpy"`` or ``"auto"`` (same results).

    Returns
    -------
    numpy.ndarray
        ``v_moved``, holding the losses [currency per long contract].
    """
    eng = resolve_engine(engine)
    if eng == "numba" and decimals >= 0 and v_moved.flags.c_contiguous and v_moved.dtype == np.float64:
        f = np.ascontiguousarray
        _numba_losses()(
            f(v_now, dtype=float),
            v_moved,
            f(multiplier, dtype=float),
            f(weights, dtype=float),
            f(set_index, dtype=np.int64),
            10.0**decimals,
        )
        return v_moved
    v_moved -= v_now[:, None]
    v_moved *= -multiplier[:, None]
    v_moved *= weights[set_index]
    np.round(v_moved, decimals, out=v_moved)
    v_moved += 0.0  # -0.0 -> 0.0
    return v_moved
