"""Funding of CFD trading (``spec/cfd.md`` section 3): initial margin from cash only.

An account's CFD cash is its settled cash (``cfd.accounts.<name>.cash``) less the cash already
used for other products' initial margin, floored at 0 (a margin loan leaves nothing). Unrealised
profit does not fund new positions; realised pnl is cash at once (in the path kernel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ...model import Inputs
from ...params.cfd import CfdParams

__all__ = ["Funding", "account_funding"]


@dataclass(frozen=True)
class Funding:
    """The accounts of a CFD run and their funding.

    Attributes
    ----------
    accounts
        Account names: the book's, then funded accounts without positions (``cfd.accounts``).
    client
        ``"retail"`` or ``"professional"`` per account (object array).
    retail
        Whether the client is retail (negative balance protection, leverage caps).
    cash
        CFD cash at the start [reporting currency]: cash less other products' initial margin, >= 0.
    """

    accounts: list[str]
    client: np.ndarray
    retail: np.ndarray
    cash: np.ndarray


def account_funding(inputs: Inputs, params: CfdParams, cfd_accounts: np.ndarray) -> Funding:
    """The accounts of the run, their client category and CFD cash.

    Parameters
    ----------
    inputs
        The data model.
    params
        The CFD parameters.
    cfd_accounts
        Account index of every CFD row of the book.

    Returns
    -------
    Funding

    Raises
    ------
    InputError
        An account holds CFD positions without funding (``cfd.accounts.<name>.cash``), or an amount
        by currency has no FX rate.
    """
    sc = inputs.scenario
    # funded accounts without positions come after the book's (in one chunk only of a chunked book)
    in_book = inputs.book_accounts()
    extra = inputs.universe is None or inputs.universe.extra_accounts
    names = list(inputs.accounts) + [a for a in params.accounts if extra and a not in in_book]
    holds_cfd = np.zeros(len(names), dtype=bool)
    holds_cfd[cfd_accounts] = True
    unfunded = np.flatnonzero(holds_cfd & ~np.isin(np.array(names, dtype=object), list(params.accounts)))
    if unfunded.size:
        name = names[int(unfunded[0])]
        raise InputError(
            f"account {name!r} holds CFD positions: give its funding, cfd.accounts.{name}.cash",
            file=sc.file,
            key_path=("cfd", "accounts"),
        )
    fund = [params.accounts.get(n) for n in names]
    client = np.array([(f.client if f and f.client else params.client) for f in fund], dtype=object)
    cash_total = np.array(
        [
            0.0 if f is None else sc.cash_amount(f.cash, key_path=f"cfd.accounts.{n}.cash")
            for n, f in zip(names, fund)
        ]
    )
    other_im = np.array(
        [
            0.0
            if f is None
            else sc.cash_amount(f.other_initial_margin, key_path=f"cfd.accounts.{n}.other_initial_margin")
            for n, f in zip(names, fund)
        ]
    )
    return Funding(names, client, client == "retail", np.maximum(cash_total - other_im, 0.0))
