"""Scenario-file model of the account layer (``account:``), ``spec/account.md``.

Every policy number of the account layer is a documented parameter here, with the source's
figure as its default where a public source fixes one, and a *house default* where none does:

* sources' figures: the margin-call windows (00:01-12:00 -> 16:00 the same business day,
  12:01-00:00 -> 16:00 the next Hong Kong business day), the Hong Kong exchange calendar, the
  three currency groups, USD as base currency, the account opening (USD 500,000) and activation
  (USD 100,000) thresholds, the balanced-investor equity threshold (USD 500,000), the ready-market
  conditions (90 days listed, 20-day median volume of 100,000 shares or USD 500,000, free-float
  capitalisation of USD 500 million on each of the last 10 trading days, 5-business-day grace),
  the interest tier thresholds (no credit interest on the first USD 10,000; no short-credit
  interest on the first USD 100,000);
* house defaults: the broker's mark-up over the exchange's initial margin (10 %) and maintenance
  margin (0 %), the settlement time used when ``as_of`` has no time (17:00), the withdrawal
  buffer (10 % of the initial margin), the liquidation fee (USD 5 per contract), the benchmark
  rates and the spreads of the interest tiers, the day-count basis per currency.

"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ._base import (
    MAX_AMOUNT,
    Amount,
    Currency,
    Date,
    Fraction,
    NonNegFloat,
    PosFloat,
    StepMinutes,
    check_step_times,
)
from ._base import StrictModel as _Model

__all__ = [
    "CURRENCY_GROUPS",
    "INVESTOR_CLASSES",
    "DEFAULT_BENCHMARK_RATES",
    "DEFAULT_DAY_BASIS",
    "DEFAULT_FTSE_WORLD_COUNTRIES",
    "FixedMargin",
    "PercentMargin",
    "ProductParams",
    "Movement",
    "LmeProfit",
    "Deposit",
    "AccountFunds",
    "InterestTier",
    "InterestParams",
    "StockMarketData",
    "ReadyMarketParams",
    "EligibilityParams",
    "LiquidationParams",
    "DecisionPoints",
    "AccountParams",
]


#: The broker's currency groups (``spec/account.md`` section 2): Hong Kong exchange products,
#: other non-mainland products, mainland China products. Funds are shared within a group only.
CURRENCY_GROUPS: tuple[str, ...] = ("HK_", "NonHK_", "CN_")
CurrencyGroup = Literal["HK_", "NonHK_", "CN_"]

#: Investor classes, from the least to the most risk-tolerant non-professional, then professional.
INVESTOR_CLASSES: tuple[str, ...] = (
    "conservative",
    "cautious",
    "balanced",
    "aggressive",
    "radical",
    "professional",
)
InvestorClass = Literal["conservative", "cautious", "balanced", "aggressive", "radical", "professional"]
# contract types, the methods that can set their exchange requirement, the other methods
_ContractType = Literal["future", "call", "put", "stock", "cfd"]
_MarginSource = Literal["span", "portfolio_margin", "cfd"]
_OtherMethod = Literal["portfolio_margin", "cfd"]


def _default_controlled_classes() -> list[InvestorClass]:
    return ["balanced", "aggressive", "radical"]


def _default_currency_groups() -> dict[str, CurrencyGroup]:
    return {"HKD": "HK_", "CNH": "CN_", "CNY": "CN_"}


def _default_margin_source() -> dict[_ContractType, _MarginSource]:
    return {"future": "span", "call": "span", "put": "span", "stock": "portfolio_margin", "cfd": "cfd"}


def _default_method_currency_group() -> dict[_OtherMethod, CurrencyGroup]:
    return {"portfolio_margin": "NonHK_", "cfd": "NonHK_"}


#: House default benchmark rates [decimal per year] (illustrative levels; override them in the file
#: with the day's rates). A currency with a balance and no benchmark is an error, never 0.
DEFAULT_BENCHMARK_RATES: dict[str, float] = {
    "USD": 0.0433,
    "HKD": 0.0350,
    "CNH": 0.0150,
    "CNY": 0.0150,
    "EUR": 0.0200,
    "GBP": 0.0400,
    "JPY": 0.0050,
    "SGD": 0.0200,
    "AUD": 0.0360,
    "CAD": 0.0275,
    "CHF": 0.0000,
}

#: Day-count basis [days per year] of interest per currency (money-market convention); others 360.
DEFAULT_DAY_BASIS: dict[str, int] = {"HKD": 365, "GBP": 365, "SGD": 365, "AUD": 365, "CAD": 365}

#: Countries of the FTSE developed-market classification (house default for the ready-market
#: condition "listed on an exchange in a country recognised by the FTSE World Index"); a
#: conservative subset of the index's coverage: add the advanced-emerging countries in the file.
DEFAULT_FTSE_WORLD_COUNTRIES: list[str] = [
    "AU", "AT", "BE", "CA", "DK", "FI", "FR", "DE", "HK", "IE", "IL", "IT", "JP", "LU", "NL",
    "NZ", "NO", "PL", "PT", "SG", "KR", "ES", "SE", "CH", "GB", "US",
]  # fmt: skip


class FixedMargin(_Model):
    """Exchange margin as a fixed amount per contract (most non-mainland exchanges)."""

    type: Literal["fixed"]
    initial: Annotated[NonNegFloat, Field(le=MAX_AMOUNT)] = Field(
        description="Exchange initial margin per contract [`currency`]."
    )
    maintenance: Annotated[NonNegFloat, Field(le=MAX_AMOUNT)] | None = Field(
        None, description="Exchange maintenance margin per contract [`currency`]; default: `initial`."
    )
    currency: Currency | None = Field(None, description="Margin currency; default: the contract's currency.")

    @model_validator(mode="after")
    def _check(self) -> FixedMargin:
        if self.maintenance is not None and self.maintenance > self.initial:
            raise ValueError("maintenance margin above the initial margin")
        return self


class PercentMargin(_Model):
    """Exchange margin as a fraction of notional (mainland China exchanges).

    Notional = |quantity| x multiplier x price level [contract currency], at every grid point.
    """

    type: Literal["percentage"]
    initial: Fraction = Field(description="Initial margin rate [fraction of notional].")
    maintenance: Fraction | None = Field(
        None, description="Maintenance margin rate [fraction of notional]; default: `initial`."
    )

    @model_validator(mode="after")
    def _check(self) -> PercentMargin:
        if self.maintenance is not None and self.maintenance > self.initial:
            raise ValueError("maintenance rate above the initial rate")
        return self


class ProductParams(_Model):
    """One product (``account.products.<contract, SPAN combined commodity or underlying>``).

    Keys are looked up in that order: a contract's own entry, then its combined commodity's
    (its ``group``), then its underlying's.
    """

    currency_group: CurrencyGroup | None = Field(
        None, description="Currency group; default: by currency (`account.currency_group_of_currency`)."
    )
    margin: FixedMargin | PercentMargin | None = Field(
        None,
        discriminator="type",
        description="Exchange margin as data (fixed per contract or % of notional); default: SPAN.",
    )
    initial_markup: NonNegFloat | None = Field(
        None, description="Broker's mark-up over the exchange initial [fraction]; default: account's."
    )
    maintenance_markup: NonNegFloat | None = Field(
        None, description="Broker's mark-up over the exchange maintenance [fraction]; default: account's."
    )
    product_class: Literal["ordinary", "controlled"] = Field(
        "ordinary", description="ordinary: every investor; controlled: see `eligibility`."
    )
    position_limit: PosFloat | None = Field(
        None, description="Maximum |net quantity| of the product per account [contracts]."
    )
    reporting_level: PosFloat | None = Field(
        None, description="Large-open-position reporting level, |net quantity| [contracts]."
    )
    fee_per_contract: NonNegFloat | None = Field(
        None,
        description="Liquidation fee per contract [contract currency]; default: liquidation.fee_per_contract_usd.",
    )


class Movement(_Model):
    """A movement of money inside an account: a cross-group transfer or a currency conversion.

    A transfer moves ``amount`` of ``currency`` from ``from_group`` to ``to_group``. A conversion
    sells ``amount`` of ``currency`` in ``from_group`` and buys ``to_currency`` in ``to_group``
    (the same group: a conversion within a group) at the scenario's FX rates.
    """

    kind: Literal["transfer", "conversion"]
    amount: PosFloat = Field(description="Amount moved or sold [`currency`].")
    currency: Currency
    from_group: CurrencyGroup
    to_group: CurrencyGroup
    to_currency: Currency | None = Field(None, description="Conversions: the currency bought.")

    @model_validator(mode="after")
    def _check(self) -> Movement:
        if self.kind == "transfer":
            if self.from_group == self.to_group:
                raise ValueError("a transfer moves money between two different groups")
            if self.to_currency not in (None, self.currency):
                raise ValueError("a transfer keeps the currency: use kind: conversion")
        elif self.to_currency is None or self.to_currency == self.currency:
            raise ValueError("a conversion needs a to_currency other than `currency`")
        return self


class LmeProfit(_Model):
    """Profit of a closed LME position, paid on the contract's prompt date."""

    amount: Amount = Field(description="Realised profit (pnl) [`currency`].")
    currency: Currency = "USD"
    currency_group: CurrencyGroup = "NonHK_"
    prompt_date: Date = Field(description="Prompt date: the profit is withdrawable from this date.")


