"""CFD path kernels: margin, close-out and negative balance protection along ``step``.

Pure numpy in, numpy out: no xarray and no I/O. Close-outs are state changes along the path, so
the simulation is a loop over steps; every batch element (a Monte Carlo path, a what-if grid
point) is independent. Two engines give the same numbers (the same operations in the same order):

* ``"numba"``: :func:`_simulate_loop` compiled with numba, parallel over the batch (``prange``),
  compiled on first use and cached on disk;
* ``"numpy"``: :func:`_simulate_numpy`, vectorised over batch x account x slot, a Python loop over
  steps only;
* ``"auto"``: numba when it imports, else numpy with one :class:`RuntimeWarning`.

Layout
------
Positions sit in ``(A, K)`` slots: account ``a``'s positions in order of recency, slot 0 the most
recently opened (ties: the later row of the book). Empty slots have ``und = -1``.

Per step ``s`` of every batch element and account, in this order:

1. **financing** (``s > 0``): positions open after step ``s - 1`` pay
   ``|q| * price[s-1] * mf * fin_rate * yf[s]`` out of cash;
2. **openings**, oldest first, of the slots with ``open_step == s``: a slot opens at its
   ``open_px`` (NaN: at the step's price); its initial and maintenance margin are fixed there
   (``|q| * p0 * mf * rate``). A ``checked`` slot (a new order) opens only if its initial margin
   is at most the available cash ``max(min(cash, equity) - initial, 0)`` (cash only: unrealised
   profits cannot fund initial margin, unrealised losses reduce it); otherwise it is rejected;
3. **state**: unrealised pnl, equity = cash + unrealised, initial and maintenance (sums of the
   fixed amounts of the open slots), available cash, deficiency = (any open) and equity < maintenance;
4. **close-out** on a deficiency: the most recently opened slots are closed at the step's price
   while the maintenance of the slots still open exceeds the equity; realised pnl is cash at once;
5. **negative balance protection** (``nbp``): equity below zero after the close-out is written
   off (the broker takes the loss) and cash is set back so that equity is zero.

All sums over slots run in slot order (numpy: ``cumsum``), so both engines round alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import numpy as np

from ._jit import Engine, compile_kernel, prange, resolve_engine

__all__ = [
    "Engine",
    "ACCOUNT_VARS",
    "simulate",
    "gbm_paths",
]

#: Names of the last axis of the per-account output of :func:`simulate` (all float64).
ACCOUNT_VARS = (
    "cash",
    "equity",
    "unrealised",
    "initial",
    "maintenance",
    "available_cash",
    "financing",
    "realised",
    "written_off",
    "cash_after",
    "equity_after",
    "deficiency",
    "open_positions",
    "closed_positions",
)
_NV = len(ACCOUNT_VARS)
(
    _CASH,
    _EQ,
    _UNR,
    _IM,
    _MM,
    _AV,
    _FIN,
    _REAL,
    _WO,
    _CASH_AFTER,
    _EQ_AFTER,
    _DEF,
    _NOPEN,
    _NCLOSED,
) = range(_NV)

#: Per-slot outputs of :func:`simulate` (last axis of ``slot_out``).
SLOT_VARS = ("open_price", "initial", "maintenance", "realised")

# A new order is funded when its initial margin <= available * (1 + _REL_TOL) + _ABS_TOL.
_REL_TOL = 1e-12
_ABS_TOL = 1e-9


def _simulate_loop(
    prices,
    und,
    qty,
    open_px,
    mf,
    im_rate,
    mm_rate,
    fin_rate,
    open_step,
    checked,
    cash0,
    nbp,
    yf,
    acct_out,
    slot_out,
    close_step,
    rejected,
):  # pragma: no cover - run compiled (and once in pure Python by the tests)
    """The reference loop; see the module docstring. Writes into the output arrays."""
    n_b, n_s, _ = prices.shape
    n_a, n_k = und.shape
    for b in prange(n_b):
        is_open = np.zeros((n_a, n_k), dtype=np.bool_)
        p0 = np.zeros((n_a, n_k))
        im_amt = np.zeros((n_a, n_k))
        mm_amt = np.zeros((n_a, n_k))
        cash = cash0.copy()
        n_closed = np.zeros(n_a)
        for s in range(n_s):
            for a in range(n_a):
                # 1. overnight financing of the positions held since the last step
                fin = 0.0
                if s > 0:
                    for k in range(n_k):
                        if is_open[a, k]:
                            fin += (
                                abs(qty[a, k])
                                * prices[b, s - 1, und[a, k]]
                                * mf[a, k]
                                * fin_rate[a, k]
                                * yf[s]
                            )
                cash[a] -= fin
                # 2. openings, oldest first
                for k in range(n_k - 1, -1, -1):
                    if und[a, k] < 0 or open_step[a, k] != s:
                        continue
                    px = prices[b, s, und[a, k]]
                    p = open_px[a, k]
                    if p != p:
                        p = px
                    im_k = abs(qty[a, k]) * p * mf[a, k] * im_rate[a, k]
                    mm_k = abs(qty[a, k]) * p * mf[a, k] * mm_rate[a, k]
                    ok = True
                    if checked[a, k]:
                        unr = 0.0
                        imt = 0.0
                        for j in range(n_k):
                            if is_open[a, j]:
                                unr += qty[a, j] * (prices[b, s, und[a, j]] - p0[a, j]) * mf[a, j]
                                imt += im_amt[a, j]
                        eq = cash[a] + unr
                        avail = min(cash[a], eq) - imt
                        if avail < 0.0:
                            avail = 0.0
                        ok = im_k <= avail * (1.0 + _REL_TOL) + _ABS_TOL
                    if ok:
                        is_open[a, k] = True
                        p0[a, k] = p
                        im_amt[a, k] = im_k
                        mm_amt[a, k] = mm_k
                        slot_out[b, a, k, 0] = p
                        slot_out[b, a, k, 1] = im_k
                        slot_out[b, a, k, 2] = mm_k
                    else:
                        rejected[b, a, k] = True
                # 3. state at the step's prices
                unr = 0.0
                imt = 0.0
                mmt = 0.0
                n_open = 0
                for k in range(n_k):
                    if is_open[a, k]:
                        unr += qty[a, k] * (prices[b, s, und[a, k]] - p0[a, k]) * mf[a, k]
                        imt += im_amt[a, k]
                        mmt += mm_amt[a, k]
                        n_open += 1
                eq = cash[a] + unr
                avail = min(cash[a], eq) - imt
                if avail < 0.0:
                    avail = 0.0
                defic = n_open > 0 and eq < mmt
                acct_out[b, s, a, _CASH] = cash[a]
                acct_out[b, s, a, _EQ] = eq
                acct_out[b, s, a, _UNR] = unr
                acct_out[b, s, a, _IM] = imt
                acct_out[b, s, a, _MM] = mmt
                acct_out[b, s, a, _AV] = avail
                acct_out[b, s, a, _FIN] = fin
                acct_out[b, s, a, _DEF] = 1.0 if defic else 0.0
                acct_out[b, s, a, _NOPEN] = n_open
                # 4. close-out: most recent first while the remaining maintenance exceeds equity
                real = 0.0
                if defic:
                    cum = 0.0
                    for k in range(n_k):
                        if is_open[a, k]:
                            if mmt - cum > eq:
                                r = qty[a, k] * (prices[b, s, und[a, k]] - p0[a, k]) * mf[a, k]
                                real += r
                                cum += mm_amt[a, k]
                                is_open[a, k] = False
                                close_step[b, a, k] = s
                                slot_out[b, a, k, 3] = r
                                n_closed[a] += 1.0
                            else:
                                break
                cash[a] += real
                # 5. negative balance protection
                unr = 0.0
                for k in range(n_k):
                    if is_open[a, k]:
                        unr += qty[a, k] * (prices[b, s, und[a, k]] - p0[a, k]) * mf[a, k]
                eq_after = cash[a] + unr
                wo = 0.0
                if nbp[a] and eq_after < 0.0:
                    wo = -eq_after
                    cash[a] += wo
                    eq_after = cash[a] + unr
                acct_out[b, s, a, _REAL] = real
                acct_out[b, s, a, _WO] = wo
                acct_out[b, s, a, _CASH_AFTER] = cash[a]
                acct_out[b, s, a, _EQ_AFTER] = eq_after
                acct_out[b, s, a, _NCLOSED] = n_closed[a]


def _seq_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis in index order (``cumsum``: the order of the compiled loop)."""
    if x.shape[-1] == 0:
        return np.zeros(x.shape[:-1])
    return np.cumsum(x, axis=-1)[..., -1]


