"""Vectorised option pricing kernels: value, delta, implied vol and an American binomial tree.

Pure numpy in, numpy out: no xarray and no I/O. Every argument may be a scalar or an array; all
arguments broadcast together under numpy's rules and every result has the broadcast shape and dtype
float64 (a 0-d array when every argument is a scalar).

Conventions
-----------
* time to expiry ``t`` in years (ACT/365);
* ``vol`` annualised, as a decimal (0.2 is 20 %);
* ``r`` continuously compounded interest rate, ``q`` continuous dividend yield (decimals per year);
* prices and strikes in the underlying's price units, per unit of underlying (no multiplier).

Models (integer codes, broadcastable so one call can revalue a whole book)
------------------------------------------------------------------------
* :data:`LINEAR` (0): the value is the underlying price ``s`` (futures, stocks, CFDs), delta 1;
  strike, vol, rates, ``is_call`` and ``american`` are ignored.
* :data:`BLACK76` (1): European option on a future ``s = F``:
  ``exp(-r t) [F N(d1) - K N(d2)]`` (call), ``exp(-r t) [K N(-d2) - F N(-d1)]`` (put).
* :data:`BSM` (2): European option on a spot with continuous dividend yield ``q``
  (Black-Scholes-Merton), i.e. Black-76 on the forward ``F = s exp((r - q) t)``.

With ``american=True`` an option element is priced on a Cox-Ross-Rubinstein tree with early
exercise (:func:`american_binomial`): on the future (carry 0) for BLACK76, on the spot with
carry ``r - q`` for BSM. Only those elements go through the tree.

Edge cases (no NaN): ``t <= 0`` gives the intrinsic value ``max(s - k, 0)`` / ``max(k - s, 0)``
and delta +1/0 (call), 0/-1 (put), with 0.5 / -0.5 exactly at the money; ``vol == 0`` (or
``s == 0`` or ``k == 0``) gives the discounted forward intrinsic value
``exp(-r t) max(+-(F - K), 0)`` and the matching delta (0.5 exactly at the forward). Negative
``vol``, ``s`` or ``k`` on an option with ``t > 0`` give NaN (the lognormal models are undefined
there); NaN inputs propagate.

Engines
-------
``engine="numba"`` runs kernels compiled with numba on first use (cached on disk; importing this
module never imports numba): the European formulas in parallel blocks of elements, whose
branch-free passes vectorise (SIMD), with W. J. Cody's rational approximations of the normal CDF;
the tree one element per parallel task. ``engine="numpy"`` evaluates the same formulas with
numpy array operations, operation for operation (the same Cody approximation, the same exact
square of ``d``, the same tree recursion): on x86-64 without AVX-512 (where numpy's ``exp`` and
``log`` are the C library's, as numba's are) the two engines give the same bits; with AVX-512,
numpy's own ``exp`` / ``log`` loops may round the last bit differently (about 1e-15 relative,
more only where the Black formula itself cancels). ``engine="auto"`` uses
numba when it can be imported and otherwise numpy, with one :class:`RuntimeWarning`.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from ._jit import Engine, compile_kernel, prange, resolve_engine

__all__ = [
    "BLACK76",
    "BSM",
    "LINEAR",
    "Engine",
    "american_binomial",
    "delta",
    "implied_vol",
    "value",
]

LINEAR = 0
"""Model code: linear instrument (future, stock, CFD); value = underlying price."""
BLACK76 = 1
"""Model code: European option on a future (Black-76)."""
BSM = 2
"""Model code: European option on a spot with continuous dividend yield (Black-Scholes-Merton)."""

_MODELS = (LINEAR, BLACK76, BSM)

_SQRT1_2 = math.sqrt(0.5)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / _SQRT_2PI

# Implied vol solver: at most this many safeguarded Newton / bisection passes over the unsolved
# elements; elements still unsolved are NaN.
_IV_MAX_ITER = 100
# A price within this fraction of max(s, k) of its lower no-arbitrage bound counts as on the bound
# (implied vol 0): prices and bounds are only known to rounding (the tree accumulates it).
_BOUND_RTOL = 1e-12
# Relative bump (on 1 + vol) of the forward difference giving the tree's vega in the solver.
_TREE_VEGA_BUMP = 1e-6
# The numpy tree works on blocks of elements holding at most this many float64 per work array.
_NUMPY_TREE_BLOCK = 1 << 21


# ---------------------------------------------------------------------------------------------
# numba kernels: plain Python source, compiled by numba on first use (see ._jit.compile_kernel)
# ---------------------------------------------------------------------------------------------

# Normal CDF for the numba engine: W. J. Cody's rational Chebyshev approximations of erf / erfc
# (Math. Comp. 23 (1969) 631-637, as in SPECFUN's CALERF), with y = |x| / sqrt(2):
#   y <= 0.46875:     erf(z) = z P(z^2) / Q(z^2)                (z = x / sqrt(2))
#   0.46875 < y <= 4: erfc(y) = exp(-y^2) P(y) / Q(y)
#   y > 4:            erfc(y) = exp(-y^2) (1/sqrt(pi) - v P(v) / Q(v)) / y   (v = 1 / y^2)
# The coefficients are stored in descending powers, zero-padded to degree 8 (the numpy engine
# runs one Horner loop over them, selected per region; the numba one writes the three out, see
# _ncdf: the same operations); exp(-y^2) = exp(-x^2 / 2) is passed in, so that one exp serves
# N(d1) and N(d2).
_CODY_SMALL = 0.46875
_CODY_LARGE = 4.0
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_CODY_NUM_SMALL = (
    0.0,
    0.0,
    0.0,
    0.0,
    1.85777706184603153e-1,
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
)
_CODY_DEN_SMALL = (
    0.0,
    0.0,
    0.0,
    0.0,
    1.0,
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_CODY_NUM_MID = (
    2.15311535474403846e-8,
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
)
_CODY_DEN_MID = (
    1.0,
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_CODY_NUM_LARGE = (
    0.0,
    0.0,
    1.63153871373020978e-2,
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    0.0,
)
_CODY_DEN_LARGE = (
    0.0,
    0.0,
    0.0,
    1.0,
    2.56852019228982242e00,
    1.87295284992346725e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)

# Dekker's splitting constant 2**27 + 1 (error-free square of a float64), and the |x| below which
# splitting cannot overflow.
_DEKKER_SPLIT = 134217729.0
_DEKKER_MAX = 1e150

# Elements per block of the blocked numba kernel (each pass over a block is one short loop, so
# that independent elements overlap in the CPU and the branch-free passes vectorise).
_BLOCK = 512


def _ncdf(x, e):  # pragma: no cover - compiled by numba
    """Standard normal CDF N(x), given ``e = exp(-x**2 / 2)`` (Cody; see above).

    The three rational functions are written out (Horner, without the zero padding: the same
    products and sums, hence the same bits as one loop over the padded coefficients) and all
    three are evaluated, the region's one selected after: no branch and no table look-up, so
    that a loop of calls vectorises (SIMD) also when inlined into a larger kernel.
    """
    y = abs(x) * _SQRT1_2
    small = y <= _CODY_SMALL
    large = y > _CODY_LARGE
    yl = y if large else 1.0
    a, b = _CODY_NUM_SMALL, _CODY_DEN_SMALL
    v = y * y
    n_small = (((a[4] * v + a[5]) * v + a[6]) * v + a[7]) * v + a[8]
    d_small = (((b[4] * v + b[5]) * v + b[6]) * v + b[7]) * v + b[8]
    a, b = _CODY_NUM_MID, _CODY_DEN_MID
    v = y
    n_mid = (
        ((((((a[0] * v + a[1]) * v + a[2]) * v + a[3]) * v + a[4]) * v + a[5]) * v + a[6]) * v + a[7]
    ) * v
    n_mid = n_mid + a[8]
    d_mid = (
        ((((((b[0] * v + b[1]) * v + b[2]) * v + b[3]) * v + b[4]) * v + b[5]) * v + b[6]) * v + b[7]
    ) * v
    d_mid = d_mid + b[8]
    a, b = _CODY_NUM_LARGE, _CODY_DEN_LARGE
    v = 1.0 / (yl * yl)
    n_large = ((((((a[2] * v + a[3]) * v + a[4]) * v + a[5]) * v + a[6]) * v + a[7]) * v) + a[8]
    d_large = ((((b[3] * v + b[4]) * v + b[5]) * v + b[6]) * v + b[7]) * v + b[8]
    n = n_small if small else (n_large if large else n_mid)
    d = d_small if small else (d_large if large else d_mid)
    rat = n / d
    erfcx = (_INV_SQRT_PI - rat) / yl if large else rat
    tail = 0.5 * e * erfcx
    outer = tail if x < 0.0 else 1.0 - tail
    return 0.5 + 0.5 * (x * _SQRT1_2 * rat) if small else outer


def _euro_blocks(model, s, k, t, vol, r, q, is_call, want_delta, rep, out):  # pragma: no cover - compiled
    """European / linear value (or delta) of every element into ``out``, in parallel blocks.

    Every input is a 1-D array of length 1 (broadcast), ``out.size``, or ``out.size // rep``
    (one value per item, repeated for ``rep`` consecutive elements: an ``(n, 1)`` array against an
    ``(n, rep)`` result, as in a scan of every item over ``rep`` scenarios, without materialising it). Each block runs a few
    short passes: gather and exponents, ``exp``, ``log``, ``d1``, ``exp(-d^2/2)``, the branch-free
    Black formula, and a last pass that handles linear elements and the edge cases.
    """
    n = out.size
    nblocks = (n + _BLOCK - 1) // _BLOCK
    n_items = n // rep
    # index mode per input: 0 one value, 1 one per element, 2 one per item (element // rep)
    im = 1 if model.size == n else (2 if model.size == n_items else 0)
    i_s = 1 if s.size == n else (2 if s.size == n_items else 0)
    ik = 1 if k.size == n else (2 if k.size == n_items else 0)
    it = 1 if t.size == n else (2 if t.size == n_items else 0)
    iv = 1 if vol.size == n else (2 if vol.size == n_items else 0)
    ir = 1 if r.size == n else (2 if r.size == n_items else 0)
    iq = 1 if q.size == n else (2 if q.size == n_items else 0)
    ic = 1 if is_call.size == n else (2 if is_call.size == n_items else 0)
    for b in prange(nblocks):
        start = b * _BLOCK
        m = min(_BLOCK, n - start)
        item = start // rep
        pos = start - item * rep
        mb = np.empty(_BLOCK, np.int64)
        sb = np.empty(_BLOCK)
        kb = np.empty(_BLOCK)
        tb = np.empty(_BLOCK)
        wb = np.empty(_BLOCK)
        sdb = np.empty(_BLOCK)
        dfb = np.empty(_BLOCK)
        ddb = np.empty(_BLOCK)
        fb = np.empty(_BLOCK)
        fkb = np.empty(_BLOCK)
        d1b = np.empty(_BLOCK)
        eb = np.empty(_BLOCK)
        cb = np.empty(_BLOCK)
        vb = np.empty(_BLOCK)
        # time, rate and yield one per item (or one in all): the discount and carry factors and
        # sqrt(t) are computed once per item, not once per element (same operations, same numbers)
        hoist = it != 1 and ir != 1 and iq != 1
        last = -1
        h_df = 0.0
        h_ff = 0.0
        h_dd = 0.0
        h_sq = 0.0
        for j in range(m):
            i = start + j
            mj = model[i if im == 1 else (item if im == 2 else 0)]
            tj = t[i if it == 1 else (item if it == 2 else 0)]
            rj = r[i if ir == 1 else (item if ir == 2 else 0)]
            qj = q[i if iq == 1 else (item if iq == 2 else 0)]
            mb[j] = mj
            sj = s[i if i_s == 1 else (item if i_s == 2 else 0)]
            sb[j] = sj
            kb[j] = k[i if ik == 1 else (item if ik == 2 else 0)]
            tb[j] = tj
            wb[j] = 1.0 if is_call[i if ic == 1 else (item if ic == 2 else 0)] else -1.0
            vj = vol[i if iv == 1 else (item if iv == 2 else 0)]
            if hoist:
                if item != last:
                    last = item
                    h_df = math.exp(-rj * tj)
                    g = (rj - qj) * tj
                    h_ff = math.exp(g) if g != 0.0 else 1.0
                    h_dd = math.exp(-qj * tj)
                    h_sq = math.sqrt(tj) if tj > 0.0 else math.nan
                sdb[j] = vj * h_sq if tj > 0.0 else math.nan
                dfb[j] = h_df
                fb[j] = sj * h_ff if mj == BSM else sj
                ddb[j] = h_dd if mj == BSM else h_df
            else:
                sdb[j] = vj * math.sqrt(tj) if tj > 0.0 else math.nan
                dfb[j] = -rj * tj
                fb[j] = (rj - qj) * tj if mj == BSM else 0.0
                ddb[j] = -qj * tj
            pos += 1
            if pos == rep:
                pos = 0
                item += 1
        if not hoist:
            for j in range(m):
                dfb[j] = math.exp(dfb[j])
            for j in range(m):
                fb[j] = sb[j] * (math.exp(fb[j]) if fb[j] != 0.0 else 1.0)
            if want_delta:
                # discount of the model's delta: exp(-q t) for BSM, exp(-r t) for BLACK76
                for j in range(m):
                    ddb[j] = math.exp(ddb[j]) if mb[j] == BSM else dfb[j]
        for j in range(m):
            fkb[j] = fb[j] / kb[j]
            d1b[j] = math.log(fkb[j])
        for j in range(m):
            sd = sdb[j]
            d1 = d1b[j] / sd + 0.5 * sd
            d1b[j] = d1
            # exp(-dn^2 / 2) for the d nearer 0 (the larger of phi(d1), phi(d2); the other one
            # follows from phi(d2) = phi(d1) f / k). dn^2 = p + err exactly (Dekker's product), and
            # exp(-(p + err) / 2) = exp(-p / 2) (1 - err / 2) keeps full accuracy in the tails.
            dn = d1 - sd if (fkb[j] > 1.0 and not want_delta) else d1
            p = dn * dn
            big = dn * _DEKKER_SPLIT
            dn_hi = big - (big - dn)
            dn_lo = dn - dn_hi
            err = ((dn_hi * dn_hi - p) + 2.0 * dn_hi * dn_lo) + dn_lo * dn_lo
            eb[j] = -0.5 * p
            cb[j] = 1.0 - 0.5 * err if abs(dn) < _DEKKER_MAX else 1.0
        for j in range(m):
            eb[j] = math.exp(eb[j])
        if want_delta:
            for j in range(m):
                w = wb[j]
                vb[j] = w * ddb[j] * _ncdf(w * d1b[j], eb[j] * cb[j])
        else:
            for j in range(m):
                w = wb[j]
                fk = fkb[j]
                e = eb[j] * cb[j]
                itm = fk > 1.0
                e1 = e / fk if itm else e
                e2 = e if itm else e * fk
                d1 = d1b[j]
                v = w * dfb[j] * (fb[j] * _ncdf(w * d1, e1) - kb[j] * _ncdf(w * (d1 - sdb[j]), e2))
                vb[j] = 0.0 if v < 0.0 else v  # rounding far out of the money
        for j in range(m):
            i = start + j
            mj = mb[j]
            sj = sb[j]
            kj = kb[j]
            fj = fb[j]
            call = wb[j] > 0.0
            if mj == LINEAR:
                out[i] = 1.0 if want_delta else sj
            elif mj != BLACK76 and mj != BSM:
                out[i] = math.nan
            elif tb[j] <= 0.0:
                if want_delta:
                    if sj > kj:
                        x = 1.0
                    elif sj < kj:
                        x = 0.0
                    elif sj == kj:
                        x = 0.5
                    else:
                        x = math.nan
                    out[i] = x if call else x - 1.0
                else:
                    x = sj - kj if call else kj - sj
                    out[i] = 0.0 if x < 0.0 else x
            elif sdb[j] > 0.0 and fj > 0.0 and kj > 0.0:
                out[i] = vb[j]
            elif sdb[j] >= 0.0 and fj >= 0.0 and kj >= 0.0:
                if want_delta:
                    if fj > kj:
                        x = 1.0
                    elif fj < kj:
                        x = 0.0
                    else:
                        x = 0.5
                    out[i] = ddb[j] * (x if call else x - 1.0)
                else:
                    x = fj - kj if call else kj - fj
                    out[i] = dfb[j] * (0.0 if x < 0.0 else x)
            else:
                out[i] = math.nan


def _tree_loop(s, k, t, vol, r, q, is_call, on_future, steps, want_delta, out):  # pragma: no cover
    """:func:`_tree_scalar` for every element into ``out``, in parallel (inputs as in _euro_blocks)."""
    i_s = 1 if s.size > 1 else 0
    ik = 1 if k.size > 1 else 0
    it = 1 if t.size > 1 else 0
    iv = 1 if vol.size > 1 else 0
    ir = 1 if r.size > 1 else 0
    iq = 1 if q.size > 1 else 0
    ic = 1 if is_call.size > 1 else 0
    jf = 1 if on_future.size > 1 else 0
    for i in prange(out.size):
        out[i] = _tree_scalar(
            s[i * i_s],
            k[i * ik],
            t[i * it],
            vol[i * iv],
            r[i * ir],
            q[i * iq],
            is_call[i * ic],
            on_future[i * jf],
            steps,
            want_delta,
        )


def _tree_scalar(s, k, t, vol, r, q, is_call, on_future, steps, want_delta):  # pragma: no cover
    """CRR tree value (or first-step delta) of one American option; see :func:`american_binomial`."""
    sign = 1.0 if is_call else -1.0
    if t <= 0.0:
        if want_delta:
            if s > k:
                x = 1.0
            elif s < k:
                x = 0.0
            elif s == k:
                x = 0.5
            else:
                return math.nan
            return x if is_call else x - 1.0
        x = s - k if is_call else k - s
        return 0.0 if x < 0.0 else x
    if not (s >= 0.0 and k >= 0.0 and vol >= 0.0 and steps >= 1):
        return math.nan
    n = steps
    carry = 0.0 if on_future else r - q
    dt = t / n
    if vol == 0.0:
        # deterministic path: best discounted exercise value over the exercise dates
        best = 0.0
        dbest = 0.0
        zero_seen = False
        for i in range(n + 1):
            x = i * dt
            gi = math.exp(carry * x)
            di = math.exp(-r * x)
            vi = di * sign * (s * gi - k)
            if vi > best:
                best = vi
                dbest = sign * di * gi
            elif vi == 0.0 and best == 0.0 and not zero_seen:
                zero_seen = True
                dbest = 0.5 * sign * di * gi
        return dbest if want_delta else best
    if want_delta and s == 0.0:
        if is_call:
            return 0.0
        if r > 0.0:
            return -1.0
        return -math.exp(-(r if on_future else q) * t)
    a = vol * math.sqrt(dt)
    g = math.exp(carry * dt)
    u = math.exp(a)
    d = math.exp(-a)
    mu = 0.0
    if not (d <= g and g <= u):
        # CRR probability outside [0, 1]: centre the tree on the forward instead
        mu = carry * dt
        u = g * u
        d = g * d
    p = (g - d) / (u - d)
    disc = math.exp(-r * dt)
    pu = disc * p
    pd = disc * (1.0 - p)
    pw = np.empty(2 * n + 1)
    for m in range(2 * n + 1):
        pw[m] = math.exp((m - n) * a)
    v = np.empty(n + 1)
    row = s * math.exp(n * mu)
    for j in range(n + 1):
        x = sign * (row * pw[2 * j] - k)
        v[j] = x if x > 0.0 else 0.0
    v_up = 0.0
    v_dn = 0.0
    s_up = 0.0
    s_dn = 0.0
    if n == 1:
        v_up = v[1]
        v_dn = v[0]
        s_up = row * pw[n + 1]
        s_dn = row * pw[n - 1]
    for i in range(n - 1, -1, -1):
        row = s * math.exp(i * mu)
        for j in range(i + 1):
            cont = pu * v[j + 1] + pd * v[j]
            x = sign * (row * pw[2 * j - i + n] - k)
            v[j] = cont if cont > x else x
        if i == 1:
            v_up = v[1]
            v_dn = v[0]
            s_up = row * pw[n + 1]
            s_dn = row * pw[n - 1]
    if want_delta:
        return (v_up - v_dn) / (s_up - s_dn)
    return v[0]


# ---------------------------------------------------------------------------------------------
# lazy compilation (engine choice and compiling: ._jit)
# ---------------------------------------------------------------------------------------------


@functools.cache
def _numba_euro() -> Callable:
    """The compiled :func:`_euro_blocks` (built on first use)."""
    ncdf = compile_kernel(_ncdf, inline="always", cache=False)
    sig = ("i8[]", "f8[]", "f8[]", "f8[]", "f8[]", "f8[]", "f8[]", "b1[]", "b1", "i8", "f8[w]")
    return compile_kernel(_euro_blocks, sig, helpers={"_ncdf": ncdf}, parallel=True)


@functools.cache
def _numba_tree() -> Callable:
    """The compiled :func:`_tree_loop` (built on first use)."""
    scalar = compile_kernel(
        _tree_scalar,
        "float64(float64, float64, float64, float64, float64, float64, boolean, boolean, int64, boolean)",
    )
    sig = ("f8[]", "f8[]", "f8[]", "f8[]", "f8[]", "f8[]", "b1[]", "b1[]", "i8", "b1", "f8[w]")
    return compile_kernel(_tree_loop, sig, helpers={"_tree_scalar": scalar}, parallel=True)


# ---------------------------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------------------------


def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function of an array (scipy, imported on first use; implied vols)."""
    from scipy.special import erfc

    return erfc(x)


