"""Scenario-file models of the CFD method (``cfd:``) and of Monte Carlo price paths (``grid.monte_carlo``).

Every policy number of ``spec/cfd.md`` is a documented parameter here, with the regulator's figure
(or a *house default* where no public source fixes one) as its default:

* the ESMA / Central Bank of Ireland leverage caps per underlying class (:data:`DEFAULT_LEVERAGE`),
  the major currencies (:data:`DEFAULT_MAJOR_CURRENCIES`) and the major equity indices
  (:data:`DEFAULT_MAJOR_INDICES`): tables the user extends in the scenario file;
* the broker's own volatility-based rate, its initial / maintenance ratio (1.25), the close-out
  level (50 % of the initial margin), the overnight financing spreads (retail + 1 %), the
  concentration stresses (30 % on the two largest positions, 5 % on the rest).

"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ._base import Currency, Fraction, Money, NonNegFloat, PosFloat, StepDays, Vol, check_step_times
from ._base import StrictModel as _Model
from .monte_carlo import MonteCarloParams

__all__ = [
    "DEFAULT_LEVERAGE",
    "DEFAULT_MAJOR_CURRENCIES",
    "DEFAULT_MAJOR_INDICES",
    "CfdAccount",
    "CfdUnderlying",
    "CfdBrokerVolRule",
    "CfdFinancingParams",
    "CfdConcentrationParams",
    "CfdParams",
    "MonteCarloParams",
]


#: Retail leverage caps (x:1) per underlying class: ESMA Decision (EU) 2018/796, CBI rules of
#: 1 August 2019. The initial margin rate is 1 / leverage.
DEFAULT_LEVERAGE: dict[str, float] = {
    "major_fx": 30.0,
    "nonmajor_fx": 20.0,
    "gold": 20.0,
    "major_index": 20.0,
    "commodity": 10.0,
    "nonmajor_index": 10.0,
    "individual_equity": 5.0,
    "crypto": 2.0,
}

#: Major currencies: a pair of any two of them is a major currency pair.
DEFAULT_MAJOR_CURRENCIES: list[str] = ["USD", "CAD", "EUR", "GBP", "CHF", "JPY"]

#: Major equity indices (canonical name -> aliases an underlying may be called by). Names are
#: matched on upper-case letters and digits only ("UK 100" = "uk100").
DEFAULT_MAJOR_INDICES: dict[str, list[str]] = {
    "FTSE 100": ["UK 100", "FTSE", "UKX", "IBGB100"],
    "CAC 40": ["FRANCE 40", "FR40", "CAC", "PX1", "IBFR40"],
    "DAX": ["GERMANY 40", "DE40", "GER40", "GERMANY 30", "DE30", "GER30", "IBDE40", "IBDE30"],
    "Dow Jones Industrial Average": ["DJIA", "US 30", "DOW JONES", "INDU", "IBUS30"],
    "S&P 500": ["SP 500", "SPX", "US 500", "IBUS500"],
    "NASDAQ Composite": ["COMP", "CCMP", "NASDAQ"],
    "NASDAQ 100": ["NDX", "US TECH 100", "USTEC", "US 100", "IBUST100"],
    "Nikkei 225": ["N225", "NKY", "JAPAN 225", "JP225", "IBJP225"],
    "ASX 200": ["S&P/ASX 200", "AS51", "XJO", "AUSTRALIA 200", "AU200", "IBAU200"],
    "EURO STOXX 50": ["SX5E", "EU 50", "EU50", "ESTX50", "STOXX50E", "IBEU50"],
}


class CfdAccount(_Model):
    """Funding of one account's CFD trading (``cfd.accounts.<name>``)."""

    cash: Money = Field(
        description=(
            "Settled cash of the account: an amount in the reporting currency, or amounts by currency "
            "(converted with `fx`). Negative = a margin loan (e.g. from buying stock): no cash for CFDs."
        )
    )
    other_initial_margin: Money = Field(
        0.0,
        description=(
            "Cash already used for the initial margin of other products (stocks, futures...): not "
            "available for CFDs [reporting currency, or by currency]."
        ),
    )
    client: Literal["retail", "professional"] | None = Field(
        None, description="Client category; default: `cfd.client`."
    )


class CfdUnderlying(_Model):
    """CFD data of one underlying (``cfd.underlyings.<name>``)."""

    cfd_class: str | None = Field(
        None,
        description=(
            "Leverage class (a key of `cfd.leverage`, including classes the user adds); default: "
            "`market.<name>.cfd_class`, else inferred (currency pair, major index, gold, "
            "product_class), else individual_equity ('individual equities and other reference values')."
        ),
    )
    historical_vol: Vol | None = Field(
        None,
        description="Historical volatility [decimal per sqrt(year)] the broker's own rate is set from.",
    )
    broker_maintenance: Fraction | None = Field(
        None, description="The broker's maintenance rate [fraction of notional]; overrides the vol rule."
    )
    broker_initial: Fraction | None = Field(
        None,
        description="The broker's initial rate [fraction of notional]; default: broker_initial_ratio x maintenance.",
    )


class CfdBrokerVolRule(_Model):
    """The broker's own maintenance rate from historical volatility (*house default*).

    ``rate = max(minimum, z * historical_vol * sqrt(horizon_days / 365))``: a one-sided ``z``
    quantile of a normal move over the liquidation horizon.
    """

    z: PosFloat = Field(2.33, description="Normal quantile (2.33: 99 % one-sided).")
    horizon_days: PosFloat = Field(10.0, description="Liquidation horizon [calendar days].")
    minimum: Fraction = Field(0.0, description="Floor of the broker's maintenance rate [fraction].")


