"""Incremental SPAN what-if: many candidate trades against a book, without re-margining the book.

The book's state is computed once per (account, combined commodity) pair it holds
(:func:`base_state`): the losses per scenario, the delta ledger by contract month, the intra spread
and spot charges, the net delta left and the weighted futures price risk, the option positions
netted per contract, the short option minimum, and each account's net option value. A trade then
touches only the combined commodities of its legs (:func:`after_trades`): their losses, ledgers
and option counts are the base ones with the legs added, and only they are scanned, spread and
counted again; the inter-commodity credit, which couples the combined commodities of an account,
and the account sums are recomputed over the pairs of the trade's after-book. Every trade is an
"account" of a pair layout (:class:`marginsim.kernels.span_pairs.Pairs`) whose pairs are the
after-book's, so the spread, credit and sum kernels of :mod:`marginsim.kernels.span_pairs` run
unchanged, batched over all trades at once.

Exactness: with the numba engine, the legs are added after the account's positions, in the order
of its book and then of the legs, with the same arithmetic as :func:`span_pairs.book_pass`; the
after figures are bit for bit those of margining each after-book (the account's positions, then the
legs) as one account. With the numpy engine they agree to rounding (the numpy reference sums in
another order).

Everything here is numpy (and the compiled kernels of :mod:`marginsim.kernels.span_pairs`); there
is no loop over trades, legs or positions in Python. Units: currency amounts in each combined
commodity's margin currency per pair, in the reporting currency per trade; deltas in delta units;
quantities in contracts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import span as K
from . import span_pairs as SP

__all__ = ["SpanTables", "BaseState", "AfterTrades", "base_state", "after_trades"]


@dataclass(frozen=True)
class SpanTables:
    """The position-independent SPAN tables of a book's plan (K contracts, C combined
    commodities, G grid points flattened, S scenarios).

    Attributes
    ----------
    risk_array
        Loss per long contract, shape ``(K, G, S)`` [CC currency, losses positive].
    scenario_pair, time_scenarios
        0-based pair of each scenario ``(S,)``; 0-based scenarios of the time risk.
    cc_of_k, month_idx
        Combined commodity of each contract, and its month on the CC's month axis, ``(K,)``.
    n_months
        Months of each combined commodity's axis, ``(C,)``.
    delta
        Composite delta per contract, ``(K, G)`` [delta per contract].
    is_call, is_put
        Option kind per contract ``(K,)``.
    intra, inter
        Spread tables (``None``: no spreads of that kind).
    som_rate, som_net
        Short option minimum rate [CC currency per short option] and method (net or gross) per CC.
    ratio
        Initial / maintenance ratio per CC.
    fx
        CC margin currency -> reporting currency per CC.
    nov
        Net option value per long contract ``(K, G)`` [reporting currency].
    """

    risk_array: np.ndarray
    scenario_pair: np.ndarray
    time_scenarios: np.ndarray
    cc_of_k: np.ndarray
    month_idx: np.ndarray
    n_months: np.ndarray
    delta: np.ndarray
    is_call: np.ndarray
    is_put: np.ndarray
    intra: SP.IntraTable | None
    inter: SP.InterTable | None
    som_rate: np.ndarray
    som_net: np.ndarray
    ratio: np.ndarray
    fx: np.ndarray
    nov: np.ndarray

    @property
    def n_cc(self) -> int:
        return int(self.som_rate.size)


@dataclass(frozen=True)
class _PairState:
    """Per-pair SPAN state before the inter-commodity credit (P pairs, G grid points)."""

    pairs: SP.Pairs
    loss: np.ndarray  # (P, G, S) [CC currency]
    scan_risk: np.ndarray  # (P, G)
    active: np.ndarray  # (P, G) 0-based
    row0: np.ndarray  # (P + 1,) ledger rows of each pair
    ledger: np.ndarray  # (R, G) net delta per (pair, month) [delta]
    intra: np.ndarray  # (P, G)
    spot: np.ndarray  # (P, G)
    net_left: np.ndarray  # (P, G) net delta after intra spreads [delta]
    wfpr: np.ndarray  # (P, G) weighted futures price risk [CC currency per delta]
    som: np.ndarray  # (P,) short option minimum [CC currency]


@dataclass(frozen=True)
class BaseState(_PairState):
    """The book's state (:func:`base_state`): per pair (account-major) as :class:`_PairState`,
    plus the option positions netted per contract and each account's net option value.

    Attributes
    ----------
    opt_ptr
        The netted option contracts of pair ``p`` are entries ``opt_ptr[p]:opt_ptr[p + 1]``, in the
        order the account's book first names them, shape ``(P + 1,)``.
    opt_k, opt_net
        Contract (row of the tables) and net quantity [contracts] of each entry.
    nov
        Net option value per account ``(A, G)`` [reporting currency].
    """

    opt_ptr: np.ndarray
    opt_k: np.ndarray
    opt_net: np.ndarray
    nov: np.ndarray


@dataclass(frozen=True)
class AfterTrades:
    """SPAN of every trade's after-book (T trades): per after-pair (``pairs``: account = trade)
    in the CC's margin currency, per trade in the reporting currency.

    Attributes
    ----------
    pairs
        The (trade, combined commodity) pairs of the after-books, trade-major.
    scan_risk, active, intra, spot, credit, risk_cc
        ``(P', G)``: scanning risk, 0-based active scenario, intra spread charge, spot charge,
        inter-commodity credit, combined commodity risk.
    som
        ``(P', 1)``: short option minimum.
    fx
        ``(P', 1)``: margin currency -> reporting currency.
    nov, span_risk, maintenance, initial
        ``(T, G)`` [reporting currency].
    """

    pairs: SP.Pairs
    scan_risk: np.ndarray
    active: np.ndarray
    intra: np.ndarray
    spot: np.ndarray
    credit: np.ndarray
    som: np.ndarray
    risk_cc: np.ndarray
    fx: np.ndarray
    nov: np.ndarray
    span_risk: np.ndarray
    maintenance: np.ndarray
    initial: np.ndarray


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    offset = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lengths), lengths)
    return offset + np.arange(total, dtype=np.int64)


def _spreads_and_som(
    pairs: SP.Pairs,
    loss: np.ndarray,
    row0: np.ndarray,
    ledger: np.ndarray,
    counts: np.ndarray,
    tables: SpanTables,
    engine: str,
) -> _PairState:
    """Scan, intra spreads, spot charge, WFPR and short option minimum of pairs from their losses,
    ledgers and option counts (the steps of :func:`marginsim.methods.span.book` before the credit)."""
    n_p, n_g = pairs.size, ledger.shape[1]
    scan_risk, active, prisk = SP.scan(loss, tables.scenario_pair, tables.time_scenarios, engine)
    net_delta = np.add.reduceat(ledger, row0[:-1], axis=0) if n_p else np.zeros((0, n_g))
    if tables.intra is not None:
        intra, spot, net_left = SP.intra_and_spot(ledger, row0, pairs, tables.intra, engine)
    else:
        intra, spot, net_left = np.zeros((n_p, n_g)), np.zeros((n_p, n_g)), net_delta
    som = K.short_option_minimum(
        counts[:, 0],
        counts[:, 1],
        counts[:, 2],
        counts[:, 3],
        tables.som_rate[pairs.cc],
        tables.som_net[pairs.cc],
    )
    return _PairState(
        pairs=pairs,
        loss=loss,
        scan_risk=scan_risk,
        active=active,
        row0=row0,
        ledger=ledger,
        intra=intra,
        spot=spot,
        net_left=net_left,
        wfpr=K.weighted_futures_price_risk(prisk, net_delta),
        som=som,
    )


def _row0(pairs: SP.Pairs, n_months: np.ndarray) -> np.ndarray:
    """Ledger row offsets of the pairs (their CCs' months, pair after pair)."""
    return np.concatenate([[0], np.cumsum(n_months[pairs.cc])]).astype(np.int64)


def base_state(
    position_account: np.ndarray,
    contract: np.ndarray,
    qty: np.ndarray,
    n_accounts: int,
    tables: SpanTables,
    engine: str,
) -> BaseState:
    """The per-pair state of a book (positions in the plan's scope).

    Parameters
    ----------
    position_account, contract, qty
        Account index, contract (row of the tables) and signed quantity [contracts] per position.
    n_accounts
        Number of accounts.
    tables
        The plan's tables.
    engine
        ``"numba"`` or ``"numpy"`` (resolved).

    Returns
    -------
    BaseState
    """
    position_account = np.asarray(position_account, dtype=np.int64)
    contract = np.asarray(contract, dtype=np.int64)
    qty = np.asarray(qty, dtype=float)
    pairs = SP.pairs_of(position_account, tables.cc_of_k[contract], n_accounts, tables.n_cc)
    row0 = _row0(pairs, tables.n_months)
    loss, _, _, _, ledger, counts = SP.book_pass(
        pairs,
        position_account,
        contract,
        qty,
        tables.risk_array,
        tables.scenario_pair,
        tables.time_scenarios,
        row0,
        tables.month_idx,
        tables.delta,
        tables.is_call,
        tables.is_put,
        engine,
        keep_loss=True,
    )
    assert loss is not None
    st = _spreads_and_som(pairs, loss, row0, ledger, counts, tables, engine)

    # option positions netted per (account, contract), in the order the book first names them
    is_opt = (tables.is_call | tables.is_put)[contract]
    at = np.flatnonzero(is_opt)
    key = pairs.of_position[at] * tables.risk_array.shape[0] + contract[at]
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    net = np.zeros(uniq.size)
    np.add.at(net, inverse.reshape(-1), qty[at])  # in book order: 0 + w1 + w2 ..., as the kernels
    entry_pair = pairs.of_position[at][first]
    order = np.lexsort((first, entry_pair))  # by pair, then first appearance
    opt_ptr = np.searchsorted(entry_pair[order], np.arange(pairs.size + 1)).astype(np.int64)
    nov = SP.segment_sum(position_account, contract, qty, tables.nov, n_accounts, engine)
    return BaseState(
        **st.__dict__,
        opt_ptr=opt_ptr,
        opt_k=contract[at][first][order],
        opt_net=net[order],
        nov=nov,
    )


def after_trades(
    base: BaseState,
    tables: SpanTables,
    trade_account: np.ndarray,
    leg_trade: np.ndarray,
    leg_contract: np.ndarray,
    leg_qty: np.ndarray,
    engine: str,
) -> AfterTrades:
    """SPAN of each trade's after-book: the trade's account in ``base`` with the trade's legs added.

    Parameters
    ----------
    base
        The book's state (:func:`base_state`).
    tables
        The plan's tables (the same as for ``base``; every leg's contract is a row of them).
    trade_account
        Account index (in ``base``) of each trade, ``(T,)``; ``-1``: an account without positions.
    leg_trade, leg_contract, leg_qty
        Per leg: its trade (legs of a trade in order; trades in any order), contract (row of the
        tables) and signed quantity [contracts].
    engine
        ``"numba"`` or ``"numpy"`` (resolved).

    Returns
    -------
    AfterTrades
    """
    trade_account = np.asarray(trade_account, dtype=np.int64)
    leg_trade = np.asarray(leg_trade, dtype=np.int64)
    leg_k = np.asarray(leg_contract, dtype=np.int64)
    leg_q = np.asarray(leg_qty, dtype=float)
    n_t, n_c = trade_account.size, tables.n_cc
    n_g, n_s = tables.risk_array.shape[1], tables.risk_array.shape[2]
    bp_all = base.pairs

    def base_pair(trade: np.ndarray, cc: np.ndarray) -> np.ndarray:
        """Base pair of each (trade, CC), -1 where the trade's account does not hold the CC."""
        a = trade_account[trade]
        out = np.full(trade.size, -1, dtype=np.int64)
        ok = a >= 0
        out[ok] = bp_all.pair_at[a[ok] * n_c + cc[ok]]
        return out

    # -- the pairs the legs touch: base state plus the legs, then scanned, spread, counted again --
    tp = SP.pairs_of(leg_trade, tables.cc_of_k[leg_k], n_t, n_c)
    src = base_pair(tp.account, tp.cc)
    has = src >= 0
    loss = np.zeros((tp.size, n_g, n_s))
    loss[has] = base.loss[src[has]]
    leg_tp = tp.of_position
    np.add.at(loss, leg_tp, leg_q[:, None, None] * tables.risk_array[leg_k])  # legs in order
    row0 = _row0(tp, tables.n_months)
    months = tables.n_months[tp.cc]
    ledger = np.zeros((int(row0[-1]), n_g))
    dst_rows = _ragged(row0[:-1][has], months[has])
    src_rows = _ragged(base.row0[src[has]], months[has])
    ledger[dst_rows] = base.ledger[src_rows]
    np.add.at(ledger, row0[leg_tp] + tables.month_idx[leg_k], leg_q[:, None] * tables.delta[leg_k])
    # option counts: the account's netted option contracts of the pair, then the option legs
    n_opt = np.where(has, base.opt_ptr[src + 1] - base.opt_ptr[np.maximum(src, 0)], 0)
    entries = _ragged(base.opt_ptr[np.maximum(src, 0)], n_opt)
    opt_leg = np.flatnonzero((tables.is_call | tables.is_put)[leg_k])
    rows = np.concatenate([np.repeat(np.arange(tp.size), n_opt), leg_tp[opt_leg]])
    counts = SP.option_counts(
        rows,
        tp.size,
        rows,
        np.concatenate([base.opt_k[entries], leg_k[opt_leg]]),
        np.concatenate([base.opt_net[entries], leg_q[opt_leg]]),
        tables.is_call,
        tables.is_put,
        tp.size,
        engine,
    )
    touched = _spreads_and_som(tp, loss, row0, ledger, counts, tables, engine)

    # -- the after-book's pairs: the account's pairs and the touched ones, per trade --------------
    acct = np.maximum(trade_account, 0)
    n_base = np.where(trade_account >= 0, bp_all.account_ptr[acct + 1] - bp_all.account_ptr[acct], 0)
    from_base = _ragged(bp_all.account_ptr[acct], n_base)
    pairs = SP.pairs_of(
        np.concatenate([np.repeat(np.arange(n_t), n_base), tp.account]),
        np.concatenate([bp_all.cc[from_base], tp.cc]),
        n_t,
        n_c,
    )
    t_src = tp.pair_at[pairs.dense_index].astype(np.int64)  # touched pair, -1 if untouched
    b_src = base_pair(pairs.account, pairs.cc)
    new = t_src >= 0
    b_at, t_at = np.flatnonzero(~new), np.flatnonzero(new)

    def after(base_values: np.ndarray, touched_values: np.ndarray) -> np.ndarray:
        out = np.empty((pairs.size,) + base_values.shape[1:], dtype=base_values.dtype)
        out[b_at] = base_values[b_src[b_at]]
        out[t_at] = touched_values[t_src[t_at]]
        return out

    scan_risk = after(base.scan_risk, touched.scan_risk)
    intra = after(base.intra, touched.intra)
    spot = after(base.spot, touched.spot)
    som = after(base.som, touched.som)[:, None]
    credit = np.zeros((pairs.size, n_g))
    if tables.inter is not None:
        net_left = after(base.net_left, touched.net_left)
        wfpr = after(base.wfpr, touched.wfpr)
        credit = SP.inter_credit(net_left, wfpr, pairs, tables.inter, engine)

    # -- combined commodity risks and the trade's sums, as in the book's margin ------------------
    risk_cc = np.maximum(scan_risk + intra + spot - credit, som)
    fx = tables.fx[pairs.cc][:, None]
    every_pair = np.arange(pairs.size)
    ones = np.ones(pairs.size)
    span_risk = SP.segment_sum(pairs.account, every_pair, ones, risk_cc * fx, n_t, engine)
    initial_risk = SP.segment_sum(
        pairs.account, every_pair, ones, risk_cc * tables.ratio[pairs.cc][:, None] * fx, n_t, engine
    )
    nov = np.zeros((n_t, n_g))
    ok = trade_account >= 0
    nov[ok] = base.nov[trade_account[ok]]
    np.add.at(nov, leg_trade, leg_q[:, None] * tables.nov[leg_k])
    return AfterTrades(
        pairs=pairs,
        scan_risk=scan_risk,
        active=after(base.active, touched.active),
        intra=intra,
        spot=spot,
        credit=credit,
        som=som,
        risk_cc=risk_cc,
        fx=fx,
        nov=nov,
        span_risk=span_risk,
        maintenance=np.maximum(span_risk - nov, 0.0),
        initial=np.maximum(initial_risk - nov, 0.0),
    )
