"""Parameters of strategy-based margin (the scenario file's ``strategy:`` section).

Every rate of the US strategy-based (Regulation T / FINRA / options exchange) rules is a field
here with its default and its source:

- **Reg T**: Regulation T, 12 CFR 220.12 (the Federal Reserve's initial margin on securities:
  50 % of a long equity position, 150 % of the proceeds of a short sale);
- **FINRA 4210**: FINRA Rule 4210(c) (maintenance: 25 % of long positions; short positions 30 %
  or USD 5 a share, and below USD 5 a share 100 % or USD 2.50 a share) and 4210(f)(2) (options);
- **CBOE**: the CBOE Margin Manual (short uncovered options: 100 % of the proceeds plus 20 % of
  the underlying value, 15 % for broad-based indices, less the out-of-the-money amount, at least
  the proceeds plus 10 %; listed options with more than nine months to expiry: loan value of 25 %);
- **seed**: the broker's thresholds for portfolio margin (USD 110,000 to open, USD 100,000 to keep).

Like every module of :mod:`marginsim.params`, it imports only pydantic and :mod:`marginsim.params`.
"""

from __future__ import annotations

from pydantic import Field

from ._base import Amount, NonNegFloat, PosFloat, PosFraction
from ._base import StrictModel as _Model

__all__ = ["StockRates", "OptionRates", "ComparisonParams", "StrategyParams"]


class StockRates(_Model):
    """Stocks and ETFs: Reg T initial and FINRA 4210(c) maintenance."""

    long_initial: PosFraction = Field(0.50, description="Reg T initial margin of a long position [fraction of value].")
    long_maintenance: PosFraction = Field(
        0.25, description="FINRA 4210(c)(1) maintenance of a long position [fraction of value]."
    )
    short_initial: PosFloat = Field(
        1.50,
        ge=1.0,
        le=10.0,
        description=(
            "Reg T initial of a short sale [fraction of the proceeds], proceeds included: 1.5 = the "
            "proceeds plus 50 %; reported net of the proceeds (0.5 x value)."
        ),
    )
    short_maintenance: PosFraction = Field(
        0.30, description="FINRA 4210(c)(2) maintenance of a short position priced at or above `low_price`."
    )
    short_per_share: NonNegFloat = Field(
        5.0, description="FINRA 4210(c)(2) floor per share of a short position at or above `low_price` [USD]."
    )
    low_price: PosFloat = Field(5.0, description="Price below which a short share is low-priced [USD].")
    short_low_price_maintenance: PosFloat = Field(
        1.0, le=10.0, description="FINRA 4210(c)(2) maintenance of a low-priced short share [fraction of value]."
    )
    short_low_price_per_share: NonNegFloat = Field(
        2.5, description="FINRA 4210(c)(2) floor per low-priced short share [USD]."
    )
    no_loan_value: list[str] = Field(
        default_factory=list,
        description=(
            "Underlyings without loan value (foreign stocks without a ready market, the seed's rule; "
            "the account layer's eligibility check names them): long positions margined at 100 %."
        ),
    )


class OptionRates(_Model):
    """Equity and index options: CBOE Margin Manual / FINRA 4210(f)(2)."""

    uncovered: PosFraction = Field(
        0.20, description="Short uncovered option: share of the underlying value added to the proceeds."
    )
    uncovered_broad_index: PosFraction = Field(
        0.15, description="The same for broad-based indices (product_class broad_index, broad_index_high_cap)."
    )
    uncovered_minimum: PosFraction = Field(
        0.10,
        description="Minimum over the proceeds: of the underlying value (calls) or the exercise price (puts).",
    )
    long_dated_years: PosFloat = Field(
        0.75, le=50.0, description="Listed long options with more than this to expiry are long-dated [years] (9 months)."
    )
    long_dated_requirement: PosFraction = Field(
        0.75, description="Requirement of a long-dated long option [fraction of its value] (loan value 25 %)."
    )
    protective_exercise: PosFraction = Field(
        0.10,
        description=(
            "FINRA 4210 maintenance of stock hedged by a long put (call): this share of the exercise "
            "price plus the option's out-of-the-money amount, if below the stock's own maintenance."
        ),
    )


class ComparisonParams(_Model):
    """Strategy-based against portfolio margin: the broker's equity thresholds (seed)."""

    enabled: bool = Field(
        True, description="Run portfolio margin (through the registry) for a comparison block per account."
    )
    opening_equity: Amount = Field(
        110_000.0, description="Equity needed to open a portfolio-margin account [reporting currency] (seed: USD 110,000)."
    )
    minimum_equity: Amount = Field(
        100_000.0,
        description="Equity needed to keep trading on portfolio margin [reporting currency] (seed: USD 100,000).",
    )


class StrategyParams(_Model):
    """The ``strategy:`` section: strategy-based margin (Reg T, FINRA 4210, CBOE) with optimal pairing."""

    stock: StockRates = Field(default_factory=StockRates)
    option: OptionRates = Field(default_factory=OptionRates)
    comparison: ComparisonParams = Field(default_factory=ComparisonParams)
    cash: dict[str, Amount] = Field(
        default_factory=dict,
        description="Cash per account [reporting currency]: equity = cash + market value (for the comparison).",
    )
    batch_variables: int = Field(
        5_000,
        ge=100,
        le=10_000_000,
        description="Pairing: about this many strategy variables per HiGHS milp call (accounts never split).",
    )
    tie_break: NonNegFloat = Field(
        0.001,
        le=1.0,
        description=(
            "Pairing: among groupings of (nearly) equal requirement, take the one with fewer, larger "
            "strategies, then the earlier candidates (the same choice whatever the batches or chunks); a "
            "grouping so chosen is less than 0.002 per unit of strategy above the least [reporting currency per unit]."
        ),
    )
    relaxation_first: bool = Field(
        True,
        description=(
            "Pairing: solve the linear relaxation of every account first and the integer program only "
            "where it is fractional (the same optimum; false: the integer program for every account)."
        ),
    )