def _simulate_numpy(
    prices,
    und,
    qty,
    open_px,
    mf,
    im_rate,
    mm_rate,
    fin_rate,
    open_step,
    checked,
    cash0,
    nbp,
    yf,
    acct_out,
    slot_out,
    close_step,
    rejected,
) -> None:
    """The same computation as :func:`_simulate_loop`, vectorised over batch x account x slot."""
    n_b, n_s, _ = prices.shape
    n_a, n_k = und.shape
    valid = und >= 0
    ui = np.where(valid, und, 0)
    aq = np.abs(qty)
    is_open = np.zeros((n_b, n_a, n_k), dtype=bool)
    p0 = np.zeros((n_b, n_a, n_k))
    im_amt = np.zeros((n_b, n_a, n_k))
    mm_amt = np.zeros((n_b, n_a, n_k))
    cash = np.broadcast_to(cash0, (n_b, n_a)).copy()
    n_closed = np.zeros((n_b, n_a))
    # checked slots, oldest first within each account (slot order reversed)
    rank_k = np.arange(n_k - 1, -1, -1)
    for s in range(n_s):
        px = prices[:, s, :][:, ui]  # (B, A, K)
        # 1. financing
        if s > 0:
            prev = prices[:, s - 1, :][:, ui]
            fin = _seq_sum(np.where(is_open, aq * prev * mf * fin_rate * yf[s], 0.0))
        else:
            fin = np.zeros((n_b, n_a))
        cash -= fin
        # 2. openings: unchecked slots (the existing book: older than every new order) at once ...
        opening = valid & (open_step == s)
        p_open = np.where(np.isnan(open_px), px, open_px)
        im_k = aq * p_open * mf * im_rate
        mm_k = aq * p_open * mf * mm_rate
        now = np.broadcast_to(opening & ~checked, is_open.shape)
        is_open |= now
        p0 = np.where(now, p_open, p0)
        im_amt = np.where(now, im_k, im_amt)
        mm_amt = np.where(now, mm_k, mm_amt)
        # ... then new orders, oldest first (a loop over slot ranks that hold an order at this step)
        for k in rank_k:
            sel = opening[:, k] & checked[:, k]  # (A,)
            if not sel.any():
                continue
            unr = _seq_sum(np.where(is_open, qty * (px - p0) * mf, 0.0))
            imt = _seq_sum(np.where(is_open, im_amt, 0.0))
            eq = cash + unr
            avail = np.maximum(np.minimum(cash, eq) - imt, 0.0)
            ok = im_k[:, :, k] <= avail * (1.0 + _REL_TOL) + _ABS_TOL  # (B, A)
            take = ok & sel
            is_open[:, :, k] |= take
            p0[:, :, k] = np.where(take, p_open[:, :, k], p0[:, :, k])
            im_amt[:, :, k] = np.where(take, im_k[:, :, k], im_amt[:, :, k])
            mm_amt[:, :, k] = np.where(take, mm_k[:, :, k], mm_amt[:, :, k])
            rejected[:, :, k] |= ~ok & sel
        opened_now = np.broadcast_to(opening, is_open.shape) & is_open
        slot_out[..., 0] = np.where(opened_now, p0, slot_out[..., 0])
        slot_out[..., 1] = np.where(opened_now, im_amt, slot_out[..., 1])
        slot_out[..., 2] = np.where(opened_now, mm_amt, slot_out[..., 2])
        # 3. state
        pnl = qty * (px - p0) * mf
        unr = _seq_sum(np.where(is_open, pnl, 0.0))
        imt = _seq_sum(np.where(is_open, im_amt, 0.0))
        mm_open = np.where(is_open, mm_amt, 0.0)
        mmt = _seq_sum(mm_open)
        n_open = is_open.sum(axis=-1)
        eq = cash + unr
        avail = np.maximum(np.minimum(cash, eq) - imt, 0.0)
        defic = (n_open > 0) & (eq < mmt)
        out = acct_out[:, s]
        out[..., _CASH] = cash
        out[..., _EQ] = eq
        out[..., _UNR] = unr
        out[..., _IM] = imt
        out[..., _MM] = mmt
        out[..., _AV] = avail
        out[..., _FIN] = fin
        out[..., _DEF] = defic
        out[..., _NOPEN] = n_open
        # 4. close-out: an open slot closes while the maintenance left before it exceeds equity
        if n_k:
            before = np.concatenate([np.zeros((n_b, n_a, 1)), np.cumsum(mm_open, axis=-1)[..., :-1]], axis=-1)
            close = is_open & defic[..., None] & ((mmt[..., None] - before) > eq[..., None])
        else:
            close = np.zeros_like(is_open)
        real = _seq_sum(np.where(close, pnl, 0.0))
        is_open &= ~close
        close_step[close] = s
        slot_out[..., 3] = np.where(close, pnl, slot_out[..., 3])
        n_closed += close.sum(axis=-1)
        cash += real
        # 5. negative balance protection
        unr = _seq_sum(np.where(is_open, pnl, 0.0))
        eq_after = cash + unr
        wo = np.where(nbp & (eq_after < 0.0), -eq_after, 0.0)
        cash += wo
        eq_after = np.where(wo > 0.0, cash + unr, eq_after)
        out[..., _REAL] = real
        out[..., _WO] = wo
        out[..., _CASH_AFTER] = cash
        out[..., _EQ_AFTER] = eq_after
        out[..., _NCLOSED] = n_closed


