"""Incremental SPAN what-if: many candidate trades against a book, without re-margining the book.

The book's state is computed once per (account, combined commodity) pair it holds
(:func:`base_state`): the account's net position in each contract (SPAN nets an account's rows of
one contract, in contract order), the scanning risk, the delta ledger by contract month, the super
spread credit, the intra spread and spot charges, the net delta left and the weighted futures
price risk (by each CC's WFPR method), the short option minimum, the inter-commodity credit, and
each account's net option value and exposure margin. A trade then touches only the combined
commodities of its legs, and with super spreads the account's CCs joined to them by super spreads
(:func:`after_trades`): their net positions merged with the legs are scanned, spread and counted
again from scratch (by :func:`marginsim.kernels.span_pairs.book_pass`, the book's own kernel);
the inter-commodity credit (methods W, per spread or per leg, and F), which couples the combined
commodities of an account, and the account sums (rate classes: an initial class's risk / ratio
into the maintenance; net option value and exposure margin from the account's net positions
merged with the legs) are then recomputed per trade.

Two engines:

* ``"numba"``: one compiled pass per trade over its after-book's pairs. The credit cascade
  (:func:`span_pairs._inter`'s arithmetic, in the same order) is redone only for the spreads a
  changed delta reaches: a spread is redone when one of its legs' combined commodities is
  "dirty" (touched, or a leg of a spread redone before), a clean leg entering with the book's
  remaining delta and credit just before that spread (recorded by :func:`_inter_snapshots` when
  the base state is made); each dirty CC follows its own chain of spreads, and a leg not
  touched that is back at the base's state after a spread is clean again. The sums start from
  the base's running sums before the first dirty CC (before the first leg's contract for the
  net option value and exposure margin) and add the rest in order. Nothing of size trades x
  pairs is built unless the per combined commodity result is asked for.
* ``"numpy"``: the reference. Every trade is an "account" of a pair layout
  (:class:`marginsim.kernels.span_pairs.Pairs`) whose pairs are its after-book's, so the credit
  and sum kernels of :mod:`marginsim.kernels.span_pairs` run unchanged, batched over all trades.

Exactness: each after-book is the account's positions then the legs, netted per contract (the
book's order of additions) and margined in contract order, with the arithmetic of
:mod:`marginsim.methods.span.book`. With the numba engine the after figures are bit for bit those
of margining the after-books in one batch (whenever the batch nets rows: one of its after-books
holds a contract twice; a batch without any repeated contract is summed in book order, which may
differ in the last bit); with the numpy engine they agree to rounding.

:func:`risk_without` applies the same cascade to SPAN's leave-one-out (attribution's
``marginal``): each position's own CC without it, the rest of its linked set as the book's.

There is no loop over trades, legs or positions in Python. Units: currency amounts in each
combined commodity's margin currency per pair, in the reporting currency per trade; deltas in
delta units; quantities in contracts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import leave_one_out as LOO
from . import span as K
from . import span_pairs as SP
from ._jit import compile_kernel, prange
from .span_pairs import _CHUNKS, _form_spread

__all__ = [
    "SpanTables",
    "BaseState",
    "AfterTrades",
    "GROUP_VARIABLES",
    "PARALLEL_MIN_TRADES",
    "base_state",
    "after_trades",
    "risk_without",
]


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
    initial_class
        Per CC: its risk is the initial requirement (rate class ``initial``: maintenance = risk /
        ratio); ``None``: none is.
    wfpr_mode, wfpr_scan
        Per CC: weighted futures price risk method (0 normal, 1 scan range, 2 scan range cap) and
        the price scan range per delta of the scan-range methods [CC currency]; ``None``: normal.
    super_
        Super inter-commodity spreads (formed on the month ledger before the intra spreads).
    super_comp
        Per CC: its set of CCs joined by super spreads (``(C,)``; with ``super_``): a trade
        recomputes every CC of its account in the sets of its legs' CCs.
    exposure
        Exposure margin per long / short contract ``(K, 2)`` [reporting currency], charged on the
        net position of each (account, contract); ``None``: no exposure margin.
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
    initial_class: np.ndarray | None = None
    wfpr_mode: np.ndarray | None = None
    wfpr_scan: np.ndarray | None = None
    super_: SP.InterTable | None = None
    super_comp: np.ndarray | None = None
    exposure: np.ndarray | None = None

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
    super_credit: np.ndarray | None = None  # (P, G) super inter-commodity spread credit (with super spreads)


@dataclass(frozen=True, kw_only=True)
class BaseState(_PairState):
    """The book's state (:func:`base_state`): per pair (account-major) as :class:`_PairState`,
    plus the option positions netted per contract and each account's net option value.

    Attributes
    ----------
    ent_ptr
        The net positions of pair ``p`` (one per contract, SPAN nets an account's rows of one
        contract) are entries ``ent_ptr[p]:ent_ptr[p + 1]``, in contract order, shape ``(P + 1,)``;
        an account's pairs' entries are contiguous.
    ent_k, ent_q
        Contract (row of the tables) and net quantity [contracts] of each entry.
    exposure
        Exposure margin per account ``(A,)`` [reporting currency] (zeros without one).
    acct_ptr, acct_k, acct_q
        The net positions of account ``a`` on contracts with a net option value or an exposure
        rate are entries ``acct_ptr[a]:acct_ptr[a + 1]``, in contract order: contract and net
        quantity (the other contracts add exact zeros to those sums).
    nov
        Net option value per account ``(A, G)`` [reporting currency].
    credit, risk_cc
        Inter-commodity credit and combined commodity risk per pair ``(P, G)``.
    held_sets
        The combined commodities each account holds, as bit sets ``(A, words)`` (uint64).
    snap_rem, snap_credit
        Per account, inter spread (priority order), leg and grid point: the leg's net delta left
        and its credit just before the spread [delta, CC currency], ``(A, spreads, legs, G)``
        (legs on a CC the account holds; empty without inter spreads or with the numpy engine).
    """

    ent_ptr: np.ndarray
    ent_k: np.ndarray
    ent_q: np.ndarray
    acct_ptr: np.ndarray
    acct_k: np.ndarray
    acct_q: np.ndarray
    exposure: np.ndarray
    nov: np.ndarray
    credit: np.ndarray
    risk_cc: np.ndarray
    held_sets: np.ndarray
    snap_rem: np.ndarray
    snap_credit: np.ndarray


#: The per combined commodity variables of an after-book (:attr:`AfterTrades.groups`).
GROUP_VARIABLES = (
    "scan_risk",
    "active_scenario",
    "intra_spread_charge",
    "spot_charge",
    "inter_spread_credit",
    "short_option_minimum",
    "risk",
    "held",
)


@dataclass(frozen=True)
class AfterTrades:
    """SPAN of every trade's after-book (T trades, G grid points), in the reporting currency.

    Attributes
    ----------
    nov, span_risk, maintenance, initial
        ``(T, G)`` [reporting currency].
    exposure
        Exposure margin per trade ``(T,)`` [reporting currency] (in ``maintenance`` and
        ``initial``); ``None`` without one.
    groups
        When asked for (``group_rank``), the per combined commodity variables of
        :data:`GROUP_VARIABLES`, dense over the chosen CCs: ``(T, n_out, G)`` (``held``:
        ``(T, n_out)``); amounts in the reporting currency, ``active_scenario`` 1-based, 0 (1 for
        ``active_scenario``, ``False`` for ``held``) where the after-book does not hold the CC;
        with super spreads also ``super_spread_credit``.
    """

    nov: np.ndarray
    span_risk: np.ndarray
    maintenance: np.ndarray
    initial: np.ndarray
    groups: dict[str, np.ndarray] | None = None
    exposure: np.ndarray | None = None


def _dense_groups(
    n_t: int,
    n_g: int,
    group_rank: np.ndarray,
    pair_trade: np.ndarray,
    pair_cc: np.ndarray,
    fx: np.ndarray,
    values: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Per-pair values (margin currency, 0-based active scenario) as the dense
    :attr:`AfterTrades.groups` (numpy path)."""
    n_out = int(group_rank.max(initial=-1)) + 1
    index = pair_trade * n_out + group_rank[pair_cc]
    f = fx[pair_cc][:, None]
    n_p = pair_trade.size
    items = [
        (values["scan_risk"] * f, 0.0),
        (values["active"] + 1, 1),
        (values["intra"] * f, 0.0),
        (values["spot"] * f, 0.0),
        (values["credit"] * f, 0.0),
        (np.broadcast_to(values["som"] * f, (n_p, n_g)), 0.0),
        (values["risk_cc"] * f, 0.0),
        (np.ones(n_p, dtype=bool), False),
    ]
    names = list(GROUP_VARIABLES)
    if values.get("super") is not None:
        items.append((values["super"] * f, 0.0))
        names.append("super_spread_credit")
    dense = SP.to_dense_many(items, index, n_t * n_out)
    return {name: d.reshape((n_t, n_out) + d.shape[1:]) for name, d in zip(names, dense)}


