"""What-if: the margin of each account before and after candidate trades, for every method.

:func:`what_if` margins the book once (before) and every after-book (the trade's account with
the trade's legs added) in one batched run per method: a method's own
:attr:`~marginsim.registry.MethodSpec.what_if` when it declares one (an incremental path), else
:func:`marginsim.variants.margin_variants` (every after-book an account of one variant book).
``after`` is what margining the book with the trade added gives, to the cent, for every method.

A CFD leg is a new order placed at the first step of the path (``cfd.step_times[0]``, else
``as_of`` when it has a time, else the morning after ``as_of``): the CFD method opens it only if
its initial margin is covered by the available cash (cash only: unrealised profits cannot fund
it), else rejects it (the method's own rule, ``spec/cfd.md`` section 4); the trade is
``accepted`` where none of its CFD legs is rejected.

:func:`best_hedge` tries, per account, every trade of one contract (of a glob pattern) and a
quantity in -N..N, in one batched what-if, and keeps the one that lowers the maintenance most.

A trade pays for what it buys, as a broker's what-if order does: a leg of a stock (ETF) or of a
premium-style option moves ``quantity x multiplier x price`` of cash in the contract's currency
(buying lowers the cash, selling raises it), at the scenario's valuation price (an option's
given premium, else its model value at the base market; a stock's price), with no spread and
no commission: :func:`marginsim.trades.leg_cash_change`. Futures, futures-style options and
CFDs move no cash at the trade. The after-book's cash is the account's cash plus this change
in every method that keeps cash (:data:`marginsim.trades.CASH_KEYED`: portfolio and strategy
margin's ``cash``, for the legs of stocks and options on spot, the securities they margin and
value; the account layer's ``accounts.<name>.cash``, for every leg): at the base grid point, buying at the valuation price leaves equity
unchanged and changes the available funds by the requirement's change only. The change is
:attr:`WhatIfResult.cash_change` (``"cash_change"`` of each trade in the JSON).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr

from .api import load, margin
from .errors import InputError
from .model import Inputs
from .outputs import per_account
from .registry import applicable_methods, method_spec
from .result import _clean, base_point
from .scenario import ScenarioFile
from .trades import TradeBatch, leg_cash_change, read_trades
from .variants import margin_variants

__all__ = [
    "what_if",
    "best_hedge",
    "WhatIfResult",
    "BestHedge",
    "COMPARED",
    "DEFAULT_MAX_QUANTITY",
    "DEFAULT_CONTRACTS",
    "REJECTED_REASON",
    "order_time",
    "what_if_command",
]

#: The variables compared before and after (those a method's result has), in the JSON's order.
COMPARED = ("maintenance", "initial", "available_funds", "excess_liquidity", "state")
#: Best hedge: the largest |quantity| tried [contracts] (``--max-quantity``).
DEFAULT_MAX_QUANTITY = 10
#: Best hedge: the glob over contract ids tried (``--contracts``): every contract the book holds
#: and every contract the scenario file defines.
DEFAULT_CONTRACTS = "*"
#: Best hedge: the largest ``max_quantity`` accepted (a guard against huge candidate batches).
MAX_MAX_QUANTITY = 10_000
#: ``rejected_reason`` of a trade a CFD account cannot fund.
REJECTED_REASON = "initial margin above the available cash (CFD margin is funded from cash only)"


def order_time(sc: ScenarioFile) -> dt.datetime | dt.date:
    """Time a what-if CFD order is placed: the path's first step (as the CFD method times its
    steps): ``cfd.step_times[0]``, else ``as_of`` when it has a time, else the morning after it."""
    params = sc.section("cfd")
    if params is not None and params.step_times is not None:
        first: dt.datetime | dt.date = params.step_times[0]
        return first
    if isinstance(sc.as_of, dt.datetime):
        return sc.as_of
    return dt.datetime.combine(sc.as_of, dt.time()) + dt.timedelta(days=1)


@dataclass(repr=False, eq=False)
class WhatIfResult(Mapping[str, xr.Dataset]):
    """Method -> Dataset with dims ``trade`` (and the method's grid dims): ``<x>_before``,
    ``<x>_after``, ``<x>_change`` for each ``x`` of :data:`COMPARED` the method has (CFD also
    ``accepted`` and ``rejected_reason``); coords ``trade`` (ids) and ``account``.

    Attributes
    ----------
    inputs
        The inputs of the scenario (the book before the trades).
    trades
        The trades.
    methods
        Method name -> Dataset.
    cash_change
        Cash each trade moves, dims ``trade`` and ``currency`` [the currency]: what its legs of
        securities paid in full cost (negative) or bring (positive) at the scenario's valuation
        price (:func:`marginsim.trades.leg_cash_change`); the currencies of the trades' stock
        and premium-style option legs (none: no currency).
    """

    inputs: Inputs
    trades: TradeBatch
    methods: dict[str, xr.Dataset] = field(default_factory=dict)
    cash_change: xr.DataArray | None = None

    def __getitem__(self, name: str) -> xr.Dataset:
        return self.methods[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.methods)

    def __len__(self) -> int:
        return len(self.methods)

    def dims(self) -> dict[str, list]:
        """Each grid dim and its coordinate values."""
        out: dict[str, list] = {}
        for d in self.inputs.grid_dims:
            for ds in self.methods.values():
                if d in ds.coords:
                    out[d] = ds[d].values.tolist()
                    break
        return out

    def _legs(self) -> list[list[dict[str, Any]]]:
        t = self.trades
        order = np.argsort(t.leg_trade, kind="stable")
        cuts = np.searchsorted(t.leg_trade[order], np.arange(1, len(t)))
        cs = np.split(t.leg_contract[order], cuts)
        qs = np.split(t.leg_quantity[order], cuts)
        return [
            [{"contract": str(c), "quantity": q} for c, q in zip(ci.tolist(), qi.tolist())]
            for ci, qi in zip(cs, qs)
        ]

    def _cash(self) -> list[dict[str, float]]:
        """Per trade, ``{currency: amount}`` of the currencies its paid legs move."""
        cc = self.cash_change
        if cc is None or cc.sizes.get("currency", 0) == 0:
            return [{} for _ in range(len(self.trades))]
        mask = _paid_cells(self.trades, self.inputs, cc["currency"].values)
        ccys = [str(c) for c in cc["currency"].values.tolist()]
        return [
            {c: float(x) for c, x, m in zip(ccys, row, mrow) if m}
            for row, mrow in zip(cc.values.tolist(), mask.tolist())
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``marginsim what-if --json``: ``{"scenario", "currency", "dims", "trades":
        [{"id", "account", "legs", "cash_change": {currency: amount}, "methods": {method:
        {"maintenance": {"before", "after", "change"}, "initial": {...}, ...}}}]}``, grid dims
        nested as in ``marginsim margin --json``; ``cash_change``: the currencies the trade's
        stock and premium-style option legs pay in ({} for a trade of futures and CFDs)."""
        sc = self.inputs.scenario
        gd = list(self.inputs.grid_dims)
        trades: list[dict[str, Any]] = [
            {"id": str(i), "account": str(a), "legs": legs, "cash_change": cash, "methods": {}}
            for i, a, legs, cash in zip(
                self.trades.ids.tolist(), self.trades.account.tolist(), self._legs(), self._cash()
            )
        ]
        for name, ds in self.methods.items():
            cols: dict[str, dict[str, list[Any]]] = {}
            for x in COMPARED:
                if f"{x}_after" in ds:
                    cols[x] = {
                        w: per_account(ds[f"{x}_{w}"], gd, "trade") for w in ("before", "after", "change")
                    }
            extra = {k: per_account(ds[k], gd, "trade") for k in ("accepted", "rejected_reason") if k in ds}
            for j, t in enumerate(trades):
                obj: dict[str, Any] = {x: {w: col[j] for w, col in c.items()} for x, c in cols.items()}
                obj.update({k: col[j] for k, col in extra.items()})
                t["methods"][name] = obj
        return _clean({"scenario": sc.name, "currency": sc.currency, "dims": self.dims(), "trades": trades})

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a JSON string."""
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    def table(self) -> str:
        """A readable table: per trade and method, before / after / change at the base grid point."""
        sc = self.inputs.scenario
        lines = [f"{sc.name}  what-if  currency {sc.currency}"]
        point = {name: base_point(ds) for name, ds in self.methods.items()}
        legs = self._legs()
        cash = self._cash()
        for j, (tid, acct) in enumerate(zip(self.trades.ids.tolist(), self.trades.account.tolist())):
            shown = ", ".join(f"{lg['quantity']:+g} {lg['contract']}" for lg in legs[j])
            lines.append("")
            lines.append(f"trade {tid}  account {acct}: {shown}")
            if cash[j]:
                paid = ", ".join(f"{x:+,.2f} {c}" for c, x in cash[j].items())
                lines.append(f"  cash change (at the valuation price): {paid}")
            lines.append(f"  {'method':<18}{'':<18}{'before':>16}{'after':>16}{'change':>16}")
            for name, d in point.items():
                row = d.isel(trade=j)
                for x in COMPARED:
                    if f"{x}_after" not in row:
                        continue
                    vals = [row[f"{x}_{w}"] for w in ("before", "after", "change")]
                    vals = [v.isel({k: 0 for k in v.dims}) if v.ndim else v for v in vals]
                    fmt = "{:>16,.0f}" if x == "state" else "{:>16,.2f}"
                    lines.append(f"  {name:<18}{x:<18}" + "".join(fmt.format(float(v)) for v in vals))
                if "accepted" in row:
                    acc = row["accepted"]
                    ok = bool(acc.values.all())
                    lines.append(
                        f"  {name:<18}{'accepted':<18}{'yes' if ok else 'no: ' + REJECTED_REASON:>16}"
                    )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<WhatIfResult: {len(self.trades)} trades, methods {', '.join(self.methods) or 'none'}>"


def what_if(
    scenario: str | Path | dict | ScenarioFile | Inputs,
    trades: Any,
    methods: Sequence[str] | str | None = None,
    *,
    engine: str = "auto",
) -> WhatIfResult:
    """The margin of each trade's account before and after the trade, per method.

    Parameters
    ----------
    scenario
        A scenario file path, mapping, :class:`~marginsim.scenario.ScenarioFile` or in-memory
        :class:`~marginsim.model.Inputs`.
    trades
        A trades file (YAML/JSON list), a list of trade mappings (``id``, ``account``, ``legs``
        or ``contract`` / ``quantity``: :mod:`marginsim.trades`) or a
        :class:`~marginsim.trades.TradeBatch`.
    methods
        Method names (default: the scenario's methods, else every method the book needs).
    engine
        Pricing engine: ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    WhatIfResult
        One Dataset per method with dims ``trade`` and the method's grid dims: ``<x>_before``,
        ``<x>_after``, ``<x>_change`` [reporting currency] for ``maintenance`` and ``initial``,
        the account layer's ``available_funds``, ``excess_liquidity`` and ``state``; CFD's
        ``accepted`` and ``rejected_reason``.

    Raises
    ------
    InputError
        A bad scenario or trade (file, key path, problem), or a method's own input error for an
        after-book (e.g. a CFD trade in an account without CFD funding).
    """
    inputs = scenario if isinstance(scenario, Inputs) else load(scenario)
    inputs.require_in_memory("what_if")
    batch = read_trades(trades, inputs)
    if isinstance(methods, str):
        methods = [methods]
    names = list(methods) if methods is not None else applicable_methods(inputs.scenario)
    specs = {n: method_spec(n, file=inputs.scenario.file) for n in names}
    before = margin(inputs, methods=names, engine=engine, detail=False)
    generic = [n for n, s in specs.items() if s.what_if is None]
    after: dict[str, xr.Dataset] = {}
    leg_pos = np.zeros(0, dtype=np.int64)
    leg_k = _contract_index(inputs, batch.leg_contract)
    cash, ccy, _ = leg_cash_change(inputs, leg_k, batch.leg_quantity, engine=cast(Any, engine))
    if generic:
        is_cfd = inputs.contracts["type"].values[leg_k] == "cfd"
        opened = np.full(batch.n_legs, None, dtype=object)
        if is_cfd.any():
            opened[is_cfd] = order_time(inputs.scenario)
        var = margin_variants(
            inputs,
            batch.account,
            leg_variant=batch.leg_trade,
            leg_contract=batch.leg_contract,
            leg_quantity=batch.leg_quantity,
            leg_opened=opened,
            leg_cash=cash,
            methods=generic,
            engine=engine,
        )
        leg_pos = var.inputs.book.attrs["leg_position"]
        after = {n: var[n].drop_vars(["variant", "base_account"]).rename(account="trade") for n in generic}
    for n, s in specs.items():
        if s.what_if is not None:
            after[n] = s.what_if(inputs, batch, before[n])
    out = WhatIfResult(inputs, batch, cash_change=_cash_change(batch, leg_k, cash, ccy, inputs))
    for n in names:
        out.methods[n] = _compare(before[n], after[n], batch, leg_pos, n)
    return out


def _cash_change(
    batch: TradeBatch, leg_k: np.ndarray, cash: np.ndarray, ccy: np.ndarray, inputs: Inputs
) -> xr.DataArray:
    """Per trade and currency, the cash the trade's legs (contract indices ``leg_k``) move [the currency]."""
    paid = _paid_legs(leg_k, inputs)
    names, col = np.unique(ccy[paid].astype(str), return_inverse=True)
    out = np.zeros((len(batch), names.size))
    np.add.at(out, (batch.leg_trade[paid], col), cash[paid])
    da = xr.DataArray(
        out + 0.0,
        dims=("trade", "currency"),
        coords={"trade": batch.ids.astype(object), "currency": names.astype(object)},
        name="cash_change",
    )
    da.attrs.update(
        units="currency",
        description="cash the trade moves at the valuation price (negative: paid), per currency",
    )
    return da


def _paid_legs(k: np.ndarray, inputs: Inputs) -> np.ndarray:
    """Whether each leg (contract indices ``k``) is of a security paid in full (a stock, a
    premium-style option)."""
    c = inputs.contracts
    return np.asarray(
        (c["type"].values[k] == "stock") | (c["is_option"].values[k] & c["premium_style"].values[k]),
        dtype=bool,
    )


def _paid_cells(batch: TradeBatch, inputs: Inputs, currencies: np.ndarray) -> np.ndarray:
    """``(trade, currency)``: whether the trade has a paid leg in the currency."""
    k = _contract_index(inputs, batch.leg_contract)
    paid = _paid_legs(k, inputs)
    ccy = np.asarray(inputs.contracts["currency"].values[k]).astype(str)
    col = np.searchsorted(currencies.astype(str), ccy[paid])
    has = np.zeros((len(batch), currencies.size), dtype=bool)
    has[batch.leg_trade[paid], col] = True
    return has


def _contract_index(inputs: Inputs, names: np.ndarray) -> np.ndarray:
    """Indices into the inputs' contracts of canonical contract ids (as a TradeBatch holds them)."""
    index = {c: i for i, c in enumerate(inputs.contracts["contract"].values.tolist())}
    return np.fromiter((index[c] for c in names.tolist()), dtype=np.int64, count=len(names))


def _compare(
    before: xr.Dataset, after: xr.Dataset, batch: TradeBatch, leg_pos: np.ndarray, method: str
) -> xr.Dataset:
    """The method's before / after / change per trade (and CFD's acceptance)."""
    kept = [x for x in COMPARED if x in before and x in after and "account" in before[x].dims]
    b = before[kept]
    missing = np.setdiff1d(batch.account.astype(str), b["account"].values.astype(str))
    if missing.size:  # an account without positions the method margins: nothing before
        names = np.concatenate([b["account"].values.astype(str), missing]).astype(object)
        b = b.reindex(account=names, fill_value=0)
    accounts = [str(a) for a in b["account"].values.tolist()]
    row = {a: i for i, a in enumerate(accounts)}
    at = np.fromiter((row[a] for a in batch.account.tolist()), dtype=np.int64, count=len(batch))
    b = b.isel(account=xr.DataArray(at, dims="trade")).drop_vars("account", errors="ignore")
    data: dict[str, Any] = {}
    for x in kept:
        xb, xa = b[x], after[x]
        data[f"{x}_before"] = xb.drop_vars([c for c in xb.coords if c not in xb.dims])
        data[f"{x}_after"] = xa.drop_vars([c for c in xa.coords if c not in xa.dims])
        data[f"{x}_change"] = data[f"{x}_after"] - data[f"{x}_before"]
        for w in ("before", "after", "change"):
            data[f"{x}_{w}"].attrs = {k: v for k, v in before[x].attrs.items() if k in ("units", "currency")}
            data[f"{x}_{w}"].attrs["description"] = (
                f"{x} {w} the trade" if w != "change" else f"{x} after - before"
            )
    ds = xr.Dataset(data)
    for x in kept:  # the last guard: no NaN or inf where the book before has a number
        a_v, b_v = ds[f"{x}_after"], ds[f"{x}_before"]
        finite_a, finite_b = xr.apply_ufunc(np.isfinite, a_v), xr.apply_ufunc(np.isfinite, b_v)
        bad = (~finite_a & finite_b).transpose("trade", ...).values.reshape(len(batch), -1)
        if bad.any():
            j = int(np.flatnonzero(bad.any(axis=1))[0])
            raise InputError(
                f"{method}: {x} after trade {str(batch.ids[j])!r} is not a finite number: a quantity "
                "is too large or out of the range this method can compute",
                key_path=("trades", j),
            )
    if "rejected" in after and leg_pos.size:
        ds = _acceptance(ds, after, batch, leg_pos)
    ds = ds.assign_coords(trade=batch.ids.astype(object), account=("trade", batch.account.astype(object)))
    ds.attrs.update(method=method, currency=before.attrs.get("currency", ""))
    return ds


def _acceptance(ds: xr.Dataset, after: xr.Dataset, batch: TradeBatch, leg_pos: np.ndarray) -> xr.Dataset:
    """CFD: ``accepted`` (no CFD leg of the trade rejected) and ``rejected_reason`` per trade and
    grid point (the method's ``rejected`` of the legs' positions)."""
    rejected = after["rejected"]
    bd = [d for d in rejected.dims if d != "position"]
    pos = np.asarray(after["position"].values, dtype=np.int64)
    # the row of each leg in the CFD result (-1: not a CFD position)
    rows = np.full(leg_pos.size, -1, dtype=np.int64)
    if pos.size:
        order = np.argsort(pos)
        found = np.minimum(np.searchsorted(pos[order], leg_pos), pos.size - 1)
        rows = np.where(pos[order][found] == leg_pos, order[found], -1)
    shape = [rejected.sizes[d] for d in bd]
    n_b = int(np.prod(shape)) if shape else 1
    flat = rejected.transpose("position", *bd).values.reshape(pos.size, n_b)
    per_trade = np.zeros((len(batch), n_b), dtype=np.int64)
    legs = np.flatnonzero(rows >= 0)
    np.add.at(per_trade, batch.leg_trade[legs], flat[rows[legs]].astype(np.int64))
    acc = (per_trade == 0).reshape([len(batch), *shape])
    coords = {d: after[d].values for d in bd if d in after.coords}
    ds["accepted"] = xr.DataArray(acc, dims=("trade", *bd), coords=coords)
    ds["accepted"].attrs["description"] = "the account's available cash funds the trade's CFD orders"
    ds["rejected_reason"] = xr.DataArray(
        np.where(acc, "", REJECTED_REASON).astype(object), dims=("trade", *bd), coords=coords
    )
    ds["rejected_reason"].attrs["description"] = "why the trade is rejected ('': accepted)"
    return ds


@dataclass(repr=False, eq=False)
class BestHedge:
    """Per account and method, the one-contract trade that lowers the maintenance most.

    Attributes
    ----------
    what_if
        The what-if of every candidate trade.
    best
        ``{account: {method: {"trade", "contract", "quantity", "maintenance": {"before",
        "after", "change"}}}}`` at the base grid point; ``None`` where no candidate lowers it.
    """

    what_if: WhatIfResult
    best: dict[str, dict[str, dict[str, Any] | None]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``marginsim what-if --best-hedge --json``."""
        sc = self.what_if.inputs.scenario
        return _clean(
            {
                "scenario": sc.name,
                "currency": sc.currency,
                "candidates": len(self.what_if.trades),
                "accounts": self.best,
            }
        )

    def table(self) -> str:
        """A readable table of the best hedges."""
        sc = self.what_if.inputs.scenario
        lines = [
            f"{sc.name}  best hedge  currency {sc.currency}  ({len(self.what_if.trades)} candidate trades)",
            f"{'account':<20}{'method':<18}{'trade':>24}{'maintenance':>16}{'after':>16}{'change':>16}",
        ]
        for acct, per in self.best.items():
            for name, b in per.items():
                if b is None:
                    lines.append(f"{acct:<20}{name:<18}{'(none lowers it)':>24}")
                    continue
                m = b["maintenance"]
                trade = f"{b['quantity']:+g} {b['contract']}"
                lines.append(
                    f"{acct:<20}{name:<18}{trade:>24}{m['before']:>16,.2f}{m['after']:>16,.2f}{m['change']:>16,.2f}"
                )
        return "\n".join(lines)


def best_hedge(
    scenario: str | Path | dict | ScenarioFile | Inputs,
    *,
    contracts: str | Sequence[str] = DEFAULT_CONTRACTS,
    max_quantity: int = DEFAULT_MAX_QUANTITY,
    accounts: Sequence[str] | None = None,
    methods: Sequence[str] | str | None = None,
    engine: str = "auto",
) -> BestHedge:
    """Per account, the single trade (one contract, quantity in -N..N) that lowers the
    maintenance most, per method, from one batched what-if of every candidate.

    Parameters
    ----------
    scenario
        A scenario (as :func:`what_if`).
    contracts
        Glob pattern(s) over contract ids (``fnmatch``, case-sensitive) of the candidates, among
        the contracts the book holds and those the scenario file defines (default ``"*"``: all
        of them; a clearing-house file's other contracts are candidates when a pattern names
        them).
    max_quantity
        N: quantities -N..N but 0 [contracts] (default 10).
    accounts
        The accounts to hedge (default: every account of the book).
    methods, engine
        As :func:`what_if`.

    Returns
    -------
    BestHedge
        The candidates' what-if and the best trade per account and method (at the base grid
        point: ``shift = 0``, step 0, ...); ties: the smaller |quantity|, then the first contract.

    Raises
    ------
    InputError
        ``max_quantity`` below 1, a pattern that matches no contract, an unknown account.
    """
    inputs = scenario if isinstance(scenario, Inputs) else load(scenario)
    sc = inputs.scenario
    if isinstance(max_quantity, bool) or not isinstance(max_quantity, (int, np.integer)) or max_quantity < 1:
        raise InputError(
            f"the largest quantity must be a whole number >= 1, not {max_quantity!r}",
            key_path="--max-quantity",
        )
    if max_quantity > MAX_MAX_QUANTITY:
        raise InputError(
            f"the largest quantity must be at most {MAX_MAX_QUANTITY}", key_path="--max-quantity"
        )
    patterns = [contracts] if isinstance(contracts, str) else list(contracts)
    all_ids = np.asarray(inputs.contracts["contract"].values, dtype=object).astype(str)
    # the candidates: contracts the book holds or the scenario file defines, matching a pattern;
    # a pattern without wildcards may also name any contract (of a clearing-house file)
    pool = np.zeros(all_ids.size, dtype=bool)
    pool[inputs.held_contracts()] = True
    pool |= np.isin(all_ids, np.array(list(sc.contracts), dtype=str))
    matched = np.zeros(all_ids.size, dtype=bool)
    for p in patterns:  # the user's few patterns
        if _is_glob(p):
            matched |= pool & np.isin(all_ids, np.array(fnmatch.filter(all_ids.tolist(), p), dtype=str))
        else:
            norm = inputs.normalise_contract_id
            matched |= (all_ids == p) | ((all_ids == norm(p)) if norm is not None else False)
    cand = all_ids[matched].astype(object)
    if cand.size == 0:
        raise InputError(
            f"no contract matches {', '.join(patterns)} (of the book's and the scenario's contracts)",
            file=sc.file,
            key_path="--contracts",
        )
    accts = np.asarray(inputs.accounts if accounts is None else list(accounts), dtype=object)
    unknown = ~np.isin(accts.astype(str), np.asarray(inputs.accounts, dtype=str))
    if unknown.any():
        raise InputError(f"unknown account {str(accts[unknown][0])!r}", file=sc.file, key_path="--account")
    qty = np.concatenate([-np.arange(1, max_quantity + 1), np.arange(1, max_quantity + 1)]).astype(float)
    n_a, n_c, n_q = accts.size, cand.size, qty.size
    a_i, c_i, q_i = (
        g.reshape(-1) for g in np.meshgrid(np.arange(n_a), np.arange(n_c), np.arange(n_q), indexing="ij")
    )
    ids = np.char.add(
        np.char.add(accts[a_i].astype(str), ":"),
        np.char.add(np.char.add(cand[c_i].astype(str), ":"), qty[q_i].astype(np.int64).astype(str)),
    ).astype(object)
    batch = TradeBatch.from_arrays(inputs, cand[c_i], qty[q_i], account=accts[a_i], ids=ids)
    res = what_if(inputs, batch, methods=methods, engine=engine)
    best: dict[str, dict[str, dict[str, Any] | None]] = {str(a): {} for a in accts.tolist()}
    for name, ds in res.items():
        if "maintenance_change" not in ds:
            continue
        d = base_point(ds)
        change = d["maintenance_change"]
        extra = [x for x in change.dims if x != "trade"]
        if extra:
            change = change.isel({x: 0 for x in extra})
            d = d.isel({x: 0 for x in extra})
        ch = change.values.reshape(n_a, n_c * n_q)
        per = n_c * n_q  # candidates of one account, in the same order for every account
        # the lowest change; ties: the smaller |quantity|, then the first contract
        keys = (
            np.broadcast_to(c_i[:per], ch.shape),
            np.broadcast_to(np.abs(qty[q_i[:per]]), ch.shape),
            np.where(np.isnan(ch), np.inf, ch),
        )
        first = np.lexsort(keys, axis=-1)[:, 0]
        for a in range(n_a):  # the accounts' rows of the answer (the evaluation was batched)
            k = int(first[a])
            if not ch[a, k] < 0:
                best[str(accts[a])][name] = None
                continue
            t = a * n_c * n_q + k
            best[str(accts[a])][name] = {
                "trade": str(ids[t]),
                "contract": str(cand[c_i[t]]),
                "quantity": float(qty[q_i[t]]),
                "maintenance": {
                    w: float(d[f"maintenance_{w}"].values[t]) for w in ("before", "after", "change")
                },
            }
    return BestHedge(res, best)


def _is_glob(p: str) -> bool:
    return any(ch in p for ch in "*?[")


def what_if_command(args: argparse.Namespace) -> int:
    """``marginsim what-if SCENARIO``: the what-if of ``--trades FILE`` / ``--trade C Q``, or the
    best hedges (``--best-hedge``): a readable table, or (``--json``) the JSON."""
    inputs = load(args.file)
    accounts = args.account or []
    if args.best_hedge:
        if args.trades is not None or args.trade:
            raise InputError(
                "give --best-hedge or trades (--trades, --trade), not both", key_path="--best-hedge"
            )
        hedge = best_hedge(
            inputs,
            contracts=args.contracts or [DEFAULT_CONTRACTS],
            max_quantity=DEFAULT_MAX_QUANTITY if args.max_quantity is None else args.max_quantity,
            accounts=accounts or None,
            methods=args.method,
            engine=args.engine,
        )
        sys.stdout.write((json.dumps(hedge.to_dict(), indent=2) if args.json else hedge.table()) + "\n")
        return 0
    if args.contracts is not None or args.max_quantity is not None:
        raise InputError("--contracts and --max-quantity go with --best-hedge", key_path="--contracts")
    if args.trades is not None:
        if args.trade:
            raise InputError("give --trades FILE or --trade CONTRACT QUANTITY, not both", key_path="--trade")
        if accounts:
            raise InputError(
                "--account goes with --trade (a trades file names its accounts)", key_path="--account"
            )
        trades: Any = Path(args.trades)
    elif args.trade:
        if len(accounts) not in (0, 1, len(args.trade)):
            raise InputError(
                f"give one --account for all {len(args.trade)} trades, or one per --trade",
                key_path="--account",
            )
        trades = []
        for i, (c, q) in enumerate(args.trade):  # the command line's few trades
            try:
                qty: float = float(q)
            except ValueError:
                raise InputError(f"quantity {q!r} is not a number", key_path=f"--trade {i + 1}") from None
            t: dict[str, Any] = {"contract": c, "quantity": qty}
            if accounts:
                t["account"] = accounts[i] if len(accounts) > 1 else accounts[0]
            trades.append(t)
        trades = _cli_trades(trades, inputs)
    else:
        raise InputError("give --trades FILE, --trade CONTRACT QUANTITY or --best-hedge", key_path="what-if")
    res = what_if(inputs, trades, methods=args.method, engine=args.engine)
    sys.stdout.write((res.to_json() if args.json else res.table()) + "\n")
    return 0


def _cli_trades(trades: list[dict[str, Any]], inputs: Inputs) -> TradeBatch:
    """The ``--trade`` options as a batch; an error names ``--trade N`` (1-based)."""
    try:
        return read_trades(trades, inputs)
    except InputError as e:
        where = e.key_path.split(".")[0].strip("[]")
        n = int(where) + 1 if where.isdigit() else None
        key = "--account" if e.key_path.endswith("account") else "--trade"
        raise InputError(e.problem, key_path=f"{key} {n}" if n else key) from None