@functools.cache
def _numba_loop() -> Callable:
    """:func:`_simulate_loop` compiled (parallel over the batch; cached on disk)."""
    return compile_kernel(_simulate_loop, parallel=True)


def simulate(
    prices: np.ndarray,
    und: np.ndarray,
    qty: np.ndarray,
    open_px: np.ndarray,
    mf: np.ndarray,
    im_rate: np.ndarray,
    mm_rate: np.ndarray,
    fin_rate: np.ndarray,
    open_step: np.ndarray,
    checked: np.ndarray,
    cash0: np.ndarray,
    nbp: np.ndarray,
    yf: np.ndarray,
    *,
    engine: Engine | Literal["python"] = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simulate CFD accounts along price paths (see the module docstring for the rules).

    Parameters
    ----------
    prices
        ``(B, S, U)`` underlying prices [price units] per batch element, step and underlying.
    und
        ``(A, K)`` int: underlying of each slot (``-1``: empty slot). Slot 0 is the most recent.
    qty
        ``(A, K)`` signed quantity [contracts], long positive.
    open_px
        ``(A, K)`` open price [price units]; NaN: filled at the price of the opening step.
    mf
        ``(A, K)`` multiplier x FX [reporting currency per price point per contract].
    im_rate, mm_rate
        ``(A, K)`` applied initial and maintenance rates [fraction of notional at opening].
    fin_rate
        ``(A, K)`` overnight financing rate paid [decimal per year of notional]; negative = received.
    open_step
        ``(A, K)`` int: step at which the slot opens (``S`` or more: not within the path).
    checked
        ``(A, K)`` bool: a new order (its initial margin must be covered by available cash).
        Unchecked slots (the existing book) must be older than (to the right of) every checked
        slot of their account.
    cash0
        ``(A,)`` CFD cash at the start [reporting currency].
    nbp
        ``(A,)`` bool: negative balance protection (retail clients).
    yf
        ``(S,)`` year fraction of financing charged on arrival at each step (``yf[0]`` unused).
    engine
        ``"numba"``, ``"numpy"``, ``"auto"`` (or ``"python"``: the reference loop uncompiled, for tests).

    Returns
    -------
    acct_out
        ``(B, S, A, len(ACCOUNT_VARS))`` float64: the variables of :data:`ACCOUNT_VARS`
        [reporting currency; flags 0/1; counts]. ``cash`` ... ``deficiency`` are the state on
        arrival at the step, before its close-out; ``realised``, ``written_off``, ``cash_after``,
        ``equity_after`` are the result of the step's close-out and protection.
    slot_out
        ``(B, A, K, 4)`` float64: open price, initial, maintenance (fixed at opening; NaN if the
        slot never opens) and realised pnl at close-out (0 if not closed), per slot.
    close_step
        ``(B, A, K)`` int64: step of the slot's close-out, ``-1`` if never closed.
    rejected
        ``(B, A, K)`` bool: a new order rejected for lack of available cash.
    """
    prices = np.ascontiguousarray(prices, dtype=np.float64)
    n_b, n_s, _ = prices.shape
    und = np.ascontiguousarray(und, dtype=np.int64)
    n_a, n_k = und.shape

    def f(x):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(x, dtype=np.float64), (n_a, n_k)))

    args = (
        prices,
        und,
        f(qty),
        f(open_px),
        f(mf),
        f(im_rate),
        f(mm_rate),
        f(fin_rate),
        np.ascontiguousarray(np.broadcast_to(np.asarray(open_step, dtype=np.int64), (n_a, n_k))),
        np.ascontiguousarray(np.broadcast_to(np.asarray(checked, dtype=np.bool_), (n_a, n_k))),
        np.ascontiguousarray(np.asarray(cash0, dtype=np.float64).reshape(n_a)),
        np.ascontiguousarray(np.asarray(nbp, dtype=np.bool_).reshape(n_a)),
        np.ascontiguousarray(np.asarray(yf, dtype=np.float64).reshape(n_s)),
    )
    valid, chk = args[1] >= 0, args[9]
    k_idx = np.arange(n_k)
    newest_existing = np.where(valid & ~chk, k_idx, n_k).min(axis=1, initial=n_k)
    oldest_order = np.where(valid & chk, k_idx, -1).max(axis=1, initial=-1)
    if (oldest_order >= newest_existing).any():
        raise ValueError(
            "every unchecked slot (existing position) must be older than the checked slots (new orders)"
        )
    acct_out = np.zeros((n_b, n_s, n_a, _NV))
    slot_out = np.zeros((n_b, n_a, n_k, len(SLOT_VARS)))
    slot_out[..., :3] = np.nan  # not opened (yet): no open price, no margin
    close_step = np.full((n_b, n_a, n_k), -1, dtype=np.int64)
    rejected = np.zeros((n_b, n_a, n_k), dtype=np.bool_)
    outs = (acct_out, slot_out, close_step, rejected)
    if engine == "python":
        _simulate_loop(*args, *outs)
    elif resolve_engine(engine) == "numba":
        _numba_loop()(*args, *outs)
    else:
        _simulate_numpy(*args, *outs)
    return outs


def gbm_paths(
    price: np.ndarray,
    vol: np.ndarray,
    drift: np.ndarray,
    *,
    paths: int,
    steps: int,
    dt: float,
    correlation: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Correlated geometric Brownian motion price paths.

    Parameters
    ----------
    price
        ``(U,)`` prices at step 0 [price units].
    vol
        ``(U,)`` annualised vols [decimal]; 0 keeps the price constant.
    drift
        ``(U,)`` annualised drifts [decimal per year].
    paths, steps
        Number of paths and of steps after step 0.
    dt
        Step length [years].
    correlation
        Constant pairwise correlation of the underlyings' normal shocks.
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        ``(U, steps + 1, paths)`` prices; step 0 is ``price``.

    Raises
    ------
    ValueError
        If the correlation matrix is not positive definite (``correlation < -1 / (U - 1)``).
    """
    price = np.asarray(price, dtype=float)
    vol = np.asarray(vol, dtype=float)
    drift = np.asarray(drift, dtype=float)
    n_u = price.shape[0]
    corr = np.full((n_u, n_u), float(correlation))
    np.fill_diagonal(corr, 1.0)
    try:
        chol = np.linalg.cholesky(corr) if n_u else corr
    except np.linalg.LinAlgError:
        raise ValueError(
            f"a pairwise correlation of {correlation} is not valid for {n_u} underlyings "
            f"(it must be above {-1.0 / max(n_u - 1, 1):.4f})"
        ) from None
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((paths, steps, n_u)) @ chol.T  # (P, T, U)
    incr = (drift - 0.5 * vol**2) * dt + vol * np.sqrt(dt) * z
    log_path = np.concatenate([np.zeros((paths, 1, n_u)), np.cumsum(incr, axis=1)], axis=1)
    out = price[None, None, :] * np.exp(log_path)  # (P, T+1, U)
    return np.moveaxis(out, (2, 1, 0), (0, 1, 2))