def _pairs_of_accounts(ptr: np.ndarray, account: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, count)`` of each account's rows in a CSR layout ``ptr`` (an account's pairs, a
    pair's option entries); none for ``-1`` (no positions)."""
    ok = account >= 0
    first = np.zeros(account.size, dtype=np.int64)
    count = np.zeros(account.size, dtype=np.int64)
    first[ok] = ptr[account[ok]]
    count[ok] = ptr[account[ok] + 1] - first[ok]
    return first, count


def _pair_at(pairs: SP.Pairs, account: np.ndarray, cc: np.ndarray) -> np.ndarray:
    """Pair of each (account, CC) in ``pairs`` (-1: not held, or account ``-1``)."""
    out = np.full(account.size, -1, dtype=np.int64)
    ok = account >= 0
    out[ok] = pairs.pair_at[account[ok] * pairs.n_cc + cc[ok]]
    return out


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    offset = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lengths), lengths)
    return offset + np.arange(total, dtype=np.int64)


def _wfpr(tables: SpanTables, cc: np.ndarray, prisk: np.ndarray, net_delta: np.ndarray) -> np.ndarray:
    """Weighted futures price risk per pair [CC currency per delta] by each CC's method (the
    arithmetic of :func:`marginsim.methods.span.book`): price risk / |net delta| (normal), the
    price scan range per delta (scan range), or the smaller of the two (scan range cap)."""
    wfpr = K.weighted_futures_price_risk(prisk, net_delta)
    if tables.wfpr_mode is not None and tables.wfpr_scan is not None and tables.wfpr_mode.any():
        mode = tables.wfpr_mode[cc][:, None]
        scan = tables.wfpr_scan[cc][:, None]
        wfpr = np.where(mode == 1, scan, np.where(mode == 2, np.minimum(wfpr, scan), wfpr))
    return wfpr


