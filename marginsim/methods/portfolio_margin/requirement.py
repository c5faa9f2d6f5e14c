"""Maintenance and initial requirements, the binding component, equity and the account thresholds.

``maintenance = max(base, extreme, concentration, single_name) + large_position``, with
``base = sum over class groups of max(scan, option minimum)``, and
``initial = sum over class groups of ratio x (its part of the binding component + its large
position charge) + days-to-liquidate add-on``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ...kernels import portfolio_margin as K
from ...model import Inputs
from ...params.portfolio_margin import PortfolioMarginParams
from .book import PmBook
from .components import AddOns, Concentration, Scan, SingleName

__all__ = ["Requirement", "requirement", "Equity", "equity"]

# the binding component of each index of K.binding_component ("": nothing to charge)
_LABELS = np.array(["scan", "extreme", "concentration", "single_name", ""], dtype=object)


@dataclass
class Requirement:
    """Account totals, shape ``(A, G)``: the components, ``maintenance``, ``initial`` and ``binding``."""

    scan: np.ndarray
    minimum: np.ndarray
    base: np.ndarray
    extreme: np.ndarray
    large_position: np.ndarray
    days_to_liquidate: np.ndarray
    maintenance: np.ndarray
    initial: np.ndarray
    binding: np.ndarray
    group_core: np.ndarray | None = None  # (A, G, C) each class group's part of the binding component


def requirement(book: PmBook, sc_: Scan, conc: Concentration, sn: SingleName, add: AddOns) -> Requirement:
    """Sum the class groups, pick the binding component, and apply the initial ratios."""
    n_a, n_c, n_g = book.n_accounts, book.n_groups, book.grid.size
    scan = sc_.group_scan.sum(axis=1)
    minimum = np.broadcast_to(sc_.group_minimum.sum(axis=1)[:, None], (n_a, n_g))
    base = sc_.group_base.sum(axis=1)
    extreme = sc_.group_extreme.sum(axis=1)
    large_position = add.large_position.sum(axis=1)
    days_to_liquidate = add.days_to_liquidate.sum(axis=1)
    core, core_idx = K.binding_component(np.stack([base, extreme, conc.total, sn.total], axis=-1))
    maintenance = core + large_position
    binding = _LABELS[np.where(core_idx >= 0, core_idx, 4)]
    binding = np.where((core_idx == 0) & (base > scan * (1 + 1e-12) + 1e-9), "minimum", binding).astype(str)

    c_axis = np.arange(n_c)
    sn_part = np.where(
        c_axis[None, None, :] == sn.driver_index[..., None], np.moveaxis(sn.group_loss, 1, -1), 0.0
    )
    parts = np.stack(
        [
            np.moveaxis(sc_.group_base, 1, -1),
            np.moveaxis(sc_.group_extreme, 1, -1),
            conc.contribution,
            sn_part,
        ]
    )  # (4, A, G, C)
    chosen = np.take_along_axis(parts, np.maximum(core_idx, 0)[None, ..., None], axis=0)[0]
    chosen = np.where((core_idx >= 0)[..., None], chosen, 0.0)
    initial = K.initial_requirement(
        chosen,
        book.groups.ratio,
        np.moveaxis(add.large_position, 1, -1),
        np.moveaxis(add.days_to_liquidate, 1, -1),
    )
    return Requirement(
        scan, minimum, base, extreme, large_position, days_to_liquidate, maintenance, initial, binding, chosen
    )


@dataclass
class Equity:
    """Equity figures, shape ``(A, G)``: NaN where the account's cash is not given.

    Attributes
    ----------
    equity
        cash + market value.
    opening_equity_met, minimum_equity_met
        1.0 / 0.0 where the cash is given and the threshold is set, else NaN.
    """

    equity: np.ndarray
    opening_equity_met: np.ndarray
    minimum_equity_met: np.ndarray


def equity(inputs: Inputs, params: PortfolioMarginParams, market_value: np.ndarray) -> Equity:
    """Equity (``cash`` of ``params`` + market value) and the opening and minimum equity tests.

    Raises
    ------
    InputError
        ``cash`` names an account without positions in the book.
    """
    sc = inputs.scenario
    n_a, n_g = market_value.shape
    accounts = inputs.accounts
    cash = np.full(n_a, np.nan)
    row_of = {a: i for i, a in enumerate(accounts)}
    in_book = inputs.book_accounts()
    for name, amount in params.cash.items():  # the accounts the file names, not the book's
        if name not in in_book:
            raise InputError(
                f"account {name!r} has no positions in the book",
                file=sc.file,
                key_path=("portfolio_margin", "cash", name),
            )
        if name in row_of:  # else: in another chunk of the book's accounts
            cash[row_of[name]] = amount
    eq = cash[:, None] + market_value
    has_cash = ~np.isnan(cash)[:, None] & np.ones((1, n_g), dtype=bool)
    open_min, keep_min = params.equity_thresholds()

    def flag(threshold, key: str) -> np.ndarray:
        """True / False where the account's cash is given; NaN where unknown or no threshold."""
        if threshold is None or not has_cash.any():
            return np.full((n_a, n_g), np.nan)
        amount = threshold.amount * sc.fx_rate(threshold.currency, key_path=f"portfolio_margin.{key}")
        return np.where(has_cash, (eq >= amount).astype(float), np.nan)

    return Equity(eq, flag(open_min, "opening_equity"), flag(keep_min, "minimum_equity"))
