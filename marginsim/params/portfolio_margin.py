"""Parameters of the risk-based portfolio margin method (the scenario file's ``portfolio_margin:``).

Every policy figure of ``spec/portfolio-margin.md`` is a field here with its default: the FINRA
Rule 4210(g) minimum scan ranges, the broker's published figures (concentration stresses,
single-name stresses, large-position threshold, initial ratios, account thresholds) and the
*house defaults* the spec leaves open (implied vol shift, extreme scan, large-position stress,
days-to-liquidate scaling, small-cap cut-off). The README section "Portfolio margin: house
defaults" gives the table and the reasoning.

Like every module of :mod:`marginsim.params`, it imports only pydantic and :mod:`marginsim.params`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ._base import Amount, Country, Currency, Fraction, NonNegFloat, PosFloat, PosFraction
from ._base import StrictModel as _Model

__all__ = [
    "ProductClass",
    "Entity",
    "ScanRange",
    "ExtremeScanParams",
    "ConcentrationParams",
    "SmallCapParams",
    "ChinaConceptParams",
    "DefaultStressParams",
    "HongKongPropertyParams",
    "SingleNameParams",
    "LargePositionParams",
    "DaysToLiquidateParams",
    "Money",
    "PortfolioMarginParams",
    "FINRA_SCAN_RANGES",
    "ENTITY_EQUITY_MINIMA",
]

ProductClass = Literal["equity", "broad_index_high_cap", "broad_index", "sector_index"]
Entity = Literal["LLC", "HK", "AU", "LUX", "IE", "CE", "SG"]


class ScanRange(_Model):
    """Price scan range of a product class: the edge of the ten-point scan, up and down."""

    up: PosFloat = Field(description="Largest up move [fraction of price], e.g. 0.15.")
    down: PosFraction = Field(description="Largest down move [fraction of price], e.g. 0.15.")


#: FINRA Rule 4210(g)(2)(F) minimum ranges per product class: (up, down) [fraction of price].
FINRA_SCAN_RANGES: dict[ProductClass, tuple[float, float]] = {
    "equity": (0.15, 0.15),
    "sector_index": (0.15, 0.15),
    "broad_index_high_cap": (0.06, 0.08),
    "broad_index": (0.10, 0.10),
}


def _default_ranges() -> dict[ProductClass, ScanRange]:
    return {k: ScanRange(up=u, down=d) for k, (u, d) in FINRA_SCAN_RANGES.items()}


def _all_product_classes() -> list[ProductClass]:
    return ["equity", "broad_index_high_cap", "broad_index", "sector_index"]


class ExtremeScanParams(_Model):
    """Extreme price scan: moves of ``multiple`` x the scan range; ``cover_fraction`` of the loss counts.

    House default 3 x and 32 %, the extreme scenarios of the seed document's SPAN table.
    """

    multiple: Annotated[float, Field(ge=1)] = Field(
        3.0, description="Extreme move [multiples of the scan range] (house default 3)."
    )
    cover_fraction: PosFraction = Field(
        0.32, description="Share of the extreme loss that counts [fraction] (house default 0.32)."
    )


class ConcentrationParams(_Model):
    """Global concentration charge: the ``top_n`` riskiest class groups at +/-``top_stress``, the rest at +/-``rest_stress``."""

    top_n: int = Field(2, ge=0, description="Number of riskiest class groups stressed hard.")
    top_stress: PosFraction = Field(0.30, description="Stress of the riskiest class groups [fraction].")
    rest_stress: Fraction = Field(0.05, description="Stress of the other class groups [fraction].")
    product_classes: list[ProductClass] = Field(
        default_factory=_all_product_classes,
        description="Product classes whose class groups take part (default: all).",
    )


class SmallCapParams(_Model):
    """Small-cap single-name method: a move worth ``market_cap_change`` of market capitalisation."""

    max_market_cap: PosFloat = Field(
        2.0e9,
        description="A stock is small cap at or below this market capitalisation [USD] (house default 2e9).",
    )
    market_cap_change: PosFloat = Field(5.0e8, description="Market-cap change stressed [USD].")


class ChinaConceptParams(_Model):
    """China-concept single-name method: a move worth ``market_cap_change`` of market capitalisation."""

    domiciles: list[Country] = Field(
        default_factory=lambda: ["CN"], description="Issuer countries (`market.*.domicile`) it applies to."
    )
    market_cap_change: PosFloat = Field(1.5e9, description="Market-cap change stressed [USD].")


class DefaultStressParams(_Model):
    """Default single-name method: +``up`` / -``down``."""

    up: PosFloat = Field(0.30, description="Up move [fraction].")
    down: PosFraction = Field(0.25, description="Down move [fraction].")
    applies_to_all: bool = Field(
        False,
        description="Evaluate the default method for every stock, not only for stocks no other method applies to.",
    )


class HongKongPropertyParams(_Model):
    """Hong Kong property single-name method: +/-``move``."""

    countries: list[Country] = Field(
        default_factory=lambda: ["HK"],
        description="Listing or issuer countries (`market.*.listing` / `domicile`) it applies to.",
    )
    sectors: list[str] = Field(
        default_factory=lambda: ["real_estate"], description="Sectors (`market.*.sector`) it applies to."
    )
    move: PosFraction = Field(0.50, description="Up and down move [fraction].")

    @field_validator("sectors")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [s.strip().lower() for s in v]


class SingleNameParams(_Model):
    """The four single-name methods; every applicable one is evaluated and the largest loss kept."""

    small_cap: SmallCapParams = Field(default_factory=SmallCapParams)
    china_concept: ChinaConceptParams = Field(default_factory=ChinaConceptParams)
    default: DefaultStressParams = Field(default_factory=DefaultStressParams)
    hk_property: HongKongPropertyParams = Field(default_factory=HongKongPropertyParams)


class LargePositionParams(_Model):
    """Large position charge: a stock class group whose delta-equivalent shares reach ``threshold`` of the shares outstanding is charged its loss under +/-``stress``."""

    threshold: PosFraction = Field(0.01, description="Share of shares outstanding [fraction].")
    stress: Fraction = Field(0.10, description="Extra stress move [fraction] (house default 0.10).")


class DaysToLiquidateParams(_Model):
    """Days-to-liquidate add-on to the initial margin.

    With ``x`` = |delta-equivalent shares| / average daily volume, a class group with
    ``x > threshold`` adds ``min(cap, scaling * (x - threshold))`` x its base requirement to the
    initial margin.
    """

    threshold: NonNegFloat = Field(
        1.0, description="Position above which the add-on starts [multiples of ADV] (house default 1)."
    )
    scaling: NonNegFloat = Field(
        0.10,
        description="Add-on per ADV multiple above the threshold [fraction of base requirement] (house default 0.10).",
    )
    cap: NonNegFloat = Field(
        1.0, description="Largest add-on [fraction of base requirement] (house default 1)."
    )


class Money(_Model):
    """An amount with its currency."""

    amount: NonNegFloat
    currency: Currency = "USD"


#: Account equity thresholds per broker entity (seed table): (to open, to keep trading on margin).
ENTITY_EQUITY_MINIMA: dict[str, tuple[Money | None, Money]] = {
    "LLC": (Money(amount=110_000, currency="USD"), Money(amount=100_000, currency="USD")),
    "HK": (None, Money(amount=2_000, currency="USD")),
    "AU": (None, Money(amount=2_000, currency="AUD")),
    "LUX": (None, Money(amount=2_000, currency="EUR")),
    "IE": (None, Money(amount=2_000, currency="EUR")),
    "CE": (None, Money(amount=2_000, currency="EUR")),
    "SG": (None, Money(amount=2_000, currency="SGD")),
}


class PortfolioMarginParams(_Model):
    """The ``portfolio_margin:`` section: overrides of the method's defaults (all optional)."""

    ranges: dict[ProductClass, ScanRange] = Field(
        default_factory=_default_ranges,
        description="Scan range per product class; classes not given keep the FINRA minimums.",
    )
    default_product_class: ProductClass = Field(
        "equity", description="Product class of an underlying whose `product_class` is not given."
    )
    points_per_side: int = Field(5, ge=1, le=50, description="Scan points up and down (5: ten points).")
    vol_shift: NonNegFloat | None = Field(
        None, description="Implied vol shift up and down [absolute vol]; 0 allowed."
    )
    vol_shift_relative: NonNegFloat | None = Field(
        0.15,
        description="Implied vol shift up and down [fraction of each option's vol] (house default 0.15).",
    )
    lookahead_days: NonNegFloat = Field(
        0.0,
        description="Time decay applied in every stress [calendar days] (default 0: theoretical values now).",
    )
    option_minimum: NonNegFloat = Field(
        0.375, description="Minimum per option contract, long or short [USD per unit of multiplier]."
    )
    extreme: ExtremeScanParams = Field(default_factory=ExtremeScanParams)
    concentration: ConcentrationParams = Field(default_factory=ConcentrationParams)
    single_name: SingleNameParams = Field(default_factory=SingleNameParams)
    large_position: LargePositionParams = Field(default_factory=LargePositionParams)
    days_to_liquidate: DaysToLiquidateParams = Field(default_factory=DaysToLiquidateParams)
    initial_ratio_us: Annotated[float, Field(ge=1)] = Field(
        1.10, description="Initial / maintenance for US securities."
    )
    initial_ratio_non_us: Annotated[float, Field(ge=1)] = Field(
        1.25, description="Initial / maintenance for non-US securities."
    )
    dynamic_house_scan: dict[Country, PosFraction] = Field(
        default_factory=dict,
        description="Listing country -> symmetric scan range [fraction] used where wider than the class range (default: off).",
    )
    entity: Entity = Field("LLC", description="Broker entity: selects the account equity thresholds.")
    opening_equity: Money | None = Field(
        None, description="Equity needed to open portfolio margin; default: the entity's."
    )
    minimum_equity: Money | None = Field(
        None, description="Equity needed to keep trading on margin; default: the entity's."
    )
    cash: dict[str, Amount] = Field(
        default_factory=dict,
        description="Cash per account [reporting currency]; with it, equity and the threshold flags are reported.",
    )

    @field_validator("ranges", mode="after")
    @classmethod
    def _merge_ranges(cls, v: dict[ProductClass, ScanRange]) -> dict[ProductClass, ScanRange]:
        return {**_default_ranges(), **v}

    @model_validator(mode="after")
    def _one_vol_shift(self) -> PortfolioMarginParams:
        given = self.model_fields_set
        if "vol_shift" in given and self.vol_shift is not None:
            if "vol_shift_relative" in given and self.vol_shift_relative is not None:
                raise ValueError("give vol_shift or vol_shift_relative, not both")
            if self.vol_shift_relative is not None:
                # the absolute shift replaces the default relative one
                object.__setattr__(self, "vol_shift_relative", None)
        elif self.vol_shift_relative is None and self.vol_shift is None:
            object.__setattr__(self, "vol_shift", 0.0)
        return self

    def equity_thresholds(self) -> tuple[Money | None, Money | None]:
        """(to open, to keep trading): the given ones, else the entity's."""
        open_, keep = ENTITY_EQUITY_MINIMA[self.entity]
        return (self.opening_equity or open_, self.minimum_equity or keep)
