"""Margin of many variants of a book's accounts in one batched call per method.

A variant is an account of the book with one position left out and / or some legs added: the
"after" book of a what-if trade (:mod:`marginsim.whatif`), the book without one position of a
leave-one-out attribution. :func:`margin_variants` lays every variant out as an account of one
new book (built with index arithmetic, no loop over variants) and runs each method once on it.

Each variant sees its base account's own data, as that account would in a margin run from
scratch:

- its positions, in the book's order, then its legs (so that order-dependent rules, such as
  CFD's close-out of the most recent positions first, see the legs as the latest rows);
- the positions' order data (``open_price``, ``opened``: from the book when it has them, else
  from the scenario file's positions), carried as columns of the variant book;
- the account-keyed entries of the method sections (:data:`ACCOUNT_KEYED`: portfolio margin's
  ``cash``, CFD's ``accounts`` funding, the account layer's ``accounts`` money and profile),
  copied under the variant's name;
- its cash changed by the cash its legs move (``leg_cash``: what a what-if trade pays for the
  securities it buys, :func:`marginsim.trades.leg_cash_change`): the fields of
  :data:`~marginsim.trades.CASH_KEYED` (portfolio and strategy margin's ``cash`` by the sum of
  the legs of stocks and options on spot in the reporting currency, where the base account's
  cash is given; the account layer's
  ``accounts.<name>.cash`` per currency group and currency, an entry made for an account the
  section does not list).

What a method computes over the whole book rather than per account (the account layer's
liquidation step "the first step at which any account of the book is in forced liquidation")
is computed over the variants: the per-account requirements (maintenance, initial, equity,
funds, state) do not depend on it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .errors import InputError
from .model import Inputs, Universe, contract_indices
from .params.account import AccountFunds, AccountParams
from .registry import applicable_methods, method_spec
from .result import MarginResult
from .trades import ACCOUNT_KEYED, CASH_KEYED, securities_legs, trade_accounts

__all__ = ["margin_variants", "variant_inputs", "ACCOUNT_KEYED", "VARIANT_TAG"]  # ACCOUNT_KEYED: of .trades

#: What separates a base account's name from the variant number in a variant's account name
#: (``"alice#variant3"``); removed from the messages of input errors.
VARIANT_TAG = "#variant"


def variant_inputs(
    inputs: Inputs,
    base_account: np.ndarray | Sequence[str],
    *,
    drop: np.ndarray | None = None,
    leg_variant: np.ndarray | None = None,
    leg_contract: np.ndarray | None = None,
    leg_quantity: np.ndarray | None = None,
    leg_opened: np.ndarray | None = None,
    leg_cash: np.ndarray | None = None,
    cash_sections: Collection[str] | None = None,
) -> Inputs:
    """The inputs whose book holds one account per variant (see :func:`margin_variants`).

    Returns
    -------
    Inputs
        Book: variant ``v`` is account ``v`` (named ``<base>#variant<v>``), its rows the base
        account's rows (but ``drop[v]``) in the book's order, then its legs; order columns
        ``open_price`` / ``opened`` when the book or the scenario has them (or ``leg_opened`` is
        given); the scenario's account-keyed sections (:data:`ACCOUNT_KEYED`) keyed by variant,
        their cash changed by ``leg_cash`` (in the sections of ``cash_sections``, default: every
        section of :data:`~marginsim.trades.CASH_KEYED`; :func:`margin_variants` names the
        methods it runs).
    """
    inputs.require_in_memory("margin_variants")
    book, sc = inputs.book, inputs.scenario
    names = np.asarray(inputs.accounts, dtype=object)
    base = np.asarray(base_account, dtype=object).reshape(-1)
    n_v = base.shape[0]
    acct_of = {a: i for i, a in enumerate(names.tolist())}
    # an account without positions (funded by a method section) is index len(names): no rows
    none = len(names)
    base_idx = np.fromiter((acct_of.get(str(a), none) for a in base.tolist()), dtype=np.int64, count=n_v)
    if (base_idx == none).any():
        known = np.asarray(trade_accounts(inputs), dtype=str)
        unknown = ~np.isin(base.astype(str), known)
        if unknown.any():
            bad = str(base[int(np.flatnonzero(unknown)[0])])
            raise InputError(f"unknown account {bad!r} (not an account of the scenario)", file=sc.file)
    n_pos = book.sizes["position"]
    drop = np.full(n_v, -1, dtype=np.int64) if drop is None else np.asarray(drop, dtype=np.int64).reshape(n_v)
    if ((drop < -1) | (drop >= n_pos)).any():
        raise ValueError("drop holds a position index outside the book")

    # the base rows of every variant: a ragged gather of each account's rows (in book order)
    pos_acct = book["account_index"].values.astype(np.int64)
    order = np.argsort(pos_acct, kind="stable")
    counts = np.append(np.bincount(pos_acct, minlength=len(names)), 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    per_v = counts[base_idx]
    rep = np.repeat(np.arange(n_v, dtype=np.int64), per_v)
    offset = np.arange(rep.size, dtype=np.int64) - np.repeat(np.cumsum(per_v) - per_v, per_v)
    rows = order[starts[base_idx][rep] + offset]
    keep = rows != drop[rep]
    rows, rep = rows[keep], rep[keep]

    # the legs
    if leg_variant is None:
        lv = np.zeros(0, dtype=np.int64)
        lk = np.zeros(0, dtype=np.int64)
        lq = np.zeros(0)
    else:
        lv = np.asarray(leg_variant, dtype=np.int64).reshape(-1)
        lq = np.asarray(leg_quantity, dtype=float).reshape(lv.shape[0])
        lc = np.asarray(leg_contract).reshape(lv.shape[0])
        if lc.dtype.kind in "iu":
            lk = lc.astype(np.int64)
        else:
            lk = contract_indices(inputs.contracts, lc, normalise=inputs.normalise_contract_id, file=sc.file)
        if lv.size and (lv.min() < 0 or lv.max() >= n_v):
            raise ValueError("leg_variant holds a variant index outside 0..n-1")

    # variant rows then legs, grouped by variant (stable: a variant's rows keep their order, legs last)
    v_all = np.concatenate([rep, lv])
    by_v = np.argsort(v_all, kind="stable")
    v_all = v_all[by_v]
    k_all = np.concatenate([book["contract_index"].values[rows].astype(np.int64), lk])[by_v]
    q_all = np.concatenate([book["quantity"].values[rows].astype(float), lq])[by_v]
    v_names = np.char.add(np.char.add(base.astype(str), VARIANT_TAG), np.arange(n_v).astype(str)).astype(
        object
    )
    contracts = inputs.contracts
    data: dict[str, Any] = {
        "contract": xr.Variable("position", contracts["contract"].values[k_all], fastpath=True),
        "contract_index": ("position", k_all),
        "quantity": ("position", q_all),
        "account_index": ("position", v_all),
        "account_name": xr.Variable("account", v_names, fastpath=True),
    }
    # order data: the book's columns, else the scenario file's positions (by position number)
    px, opened = _order_columns(inputs)
    if px is not None or opened is not None or leg_opened is not None:
        n_leg = lv.size
        base_px = np.full(n_pos, np.nan) if px is None else px
        base_op = np.full(n_pos, None, dtype=object) if opened is None else opened
        leg_op = (
            np.full(n_leg, None, dtype=object) if leg_opened is None else np.asarray(leg_opened, dtype=object)
        )
        data["open_price"] = ("position", np.concatenate([base_px[rows], np.full(n_leg, np.nan)])[by_v])
        data["opened"] = ("position", np.concatenate([base_op[rows], leg_op.reshape(n_leg)])[by_v])
    new_book = xr.Dataset(data, coords={"position": np.arange(v_all.size)})
    # where each leg went (its position in the variant book), for the callers that follow a leg
    where = np.empty(v_all.size, dtype=np.int64)
    where[by_v] = np.arange(v_all.size)
    new_book.attrs["leg_position"] = where[rep.size :]
    new_book["quantity"].attrs.update(units="contracts", description="signed quantity, long positive")

    # the account-keyed sections: each variant gets its base account's entry
    update = {}
    for section, fields in ACCOUNT_KEYED.items():
        params = sc.section(section)
        pays = (
            leg_cash is not None
            and section in CASH_KEYED
            and (cash_sections is None or section in cash_sections)
        )
        if params is None and section == "account" and pays and np.any(leg_cash):
            params = AccountParams()  # the layer's defaults, which the variants' cash changes
        if params is None:
            continue
        changes = {}
        for f in fields:
            table = getattr(params, f, None)
            if not table:
                continue
            has = np.isin(base.astype(str), np.array(list(table), dtype=str))
            at = np.flatnonzero(has)
            changes[f] = dict(zip(v_names[at].tolist(), (table[b] for b in base[at].astype(str).tolist())))
        if pays and lv.size:
            changes = _pay(inputs, section, params, changes, v_names, lv, lk, np.asarray(leg_cash))
        if changes:
            update[section] = params.model_copy(update=changes)
    new_sc = sc.model_copy(update=update) if update else sc
    held = np.flatnonzero(np.bincount(k_all, minlength=contracts.sizes["contract"]))
    universe = Universe(held, frozenset(v_names.tolist()), extra_accounts=False)
    return dataclasses.replace(inputs, scenario=new_sc, book=new_book, universe=universe)


def _pay(
    inputs: Inputs,
    section: str,
    params: Any,
    changes: dict[str, Any],
    v_names: np.ndarray,
    lv: np.ndarray,
    lk: np.ndarray,
    leg_cash: np.ndarray,
) -> dict[str, Any]:
    """``changes`` (the variants' entries of the section's account-keyed fields) with the cash
    field of :data:`CASH_KEYED` changed by the cash the legs move (``leg_cash`` [the leg
    contract's currency])."""
    amount = np.asarray(leg_cash, dtype=float).reshape(lv.size)
    f, legs = CASH_KEYED[section]
    pays = amount != 0
    if legs == "securities":
        pays &= securities_legs(inputs, lk)
    moves = np.flatnonzero(pays)
    if moves.size == 0:
        return changes
    table = dict(changes.get(f, {}))
    contracts = inputs.contracts
    und = contracts["underlying_index"].values[lk[moves]]
    if section != "account":  # one amount per account [reporting currency], where it is given
        total = np.bincount(
            lv[moves], amount[moves] * inputs.market["fx"].values[und], minlength=v_names.size
        )
        paying = [(str(v_names[v]), v) for v in np.unique(lv[moves]).tolist()]
        table.update({n: float(table[n] + total[v]) for n, v in paying if n in table})
        return {**changes, f: table}
    # the account layer: per (variant, currency group, currency) of the legs' contracts
    k = lk[moves]
    ccy = np.asarray(contracts["currency"].values[k], dtype=object).astype(str)
    keys = np.unique(k)
    group_of = {  # one lookup per traded contract (not per leg)
        int(i): params.cash_group(
            str(contracts["contract"].values[i]),
            str(contracts["group"].values[i]),
            str(contracts["underlying"].values[i]),
            str(contracts["currency"].values[i]),
        )
        for i in keys.tolist()
    }
    grp = np.array([group_of[int(i)] for i in k.tolist()], dtype=object).astype(str)
    cell = np.char.add(np.char.add(np.char.add(lv[moves].astype(str), "|"), np.char.add(grp, "|")), ccy)
    cells, inv = np.unique(cell, return_inverse=True)
    total = np.bincount(inv, amount[moves], minlength=cells.size)
    new: dict[str, dict[str, dict[str, float]]] = {}
    for key, x in zip(cells.tolist(), total.tolist()):  # the variants' (few) cash cells
        v, g, cu = key.split("|")
        row = new.setdefault(str(v_names[int(v)]), {})
        row.setdefault(g, {})[cu] = x
    for name, rows in new.items():  # one entry per paying variant
        old = table.get(name)
        cash = {g: dict(r) for g, r in (old.cash.items() if old is not None else ())}
        for g, r in rows.items():
            for cu, x in r.items():
                cash.setdefault(g, {})[cu] = cash.get(g, {}).get(cu, 0.0) + x
        table[name] = old.model_copy(update={"cash": cash}) if old is not None else AccountFunds(cash=cash)
    return {**changes, f: table}


def _order_columns(inputs: Inputs) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``open_price`` (float, NaN: none) and ``opened`` (object, None: held before the path) of
    every position of the book: its own columns, else the scenario file's positions; ``None``
    for a column no position has."""
    book = inputs.book
    if "open_price" in book or "opened" in book:
        px = np.asarray(book["open_price"].values, dtype=float) if "open_price" in book else None
        op = None
        if "opened" in book:
            raw = book["opened"].values
            if raw.dtype.kind == "M":
                op = np.array(
                    [None if np.isnat(t) else t.astype("datetime64[us]").item() for t in raw], dtype=object
                )
            else:
                op = np.asarray(raw, dtype=object)
        return px, op
    table = inputs.scenario.position_table()
    n = book.sizes["position"]
    if len(table) == 0 or (table.open_price is None and table.opened is None):
        return None, None
    where = np.asarray(book["position"].values, dtype=np.int64)
    if len(table) < n or (where.size and (where.min() < 0 or where.max() >= len(table))):
        return None, None  # a book that is not the scenario's (Inputs.with_book): no order data
    px = None if table.open_price is None else table.open_price[where]
    op = None if table.opened is None else np.asarray(table.opened, dtype=object)[where]
    return px, op


def margin_variants(
    inputs: Inputs,
    base_account: np.ndarray | Sequence[str],
    *,
    drop: np.ndarray | None = None,
    leg_variant: np.ndarray | None = None,
    leg_contract: np.ndarray | None = None,
    leg_quantity: np.ndarray | None = None,
    methods: Sequence[str] | str | None = None,
    engine: str = "auto",
    leg_opened: np.ndarray | None = None,
    leg_cash: np.ndarray | None = None,
) -> MarginResult:
    """Margin of many variants of the book's accounts, in one run of each method.

    Variant ``v`` is the positions of account ``base_account[v]`` of ``inputs.book`` (none for an
    account a method section funds without positions: :func:`marginsim.trades.trade_accounts`), minus the
    position ``drop[v]`` (an index of ``inputs.book``'s ``position`` dim; -1: none), plus the legs
    whose ``leg_variant == v``. Each variant sees its base account's data (cash, funding,
    account-layer money and profile, positions' order data): see the module's notes.

    Parameters
    ----------
    inputs
        In-memory inputs (:func:`marginsim.load`).
    base_account
        ``(n,)`` account name of each variant.
    drop
        ``(n,)`` position index to leave out of each variant, -1: none (default: none).
    leg_variant, leg_contract, leg_quantity
        ``(n_leg,)`` variant of each added leg, its contract (names, any spelling the inputs'
        normaliser accepts, or indices into ``inputs.contracts``) and signed quantity [contracts].
    methods
        Method names (default: the scenario's methods, else every method the book needs).
    engine
        Pricing engine: ``"numba"``, ``"numpy"`` or ``"auto"``.
    leg_opened
        ``(n_leg,)`` order time of each leg (``datetime``; ``None``: held before the path), for
        methods that read it (CFD's new orders); default: none.
    leg_cash
        ``(n_leg,)`` cash each leg moves [the leg contract's currency] (negative: paid;
        :func:`marginsim.trades.leg_cash_change`), taken from the variant's cash (see the
        module's notes); default: none (the legs are added without paying for them).

    Returns
    -------
    MarginResult
        One Dataset per method whose ``account`` dim is the variants, in order, with coords
        ``variant`` (0..n-1) and ``base_account``.

    Raises
    ------
    InputError
        An unknown account or contract, or a method's own input error (account names in its
        message are the base accounts').
    """
    if isinstance(methods, str):
        methods = [methods]
    names = list(methods) if methods is not None else applicable_methods(inputs.scenario)
    vin = variant_inputs(
        inputs,
        base_account,
        drop=drop,
        leg_variant=leg_variant,
        leg_contract=leg_contract,
        leg_quantity=leg_quantity,
        leg_opened=leg_opened,
        leg_cash=leg_cash,
        cash_sections=names,
    )
    base = np.asarray(base_account, dtype=object).reshape(-1)
    n_v = base.shape[0]
    v_names = vin.book["account_name"].values
    result = MarginResult(vin)
    for name in names:
        spec = method_spec(name, file=inputs.scenario.file)
        try:
            ds = spec.run(vin, engine=engine, **spec.lean)
        except InputError as e:
            raise InputError(
                re.sub(re.escape(VARIANT_TAG) + r"\d+", "", e.problem),
                file=e.file,
                key_path=re.sub(re.escape(VARIANT_TAG) + r"\d+", "", e.key_path) or None,
            ) from e
        result.methods[name] = as_variants(ds, v_names, base, n_v)
    return result


def as_variants(ds: xr.Dataset, v_names: np.ndarray, base: np.ndarray, n_v: int) -> xr.Dataset:
    """A method's result on the variant book, its ``account`` dim in variant order with coords
    ``variant`` and ``base_account`` (instead of the variant names)."""
    if "account" not in ds.dims:
        return ds
    got = ds["account"].values
    if got.shape[0] != n_v or not np.array_equal(got.astype(str), v_names.astype(str)):
        ds = ds.sel(account=v_names)
    ds = ds.drop_vars("account")
    return ds.assign_coords(
        variant=("account", np.arange(n_v)), base_account=("account", base.astype(str).astype(object))
    )
