"""SPAN what-if, incrementally: many candidate trades against a book without margining each after-book.

The book's accounts that the trades go to are margined once, keeping their state per combined
commodity (:func:`marginsim.kernels.span_whatif.base_state`); each trade then recomputes only the
combined commodities its legs touch, the inter-commodity credits of its account and the account
sums (:func:`marginsim.kernels.span_whatif.after_trades`), for every trade at once. The after
figures are those of margining each after-book (the account's positions, then the trade's legs) in
one batch of pseudo-accounts: bit for bit with the numba engine on a clearing-house file's plan, to
rounding otherwise.

SPAN nets the rows of one contract in an account (losses, deltas and net option values are linear
in the quantity; the short option minimum counts each contract's net quantity), so removing a
position is adding its opposite: :func:`span_marginal` gives every position's leave-one-out
marginal requirement as one batch of such trades.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from ...errors import InputError
from ...kernels import Engine, resolve_engine
from ...kernels import span_whatif as W
from ...model import Inputs, as_names, contract_indices
from ...outputs import describe
from ...params.span import SpanParams
from .arrays import in_scope
from .book import _book_in_scope
from .outputs import OUTPUTS
from .plan import _file_plan, _joined_sets, _Plan, _plan, _ranks

if TYPE_CHECKING:
    from ...trades import TradeBatch

__all__ = ["span_what_if", "span_what_if_arrays", "span_marginal", "MAX_BLOCK_PAIRS"]

#: Trades are evaluated in blocks of at most about this many (trade, combined commodity) pairs of
#: their after-books (a block's arrays are a few of this size x grid points; larger batches, e.g.
#: the leave-one-out of every position of a large book, run block after block).
MAX_BLOCK_PAIRS = 2_000_000

_PER_GROUP = (
    "scan_risk",
    "active_scenario",
    "intra_spread_charge",
    "spot_charge",
    "inter_spread_credit",
    "short_option_minimum",
    "risk",
)


def _tables(plan: _Plan) -> W.SpanTables:
    """The kernel tables of a plan."""
    return W.SpanTables(
        risk_array=plan.risk_array,
        scenario_pair=plan.scenario_pair,
        time_scenarios=plan.time_scenarios,
        cc_of_k=plan.cc_of_k,
        month_idx=plan.month_idx,
        n_months=plan.n_months,
        delta=plan.delta,
        is_call=plan.is_call,
        is_put=plan.is_put,
        intra=plan.intra,
        inter=plan.inter,
        som_rate=plan.som_rate,
        som_net=plan.som_net,
        ratio=plan.ratio,
        fx=plan.fx,
        nov=plan.nov,
        initial_class=plan.initial_class,
        wfpr_mode=plan.wfpr_mode,
        wfpr_scan=plan.wfpr_scan,
        super_=plan.super_,
        super_comp=None if plan.super_ is None else _joined_sets(plan.n_cc, [plan.super_]),
        exposure=plan.exposure,
    )


def span_what_if(
    inputs: Inputs,
    trades: TradeBatch,
    before: xr.Dataset | None = None,
    *,
    params: SpanParams | None = None,
    engine: Engine = "auto",
    groups: bool = True,
) -> xr.Dataset:
    """SPAN of every trade's after-book: the trade's account with the trade's legs added.

    Parameters
    ----------
    inputs
        The data model of the book (in memory).
    trades
        The candidate trades (:class:`marginsim.trades.TradeBatch`).
    before
        SPAN's result for the book (the registry's ``what_if`` hook passes it); not needed: the
        accounts' state per combined commodity is computed here.
    params
        SPAN parameters; default: the scenario's.
    engine
        ``"numba"``, ``"numpy"`` or ``"auto"``.
    groups
        Include the per combined commodity variables (dims ``trade``, ``group``).

    Returns
    -------
    xarray.Dataset
        SPAN's result variables with ``trade`` in place of ``account`` (coord: the trade ids;
        ``account``: each trade's account): ``maintenance``, ``initial``, ``net_option_value``,
        ``span_risk`` per trade (and grid point) [reporting currency], ``exposure_margin`` too with
        ``span.exposure_margin`` (in ``maintenance`` and ``initial``); with ``groups``, per trade
        and combined commodity ``scan_risk``, ``active_scenario``, ``intra_spread_charge``,
        ``spot_charge``, ``inter_spread_credit``, ``short_option_minimum``, ``risk`` and ``held``,
        and ``super_spread_credit`` with super spreads (as the book's result has it).
    """
    return span_what_if_arrays(
        inputs,
        trades.account,
        trades.leg_trade,
        trades.leg_contract,
        trades.leg_quantity,
        ids=trades.ids,
        params=params,
        engine=engine,
        groups=groups,
    )


def span_what_if_arrays(
    inputs: Inputs,
    account: Sequence[str] | np.ndarray,
    leg_trade: Sequence[int] | np.ndarray,
    leg_contract: Sequence[str] | np.ndarray,
    leg_quantity: Sequence[float] | np.ndarray,
    *,
    ids: Sequence[str] | np.ndarray | None = None,
    params: SpanParams | None = None,
    engine: Engine = "auto",
    groups: bool = True,
) -> xr.Dataset:
    """:func:`span_what_if` on arrays: trades by account, legs by trade, contract and quantity.

    Parameters
    ----------
    inputs
        The data model of the book (in memory).
    account
        The account of each trade (names of the book's accounts; another name is an account
        without positions).
    leg_trade
        Index of each leg's trade (legs of one trade in order).
    leg_contract
        Contract of each leg: its id, or its integer index into ``inputs.contracts``.
    leg_quantity
        Signed quantity of each leg [contracts], long positive.
    ids
        Trade ids (text; default: the integers ``0, 1, ...``).
    params, engine, groups
        As for :func:`span_what_if`.

    Returns
    -------
    xarray.Dataset
        As :func:`span_what_if`.
    """
    inputs.require_in_memory("span_what_if")
    params = params or inputs.span_params or inputs.scenario.span or SpanParams()
    account = np.asarray(account, dtype=object).reshape(-1)
    n_t = account.size
    leg_trade = np.asarray(leg_trade, dtype=np.int64).reshape(-1)
    leg_q = np.asarray(leg_quantity, dtype=float).reshape(-1)
    leg_c = np.asarray(leg_contract).reshape(-1)
    if not leg_trade.size == leg_q.size == leg_c.size:
        raise ValueError("leg_trade, leg_contract and leg_quantity must have one element per leg")
    if leg_trade.size and (leg_trade.min() < 0 or leg_trade.max() >= n_t):
        raise ValueError("leg_trade must index the trades (0 <= leg_trade < number of trades)")
    if leg_c.dtype.kind not in "iu":
        leg_c = contract_indices(
            inputs.contracts, leg_c, normalise=inputs.normalise_contract_id, file=inputs.scenario.file
        )
    if not np.isfinite(leg_q).all():
        raise InputError("a trade's quantity is not a finite number", file=inputs.scenario.file)
    if leg_trade.size > 1 and (np.diff(leg_trade) < 0).any():  # legs by trade, each trade's in order
        order = np.argsort(leg_trade, kind="stable")
        leg_trade, leg_c, leg_q = leg_trade[order], leg_c[order], leg_q[order]
    # the book's index of each trade's account (-1: an account without positions): the distinct
    # accounts of the trades looked up, not every trade's
    codes, uniq = pd.factorize(account)
    book_names = pd.Index(as_names(inputs.book["account_name"].values, trusted=True), dtype=object)
    trade_acct = book_names.get_indexer(pd.Index(uniq, dtype=object))[codes]
    state = _prepare(inputs, params, trade_acct, leg_c, engine)
    keep = state.plan.local[leg_c] >= 0  # a leg out of SPAN's scope changes nothing of SPAN
    legs = (leg_trade[keep], state.plan.local[leg_c[keep]], leg_q[keep])
    out_cc = _group_columns(state, legs[1]) if groups else None
    rank = None if out_cc is None else _ranks(out_cc, state.plan.n_cc)
    after = _after_in_blocks(state, *legs, rank)
    tid = np.arange(n_t) if ids is None else as_names(ids)
    ds = _dataset(inputs, state, after, account, tid, out_cc)
    return describe(ds, OUTPUTS)


class _State:
    """What every block of trades shares: the plan and its tables, the traded accounts' positions
    in scope (``book``), their base state, and each trade's account in the base state
    (``trade_account``; -1: an account without positions in the book)."""

    def __init__(
        self,
        plan: _Plan,
        tables: W.SpanTables,
        book: xr.Dataset,
        base: W.BaseState,
        trade_account: np.ndarray,
        engine: str,
    ) -> None:
        self.plan, self.tables, self.book, self.base = plan, tables, book, base
        self.trade_account, self.engine = trade_account, engine


def _prepare(
    inputs: Inputs, params: SpanParams, trade_acct: np.ndarray, leg_c: np.ndarray, engine: Engine
) -> _State:
    """The plan, the positions in scope of the traded accounts, and their base state."""
    eng = resolve_engine(engine)
    n_a = inputs.book.sizes["account"]
    traded = np.zeros(n_a, dtype=bool)
    traded[trade_acct[trade_acct >= 0]] = True
    pos_acct = inputs.book["account_index"].values
    mine = np.flatnonzero(traded[pos_acct])
    cached = _file_plan(inputs, params, engine)
    if cached is not None:  # a clearing-house file's plan of every contract
        scope, plan = cached
    else:  # the plan of the after-books' contracts: the traded accounts' and the legs'
        scope = in_scope(inputs, params)
        held = np.zeros(inputs.contracts.sizes["contract"], dtype=bool)
        held[inputs.book["contract_index"].values[mine]] = True
        held[leg_c] = True
        plan = _plan(inputs, params, np.flatnonzero(held & scope), engine)
    every = mine.size == inputs.book.sizes["position"]  # every account traded: the book as it is
    book = _book_in_scope(inputs.book if every else inputs.book.isel(position=mine), scope)
    compact = np.cumsum(traded) - 1
    tables = _tables(plan)
    base = W.base_state(
        compact[book["account_index"].values],
        plan.local[book["contract_index"].values],
        book["quantity"].values,
        int(traded.sum()),
        tables,
        eng,
    )
    trade_account = np.full(trade_acct.size, -1, dtype=np.int64)
    trade_account[trade_acct >= 0] = compact[trade_acct[trade_acct >= 0]]
    return _State(plan, tables, book, base, trade_account, eng)


def _after_in_blocks(
    state: _State, leg_trade: np.ndarray, leg_k: np.ndarray, leg_q: np.ndarray, group_rank: np.ndarray | None
) -> W.AfterTrades:
    """:func:`~marginsim.kernels.span_whatif.after_trades` over blocks of trades of at most about
    :data:`MAX_BLOCK_PAIRS` after-book pairs x grid points (one block for most batches)."""
    base, acct = state.base, state.trade_account
    n_t = acct.size
    n_g = state.tables.risk_array.shape[1]
    size = W._pairs_of_accounts(base.pairs.account_ptr, acct)[1] + np.bincount(leg_trade, minlength=n_t)
    block = np.cumsum(size * n_g) // max(MAX_BLOCK_PAIRS, 1)  # block of each trade
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(block)) + 1, [n_t]])
    leg_at = np.searchsorted(leg_trade, bounds)
    parts = []
    for b in range(bounds.size - 1):  # blocks of trades (one for most batches), each vectorised
        t0, t1, l0, l1 = bounds[b], bounds[b + 1], leg_at[b], leg_at[b + 1]
        parts.append(
            W.after_trades(
                base,
                state.tables,
                acct[t0:t1],
                leg_trade[l0:l1] - t0,
                leg_k[l0:l1],
                leg_q[l0:l1],
                state.engine,
                group_rank=group_rank,
            )
        )
    if len(parts) == 1:
        return parts[0]
    per_trade = {
        name: np.concatenate([getattr(r, name) for r in parts])
        for name in ("nov", "span_risk", "maintenance", "initial")
    }
    groups = None
    if group_rank is not None:
        first = parts[0].groups
        groups = {
            name: np.concatenate([r.groups[name] for r in parts if r.groups is not None])
            for name in ([] if first is None else list(first))
        }
    exposure = None
    if parts[0].exposure is not None:
        exposure = np.concatenate([r.exposure for r in parts if r.exposure is not None])
    return W.AfterTrades(**per_trade, groups=groups, exposure=exposure)


def _grid_coords(inputs: Inputs, plan: _Plan) -> dict:
    """Coordinates of the grid dims of a plan's results."""
    arrays = plan.arrays
    coords = {}
    for d in plan.gd:
        coords[d] = (
            arrays[d].values
            if d in arrays.coords
            else (inputs.market[d].values if d in inputs.market.coords else inputs.grid[d].values)
        )
    return coords


def _group_columns(state: _State, leg_k: np.ndarray) -> np.ndarray:
    """The after-books' combined commodities, in order of first appearance among their contracts
    (as margining the after-books in one batch orders them)."""
    plan = state.plan
    held = np.zeros(plan.held.size, dtype=bool)
    held[plan.local[state.book["contract_index"].values]] = True
    held[leg_k] = True
    return pd.unique(plan.cc_of_k[np.flatnonzero(held)])


def _dataset(
    inputs: Inputs,
    state: _State,
    after: W.AfterTrades,
    account: np.ndarray,
    ids: np.ndarray,
    out_cc: np.ndarray | None,
) -> xr.Dataset:
    """The after Dataset: per trade, and per trade and combined commodity (``out_cc``) if given."""
    plan = state.plan
    n_t, gshape, gd = account.size, plan.gshape, plan.gd

    def tg(a: np.ndarray) -> xr.Variable:
        return xr.Variable(("trade", *gd), a.reshape((n_t,) + gshape))

    data: dict = {
        "maintenance": tg(after.maintenance),
        "initial": tg(after.initial),
        "net_option_value": tg(after.nov),
        "span_risk": tg(after.span_risk),
        **(
            {}
            if after.exposure is None
            else {
                "exposure_margin": tg(
                    np.broadcast_to(after.exposure[:, None], after.maintenance.shape).copy()
                )
            }
        ),
        "account": xr.Variable("trade", account, fastpath=True),
    }
    trade = pd.Index(ids, dtype=ids.dtype, copy=False)  # object ids stay object (no text dtype)
    coords: dict = {"trade": trade, **_grid_coords(inputs, plan)}
    if out_cc is not None and after.groups is not None:
        n_out = out_cc.size
        for name in _PER_GROUP + (("super_spread_credit",) if "super_spread_credit" in after.groups else ()):
            data[name] = xr.Variable(
                ("trade", "group", *gd), after.groups[name].reshape((n_t, n_out) + gshape)
            )
        data["held"] = xr.Variable(("trade", "group"), after.groups["held"])
        coords["group"] = np.array(plan.groups.names, dtype=object)[out_cc]
        data["group_currency"] = xr.Variable("group", np.array(plan.groups.currency, dtype=object)[out_cc])
        data["group_fx"] = xr.Variable("group", plan.groups.fx[out_cc])
    sc = inputs.scenario
    return xr.Dataset(
        data, coords=coords, attrs={"method": "span", "currency": sc.currency, "scenario": sc.name}
    )


def span_marginal(inputs: Inputs, result: xr.Dataset, *, engine: Engine = "auto") -> xr.Dataset:
    """Every SPAN position's leave-one-out marginal requirement.

    ``marginal = requirement of the account - requirement of the account without the position``,
    for ``maintenance`` and ``initial``. SPAN nets the rows of one contract in an account (its
    losses, deltas and net option value are linear in the quantity and the short option minimum
    counts each contract's net quantity), so the book without a row is the book with the row's
    opposite added: one what-if trade per position, all in one batch (a combined commodity left
    empty has no risk, as one not held). Agrees with margining each book without the row to
    rounding (about 1e-12 relative).

    Parameters
    ----------
    inputs
        The data model of the book (in memory).
    result
        SPAN's result for the book (:func:`marginsim.methods.span.span_margin`).
    engine
        ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    xarray.Dataset
        ``maintenance`` and ``initial`` marginals per position (dims ``position`` and the grid
        dims; coord ``position``: the book's position numbers, as in ``result``) [reporting
        currency], and ``account``, each position's account.
    """
    pos = result["position"].values
    acct_i = result["position_account"].values
    row = pd.Index(inputs.book["position"].values).get_indexer(pos)
    contract = inputs.book["contract_index"].values[row]
    qty = inputs.book["quantity"].values[row]
    account = result["account"].values[acct_i]
    after = span_what_if_arrays(
        inputs,
        account,
        np.arange(pos.size),
        contract,
        -qty,
        ids=pos.astype(str),
        engine=engine,
        groups=False,
    )
    data = {}
    for name in ("maintenance", "initial"):
        before = result[name].isel(account=xr.DataArray(acct_i, dims="position")).drop_vars("account")
        value = before.values - after[name].values
        data[name] = xr.Variable(before.dims, value, attrs=dict(result[name].attrs))
    data["account"] = xr.Variable("position", account)
    coords = {"position": pos, **{d: result[d].values for d in after["maintenance"].dims if d != "trade"}}
    out = xr.Dataset(data, coords=coords, attrs=dict(result.attrs))
    for name in ("maintenance", "initial"):
        out[name].attrs["description"] = f"{name} less the {name} of the account without the position"
    return out
