"""Optimal pairing: the least requirement over every grouping of the positions into strategies.

Each account (and grid point) is an integer program: ``x_s >= 0`` units of each candidate
strategy ``s``, at most what its legs hold (``sum_s coef_sk x_s <= |q_k|`` for each position ``k``),
minimising ``sum_s saving_s x_s``, where ``saving_s`` is the strategy's requirement minus its legs'
requirements alone (only strategies that save are variables). The requirement is then the
positions' requirements alone plus the savings taken.

Accounts are independent, so many go into one HiGHS ``milp`` call as a block-diagonal program
(:func:`solve`): about ``batch_variables`` variables per call, whole accounts per call. A Python
loop runs over the calls (a few per 10,000 accounts), never over accounts or positions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["solve", "TOLERANCE"]

#: A strategy is a variable when it saves more than this per unit [reporting currency].
TOLERANCE = 1e-7

# seed of the tie-breaking numbers (any fixed value: the same choice in every run)
_TIE_SEED = 20261203


def solve(
    saving: np.ndarray,
    legs: np.ndarray,
    coef: np.ndarray,
    block: np.ndarray,
    quantity: np.ndarray,
    *,
    batch_variables: int = 5_000,
    relaxation_first: bool = True,
    tie_break: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal units of each candidate strategy at each grid point.

    Parameters
    ----------
    saving
        Saving of one unit of each candidate at each grid point, ``(N, G)`` [reporting currency]
        (negative: the strategy is cheaper than its legs alone).
    legs, coef
        Position of each leg (-1: none) and its units per unit of strategy, ``(N, 3)``.
    block
        Account of each candidate, ``(N,)``, non-decreasing (candidates of one account together).
    quantity
        Signed quantity of each position, ``(P,)``.
    batch_variables
        About this many variables per ``milp`` call.
    relaxation_first
        Solve the linear relaxation first and the integer program only for the accounts whose
        relaxed optimum is fractional (the same optimum, fewer branch-and-bound runs).
    tie_break
        Added to each variable's cost [reporting currency per unit]: ``tie_break x (3 - legs + u_i)``
        with ``u_i`` in [0, 1) a fixed pseudo-random number of the ``i``-th of an account's
        candidates, so that of groupings with the same requirement the one with fewer, larger
        strategies is taken, and always the same one whatever else is in the program (batches,
        chunks). The requirement is counted at the true savings.

    Returns
    -------
    tuple of numpy.ndarray
        ``(candidate, grid point, units)`` of every strategy taken (units > 0).

    Raises
    ------
    RuntimeError
        HiGHS did not prove an optimum.
    """
    n_g = saving.shape[1]
    cand, g = np.nonzero(saving < -TOLERANCE)  # ordered by candidate, so by account
    empty = np.zeros(0, np.int64)
    if cand.size == 0:
        return empty, empty, np.zeros(0)
    held = np.abs(quantity)
    # upper bound of each variable: what its scarcest leg allows
    has = legs[cand] >= 0
    room = np.where(has, held[np.where(has, legs[cand], 0)] / np.where(has, coef[cand], 1.0), np.inf)
    ub = np.floor(room.min(axis=1) + 1e-9)
    ok = ub >= 1
    cand, g, ub = cand[ok], g[ok], ub[ok]
    if cand.size == 0:
        return empty, empty, np.zeros(0)
    acct = block[cand]
    obj = saving[cand, g]
    if tie_break:
        first = np.searchsorted(block, block, side="left")
        count = np.searchsorted(block, block, side="right") - first
        local = np.arange(block.size) - first
        # a fixed pseudo-random number per position in the account's list: no linear relation
        # between candidates' perturbations (an index-linear one leaves swaps of pairs tied)
        jitter = np.random.default_rng(_TIE_SEED).random(int(count.max(initial=0)) + 1)[local]
        nlegs = (legs >= 0).sum(axis=1)
        obj = obj + tie_break * ((3 - nlegs) + jitter)[cand]
    # 1. the linear relaxation, many accounts per call: an account whose relaxed optimum is
    #    integral has its integer optimum (the accounts' programs are independent blocks)
    units = _batches(obj, legs, coef, held, cand, g, ub, n_g, acct, batch_variables, integral=not relaxation_first)
    frac = np.abs(units - np.round(units)) > 1e-6
    if frac.any():
        # 2. the integer program on the accounts (whole) whose relaxation is fractional
        redo = np.isin(acct, np.unique(acct[frac]))
        sel = np.flatnonzero(redo)
        units[sel] = _batches(
            obj[sel], legs, coef, held, cand[sel], g[sel], ub[sel], n_g, acct[sel], batch_variables, integral=True
        )
    units = np.round(units)
    taken = units > 0.5
    return cand[taken], g[taken], units[taken]


def _batches(obj, legs, coef, held, cand, g, ub, n_g, acct, batch_variables, *, integral):
    """The programs of ``cand`` in batches of whole accounts (a run of one account never straddles
    two batches): one HiGHS call per batch."""
    run = np.flatnonzero(np.r_[True, acct[1:] != acct[:-1]])
    run_batch = run // max(int(batch_variables), 1)
    batch_of = np.repeat(run_batch, np.diff(np.r_[run, cand.size]))
    cuts = np.flatnonzero(np.r_[True, batch_of[1:] != batch_of[:-1], True])
    units = np.zeros(cand.size)
    for lo, hi in zip(cuts[:-1], cuts[1:]):  # one HiGHS call per batch of accounts
        units[lo:hi] = _solve_batch(obj[lo:hi], legs, coef, held, cand[lo:hi], g[lo:hi], ub[lo:hi], n_g, integral)
    return units


def _solve_batch(
    obj: np.ndarray,
    legs: np.ndarray,
    coef: np.ndarray,
    held: np.ndarray,
    cand: np.ndarray,
    g: np.ndarray,
    ub: np.ndarray,
    n_g: int,
    integral: bool = True,
) -> np.ndarray:
    """One block-diagonal program (integer, or its linear relaxation): the units of ``(cand, g)``."""
    # scipy is imported when a book first needs a program: a run without strategy-based margin
    # (or without any strategy to pair) does not load it
    import scipy.sparse as sp
    from scipy.optimize import Bounds, LinearConstraint, milp

    n = cand.size
    lg = legs[cand]
    has = lg >= 0
    var = np.broadcast_to(np.arange(n)[:, None], lg.shape)[has]
    row_key = (lg * n_g + g[:, None])[has]  # (position, grid point)
    rows, row = np.unique(row_key, return_inverse=True)
    a = sp.csr_matrix((coef[cand][has], (row, var)), shape=(rows.size, n))
    res = milp(
        c=obj,
        constraints=LinearConstraint(a, -np.inf, held[rows // n_g]),
        integrality=np.full(n, 1 if integral else 0),
        bounds=Bounds(np.zeros(n), ub),
        options={"mip_rel_gap": 0.0, "presolve": True},
    )
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"strategy pairing: HiGHS found no optimum ({res.message})")
    return np.asarray(res.x, dtype=float)