def _spreads_and_som(
    pairs: SP.Pairs,
    loss: np.ndarray,
    row0: np.ndarray,
    ledger: np.ndarray,
    counts: np.ndarray,
    tables: SpanTables,
    engine: str,
    scanned: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> _PairState:
    """Scan, super spread credit, intra spreads, spot charge, WFPR and short option minimum of
    pairs from their losses (or their scan, ``scanned``), ledgers and option counts (the steps of
    :func:`marginsim.methods.span.book` before the inter-commodity credit)."""
    n_p, n_g = pairs.size, ledger.shape[1]
    if scanned is None:
        scanned = SP.scan(loss, tables.scenario_pair, tables.time_scenarios, engine)
    scan_risk, active, prisk = scanned
    net_delta = np.add.reduceat(ledger, row0[:-1], axis=0) if n_p else np.zeros((0, n_g))
    wfpr = _wfpr(tables, pairs.cc, prisk, net_delta)
    super_credit, left = None, ledger
    if tables.super_ is not None:  # on the months, before the intra spreads
        super_credit, left = SP.super_credit(ledger, row0, pairs, tables.super_, wfpr)
    if tables.intra is not None:
        intra, spot, net_left = SP.intra_and_spot(left, row0, pairs, tables.intra, engine)
    else:
        intra, spot = np.zeros((n_p, n_g)), np.zeros((n_p, n_g))
        net_left = net_delta if super_credit is None else np.add.reduceat(left, row0[:-1], axis=0)
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
        wfpr=wfpr,
        som=som,
        super_credit=super_credit,
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
    n_k = tables.risk_array.shape[0]
    # SPAN margins an account's net quantity of each contract: one row per (account, contract),
    # in contract order, netted in book order (as :func:`marginsim.methods.span.book` nets them)
    position_account, contract, qty, _ = SP.net_positions(position_account, contract, qty, n_k)
    pairs = SP.pairs_of(position_account, tables.cc_of_k[contract], n_accounts, tables.n_cc)
    row0 = _row0(pairs, tables.n_months)
    _, scan_risk, active, prisk, ledger, counts = SP.book_pass(
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
        keep_loss=False,
    )
    n_g = ledger.shape[1]
    st = _spreads_and_som(
        pairs, np.zeros((0, n_g, 0)), row0, ledger, counts, tables, engine, scanned=(scan_risk, active, prisk)
    )
    # the net positions by pair, each pair's in contract order
    by_pair = np.argsort(pairs.of_position, kind="stable")
    ent_ptr = np.searchsorted(pairs.of_position[by_pair], np.arange(pairs.size + 1)).astype(np.int64)
    nov = SP.segment_sum(position_account, contract, qty, tables.nov, n_accounts, engine)
    summed = np.flatnonzero(_summed_contracts(tables)[contract])  # (account, contract) order
    exposure: np.ndarray = np.zeros(n_accounts)
    if tables.exposure is not None:  # |net| x the long or short rate, in contract order
        per_contract = np.abs(qty) * tables.exposure[contract, (qty < 0).astype(np.int64)]
        exposure = np.bincount(position_account, weights=per_contract, minlength=n_accounts)
    credit, held_sets, snap_rem, snap_credit = _base_credit(st, tables, engine)
    return BaseState(
        **st.__dict__,
        ent_ptr=ent_ptr,
        ent_k=contract[by_pair],
        ent_q=qty[by_pair],
        acct_ptr=np.searchsorted(position_account[summed], np.arange(n_accounts + 1)).astype(np.int64),
        acct_k=contract[summed],
        acct_q=qty[summed],
        exposure=exposure,
        nov=nov,
        credit=credit,
        risk_cc=np.maximum(
            _before_som(st.scan_risk + st.intra + st.spot - credit, st.super_credit), st.som[:, None]
        ),
        held_sets=held_sets,
        snap_rem=snap_rem,
        snap_credit=snap_credit,
    )


def _before_som(x: np.ndarray, super_credit: np.ndarray | None) -> np.ndarray:
    """The combined commodity risk before the short option minimum: scan + intra + spot - credit,
    less the super spread credit when there is one (the book's order of operations)."""
    return x if super_credit is None else x - super_credit


def _exposure(
    tables: SpanTables, row: np.ndarray, contract: np.ndarray, qty: np.ndarray, n_rows: int
) -> np.ndarray:
    """Exposure margin per row (account, or trade) ``(n_rows,)`` [reporting currency]: |net| x the
    long or short rate of each (row, contract) net position, summed in contract order (the
    arithmetic of :func:`marginsim.methods.span.book`: the net adds the positions in the order
    given, from 0)."""
    assert tables.exposure is not None
    if not row.size:
        return np.zeros(n_rows)
    return SP.exposure_margin(row, contract, qty, tables.exposure, n_rows)


def _base_credit(
    st: _PairState, tables: SpanTables, engine: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The book's inter-commodity credit per pair, the CCs each account holds (bit sets) and,
    with the numba engine, the cascade's state before each spread (:class:`BaseState`)."""
    pairs, n_g = st.pairs, st.scan_risk.shape[1]
    n_a, n_c = pairs.n_accounts, tables.n_cc
    words = max(-(-n_c // 64), 1)
    held_sets = np.zeros((n_a, words), dtype=np.uint64)
    np.bitwise_or.at(
        held_sets,
        (pairs.account, pairs.cc // 64),
        np.left_shift(np.uint64(1), (pairs.cc % 64).astype(np.uint64)),
    )
    inter = tables.inter
    if inter is None:
        empty = np.zeros((n_a, 0, 0, n_g))
        return np.zeros((pairs.size, n_g)), held_sets, empty, empty
    if engine != "numba":
        empty = np.zeros((n_a, 0, 0, n_g))
        return SP.inter_credit(st.net_left, st.wfpr, pairs, inter, engine), held_sets, empty, empty
    max_legs = int(np.diff(inter.leg_ptr).max(initial=1))
    credit = np.zeros((pairs.size, n_g))
    snap_rem = np.zeros((n_a, inter.n_spreads, max_legs, n_g))
    snap_credit = np.zeros((n_a, inter.n_spreads, max_legs, n_g))
    _kernel("_inter_snapshots")(
        np.ascontiguousarray(st.net_left, dtype=float),
        np.ascontiguousarray(st.wfpr, dtype=float),
        pairs.account_ptr.astype(np.int64),
        pairs.cc.astype(np.int64),
        pairs.pair_at,
        inter.leg_ptr,
        inter.leg_cc,
        inter.leg_sign,
        inter.leg_ratio,
        inter.leg_rate,
        inter.leg_flat,
        inter.cc_sets(n_c),
        credit,
        np.zeros((n_a, words), dtype=np.uint64),
        snap_rem,
        snap_credit,
    )
    return credit, held_sets, snap_rem, snap_credit


def after_trades(
    base: BaseState,
    tables: SpanTables,
    trade_account: np.ndarray,
    leg_trade: np.ndarray,
    leg_contract: np.ndarray,
    leg_qty: np.ndarray,
    engine: str,
    *,
    group_rank: np.ndarray | None = None,
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
        Per leg, sorted by trade (each trade's legs in their order): its trade, contract (row of
        the tables) and signed quantity [contracts].
    engine
        ``"numba"`` (two compiled passes: the touched pairs, then one pass per trade over its
        after-book's pairs, without materialising them unless kept) or ``"numpy"`` (the
        reference: the after-books' pairs as one pair layout through
        :mod:`marginsim.kernels.span_pairs`).
    group_rank
        Column of each combined commodity in the per combined commodity result (``-1``: not a
        column; every CC an after-book holds must have one), ``(C,)``; ``None``: no such result.

    Returns
    -------
    AfterTrades
    """
    trade_account = np.asarray(trade_account, dtype=np.int64)
    leg_trade = np.asarray(leg_trade, dtype=np.int64)
    leg_k = np.asarray(leg_contract, dtype=np.int64)
    leg_q = np.asarray(leg_qty, dtype=float)
    # the pairs the legs touch (and, with super spreads, the account's pairs joined to them by
    # super spreads): base state plus the legs, then scanned, spread, counted again
    tp = _touched_pairs(base, tables, trade_account, leg_trade, leg_k)
    src = _pair_at(base.pairs, trade_account[tp.account], tp.cc)
    touched = _touched(base, tables, tp, src, leg_k, leg_q, engine)
    # per trade, its account's net positions merged with its legs: the net option value and the
    # exposure margin of each after-book, summed from scratch in contract order
    nov, exposure = _account_sums(base, tables, trade_account, leg_trade, leg_k, leg_q, engine)
    if engine == "numba":
        out = _after_numba(base, tables, trade_account, tp, touched, nov, group_rank)
    else:
        out = _after_numpy(base, tables, trade_account, tp, touched, nov, group_rank)
    if exposure is None:
        return out
    return replace(
        out,
        maintenance=out.maintenance + exposure[:, None],
        initial=out.initial + exposure[:, None],
        exposure=exposure,
    )


def _account_sums(
    base: BaseState,
    tables: SpanTables,
    trade_account: np.ndarray,
    leg_trade: np.ndarray,
    leg_k: np.ndarray,
    leg_q: np.ndarray,
    engine: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Net option value ``(T, G)`` and exposure margin ``(T,)`` (``None`` without one) of every
    after-book [reporting currency]: the account's net positions then the legs netted per contract,
    summed in contract order (the book's arithmetic). Contracts without a net option value or an
    exposure rate add exact zeros: only the others are netted."""
    n_t, n_g = trade_account.size, tables.nov.shape[1]
    n_k = tables.risk_array.shape[0]
    wanted = _summed_contracts(tables)
    keep_legs = np.flatnonzero(wanted[leg_k])
    ok = trade_account >= 0
    lo = np.zeros(n_t, dtype=np.int64)
    hi = np.zeros(n_t, dtype=np.int64)
    lo[ok] = base.acct_ptr[trade_account[ok]]
    hi[ok] = base.acct_ptr[trade_account[ok] + 1]
    if engine == "numba":  # per trade, the account's entries merged with its legs by contract
        order = keep_legs[np.lexsort((leg_k[keep_legs], leg_trade[keep_legs]))]  # stable within a contract
        leg_ptr = np.searchsorted(leg_trade[order], np.arange(n_t + 1)).astype(np.int64)
        has_exposure = tables.exposure is not None
        nov = np.zeros((n_t, n_g))
        exposure_out = np.zeros(n_t)
        n_e, n_a = base.acct_k.size, base.acct_ptr.size - 1
        nov_terms, nov_prefix = np.empty((n_e, n_g)), np.empty((n_e + n_a, n_g))
        exp_terms, exp_prefix = np.empty(n_e), np.empty(n_e + n_a)
        exposure_table = np.ascontiguousarray(
            tables.exposure if has_exposure else np.zeros((0, 2)), dtype=float
        )
        _kernel("_account_prefix_kernel")(
            base.acct_ptr,
            base.acct_k,
            base.acct_q,
            np.ascontiguousarray(tables.nov, dtype=float),
            exposure_table,
            has_exposure,
            nov_terms,
            nov_prefix,
            exp_terms,
            exp_prefix,
        )
        _kernel("_account_sums_kernel", n_t)(
            trade_account,
            base.nov,
            base.exposure,
            lo,
            hi,
            base.acct_k,
            base.acct_q,
            nov_terms,
            nov_prefix,
            exp_terms,
            exp_prefix,
            leg_ptr,
            np.ascontiguousarray(leg_k[order]),
            np.ascontiguousarray(leg_q[order]),
            np.ascontiguousarray(tables.nov, dtype=float),
            exposure_table,
            has_exposure,
            nov,
            exposure_out,
        )
        return nov, (exposure_out if has_exposure else None)
    rows = _ragged(lo, hi - lo)
    t = np.concatenate([np.repeat(np.arange(n_t), hi - lo), leg_trade[keep_legs]])
    k = np.concatenate([base.acct_k[rows], leg_k[keep_legs]])
    q = np.concatenate([base.acct_q[rows], leg_q[keep_legs]])
    row, contract, net, _ = SP.net_positions(t, k, q, n_k)
    nov = SP.segment_sum(row, contract, net, tables.nov, n_t, engine).reshape(n_t, n_g)
    exposure = None
    if tables.exposure is not None:
        per_contract = np.abs(net) * tables.exposure[contract, (net < 0).astype(np.int64)]
        exposure = np.bincount(row, weights=per_contract, minlength=n_t)
    return nov, exposure


def _summed_contracts(tables: SpanTables) -> np.ndarray:
    """``(K,)`` contracts with a net option value or an exposure rate (the others add exact
    zeros to the net option value and the exposure margin)."""
    wanted = (tables.nov != 0.0).any(axis=1)
    if tables.exposure is not None:
        wanted = wanted | (tables.exposure != 0.0).any(axis=1)
    return wanted


def _merge_kernel(first, count, ent_k, ent_q, lp_ptr, leg_k, leg_q, out_p, out_k, out_q):  # pragma: no cover
    # per touched pair p: its base net positions (contract order) merged with its legs (sorted by
    # contract, in order within one): one row per contract, net = 0 + base net + leg + leg ...;
    # returns the number of rows written
    r = 0
    for p in range(first.size):
        i = first[p]
        i_end = first[p] + count[p]
        j = lp_ptr[p]
        j_end = lp_ptr[p + 1]
        while i < i_end or j < j_end:
            if j >= j_end or (i < i_end and ent_k[i] < leg_k[j]):
                k = ent_k[i]
                net = 0.0 + ent_q[i]
                i += 1
            else:
                k = leg_k[j]
                net = 0.0
                if i < i_end and ent_k[i] == k:
                    net += ent_q[i]
                    i += 1
                while j < j_end and leg_k[j] == k:
                    net += leg_q[j]
                    j += 1
            out_p[r] = p
            out_k[r] = k
            out_q[r] = net
            r += 1
    return r


def _account_prefix_kernel(
    acct_ptr,
    acct_k,
    acct_q,
    nov_table,
    exposure_table,
    has_exposure,
    nov_terms,
    nov_prefix,
    exp_terms,
    exp_prefix,
):  # pragma: no cover - compiled
    # per account entry e (contract k, net q): its terms of the net option value, (0 + q) x nov
    # per contract, and of the exposure margin, |0 + q| x rate, as _account_sums_kernel adds them;
    # per account, their running sums in contract order (row ptr[a] + a + i: the first i entries)
    n_g = nov_terms.shape[1]
    for a in range(acct_ptr.size - 1):
        r0 = acct_ptr[a] + a
        for g in range(n_g):
            nov_prefix[r0, g] = 0.0
        exp_prefix[r0] = 0.0
        for e in range(acct_ptr[a], acct_ptr[a + 1]):
            k = acct_k[e]
            net = 0.0 + acct_q[e]
            for g in range(n_g):
                nov_terms[e, g] = net * nov_table[k, g]
                nov_prefix[e + a + 1, g] = nov_prefix[e + a, g] + nov_terms[e, g]
            exp_terms[e] = abs(net) * exposure_table[k, 1 if net < 0.0 else 0] if has_exposure else 0.0
            exp_prefix[e + a + 1] = exp_prefix[e + a] + exp_terms[e]


def _account_sums_kernel(
    trade_account,
    b_nov,
    b_exposure,
    lo,
    hi,
    acct_k,
    acct_q,
    nov_terms,
    nov_prefix,
    exp_terms,
    exp_prefix,
    leg_ptr,
    leg_k,
    leg_q,
    nov_table,
    exposure_table,
    has_exposure,
    nov,
    exposure,
):  # pragma: no cover - compiled
    # per trade: its account's net positions (contract order) merged with its legs (sorted by
    # contract, in order within one), each contract's net = 0 + base net + leg + leg ...; then
    # nov += net x nov per contract and exposure += |net| x rate, in contract order (the book's
    # sums); the account's entries before the first leg's contract from the account's running
    # sums, the unchanged ones after it by their terms (the same additions in the same order)
    # (a trade without a leg on such a contract: its account's own sums, the same terms)
    n_g = nov.shape[1]
    n_t = lo.size
    n_chunks = min(n_t, _CHUNKS)
    for chunk in prange(n_chunks):
        for t in range(chunk * n_t // n_chunks, (chunk + 1) * n_t // n_chunks):
            i = lo[t]
            i_end = hi[t]
            j = leg_ptr[t]
            j_end = leg_ptr[t + 1]
            a = trade_account[t]
            if j == j_end and a >= 0:
                for g in range(n_g):
                    nov[t, g] = b_nov[a, g]
                if has_exposure:
                    exposure[t] = b_exposure[a]
                continue
            if a >= 0:  # the entries before the first leg's contract
                first = leg_k[j]
                lo_s = i
                hi_s = i_end
                while lo_s < hi_s:
                    mid = (lo_s + hi_s) // 2
                    if acct_k[mid] < first:
                        lo_s = mid + 1
                    else:
                        hi_s = mid
                i = lo_s
            i_start = i
            j_start = j
            for g in range(n_g + (1 if has_exposure else 0)):  # g == n_g: the exposure margin
                i = i_start
                j = j_start
                x = 0.0
                if a >= 0:
                    x = nov_prefix[i + a, g] if g < n_g else exp_prefix[i + a]
                while i < i_end or j < j_end:
                    if j >= j_end or (i < i_end and acct_k[i] < leg_k[j]):
                        x += nov_terms[i, g] if g < n_g else exp_terms[i]
                        i += 1
                        continue
                    k = leg_k[j]
                    net = 0.0
                    if i < i_end and acct_k[i] == k:
                        net += acct_q[i]
                        i += 1
                    while j < j_end and leg_k[j] == k:
                        net += leg_q[j]
                        j += 1
                    if g < n_g:
                        x += net * nov_table[k, g]
                    else:
                        x += abs(net) * exposure_table[k, 1 if net < 0.0 else 0]
                if g < n_g:
                    nov[t, g] = x
                else:
                    exposure[t] = x


def _touched_pairs(
    base: BaseState, tables: SpanTables, trade_account: np.ndarray, leg_trade: np.ndarray, leg_k: np.ndarray
) -> SP.Pairs:
    """The (trade, CC) pairs a trade recomputes (``of_position``: the pair of each leg): its legs'
    CCs and, with super spreads, every CC its account holds in the same super-spread set as one of
    them (a super spread draws on the months of each of its CCs)."""
    n_t, n_c = trade_account.size, tables.n_cc
    leg_cc = tables.cc_of_k[leg_k]
    if tables.super_ is None or tables.super_comp is None:
        return SP.pairs_of(leg_trade, leg_cc, n_t, n_c)
    comp = tables.super_comp
    n_comp = int(comp.max(initial=0)) + 1
    hit = np.zeros(n_t * n_comp, dtype=bool)
    hit[leg_trade * n_comp + comp[leg_cc]] = True
    first, n_base = _pairs_of_accounts(base.pairs.account_ptr, trade_account)
    rows = _ragged(first, n_base)
    row_trade = np.repeat(np.arange(n_t), n_base)
    row_cc = base.pairs.cc[rows]
    extra = hit[row_trade * n_comp + comp[row_cc]]
    tp = SP.pairs_of(
        np.concatenate([leg_trade, row_trade[extra]]), np.concatenate([leg_cc, row_cc[extra]]), n_t, n_c
    )
    return replace(tp, of_position=tp.of_position[: leg_trade.size])


def _touched(
    base: BaseState,
    tables: SpanTables,
    tp: SP.Pairs,
    src: np.ndarray,
    leg_k: np.ndarray,
    leg_q: np.ndarray,
    engine: str,
) -> _PairState:
    """The touched pairs' state, from scratch: each pair's net positions in the base merged with
    its legs (netted per contract, in contract order), through :func:`span_pairs.book_pass` (one
    pseudo-account per touched pair: the book's arithmetic), then the spreads."""
    n_k, n_p = tables.risk_array.shape[0], tp.size
    first, count = _pairs_of_accounts(base.ent_ptr, src)
    if engine == "numba":  # per touched pair, its base entries merged with its legs by contract
        order = np.lexsort((leg_k, tp.of_position))  # by pair, then contract; stable within one
        lp_ptr = np.searchsorted(tp.of_position[order], np.arange(n_p + 1)).astype(np.int64)
        size = int(count.sum()) + leg_k.size
        pos_p: np.ndarray = np.empty(size, dtype=np.int64)
        pos_k: np.ndarray = np.empty(size, dtype=np.int64)
        net: np.ndarray = np.empty(size)
        n_rows = _kernel("_merge_kernel")(
            first,
            count,
            base.ent_k,
            base.ent_q,
            lp_ptr,
            np.ascontiguousarray(leg_k[order]),
            np.ascontiguousarray(leg_q[order]),
            pos_p,
            pos_k,
            net,
        )
        pos_p, pos_k, net = pos_p[:n_rows], pos_k[:n_rows], net[:n_rows]
    else:
        rows = _ragged(first, count)
        p = np.concatenate([np.repeat(np.arange(n_p), count), tp.of_position])
        key, inverse = np.unique(
            p * n_k + np.concatenate([base.ent_k[rows], leg_k]), return_inverse=True
        )  # base entry first, then the legs in order: net = base net + leg + leg ...
        net = np.bincount(
            inverse.reshape(-1), weights=np.concatenate([base.ent_q[rows], leg_q]), minlength=key.size
        )
        pos_p, pos_k = key // n_k, key % n_k
    own = SP.Pairs(
        account=np.arange(n_p, dtype=np.int64),
        cc=tp.cc,
        of_position=pos_p,
        account_ptr=np.arange(n_p + 1, dtype=np.int64),
        n_accounts=n_p,
        n_cc=tp.n_cc,
        pair_at=np.zeros(0, dtype=np.int32),
    )
    row0 = _row0(tp, tables.n_months)
    _, scan_risk, active, prisk, ledger, counts = SP.book_pass(
        own,
        pos_p,
        pos_k,
        net,
        tables.risk_array,
        tables.scenario_pair,
        tables.time_scenarios,
        row0,
        tables.month_idx,
        tables.delta,
        tables.is_call,
        tables.is_put,
        engine,
        keep_loss=False,
    )
    n_g = ledger.shape[1]
    return _spreads_and_som(
        tp, np.zeros((0, n_g, 0)), row0, ledger, counts, tables, engine, scanned=(scan_risk, active, prisk)
    )


def _after_numpy(
    base: BaseState,
    tables: SpanTables,
    trade_account: np.ndarray,
    tp: SP.Pairs,
    touched: _PairState,
    nov: np.ndarray,
    group_rank: np.ndarray | None,
) -> AfterTrades:
    """The after-books as one pair layout through :mod:`marginsim.kernels.span_pairs` (numpy)."""
    n_t, n_c, n_g = trade_account.size, tables.n_cc, tables.risk_array.shape[1]
    bp_all = base.pairs
    first, n_base = _pairs_of_accounts(bp_all.account_ptr, trade_account)
    from_base = _ragged(first, n_base)
    pairs = SP.pairs_of(
        np.concatenate([np.repeat(np.arange(n_t), n_base), tp.account]),
        np.concatenate([bp_all.cc[from_base], tp.cc]),
        n_t,
        n_c,
    )
    t_src = tp.pair_at[pairs.dense_index].astype(np.int64)  # touched pair, -1 if untouched
    b_src = _pair_at(bp_all, trade_account[pairs.account], pairs.cc)
    b_at, t_at = np.flatnonzero(t_src < 0), np.flatnonzero(t_src >= 0)

    def after(base_values: np.ndarray, touched_values: np.ndarray) -> np.ndarray:
        out = np.empty((pairs.size,) + base_values.shape[1:], dtype=base_values.dtype)
        out[b_at] = base_values[b_src[b_at]]
        out[t_at] = touched_values[t_src[t_at]]
        return out

    scan_risk = after(base.scan_risk, touched.scan_risk)
    intra = after(base.intra, touched.intra)
    spot = after(base.spot, touched.spot)
    som = after(base.som, touched.som)[:, None]
    super_credit = None
    if base.super_credit is not None and touched.super_credit is not None:
        super_credit = after(base.super_credit, touched.super_credit)
    credit = np.zeros((pairs.size, n_g))
    if tables.inter is not None:
        net_left = after(base.net_left, touched.net_left)
        wfpr = after(base.wfpr, touched.wfpr)
        credit = SP.inter_credit(net_left, wfpr, pairs, tables.inter, "numpy")
    # combined commodity risks and the trade's sums, as in the book's margin
    risk_cc = np.maximum(_before_som(scan_risk + intra + spot - credit, super_credit), som)
    fx = tables.fx[pairs.cc][:, None]
    every_pair = np.arange(pairs.size)
    ones = np.ones(pairs.size)
    span_risk = SP.segment_sum(pairs.account, every_pair, ones, risk_cc * fx, n_t, "numpy")
    m_factor, i_factor = _class_factors(tables)
    maintenance_risk = span_risk
    if tables.initial_class is not None and tables.initial_class.any():
        maintenance_risk = SP.segment_sum(
            pairs.account, every_pair, ones, risk_cc * m_factor[pairs.cc][:, None] * fx, n_t, "numpy"
        )
    initial_risk = SP.segment_sum(
        pairs.account, every_pair, ones, risk_cc * i_factor[pairs.cc][:, None] * fx, n_t, "numpy"
    )
    out = AfterTrades(
        nov=nov,
        span_risk=span_risk,
        maintenance=np.maximum(maintenance_risk - nov, 0.0),
        initial=np.maximum(initial_risk - nov, 0.0),
    )
    if group_rank is None:
        return out
    values = {
        "scan_risk": scan_risk,
        "active": after(base.active, touched.active),
        "intra": intra,
        "spot": spot,
        "credit": credit,
        "som": som,
        "risk_cc": risk_cc,
        "super": super_credit,
    }
    return replace(
        out, groups=_dense_groups(n_t, n_g, group_rank, pairs.account, pairs.cc, tables.fx, values)
    )


# -- the compiled path --------------------------------------------------------------------------------


def _inter_snapshots(
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
    held_out,
    snap_rem,
    snap_credit,
):  # pragma: no cover - compiled
    # span_pairs._inter (the same cascade, the same arithmetic in the same order), recording for
    # each account, spread and leg held the leg's remaining delta and credit before the spread
    n_g = net_left.shape[1]
    n_accounts = account_ptr.size - 1
    n_cc = pair_at.size // max(n_accounts, 1)
    n_words = spread_ccs.shape[1]
    rem = net_left.copy()
    max_legs = 1
    for s in range(leg_ptr.size - 1):
        max_legs = max(max_legs, leg_ptr[s + 1] - leg_ptr[s])
    legs = np.empty(max_legs, dtype=np.int64)
    for a in range(n_accounts):
        held = held_out[a]
        for w in range(n_words):
            held[w] = 0
        for p in range(account_ptr[a], account_ptr[a + 1]):
            c = pair_cc[p]
            held[c // 64] |= np.uint64(1) << np.uint64(c % 64)
        row = a * n_cc
        for s in range(leg_ptr.size - 1):
            l0 = leg_ptr[s]
            nl = leg_ptr[s + 1] - l0
            every = True
            for j in range(nl):
                c = leg_cc[l0 + j]
                p = pair_at[row + c]
                legs[j] = p
                if p >= 0:
                    for g in range(n_g):
                        snap_rem[a, s, j, g] = rem[p, g]
                        snap_credit[a, s, j, g] = credit[p, g]
                else:
                    every = False
            if not every:
                continue
            for g in range(n_g):
                _form_spread(rem, credit, wfpr, legs, l0, nl, leg_sign, leg_ratio, leg_rate, leg_flat, g)


def _cascade(
    a,
    nd,
    dl,
    pending,
    held,
    dirty,
    touched,
    rem,
    acc,
    wf,
    base_pair_at,
    b_wfpr,
    b_credit,
    i_leg_ptr,
    i_leg_cc,
    i_leg_sign,
    i_leg_ratio,
    i_leg_rate,
    i_leg_flat,
    next_spread,
    snap_rem,
    snap_credit,
):  # pragma: no cover - compiled (inlined)
    # the inter-commodity cascade of span_pairs._inter (the same arithmetic in the same order)
    # redone for account ``a`` (-1: none in the base) from the spreads that involve a dirty CC:
    # the dirty CCs dl[:nd], each with its next spread pending[c] (-1: none left); a clean leg
    # enters with its base remaining delta and credit before the spread and is then dirty; a leg
    # not touched back at the base's state after a spread (its state before its next spread, or
    # its final credit) is clean again. rem, acc, wf: per CC, remaining delta, credit and WFPR.
    n_c = rem.shape[0]
    n_g = rem.shape[1]
    while True:
        s = -1
        for q in range(nd):
            v = pending[dl[q]]
            if v >= 0 and (s < 0 or v < s):
                s = v
        if s < 0:
            break
        l0 = i_leg_ptr[s]
        nl = i_leg_ptr[s + 1] - l0
        formed = True
        for j in range(nl):
            c = i_leg_cc[l0 + j]
            if not held[c // 64] & (np.uint64(1) << np.uint64(c % 64)):
                formed = False
        if not formed:  # the dirty legs move on to their next spread
            for j in range(nl):
                c = i_leg_cc[l0 + j]
                if dirty[c // 64] & (np.uint64(1) << np.uint64(c % 64)):
                    pending[c] = next_spread[l0 + j]
            continue
        for j in range(nl):
            c = i_leg_cc[l0 + j]
            bit = np.uint64(1) << np.uint64(c % 64)
            if not dirty[c // 64] & bit:
                dirty[c // 64] |= bit
                dl[nd] = c
                nd += 1
                bp = base_pair_at[a * n_c + c]
                for g in range(n_g):
                    rem[c, g] = snap_rem[a, s, j, g]
                    acc[c, g] = snap_credit[a, s, j, g]
                    wf[c, g] = b_wfpr[bp, g]
            pending[c] = next_spread[l0 + j]
        rows = i_leg_cc[l0 : l0 + nl]  # the legs' CCs: rem, acc and wf are per CC
        for g in range(n_g):
            _form_spread(rem, acc, wf, rows, l0, nl, i_leg_sign, i_leg_ratio, i_leg_rate, i_leg_flat, g)
        for j in range(nl):  # a leg not touched back at the base's state is clean again
            c = i_leg_cc[l0 + j]
            bit = np.uint64(1) << np.uint64(c % 64)
            if touched[c // 64] & bit or not dirty[c // 64] & bit:
                continue
            same = True
            s2 = pending[c]
            if s2 >= 0:  # the base's state before the CC's next spread
                j2 = 0
                while i_leg_cc[i_leg_ptr[s2] + j2] != c:
                    j2 += 1
                for g in range(n_g):
                    if rem[c, g] != snap_rem[a, s2, j2, g] or acc[c, g] != snap_credit[a, s2, j2, g]:
                        same = False
                        break
            else:  # its final credit
                bp = base_pair_at[a * n_c + c]
                for g in range(n_g):
                    if acc[c, g] != b_credit[bp, g]:
                        same = False
                        break
            if same:
                dirty[c // 64] &= ~bit
                q = 0
                while dl[q] != c:
                    q += 1
                nd -= 1
                dl[q] = dl[nd]


def _after_kernel(
    trade_account,
    account_ptr,
    base_cc,
    base_pair_at,
    base_held,
    b_scan,
    b_active,
    b_intra,
    b_spot,
    b_super,
    b_som,
    b_credit,
    b_risk,
    b_wfpr,
    tp_ptr,
    tp_cc,
    t_scan,
    t_active,
    t_intra,
    t_spot,
    t_super,
    t_net_left,
    t_wfpr,
    t_som,
    fx,
    m_factor,
    i_factor,
    i_leg_ptr,
    i_leg_cc,
    i_leg_sign,
    i_leg_ratio,
    i_leg_rate,
    i_leg_flat,
    spread_ccs,
    snap_rem,
    snap_credit,
    first_spread,
    next_spread,
    b_prefix,
    b_terms,
    keep,
    group_rank,
    d_scan,
    d_active,
    d_intra,
    d_spot,
    d_credit,
    d_som,
    d_risk,
    d_held,
    d_super,
    span_risk,
    maintenance_risk,
    initial_risk,
):  # pragma: no cover - compiled
    # per trade: the inter-commodity cascade of span_pairs._inter redone only from the spreads
    # that involve a combined commodity whose delta changed ("dirty": the touched ones, then every
    # leg of a spread redone), a clean leg entering with its base remaining delta and credit
    # before that spread; a leg not touched whose remaining delta and credit after a spread
    # redone are again the base's (equal to the base's state before its next spread,
    # ``next_leg``, or to its final credit) is clean again. Then the after-book's pairs (the
    # account's merged with the touched ones, by CC) summed as the book's margin sums them: the
    # account's pairs before the first dirty CC from the base's running sums (``b_prefix``: the
    # same additions in the same order), unless the per CC result is kept
    n_t = trade_account.size
    n_c = fx.size
    n_g = span_risk.shape[1]
    n_words = spread_ccs.shape[1]
    n_chunks = min(n_t, _CHUNKS)
    for chunk in prange(n_chunks):
        rem = np.zeros((n_c, n_g))
        acc = np.zeros((n_c, n_g))
        wf = np.zeros((n_c, n_g))
        dirty = np.zeros(n_words, dtype=np.uint64)
        touched = np.zeros(n_words, dtype=np.uint64)
        held = np.zeros(n_words, dtype=np.uint64)
        pending = np.zeros(n_c, dtype=np.int64)
        dl = np.zeros(n_c, dtype=np.int64)
        for t in range(chunk * n_t // n_chunks, (chunk + 1) * n_t // n_chunks):
            a = trade_account[t]
            for w in range(n_words):
                dirty[w] = 0
                touched[w] = 0
                held[w] = base_held[a, w] if a >= 0 else 0
            for j in range(tp_ptr[t], tp_ptr[t + 1]):
                c = tp_cc[j]
                bit = np.uint64(1) << np.uint64(c % 64)
                dirty[c // 64] |= bit
                touched[c // 64] |= bit
                held[c // 64] |= bit
                for g in range(n_g):
                    rem[c, g] = t_net_left[j, g]
                    wf[c, g] = t_wfpr[j, g]
                    acc[c, g] = 0.0
            # the spreads to redo, in priority order: the next spread of each dirty CC
            # (pending[c]; -1: none left), the dirty CCs listed in dl[:nd]
            nd = 0
            for j in range(tp_ptr[t], tp_ptr[t + 1]):
                c = tp_cc[j]
                pending[c] = first_spread[c]
                dl[nd] = c
                nd += 1
            _cascade(
                a,
                nd,
                dl,
                pending,
                held,
                dirty,
                touched,
                rem,
                acc,
                wf,
                base_pair_at,
                b_wfpr,
                b_credit,
                i_leg_ptr,
                i_leg_cc,
                i_leg_sign,
                i_leg_ratio,
                i_leg_rate,
                i_leg_flat,
                next_spread,
                snap_rem,
                snap_credit,
            )
            # the after-book's pairs in CC order: the account's, merged with the touched ones
            i = account_ptr[a] if a >= 0 else 0
            i_end = account_ptr[a + 1] if a >= 0 else 0
            j = tp_ptr[t]
            j_end = tp_ptr[t + 1]
            if not keep:  # the sums only, per grid point in registers
                r0 = 0
                if a >= 0:  # the account's clean pairs before the first dirty CC: the base's sums
                    while i < i_end and not dirty[base_cc[i] // 64] & (
                        np.uint64(1) << np.uint64(base_cc[i] % 64)
                    ):
                        i += 1
                    if j < j_end:  # touched pairs are dirty
                        while i > account_ptr[a] and base_cc[i - 1] >= tp_cc[j]:
                            i -= 1
                    r0 = i + a
                i_start = i
                for g in range(n_g):
                    i = i_start
                    j = tp_ptr[t]
                    sr = b_prefix[0, r0, g] if a >= 0 else 0.0
                    mr = b_prefix[1, r0, g] if a >= 0 else 0.0
                    ir = b_prefix[2, r0, g] if a >= 0 else 0.0
                    while i < i_end or j < j_end:
                        if j < j_end and (i >= i_end or tp_cc[j] <= base_cc[i]):
                            c = tp_cc[j]
                            if i < i_end and base_cc[i] == c:
                                i += 1
                            x = t_scan[j, g] + t_intra[j, g] + t_spot[j, g] - acc[c, g]
                            x = x - t_super[j, g]
                            r = max(x, t_som[j])
                            j += 1
                        else:
                            c = base_cc[i]
                            e = i
                            i += 1
                            if not dirty[c // 64] & (np.uint64(1) << np.uint64(c % 64)):
                                sr += b_terms[0, e, g]
                                mr += b_terms[1, e, g]
                                ir += b_terms[2, e, g]
                                continue
                            x = b_scan[e, g] + b_intra[e, g] + b_spot[e, g] - acc[c, g]
                            x = x - b_super[e, g]
                            r = max(x, b_som[e])
                        sr += 1.0 * (r * fx[c])
                        mr += 1.0 * (r * m_factor[c] * fx[c])
                        ir += 1.0 * (r * i_factor[c] * fx[c])
                    span_risk[t, g] = sr
                    maintenance_risk[t, g] = mr
                    initial_risk[t, g] = ir
                continue
            for g in range(n_g):
                span_risk[t, g] = 0.0
                maintenance_risk[t, g] = 0.0
                initial_risk[t, g] = 0.0
            while i < i_end or j < j_end:
                if j < j_end and (i >= i_end or tp_cc[j] <= base_cc[i]):
                    c = tp_cc[j]
                    e = -(j + 1)
                    if i < i_end and base_cc[i] == c:
                        i += 1
                    j += 1
                else:
                    c = base_cc[i]
                    e = i
                    i += 1
                is_dirty = dirty[c // 64] & (np.uint64(1) << np.uint64(c % 64))
                col = group_rank[c] if keep else 0
                for g in range(n_g):
                    if e < 0:
                        cr = acc[c, g]
                        x = t_scan[-e - 1, g] + t_intra[-e - 1, g] + t_spot[-e - 1, g] - cr
                        x = x - t_super[-e - 1, g]
                        r = max(x, t_som[-e - 1])
                    elif is_dirty:
                        cr = acc[c, g]
                        x = b_scan[e, g] + b_intra[e, g] + b_spot[e, g] - cr
                        x = x - b_super[e, g]
                        r = max(x, b_som[e])
                    else:
                        cr = b_credit[e, g]
                        r = b_risk[e, g]
                    span_risk[t, g] += 1.0 * (r * fx[c])
                    maintenance_risk[t, g] += 1.0 * (r * m_factor[c] * fx[c])
                    initial_risk[t, g] += 1.0 * (r * i_factor[c] * fx[c])
                    if keep:  # the dense result, in the reporting currency (as the book's)
                        f = fx[c]
                        if e < 0:
                            d_scan[t, col, g] = t_scan[-e - 1, g] * f
                            d_active[t, col, g] = t_active[-e - 1, g] + 1
                            d_intra[t, col, g] = t_intra[-e - 1, g] * f
                            d_spot[t, col, g] = t_spot[-e - 1, g] * f
                            d_som[t, col, g] = t_som[-e - 1] * f
                            d_super[t, col, g] = t_super[-e - 1, g] * f
                        else:
                            d_scan[t, col, g] = b_scan[e, g] * f
                            d_active[t, col, g] = b_active[e, g] + 1
                            d_intra[t, col, g] = b_intra[e, g] * f
                            d_spot[t, col, g] = b_spot[e, g] * f
                            d_som[t, col, g] = b_som[e] * f
                            d_super[t, col, g] = b_super[e, g] * f
                        d_credit[t, col, g] = cr * f
                        d_risk[t, col, g] = r * f
                if keep:
                    d_held[t, col] = True


def _prefix_kernel(account_ptr, base_cc, b_risk, fx, m_factor, i_factor, prefix, terms):  # pragma: no cover
    # per pair, its terms of the SPAN risk, the maintenance and the initial risk as _after_kernel
    # adds them (terms[:, e]), and per account their running sums in CC order (prefix[:, ptr[a]
    # + a + i]: the sum of the account's first i pairs)
    n_g = b_risk.shape[1]
    for a in range(account_ptr.size - 1):
        r0 = account_ptr[a] + a
        for g in range(n_g):
            prefix[0, r0, g] = 0.0
            prefix[1, r0, g] = 0.0
            prefix[2, r0, g] = 0.0
        for e in range(account_ptr[a], account_ptr[a + 1]):
            c = base_cc[e]
            for g in range(n_g):
                r = b_risk[e, g]
                terms[0, e, g] = 1.0 * (r * fx[c])
                terms[1, e, g] = 1.0 * (r * m_factor[c] * fx[c])
                terms[2, e, g] = 1.0 * (r * i_factor[c] * fx[c])
                for v in range(3):
                    prefix[v, e + a + 1, g] = prefix[v, e + a, g] + terms[v, e, g]


def _spread_order(inter: SP.InterTable, n_cc: int) -> tuple[np.ndarray, np.ndarray]:
    """The inter spreads of each combined commodity in priority order, as a chain: the first
    spread with a leg on each CC ``(C,)``, and per leg the next spread after the leg's with a leg
    on the same CC ``(legs,)`` (-1: none)."""
    n_l = inter.leg_cc.size
    spread = np.repeat(np.arange(inter.n_spreads), np.diff(inter.leg_ptr))
    first = np.full(n_cc, -1, dtype=np.int64)
    nxt = np.full(n_l, -1, dtype=np.int64)
    if not n_l:
        return first, nxt
    order = np.lexsort((spread, inter.leg_cc))  # by CC, then spread
    cc, sp = inter.leg_cc[order], spread[order]
    head = np.concatenate([[True], cc[1:] != cc[:-1]])
    first[cc[head]] = sp[head]
    # per leg, the first spread after its own in its CC's run (legs of one spread on one CC skipped)
    run_end = np.searchsorted(cc, cc, side="right")
    after = np.searchsorted(cc * (inter.n_spreads + 1) + sp, cc * (inter.n_spreads + 1) + sp, side="right")
    ok = after < run_end
    nxt[order[ok]] = sp[np.minimum(after, n_l - 1)][ok]
    return first, nxt


_COMPILED: dict = {}


#: Kernels with a parallel variant (``prange`` over blocks of trades).
_PARALLEL = {"_after_kernel", "_account_sums_kernel", "_without_kernel"}
#: Trades from which those kernels run their parallel variant: below it the threads' start-up
#: costs more than it saves.
PARALLEL_MIN_TRADES = 100_000


def _kernel(name: str, items: int = 0):
    """The compiled kernel ``name`` (numba, cached on disk), built on first use; its parallel
    variant when it has one and ``items`` (trades) >= :data:`PARALLEL_MIN_TRADES`."""
    parallel = name in _PARALLEL and items >= PARALLEL_MIN_TRADES
    key = (name, parallel)
    if key not in _COMPILED:
        _COMPILED[key] = compile_kernel(
            globals()[name], helpers=_helpers(), suffix="_parallel" if parallel else "", parallel=parallel
        )
    return _COMPILED[key]


def _helpers() -> dict:
    """The compiled helpers the kernels call (inlined into them)."""
    if "_cascade" not in _COMPILED:
        _COMPILED["_cascade"] = compile_kernel(_cascade, inline="always", helpers=SP._helpers())
    return {**SP._helpers(), "_cascade": _COMPILED["_cascade"]}


def _after_numba(
    base: BaseState,
    tables: SpanTables,
    trade_account: np.ndarray,
    tp: SP.Pairs,
    touched: _PairState,
    nov: np.ndarray,
    group_rank: np.ndarray | None,
) -> AfterTrades:
    """The per-trade pass over the after-books' pairs (compiled)."""
    n_t, n_g = trade_account.size, tables.risk_array.shape[1]
    bp = base.pairs
    tp_ptr = np.searchsorted(tp.account, np.arange(n_t + 1)).astype(np.int64)
    keep = group_rank is not None
    n_out = int(group_rank.max(initial=-1)) + 1 if group_rank is not None else 0
    rank = np.zeros(tables.n_cc, dtype=np.int64) if group_rank is None else group_rank.astype(np.int64)
    shape = (n_t, n_out, n_g) if keep else (0, 0, n_g)
    d_scan, d_intra, d_spot, d_credit, d_som, d_risk, d_super = (np.zeros(shape) for _ in range(7))
    d_active = np.ones(shape, dtype=np.int64)
    d_held = np.zeros(shape[:2], dtype=bool)
    span_risk, initial_risk = np.empty((n_t, n_g)), np.empty((n_t, n_g))
    maintenance_risk = np.empty((n_t, n_g))
    inter = tables.inter
    if inter is None:  # no spread: the cascade does nothing
        inter = SP.inter_table([])
    m_factor, i_factor = _class_factors(tables)
    b_prefix = np.empty((3, bp.size + bp.n_accounts, n_g))
    b_terms = np.empty((3, bp.size, n_g))
    _kernel("_prefix_kernel")(
        bp.account_ptr.astype(np.int64),
        bp.cc.astype(np.int64),
        np.ascontiguousarray(base.risk_cc, dtype=float),
        np.ascontiguousarray(tables.fx, dtype=float),
        m_factor,
        i_factor,
        b_prefix,
        b_terms,
    )
    _kernel("_after_kernel", n_t)(
        trade_account,
        bp.account_ptr.astype(np.int64),
        bp.cc.astype(np.int64),
        bp.pair_at,
        base.held_sets,
        base.scan_risk,
        base.active,
        base.intra,
        base.spot,
        np.zeros_like(base.scan_risk)
        if base.super_credit is None
        else np.ascontiguousarray(base.super_credit),
        np.ascontiguousarray(base.som, dtype=float),
        base.credit,
        base.risk_cc,
        np.ascontiguousarray(base.wfpr),
        tp_ptr,
        tp.cc.astype(np.int64),
        touched.scan_risk,
        touched.active,
        touched.intra,
        touched.spot,
        np.zeros_like(touched.scan_risk)
        if touched.super_credit is None
        else np.ascontiguousarray(touched.super_credit),
        np.ascontiguousarray(touched.net_left),
        np.ascontiguousarray(touched.wfpr),
        np.ascontiguousarray(touched.som, dtype=float),
        np.ascontiguousarray(tables.fx, dtype=float),
        m_factor,
        i_factor,
        inter.leg_ptr,
        inter.leg_cc,
        inter.leg_sign,
        inter.leg_ratio,
        inter.leg_rate,
        inter.leg_flat,
        inter.cc_sets(tables.n_cc),
        base.snap_rem,
        base.snap_credit,
        *_spread_order(inter, tables.n_cc),
        b_prefix,
        b_terms,
        keep,
        rank,
        d_scan,
        d_active,
        d_intra,
        d_spot,
        d_credit,
        d_som,
        d_risk,
        d_held,
        d_super,
        span_risk,
        maintenance_risk,
        initial_risk,
    )
    groups = None
    if keep:
        groups = dict(
            zip(GROUP_VARIABLES, (d_scan, d_active, d_intra, d_spot, d_credit, d_som, d_risk, d_held))
        )
        if tables.super_ is not None:
            groups["super_spread_credit"] = d_super
    return AfterTrades(
        nov=nov,
        span_risk=span_risk,
        maintenance=np.maximum(maintenance_risk - nov, 0.0),
        initial=np.maximum(initial_risk - nov, 0.0),
        groups=groups,
    )


def _class_factors(tables: SpanTables) -> tuple[np.ndarray, np.ndarray]:
    """Per CC, the factors from its risk to its maintenance and to its initial requirement: 1 and
    the ratio (rate class maintenance), 1 / ratio and 1 (rate class initial)."""
    ratio = np.ascontiguousarray(tables.ratio, dtype=float)
    if tables.initial_class is None:
        return np.ones_like(ratio), ratio
    ic = np.asarray(tables.initial_class, dtype=bool)
    return np.where(ic, 1.0 / ratio, 1.0), np.where(ic, 1.0, ratio)


# -- the leave-one-out risk of each position (SPAN attribution's marginal) ----------------------------


def risk_without(
    position_account: np.ndarray,
    contract: np.ndarray,
    qty: np.ndarray,
    n_accounts: int,
    tables: SpanTables,
    linked: np.ndarray,
    repeats: bool | None = None,
) -> np.ndarray:
    """Per position, the risk of its account's combined commodities in its linked set (CCs joined
    by inter spreads) without the position, in the maintenance class [reporting currency].

    The arithmetic of margining, for each position, its account's rows in the linked set less
    the position as one account (rows by contract, netted per contract when ``net``, else in
    book order): only the position's own combined commodity is scanned, spread and counted again
    (its other rows), the other CCs of the set keep the book's state, the inter-commodity cascade
    is redone from the spreads the change reaches, and the set's CC risks are summed in CC order
    from 0. Numba engine only; no super spreads (their credit moves the months of every CC of a
    set).

    Parameters
    ----------
    position_account, contract, qty
        Account index, contract (row of the tables) and signed quantity [contracts] per position.
    n_accounts
        Number of accounts.
    tables
        The plan's tables (``super_`` ``None``).
    linked
        Linked set of each CC ``(C,)``.
    repeats
        Whether the book holds a contract in two rows of one account (``None``: unknown, found
        here). The variants are netted per contract (in contract order) when one of them holds a
        contract twice (its linked set less its row), else kept in book order.

    Returns
    -------
    numpy.ndarray
        ``(N, G)``.
    """
    if tables.super_ is not None:
        raise ValueError("risk_without: super spreads are not supported")
    n, n_g = qty.size, tables.risk_array.shape[1]
    n_c, n_k = tables.n_cc, tables.risk_array.shape[0]
    if n == 0:
        return np.zeros((0, n_g))
    position_account = np.asarray(position_account, dtype=np.int64)
    contract = np.asarray(contract, dtype=np.int64)
    qty = np.asarray(qty, dtype=float)
    cc = tables.cc_of_k[contract].astype(np.int64)
    cc_key = position_account * n_c + cc
    net = False
    if repeats is None or repeats:  # by pair then contract (ties in book order): runs of a contract
        by_contract = cc_key * n_k + contract
        order = np.argsort(by_contract, kind="stable")
        sorted_key = by_contract[order]
        new_run = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
        run = np.cumsum(new_run) - 1
        run_len = np.bincount(run)[run]
        if (run_len >= 2).any():  # a variant nets rows when its linked set less its row repeats a contract
            set_key = position_account * (int(linked.max()) + 1) + linked[cc]
            set_size = np.bincount(set_key)[set_key[order]]
            net = bool(((run_len >= 3) | ((run_len == 2) & (set_size > 2))).any())
    if net:  # the book netted per (account, contract), in contract order: 0 + its rows in book order
        heads = order[new_run]
        b_a, b_k = position_account[heads], contract[heads]
        b_q = np.bincount(run, weights=qty[order], minlength=heads.size)
    else:  # rows by pair, in book order
        order = np.argsort(cc_key, kind="stable")
        b_a, b_k, b_q = position_account[order], contract[order], qty[order]
    pairs = SP.pairs_of(b_a, tables.cc_of_k[b_k], n_accounts, n_c)
    st = _pass_and_spreads(pairs, b_a, b_k, b_q, tables)
    credit, held_sets, snap_rem, snap_credit = _base_credit(st, tables, "numba")
    risk_cc = np.maximum(st.scan_risk + st.intra + st.spot - credit, st.som[:, None])
    # each position's own pair without it: its pair's other rows (a pseudo-account per position)
    variant, v_k, v_q = LOO.variant_rows(cc_key, order, contract, qty, net, "numba")
    own = SP.Pairs(
        account=np.arange(n, dtype=np.int64),
        cc=cc[order],
        of_position=variant,
        account_ptr=np.arange(n + 1, dtype=np.int64),
        n_accounts=n,
        n_cc=n_c,
        pair_at=np.zeros(0, dtype=np.int32),
    )
    touched = _pass_and_spreads(own, variant, v_k, v_q, tables)
    empty = np.bincount(variant, minlength=n) == 0
    inter = tables.inter if tables.inter is not None else SP.inter_table([])
    m_factor, _ = _class_factors(tables)
    b_terms = np.ascontiguousarray(
        1.0 * (risk_cc * m_factor[pairs.cc][:, None] * tables.fx[pairs.cc][:, None])
    )
    out = np.empty((n, n_g))
    _kernel("_without_kernel", n)(
        position_account[order],
        cc[order],
        np.ascontiguousarray(linked, dtype=np.int64),
        empty,
        pairs.account_ptr.astype(np.int64),
        pairs.cc.astype(np.int64),
        pairs.pair_at,
        held_sets,
        st.scan_risk,
        st.intra,
        st.spot,
        np.ascontiguousarray(st.som, dtype=float),
        credit,
        np.ascontiguousarray(st.wfpr),
        b_terms,
        touched.scan_risk,
        touched.intra,
        touched.spot,
        np.ascontiguousarray(touched.net_left),
        np.ascontiguousarray(touched.wfpr),
        np.ascontiguousarray(touched.som, dtype=float),
        np.ascontiguousarray(tables.fx, dtype=float),
        m_factor,
        inter.leg_ptr,
        inter.leg_cc,
        inter.leg_sign,
        inter.leg_ratio,
        inter.leg_rate,
        inter.leg_flat,
        *_spread_order(inter, n_c),
        snap_rem,
        snap_credit,
        out,
    )
    result = np.empty((n, n_g))
    result[order] = out
    return result


def _pass_and_spreads(
    pairs: SP.Pairs, account: np.ndarray, contract: np.ndarray, qty: np.ndarray, tables: SpanTables
) -> _PairState:
    """The pairs' state from their rows (as given): one pass of :func:`span_pairs.book_pass`,
    then the spreads and the short option minimum (numba)."""
    row0 = _row0(pairs, tables.n_months)
    _, scan_risk, active, prisk, ledger, counts = SP.book_pass(
        pairs,
        account,
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
        "numba",
        keep_loss=False,
    )
    n_g = ledger.shape[1]
    return _spreads_and_som(
        pairs,
        np.zeros((0, n_g, 0)),
        row0,
        ledger,
        counts,
        tables,
        "numba",
        scanned=(scan_risk, active, prisk),
    )


def _without_kernel(
    row_account,
    row_cc,
    linked,
    empty,
    account_ptr,
    base_cc,
    base_pair_at,
    base_held,
    b_scan,
    b_intra,
    b_spot,
    b_som,
    b_credit,
    b_wfpr,
    b_terms,
    t_scan,
    t_intra,
    t_spot,
    t_net_left,
    t_wfpr,
    t_som,
    fx,
    m_factor,
    i_leg_ptr,
    i_leg_cc,
    i_leg_sign,
    i_leg_ratio,
    i_leg_rate,
    i_leg_flat,
    first_spread,
    next_spread,
    snap_rem,
    snap_credit,
    out,
):  # pragma: no cover - compiled
    # per position v (sorted by pair): its pair without it (t_*, an empty pair adds nothing: the
    # variant does not hold the CC, and as a held CC without delta it forms no spread), the
    # cascade redone from its CC's spreads, then the linked set's CC risks in the maintenance
    # class summed in CC order from 0, as the margin of the variant sums them
    n_t = row_account.size
    n_c = fx.size
    n_g = out.shape[1]
    n_words = base_held.shape[1]
    n_chunks = min(n_t, _CHUNKS)
    for chunk in prange(n_chunks):
        rem = np.zeros((n_c, n_g))
        acc = np.zeros((n_c, n_g))
        wf = np.zeros((n_c, n_g))
        dirty = np.zeros(n_words, dtype=np.uint64)
        touched = np.zeros(n_words, dtype=np.uint64)
        held = np.zeros(n_words, dtype=np.uint64)
        pending = np.zeros(n_c, dtype=np.int64)
        dl = np.zeros(n_c, dtype=np.int64)
        for v in range(chunk * n_t // n_chunks, (chunk + 1) * n_t // n_chunks):
            a = row_account[v]
            c = row_cc[v]
            for w in range(n_words):
                dirty[w] = 0
                touched[w] = 0
                held[w] = base_held[a, w]
            bit = np.uint64(1) << np.uint64(c % 64)
            dirty[c // 64] |= bit
            touched[c // 64] |= bit
            for g in range(n_g):
                rem[c, g] = t_net_left[v, g]
                wf[c, g] = t_wfpr[v, g]
                acc[c, g] = 0.0
            pending[c] = first_spread[c]
            dl[0] = c
            _cascade(
                a,
                1,
                dl,
                pending,
                held,
                dirty,
                touched,
                rem,
                acc,
                wf,
                base_pair_at,
                b_wfpr,
                b_credit,
                i_leg_ptr,
                i_leg_cc,
                i_leg_sign,
                i_leg_ratio,
                i_leg_rate,
                i_leg_flat,
                next_spread,
                snap_rem,
                snap_credit,
            )
            own_set = linked[c]
            for g in range(n_g):
                x = 0.0
                for e in range(account_ptr[a], account_ptr[a + 1]):
                    ce = base_cc[e]
                    if linked[ce] != own_set:
                        continue
                    if ce == c:
                        if empty[v]:
                            continue
                        r = max(t_scan[v, g] + t_intra[v, g] + t_spot[v, g] - acc[c, g], t_som[v])
                    elif dirty[ce // 64] & (np.uint64(1) << np.uint64(ce % 64)):
                        r = max(b_scan[e, g] + b_intra[e, g] + b_spot[e, g] - acc[ce, g], b_som[e])
                    else:
                        x += b_terms[e, g]
                        continue
                    x += 1.0 * (r * m_factor[ce] * fx[ce])
                out[v, g] = x