class Deposit(_Model):
    """One deposit of a new account (for the activation threshold)."""

    amount: PosFloat
    currency: Currency = "USD"
    date: Date | None = None


class AccountFunds(_Model):
    """One account's money and client profile (``account.accounts.<name>``)."""

    cash: dict[CurrencyGroup, dict[Currency, Amount]] = Field(
        default_factory=dict,
        description="Cash balances after the last settlement, by currency group and currency [currency].",
    )
    unsettled: dict[CurrencyGroup, dict[Currency, Amount]] = Field(
        default_factory=dict,
        description="Part of `cash` not yet settled [currency]: counts in equity, earns or pays no interest.",
    )
    short_proceeds: dict[Currency, NonNegFloat] | None = Field(
        None,
        description=(
            "Credit from short stock sales, part of `cash` [currency]; default: the market value of "
            "the account's short stock positions."
        ),
    )
    lme_profits: list[LmeProfit] = Field(
        default_factory=list,
        description="LME closed-position profits not in `cash`: usable for margin, withdrawable from the prompt date.",
    )
    investor_class: InvestorClass | None = Field(
        None, description="Client classification; None: not checked."
    )
    controlled_approved: bool = Field(
        False, description="Approved for controlled products (balanced, aggressive, radical investors)."
    )
    derivatives_experience: bool = Field(False, description="Past derivatives trading experience.")
    opening_assets: dict[Currency, NonNegFloat] | None = Field(
        None, description="Assets shown when opening the account [currency]; None: not checked."
    )
    deposits: list[Deposit] | None = Field(
        None, description="Deposits since opening (activation threshold); None: not checked."
    )
    instructions: list[Movement] = Field(
        default_factory=list,
        description="Conversions / transfers the client asked for or agreed in advance (applied first).",
    )


