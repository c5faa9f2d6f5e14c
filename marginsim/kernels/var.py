"""Historical-simulation kernels: account P&L over scenarios, tail measures, volatility filters.

Pure numpy (and numba through :mod:`._jit`): nothing of the package, neither xarray nor pydantic.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._jit import Engine, compile_kernel, prange, resolve_engine
from .grouping import membership

__all__ = [
    "accumulate_pnl",
    "scenario_levels",
    "tail_count",
    "tail_measure",
    "overlapping_sums",
    "ewma_variance",
    "filter_returns",
]

#: Tiles of columns of the P&L matrix in :func:`accumulate_pnl`, one parallel task each (no two
#: tasks write the same element: no races, no atomics); at least :data:`_MIN_TILE` columns each, so
#: that each task streams long rows.
_TILES = 16
_MIN_TILE = 64


def _accumulate_loop(account, row, weight, pnl, out, tile):  # pragma: no cover - compiled by numba
    """``out[account[p], :] += weight[p] * pnl[row[p], :]`` for every p, in parallel column tiles
    (positions in account order keep each account's row of a tile in cache)."""
    n_cols = out.shape[1]
    n_tiles = (n_cols + tile - 1) // tile
    for i in prange(n_tiles):
        c0 = i * tile
        c1 = min(c0 + tile, n_cols)
        for p in range(account.size):
            dst = out[account[p], c0:c1]
            src = pnl[row[p], c0:c1]
            w = weight[p]
            for c in range(c1 - c0):
                dst[c] += w * src[c]


@functools.cache
def _numba_accumulate():
    return compile_kernel(_accumulate_loop, parallel=True)


def accumulate_pnl(
    account: np.ndarray,
    row: np.ndarray,
    weight: np.ndarray,
    pnl: np.ndarray,
    out: np.ndarray,
    *,
    engine: Engine = "auto",
) -> None:
    """Add each position's P&L into its account's row: ``out[account[p]] += weight[p] * pnl[row[p]]``.

    Parameters
    ----------
    account
        Account index of each position (int64).
    row
        Row of ``pnl`` of each position's contract (int64).
    weight
        Quantity of each position [contracts].
    pnl
        ``(rows, columns)`` P&L of one contract per column (scenario x grid point) [currency].
    out
        ``(accounts, columns)`` C-contiguous float64, added to in place [currency].
    engine
        ``"numba"``: parallel over tiles of columns; ``"numpy"``: one sparse product.
    """
    if account.size == 0 or out.size == 0:
        return
    if resolve_engine(engine) == "numba":
        _numba_accumulate()(
            np.ascontiguousarray(account, dtype=np.int64),
            np.ascontiguousarray(row, dtype=np.int64),
            np.ascontiguousarray(weight, dtype=np.float64),
            np.ascontiguousarray(pnl, dtype=np.float64),
            out,
            max(_MIN_TILE, -(-out.shape[1] // _TILES)),
        )
        return
    m = membership(account, row, weight, out.shape[0], pnl.shape[0])
    out += m @ pnl


def _levels_loop(level, und, factor, date, out):  # pragma: no cover - compiled by numba
    """``out[k, s * G + g] = level[k, g] * factor[und[k], s, date[g]]``, in parallel over the rows."""
    n_k, g_n = level.shape
    n_s = factor.shape[1]
    for k in prange(n_k):
        u = und[k]
        for s in range(n_s):
            for g in range(g_n):
                out[k, s * g_n + g] = level[k, g] * factor[u, s, date[g]]


@functools.cache
def _numba_levels():
    return compile_kernel(_levels_loop, parallel=True)


def scenario_levels(
    level: np.ndarray,
    und: np.ndarray,
    factor: np.ndarray,
    date: np.ndarray,
    out: np.ndarray,
    *,
    engine: Engine = "auto",
) -> np.ndarray:
    """Each row's level now times its underlying's scenario factors.

    Parameters
    ----------
    level
        ``(K, G)`` levels now per grid point [price units].
    und
        ``(K,)`` row of ``factor`` of each row's underlying.
    factor
        ``(U, S, D)`` scenario factors per valuation date [ratio].
    date
        ``(G,)`` valuation-date index (into ``factor``'s last axis) of each grid point.
    out
        ``(K', S x G)`` C-contiguous buffer, ``K' >= K`` (reused across blocks); its first ``K``
        rows are written.

    Returns
    -------
    numpy.ndarray
        ``out[:K]``: ``(K, S x G)``, scenario-major (column ``s x G + g``).
    """
    n_k, g = level.shape
    dest = out[:n_k]
    if resolve_engine(engine) == "numba":
        _numba_levels()(
            np.ascontiguousarray(level, dtype=np.float64),
            np.ascontiguousarray(und, dtype=np.int64),
            np.ascontiguousarray(factor, dtype=np.float64),
            np.ascontiguousarray(date, dtype=np.int64),
            dest,
        )
    else:
        np.multiply(level[:, None, :], factor[und][:, :, date], out=dest.reshape(n_k, factor.shape[1], g))
    return dest


def _last_near_loop(x, target, tol, out):  # pragma: no cover - compiled by numba
    """Per row of ``x``: the last column within ``tol`` of ``target`` (-1: none), in parallel."""
    n_rows, n = x.shape
    for i in prange(n_rows):
        found = -1
        for j in range(n - 1, -1, -1):
            if abs(x[i, j] - target[i]) <= tol[i]:
                found = j
                break
        out[i] = found


@functools.cache
def _numba_last_near():
    return compile_kernel(_last_near_loop, parallel=True)


def tail_count(n: int, confidence: float) -> int:
    """k = ceil(n (1 - c)), at least 1: the tail's number of scenarios.

    ``n (1 - c)`` is rounded to 9 decimals first, so that a product that is whole in decimal
    (100 x 0.01) is not pushed to the next integer by binary rounding (1.0000000000000009).
    """
    return max(1, math.ceil(round(n * (1.0 - confidence), 9)))


def tail_measure(
    loss: np.ndarray, k: int, measure: str, *, engine: Engine = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """The tail measure of the losses along the last axis, and the scenario that sets it.

    Parameters
    ----------
    loss
        ``(..., n)`` losses, positive = loss [currency].
    k
        Tail count (:func:`tail_count`), 1 to n.
    measure
        ``"var"``: the k-th largest loss; ``"es"``: the mean of the k largest.
    engine
        ``"numba"``: the scenario search in one parallel pass; ``"numpy"``: array operations.

    Returns
    -------
    value : numpy.ndarray
        Shape ``(...)``.
    scenario : numpy.ndarray
        Index of the scenario that sets it, shape ``(...)``: for ``var`` the k-th largest loss,
        for ``es`` the largest; among losses equal to it (to 1e-9 of the largest loss), the last
        (the most recent date). -1 when ``n`` is 0.
    """
    n = loss.shape[-1]
    lead = loss.shape[:-1]
    if n == 0:
        return np.zeros(lead), np.full(lead, -1, dtype=np.int64)
    k = min(max(int(k), 1), n)
    part = np.partition(loss, n - k, axis=-1)
    kth = part[..., n - k]
    if measure == "es":
        value = part[..., n - k :].mean(axis=-1)
        target = part[..., n - k :].max(axis=-1)
    else:
        value = kth
        target = kth
    tol = 1e-9 * np.maximum(np.maximum(loss.max(axis=-1), -loss.min(axis=-1)), 1.0)
    if resolve_engine(engine) == "numba":
        flat = np.ascontiguousarray(loss).reshape(-1, n)
        scenario = np.empty(flat.shape[0], dtype=np.int64)
        _numba_last_near()(flat, np.ravel(target), np.ravel(tol), scenario)
        return value, scenario.reshape(lead)
    hit = np.abs(loss - target[..., None]) <= tol[..., None]
    scenario = n - 1 - np.argmax(hit[..., ::-1], axis=-1)
    return value, scenario.astype(np.int64)


def overlapping_sums(x: np.ndarray, h: int) -> np.ndarray:
    """Sums of ``h`` consecutive rows: row ``t`` of the result is ``x[t] + ... + x[t + h - 1]``.

    Shape ``(T - h + 1, ...)`` for ``x`` of shape ``(T, ...)`` (empty when ``T < h``).
    """
    t = x.shape[0]
    if t < h:
        return np.zeros((0,) + x.shape[1:])
    c = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)])
    return c[h:] - c[: t - h + 1]


def ewma_variance(r: np.ndarray, lam: float, seed_days: int) -> tuple[np.ndarray, np.ndarray]:
    """EWMA variance of daily returns (RiskMetrics): ``s[t] = lam s[t-1] + (1 - lam) r[t-1]^2``.

    Parameters
    ----------
    r
        ``(T, U)`` daily log returns.
    lam
        Decay, 0 < lam < 1.
    seed_days
        ``s[0]`` is the mean of ``r^2`` over the first ``seed_days`` returns.

    Returns
    -------
    at_date : numpy.ndarray
        ``(T, U)``: the variance of each return estimated the day before it (``s[t]``).
    now : numpy.ndarray
        ``(U,)``: the variance for the next day, after the last return (``s[T]``).
    """
    import scipy.signal  # here: importing the methods must not import scipy (a small book needs none)

    r2 = np.asarray(r, dtype=float) ** 2
    seed = r2[: max(1, min(seed_days, r2.shape[0]))].mean(axis=0)
    # s[1..T] = lfilter of r2[0..T-1] with s[0] = seed as initial state
    later = scipy.signal.lfilter([1.0 - lam], [1.0, -lam], r2, axis=0, zi=(lam * seed)[None, :])[0]
    return np.concatenate([seed[None, :], later[:-1]]), later[-1]


def filter_returns(r: np.ndarray, at_date: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Returns rescaled to today's vol: ``r[t] * sqrt(now / at_date[t])`` (0 variance: unscaled)."""
    ratio = np.divide(now[None, :], at_date, out=np.ones_like(at_date), where=at_date > 0)
    return r * np.sqrt(ratio)


# -- GARCH(1,1) variance path with parameters refitted along it (``filter: garch`` over dates) ------

__all__ += ["garch_variance_path"]  # here, not in the list above: kept apart from the other kernels


def _garch_path_loop(r, omega, alpha, beta, fit, s0, out):  # pragma: no cover - compiled by numba
    """``out[t, u] = omega[k, u] + alpha[k, u] r[t-1, u]^2 + beta[k, u] out[t-1, u]``, ``k = fit[t]``,
    from ``out[0] = s0``, in parallel over the underlyings."""
    n_t, n_u = r.shape
    for u in prange(n_u):
        s = s0[u]
        out[0, u] = s
        for t in range(1, n_t + 1):
            k = fit[t]
            x = r[t - 1, u]
            s = omega[k, u] + alpha[k, u] * x * x + beta[k, u] * s
            out[t, u] = s


@functools.cache
def _numba_garch_path():
    return compile_kernel(_garch_path_loop, parallel=True)


def garch_variance_path(
    r: np.ndarray,
    omega: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    fit: np.ndarray,
    s0: np.ndarray,
    *,
    engine: Engine = "auto",
) -> np.ndarray:
    """GARCH(1,1) conditional variances filtered forward with time-varying parameters.

    ``s[t] = omega[k] + alpha[k] r[t-1]^2 + beta[k] s[t-1]`` with ``k = fit[t]`` (the parameter set
    in force on day ``t``: the latest refit at or before it), from ``s[0] = s0``: the recursion of
    the ``arch`` package (zero mean), without its variance bounds.

    Parameters
    ----------
    r
        ``(T, U)`` daily log returns.
    omega, alpha, beta
        ``(R, U)`` parameters of each of ``R`` fits [omega: squared log return; alpha, beta: 1].
    fit
        ``(T + 1,)`` parameter set (row of ``omega``...) of each variance; non-decreasing.
        ``fit[0]`` is not used.
    s0
        ``(U,)`` the variance of the first return [squared log return].
    engine
        ``"numba"``: one pass over the days, in parallel over underlyings; ``"numpy"``: one
        ``scipy.signal.lfilter`` per stretch of constant parameters and underlying. Both do the
        same operations in the same order: the same bits (so a size-dependent ``"auto"`` choice
        cannot make a date's margin depend on how many dates a run values).

    Returns
    -------
    numpy.ndarray
        ``(T + 1, U)``: row ``t`` is the variance of ``r[t]`` given the returns before it; row
        ``T`` the forecast after the last return [squared log return].
    """
    n_t, n_u = r.shape
    out = np.empty((n_t + 1, n_u))
    if resolve_engine(engine, size=r.size) == "numba":
        _numba_garch_path()(
            np.ascontiguousarray(r, dtype=np.float64),
            np.ascontiguousarray(omega, dtype=np.float64),
            np.ascontiguousarray(alpha, dtype=np.float64),
            np.ascontiguousarray(beta, dtype=np.float64),
            np.ascontiguousarray(fit, dtype=np.int64),
            np.ascontiguousarray(s0, dtype=np.float64),
            out,
        )
        return out
    import scipy.signal  # here: importing the methods must not import scipy (a small book needs none)

    out[0] = s0
    if n_t == 0:
        return out
    k_t = np.asarray(fit[1:], dtype=np.int64)
    cut = np.flatnonzero(np.diff(k_t)) + 1
    starts = np.concatenate([[0], cut])
    stops = np.concatenate([cut, [n_t]])
    # one linear filter per stretch of constant parameters (one per refit) and underlying: the
    # coefficients differ per underlying, and each stretch starts from the last variance of the one before
    for a, b in zip(starts.tolist(), stops.tolist()):
        k = k_t[a]
        x = r[a:b]
        c = omega[k] + alpha[k] * x * x  # (b - a, U)
        for u in range(n_u):
            out[a + 1 : b + 1, u] = scipy.signal.lfilter(
                [1.0], [1.0, -beta[k, u]], c[:, u], zi=[beta[k, u] * out[a, u]]
            )[0]
    return out
