"""Scenario revaluation: every contract at every point of a scan, in one fused pass.

This is the hot path of SPAN risk arrays (and of any scan-based method): for each item (a
contract at one grid point) the value now, the values at each scenario's moved price and vol
after the look-ahead time, and the deltas at the delta points. The numba engine runs one
compiled loop, parallel over items, that keeps everything of one item in registers; the numpy
engine evaluates the same formulas (:mod:`marginsim.kernels.pricing`) with broadcasting. Both
give the same numbers. American options go through the pricing module's tree on both engines.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import pricing

__all__ = ["revalue_scan"]


@functools.cache
def _numba_scan_kernel():
    import numba

    value = numba.njit(inline="always")(pricing._euro_value_kernel)
    pricing_black76 = pricing.BLACK76
    pricing_bsm = pricing.BSM
    sqrt1_2 = math.sqrt(0.5)
    delta = numba.njit(inline="always")(pricing._euro_delta_kernel)

    @numba.njit(parallel=True, cache=True)
    def kernel(
        model,
        level,
        strike,
        price_range,
        vol,
        vol_range,
        t_now,
        t_after,
        r,
        q,
        is_call,
        set_index,
        price_moves,
        vol_moves,
        delta_moves,
        v_now,
        v_moved,
        dlt,
    ):  # pragma: no cover
        n = level.shape[0]
        n_s = price_moves.shape[1]
        n_d = delta_moves.shape[0]
        for i in numba.prange(n):
            m = model[i]
            lv = level[i]
            k = strike[i]
            pr = price_range[i]
            sg = vol[i]
            vr = vol_range[i]
            ta = t_after[i]
            ri = r[i]
            qi = q[i]
            c = is_call[i]
            j = set_index[i]
            v_now[i] = value(m, lv, k, t_now[i], sg, ri, qi, c)
            fast = (m == pricing_black76 or m == pricing_bsm) and ta > 0.0 and k > 0.0
            if fast:
                # invariants of the item, hoisted out of the scenario loop
                df = math.exp(-ri * ta)
                ff = 1.0 if m == pricing_black76 else math.exp((ri - qi) * ta)
                sqt = math.sqrt(ta)
            last_x = -1.0
            log_fk = 0.0
            for s in range(n_s):
                x = lv + price_moves[j, s] * pr
                if x < 0.0:
                    x = 0.0
                v = sg + vol_moves[j, s] * vr
                if v < 0.0:
                    v = 0.0
                sd = v * sqt if fast else 0.0
                if fast and sd > 0.0 and x > 0.0:
                    fwd = x * ff
                    if x != last_x:  # scenarios sharing a price move share the log
                        log_fk = math.log(fwd / k)
                        last_x = x
                    d1 = log_fk / sd + 0.5 * sd
                    d2 = d1 - sd
                    if c:
                        v_moved[i, s] = df * (
                            fwd * 0.5 * math.erfc(-d1 * sqrt1_2) - k * 0.5 * math.erfc(-d2 * sqrt1_2)
                        )
                    else:
                        v_moved[i, s] = df * (
                            k * 0.5 * math.erfc(d2 * sqrt1_2) - fwd * 0.5 * math.erfc(d1 * sqrt1_2)
                        )
                else:
                    v_moved[i, s] = value(m, x, k, ta, v, ri, qi, c)
            for d in range(n_d):
                x = lv + delta_moves[d] * pr
                if x < 0.0:
                    x = 0.0
                dlt[i, d] = delta(m, x, k, ta, sg, ri, qi, c)

    return kernel


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
    engine: pricing.Engine = "auto",
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
    eng = pricing._resolve_engine(engine)
    f = functools.partial(np.ascontiguousarray)
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
    n = level.shape[0]
    n_s = price_moves.shape[1]
    if eng == "numba":
        v_now = np.empty(n)
        v_moved = np.empty((n, n_s))
        deltas = np.empty((n, delta_moves.shape[0]))
        _numba_scan_kernel()(
            model,
            level,
            strike,
            price_range,
            vol,
            vol_range,
            t_now,
            t_after,
            r,
            q,
            is_call,
            set_index,
            price_moves,
            vol_moves,
            delta_moves,
            v_now,
            v_moved,
            deltas,
        )
    else:
        col = (model, strike, t_after, r, q, is_call)
        m, k, ta, r2, q2, c = (a[:, None] for a in col)
        v_now = pricing.value(model, level, strike, t_now, vol, r, q, is_call, engine="numpy")
        x = np.maximum(level[:, None] + price_moves[set_index] * price_range[:, None], 0.0)
        v = np.maximum(vol[:, None] + vol_moves[set_index] * vol_range[:, None], 0.0)
        v_moved = pricing.value(m, x, k, ta, v, r2, q2, c, engine="numpy")
        xd = np.maximum(level[:, None] + delta_moves[None, :] * price_range[:, None], 0.0)
        deltas = pricing.delta(m, xd, k, ta, vol[:, None], r2, q2, c, engine="numpy")
    tree = american & (model != pricing.LINEAR)
    if tree.any():
        i = np.flatnonzero(tree)
        args = (model[i], strike[i], r[i], q[i], is_call[i])
        mi, ki, ri, qi, ci = args
        v_now[i] = pricing.value(mi, level[i], ki, t_now[i], vol[i], ri, qi, ci, True, engine=eng)
        x = np.maximum(level[i, None] + price_moves[set_index[i]] * price_range[i, None], 0.0)
        v = np.maximum(vol[i, None] + vol_moves[set_index[i]] * vol_range[i, None], 0.0)
        col = [a[:, None] for a in args]
        v_moved[i] = pricing.value(
            col[0], x, col[1], t_after[i, None], v, col[2], col[3], col[4], True, engine=eng
        )
        xd = np.maximum(level[i, None] + delta_moves[None, :] * price_range[i, None], 0.0)
        deltas[i] = pricing.delta(
            col[0], xd, col[1], t_after[i, None], vol[i, None], col[2], col[3], col[4], True, engine=eng
        )
    return v_now, v_moved, deltas
