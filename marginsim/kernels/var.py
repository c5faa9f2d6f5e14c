"""Historical-simulation kernels: account P&L over scenarios, tail measures, volatility filters.

Pure numpy (and numba through :mod:`._jit`): nothing of the package, neither xarray nor pydantic.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._jit import Engine, compile_kernel, prange, resolve_engine
from .grouping import membership
from .pricing import _DEKKER_MAX, _DEKKER_SPLIT, BLACK76, BSM, _ncdf, _ncdf_numpy

__all__ = [
    "accumulate_pnl",
    "revalue_options",
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


#: Columns per parallel task of :func:`revalue_options` (numba): at most :data:`_REVALUE_TILE_MAX`
#: (the task's work buffers stay in the L1 / L2 cache), at least :data:`_MIN_TILE`, and about
#: :data:`_TILES` tasks when the columns are few.
_REVALUE_TILE_MAX = 512


# exp by Cody and Waite's reduction: x = k ln 2 + r, |r| <= ln(2) / 2, ln 2 in two parts (the
# first with trailing zero bits, so that k x its part is exact), exp(r) by its Taylor polynomial
# to degree 13 (the remainder below 1e-17 of it), 2^k as two powers of two built from their bits
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_ROUND = 6755399441055744.0  # 1.5 x 2^52: x + _ROUND - _ROUND rounds x to an integer
_EXP_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(13, -1, -1))


def _exp_into(x, m, scale1, scale2):  # pragma: no cover - compiled by numba (inlined)
    """``x[:m] = exp(x[:m])`` in place, for ``x <= 709`` (or NaN), within one unit in the last
    place of the C library's ``exp`` (0 below -745.2, as it); ``scale1``, ``scale2``: int64 work
    arrays of at least ``m``. Branch-free loops that vectorise (SIMD), where the C library's
    ``exp`` is one call per element."""
    c = _EXP_TAYLOR
    for j in range(m):
        xj = x[j]
        xc = xj if xj > -746.0 else -746.0  # (NaN too: its result is set to NaN below)
        kf = (xc * _LOG2E + _ROUND) - _ROUND
        r = (xc - kf * _LN2_HI) - kf * _LN2_LO
        p = ((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]  # Horner, unrolled
        p = ((((p * r + c[6]) * r + c[7]) * r + c[8]) * r + c[9]) * r + c[10]
        p = ((p * r + c[11]) * r + c[12]) * r + c[13]
        k = np.int64(kf)
        half = k >> 1
        scale1[j] = (half + 1023) << 52  # 2^half and 2^(k - half): each a normal number
        scale2[j] = (k - half + 1023) << 52
        x[j] = p if xj == xj else xj
    f1 = scale1.view(np.float64)
    f2 = scale2.view(np.float64)
    for j in range(m):
        x[j] = x[j] * f1[j] * f2[j]


def _revalue_loop(
    strike,
    call,
    und,
    lev,
    ff,
    ln0,
    sd0,
    sqt,
    df,
    t,
    factor,
    log_factor,
    vol,
    vol_factor,
    n_s,
    n_d,
    date,
    order,
    pos_start,
    pos_account,
    pos_weight,
    out,
    tile,
):  # pragma: no cover - compiled by numba
    """:func:`revalue_options`, numba: in parallel over tiles of the columns (no two tasks write the
    same element of ``out``); per tile, each contract's values into a buffer, then added to the
    rows of the accounts that hold it."""
    n_o, n_g = lev.shape
    n_cols = out.shape[1]
    moves_vol = vol_factor.size > 0
    n_tiles = (n_cols + tile - 1) // tile
    for it in prange(n_tiles):
        c0 = it * tile
        m = min(tile, n_cols - c0)
        s0 = c0 // n_g
        g0 = c0 - s0 * n_g
        # the (scenario, date) offset into factor's (s, d) plane and the grid point of each column
        sd_at = np.empty(m, np.int64)
        g_at = np.empty(m, np.int64)
        s = s0
        g = g0
        for j in range(m):
            sd_at[j] = s * n_d + date[g]
            g_at[j] = g
            g += 1
            if g == n_g:
                g = 0
                s += 1
        sjb = np.empty(m)
        fb = np.empty(m)
        fkb = np.empty(m)
        sdb = np.empty(m)
        d1b = np.empty(m)
        eb = np.empty(m)
        cb = np.empty(m)
        vb = np.empty(m)
        x1b = np.empty(m)
        x2b = np.empty(m)
        i1b = np.empty(m, np.int64)
        i2b = np.empty(m, np.int64)
        e1b = np.empty(m)
        e2b = np.empty(m)
        for kk in range(n_o):
            k = order[kk]
            base = und[k] * n_s * n_d
            kj = strike[k]
            w = 1.0 if call[k] else -1.0
            for j in range(m):
                gj = g_at[j]
                at = base + sd_at[j]
                sj = lev[k, gj] * factor[at]
                f = sj * ff[k, gj]
                sjb[j] = sj
                fb[j] = f
                fkb[j] = f / kj
                if moves_vol:
                    sdb[j] = (vol[k, gj] * vol_factor[at]) * sqt[k, gj]
                else:
                    sdb[j] = sd0[k, gj]
                d1b[j] = ln0[k, gj] + log_factor[at]  # ln(F / K) of the scenario
            for j in range(m):
                sd = sdb[j]
                d1 = d1b[j] / sd + 0.5 * sd
                d1b[j] = d1
                # as pricing._euro_blocks: exp(-dn^2 / 2) of the d nearer 0, dn^2 exact (Dekker)
                dn = d1 - sd if fkb[j] > 1.0 else d1
                p = dn * dn
                big = dn * _DEKKER_SPLIT
                dn_hi = big - (big - dn)
                dn_lo = dn - dn_hi
                err = ((dn_hi * dn_hi - p) + 2.0 * dn_hi * dn_lo) + dn_lo * dn_lo
                eb[j] = -0.5 * p
                cb[j] = 1.0 - 0.5 * err if abs(dn) < _DEKKER_MAX else 1.0
            _exp_into(eb, m, i1b, i2b)
            for j in range(m):  # the arguments of N(w d1), N(w d2)
                fk = fkb[j]
                e = eb[j] * cb[j]
                itm = fk > 1.0
                e1b[j] = e / fk if itm else e
                e2b[j] = e if itm else e * fk
                d1 = d1b[j]
                x1b[j] = w * d1
                x2b[j] = w * (d1 - sdb[j])
            for j in range(m):  # each N in its own short loop: they vectorise (SIMD)
                e1b[j] = _ncdf(x1b[j], e1b[j])
            for j in range(m):
                e2b[j] = _ncdf(x2b[j], e2b[j])
            n_edge = 0 if kj > 0.0 else m  # elements off the Black formula (sd is NaN where t <= 0)
            for j in range(m):
                v = w * df[k, g_at[j]] * (fb[j] * e1b[j] - kj * e2b[j])
                vb[j] = 0.0 if v < 0.0 else v  # rounding far out of the money
                n_edge += 0 if (sdb[j] > 0.0 and fb[j] > 0.0) else 1
            for j in range(m if n_edge else 0):  # edge cases: expired, zero vol / price / strike, invalid
                gj = g_at[j]
                f = fb[j]
                if t[k, gj] <= 0.0:
                    x = sjb[j] - kj if w > 0.0 else kj - sjb[j]
                    vb[j] = 0.0 if x < 0.0 else x
                elif not (sdb[j] > 0.0 and f > 0.0 and kj > 0.0):
                    if sdb[j] >= 0.0 and f >= 0.0 and kj >= 0.0:
                        x = f - kj if w > 0.0 else kj - f
                        vb[j] = df[k, gj] * (0.0 if x < 0.0 else x)
                    else:
                        vb[j] = math.nan
            for p in range(pos_start[k], pos_start[k + 1]):
                dst = out[pos_account[p], c0 : c0 + m]
                wp = pos_weight[p]
                for j in range(m):
                    dst[j] += wp * vb[j]


@functools.cache
def _numba_revalue():
    ncdf = compile_kernel(_ncdf, inline="always", cache=False)
    exp_into = compile_kernel(_exp_into, inline="always", cache=False)
    return compile_kernel(_revalue_loop, helpers={"_ncdf": ncdf, "_exp_into": exp_into}, parallel=True)


def _revalue_numpy(c, factor, log_factor, vol_factor, date, s_part, pos):
    """:func:`revalue_options`' values, numpy: the contracts ``c`` (an index array) under the
    scenarios ``s_part`` (a slice), ``(B, S', G)``, by the operations of the numba twin."""
    strike, call, und, lev, ff, ln0, sd0, sqt, df, t, vol = pos
    u = und[c]

    def per_contract(x: np.ndarray) -> np.ndarray:  # (O, G) -> (B, 1, G)
        return x[c][:, None, :]

    def per_scenario(x: np.ndarray) -> np.ndarray:  # (U, S, D) -> (B, S', G)
        return x[u, s_part][:, :, date]

    with np.errstate(all="ignore"):
        sj = per_contract(lev) * per_scenario(factor)
        f = sj * per_contract(ff)
        k = strike[c][:, None, None]
        fk = f / k
        if vol_factor.size:
            sd = (per_contract(vol) * per_scenario(vol_factor)) * per_contract(sqt)
        else:
            sd = np.broadcast_to(per_contract(sd0), fk.shape)
        d1 = (per_contract(ln0) + per_scenario(log_factor)) / sd + 0.5 * sd
        dn = np.where(fk > 1.0, d1 - sd, d1)
        p = dn * dn
        big = dn * _DEKKER_SPLIT
        dn_hi = big - (big - dn)
        dn_lo = dn - dn_hi
        err = ((dn_hi * dn_hi - p) + 2.0 * dn_hi * dn_lo) + dn_lo * dn_lo
        e = np.exp(-0.5 * p) * np.where(np.abs(dn) < _DEKKER_MAX, 1.0 - 0.5 * err, 1.0)
        w = np.where(call[c], 1.0, -1.0)[:, None, None]
        itm = fk > 1.0
        e1 = np.where(itm, e / fk, e)
        e2 = np.where(itm, e, e * fk)
        d = per_contract(df)
        v = w * d * (f * _ncdf_numpy(w * d1, e1) - k * _ncdf_numpy(w * (d1 - sd), e2))
        v = np.where(v < 0.0, 0.0, v)
        x = w * (f - k)
        degenerate = np.where((sd >= 0.0) & (f >= 0.0) & (k >= 0.0), d * np.where(x < 0.0, 0.0, x), np.nan)
        v = np.where((sd > 0.0) & (f > 0.0) & (k > 0.0), v, degenerate)
        x = w * (sj - k)
        return np.where(per_contract(t) <= 0.0, np.where(x < 0.0, 0.0, x), v)


def revalue_options(
    model: np.ndarray,
    strike: np.ndarray,
    is_call: np.ndarray,
    und: np.ndarray,
    level: np.ndarray,
    vol: np.ndarray,
    t: np.ndarray,
    rate: np.ndarray,
    dividend_yield: np.ndarray,
    factor: np.ndarray,
    log_factor: np.ndarray,
    vol_factor: np.ndarray | None,
    date: np.ndarray,
    account: np.ndarray,
    row: np.ndarray,
    weight: np.ndarray,
    out: np.ndarray,
    *,
    block_elements: int = 4_000_000,
    engine: Engine = "auto",
) -> None:
    """Revalue European options under scenario price (and vol) factors and add each position's
    value into its account's row: ``out[account[p], s G + g] += weight[p] x value(row[p], s, g)``.

    The value is :func:`marginsim.kernels.pricing.value`'s (Black-76 or Black-Scholes-Merton, with
    its edge cases) at the scenario level ``level x factor`` and vol ``vol x vol_factor``, by the
    same formula, except that ``ln(F / K)`` of a scenario is ``ln(F / K)`` now plus the scenario's
    log move (no logarithm per revaluation; equal to the last bits). The discount, carry and
    ``sqrt(t)`` are computed once per contract and grid point; the values are never materialised
    as a ``(contracts, scenarios x grid points)`` array by the numba engine, whose ``exp(-d^2 / 2)``
    is a vectorised exp within one unit in the last place of the C library's (the numpy engine
    takes numpy's): the two engines agree to rounding, not to the bit.

    Parameters
    ----------
    model
        ``(O,)`` :data:`~marginsim.kernels.pricing.BLACK76` or :data:`~marginsim.kernels.pricing.BSM`
        (European options only: American ones go through the tree, linear ones are not options).
    strike, is_call, und
        ``(O,)`` strike [price units], call flag, and row of ``factor`` of the underlying.
    level, vol, t, rate, dividend_yield
        ``(O, G)`` market now per grid point: underlying level [price units], vol [decimal],
        time to expiry [years], rate and dividend yield [decimal per year].
    factor, log_factor
        ``(U, S, D)`` scenario price factors [ratio] and their logarithms (the log moves).
    vol_factor
        ``(U, S, D)`` scenario vol factors [ratio], or ``None`` (vols unchanged).
    date
        ``(G,)`` the row of ``factor``'s last axis of each grid point.
    account, row, weight
        Per position: account (row of ``out``), contract (0 to O - 1), and value weight
        [currency per price point: quantity x multiplier x FX].
    out
        ``(A, S x G)`` C-contiguous float64, added to in place [currency]; column ``s x G + g``.
    block_elements
        numpy engine: values computed at once [elements] (a bounded working set).
    engine
        ``"numba"``: one pass, parallel over tiles of columns; ``"numpy"``: blocks of contracts and
        scenarios, one sparse product per block.
    """
    n_o, n_g = level.shape
    if n_o == 0 or out.size == 0 or account.size == 0:
        return
    with np.errstate(all="ignore"):
        bsm = np.asarray(model)[:, None] == BSM
        if not np.all(bsm | (np.asarray(model)[:, None] == BLACK76)):
            raise ValueError("revalue_options: model codes must be BLACK76 or BSM")
        g = (rate - dividend_yield) * t
        ff = np.where(bsm & (g != 0.0), np.exp(g), 1.0)  # the forward's carry factor
        k = np.asarray(strike, dtype=float)[:, None]
        ln0 = np.log((level * ff) / k)
        positive = t > 0.0
        sqt = np.where(positive, np.sqrt(np.where(positive, t, 0.0)), np.nan)
        sd0 = vol * sqt
        df = np.exp(-rate * t)
    arrays = [
        np.ascontiguousarray(np.broadcast_to(a, (n_o, n_g)), dtype=np.float64)
        for a in (level, ff, ln0, sd0, sqt, df, t, vol)
    ]
    lev, ff, ln0, sd0, sqt, df, t_, vol_ = arrays
    strike = np.ascontiguousarray(strike, dtype=np.float64)
    call = np.ascontiguousarray(is_call, dtype=np.bool_)
    und = np.ascontiguousarray(und, dtype=np.int64)
    vf = np.zeros((0, 0, 0)) if vol_factor is None else np.ascontiguousarray(vol_factor, dtype=np.float64)
    date = np.ascontiguousarray(date, dtype=np.int64)
    if resolve_engine(engine) == "numba":
        # positions by contract; contracts in the order of their first account (an account's row
        # of a tile stays in cache while its positions are added)
        by = np.argsort(row, kind="stable")
        pos_start = np.searchsorted(row[by], np.arange(n_o + 1))
        first = np.full(n_o, out.shape[0], dtype=np.int64)
        np.minimum.at(first, row, account)
        n_cols = out.shape[1]
        tile = min(_REVALUE_TILE_MAX, max(_MIN_TILE, -(-n_cols // _TILES)))
        _numba_revalue()(
            strike,
            call,
            und,
            lev,
            ff,
            ln0,
            sd0,
            sqt,
            df,
            t_,
            np.ascontiguousarray(factor, dtype=np.float64).reshape(-1),
            np.ascontiguousarray(log_factor, dtype=np.float64).reshape(-1),
            vol_,
            vf.reshape(-1),
            factor.shape[1],
            factor.shape[2],
            date,
            np.argsort(first, kind="stable").astype(np.int64),
            pos_start.astype(np.int64),
            np.ascontiguousarray(account[by], dtype=np.int64),
            np.ascontiguousarray(weight[by], dtype=np.float64),
            out,
            tile,
        )
        return
    parts = (strike, call, und, lev, ff, ln0, sd0, sqt, df, t_, vol_)
    n_s = factor.shape[1]
    per_contract = n_s * n_g
    block = max(1, block_elements // max(per_contract, 1))
    s_block = n_s if block > 1 else max(1, block_elements // max(n_g, 1))
    rows = out.reshape(out.shape[0], n_s, n_g)
    for k0 in range(0, n_o, block):  # blocks of contracts and of scenarios (a bounded working set)
        c = np.arange(k0, min(k0 + block, n_o))
        inside = (row >= k0) & (row < k0 + c.size)
        m = membership(account[inside], row[inside] - k0, weight[inside], out.shape[0], c.size)
        for s0 in range(0, n_s, s_block):
            sl = slice(s0, min(s0 + s_block, n_s))
            v = _revalue_numpy(c, factor, log_factor, vf, date, sl, parts)
            rows[:, sl, :] += (m @ v.reshape(c.size, -1)).reshape(out.shape[0], -1, n_g)


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
