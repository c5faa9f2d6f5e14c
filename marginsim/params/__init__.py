"""Parameter models of each method's scenario-file section (pydantic only; no other part of marginsim).

- :mod:`marginsim.params.span`: ``span:``
- :mod:`marginsim.params.portfolio_margin`: ``portfolio_margin:``
- :mod:`marginsim.params.cfd`: ``cfd:`` and Monte Carlo paths (``grid.monte_carlo``)
- :mod:`marginsim.params.account`: ``account:``
- :mod:`marginsim.params.history`: ``history:`` (daily closes per underlying)
- :mod:`marginsim.params.var`, :mod:`marginsim.params.strategy`: ``var:``, ``strategy:``

A section's module is imported the first time its model is used (``marginsim.params.SpanParams``
imports :mod:`marginsim.params.span` then): validating a SPAN file builds no CFD model.

:class:`StrictModel` is the base of every section model (unknown keys are errors): a method
defined outside the package derives its section's model from it.
"""

import importlib
from typing import TYPE_CHECKING

from ._base import (
    MAX_AMOUNT,
    MAX_RATE,
    MAX_STEP_DAYS,
    MAX_VOL,
    Amount,
    Country,
    Currency,
    Date,
    Fraction,
    Money,
    NonNegFloat,
    PosFloat,
    PosFraction,
    Rate,
    StrictModel,
    Vol,
)
from .history import HistoryParams
from .monte_carlo import MonteCarloParams

if TYPE_CHECKING:  # the section models below are imported on first use (PEP 562)
    from .account import AccountParams
    from .cfd import CfdParams
    from .portfolio_margin import PortfolioMarginParams
    from .span import CombinedCommodityParams, SpanParams

__all__ = [
    "MAX_AMOUNT",
    "MAX_STEP_DAYS",
    "MAX_RATE",
    "MAX_VOL",
    "Rate",
    "Vol",
    "Amount",
    "Country",
    "Currency",
    "Date",
    "Fraction",
    "Money",
    "NonNegFloat",
    "PosFloat",
    "PosFraction",
    "AccountParams",
    "CfdParams",
    "CombinedCommodityParams",
    "HistoryParams",
    "MonteCarloParams",
    "PortfolioMarginParams",
    "SpanParams",
    "StrictModel",
]

#: Section model -> the module that defines it (imported on first use of the name).
_LAZY = {
    "AccountParams": "account",
    "CfdParams": "cfd",
    "CombinedCommodityParams": "span",
    "PortfolioMarginParams": "portfolio_margin",
    "SpanParams": "span",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
