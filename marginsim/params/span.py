"""Scenario-file models of SPAN (``span:``): scan ranges, spreads, spot charges, short option minimum.

Every policy number of ``spec/span.md`` is a documented parameter here, with its default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import Currency, NonNegFloat, PosFloat
from ._base import StrictModel as _Model

__all__ = [
    "ExtremeParams",
    "IntraLeg",
    "IntraSpread",
    "Tier",
    "SpotParams",
    "SomParams",
    "CombinedCommodityParams",
    "InterLeg",
    "InterSpread",
    "ExposureRates",
    "ExposureMarginParams",
    "ScenarioPoint",
    "SpanParams",
]


class ExtremeParams(_Model):
    """Extreme scenarios 15 and 16: a move of ``multiplier`` x the price scan range, weighted by ``cover_fraction``."""

    multiplier: PosFloat = 3.0
    cover_fraction: Annotated[float, Field(gt=0, le=1)] = 0.32


class IntraLeg(_Model):
    tier: int = Field(0, ge=0, description="Tier number; 0 is the whole combined commodity.")
    month: int | None = Field(
        None,
        ge=100001,
        le=999912,
        description="A period leg (SPAN pLeg): the one contract month YYYYMM the leg draws from, instead of a tier.",
    )
    side: Literal["A", "B"]
    ratio: PosFloat = 1.0

    @model_validator(mode="after")
    def _tier_or_month(self) -> IntraLeg:
        if self.month is not None and self.tier != 0:
            raise ValueError("give a tier or a month, not both")
        if self.month is not None and not 1 <= self.month % 100 <= 12:
            raise ValueError(f"month {self.month} is not YYYYMM")
        return self


class IntraSpread(_Model):
    priority: int = Field(ge=0)
    rate: NonNegFloat = Field(description="Charge per spread formed [CC currency].")
    legs: list[IntraLeg] = Field(min_length=1)


class Tier(_Model):
    tier: int = Field(ge=1)
    months: list[int] = Field(
        min_length=2, max_length=2, description="First and last contract month of the tier, YYYYMM."
    )


class SpotParams(_Model):
    months: list[int] = Field(min_length=1, description="Spot (delivery) contract months, YYYYMM.")
    rate_spread: NonNegFloat | list[NonNegFloat] = Field(
        0.0,
        description="Charge per unit of spot delta used in spreads [CC currency per delta]: one rate, or one per month of `months`.",
    )
    rate_outright: NonNegFloat | list[NonNegFloat] = Field(
        0.0,
        description="Charge per unit of spot delta left after spreads [CC currency per delta]: one rate, or one per month of `months`.",
    )

    @model_validator(mode="after")
    def _per_month(self) -> SpotParams:
        if len(set(self.months)) != len(self.months):
            raise ValueError("spot months must be unique")
        for name in ("rate_spread", "rate_outright"):
            v = getattr(self, name)
            if isinstance(v, list) and len(v) != len(self.months):
                raise ValueError(f"{name} has {len(v)} rates for {len(self.months)} months")
        return self

    def rates(self) -> tuple[list[float], list[float]]:
        """Rate on spread deltas and on outright deltas per month of :attr:`months`."""
        n = len(self.months)
        rs, ro = self.rate_spread, self.rate_outright
        return (
            list(rs) if isinstance(rs, list) else [rs] * n,
            list(ro) if isinstance(ro, list) else [ro] * n,
        )


class SomParams(_Model):
    rate: NonNegFloat = Field(description="Short option minimum per short option [CC currency].")
    method: Literal["gross", "net"] = "gross"


class CombinedCommodityParams(_Model):
    """Parameters of one SPAN combined commodity."""

    price_scan: PosFloat | None = Field(None, description="Price scan range as a fraction of price.")
    price_scan_points: PosFloat | None = Field(None, description="Price scan range [price points].")
    price_scan_amount: PosFloat | None = Field(None, description="Price scan range [currency per contract].")
    vol_scan: NonNegFloat | None = Field(None, description="Vol scan range [absolute vol].")
    vol_scan_relative: NonNegFloat | None = Field(None, description="Vol scan range [fraction of the vol].")
    extreme: ExtremeParams = Field(default_factory=ExtremeParams)
    lookahead_days: NonNegFloat = Field(1.0, description="Look-ahead time [calendar days] (house default 1).")
    intra_spreads: list[IntraSpread] = Field(default_factory=list)
    tiers: list[Tier] = Field(default_factory=list)
    spot: SpotParams | None = None
    som: SomParams | None = None
    initial_ratio: Annotated[float, Field(ge=1)] | None = Field(
        None, description="Initial / maintenance ratio; default: span.initial_ratio."
    )
    rate_class: Literal["maintenance", "initial"] = Field(
        "maintenance",
        description="The requirement the risk arrays and rates give (a clearing-house file: the isM flag of its rate class); the other one is derived with initial_ratio.",
    )
    currency: Currency | None = Field(
        None, description="Margin currency; default: the underlying's currency."
    )
    wfpr_method: Literal["normal", "scan_range", "scan_range_cap"] = Field(
        "normal",
        description="Weighted futures price risk of the inter-commodity credit (the file's `wfprMeth`): "
        "normal = price risk / |net delta|; scan_range = `wfpr_scan_range`; scan_range_cap = the "
        "smaller of the two.",
    )
    wfpr_scan_range: PosFloat | None = Field(
        None,
        description="Price scan range per unit of delta [CC currency per delta] of the scan_range and "
        "scan_range_cap methods; from a file: the largest `priceScan` of the CC's futures.",
    )

    @model_validator(mode="after")
    def _one_scan(self) -> CombinedCommodityParams:
        given = [
            k
            for k in ("price_scan", "price_scan_points", "price_scan_amount")
            if getattr(self, k) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give one price scan range, not {', '.join(given)}")
        if self.vol_scan is not None and self.vol_scan_relative is not None:
            raise ValueError("give vol_scan or vol_scan_relative, not both")
        tiers = [t.tier for t in self.tiers]
        if len(set(tiers)) != len(tiers):
            raise ValueError("tier numbers must be unique")
        if self.wfpr_method != "normal" and self.wfpr_scan_range is None:
            raise ValueError(f"wfpr_method {self.wfpr_method} needs wfpr_scan_range")
        for sp in self.intra_spreads:
            for leg in sp.legs:
                if leg.month is None and leg.tier != 0 and leg.tier not in tiers:
                    raise ValueError(
                        f"intra spread {sp.priority} names tier {leg.tier}, which is not in `tiers`"
                    )
        return self


class InterLeg(_Model):
    group: str = Field(description="Combined commodity of the leg.")
    month: int | None = Field(
        None,
        ge=100001,
        le=999912,
        description="Super spreads: a period leg (SPAN pLeg) that draws from the one contract month "
        "YYYYMM of its combined commodity, instead of from all its months.",
    )
    side: Literal["A", "B"]
    ratio: PosFloat = 1.0
    credit_rate: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None, description="Method W: this leg's own credit rate as a fraction; default: the spread's."
    )

    @model_validator(mode="after")
    def _month(self) -> InterLeg:
        if self.month is not None and not 1 <= self.month % 100 <= 12:
            raise ValueError(f"month {self.month} is not YYYYMM")
        return self


class InterSpread(_Model):
    """An inter-commodity (or super inter-commodity) spread, formed on the CCs' net deltas.

    Method ``W`` (weighted futures price risk): each leg's CC gets spreads x ratio x WFPR x credit
    rate (the leg's own rate if given, else the spread's). Method ``F`` (flat): spreads x
    ``flat_rate`` shared equally by the CCs of the spread, as a charge when positive and a credit
    when negative (the format's convention).
    """

    priority: int = Field(ge=0)
    method: Literal["W", "F"] = Field("W", description="W: weighted futures price risk; F: flat amount per spread.")
    credit_rate: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None, description="Method W: credit as a fraction (0.6 = 60 %)."
    )
    flat_rate: Annotated[float, Field(ge=-1e15, le=1e15)] | None = Field(
        None,
        description="Method F: amount per spread formed [CC currency]; positive = charge, negative = credit.",
    )
    legs: list[InterLeg] = Field(min_length=2)

    @model_validator(mode="after")
    def _rates(self) -> InterSpread:
        if self.method == "W" and self.credit_rate is None and any(leg.credit_rate is None for leg in self.legs):
            raise ValueError(f"spread {self.priority} (method W) needs a credit_rate (or one on every leg)")
        if self.method == "F" and self.flat_rate is None:
            raise ValueError(f"spread {self.priority} (method F) needs a flat_rate")
        return self


class ExposureRates(_Model):
    """Exposure margin rates as fractions of notional, per instrument class."""

    futures: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None, description="Fraction of a future's notional (|quantity| x price x multiplier)."
    )
    options: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None,
        description="Fraction of a short option's notional (|quantity| x underlying price x multiplier); "
        "long options carry none.",
    )


class ExposureMarginParams(ExposureRates):
    """NSE's exposure margin: an add-on of a percentage of notional, set by the scenario (SPAN files do
    not carry it). Rates default to 0; ``groups`` sets them per combined commodity (a class it does
    not name keeps the rate above)."""

    groups: dict[str, ExposureRates] = Field(
        default_factory=dict, description="Rates per combined commodity (underlying), overriding the above."
    )


class ScenarioPoint(_Model):
    """A user-defined scan point: moves in units of the scan ranges."""

    price: float = Field(description="Price move [multiples of the price scan range].")
    vol: float = Field(0.0, description="Vol move [multiples of the vol scan range].")
    weight: Annotated[float, Field(gt=0)] = 1.0
    pair: int | None = Field(None, description="1-based number of the paired point.")


class SpanParams(_Model):
    """SPAN parameters of a scenario file."""

    source: str | None = Field(
        None,
        description="A clearing-house SPAN XML file (format 4.00): risk arrays and parameters come from it; positions name contracts by its ids (PFCODE:F:PERIOD, PFCODE:C|P:PERIOD:STRIKE, PFCODE:PHY).",
    )
    combined_commodities: dict[str, CombinedCommodityParams] = Field(default_factory=dict)
    inter_spreads: list[InterSpread] = Field(default_factory=list)
    super_spreads: list[InterSpread] = Field(
        default_factory=list,
        description="Super inter-commodity spreads: formed before the intra-commodity spreads, on the "
        "net deltas of the CCs' months.",
    )
    exposure_margin: ExposureMarginParams | None = Field(
        None,
        description="Exposure margin (NSE): a fraction of notional per instrument class, added to the "
        "requirement as its own component; none when absent.",
    )
    scenario_set: list[ScenarioPoint] | None = Field(
        None, description="User-defined scan points; default: the 16 SPAN scenarios."
    )
    initial_ratio: Annotated[float, Field(ge=1)] = Field(
        1.0, description="Default initial / maintenance ratio of every combined commodity."
    )
    array_precision: int = Field(
        6,
        ge=0,
        le=12,
        description="Decimals computed risk arrays are rounded to (clearing-house convention).",
    )

    @model_validator(mode="after")
    def _check(self) -> SpanParams:
        for i, sp in enumerate(self.inter_spreads):
            if any(leg.month is not None for leg in sp.legs):
                raise ValueError(
                    f"inter_spreads[{i}] has a leg on a month: period legs are taken in super_spreads "
                    "(on the months' deltas), not in inter_spreads (on each combined commodity's net "
                    "delta left after the intra spreads)"
                )
        if self.scenario_set is not None:
            n = len(self.scenario_set)
            for i, p in enumerate(self.scenario_set):
                if p.pair is not None and not 1 <= p.pair <= n:
                    raise ValueError(f"scenario_set[{i}].pair {p.pair} is not a point number 1..{n}")
        return self
