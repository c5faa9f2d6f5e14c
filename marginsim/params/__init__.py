"""Parameter models of each method's scenario-file section (pydantic only; no other part of marginsim).

- :mod:`marginsim.params.span`: ``span:``
- :mod:`marginsim.params.portfolio_margin`: ``portfolio_margin:``
- :mod:`marginsim.params.cfd`: ``cfd:`` and Monte Carlo paths (``grid.monte_carlo``)
- :mod:`marginsim.params.account`: ``account:``
- :mod:`marginsim.params.history`: ``history:`` (daily closes per underlying)

:class:`StrictModel` is the base of every section model (unknown keys are errors): a method
defined outside the package derives its section's model from it.
"""

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
from .account import AccountParams
from .cfd import CfdParams, MonteCarloParams
from .history import HistoryParams
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
