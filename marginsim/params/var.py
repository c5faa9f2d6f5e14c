"""The ``var:`` section: historical-simulation VaR / ES margin (filtered HVaR, stress, add-ons, APC).

The clearing houses' successors of SPAN (CME SPAN 2, Eurex Prisma, ICE IRM 2, LCH PAIRS, JSCC
VaR): scenarios are the history's overlapping ``holding_days``-day log returns, the book is
revalued under each, and the margin is a tail measure of the losses, combined with a stress
component, add-ons and anti-procyclicality (EMIR RTS 153/2013 Art. 28(1)).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from ._base import Date, Fraction, NonNegFloat, PosFloat, StrictModel

__all__ = [
    "VarParams",
    "StressWindow",
    "StressScenario",
    "VarStress",
    "ConcentrationParams",
    "DEFAULT_LOOKBACK_DAYS",
    "DEFAULT_GARCH_REFIT_DAYS",
    "DEFAULT_GARCH_MIN_DAYS",
    "TEN_YEARS_DAYS",
]

#: Ten years of trading days (252 a year): the default lookback, and EMIR's floor lookback.
TEN_YEARS_DAYS: int = 2520
#: Scenario dates of the default lookback [trading days].
DEFAULT_LOOKBACK_DAYS: int = TEN_YEARS_DAYS

#: Refit interval of ``filter: garch`` over a backtest's dates [trading days]: 21, a trading month.
#: Monthly recalibration is the usual cadence of a CCP's model parameters: GARCH(1,1) estimates on
#: years of returns barely move in a month, the daily variance update (each new return) carries the
#: news in between, and each refit costs one arch fit per underlying.
DEFAULT_GARCH_REFIT_DAYS: int = 21
#: Daily returns the first GARCH(1,1) fit of a backtest needs [trading days]: 500, about two years.
#: Below a few hundred daily returns the persistence alpha + beta is poorly identified (the
#: likelihood is flat along it) and the fitted parameters swing from one refit to the next.
DEFAULT_GARCH_MIN_DAYS: int = 500

#: A relative move of a price or a vol: above -100 %, at most +1,000 %.
Move = Annotated[float, Field(gt=-1.0, le=10.0)]


class StressWindow(StrictModel):
    """A historical stress period: every ``holding_days``-day return ending from ``from`` to ``to``."""

    model_config = ConfigDict(populate_by_name=True)

    start: Date = Field(alias="from", description="First end date of the window's returns (YYYY-MM-DD).")
    to: Date = Field(description="Last end date of the window's returns (YYYY-MM-DD).")

    @model_validator(mode="after")
    def _order(self) -> StressWindow:
        if self.to < self.start:
            raise ValueError(f"`to` ({self.to}) is before `from` ({self.start})")
        return self


class StressScenario(StrictModel):
    """An explicit stress scenario: a relative move of some underlyings' prices (and vols)."""

    name: str = Field(min_length=1, description="Named in the result (`stress_scenario`).")
    moves: dict[str, Move] = Field(
        default_factory=dict,
        description="Underlying -> relative price move (-0.2: down 20 %); others unchanged.",
    )
    vol_moves: dict[str, Move] = Field(
        default_factory=dict, description="Underlying -> relative move of its options' vols (0.5: up 50 %)."
    )


class VarStress(StrictModel):
    """``var.stress``: historical windows and explicit scenarios; the stress component is the largest loss."""

    windows: list[StressWindow] = Field(default_factory=list)
    scenarios: list[StressScenario] = Field(default_factory=list)


class ConcentrationParams(StrictModel):
    """``var.concentration``: a charge on the net delta-equivalent quantity beyond a share of the ADV."""

    threshold: Fraction = Field(
        0.1, description="Share of the average daily volume held without charge [fraction of adv]."
    )
    rate: NonNegFloat = Field(
        0.1, le=10.0, description="Charge on the notional beyond the threshold [fraction of notional]."
    )
    adv: dict[str, PosFloat] | None = Field(
        None,
        description="Underlying -> average daily volume [units of the underlying]; default: market.U.adv. "
        "An underlying without one takes no charge.",
    )


class VarParams(StrictModel):
    """``var:``: historical-simulation margin (every key optional)."""

    holding_days: int = Field(2, ge=1, le=250, description="Days of each scenario return [trading days].")
    lookback_days: int = Field(
        DEFAULT_LOOKBACK_DAYS,
        ge=1,
        le=100_000,
        description="Scenarios: the returns ending on each of the last lookback_days dates of the history "
        "[trading days]; fewer when the history is shorter.",
    )
    filter: Literal["none", "ewma", "garch"] = Field(
        "ewma",
        description="Volatility filter: each daily return scaled by today's vol / the vol at its date before the "
        "h-day sums (`ewma`: exponentially weighted; `garch`: GARCH(1,1) fitted by the arch package: on the "
        "whole history, or over a backtest's dates refitted every garch_refit_days on the returns up to then).",
    )
    garch_refit_days: int = Field(
        DEFAULT_GARCH_REFIT_DAYS,
        ge=1,
        le=100_000,
        description="`garch` over a backtest's dates: the GARCH(1,1) parameters are re-estimated every "
        "garch_refit_days dates of the history, on the returns up to the refit date [trading days].",
    )
    garch_min_days: int = Field(
        DEFAULT_GARCH_MIN_DAYS,
        ge=100,
        le=100_000,
        description="`garch` over a backtest's dates: daily returns the first fit needs; the first refit "
        "date is the history date with that many returns up to it [trading days].",
    )
    ewma_lambda: float = Field(0.94, gt=0.0, lt=1.0, description="EWMA decay (RiskMetrics 0.94).")
    ewma_seed_days: int = Field(
        30,
        ge=1,
        le=10_000,
        description="The EWMA variance starts at the mean squared return of the first days.",
    )
    measure: Literal["var", "es"] = Field(
        "es",
        description="`var`: the k-th largest loss; `es`: the mean of the k largest (k = ceil(n (1 - c))).",
    )
    confidence: float = Field(0.975, gt=0.0, lt=1.0, description="Confidence level c [fraction].")
    stress: VarStress | None = Field(None, description="Historical windows and explicit stress scenarios.")
    weight_x: Fraction = Field(
        1.0, description="Weight of the HVaR: core = x HVaR + (1 - x) stress (SPAN 2 style) [fraction]."
    )
    liquidity: dict[str, Fraction] | None = Field(
        None,
        description="Underlying -> half bid-ask spread [fraction of the notional of the net delta equivalent]; "
        "off when absent.",
    )
    concentration: ConcentrationParams | None = Field(
        None, description="Concentration add-on; off when absent."
    )
    apc: Literal["none", "buffer", "stressed_weight", "floor"] = Field(
        "none",
        description="Anti-procyclicality, EMIR RTS 153/2013 Art. 28(1): (a) `buffer`, (b) `stressed_weight`, "
        "(c) `floor`.",
    )
    apc_buffer: Fraction = Field(0.25, description="`buffer`: added share of the core margin [fraction].")
    apc_stressed_weight: Fraction = Field(
        0.25, description="`stressed_weight`: weight of the stress windows' measure in the HVaR [fraction]."
    )
    apc_floor_days: int = Field(
        TEN_YEARS_DAYS,
        ge=1,
        le=100_000,
        description="`floor`: lookback of the unfiltered HVaR the HVaR may not fall below [trading days].",
    )
    initial_ratio: float = Field(1.0, ge=1.0, le=10.0, description="Initial = ratio x maintenance.")