def _as_float(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _as_bool(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=bool)


def _as_model(model: ArrayLike) -> np.ndarray:
    """Model codes as int64; raises for anything but the known codes."""
    m = np.asarray(model)
    if m.dtype.kind == "f":
        if not np.all(np.isfinite(m) & (m == np.round(m))):
            raise ValueError(f"model codes must be integers in {_MODELS}")
    elif m.dtype.kind not in "iu":
        raise TypeError(f"model codes must be integers in {_MODELS}, got dtype {m.dtype}")
    m = m.astype(np.int64, copy=False)
    if m.size and (m.min() < min(_MODELS) or m.max() > max(_MODELS)):
        raise ValueError(f"unknown model code: model codes must be in {_MODELS} (LINEAR, BLACK76, BSM)")
    return m


def _as_steps(steps: int) -> int:
    n = operator.index(steps)
    if n < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return n


# ---------------------------------------------------------------------------------------------
# numpy engine
# ---------------------------------------------------------------------------------------------


def _ncdf_numpy(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`_ncdf`: the same operations in the same order, element by element
    (Cody's three regions selected by :func:`numpy.where`), so that the two engines agree to the bit
    wherever numpy's ``exp`` and ``log`` round as the C library's do."""
    y = np.abs(x) * _SQRT1_2
    small = y <= _CODY_SMALL
    large = y > _CODY_LARGE
    yl = np.where(large, y, 1.0)
    v = np.where(small, y * y, np.where(large, 1.0 / (yl * yl), y))
    n = np.zeros_like(v)
    d = np.zeros_like(v)
    for i in range(9):  # the 9 coefficients of the rational functions, not elements
        n = n * v + np.where(small, _CODY_NUM_SMALL[i], np.where(large, _CODY_NUM_LARGE[i], _CODY_NUM_MID[i]))
        d = d * v + np.where(small, _CODY_DEN_SMALL[i], np.where(large, _CODY_DEN_LARGE[i], _CODY_DEN_MID[i]))
    rat = n / d
    erfcx = np.where(large, (_INV_SQRT_PI - rat) / yl, rat)
    tail = 0.5 * e * erfcx
    outer = np.where(x < 0.0, tail, 1.0 - tail)
    return np.where(small, 0.5 + 0.5 * (x * _SQRT1_2 * rat), outer)


def _euro_numpy(model, s, k, t, vol, r, q, is_call, want_delta: bool) -> np.ndarray:
    """numpy engine of :func:`_euro_blocks`: European / linear value or delta with the broadcast
    shape, by the same operations in the same order (Cody's normal CDF, Dekker's exact square of
    the ``d`` nearer 0), so that both engines give the same bits where numpy's ``exp`` / ``log``
    are the C library's (x86-64 without AVX-512; with it, numpy's own loops may differ in the last
    bit)."""
    model, s, k, t, vol, r, q, is_call = np.broadcast_arrays(model, s, k, t, vol, r, q, is_call)
    with np.errstate(all="ignore"):
        bsm = model == BSM
        positive_t = t > 0.0
        sd = np.where(positive_t, vol * np.sqrt(np.where(positive_t, t, 0.0)), np.nan)
        df = np.exp(-r * t)
        g = (r - q) * t
        f = np.where(bsm, s * np.where(g != 0.0, np.exp(g), 1.0), s)
        dd = np.where(bsm, np.exp(-q * t), df)
        fk = f / k
        d1 = np.log(fk) / sd + 0.5 * sd
        dn = np.where(fk > 1.0, d1 - sd, d1) if not want_delta else d1
        p = dn * dn
        big = dn * _DEKKER_SPLIT
        dn_hi = big - (big - dn)
        dn_lo = dn - dn_hi
        err = ((dn_hi * dn_hi - p) + 2.0 * dn_hi * dn_lo) + dn_lo * dn_lo
        e = np.exp(-0.5 * p) * np.where(np.abs(dn) < _DEKKER_MAX, 1.0 - 0.5 * err, 1.0)
        w = np.where(is_call, 1.0, -1.0)
        if want_delta:
            v_normal = w * dd * _ncdf_numpy(w * d1, e)
            x = np.where(f > k, 1.0, np.where(f < k, 0.0, 0.5))
            v_degen = dd * np.where(is_call, x, x - 1.0)
            x = np.where(s > k, 1.0, np.where(s < k, 0.0, np.where(s == k, 0.5, np.nan)))
            v_expired = np.where(is_call, x, x - 1.0)
            v_linear: np.ndarray | float = 1.0
        else:
            itm = fk > 1.0
            e1 = np.where(itm, e / fk, e)
            e2 = np.where(itm, e, e * fk)
            v_normal = w * df * (f * _ncdf_numpy(w * d1, e1) - k * _ncdf_numpy(w * (d1 - sd), e2))
            v_normal = np.where(v_normal < 0.0, 0.0, v_normal)  # rounding far out of the money
            x = np.where(is_call, f - k, k - f)
            v_degen = df * np.where(x < 0.0, 0.0, x)
            x = np.where(is_call, s - k, k - s)
            v_expired = np.where(x < 0.0, 0.0, x)
            v_linear = s
        normal = (sd > 0.0) & (f > 0.0) & (k > 0.0)
        degenerate = (sd >= 0.0) & (f >= 0.0) & (k >= 0.0)
        out = np.where(normal, v_normal, np.where(degenerate, v_degen, np.nan))
        out = np.where(t <= 0.0, v_expired, out)
        out = np.where((model == BLACK76) | bsm, out, np.nan)
        return np.where(model == LINEAR, v_linear, out)


def _tree_numpy(s, k, t, vol, r, q, is_call, on_future, steps: int, want_delta: bool) -> np.ndarray:
    """numpy engine of :func:`_tree_scalar` on equal-length 1-D arrays (blocks of elements, loop over steps)."""
    m = s.size
    out = np.empty(m)
    block = max(1, _NUMPY_TREE_BLOCK // (2 * steps + 1))
    for start in range(0, m, block):
        sl = slice(start, start + block)
        out[sl] = _tree_numpy_block(
            s[sl], k[sl], t[sl], vol[sl], r[sl], q[sl], is_call[sl], on_future[sl], steps, want_delta
        )
    return out


def _tree_numpy_block(s, k, t, vol, r, q, is_call, on_future, n: int, want_delta: bool) -> np.ndarray:
    out = np.full(s.shape, np.nan)
    sign = np.where(is_call, 1.0, -1.0)
    with np.errstate(all="ignore"):
        expired = t <= 0.0
        if want_delta:
            x = np.where(s > k, 1.0, np.where(s < k, 0.0, np.where(s == k, 0.5, np.nan)))
            out = np.where(expired, np.where(is_call, x, x - 1.0), out)
        else:
            out = np.where(expired, np.maximum(np.where(is_call, s - k, k - s), 0.0), out)
        live = ~expired & (s >= 0.0) & (k >= 0.0) & (vol >= 0.0)
        carry = np.where(on_future, 0.0, r - q)
        dt = t / n

        # vol == 0: deterministic path
        flat = np.flatnonzero(live & (vol == 0.0))
        if flat.size:
            x = dt[flat, None] * np.arange(n + 1)
            gi = np.exp(carry[flat, None] * x)
            di = np.exp(-r[flat, None] * x)
            sg = sign[flat, None]
            vi = di * sg * (s[flat, None] * gi - k[flat, None])
            imax = np.argmax(vi, axis=1)
            rows = np.arange(flat.size)
            vmax = vi[rows, imax]
            if want_delta:
                izero = np.argmax(vi == 0.0, axis=1)
                d_best = sign[flat] * di[rows, imax] * gi[rows, imax]
                d_zero = 0.5 * sign[flat] * di[rows, izero] * gi[rows, izero]
                has_zero = vi[rows, izero] == 0.0
                out[flat] = np.where(vmax > 0.0, d_best, np.where(has_zero, d_zero, 0.0))
            else:
                out[flat] = np.where(vmax > 0.0, vmax, 0.0)

        tree = live & (vol > 0.0)
        if want_delta:
            zero = np.flatnonzero(tree & (s == 0.0))
            if zero.size:
                lim = -np.exp(-np.where(on_future[zero], r[zero], q[zero]) * t[zero])
                put = np.where(r[zero] > 0.0, -1.0, lim)
                out[zero] = np.where(is_call[zero], 0.0, put)
            tree &= s != 0.0
        idx = np.flatnonzero(tree)
        if idx.size:
            out[idx] = _tree_numpy_core(
                s[idx], k[idx], dt[idx], vol[idx], r[idx], carry[idx], sign[idx], n, want_delta
            )
    return out


def _tree_numpy_core(s, k, dt, vol, r, carry, sign, n: int, want_delta: bool) -> np.ndarray:
    a = vol * np.sqrt(dt)
    g = np.exp(carry * dt)
    u = np.exp(a)
    d = np.exp(-a)
    tilt = ~((d <= g) & (g <= u))
    mu = np.where(tilt, carry * dt, 0.0)
    u = np.where(tilt, g * u, u)
    d = np.where(tilt, g * d, d)
    p = (g - d) / (u - d)
    disc = np.exp(-r * dt)
    pu = (disc * p)[:, None]
    pd = (disc * (1.0 - p))[:, None]
    pw = np.exp(np.arange(-n, n + 1) * a[:, None])
    sg = sign[:, None]
    kk = k[:, None]
    row = s * np.exp(n * mu)
    v = np.maximum(sg * (row[:, None] * pw[:, 0::2] - kk), 0.0)
    # (v_up, v_dn, s_up, s_dn) at step 1: set before the loop when n == 1, in it otherwise
    step1: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    if n == 1:
        step1 = (v[:, 1].copy(), v[:, 0].copy(), row * pw[:, n + 1], row * pw[:, n - 1])
    for i in range(n - 1, -1, -1):
        row = s * np.exp(i * mu)
        cont = pu * v[:, 1 : i + 2] + pd * v[:, : i + 1]
        ex = sg * (row[:, None] * pw[:, n - i : n + i + 1 : 2] - kk)
        v[:, : i + 1] = np.maximum(cont, ex)
        if i == 1:
            step1 = (v[:, 1].copy(), v[:, 0].copy(), row * pw[:, n + 1], row * pw[:, n - 1])
    if want_delta:
        assert step1 is not None  # n >= 1
        v_up, v_dn, s_up, s_dn = step1
        return (v_up - v_dn) / (s_up - s_dn)
    return v[:, 0].copy()


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------


def _flat(shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    """``x`` as a C-contiguous 1-D array: length 1 if it is one element, else broadcast to ``shape``.

    Arrays already of the full shape and C-contiguous are not copied (read-only ones included).
    """
    if x.size == 1:
        return x.reshape(1)
    if x.shape == shape:
        return np.ravel(x)
    return np.broadcast_to(x, shape).ravel()


def _flat_items(shape: tuple[int, ...], args) -> tuple[int, list[np.ndarray]]:
    """1-D inputs for the blocked kernel, and the repeat factor of per-item inputs.

    An input shaped like the result with a last axis of length 1 (an ``(n, 1)`` array against an
    ``(n, S)`` result) is passed as its ``n`` values with ``rep = S`` instead of being broadcast
    to ``n * S`` values; everything else as :func:`_flat`.
    """
    rep = shape[-1] if len(shape) >= 2 and shape[-1] > 1 else 1
    item_shape = shape[:-1] + (1,)
    flat = []
    items = False
    for a in args:
        a = np.asarray(a)
        padded = (1,) * (len(shape) - a.ndim) + a.shape
        if rep > 1 and a.size > 1 and padded == item_shape:
            flat.append(np.ravel(a))
            items = True
        else:
            flat.append(_flat(shape, a))
    if not items:
        rep = 1
    return rep, flat


def _tree(eng: str, s, k, t, vol, r, q, is_call, on_future, steps: int, want_delta: bool) -> np.ndarray:
    """Tree values (or deltas) on already-coerced arguments, with the broadcast shape."""
    args = (s, k, t, vol, r, q, is_call, on_future)
    shape = np.broadcast_shapes(*(np.shape(a) for a in args))
    out = np.empty(shape)
    if eng == "numba":
        flat = [_flat(shape, np.asarray(a)) for a in args]
        _numba_tree()(*flat, steps, want_delta, out.reshape(-1))
    else:
        s1, k1, t1, vol1, r1, q1, call1, fut1 = (np.ravel(a) for a in np.broadcast_arrays(*args))
        out.reshape(-1)[:] = _tree_numpy(s1, k1, t1, vol1, r1, q1, call1, fut1, steps, want_delta)
    return out


def _evaluate(eng, model, s, k, t, vol, r, q, is_call, american, steps, want_delta) -> np.ndarray:
    """Shared body of :func:`value` and :func:`delta`."""
    model = _as_model(model)
    s, k, t, vol, r, q = (_as_float(x) for x in (s, k, t, vol, r, q))
    is_call, american = _as_bool(is_call), _as_bool(american)
    steps = _as_steps(steps)
    args = (model, s, k, t, vol, r, q, is_call)
    shape = np.broadcast_shapes(*(a.shape for a in args), american.shape)
    out = np.empty(shape)
    if eng == "numba":
        rep, flat = _flat_items(shape, args)
        _numba_euro()(*flat, want_delta, rep, out.reshape(-1))
    else:
        out[...] = _euro_numpy(*args, want_delta)
    if american.any():
        tree = np.broadcast_to(american & (model != LINEAR), shape)
        if tree.any():

            def pick(x):
                return np.broadcast_to(x, shape)[tree]

            out[tree] = _tree(
                eng,
                pick(s),
                pick(k),
                pick(t),
                pick(vol),
                pick(r),
                pick(q),
                pick(is_call),
                pick(model) == BLACK76,
                steps,
                want_delta,
            )
    return out


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------


def value(
    model: ArrayLike,
    s: ArrayLike,
    k: ArrayLike,
    t: ArrayLike,
    vol: ArrayLike,
    r: ArrayLike = 0.0,
    q: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    american: ArrayLike = False,
    *,
    steps: int = 200,
    engine: Engine = "auto",
) -> np.ndarray:
    """Value per unit of underlying of linear instruments and European / American options.

    Parameters
    ----------
    model : array_like of int
        Model code per element: :data:`LINEAR`, :data:`BLACK76` or :data:`BSM`.
    s : array_like
        Underlying price: the future price for BLACK76, the spot for BSM [price units].
    k : array_like
        Strike [price units]; ignored for LINEAR.
    t : array_like
        Time to expiry [years, ACT/365]; ``t <= 0`` gives the intrinsic value.
    vol : array_like
        Volatility [1/sqrt(year), decimal]; ignored for LINEAR.
    r : array_like, default 0.0
        Interest rate [1/year, continuously compounded].
    q : array_like, default 0.0
        Dividend yield of the spot [1/year, continuous]; used by BSM only.
    is_call : array_like of bool, default True
        True for calls, False for puts.
    american : array_like of bool, default False
        True to price the element with early exercise on a CRR tree (:func:`american_binomial`),
        on the future for BLACK76 and on the spot for BSM.
    steps : int, default 200
        Number of tree steps for American elements.
    engine : {"auto", "numba", "numpy"}, default "auto"
        Evaluation engine (see the module docstring).

    Returns
    -------
    numpy.ndarray
        Value [price units per unit of underlying], float64, with the broadcast shape of the
        arguments (0-d when they are all scalars).

    Raises
    ------
    ValueError
        For an unknown model code, engine name or a non-positive ``steps``.
    """
    eng = resolve_engine(engine)
    return _evaluate(eng, model, s, k, t, vol, r, q, is_call, american, steps, want_delta=False)


def delta(
    model: ArrayLike,
    s: ArrayLike,
    k: ArrayLike,
    t: ArrayLike,
    vol: ArrayLike,
    r: ArrayLike = 0.0,
    q: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    american: ArrayLike = False,
    *,
    steps: int = 200,
    engine: Engine = "auto",
) -> np.ndarray:
    """Delta dV/ds per unit of underlying.

    LINEAR: 1. BLACK76: ``exp(-r t) N(d1)`` (call) or ``-exp(-r t) N(-d1)`` (put), the
    derivative with respect to the future price. BSM: ``exp(-q t) N(d1)`` or
    ``-exp(-q t) N(-d1)``, with respect to the spot. ``t <= 0``: +1 / 0 for calls and 0 / -1 for
    puts, 0.5 / -0.5 exactly at the money. ``vol == 0``: the discount factor of the model's delta
    (``exp(-r t)`` for BLACK76, ``exp(-q t)`` for BSM) times the step of the forward intrinsic
    value, 0.5 exactly at the forward.

    American elements use the tree's delta from the first step's two nodes,
    ``(V_u - V_d) / (s u - s d)`` (Hull's standard estimator, the delta at time ``t / steps``).
    On the tree with ``s == 0`` the call delta is 0 and the put delta is -1 when ``r > 0``
    (immediate exercise) and otherwise the European limit ``-exp(-q t)`` (spot) or ``-exp(-r t)``
    (future); with ``vol == 0`` it is the slope of the best discounted exercise value.

    Parameters
    ----------
    model : array_like of int
        Model code per element: :data:`LINEAR`, :data:`BLACK76` or :data:`BSM`.
    s : array_like
        Underlying price: the future price for BLACK76, the spot for BSM [price units].
    k : array_like
        Strike [price units]; ignored for LINEAR.
    t : array_like
        Time to expiry [years, ACT/365].
    vol : array_like
        Volatility [1/sqrt(year), decimal]; ignored for LINEAR.
    r : array_like, default 0.0
        Interest rate [1/year, continuously compounded].
    q : array_like, default 0.0
        Dividend yield of the spot [1/year, continuous]; used by BSM only.
    is_call : array_like of bool, default True
        True for calls, False for puts.
    american : array_like of bool, default False
        True for early exercise on a CRR tree.
    steps : int, default 200
        Number of tree steps for American elements.
    engine : {"auto", "numba", "numpy"}, default "auto"
        Evaluation engine.

    Returns
    -------
    numpy.ndarray
        Delta [price units of value per price unit of underlying, dimensionless], float64, with
        the broadcast shape of the arguments.

    Raises
    ------
    ValueError
        For an unknown model code, engine name or a non-positive ``steps``.
    """
    eng = resolve_engine(engine)
    return _evaluate(eng, model, s, k, t, vol, r, q, is_call, american, steps, want_delta=True)


def american_binomial(
    s: ArrayLike,
    k: ArrayLike,
    t: ArrayLike,
    vol: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    is_call: ArrayLike,
    *,
    steps: int = 200,
    on_future: ArrayLike = False,
    engine: Engine = "auto",
) -> np.ndarray:
    """American option value on a Cox-Ross-Rubinstein binomial tree with early exercise.

    The tree has ``steps`` steps of ``dt = t / steps``, up and down moves
    ``u = exp(vol sqrt(dt))``, ``d = 1 / u``, carry ``b = r - q`` on a spot (``b = 0`` on a
    future, ``on_future=True``), up probability ``p = (exp(b dt) - d) / (u - d)`` and discount
    ``exp(-r dt)`` per step; exercise is allowed at every node including the root. Where ``p`` would
    fall outside [0, 1] (``vol sqrt(dt) < |b| dt``, tiny vols) the tree is centred on the forward
    instead (``u, d`` multiplied by ``exp(b dt)``). ``vol == 0`` gives the best discounted exercise
    value along the deterministic forward path; ``t <= 0`` gives the intrinsic value. Negative
    ``s``, ``k`` or ``vol`` give NaN. The numba engine evaluates one element per thread task, the
    numpy engine runs the backward induction over blocks of elements.

    Parameters
    ----------
    s : array_like
        Underlying price: spot, or future price with ``on_future=True`` [price units].
    k : array_like
        Strike [price units].
    t : array_like
        Time to expiry [years, ACT/365].
    vol : array_like
        Volatility [1/sqrt(year), decimal].
    r : array_like
        Interest rate [1/year, continuously compounded].
    q : array_like
        Dividend yield of the spot [1/year, continuous]; ignored with ``on_future=True``.
    is_call : array_like of bool
        True for calls, False for puts.
    steps : int, default 200
        Number of tree steps.
    on_future : array_like of bool, default False
        True for an option on a future (zero carry).
    engine : {"auto", "numba", "numpy"}, default "auto"
        Evaluation engine.

    Returns
    -------
    numpy.ndarray
        Option value [price units per unit of underlying], float64, broadcast shape.
    """
    eng = resolve_engine(engine)
    s, k, t, vol, r, q = (_as_float(x) for x in (s, k, t, vol, r, q))
    return _tree(
        eng, s, k, t, vol, r, q, _as_bool(is_call), _as_bool(on_future), _as_steps(steps), want_delta=False
    )


def implied_vol(
    price: ArrayLike,
    model: ArrayLike,
    s: ArrayLike,
    k: ArrayLike,
    t: ArrayLike,
    r: ArrayLike = 0.0,
    q: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    american: ArrayLike = False,
    *,
    steps: int = 200,
    tol: float = 1e-10,
    engine: Engine = "auto",
) -> np.ndarray:
    """Volatility that reproduces an option price, solved for all elements at once.

    The solver works on the time value ``w = price - lower bound`` (below) and runs a safeguarded
    Newton iteration on ``log w(vol) = log w*`` over the arrays of unsolved elements (no loop over
    elements): each pass narrows a bracket (``[0, inf)`` at first), takes the Newton step when it
    stays inside and otherwise bisects (or doubles the vol while no upper end is known), and drops
    the elements whose step or bracket is within ``tol``. Elements unsolved after a fixed number of
    passes are NaN. European elements are priced as the out-of-the-money option of the same strike
    (put-call parity turns an in-the-money price into its time value), with the closed-form vega;
    American elements use the tree (:func:`american_binomial`, same ``steps``) and a
    forward-difference vega. The start is the Manaster-Koehler vol ``sqrt(2 |ln(F/K)| / t)`` plus
    the Brenner-Subrahmanyam estimate from the time value.

    No-arbitrage bounds, with ``F`` the forward (``s`` for BLACK76, ``s exp((r - q) t)`` for BSM)
    and ``D = exp(-r t)``: a European call lies in ``[D max(F - K, 0), D F)`` and a put in
    ``[D max(K - F, 0), D K)``; an American option lies between its zero-vol tree value and
    ``s max(1, exp(-q t))`` (call on a spot; ``exp(-r t)`` on a future) or ``k max(1, exp(-r t))``
    (put).
    A price on the lower bound (within 1e-12 of the discounted forward or strike, i.e. rounding)
    gives vol 0. NaN: a price below the lower bound, at or above the upper bound (infinite vol),
    LINEAR elements, ``t <= 0``, ``s <= 0``, ``k <= 0`` or a non-finite price.
    Prices whose time value is at the level of rounding carry little information about the vol:
    they come back with a vol that reproduces the price, not necessarily the vol they came from.

    Parameters
    ----------
    price : array_like
        Option price [price units per unit of underlying].
    model : array_like of int
        :data:`BLACK76` or :data:`BSM` (:data:`LINEAR` gives NaN).
    s : array_like
        Underlying price: future for BLACK76, spot for BSM [price units].
    k : array_like
        Strike [price units].
    t : array_like
        Time to expiry [years, ACT/365].
    r : array_like, default 0.0
        Interest rate [1/year, continuously compounded].
    q : array_like, default 0.0
        Dividend yield of the spot [1/year, continuous]; BSM only.
    is_call : array_like of bool, default True
        True for calls, False for puts.
    american : array_like of bool, default False
        True to invert the American tree price.
    steps : int, default 200
        Number of tree steps for American elements.
    tol : float, default 1e-10
        Absolute tolerance on the vol [1/sqrt(year), decimal].
    engine : {"auto", "numba", "numpy"}, default "auto"
        Engine of the American tree (the European solver is numpy).

    Returns
    -------
    numpy.ndarray
        Implied volatility [1/sqrt(year), decimal], float64, broadcast shape; NaN where no vol
        reproduces the price.
    """
    eng = resolve_engine(engine)
    model = _as_model(model)
    price, s, k, t, r, q = (_as_float(x) for x in (price, s, k, t, r, q))
    is_call, american = _as_bool(is_call), _as_bool(american)
    steps = _as_steps(steps)
    args = np.broadcast_arrays(price, model, s, k, t, r, q, is_call, american)
    shape = args[0].shape
    price, model, s, k, t, r, q, is_call, american = (np.ravel(a) for a in args)
    out = np.full(price.shape, np.nan)

    with np.errstate(all="ignore"):
        option = (model != LINEAR) & (t > 0.0) & (s > 0.0) & (k > 0.0) & np.isfinite(price)
        b76 = model == BLACK76
        f = np.where(b76, s, s * np.exp((r - q) * t))
        df = np.exp(-r * t)
        sqt = np.sqrt(t)

        eu = np.flatnonzero(option & ~american)
        if eu.size:
            fe, ke, dfe, sqe, ce = f[eu], k[eu], df[eu], sqt[eu], is_call[eu]
            lower = dfe * np.maximum(np.where(ce, fe - ke, ke - fe), 0.0)
            upper = dfe * np.where(ce, fe, ke)
            # the out-of-the-money option of the same strike (by parity its price is the time value)
            otm_call = np.where(fe == ke, ce, fe < ke)

            def euro(act, sig):
                return _black_value_vega(fe[act], ke[act], dfe[act], sqe[act], sig, otm_call[act])

            out[eu] = _solve_vol(price[eu], lower, upper, fe, ke, dfe, sqe, euro, tol)

        am = np.flatnonzero(option & american)
        if am.size:
            sa, ka, ta, ra, qa, ca, fut = s[am], k[am], t[am], r[am], q[am], is_call[am], b76[am]
            lower = _tree(eng, sa, ka, ta, 0.0, ra, qa, ca, fut, steps, False)
            # E[exp(-r tau) S_tau] <= s max(1, exp(-b t)) for any exercise time tau, with b = q on a
            # spot and b = r on a future (zero drift); puts are worth at most k max(1, exp(-r t))
            grow = np.maximum(1.0, np.exp(-np.where(fut, ra, qa) * ta))
            upper = np.where(ca, sa * grow, ka * np.maximum(1.0, np.exp(-ra * ta)))

            def amer(act, sig):
                fixed = (sa[act], ka[act], ta[act])
                rest = (ra[act], qa[act], ca[act], fut[act], steps, False)
                bump = _TREE_VEGA_BUMP * (1.0 + sig)
                v0 = _tree(eng, *fixed, sig, *rest)
                v1 = _tree(eng, *fixed, sig + bump, *rest)
                return v0 - lower[act], (v1 - v0) / bump

            out[am] = _solve_vol(price[am], lower, upper, f[am], ka, df[am], sqt[am], amer, tol)
    return out.reshape(shape)


def _black_value_vega(f, k, df, sqt, sig, is_call):
    """Black-76 value on the forward ``f`` and its vega dV/dvol (numpy; arrays of one length)."""
    sd = sig * sqt
    d1 = np.log(f / k) / sd + 0.5 * sd
    d2 = d1 - sd
    n1 = 0.5 * _erfc(np.where(is_call, -d1, d1) * _SQRT1_2)
    n2 = 0.5 * _erfc(np.where(is_call, -d2, d2) * _SQRT1_2)
    v = df * np.where(is_call, f * n1 - k * n2, k * n2 - f * n1)
    vega = df * f * np.exp(-0.5 * d1 * d1) * _INV_SQRT_2PI * sqt
    return v, vega


def _solve_vol(price, lower, upper, f, k, df, sqt, pricer, tol) -> np.ndarray:
    """Vectorised safeguarded Newton on the log of the time value (see :func:`implied_vol`).

    ``pricer(act, vol)`` returns the time value (price minus ``lower``) and its vega for the
    elements ``act``.
    """
    m = price.size
    out = np.full(m, np.nan)
    on_bound = np.abs(price - lower) <= _BOUND_RTOL * np.maximum(f * df, k * df)
    out[on_bound & (price <= lower)] = 0.0
    target = price - lower
    # start: Manaster-Koehler plus Brenner-Subrahmanyam on the time value
    sig = np.sqrt(2.0 * np.abs(np.log(f / k))) / sqt + _SQRT_2PI * target / (df * np.sqrt(f * k) * sqt)
    sig = np.where(np.isfinite(sig) & (sig > 0.0), sig, 1.0)
    lo = np.zeros(m)
    hi = np.full(m, np.inf)
    act = np.flatnonzero(np.isnan(out) & (price > lower) & (price < upper))
    for _ in range(_IV_MAX_ITER):
        if act.size == 0:
            break
        sa, loa, hia, ta = sig[act], lo[act], hi[act], target[act]
        w, vega = pricer(act, sa)
        diff = w - ta
        hia = np.where(diff > 0.0, sa, hia)
        loa = np.where(diff < 0.0, sa, loa)
        newton = sa - np.log(w / ta) * w / vega
        fallback = np.where(np.isinf(hia), 2.0 * sa, 0.5 * (loa + hia))
        new = np.where((newton > loa) & (newton < hia), newton, fallback)
        done = (diff == 0.0) | (np.abs(new - sa) <= tol) | (hia - loa <= tol)
        out[act[done]] = np.where(diff == 0.0, sa, new)[done]
        sig[act], lo[act], hi[act] = new, loa, hia
        act = act[~done]
    # a time value at rounding level that no vol reproduces: on the bound
    return np.where(np.isnan(out) & on_bound, 0.0, out)
