"""SPAN aggregation over the (account, combined commodity) pairs a book holds.

A book of many small portfolios holds a few combined commodities per account: laid out densely as
(account x combined commodity x scenario) most cells are empty. These kernels work on the pairs
actually held instead, account-major (the pairs of one account are a contiguous slice), and come
in two engines with the same results:

* ``"numpy"``: sparse matrix products and the reference kernels of :mod:`marginsim.kernels.span`,
  one call per combined commodity (per definition, never per position or account);
* ``"numba"``: compiled loops over positions and pairs (one pass each, no sorting, parallel over
  pairs and accounts), with the same arithmetic in the same order as the reference kernels.

Inputs and outputs are plain numpy arrays; units are those of the callers (currency, delta,
contracts). Nothing here knows about xarray.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import span as K
from ._jit import compile_kernel, prange

__all__ = [
    "Pairs",
    "pairs_of",
    "net_positions",
    "exposure_margin",
    "to_dense_many",
    "segment_sum",
    "scan",
    "option_counts",
    "book_pass",
    "IntraTable",
    "intra_table",
    "intra_and_spot",
    "InterTable",
    "inter_table",
    "inter_credit",
    "super_credit",
    "NO_MONTH",
]


# -- layout ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pairs:
    """The (account, combined commodity) pairs held, account-major (combined commodities in
    order inside an account).

    Attributes
    ----------
    account, cc
        Account and combined commodity index of each pair, shape ``(P,)``.
    of_position
        Pair index of each position, shape ``(N,)``.
    account_ptr
        Pairs of account ``a`` are ``account_ptr[a]:account_ptr[a + 1]``, shape ``(A + 1,)``.
    n_accounts, n_cc
        Sizes of the dense (account, combined commodity) layout.
    pair_at
        Pair index of every (account, combined commodity) cell, ``-1`` where not held, shape
        ``(A * C,)`` (int32).
    """

    account: np.ndarray
    cc: np.ndarray
    of_position: np.ndarray
    account_ptr: np.ndarray
    n_accounts: int
    n_cc: int
    pair_at: np.ndarray  # (A * C,) pair index of each (account, CC) cell, -1 where not held

    @property
    def size(self) -> int:
        return int(self.account.size)

    @functools.cached_property
    def dense_index(self) -> np.ndarray:
        """Flat index of each pair in an (account, combined commodity) array."""
        return self.account * self.n_cc + self.cc

    @functools.cached_property
    def of_cc(self) -> tuple[np.ndarray, np.ndarray]:
        """``(order, ptr)``: the pairs of combined commodity ``c`` are ``order[ptr[c]:ptr[c + 1]]``."""
        order = np.argsort(self.cc, kind="stable")
        return order, np.searchsorted(self.cc[order], np.arange(self.n_cc + 1))

    def to_dense(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Pair values ``(P, ...)`` spread into an ``(A, C, ...)`` array (``fill`` where not held)."""
        flat = to_dense_many([(values, fill)], self.dense_index, self.n_accounts * self.n_cc)[0]
        return flat.reshape((self.n_accounts, self.n_cc) + flat.shape[1:])


