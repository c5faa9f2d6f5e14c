"""Backtest statistics of margin series: exceedances, Kupiec and Christoffersen, procyclicality.

Pure numpy, vectorised over series: every function takes arrays whose last axis is the date (one
row per account, say) and returns one value per series. NaN marks a date without a value (no
margin, no realised loss): it is left out of the counts. The chi-squared p-values are computed
from the likelihood ratios here by the caller (:mod:`marginsim.backtest`, with scipy).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "exceedances",
    "kupiec_lr",
    "transition_counts",
    "christoffersen_lr",
    "peak_to_trough",
    "largest_increase",
]


def exceedances(margin: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Whether the realised loss exceeded the margin, per date (False where either is NaN).

    Parameters
    ----------
    margin, loss
        Margin and realised loss [currency], losses positive; same shape.

    Returns
    -------
    numpy.ndarray
        Bool, ``loss > margin``.
    """
    with np.errstate(invalid="ignore"):
        return np.asarray(loss) > np.asarray(margin)


def _xlogy(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """``x * log(y)`` with ``0 * log(0) = 0``."""
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    out = np.zeros(x.shape)
    nz = x != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out[nz] = x[nz] * np.log(y[nz])
    return out


def kupiec_lr(days: np.ndarray, hits: np.ndarray, p: float) -> np.ndarray:
    """Kupiec's proportion-of-failures likelihood ratio (chi-squared with 1 degree of freedom).

    ``LR = -2 ln[(1 - p)^(n - x) p^x] + 2 ln[(1 - x/n)^(n - x) (x/n)^x]``, ``0 ln 0 = 0``.

    Parameters
    ----------
    days
        Days tested ``n`` per series [count].
    hits
        Exceedances ``x`` per series [count].
    p
        Expected exceedance probability per day (1 - confidence) [fraction], in (0, 1).

    Returns
    -------
    numpy.ndarray
        The ratio per series; NaN where ``n`` is 0.
    """
    n = np.asarray(days, dtype=float)
    x = np.asarray(hits, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(n > 0, x / np.where(n > 0, n, 1.0), 0.0)
    null = _xlogy(n - x, 1.0 - p) + _xlogy(x, p)
    alt = _xlogy(n - x, 1.0 - rate) + _xlogy(x, rate)
    lr = np.maximum(-2.0 * (null - alt), 0.0)
    return np.where(n > 0, lr, np.nan)


def transition_counts(hit: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Counts of the day-to-day transitions of an exceedance series.

    Parameters
    ----------
    hit
        Bool exceedances, last axis the date.
    valid
        Bool, the dates tested (default all); a transition counts where both days are tested.

    Returns
    -------
    numpy.ndarray
        Shape ``hit.shape[:-1] + (2, 2)``: ``[..., i, j]`` = number of days with state ``j``
        following a day with state ``i`` (0 no exceedance, 1 exceedance).
    """
    hit = np.asarray(hit, dtype=bool)
    ok = np.ones(hit.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    prev, cur = hit[..., :-1], hit[..., 1:]
    both = ok[..., :-1] & ok[..., 1:]
    out = np.empty(hit.shape[:-1] + (2, 2))
    for i in (0, 1):
        for j in (0, 1):
            out[..., i, j] = np.sum(both & (prev == bool(i)) & (cur == bool(j)), axis=-1)
    return out


def christoffersen_lr(counts: np.ndarray) -> np.ndarray:
    """Christoffersen's independence likelihood ratio (chi-squared with 1 degree of freedom).

    With ``n_ij`` the transitions of :func:`transition_counts`, ``pi01 = n01 / (n00 + n01)``,
    ``pi11 = n11 / (n10 + n11)`` and ``pi = (n01 + n11) / (n00 + n01 + n10 + n11)``:
    ``LR = -2 ln[(1 - pi)^(n00 + n10) pi^(n01 + n11)]
    + 2 ln[(1 - pi01)^n00 pi01^n01 (1 - pi11)^n10 pi11^n11]``, ``0 ln 0 = 0``.

    Parameters
    ----------
    counts
        Shape ``(..., 2, 2)`` [count].

    Returns
    -------
    numpy.ndarray
        The ratio per series; NaN without any transition.
    """
    c = np.asarray(counts, dtype=float)
    n00, n01, n10, n11 = c[..., 0, 0], c[..., 0, 1], c[..., 1, 0], c[..., 1, 1]
    total = n00 + n01 + n10 + n11

    def ratio(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)

    pi01, pi11, pi = ratio(n01, n00 + n01), ratio(n11, n10 + n11), ratio(n01 + n11, total)
    null = _xlogy(n00 + n10, 1.0 - pi) + _xlogy(n01 + n11, pi)
    alt = _xlogy(n00, 1.0 - pi01) + _xlogy(n01, pi01) + _xlogy(n10, 1.0 - pi11) + _xlogy(n11, pi11)
    lr = np.maximum(-2.0 * (null - alt), 0.0)
    return np.where(total > 0, lr, np.nan)


def peak_to_trough(margin: np.ndarray) -> np.ndarray:
    """Peak-to-trough ratio of a margin series: its largest value over its smallest.

    Parameters
    ----------
    margin
        Margin [currency], last axis the date; NaN left out.

    Returns
    -------
    numpy.ndarray
        ``max / min`` per series; NaN when the smallest is 0 or below or there is no value.
    """
    m = np.asarray(margin, dtype=float)
    some = np.any(~np.isnan(m), axis=-1)
    hi = np.where(some, np.nanmax(np.where(np.isnan(m), -np.inf, m), axis=-1), np.nan)
    lo = np.where(some, np.nanmin(np.where(np.isnan(m), np.inf, m), axis=-1), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lo > 0, hi / np.where(lo > 0, lo, 1.0), np.nan)


def largest_increase(margin: np.ndarray, lag: int) -> np.ndarray:
    """Largest relative margin increase over ``lag`` dates: ``max_d (m[d] - m[d - lag]) / m[d - lag]``.

    Parameters
    ----------
    margin
        Margin [currency], last axis the date (one entry per tested day).
    lag
        Dates between the two margins [count, >= 1].

    Returns
    -------
    numpy.ndarray
        The largest increase per series [fraction of the earlier margin]; pairs whose earlier
        margin is 0 or below, or NaN, are left out; NaN without any pair (a series that never
        rises gives its largest change, 0 or negative).
    """
    m = np.asarray(margin, dtype=float)
    if lag < 1:
        raise ValueError("lag must be at least 1")
    if m.shape[-1] <= lag:
        return np.full(m.shape[:-1], np.nan)
    before, after = m[..., :-lag], m[..., lag:]
    ok = (before > 0) & ~np.isnan(after)
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where(ok, (after - before) / np.where(ok, before, 1.0), -np.inf)
    best = rise.max(axis=-1)
    return np.where(np.isfinite(best), best, np.nan)