class InterestTier(_Model):
    """A marginal tier: the part of a balance above ``above_usd`` (up to the next tier) earns this rate."""

    above_usd: NonNegFloat = Field(description="Lower bound of the tier [USD equivalent].")
    rate: float | None = Field(None, description="Absolute rate [decimal per year].")
    spread: float | None = Field(None, description="Rate over the currency's benchmark [decimal per year].")

    @model_validator(mode="after")
    def _one(self) -> InterestTier:
        if (self.rate is None) == (self.spread is None):
            raise ValueError("give a tier either a rate or a spread (over the benchmark)")
        return self


def _tiers(*rows: tuple[float, float | None, float | None]) -> list[InterestTier]:
    return [InterestTier(above_usd=a, rate=r, spread=s) for a, r, s in rows]


class InterestParams(_Model):
    """Tiered interest on settled cash, per currency (``spec/account.md`` section 5).

    The tiers are marginal bands on the USD equivalent of the balance in each currency; the
    interest of a band is computed in the currency itself (amount x rate). Credit rates below 0
    are floored at 0 (no negative credit interest in the house default).
    """

    benchmark: dict[Currency, float] = Field(
        default_factory=lambda: dict(DEFAULT_BENCHMARK_RATES),
        description="Benchmark rate per currency [decimal per year]; entries given are merged into the defaults.",
    )
    credit_tiers: list[InterestTier] = Field(
        default_factory=lambda: _tiers((0.0, 0.0, None), (10_000.0, None, -0.005)),
        description="Credit balances: none on the first USD 10,000, then benchmark - 0.5 % (house spread).",
    )
    debit_tiers: list[InterestTier] = Field(
        default_factory=lambda: _tiers((0.0, None, 0.015), (100_000.0, None, 0.010)),
        description="Debit balances: benchmark + 1.5 % up to USD 100,000, + 1.0 % above (house spreads).",
    )
    short_credit_tiers: list[InterestTier] = Field(
        default_factory=lambda: _tiers((0.0, 0.0, None), (100_000.0, None, -0.0025)),
        description="Short-sale credit: none on the first USD 100,000, then benchmark - 0.25 % (house spread).",
    )
    day_basis: dict[Currency, int] = Field(
        default_factory=lambda: dict(DEFAULT_DAY_BASIS),
        description="Days per year per currency; entries given are merged; others use `default_day_basis`.",
    )
    default_day_basis: int = Field(360, ge=360, le=366)

    @field_validator("benchmark", "day_basis", mode="before")
    @classmethod
    def _merge(cls, v, info):
        base = DEFAULT_BENCHMARK_RATES if info.field_name == "benchmark" else DEFAULT_DAY_BASIS
        return {**base, **(v or {})}

    @field_validator("credit_tiers", "debit_tiers", "short_credit_tiers")
    @classmethod
    def _ordered(cls, v: list[InterestTier]) -> list[InterestTier]:
        if not v:
            raise ValueError("give at least one tier")
        if v[0].above_usd != 0:
            raise ValueError("the first tier starts at above_usd: 0")
        bounds = [t.above_usd for t in v]
        if any(b <= a for a, b in zip(bounds, bounds[1:])):
            raise ValueError("tiers must be in increasing order of above_usd")
        return v


