"""Candidate trades for a what-if: a list of trades, each of one or more legs, as columns.

A trades file is a YAML (or JSON) list; each trade is a mapping with

- ``id``: a name (text or an integer; default: the trade's index in the list, ``"0"``, ``"1"``, ...);
  ids must be unique;
- ``account``: the account the trade goes to: an account of the book, or one a method section
  funds without positions (``cfd.accounts``, ``account.accounts``, ``portfolio_margin.cash``);
  default: the scenario's only account (required when it has several);
- ``legs``: a non-empty list of ``{contract, quantity}``; or, for a one-leg trade, ``contract`` and
  ``quantity`` at the top level (not both forms).

A contract must be one of the scenario's (or of its clearing-house file's: any spelling of a strike
that :attr:`marginsim.model.Inputs.normalise_contract_id` accepts); a quantity [contracts] is a
finite, non-zero number whose notional (|quantity| x multiplier x highest price x FX) is at most the
scenario's ``max_amount``, as a position's. A bad trade is an :class:`~marginsim.errors.InputError`
naming the file, the key path (``[3].legs[0].quantity``) and the problem.

The result is a :class:`TradeBatch`: one array per column, trades and legs (the layer of
:mod:`marginsim.positions`: no method is imported here).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .errors import InputError
from .kernels import pricing
from .model import Inputs, contract_indices
from .scenario import _read_yaml

__all__ = [
    "TradeBatch",
    "read_trades",
    "trade_accounts",
    "leg_cash_change",
    "securities_legs",
    "ACCOUNT_KEYED",
    "CASH_KEYED",
    "TRADE_KEYS",
    "LEG_KEYS",
]

#: The fields of method sections that hold per-account data keyed by account name,
#: ``{section: (field, ...)}``: portfolio margin's ``cash``, CFD's ``accounts`` funding, the
#: account layer's ``accounts`` money and profile. An account they name is an account of the
#: scenario even without positions (a trade may go to it), and a variant of an account
#: (:mod:`marginsim.variants`) gets its entry.
ACCOUNT_KEYED: dict[str, tuple[str, ...]] = {
    "portfolio_margin": ("cash",),
    "cfd": ("accounts",),
    "account": ("accounts",),
    "strategy": ("cash",),
}

#: The account-keyed fields that hold an account's cash, which a trade's cash-settled legs change
#: (:func:`leg_cash_change`): ``{section: (field, legs)}``. Portfolio margin's and strategy
#: margin's ``cash`` [reporting currency] is the cash of the securities account whose stocks and
#: options on spot they margin and value (equity = cash + their market value): it pays for those
#: legs only (``"securities"``; an option on a future is paid from the futures side, which these
#: methods do not see). The account layer's ``accounts.<name>.cash`` [per currency group and
#: currency] pays for every leg (``"all"``). CFD's ``accounts.<name>.cash`` is the cash of the CFD
#: account: only a CFD leg would change it, and a CFD moves no cash at the trade.
CASH_KEYED: dict[str, tuple[str, str]] = {
    "portfolio_margin": ("cash", "securities"),
    "strategy": ("cash", "securities"),
    "account": ("accounts", "all"),
}

#: Keys a trade may have.
TRADE_KEYS = ("id", "account", "legs", "contract", "quantity")
#: Keys a leg may have.
LEG_KEYS = ("contract", "quantity")


@dataclass(frozen=True)
class TradeBatch:
    """Trades as columns: one element per trade (``ids``, ``account``) and per leg (``leg_*``).

    Attributes
    ----------
    ids
        Trade ids (object array of ``str``; ``"0"``, ``"1"``, ... by default).
    account
        The account each trade goes to (object array of ``str``).
    leg_trade
        Index into :attr:`ids` of each leg (int64; legs of one trade are consecutive).
    leg_contract
        Contract id of each leg, as the inputs' contracts spell it (object array of ``str``).
    leg_quantity
        Signed quantity of each leg [contracts], long positive (float64, finite, non-zero).
    """

    ids: np.ndarray
    account: np.ndarray
    leg_trade: np.ndarray
    leg_contract: np.ndarray
    leg_quantity: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_legs(self) -> int:
        """Number of legs of all trades."""
        return int(self.leg_trade.shape[0])

    def legs_of(self, i: int) -> list[dict[str, Any]]:
        """The legs of trade ``i`` as ``[{"contract", "quantity"}]`` (for JSON and tables)."""
        at = np.flatnonzero(self.leg_trade == i)
        return [
            {"contract": str(c), "quantity": float(q)}
            for c, q in zip(self.leg_contract[at].tolist(), self.leg_quantity[at].tolist())
        ]

    @classmethod
    def from_arrays(
        cls,
        inputs: Inputs,
        contract: Sequence[str] | np.ndarray,
        quantity: Sequence[float] | np.ndarray,
        account: Sequence[str] | np.ndarray | None = None,
        ids: Sequence[str] | np.ndarray | None = None,
    ) -> TradeBatch:
        """One-leg trades from arrays (many candidates at once; validated like a trades file).

        Parameters
        ----------
        inputs
            The scenario's inputs (contracts, book accounts).
        contract, quantity
            Contract id and signed quantity [contracts] of each trade.
        account
            Account of each trade (default: the book's only account).
        ids
            Trade ids (default ``"0"``, ``"1"``, ...).
        """
        quantity = np.asarray(quantity, dtype=float).reshape(-1)
        n = quantity.shape[0]
        names = np.asarray(contract, dtype=object).reshape(n)
        if account is None:
            acct = np.full(n, _only_account(inputs, None, ()), dtype=object)
        else:
            acct = np.asarray(account, dtype=object).reshape(n)
        tid = (
            np.arange(n).astype(str).astype(object)
            if ids is None
            else np.asarray(ids).astype(str).astype(object)
        )
        return _finish(inputs, tid, acct, np.arange(n, dtype=np.int64), names, quantity, None, None)


def read_trades(
    data_or_path: str | PathLike[str] | Sequence[Mapping[str, Any]] | TradeBatch,
    inputs: Inputs,
    *,
    file: str | PathLike[str] | None = None,
) -> TradeBatch:
    """Read and validate trades: a YAML/JSON file, or a list of mappings as in such a file.

    Parameters
    ----------
    data_or_path
        A trades file (path), the list of trades (mappings), or a :class:`TradeBatch` (returned
        as it is).
    inputs
        The inputs of the scenario the trades go to: its contracts (ids, spelling normaliser) and
        its book's accounts.
    file
        The file the list came from, for messages (default: ``data_or_path`` when it is a path).

    Returns
    -------
    TradeBatch
        The trades as columns, in the list's order.

    Raises
    ------
    InputError
        The file is missing or not YAML/JSON, or a trade is bad: not a mapping, an unknown key,
        a duplicate id, no or an unknown account, no legs, an unknown contract, a quantity that
        is not a finite non-zero number or whose notional is above ``max_amount``. The message
        names the file, the key path (``[3].legs[0].quantity``) and the problem.
    """
    if isinstance(data_or_path, TradeBatch):
        return data_or_path
    if isinstance(data_or_path, (str, PathLike)):
        path = Path(data_or_path)
        fname: str | None = str(file if file is not None else path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError("trades file not found", file=fname) from None
        except IsADirectoryError:
            raise InputError("is a folder, not a trades file", file=fname) from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read the trades file: {e}", file=fname) from None
        data = _read_yaml(text, Path(str(fname)))
    else:
        fname = None if file is None else str(file)
        data = data_or_path
    return _parse(data, inputs, fname)


def _parse(data: Any, inputs: Inputs, file: str | None) -> TradeBatch:
    """The trades of ``data`` (a list of mappings) as a :class:`TradeBatch`."""

    def fail(path: tuple[str | int, ...], problem: str) -> InputError:
        return InputError(problem, file=file, key_path=path)

    if isinstance(data, Mapping) or not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
        raise fail((), f"the trades must be a list of trades, not {_kind(data)}")
    if len(data) == 0:
        raise fail((), "the list of trades is empty")
    ids: list[str] = []
    accounts: list[str] = []
    leg_trade: list[int] = []
    leg_contract: list[Any] = []
    leg_quantity: list[Any] = []
    leg_path: list[tuple[str | int, ...]] = []
    for i, trade in enumerate(data):  # parsing the user's list (the margin is batched)
        if not isinstance(trade, Mapping):
            raise fail((i,), f"a trade must be a mapping (id, account, legs), not {_kind(trade)}")
        for key in trade:
            if key not in TRADE_KEYS:
                raise fail((i, str(key)), f"unknown key {key!r} (a trade has {', '.join(TRADE_KEYS)})")
        tid = trade.get("id", i)
        if isinstance(tid, bool) or not isinstance(tid, (str, int)) or tid == "":
            raise fail((i, "id"), f"a trade id must be a non-empty text or an integer, not {tid!r}")
        ids.append(str(tid))
        accounts.append(_only_account(inputs, trade.get("account"), (i, "account"), file))
        has_top = "contract" in trade or "quantity" in trade
        if "legs" in trade:
            if has_top:
                key = "contract" if "contract" in trade else "quantity"
                raise fail((i, key), "give `legs` or a top-level `contract` and `quantity`, not both")
            legs = trade["legs"]
            if isinstance(legs, Mapping) or not isinstance(legs, Sequence) or isinstance(legs, (str, bytes)):
                raise fail((i, "legs"), f"legs must be a list of {{contract, quantity}}, not {_kind(legs)}")
            if len(legs) == 0:
                raise fail((i, "legs"), "a trade needs at least one leg")
            items: list[tuple[Any, tuple[str | int, ...]]] = [
                (leg, (i, "legs", j)) for j, leg in enumerate(legs)
            ]
        elif has_top:
            items = [(trade, (i,))]
        else:
            raise fail(
                (i,), "a trade needs `legs` (a list of {contract, quantity}) or `contract` and `quantity`"
            )
        for leg, where in items:
            if not isinstance(leg, Mapping):
                raise fail(where, f"a leg must be a mapping (contract, quantity), not {_kind(leg)}")
            if leg is not trade:
                for key in leg:
                    if key not in LEG_KEYS:
                        raise fail(where + (str(key),), f"unknown key {key!r} (a leg has contract, quantity)")
            for key in LEG_KEYS:
                if key not in leg:
                    raise fail(where, f"missing {key}")
            c, q = leg["contract"], leg["quantity"]
            if not isinstance(c, str) or c == "":
                raise fail(where + ("contract",), f"a contract must be a non-empty text, not {c!r}")
            if isinstance(q, bool) or not isinstance(q, numbers.Real):
                raise fail(where + ("quantity",), f"a quantity must be a number, not {q!r}")
            leg_trade.append(i)
            leg_contract.append(c)
            leg_quantity.append(float(q))
            leg_path.append(where)
    return _finish(
        inputs,
        np.array(ids, dtype=object),
        np.array(accounts, dtype=object),
        np.array(leg_trade, dtype=np.int64),
        np.array(leg_contract, dtype=object),
        np.array(leg_quantity, dtype=float),
        file,
        leg_path,
    )


def _finish(
    inputs: Inputs,
    ids: np.ndarray,
    account: np.ndarray,
    leg_trade: np.ndarray,
    leg_contract: np.ndarray,
    leg_quantity: np.ndarray,
    file: str | None,
    leg_path: list[tuple[str | int, ...]] | None,
) -> TradeBatch:
    """Checks over all legs at once (ids unique, accounts known, contracts known, quantities
    bounded) and the batch with canonical contract ids."""

    def where(j: int, key: str) -> tuple[str | int, ...]:
        return (leg_path[j] if leg_path is not None else (int(leg_trade[j]),)) + (key,)

    def fail(path: tuple[str | int, ...], problem: str) -> InputError:
        return InputError(problem, file=file, key_path=path)

    if ids.size:
        uniq, first, counts = np.unique(ids.astype(str), return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = str(uniq[counts > 1][0])
            at = np.flatnonzero(ids.astype(str) == dup)
            raise fail((int(at[1]), "id"), f"duplicate trade id {dup!r} (also trade {int(at[0])})")
    known_accounts = np.asarray(trade_accounts(inputs), dtype=object)
    unknown = ~np.isin(account.astype(str), known_accounts.astype(str))
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise fail(
            (i, "account"),
            f"unknown account {str(account[i])!r} (the scenario's accounts: {_listed(known_accounts)})",
        )
    contracts = inputs.contracts
    src = inputs.span_params.source if inputs.span_params is not None else None
    hint = f": not in the scenario's contracts{' nor in ' + Path(src).name if src else ''}"

    def unknown_contract(j: int, problem: str) -> InputError:
        return fail(where(j, "contract"), problem)

    k = contract_indices(
        contracts, leg_contract, normalise=inputs.normalise_contract_id, what=hint, error=unknown_contract
    )
    q = leg_quantity
    bad = np.flatnonzero(~np.isfinite(q))
    if bad.size:
        j = int(bad[0])
        raise fail(where(j, "quantity"), f"a quantity must be a finite number, not {float(q[j])!r}")
    bad = np.flatnonzero(q == 0)
    if bad.size:
        raise fail(where(int(bad[0]), "quantity"), "a quantity must not be zero")
    limit = float(inputs.scenario.max_amount)
    unit = _unit_value(inputs)[k]
    with np.errstate(over="ignore", invalid="ignore"):
        notional = np.abs(q) * unit
    bad = np.flatnonzero(~(notional <= limit) | ~(np.abs(q) <= limit))
    if bad.size:
        j = int(bad[0])
        raise fail(
            where(j, "quantity"),
            f"the leg's notional (|quantity| x multiplier x price x FX) is {float(notional[j]):g} "
            f"{inputs.scenario.currency}, above the largest amount accepted (max_amount: {limit:g})",
        )
    names = contracts["contract"].values[k]
    return TradeBatch(
        ids=ids,
        account=account,
        leg_trade=leg_trade,
        leg_contract=np.asarray(names, dtype=object),
        leg_quantity=q.astype(float),
    )


def trade_accounts(inputs: Inputs) -> list[str]:
    """The accounts a trade may go to: the book's, then the accounts without positions that the
    method sections name (:data:`ACCOUNT_KEYED`: a funded CFD account, an account-layer account)."""
    names = [str(a) for a in inputs.accounts]
    seen = set(names)
    for section, fields in ACCOUNT_KEYED.items():
        params = inputs.scenario.section(section)
        for f in fields if params is not None else ():
            for name in getattr(params, f, None) or {}:  # the names of the user's section
                if name not in seen:
                    seen.add(name)
                    names.append(str(name))
    return names


def leg_cash_change(
    inputs: Inputs, leg_contract: np.ndarray, leg_quantity: np.ndarray, *, engine: pricing.Engine = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cash each leg moves at the trade: what it pays (buying) or receives (selling).

    Instruments paid in full move cash: stocks (and ETFs) and premium-style options pay
    ``quantity x multiplier x price`` (a purchase lowers the cash, a sale raises it). Futures,
    futures-style options and CFDs move no cash at the trade (only margin). The price is the
    valuation price of the scenario, without spread or commission: an option's given ``price``
    (premium), else its model value at the base market (the underlying's ``price``, the option's
    base vol, its time to expiry at ``as_of``): the value the methods count in market value and
    equity at the base grid point; a stock's underlying ``price``.

    Parameters
    ----------
    inputs
        The scenario's inputs.
    leg_contract
        ``(n_leg,)`` index into ``inputs.contracts`` of each leg.
    leg_quantity
        ``(n_leg,)`` signed quantity [contracts], long positive.
    engine
        Pricing engine of the model values.

    Returns
    -------
    amount, currency, fx
        ``(n_leg,)`` cash change of each leg [the contract's currency] (negative: paid; 0: no
        cash moves), that currency, and its value [reporting currency per unit].
    """
    k = np.asarray(leg_contract, dtype=np.int64).reshape(-1)
    q = np.asarray(leg_quantity, dtype=float).reshape(k.shape[0])
    c = inputs.contracts
    ctype = c["type"].values[k]
    is_opt = c["is_option"].values[k]
    paid = (ctype == "stock") | (is_opt & c["premium_style"].values[k])
    und = c["underlying_index"].values[k]
    base = inputs.market["base_price"].values[und]
    price = np.where(ctype == "stock", base, 0.0)
    given = c["price"].values[k]
    model_priced = np.flatnonzero(paid & is_opt & np.isnan(given))
    if model_priced.size:  # the options' own pricing, one vectorised call per distinct contract
        uk, back = np.unique(k[model_priced], return_inverse=True)
        sub = c.isel(contract=uk)
        level = inputs.market["base_price"].values[c["underlying_index"].values[uk]]
        value = inputs.revalue(
            sub, xr.DataArray(level, dims="contract"), sub["base_vol"].fillna(0.0), sub["t"], engine=engine
        ).values
        price[model_priced] = value[back]
    has_given = paid & is_opt & ~np.isnan(given)
    price[has_given] = given[has_given]
    amount = np.where(paid, -q * c["multiplier"].values[k] * price, 0.0)
    currency = np.asarray(c["currency"].values[k], dtype=object)
    fx = inputs.market["fx"].values[und].astype(float)
    return amount + 0.0, currency, fx


def securities_legs(inputs: Inputs, leg_contract: np.ndarray) -> np.ndarray:
    """Whether each leg (``leg_contract``: indices into ``inputs.contracts``) is of a security of
    the securities account: a stock or an option on spot (not on a future)."""
    k = np.asarray(leg_contract, dtype=np.int64).reshape(-1)
    c = inputs.contracts
    on_spot = c["is_option"].values[k] & (c["model"].values[k] != pricing.BLACK76)
    return np.asarray((c["type"].values[k] == "stock") | on_spot, dtype=bool)


def _unit_value(inputs: Inputs) -> np.ndarray:
    """Value of one contract [reporting currency] at its highest price over the grid (0 where
    none is known): multiplier x max(level, given price) x FX."""
    c = inputs.contracts
    level = inputs.underlying_level()
    extra = [d for d in level.dims if d != "contract"]
    high = level.max(dim=extra).values if extra else level.values
    fx = inputs.market["fx"].values[c["underlying_index"].values]
    price = np.nan_to_num(c["price"].values, nan=0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.abs(c["multiplier"].values) * np.maximum(np.nan_to_num(high, nan=0.0), np.abs(price)) * fx


def _only_account(inputs: Inputs, given: Any, path: tuple[str | int, ...], file: str | None = None) -> str:
    """The account a trade names, or the book's only one when it names none."""
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, (str, int)) or given == "":
            raise InputError(f"an account must be a non-empty text, not {given!r}", file=file, key_path=path)
        return str(given)
    accounts = trade_accounts(inputs)
    if len(accounts) == 1:
        return str(accounts[0])
    problem = (
        "the scenario has no account: a trade goes to an account of the book (or one its method sections fund)"
        if not accounts
        else f"the scenario has {len(accounts)} accounts: give the trade's account ({_listed(accounts)})"
    )
    raise InputError(problem, file=file, key_path=path or None)


def _listed(names: Sequence[Any] | np.ndarray, n: int = 8) -> str:
    shown = [str(x) for x in list(names)[:n]]
    more = f", ... ({len(names)} in all)" if len(names) > n else ""
    return ", ".join(shown) + more


def _kind(x: Any) -> str:
    if isinstance(x, Mapping):
        return "a mapping"
    if isinstance(x, str):
        return f"the text {x!r}"
    if x is None:
        return "nothing"
    if isinstance(x, (list, tuple)):
        return "a list"
    return f"{type(x).__name__} {x!r}"