class CfdFinancingParams(_Model):
    """Overnight financing of CFD positions.

    Per night a long pays ``benchmark + spread (+ retail_extra_spread)`` and a short pays
    ``spread (+ retail_extra_spread) - benchmark`` (a negative charge is a credit), on the notional
    at the last step's price, ``nights / day_count`` of a year.
    """

    spread: NonNegFloat = Field(0.015, description="Broker spread over the benchmark [decimal per year].")
    retail_extra_spread: NonNegFloat = Field(
        0.01,
        description="Extra spread retail clients pay for negative balance protection [decimal per year].",
    )
    benchmark: dict[Currency, float] = Field(
        default_factory=dict,
        description="Benchmark rate by currency [decimal per year]; default: the underlying's market rate.",
    )
    day_count: Literal[360, 365] = Field(365, description="Days per year of the financing accrual.")


class CfdConcentrationParams(_Model):
    """Concentration margin when CFD and stock positions are margined together."""

    mode: Literal["auto", "always", "never"] = Field(
        "auto",
        description="auto: for accounts that hold both CFD and stock positions; always; never.",
    )
    largest_count: int = Field(2, ge=0, description="How many of the largest positions take the large move.")
    largest_move: Fraction = Field(0.30, description="Adverse move of the largest positions [fraction].")
    other_move: Fraction = Field(0.05, description="Adverse move of the other positions [fraction].")
    stock_maintenance: Fraction = Field(
        0.25,
        description="Standard maintenance rate of stock positions [fraction of value] (*house default*).",
    )
    cfd_classes: list[str] = Field(
        default_factory=lambda: ["individual_equity"],
        description=(
            "CFD classes whose positions are stressed with the stocks (share CFDs: the stocks and CFDs "
            "margined together) (*house default*)."
        ),
    )


def _merge_defaults(data: Any) -> Any:
    """Merge user tables into the default tables (the user extends them, key by key)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if isinstance(data.get("leverage"), dict):
        data["leverage"] = {**DEFAULT_LEVERAGE, **data["leverage"]}
    if isinstance(data.get("major_indices"), dict):
        data["major_indices"] = {**DEFAULT_MAJOR_INDICES, **data["major_indices"]}
    if isinstance(data.get("major_currencies"), list):
        extra = [c for c in data["major_currencies"] if c not in DEFAULT_MAJOR_CURRENCIES]
        data["major_currencies"] = DEFAULT_MAJOR_CURRENCIES + extra
    return data


class CfdParams(_Model):
    """The ``cfd:`` section: CFD parameters and account funding (``spec/cfd.md``)."""

    client: Literal["retail", "professional"] = Field(
        "retail", description="Default client category (ESMA caps and protections apply to retail only)."
    )
    accounts: dict[str, CfdAccount] = Field(
        default_factory=dict, description="Funding per account (required for every account holding CFDs)."
    )
    leverage: dict[str, PosFloat] = Field(
        default_factory=lambda: dict(DEFAULT_LEVERAGE),
        description="Retail leverage cap (x:1) per class; entries given are merged into the defaults.",
    )
    major_currencies: list[Currency] = Field(
        default_factory=lambda: list(DEFAULT_MAJOR_CURRENCIES),
        description="Major currencies; entries given are added to the defaults.",
    )
    major_indices: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_MAJOR_INDICES.items()},
        description="Major equity indices: name -> aliases; entries given are merged into the defaults.",
    )
    underlyings: dict[str, CfdUnderlying] = Field(
        default_factory=dict, description="Per underlying: class, historical vol, broker rates."
    )
    broker_vol_rule: CfdBrokerVolRule = Field(default_factory=CfdBrokerVolRule)
    broker_initial_ratio: Annotated[float, Field(ge=1)] = Field(
        1.25, description="The broker's initial / maintenance ratio (share CFDs: 1.25)."
    )
    close_out_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5,
        description="Retail close-out level: equity below this fraction of the initial margin posted.",
    )
    financing: CfdFinancingParams = Field(default_factory=CfdFinancingParams)
    concentration: CfdConcentrationParams = Field(default_factory=CfdConcentrationParams)
    step_days: StepDays | None = Field(
        None,
        description=(
            "Calendar days between path steps (overnight financing accrues per night crossed); "
            "default: grid.monte_carlo.step_days, else 0 (a grid.path is a sequence of instant moves)."
        ),
    )
    step_times: list[dt.datetime] | None = Field(
        None,
        description="Time of each path step (overrides step_days); positions open at the first step at or after `opened`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        return _merge_defaults(data)

    @field_validator("step_times")
    @classmethod
    def _step_times(cls, v: list[dt.datetime] | None) -> list[dt.datetime] | None:
        return check_step_times(v)

    @model_validator(mode="after")
    def _check(self) -> CfdParams:
        for name, u in self.underlyings.items():
            if u.cfd_class is not None and u.cfd_class not in self.leverage:
                raise ValueError(
                    f"underlyings.{name}.cfd_class {u.cfd_class!r} is not a class of `leverage` "
                    f"({', '.join(self.leverage)})"
                )
        return self