class StockMarketData(_Model):
    """Ready-market data of a foreign stock (``account.stocks.<underlying>``)."""

    listed_since: Date = Field(description="First trading day on its (foreign) exchange.")
    electronic_quotes: bool = Field(description="Daily bid, ask and last prices available electronically.")
    median_volume_shares: NonNegFloat = Field(
        description="Median daily volume, last 20 trading days [shares]."
    )
    median_volume_usd: NonNegFloat | None = Field(
        None, description="Median daily volume, last 20 trading days [USD]; default: shares x price."
    )
    free_float_cap_usd: list[NonNegFloat] = Field(
        min_length=1, description="Free-float market capitalisation on each of the last trading days [USD]."
    )
    failing_since: Date | None = Field(
        None,
        description="First business day on which the stock stopped meeting the conditions (grace start).",
    )


class ReadyMarketParams(_Model):
    """Ready-market test of foreign stocks (SEC no-action letter of November 2012)."""

    home_countries: list[str] = Field(
        default_factory=lambda: ["US"],
        description="Issuer domiciles that are not foreign (the test applies to the others).",
    )
    ftse_world_countries: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FTSE_WORLD_COUNTRIES),
        description="ISO countries of exchanges recognised by the FTSE World Index (house default list).",
    )
    min_listed_days: int = Field(90, ge=0, description="Days listed on the foreign exchange.")
    min_median_volume_shares: NonNegFloat = Field(100_000, description="[shares per day]")
    min_median_volume_usd: NonNegFloat = Field(500_000, description="[USD per day]")
    min_free_float_usd: NonNegFloat = Field(
        500e6, description="[USD], on each of the last `free_float_days`."
    )
    free_float_days: int = Field(10, ge=1, description="Trading days the free-float test covers.")
    grace_business_days: int = Field(5, ge=0, description="Business days a failing stock keeps loan value.")
    calendar: str = Field("XNYS", description="Business-day calendar of the grace period (holidays code).")


class EligibilityParams(_Model):
    """Account opening and activation thresholds, product vs investor class."""

    opening_minimum_usd: NonNegFloat = Field(500_000, description="Assets to open an account [USD].")
    activation_minimum_usd: NonNegFloat = Field(
        100_000, description="Cumulative deposits that activate trading [USD]."
    )
    balanced_equity_minimum_usd: NonNegFloat = Field(
        500_000,
        description="Balanced investors trade controlled products with experience or equity above this [USD].",
    )
    controlled_classes: list[InvestorClass] = Field(
        default_factory=_default_controlled_classes,
        description="Non-professional classes that may trade controlled products after approval.",
    )


class LiquidationParams(_Model):
    """Forced-liquidation plan (``spec/account.md`` section 1)."""

    fee_per_contract_usd: NonNegFloat = Field(
        5.0, description="House default fee per contract closed [USD]; per product: fee_per_contract."
    )
    max_rounds: int = Field(50, ge=1, description="Rounds of exact re-margining before giving up.")
    leave_one_out_max_rows: int = Field(
        200_000,
        ge=0,
        description=(
            "Above this many rows (sum over accounts of positions^2), a position's margin release is "
            "its stand-alone margin instead of the exact leave-one-out release."
        ),
    )


