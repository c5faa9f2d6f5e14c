"""The records of a SPAN XML risk-parameter file (CME SPAN XML format 4.00, ``.spn``), as frozen dataclasses.

:func:`marginsim.io.span.read_span_xml` returns a :class:`SpanFile`: currencies, point
definitions, exchanges with their portfolios (contract columns as read-only numpy arrays),
combined commodities and inter-commodity spreads. Nothing here reads XML.

Units and meanings (from ``spanrisk.xsd`` and checked against the Takasbank file of 2016-05-17)
---------------------------------------------------------------------------------------------
* ``p`` price and ``k`` strike are in **price units** (per unit of underlying: TRY per share,
  index points); ``cvf`` (contract value factor) is the currency amount per contract per 1.0 of
  price, i.e. the multiplier; ``val`` = ``p`` x ``cvf`` is the contract value (currency per
  contract). Portfolio-level ``cvf`` is a default; Takasbank writes 0 there and the real factor
  on each contract (or series), which is what the contract arrays hold.
* ``scanRate/priceScan`` is the price scan range in **currency per contract** (the risk array of
  a long future is exactly ``-priceScan x move``); ``priceScanPct`` is a fraction of the price;
  ``volScan`` is an absolute vol move (decimal vol); ``volScanPct`` is a **relative** vol move
  as a fraction of the current vol (0.23 = 23 % of the vol). Absent values are NaN.
* ``ra``: ``a`` = the 16 risk-array values, **losses of one long contract, positive = loss**, in
  the portfolio currency per contract; ``d`` = composite delta (per contract, futures = 1).
* ``t`` time to expiry in years (calendar days / 365); ``v`` vol as a decimal; ``intrRate/val``
  an interest rate as a decimal (0.10 = 10 %; the schema says "in %" but the file holds
  decimals).
* ``sc`` (contract, series and ``pfLink``) is the contract/delta scaling factor (1.0 everywhere
  in the Takasbank file; ``clearingOrg/isContractScale`` says which of the two it is).
* SOM tier rate: currency per short option contract. Intra-commodity ``dSpread`` with
  ``chargeMeth F`` (flat): rate in currency per spread formed. Inter-commodity ``dSpread`` with
  ``chargeMeth W`` (weighted futures price risk): credit rate as a **fraction** (0.60 = 60 %),
  stored as a fraction; the reader refuses a W rate outside [0, 1] rather than guess whether it
  is a percent.
* ``adjRate`` (``r``, ``baseR``, ``val``): "a completely parameterized way of calculating
  requirements for some rate classes based on requirements for other rate classes": the
  requirement for rate class ``r`` is ``val`` x the requirement for rate class ``baseR``.
  Takasbank writes ``r=1, baseR=1, val=0.75`` for every combined commodity, which matches the
  published VIOP rule maintenance margin = 75 % of the (initial) requirement computed from the
  file's risk arrays. ``pbRateDef`` defines the rate classes (``r``, customer flag, account
  type, maintenance flag ``isM``, class code).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_N_POINTS",
    "AdjRate",
    "CombinedCommodity",
    "ContractArrays",
    "ConversionRate",
    "Currency",
    "DeltaPoints",
    "DeltaSpread",
    "Exchange",
    "FuturesContracts",
    "FuturesPortfolio",
    "OptionContracts",
    "OptionPortfolio",
    "OptionSeries",
    "PbRateDef",
    "PfLink",
    "PhysicalContracts",
    "PhysicalPortfolio",
    "PointDef",
    "Portfolio",
    "AnyPortfolio",
    "Rate",
    "ScanPoints",
    "ScanRates",
    "SpanFile",
    "SpotRate",
    "SpreadLeg",
    "Tier",
    "UnderlyingPf",
]

#: Number of scenarios assumed when the file has no ``pointDef``.
DEFAULT_N_POINTS = 16


@dataclass(frozen=True)
class Currency:
    """A ``currencyDef``: ISO code, one-letter symbol, name and number of decimals."""

    code: str
    symbol: str
    name: str
    decimal_pos: int


@dataclass(frozen=True)
class ConversionRate:
    """A ``curConv``: one unit of ``from_currency`` is worth ``factor`` units of ``to_currency``."""

    from_currency: str
    to_currency: str
    factor: float


@dataclass(frozen=True)
class PbRateDef:
    """A ``pbRateDef``: defines performance-bond rate class ``rate_id``.

    ``is_maintenance`` is ``isM`` (True: maintenance, False: initial); ``is_customer`` is
    ``isCust``; ``account_type`` e.g. ``H`` (hedge); ``pb_class`` e.g. ``CORE``.
    """

    rate_id: int
    is_customer: bool
    account_type: str
    is_maintenance: bool
    pb_class: str


@dataclass(frozen=True, kw_only=True)
class ScanPoints:
    """``scanPointDef``: the risk-array scenarios of one rate class, one row per point.

    Attributes
    ----------
    point
        Point number (1-based), shape ``(n,)``, int.
    price_move
        Price move as a multiple of the price scan range (``numerator / denominator`` of
        ``priceScanDef``, falling back to its ``mult``), e.g. ``1/3``; extreme points ``+-3``.
    vol_move
        Vol move as a multiple of the vol scan range (``volScanDef``).
    weight
        Weight applied to the loss of the point (0.32 for the extreme points in Takasbank).
    paired_point
        The paired point number used for price risk (inter-commodity spreads). Note: the
        Takasbank file pairs 15 with 15 and 16 with 16.
    """

    point: np.ndarray
    price_move: np.ndarray
    vol_move: np.ndarray
    weight: np.ndarray
    paired_point: np.ndarray


@dataclass(frozen=True, kw_only=True)
class DeltaPoints:
    """``deltaPointDef``: the points averaged into the composite delta (weights sum to 1)."""

    point: np.ndarray
    price_move: np.ndarray
    vol_move: np.ndarray
    weight: np.ndarray


@dataclass(frozen=True, kw_only=True)
class PointDef:
    """A ``pointDef``: scan and delta point definitions for rate class ``rate_id``."""

    rate_id: int
    scan: ScanPoints
    delta: DeltaPoints

    @property
    def n_points(self) -> int:
        """Number of scan points (16 in standard SPAN)."""
        return int(self.scan.point.shape[0])


@dataclass(frozen=True, kw_only=True)
class ScanRates:
    """Scan ranges (``scanRate``), one value per row; NaN where the file gives none.

    Attributes
    ----------
    price_scan
        Price scan range, currency per contract (``priceScan``).
    price_scan_pct
        Price scan range as a fraction of the price (``priceScanPct``).
    vol_scan
        Absolute vol scan range, decimal vol (``volScan``).
    vol_scan_pct
        Relative vol scan range, fraction of the current vol (``volScanPct``: 0.23 = 23 %).
    price_scan_down, price_scan_down_pct, vol_scan_down, vol_scan_down_pct
        Downward ranges for asymmetric scans (same units).
    """

    price_scan: np.ndarray
    price_scan_pct: np.ndarray
    vol_scan: np.ndarray
    vol_scan_pct: np.ndarray
    price_scan_down: np.ndarray
    price_scan_down_pct: np.ndarray
    vol_scan_down: np.ndarray
    vol_scan_down_pct: np.ndarray


@dataclass(frozen=True, kw_only=True)
class ContractArrays:
    """Columns common to every kind of contract of one portfolio, one row per contract.

    All arrays are read-only and have ``n`` rows (``len(self)``).

    Attributes
    ----------
    ids
        Contract id ``cId`` (int64), unique within the portfolio.
    period
        Period code ``pe`` (``YYYYMM`` plus an optional suffix, e.g. ``201605S0``; ``""`` if
        absent), unicode array.
    price
        Settlement price ``p`` in price units (NaN if absent).
    delta
        Contract delta ``d`` as written on the contract (futures 1; Takasbank writes 0 for
        options: use ``composite_delta``).
    volatility
        Implied volatility ``v``, decimal.
    cvf
        Contract value factor: currency per contract per 1.0 of price (the multiplier).
    value
        Contract value ``val`` = price x cvf, currency per contract (NaN if absent).
    scale
        Scaling factor ``sc`` (1.0 if absent).
    risk_arrays
        Shape ``(n, n_points)``: losses of one long contract per scenario, positive = loss,
        currency per contract, already weighted (NaN rows for contracts without ``ra``).
    composite_delta
        Composite delta (``ra/d``), per contract.
    scan_rates
        Scan ranges per row (for options: those of the option's series).
    """

    ids: np.ndarray
    period: np.ndarray
    price: np.ndarray
    delta: np.ndarray
    volatility: np.ndarray
    cvf: np.ndarray
    value: np.ndarray
    scale: np.ndarray
    risk_arrays: np.ndarray
    composite_delta: np.ndarray
    scan_rates: ScanRates

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True, kw_only=True)
class PhysicalContracts(ContractArrays):
    """Contracts (``phy``) of a physical portfolio (shares, indices, FX spot)."""


@dataclass(frozen=True, kw_only=True)
class FuturesContracts(ContractArrays):
    """Contracts (``fut``) of a futures portfolio.

    Attributes
    ----------
    settlement_date
        ``setlDate`` as ``datetime64[D]`` (NaT if absent).
    time_to_expiry
        ``t`` in years (NaN if absent).
    underlying_pf_id, underlying_contract_id
        The underlying contract ``undC`` (portfolio id and contract id; -1 if absent).
    underlying_ratio
        ``undC/i``: quantity of underlying per contract.
    """

    settlement_date: np.ndarray
    time_to_expiry: np.ndarray
    underlying_pf_id: np.ndarray
    underlying_contract_id: np.ndarray
    underlying_ratio: np.ndarray


@dataclass(frozen=True, kw_only=True)
class OptionSeries:
    """Option series (``series``) of an option portfolio, one row per series.

    Attributes
    ----------
    period
        Period code ``pe``.
    volatility
        Series vol ``v`` (decimal; 0 in Takasbank: the vol is on each option).
    settlement_date, time_to_expiry
        Expiry (``datetime64[D]``) and ``t`` in years.
    cvf, svf
        Contract value factor and strike value factor (currency per 1.0 of price / strike).
    scale
        ``sc``.
    underlying_pf_id, underlying_contract_id, underlying_ratio
        The underlying contract ``undC``.
    interest_rate
        ``intrRate/val``, decimal (NaN if absent).
    dividend_yield
        ``divRate/val``, decimal (NaN if absent).
    scan_rates
        Scan ranges of the series.
    """

    period: np.ndarray
    volatility: np.ndarray
    settlement_date: np.ndarray
    time_to_expiry: np.ndarray
    cvf: np.ndarray
    svf: np.ndarray
    scale: np.ndarray
    underlying_pf_id: np.ndarray
    underlying_contract_id: np.ndarray
    underlying_ratio: np.ndarray
    interest_rate: np.ndarray
    dividend_yield: np.ndarray
    scan_rates: ScanRates

    def __len__(self) -> int:
        return int(self.period.shape[0])


@dataclass(frozen=True, kw_only=True)
class OptionContracts(ContractArrays):
    """Contracts (``opt``) of an option portfolio, flattened over its series.

    Series-level columns (``period``, ``time_to_expiry``, ``settlement_date``, underlying,
    scan rates, and ``cvf`` / ``svf`` unless the option overrides them) are broadcast to each
    option; ``series_index`` points into :attr:`OptionPortfolio.series`.

    Attributes
    ----------
    series_index
        Row of the option's series in :attr:`OptionPortfolio.series` (int64).
    is_call
        True for a call (``o`` = ``C``), False for a put (``P``).
    strike
        Strike ``k`` in price units.
    svf
        Strike value factor.
    """

    series_index: np.ndarray
    is_call: np.ndarray
    strike: np.ndarray
    svf: np.ndarray
    settlement_date: np.ndarray
    time_to_expiry: np.ndarray
    underlying_pf_id: np.ndarray
    underlying_contract_id: np.ndarray


@dataclass(frozen=True)
class UnderlyingPf:
    """``undPf``: the portfolio a derivative portfolio is written on (``ratio`` = ``i``)."""

    exchange: str
    pf_id: int
    pf_code: str | None
    pf_type: str | None
    ratio: float


@dataclass(frozen=True, kw_only=True)
class Portfolio:
    """Fields common to every product family (portfolio) of an exchange.

    Attributes
    ----------
    exchange
        Exchange code (``exch``).
    pf_id, pf_code, name
        Identifiers; ``(exchange, pf_id)`` is what ``pfLink`` refers to.
    pf_type
        ``PHY``, ``FUT``, ``OOP`` (options on physical), ``OOF`` (on futures), ``OOE``, ``OOC``.
    currency
        ISO code of the portfolio currency (risk arrays, scan ranges and values are in it).
    cvf
        Portfolio-level standard contract value factor (0 in Takasbank: see the contracts).
    price_dl, price_fmt
        Price decimal locator and format (display only; prices are already decimal numbers).
    value_meth, price_meth, setl_meth
        Valuation method (``EQTY``, ``FUT``...), price method, settlement method (``CASH``,
        ``DELIV``).
    underlying
        ``undPf``, if any.
    key_path
        Where the portfolio is in the file (e.g. ``spanFile.pointInTime.clearingOrg.exchange[1].futPf[5]``;
        ``""`` if not read from a file). Not compared.
    """

    exchange: str
    pf_id: int
    pf_code: str
    pf_type: str
    name: str | None
    currency: str
    cvf: float
    price_dl: int | None
    price_fmt: str | None
    value_meth: str | None
    price_meth: str | None
    setl_meth: str | None
    underlying: UnderlyingPf | None
    key_path: str = field(default="", compare=False)


@dataclass(frozen=True, kw_only=True)
class PhysicalPortfolio(Portfolio):
    """A ``phyPf`` and its contracts."""

    contracts: PhysicalContracts


@dataclass(frozen=True, kw_only=True)
class FuturesPortfolio(Portfolio):
    """A ``futPf`` and its contracts."""

    contracts: FuturesContracts


@dataclass(frozen=True, kw_only=True)
class OptionPortfolio(Portfolio):
    """An option portfolio (``oopPf`` / ``oofPf`` / ``ooePf`` / ``oocPf``).

    Attributes
    ----------
    exercise
        ``EURO`` or ``AMER``.
    strike_dl, strike_fmt
        Strike decimal locator and format.
    cab
        Cabinet (minimum) option price, price units.
    price_model
        Pricing model code (``priceModel``).
    series
        The option series.
    contracts
        The options of all series, flattened.
    """

    exercise: str | None
    strike_dl: int | None
    strike_fmt: str | None
    cab: float
    price_model: str | None
    series: OptionSeries
    contracts: OptionContracts


#: A portfolio of any of the three kinds read.
AnyPortfolio = PhysicalPortfolio | FuturesPortfolio | OptionPortfolio


@dataclass(frozen=True)
class Exchange:
    """An ``exchange`` and its portfolios, in file order."""

    code: str
    name: str | None
    physical_portfolios: tuple[PhysicalPortfolio, ...]
    futures_portfolios: tuple[FuturesPortfolio, ...]
    option_portfolios: tuple[OptionPortfolio, ...]

    def portfolios(self) -> tuple[AnyPortfolio, ...]:
        """All portfolios of the exchange: physical, futures, then options."""
        return (*self.physical_portfolios, *self.futures_portfolios, *self.option_portfolios)


@dataclass(frozen=True)
class Rate:
    """A ``rate`` (or ``adjRate``-like) value for rate class ``rate_id`` (``r``)."""

    rate_id: int
    value: float


@dataclass(frozen=True)
class AdjRate:
    """``adjRate``: requirement of rate class ``rate_id`` = ``value`` x requirement of ``base_rate_id``.

    Takasbank: ``(1, 1, 0.75)``: maintenance = 75 % of the requirement from the risk arrays.
    """

    rate_id: int
    base_rate_id: int
    value: float


@dataclass(frozen=True)
class PfLink:
    """``pfLink``: a portfolio that belongs to a combined commodity.

    ``scale`` is ``sc`` (contract/delta scaling factor, 1.0 in Takasbank).
    """

    exchange: str
    pf_id: int
    pf_code: str | None
    pf_type: str | None
    scale: float
    cmb_meth: str | None
    apply_basis_risk: bool | None
    array_precision: int | None
    oop_delta_meth: str | None


@dataclass(frozen=True)
class Tier:
    """A ``tier`` of ``intraTiers`` / ``interTiers`` / ``somTiers`` / ``scanTiers`` / ``rateTiers``.

    ``start_period`` / ``end_period`` (``sPe`` / ``ePe``) bound the months of the tier (None:
    the tier covers the whole combined commodity). ``rates`` holds ``rate`` values (for SOM
    tiers: currency per short option).
    """

    tn: int
    start_period: str | None
    end_period: str | None
    rates: tuple[Rate, ...]

    def rate(self, rate_id: int = 1) -> float:
        """The value for ``rate_id`` (NaN if the tier has none)."""
        return _pick_rate(self.rates, rate_id)


@dataclass(frozen=True)
class SpreadLeg:
    """A spread leg: ``tLeg`` (combined commodity ``cc``, tier ``tn``) or ``pLeg`` (``cc``, period
    ``pe``), with required side ``side`` (``rs``: A or B) and delta ratio ``ratio`` (``i``: deltas
    of this leg per spread).

    ``period`` is None for a tier leg; for a period leg it is the period code ``pe`` (``YYYYMM``
    first: ``202606``, ``20260625``) and ``tier`` is 0. ``rates`` are the leg's own ``rate``
    children (in a ``W`` inter spread: its credit rate as a fraction, checked to lie in [0, 1]).
    """

    cc: str
    tier: int
    side: str
    ratio: float
    rates: tuple[Rate, ...] = ()
    period: str | None = None

    @property
    def tag(self) -> str:
        """``tLeg`` or ``pLeg``."""
        return "tLeg" if self.period is None else "pLeg"


@dataclass(frozen=True)
class DeltaSpread:
    """A ``dSpread`` (intra-commodity in ``ccDef`` or inter-commodity in ``interSpreads``).

    Attributes
    ----------
    spread
        Spread number = priority (spreads are formed in increasing order).
    charge_method
        ``chargeMeth``: ``F`` flat rate, ``W`` weighted futures price risk, ``P`` per month per
        spread (``pmpsRate``; not computed).
    rates
        Rate per rate class. Unit by method: ``F`` currency per spread formed (in an inter spread:
        a charge when positive, a credit when negative); ``W`` credit as a fraction of the weighted
        futures price risk (0.60 = 60 %; checked to lie in [0, 1]).
    legs
        Tier legs (``tLeg``) and period legs (``pLeg``), in file order.
    spread_type
        ``spreadType`` if present.
    unparsed_legs
        Number of legs of other kinds (``rpLeg``, nested ``dSpread``) that this reader does not
        model; 0 in the Takasbank file.
    key_path
        Where the spread is in the file (``""`` if not read from a file). Not compared.
    """

    spread: int
    charge_method: str
    rates: tuple[Rate, ...]
    legs: tuple[SpreadLeg, ...]
    spread_type: str | None = None
    unparsed_legs: int = 0
    key_path: str = field(default="", compare=False)

    def rate(self, rate_id: int = 1) -> float:
        """The rate for ``rate_id`` (NaN if absent)."""
        return _pick_rate(self.rates, rate_id)


@dataclass(frozen=True)
class SpotRate:
    """``spotRate``: delivery-month charge for period ``period``: ``spread_rate`` per spread
    delta and ``outright_rate`` per outright delta (currency per delta)."""

    rate_id: int
    period: str
    spread_rate: float
    outright_rate: float


@dataclass(frozen=True, kw_only=True)
class CombinedCommodity:
    """A ``ccDef``.

    Attributes
    ----------
    code, name, currency
        Combined commodity code, name and currency.
    risk_exponent
        ``riskExponent``.
    cap_anov
        Cap available net option value flag.
    proc_meth, wfpr_meth, spot_meth, som_meth, cmb_meth
        Methods (``NORMAL``, ``GROSS``...).
    pf_links
        Member portfolios.
    adj_rates
        Requirement adjustments between rate classes (see :class:`AdjRate`).
    intra_tiers, inter_tiers, som_tiers, scan_tiers
        Tiers (``rateTiers`` are ignored).
    d_spreads
        Intra-commodity spreads.
    spot_rates
        Spot-month charges (empty in Takasbank).
    point_defs
        CC-specific point definitions (empty unless the file overrides the clearing org's).
    other_elements
        Children of the ``ccDef`` this reader does not read (``rateTiers``, ``concAdjRate``,
        ``liqRate``...), tag -> count. Not compared.
    key_path
        Where the ``ccDef`` is in the file (``""`` if not read from a file). Not compared.
    """

    code: str
    name: str | None
    currency: str
    risk_exponent: int | None
    cap_anov: bool | None
    proc_meth: str | None
    wfpr_meth: str | None
    spot_meth: str | None
    som_meth: str | None
    cmb_meth: str | None
    pf_links: tuple[PfLink, ...]
    adj_rates: tuple[AdjRate, ...]
    intra_tiers: tuple[Tier, ...]
    inter_tiers: tuple[Tier, ...]
    som_tiers: tuple[Tier, ...]
    scan_tiers: tuple[Tier, ...]
    d_spreads: tuple[DeltaSpread, ...]
    spot_rates: tuple[SpotRate, ...]
    point_defs: tuple[PointDef, ...] = ()
    other_elements: Mapping[str, int] = field(default_factory=dict, compare=False)
    key_path: str = field(default="", compare=False)

    def som_rate(self, rate_id: int = 1) -> float:
        """SOM rate of the first SOM tier (currency per short option; NaN if none)."""
        return self.som_tiers[0].rate(rate_id) if self.som_tiers else math.nan


@dataclass(frozen=True, kw_only=True)
class SpanFile:
    """The content of one SPAN XML file.

    Attributes
    ----------
    path
        The file read.
    file_format
        ``fileFormat`` (``4.00``).
    created
        ``created`` (file creation time), or None.
    business_date
        ``pointInTime/date``.
    is_settlement
        ``isSetl`` (True: end-of-day settlement parameters).
    settlement_qualifier
        ``setlQualifier`` (``final``...).
    clearing_org, clearing_org_name
        ``ec`` code and name.
    is_contract_scale
        ``isContractScale``: True if ``sc`` scales contracts, False if it scales deltas.
    currencies
        Currency definitions by code.
    conversion_rates
        ``curConv`` rates.
    pb_rate_defs
        Performance-bond rate classes.
    point_defs
        Clearing-org scan/delta point definitions (one per rate class).
    exchanges
        Exchanges with their portfolios.
    combined_commodities
        Combined commodities by code, in file order.
    inter_spreads
        Inter-commodity spreads, in file order (``spread`` = priority).
    super_spreads
        Super inter-commodity spreads (``superSpreads/dSpread``), formed before the intra-commodity
        spreads, in file order.
    ignored_portfolios
        Portfolio kinds this reader does not model, tag -> count (e.g. ``{"debtPf": 3}``).
    skipped_elements
        Elements the reader skipped unread outside the records it reads, ``parent/tag`` -> count
        (e.g. ``{"clearingOrg/clearSpread": 2}``; the ignored portfolios are among them). Not
        compared.
    """

    path: Path
    file_format: str | None
    created: datetime | None
    business_date: date
    is_settlement: bool | None
    settlement_qualifier: str | None
    clearing_org: str
    clearing_org_name: str | None
    is_contract_scale: bool | None
    currencies: Mapping[str, Currency]
    conversion_rates: tuple[ConversionRate, ...]
    pb_rate_defs: tuple[PbRateDef, ...]
    point_defs: tuple[PointDef, ...]
    exchanges: tuple[Exchange, ...]
    combined_commodities: Mapping[str, CombinedCommodity]
    inter_spreads: tuple[DeltaSpread, ...]
    ignored_portfolios: Mapping[str, int] = field(default_factory=dict)
    skipped_elements: Mapping[str, int] = field(default_factory=dict, compare=False)
    super_spreads: tuple[DeltaSpread, ...] = ()

    @property
    def physical_portfolios(self) -> tuple[PhysicalPortfolio, ...]:
        """All physical portfolios of all exchanges."""
        return tuple(p for e in self.exchanges for p in e.physical_portfolios)

    @property
    def futures_portfolios(self) -> tuple[FuturesPortfolio, ...]:
        """All futures portfolios of all exchanges."""
        return tuple(p for e in self.exchanges for p in e.futures_portfolios)

    @property
    def option_portfolios(self) -> tuple[OptionPortfolio, ...]:
        """All option portfolios of all exchanges."""
        return tuple(p for e in self.exchanges for p in e.option_portfolios)

    def point_def(self, rate_id: int = 1) -> PointDef | None:
        """The clearing-org point definitions for ``rate_id`` (else the first; None if none)."""
        for pd in self.point_defs:
            if pd.rate_id == rate_id:
                return pd
        return self.point_defs[0] if self.point_defs else None

    def portfolios(self) -> tuple[AnyPortfolio, ...]:
        """Every portfolio of every exchange: physical, futures, then options, exchange by exchange."""
        return tuple(p for e in self.exchanges for p in e.portfolios())

    def portfolio(self, pf_type: str, pf_code: str, exchange: str | None = None) -> AnyPortfolio:
        """Find a portfolio by type (``PHY``, ``FUT``, ``OOP``...) and code.

        Raises
        ------
        KeyError
            If there is no such portfolio, or more than one (give ``exchange``).
        """
        found = [
            p
            for e in self.exchanges
            if exchange is None or e.code == exchange
            for p in e.portfolios()
            if p.pf_type == pf_type and p.pf_code == pf_code
        ]
        if len(found) != 1:
            raise KeyError(f"{len(found)} portfolios of type {pf_type} and code {pf_code}")
        return found[0]

    def portfolio_by_id(self, exchange: str, pf_id: int) -> AnyPortfolio:
        """Find the portfolio a ``pfLink`` / ``undC`` refers to (``KeyError`` if none)."""
        for e in self.exchanges:
            if e.code != exchange:
                continue
            for p in e.portfolios():
                if p.pf_id == pf_id:
                    return p
        raise KeyError(f"no portfolio {pf_id} on exchange {exchange}")


def _pick_rate(rates: tuple[Rate, ...], rate_id: int) -> float:
    for r in rates:
        if r.rate_id == rate_id:
            return r.value
    return math.nan