def to_dense_many(
    items: Sequence[tuple[np.ndarray, float]], index: np.ndarray, n_cells: int
) -> list[np.ndarray]:
    """Pair values spread into dense arrays: ``out[index[p]] = values[p]``, ``fill`` elsewhere.

    Parameters
    ----------
    items
        ``(values, fill)`` per output; ``values`` numeric, shape ``(P, ...)``.
    index
        Cell of each pair in the dense layout (e.g. account x number of columns + column).
    n_cells
        Cells of the dense layout.

    Returns
    -------
    list of numpy.ndarray
        Shapes ``(n_cells,) + values.shape[1:]``. They share one zeroed allocation: a large one,
        which numpy asks the kernel to back with huge pages, so that first-touch page faults (the
        dominant cost of many medium-sized dense results) are about 500 times fewer. Each output
        is a view of its own bytes.
    """
    shapes = [(n_cells,) + v.shape[1:] for v, _ in items]
    sizes = [int(np.prod(sh)) * v.dtype.itemsize for sh, (v, _) in zip(shapes, items)]
    sizes = [-(-n // 64) * 64 for n in sizes]  # keep every view 64-byte aligned
    buf = np.zeros(sum(sizes), dtype=np.uint8)
    out, start = [], 0
    for (values, fill), shape, n in zip(items, shapes, sizes):
        flat = buf[start : start + n].view(values.dtype)[: int(np.prod(shape))]
        if fill != 0:
            flat.fill(fill)
        view = flat.reshape(shape)
        view[index] = values
        out.append(view)
        start += n
    return out


def pairs_of(position_account: np.ndarray, position_cc: np.ndarray, n_accounts: int, n_cc: int) -> Pairs:
    """The pairs held by positions (no sorting: one pass over a dense mark of the pair space)."""
    key = np.asarray(position_account, dtype=np.int64) * n_cc + position_cc
    mark = np.zeros(n_accounts * n_cc, dtype=bool)
    mark[key] = True
    pair_key = np.flatnonzero(mark)
    pair_at = np.full(n_accounts * n_cc, -1, dtype=np.int32)
    pair_at[pair_key] = np.arange(pair_key.size, dtype=np.int32)
    account = pair_key // n_cc
    return Pairs(
        account=account,
        cc=pair_key - account * n_cc,
        of_position=pair_at[key].astype(np.int64),
        account_ptr=np.searchsorted(account, np.arange(n_accounts + 1)),
        n_accounts=n_accounts,
        n_cc=n_cc,
        pair_at=pair_at,
    )


# -- numba kernels (module-level Python functions, compiled on first use, cached on disk) -----------

_CHUNKS = 64  # blocks of pairs / accounts a kernel hands to its threads (scratch arrays once per block)


def _scatter(rows, src, weight, table, out):  # pragma: no cover - compiled
    n_t = table.shape[1]
    for i in range(rows.size):
        r = rows[i]
        s = src[i]
        w = weight[i]
        for t in range(n_t):
            out[r, t] += w * table[s, t]


def _scan_block(losses, q, pair, time_idx, risk, active, prisk, p):  # pragma: no cover - compiled
    # scanning risk, active scenario and price risk of pair p from its losses losses[q] (G, S)
    n_g, n_s = losses.shape[1], losses.shape[2]
    for g in range(n_g):
        best = 0
        top = losses[q, g, 0]
        for s in range(1, n_s):
            if losses[q, g, s] > top:
                top = losses[q, g, s]
                best = s
        risk[p, g] = max(top, 0.0)
        active[p, g] = best
        t = 0.0
        for i in range(time_idx.size):
            t += losses[q, g, time_idx[i]]
        t /= time_idx.size
        prisk[p, g] = max((top + losses[q, g, pair[best]]) / 2.0 - t, 0.0)


def _by_account(account, n_accounts):  # pragma: no cover - compiled
    # (ptr, order): the positions of account a are order[ptr[a]:ptr[a + 1]], in book order (as
    # they come when the book is grouped by account, else a stable counting sort)
    n = account.size
    ptr = np.zeros(n_accounts + 1, dtype=np.int64)
    grouped = True
    for i in range(n):
        ptr[account[i] + 1] += 1
        if i and account[i] < account[i - 1]:
            grouped = False
    for a in range(n_accounts):
        ptr[a + 1] += ptr[a]
    order = np.arange(n)
    if not grouped:
        fill = ptr[:-1].copy()
        for i in range(n):
            order[fill[account[i]]] = i
            fill[account[i]] += 1
    return ptr, order


def _net_add(k, p, w, slot, net, pair_of, seen, m):  # pragma: no cover - compiled
    # net the position (contract k, pair p, quantity w) of the current account into its contract;
    # returns the number of contracts seen in the account so far (m: 0 at the account's start).
    # The contracts seen form a sparse set: k is in it when slot[k] < m and seen[slot[k]] == k,
    # so slot, net and pair_of need no initialisation (np.empty: no pass over every contract per
    # block of accounts)
    j = slot[k]
    if j < 0 or j >= m or seen[j] != k:
        slot[k] = m
        net[k] = 0.0
        pair_of[k] = p
        seen[m] = k
        m += 1
    net[k] += w
    return m


def _net_flush(m, seen, net, pair_of, kind, out):  # pragma: no cover - compiled
    # the account's net option positions into short calls, short puts, long calls, long puts
    for j in range(m):
        k = seen[j]
        v = net[k]
        col = 0 if kind[k] == 1 else 1
        if v < 0.0:
            out[pair_of[k], col] += -v
        elif v > 0.0:
            out[pair_of[k], col + 2] += v


def _scan(loss, pair, time_idx, risk, active, prisk):  # pragma: no cover - compiled
    for p in prange(loss.shape[0]):
        _scan_block(loss, p, pair, time_idx, risk, active, prisk, p)


def _counts(account, pair, contract, qty, kind, n_accounts, n_contracts, out):  # pragma: no cover
    # positions by account, netted per contract inside the account (a contract belongs to one
    # pair there)
    ptr, order = _by_account(account, n_accounts)
    slot = np.empty(n_contracts, dtype=np.int64)
    net = np.empty(n_contracts)
    pair_of = np.empty(n_contracts, dtype=np.int64)
    seen = np.empty(n_contracts, dtype=np.int64)
    for a in range(n_accounts):
        m = 0
        for j in range(ptr[a], ptr[a + 1]):
            i = order[j]
            k = contract[i]
            if kind[k] != 0:
                m = _net_add(k, pair[i], qty[i], slot, net, pair_of, seen, m)
        _net_flush(m, seen, net, pair_of, kind, out)


def _book_pass(
    account,
    pair,
    contract,
    qty,
    account_ptr,
    n_accounts,
    risk_array,
    scenario_pair,
    time_idx,
    row0,
    month_idx,
    delta,
    kind,
    keep_loss,
    loss,
    risk,
    active,
    prisk,
    ledger,
    counts,
):  # pragma: no cover - compiled
    # one pass over each account's positions: losses per pair and scenario (in a scratch block, or
    # into ``loss`` when kept), then their scan; deltas by month into the ledger; option counts
    # netted per contract. Every sum adds in book order, as _scatter and _counts do.
    n_k, n_g, n_s = risk_array.shape
    ptr, order = _by_account(account, n_accounts)
    max_pairs = 1
    for a in range(n_accounts):
        max_pairs = max(max_pairs, account_ptr[a + 1] - account_ptr[a])
    n_chunks = min(n_accounts, _CHUNKS)
    for chunk in prange(n_chunks):
        block = np.zeros((max_pairs, n_g, n_s))
        slot = np.empty(n_k, dtype=np.int64)
        net = np.empty(n_k)
        pair_of = np.empty(n_k, dtype=np.int64)
        seen = np.empty(n_k, dtype=np.int64)
        for a in range(chunk * n_accounts // n_chunks, (chunk + 1) * n_accounts // n_chunks):
            p0 = account_ptr[a]
            n_pa = account_ptr[a + 1] - p0
            buf = loss if keep_loss else block  # this account's losses: buf[off:off + n_pa]
            off = p0 if keep_loss else 0
            if not keep_loss:
                buf[:n_pa] = 0.0
            m = 0
            for j in range(ptr[a], ptr[a + 1]):
                i = order[j]
                k = contract[i]
                p = pair[i]
                w = qty[i]
                row = p - p0 + off
                for g in range(n_g):
                    for s in range(n_s):
                        buf[row, g, s] += w * risk_array[k, g, s]
                r = row0[p] + month_idx[k]
                for g in range(n_g):
                    ledger[r, g] += w * delta[k, g]
                if kind[k] != 0:
                    m = _net_add(k, p, w, slot, net, pair_of, seen, m)
            _net_flush(m, seen, net, pair_of, kind, counts)
            for q in range(n_pa):
                _scan_block(buf, off + q, scenario_pair, time_idx, risk, active, prisk, p0 + q)


def _intra(
    ledger,
    row0,
    pair_cc,
    sp_ptr,
    sp_rate,
    leg_ptr,
    leg_mask,
    leg_sign,
    leg_ratio,
    spot_on,
    spot_mask,
    spot_rs,
    spot_ro,
    charge,
    spot,
    rem_net,
):  # pragma: no cover - compiled
    # ledger rows row0[p]:row0[p + 1] are the months of pair p; scratch once per chunk of pairs
    n_p = pair_cc.size
    n_g = ledger.shape[1]
    n_m = leg_mask.shape[1] if leg_mask.shape[0] else 1
    for p in range(n_p):
        n_m = max(n_m, row0[p + 1] - row0[p])
    max_legs = 1
    for s in range(sp_rate.size):
        max_legs = max(max_legs, leg_ptr[s + 1] - leg_ptr[s])
    n_chunks = min(n_p, _CHUNKS)
    for chunk in prange(n_chunks):
        rem = np.empty(n_m)
        cons = np.empty(n_m)
        part = np.empty((max_legs, n_m))
        avail = np.empty(max_legs)
        for p in range(chunk * n_p // n_chunks, (chunk + 1) * n_p // n_chunks):
            c = pair_cc[p]
            r0 = row0[p]
            months = row0[p + 1] - r0
            for g in range(n_g):
                for m in range(months):
                    rem[m] = ledger[r0 + m, g]
                    cons[m] = 0.0
                ch = 0.0
                for s in range(sp_ptr[c], sp_ptr[c + 1]):
                    l0 = leg_ptr[s]
                    nl = leg_ptr[s + 1] - l0
                    for direction in (1.0, -1.0):
                        n = np.inf
                        for j in range(nl):
                            sign = leg_sign[l0 + j] * direction
                            a = 0.0
                            for m in range(months):
                                v = 0.0
                                if leg_mask[l0 + j, m]:
                                    v = max(sign * rem[m], 0.0)
                                    a += v
                                part[j, m] = v
                            avail[j] = a
                            n = min(n, a / leg_ratio[l0 + j])
                        if not np.isfinite(n):
                            n = 0.0
                        if n == 0.0:
                            continue
                        for j in range(nl):
                            sign = leg_sign[l0 + j] * direction
                            frac = 0.0
                            if avail[j] > 0.0:
                                frac = min(n * leg_ratio[l0 + j] / avail[j], 1.0)
                            for m in range(months):
                                if leg_mask[l0 + j, m]:
                                    take = part[j, m] * frac
                                    rem[m] -= sign * take
                                    cons[m] += take
                        ch += n * sp_rate[s]
                charge[p, g] = ch
                if spot_on[c]:
                    used = 0.0
                    left = 0.0
                    for m in range(months):
                        if spot_mask[c, m]:
                            used += spot_rs[c, m] * cons[m]
                            left += spot_ro[c, m] * abs(rem[m])
                    spot[p, g] = used + left
                total = 0.0
                for m in range(months):
                    total += rem[m]
                rem_net[p, g] = total


def _inter(
    net_left,
    wfpr,
    account_ptr,
    pair_cc,
    pair_at,
    leg_ptr,
    leg_cc,
    leg_sign,
    leg_ratio,
    leg_rate,
    leg_flat,
    spread_ccs,
    credit,
):  # pragma: no cover - compiled
    # per account, every spread in priority order whose legs are all on CCs it holds (bit sets of
    # CCs: the account's against each spread's), drawing the deltas left down as spreads form
    n_g = net_left.shape[1]
    n_accounts = account_ptr.size - 1
    n_cc = pair_at.size // max(n_accounts, 1)
    n_words = spread_ccs.shape[1]
    n_spreads = leg_ptr.size - 1
    max_legs = 1
    for s in range(n_spreads):
        max_legs = max(max_legs, leg_ptr[s + 1] - leg_ptr[s])
    rem = net_left.copy()
    n_chunks = min(n_accounts, _CHUNKS)
    for chunk in prange(n_chunks):
        legs = np.empty(max_legs, dtype=np.int64)
        held = np.empty(n_words, dtype=np.uint64)
        for a in range(chunk * n_accounts // n_chunks, (chunk + 1) * n_accounts // n_chunks):
            for w in range(n_words):
                held[w] = 0
            for p in range(account_ptr[a], account_ptr[a + 1]):
                c = pair_cc[p]
                held[c // 64] |= np.uint64(1) << np.uint64(c % 64)
            row = a * n_cc
            for s in range(n_spreads):
                every = True
                for w in range(n_words):
                    if spread_ccs[s, w] & ~held[w]:
                        every = False
                        break
                if not every:
                    continue
                l0 = leg_ptr[s]
                nl = leg_ptr[s + 1] - l0
                for j in range(nl):
                    legs[j] = pair_at[row + leg_cc[l0 + j]]
                for g in range(n_g):
                    _form_spread(rem, credit, wfpr, legs, l0, nl, leg_sign, leg_ratio, leg_rate, leg_flat, g)


def _form_spread(
    rem, credit, wfpr, rows, l0, nl, leg_sign, leg_ratio, leg_rate, leg_flat, g
):  # pragma: no cover - compiled (inlined)
    # one inter-commodity spread at grid point g on the legs' rows ``rows[:nl]`` of rem / credit /
    # wfpr (its legs l0 .. l0 + nl - 1 of the definitions): as many spreads as the scarcest leg
    # allows, A legs long and B legs short, then the other way round; each leg's credit grows by
    # spreads x ratio x WFPR x rate + spreads x flat, its remaining delta shrinks (the cascade of
    # _inter, of span_whatif's base snapshots and of its per-trade and leave-one-out passes)
    for direction in (1.0, -1.0):
        n = np.inf
        for j in range(nl):
            v = max(leg_sign[l0 + j] * direction * rem[rows[j], g], 0.0)
            n = min(n, v / leg_ratio[l0 + j])
            if n == 0.0:
                break
        if n == 0.0 or not np.isfinite(n):
            continue
        for j in range(nl):
            p = rows[j]
            credit[p, g] += n * leg_ratio[l0 + j] * wfpr[p, g] * leg_rate[l0 + j] + n * leg_flat[l0 + j]
            rem[p, g] -= leg_sign[l0 + j] * direction * n * leg_ratio[l0 + j]


_PARALLEL = {
    "_intra",
    "_inter",
    "_scan",
    "_book_pass",
}  # kernels with a parallel variant (prange over pairs/accounts)
#: Work items (pairs or accounts x grid points) from which the parallel variant of a kernel runs.
#: Below it the threads' start-up and their spin-wait after the region cost more than they save
#: (measured on 2 cores: a 10,000-portfolio book of ~90,000 pairs is faster serial).
PARALLEL_MIN_ITEMS = 1_000_000
_COMPILED: dict = {}


def _kernel(name: str, items: int = 0):
    """The compiled kernel ``name`` (numba, ``cache=True``), built on first use; its parallel
    variant when it has one and ``items`` >= :data:`PARALLEL_MIN_ITEMS`."""
    parallel = name in _PARALLEL and items >= PARALLEL_MIN_ITEMS
    key = (name, parallel)
    if key not in _COMPILED:
        # distinct names: the on-disk cache keeps the two variants apart
        _COMPILED[key] = compile_kernel(
            globals()[name], helpers=_helpers(), suffix="_parallel" if parallel else "", parallel=parallel
        )
    return _COMPILED[key]


@functools.cache
def _helpers() -> dict:
    """The compiled helpers the kernels call (inlined into them)."""
    return {
        name: compile_kernel(globals()[name], inline="always")
        for name in ("_scan_block", "_by_account", "_net_add", "_net_flush", "_form_spread")
    }


# -- sums over positions ---------------------------------------------------------------------------


def segment_sum(
    rows: np.ndarray, src: np.ndarray, weight: np.ndarray, table: np.ndarray, n_rows: int, engine: str
) -> np.ndarray:
    """``out[rows[i]] += weight[i] * table[src[i]]`` for every position ``i``.

    Parameters
    ----------
    rows, src, weight
        Target row, source row of ``table`` and weight (e.g. quantity [contracts]) per position.
    table
        Values per source row, shape ``(K, ...)`` (e.g. risk arrays per contract).
    n_rows
        Number of target rows.
    engine
        ``"numba"`` or ``"numpy"``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_rows,) + table.shape[1:]``.
    """
    table = np.asarray(table, dtype=float)
    flat = table.reshape(table.shape[0], int(np.prod(table.shape[1:])))
    if engine == "numba":
        out = np.zeros((n_rows, flat.shape[1]))
        _kernel("_scatter")(
            np.ascontiguousarray(rows, dtype=np.int64),
            np.ascontiguousarray(src, dtype=np.int64),
            np.ascontiguousarray(weight, dtype=float),
            np.ascontiguousarray(flat),
            out,
        )
    else:  # the same products added in the same (book) order as the compiled loop: the same bits
        out = np.zeros((n_rows, flat.shape[1]))
        src = np.asarray(src, dtype=np.int64)
        np.add.at(out, np.asarray(rows, dtype=np.int64), np.asarray(weight, dtype=float)[:, None] * flat[src])
    return out.reshape((n_rows,) + table.shape[1:])


def scan(
    loss: np.ndarray, pair: np.ndarray, time_scenarios: np.ndarray, engine: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scanning risk, active scenario and price risk of each pair, in one pass.

    Parameters
    ----------
    loss
        Loss per pair, grid point and scenario, shape ``(P, G, S)`` [currency, losses positive].
    pair
        0-based index of each scenario's pair, shape ``(S,)``.
    time_scenarios
        0-based indices of the scenarios whose mean loss is the time risk.
    engine
        ``"numba"`` or ``"numpy"`` (:func:`marginsim.kernels.span.scanning_risk` and
        :func:`~marginsim.kernels.span.price_risk`).

    Returns
    -------
    risk, active, price_risk
        ``(P, G)`` each: scanning risk [currency] (largest loss floored at 0), 0-based active
        scenario (the first on ties), price risk [currency].
    """
    if engine == "numba":
        shape = loss.shape[:2]
        risk, active, prisk = np.empty(shape), np.empty(shape, dtype=np.int64), np.empty(shape)
        _kernel("_scan", loss.shape[0] * loss.shape[1])(
            np.ascontiguousarray(loss, dtype=float),
            np.ascontiguousarray(pair, dtype=np.int64),
            np.ascontiguousarray(time_scenarios, dtype=np.int64),
            risk,
            active,
            prisk,
        )
        return risk, active, prisk
    risk, active = K.scanning_risk(loss)
    return risk, active, K.price_risk(loss, active, pair, time_scenarios)


def _kind(is_call: np.ndarray, is_put: np.ndarray) -> np.ndarray:
    """Option kind per contract for the kernels: 1 call, 2 put, 0 neither."""
    return np.where(is_call, 1, np.where(is_put, 2, 0)).astype(np.int64)


def net_positions(
    row: np.ndarray, contract: np.ndarray, qty: np.ndarray, n_k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One net quantity per (row, contract) held: SPAN margins an account's (a pair's, a trade's)
    net quantity of each contract.

    Parameters
    ----------
    row, contract, qty
        Per position: row (account, pair or trade index), contract index (below ``n_k``) and
        signed quantity [contracts].
    n_k
        Number of contracts.

    Returns
    -------
    row, contract, net, inverse
        Per (row, contract) held, in (row, contract) order: its row, contract and net quantity
        (the positions added in the order given, from 0; a net of zero kept); and the index of
        each position's (row, contract).
    """
    key = np.asarray(row, dtype=np.int64) * n_k + np.asarray(contract, dtype=np.int64)
    held, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    net = np.bincount(inverse, weights=np.asarray(qty, dtype=float), minlength=held.size)
    return held // n_k, held % n_k, net, inverse


def exposure_margin(
    row: np.ndarray, contract: np.ndarray, qty: np.ndarray, rates: np.ndarray, n_rows: int
) -> np.ndarray:
    """Exposure margin per row ``(n_rows,)``: |net| x the long (column 0) or short (column 1) rate
    of ``rates`` ``(K, 2)`` [currency per contract] of each (row, contract) net position
    (:func:`net_positions`), summed in contract order."""
    r, k, net, _ = net_positions(row, contract, qty, rates.shape[0])
    per_contract = np.abs(net) * rates[k, (net < 0).astype(np.int64)]
    return np.bincount(r, weights=per_contract, minlength=n_rows)


def option_counts(
    account: np.ndarray,
    n_accounts: int,
    pair: np.ndarray,
    contract: np.ndarray,
    qty: np.ndarray,
    is_call: np.ndarray,
    is_put: np.ndarray,
    n_pairs: int,
    engine: str,
) -> np.ndarray:
    """Short calls, short puts, long calls, long puts per pair [contracts], shape ``(P, 4)``.

    Positions in the same contract inside an account are netted first (a long and a short of
    one series are not a short option). ``account`` / ``n_accounts``: account of each position
    and their number; ``pair``: pair of each position.
    """
    n_k = is_call.size
    if engine == "numba":
        kind = _kind(is_call, is_put)
        out = np.zeros((n_pairs, 4))
        _kernel("_counts")(
            np.ascontiguousarray(account, dtype=np.int64),
            np.ascontiguousarray(pair, dtype=np.int64),
            np.ascontiguousarray(contract, dtype=np.int64),
            np.ascontiguousarray(qty, dtype=float),
            kind,
            n_accounts,
            n_k,
            out,
        )
        return out
    pair_of, k_of, net, _ = net_positions(pair, contract, qty, n_k)  # per (pair, contract)
    cols = [
        np.bincount(pair_of, weights=np.maximum(-net if short else net, 0.0) * mask[k_of], minlength=n_pairs)
        for mask, short in ((is_call, True), (is_put, True), (is_call, False), (is_put, False))
    ]
    return np.stack(cols, axis=1)


# -- one pass over the positions ---------------------------------------------------------------------


def book_pass(
    pairs: Pairs,
    position_account: np.ndarray,
    contract: np.ndarray,
    qty: np.ndarray,
    risk_array: np.ndarray,
    scenario_pair: np.ndarray,
    time_scenarios: np.ndarray,
    row0: np.ndarray,
    month_idx: np.ndarray,
    delta: np.ndarray,
    is_call: np.ndarray,
    is_put: np.ndarray,
    engine: str,
    *,
    keep_loss: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Everything SPAN takes from the positions, in one pass: :func:`segment_sum` of the risk
    arrays and its :func:`scan`, the delta ledger, and :func:`option_counts`.

    Parameters
    ----------
    pairs
        The pair layout (:func:`pairs_of`).
    position_account, contract, qty
        Account, contract (row of the tables) and signed quantity [contracts] of each position.
    risk_array
        Loss per long contract, shape ``(K, G, S)`` [currency, losses positive].
    scenario_pair, time_scenarios
        As for :func:`scan`.
    row0, month_idx
        Ledger rows of pair ``p`` are ``row0[p]:row0[p + 1]``; a contract's row among them.
    delta
        Composite delta per contract, shape ``(K, G)`` [delta per contract].
    is_call, is_put
        Per contract.
    engine
        ``"numba"`` (one compiled pass, by account) or ``"numpy"`` (the separate functions).
    keep_loss
        Return the losses per pair ``(P, G, S)``; without them the numba pass holds one account's
        losses at a time (no array of size pairs x scenarios).

    Returns
    -------
    loss, risk, active, price_risk, ledger, counts
        ``loss`` (``None`` unless kept), scanning risk, 0-based active scenario and price risk
        ``(P, G)``, net delta per ledger row ``(R, G)`` [delta], short calls, short puts, long
        calls, long puts per pair ``(P, 4)`` [contracts].
    """
    n_p, n_g, n_s = pairs.size, risk_array.shape[1], risk_array.shape[2]
    n_rows = int(row0[-1])
    if engine != "numba":
        loss = segment_sum(pairs.of_position, contract, qty, risk_array, n_p, engine)
        risk, active, prisk = scan(loss, scenario_pair, time_scenarios, engine)
        ledger = segment_sum(
            row0[pairs.of_position] + month_idx[contract], contract, qty, delta, n_rows, engine
        )
        counts = option_counts(
            position_account, pairs.n_accounts, pairs.of_position, contract, qty, is_call, is_put, n_p, engine
        )
        return (loss if keep_loss else None), risk, active, prisk, ledger, counts
    loss = np.zeros((n_p, n_g, n_s)) if keep_loss else np.zeros((0, n_g, n_s))
    risk, active, prisk = np.empty((n_p, n_g)), np.empty((n_p, n_g), dtype=np.int64), np.empty((n_p, n_g))
    ledger = np.zeros((n_rows, n_g))
    counts = np.zeros((n_p, 4))
    _kernel("_book_pass", contract.size * n_g * n_s)(
        np.ascontiguousarray(position_account, dtype=np.int64),
        np.ascontiguousarray(pairs.of_position, dtype=np.int64),
        np.ascontiguousarray(contract, dtype=np.int64),
        np.ascontiguousarray(qty, dtype=float),
        pairs.account_ptr,
        pairs.n_accounts,
        np.ascontiguousarray(risk_array, dtype=float),
        np.ascontiguousarray(scenario_pair, dtype=np.int64),
        np.ascontiguousarray(time_scenarios, dtype=np.int64),
        np.ascontiguousarray(row0, dtype=np.int64),
        np.ascontiguousarray(month_idx, dtype=np.int64),
        np.ascontiguousarray(delta, dtype=float),
        _kind(is_call, is_put),
        keep_loss,
        loss,
        risk,
        active,
        prisk,
        ledger,
        counts,
    )
    return (loss if keep_loss else None), risk, active, prisk, ledger, counts


# -- intra-commodity spreads and spot charge ---------------------------------------------------------


@dataclass(frozen=True)
class IntraTable:
    """Intra spread and spot definitions of every combined commodity, as flat arrays.

    Spreads of combined commodity ``c`` are ``sp_ptr[c]:sp_ptr[c + 1]`` in priority order; legs of
    spread ``s`` are ``leg_ptr[s]:leg_ptr[s + 1]`` with a month mask (over the CC's padded month
    axis), a side sign (+1 for A, -1 for B) and a ratio [delta per spread]. Spot months per CC
    (mask over the padded month axis) with the spread / outright rate of each month [currency per
    delta], shape ``(C, M)``.
    """

    sp_ptr: np.ndarray
    sp_rate: np.ndarray
    leg_ptr: np.ndarray
    leg_mask: np.ndarray
    leg_sign: np.ndarray
    leg_ratio: np.ndarray
    spot_on: np.ndarray
    spot_mask: np.ndarray
    spot_rate_spread: np.ndarray
    spot_rate_outright: np.ndarray

    def spreads(self, c: int, months: int | None = None) -> list[K.Spread]:
        """The spreads of combined commodity ``c`` for the reference kernel (month masks cut to
        the first ``months`` months, default all)."""
        out = []
        for s in range(self.sp_ptr[c], self.sp_ptr[c + 1]):
            legs = [
                K.SpreadLeg(
                    self.leg_mask[j, :months], "A" if self.leg_sign[j] > 0 else "B", float(self.leg_ratio[j])
                )
                for j in range(self.leg_ptr[s], self.leg_ptr[s + 1])
            ]
            out.append(K.Spread(float(self.sp_rate[s]), legs))
        return out

    def active(self, c: int) -> bool:
        """Whether combined commodity ``c`` has spreads or a spot charge."""
        return bool(self.sp_ptr[c + 1] > self.sp_ptr[c] or self.spot_on[c])


def intra_table(
    spreads: Sequence[Sequence[K.Spread]],
    spot: Sequence[tuple[np.ndarray, np.ndarray | float, np.ndarray | float] | None],
    n_months: int,
) -> IntraTable:
    """Flatten per-CC spreads (legs' ``index`` = month masks of length ``n_months``) and spot
    definitions (month mask, rate on spread deltas, rate on outright deltas [currency per delta],
    each rate one number or one per month; ``None`` for none)."""
    sp_ptr = np.zeros(len(spreads) + 1, dtype=np.int64)
    rates, leg_ptr, masks, signs, ratios = [], [0], [], [], []
    for c, cc_spreads in enumerate(spreads):
        sp_ptr[c + 1] = sp_ptr[c] + len(cc_spreads)
        for sp in cc_spreads:
            rates.append(sp.rate)
            for leg in sp.legs:
                masks.append(np.asarray(leg.index, dtype=bool))
                signs.append(1.0 if leg.side == "A" else -1.0)
                ratios.append(leg.ratio)
            leg_ptr.append(len(masks))
    n_c = len(spreads)
    spot_on = np.array([s is not None for s in spot], dtype=bool)
    spot_mask = np.zeros((n_c, n_months), dtype=bool)
    rs = np.zeros((n_c, n_months))
    ro = np.zeros((n_c, n_months))
    for c, s in enumerate(spot):
        if s is not None:
            spot_mask[c], rs[c], ro[c] = s
    return IntraTable(
        sp_ptr=sp_ptr,
        sp_rate=np.array(rates, dtype=float),
        leg_ptr=np.array(leg_ptr, dtype=np.int64),
        leg_mask=np.array(masks, dtype=bool).reshape(len(masks), n_months),
        leg_sign=np.array(signs, dtype=float),
        leg_ratio=np.array(ratios, dtype=float),
        spot_on=spot_on,
        spot_mask=spot_mask,
        spot_rate_spread=rs,
        spot_rate_outright=ro,
    )


def intra_and_spot(
    ledger: np.ndarray, row0: np.ndarray, pairs: Pairs, table: IntraTable, engine: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intra spread charge, spot charge and the net delta left, per pair.

    Parameters
    ----------
    ledger
        Net delta per (pair, month) row and grid point, shape ``(R, G)`` [delta]: the months of
        pair ``p`` are rows ``row0[p]:row0[p + 1]``, in the order of its CC's month axis (every
        pair of a combined commodity has the same number of rows).
    row0
        Row offsets, shape ``(P + 1,)``.
    pairs
        The pair layout.
    table
        Definitions (:func:`intra_table`).
    engine
        ``"numba"`` or ``"numpy"`` (the reference kernels, one call per combined commodity).

    Returns
    -------
    charge, spot, net_left
        ``(P, G)`` each: intra spread charge [currency], spot charge [currency], net delta left
        after the spreads [delta].
    """
    n_p = pairs.size
    n_g = ledger.shape[1]
    charge = np.zeros((n_p, n_g))
    spot = np.zeros((n_p, n_g))
    net_left = np.zeros((n_p, n_g))
    if engine == "numba":
        _kernel("_intra", n_p * n_g)(
            np.ascontiguousarray(ledger),
            row0,
            pairs.cc,
            table.sp_ptr,
            table.sp_rate,
            table.leg_ptr,
            table.leg_mask,
            table.leg_sign,
            table.leg_ratio,
            table.spot_on,
            table.spot_mask,
            table.spot_rate_spread,
            table.spot_rate_outright,
            charge,
            spot,
            net_left,
        )
        return charge, spot, net_left
    order, ptr = pairs.of_cc
    for c in range(pairs.n_cc):
        sel = order[ptr[c] : ptr[c + 1]]  # the pairs of this combined commodity
        if not sel.size:
            continue
        months = int(row0[sel[0] + 1] - row0[sel[0]])
        rows = (row0[sel][:, None] + np.arange(months)).ravel()
        block = np.moveaxis(ledger[rows].reshape(sel.size, months, n_g), 1, 0)  # (M, P_c, G)
        if not table.active(c):
            net_left[sel] = _sequential_sum(block)
            continue
        ch, rem, used = K.intra_commodity_spreads(block, table.spreads(c, months))
        charge[sel] = ch
        net_left[sel] = _sequential_sum(rem)
        if table.spot_on[c]:
            spot[sel] = K.spot_month_charge(
                rem,
                used,
                table.spot_mask[c, :months],
                table.spot_rate_spread[c, :months],
                table.spot_rate_outright[c, :months],
            )
    return charge, spot, net_left


def _sequential_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the first axis, adding in order (as the compiled kernels do)."""
    out = np.zeros(a.shape[1:])
    for row in a:  # months of one combined commodity: a loop over a definition's axis
        out += row
    return out


# -- inter-commodity credit -------------------------------------------------------------------------


@dataclass(frozen=True)
class InterTable:
    """Inter spreads in priority order as flat arrays: legs of spread ``s`` are
    ``leg_ptr[s]:leg_ptr[s + 1]`` with a combined commodity index, a side sign, a ratio [delta per
    spread], a credit rate [fraction of the weighted futures price risk] and a flat credit
    [currency per spread]: each spread formed credits a leg's CC ``ratio x WFPR x rate + flat``.

    ``leg_month`` (super spreads only; None: every leg on all the months of its CC) is a period
    leg's month (SPAN ``pLeg``) as an index on its CC's month axis, -1 for a leg on all the months,
    :data:`NO_MONTH` for a month its CC does not have (the leg draws nothing)."""

    leg_ptr: np.ndarray
    leg_cc: np.ndarray
    leg_sign: np.ndarray
    leg_ratio: np.ndarray
    leg_rate: np.ndarray
    leg_flat: np.ndarray
    leg_month: np.ndarray | None = None

    @property
    def n_spreads(self) -> int:
        """Number of spreads."""
        return int(self.leg_ptr.size - 1)

    def cc_sets(self, n_cc: int) -> np.ndarray:
        """The combined commodities of each spread as bit sets: ``(n_spreads, ceil(n_cc / 64))``
        uint64 words, bit ``c % 64`` of word ``c // 64`` set for each leg's CC ``c``."""
        out = np.zeros((self.n_spreads, max(-(-n_cc // 64), 1)), dtype=np.uint64)
        spread_of_leg = np.repeat(np.arange(self.n_spreads), np.diff(self.leg_ptr))
        np.bitwise_or.at(
            out,
            (spread_of_leg, self.leg_cc // 64),
            np.left_shift(np.uint64(1), (self.leg_cc % 64).astype(np.uint64)),
        )
        return out

    def spreads(self) -> list[K.Spread]:
        """The spreads for the reference kernel."""
        return [
            K.Spread(
                0.0,
                [
                    K.SpreadLeg(
                        int(self.leg_cc[j]),
                        "A" if self.leg_sign[j] > 0 else "B",
                        float(self.leg_ratio[j]),
                        float(self.leg_rate[j]),
                        float(self.leg_flat[j]),
                    )
                    for j in range(self.leg_ptr[s], self.leg_ptr[s + 1])
                ],
            )
            for s in range(self.n_spreads)
        ]


def inter_table(spreads: Sequence[K.Spread]) -> InterTable:
    """Flatten inter spreads (legs' ``index`` = combined commodity index). A leg's credit rate is its
    own (``SpreadLeg.rate``) if given, else the spread's; its flat credit is ``SpreadLeg.flat``."""
    legs = [(leg, sp.rate) for sp in spreads for leg in sp.legs]
    return InterTable(
        leg_ptr=np.concatenate([[0], np.cumsum([len(sp.legs) for sp in spreads])]).astype(np.int64),
        leg_cc=np.array([int(leg.index) for leg, _ in legs], dtype=np.int64),
        leg_sign=np.array([1.0 if leg.side == "A" else -1.0 for leg, _ in legs]),
        leg_ratio=np.array([leg.ratio for leg, _ in legs], dtype=float),
        leg_rate=np.array([rate if leg.rate is None else leg.rate for leg, rate in legs], dtype=float),
        leg_flat=np.array([leg.flat for leg, _ in legs], dtype=float),
    )


def inter_credit(
    net_delta: np.ndarray, wfpr: np.ndarray, pairs: Pairs, table: InterTable, engine: str
) -> np.ndarray:
    """Inter-commodity credit per pair [currency], shape ``(P, G)``.

    Parameters
    ----------
    net_delta, wfpr
        Net delta left after intra spreads [delta] and weighted futures price risk [currency per
        delta] per pair and grid point, shape ``(P, G)``.
    pairs
        The pair layout.
    table
        Definitions (:func:`inter_table`), in priority order.
    engine
        ``"numba"`` (one pass per account over its pairs) or ``"numpy"``
        (:func:`marginsim.kernels.span.inter_commodity_credit` on an (account, grid, CC) array).
    """
    n_g = net_delta.shape[1]
    if not table.n_spreads:
        return np.zeros((pairs.size, n_g))
    if engine == "numba":
        credit = np.zeros((pairs.size, n_g))
        _kernel("_inter", pairs.n_accounts * n_g)(
            np.ascontiguousarray(net_delta, dtype=float),
            np.ascontiguousarray(wfpr, dtype=float),
            pairs.account_ptr,
            pairs.cc,
            pairs.pair_at,
            table.leg_ptr,
            table.leg_cc,
            table.leg_sign,
            table.leg_ratio,
            table.leg_rate,
            table.leg_flat,
            table.cc_sets(pairs.n_cc),
            credit,
        )
        return credit
    shape = (pairs.n_accounts, n_g, pairs.n_cc)
    dense_delta = np.zeros(shape)
    dense_delta[pairs.account, :, pairs.cc] = net_delta
    dense_wfpr = np.zeros(shape)
    dense_wfpr[pairs.account, :, pairs.cc] = wfpr
    credit, _ = K.inter_commodity_credit(dense_delta, dense_wfpr, table.spreads())
    return credit[pairs.account, :, pairs.cc]


# -- super inter-commodity spreads (before the intra-commodity spreads) ------------------------------

#: :attr:`InterTable.leg_month` of a period leg whose month is not on its CC's month axis.
NO_MONTH = -2


def super_credit(
    ledger: np.ndarray, row0: np.ndarray, pairs: Pairs, table: InterTable, wfpr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Super inter-commodity spread credit, formed on the month ledger before the intra spreads.

    Spreads are taken in order, each with its A legs long and B legs short, then the other way
    round, for every account holding all of its combined commodities at once (arrays over the
    accounts: the loops are over definitions). A leg draws from the months of its CC on the needed
    side, pro rata to their remaining delta, as intra legs do (a period leg, ``table.leg_month``, from
    its one month); the deltas used are consumed, so the intra spreads and the inter spreads after them see what is left. Each spread formed credits a
    leg's CC ``ratio x WFPR x rate + flat`` (as :func:`inter_credit`). One implementation for both
    engines.

    Parameters
    ----------
    ledger
        Net delta per (pair, month) row, shape ``(R, G)`` [delta]; rows of pair ``p`` are
        ``row0[p]:row0[p + 1]`` (at least one per pair).
    row0
        Row offsets, shape ``(P + 1,)``.
    pairs
        The pair layout.
    table
        The super spreads (:func:`inter_table`), in priority order.
    wfpr
        Weighted futures price risk per pair, shape ``(P, G)`` [currency per delta].

    Returns
    -------
    credit, ledger
        Credit per pair [currency], shape ``(P, G)``; the ledger left (a new array).
    """
    n_p, n_g = wfpr.shape
    led = np.array(ledger, dtype=float, copy=True)
    credit = np.zeros((n_p, n_g))
    if not n_p or not table.n_spreads:
        return credit, led
    pair_of_row = np.repeat(np.arange(n_p), np.diff(row0))
    accounts = np.arange(pairs.n_accounts, dtype=np.int64) * pairs.n_cc
    for s in range(table.n_spreads):  # definitions
        legs = np.arange(table.leg_ptr[s], table.leg_ptr[s + 1])
        lp = pairs.pair_at[accounts[None, :] + table.leg_cc[legs][:, None]]  # (L, A): pair of each leg
        lp = lp[:, (lp >= 0).all(axis=0)].astype(np.int64)  # accounts holding every CC of the spread
        if not lp.size:
            continue
        month = np.full(legs.size, -1) if table.leg_month is None else np.asarray(table.leg_month)[legs]
        # a period leg's ledger row in each account (-1: its CC has no such month)
        rows = [
            np.where((m >= 0) & (m < np.diff(row0)[lp[j]]), row0[lp[j]] + m, -1) if m != -1 else None
            for j, m in enumerate(month)
        ]
        for direction in (1.0, -1.0):
            sign = table.leg_sign[legs] * direction
            long_ = np.add.reduceat(np.maximum(led, 0.0), row0[:-1], axis=0)  # (P, G)
            short = np.add.reduceat(np.maximum(-led, 0.0), row0[:-1], axis=0)
            avail = [
                (long_[lp[j]] if sign[j] > 0 else short[lp[j]])
                if r is None
                else np.where(r[:, None] >= 0, np.maximum(sign[j] * led[r], 0.0), 0.0)
                for j, r in enumerate(rows)
            ]  # (A', G)
            n = np.full(avail[0].shape, np.inf)
            for j, leg in enumerate(legs):
                n = np.minimum(n, avail[j] / table.leg_ratio[leg])
            n = np.where(np.isfinite(n), n, 0.0)
            if not n.any():
                continue
            for j, leg in enumerate(legs):
                ratio = table.leg_ratio[leg]
                with np.errstate(divide="ignore", invalid="ignore"):
                    frac = np.where(avail[j] > 0, n * ratio / np.where(avail[j] > 0, avail[j], 1.0), 0.0)
                r = rows[j]
                if r is None:  # the leg's CC's months on the needed side, pro rata
                    frac_of_pair = np.zeros((n_p, n_g))
                    frac_of_pair[lp[j]] = np.minimum(frac, 1.0)
                    take = np.maximum(sign[j] * led, 0.0) * frac_of_pair[pair_of_row]
                    led -= sign[j] * take
                else:  # a period leg: its one month
                    ok = r >= 0
                    led[r[ok]] -= sign[j] * np.maximum(sign[j] * led[r[ok]], 0.0) * np.minimum(frac[ok], 1.0)
                credit[lp[j]] += n * ratio * wfpr[lp[j]] * table.leg_rate[leg] + n * table.leg_flat[leg]
    return credit, led