class DecisionPoints(_Model):
    """Which grid point the per-account plans are made at (the tests run at every grid point)."""

    liquidation_step: Literal["first"] | int = Field(
        "first",
        description="Step of the liquidation plan: `first` step with an account in forced liquidation (else the last), or an index.",
    )
    settlement_step: Literal["last"] | int = Field(
        "last", description="Step of the settlement (forced conversion plan): `last`, or an index."
    )
    path_index: int = Field(0, ge=0, description="Monte Carlo path of both plans.")


class AccountParams(_Model):
    """The ``account:`` section (``spec/account.md``)."""

    base_currency: Currency = Field("USD", description="The broker's base currency (group and total bases).")
    accounts: dict[str, AccountFunds] = Field(
        default_factory=dict, description="Money and profile per account; accounts not listed hold no cash."
    )
    products: dict[str, ProductParams] = Field(
        default_factory=dict, description="Per contract, SPAN combined commodity or underlying."
    )
    currency_group_of_currency: dict[Currency, CurrencyGroup] = Field(
        default_factory=_default_currency_groups,
        description="Default currency group of a product by its currency; others: `default_currency_group`.",
    )
    default_currency_group: CurrencyGroup = "NonHK_"
    initial_markup: NonNegFloat = Field(
        0.10, description="Broker initial = exchange initial x (1 + markup) (house default 10 %)."
    )
    maintenance_markup: NonNegFloat = Field(
        0.0, description="Broker maintenance = exchange maintenance x (1 + markup) (never below it)."
    )
    margin_source: dict[_ContractType, _MarginSource] = Field(
        default_factory=_default_margin_source,
        description="Method that sets the exchange requirement of a contract type without `margin` data.",
    )
    method_currency_group: dict[_OtherMethod, CurrencyGroup] = Field(
        default_factory=_default_method_currency_group,
        description="Currency group of the requirements of other methods (in the reporting currency).",
    )
    calendar: str = Field(
        "XHKG", description="Business days of deadlines: a `holidays` market or country code."
    )
    timezone: str = Field("Asia/Hong_Kong", description="Time zone of times without one.")
    call_cutoff: dt.time = Field(
        dt.time(12, 0), description="Calls raised after 00:00 and at or before this time: same-day deadline."
    )
    call_deadline: dt.time = Field(dt.time(16, 0), description="Time of day of a margin-call deadline.")
    settlement_time: dt.time = Field(
        dt.time(17, 0), description="Time of a date-only `as_of` (after the day's settlement; house default)."
    )
    step_minutes: StepMinutes | None = Field(
        None,
        description="Minutes between path steps; default: grid.monte_carlo.step_days, else 0 (instant moves).",
    )
    step_times: list[dt.datetime] | None = Field(
        None, description="Time of each path step (overrides step_minutes)."
    )
    withdrawal_buffer: NonNegFloat = Field(
        0.10,
        description="A withdrawal must leave equity >= initial x (1 + buffer) (house default: 10 %).",
    )
    interest: InterestParams = Field(default_factory=InterestParams)
    stocks: dict[str, StockMarketData] = Field(
        default_factory=dict, description="Ready-market data of foreign stocks, per underlying."
    )
    ready_market: ReadyMarketParams = Field(default_factory=ReadyMarketParams)
    eligibility: EligibilityParams = Field(default_factory=EligibilityParams)
    liquidation: LiquidationParams = Field(default_factory=LiquidationParams)
    decision: DecisionPoints = Field(default_factory=DecisionPoints)

    @field_validator("step_times")
    @classmethod
    def _step_times(cls, v: list[dt.datetime] | None) -> list[dt.datetime] | None:
        return check_step_times(v)

    def cash_group(self, contract: str, group: str, underlying: str, currency: str) -> CurrencyGroup:
        """Currency group whose cash pays for (and holds the value of) a contract: its product's
        ``currency_group`` (``products`` keyed by contract, then SPAN combined commodity, then
        underlying), else :attr:`currency_group_of_currency` of its currency, else
        :attr:`default_currency_group`."""
        for key in (contract, group, underlying):
            if key in self.products:
                grp = self.products[key].currency_group
                if grp is not None:
                    return grp
                break
        return self.currency_group_of_currency.get(currency, self.default_currency_group)

    @model_validator(mode="after")
    def _check(self) -> AccountParams:
        for name, acct in self.accounts.items():
            for g, row in acct.unsettled.items():
                for c in row:
                    if c not in acct.cash.get(g, {}):
                        raise ValueError(
                            f"accounts.{name}.unsettled.{g}.{c}: unsettled cash must be part of `cash`"
                        )
        if self.call_deadline <= self.call_cutoff:
            raise ValueError("call_deadline must be after call_cutoff")
        return self
