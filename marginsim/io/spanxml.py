"""Streaming, hardened reader of SPAN XML risk-parameter files (CME SPAN XML format 4.00, ``.spn``).

Clearing houses publish their SPAN parameters and risk arrays daily as one XML file (tens of
megabytes for a large exchange). :func:`read_span_xml` reads such a file **streaming**: it feeds
the file in 64 KiB blocks to the C-accelerated :class:`xml.etree.ElementTree.XMLParser`, and
after each block walks the partial tree, turns every complete contract, portfolio and combined
commodity into plain data and removes its element, so memory stays bounded by the largest single
portfolio (plus one block), not by the file. Only record- and portfolio-level elements are
handled one by one in Python; the bulk (risk-array values, contract fields) is read per record.

Every problem with the file (malformed or truncated XML, a missing required element, a
non-numeric value, a forbidden DTD, an undecodable encoding) is raised as
:class:`marginsim.errors.InputError` naming the file and an XML key path such as
``spanFile.pointInTime.clearingOrg.exchange[1].futPf[5].fut[1].ra.a[3]``. Indices count from
1 among siblings with the same tag, as in XPath; the index is shown for elements that may
repeat.

Hardening
---------
Document type declarations (DTDs) are refused outright, so entity expansion ("billion laughs",
quadratic blow-up) and external entities or DTDs (XXE, network or file access) cannot happen:

* **Prolog guard.** Every block is first given to defusedxml's parser
  (:class:`defusedxml.ElementTree.XMLParser` with ``forbid_dtd``, ``forbid_entities`` and
  ``forbid_external``: its expat handlers for the DOCTYPE start, entity declarations, unparsed
  entities and external entity references raise), and only then to the C parser, until the
  guard reaches the start tag of the root element. A DOCTYPE may only appear in the prolog,
  before the root element (XML 1.0, production ``prolog``). The guard is the same expat library
  with the same settings (no forced encoding, namespace separator ``}``) reading the same
  bytes, so it decodes the prolog exactly as the C parser will (BOMs, UTF-16, declared
  encodings), and it has read every byte before the C parser receives it: a DOCTYPE is refused
  at its ``[`` or closing ``>``, before any declaration in it is read, while the C parser has
  at most seen the part before that (a DOCTYPE that straddles two blocks) and has expanded
  nothing. The guard stops at the root start tag, so its cost does not grow with the file.
* **After the root start tag** expat rejects a DOCTYPE or an entity declaration as
  not well-formed, so no entity other than the five predefined ones and character references
  can exist, and a reference to any other entity is an "undefined entity" error. The C parser
  installs no external-entity handler (expat itself never opens files or URLs), and expat
  >= 2.4 (2.5.0 here) also limits entity amplification: defence in depth for what the guard
  already refuses.

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

import gc
import math
from array import array
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from operator import attrgetter
from os import PathLike
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder, XMLParser

import defusedxml.ElementTree as _DET
import numpy as np
from defusedxml import DefusedXmlException

from marginsim.errors import InputError

__all__ = [
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
    "Rate",
    "ScanPoints",
    "ScanRates",
    "SpanFile",
    "SpotRate",
    "SpreadLeg",
    "Tier",
    "UnderlyingPf",
    "read_span_xml",
    "summarize",
]

#: Number of scenarios assumed when the file has no ``pointDef``.
DEFAULT_N_POINTS = 16


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Exchange:
    """An ``exchange`` and its portfolios, in file order."""

    code: str
    name: str | None
    physical_portfolios: tuple[PhysicalPortfolio, ...]
    futures_portfolios: tuple[FuturesPortfolio, ...]
    option_portfolios: tuple[OptionPortfolio, ...]


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
    """``tLeg``: combined commodity ``cc``, tier ``tn``, required side ``side`` (``rs``: A or B)
    and delta ratio ``ratio`` (``i``: deltas of this leg per spread)."""

    cc: str
    tier: int
    side: str
    ratio: float
    rates: tuple[Rate, ...] = ()


@dataclass(frozen=True)
class DeltaSpread:
    """A ``dSpread`` (intra-commodity in ``ccDef`` or inter-commodity in ``interSpreads``).

    Attributes
    ----------
    spread
        Spread number = priority (spreads are formed in increasing order).
    charge_method
        ``chargeMeth``: ``F`` flat rate, ``W`` weighted futures price risk, ``P``.
    rates
        Rate per rate class. Unit by method: ``F`` currency per spread formed; ``W`` credit
        as a fraction of the weighted futures price risk (0.60 = 60 %; checked to lie in
        [0, 1]).
    legs
        Tier legs, in file order.
    spread_type
        ``spreadType`` if present.
    unparsed_legs
        Number of legs of other kinds (``pLeg``, ``rpLeg``, nested ``dSpread``) that this
        reader does not model; 0 in the Takasbank file.
    """

    spread: int
    charge_method: str
    rates: tuple[Rate, ...]
    legs: tuple[SpreadLeg, ...]
    spread_type: str | None = None
    unparsed_legs: int = 0

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
    ignored_portfolios
        Portfolio kinds this reader does not model, tag -> count (e.g. ``{"debtPf": 3}``).
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

    def portfolio(
        self, pf_type: str, pf_code: str, exchange: str | None = None
    ) -> PhysicalPortfolio | FuturesPortfolio | OptionPortfolio:
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
            for p in (*e.physical_portfolios, *e.futures_portfolios, *e.option_portfolios)
            if p.pf_type == pf_type and p.pf_code == pf_code
        ]
        if len(found) != 1:
            raise KeyError(f"{len(found)} portfolios of type {pf_type} and code {pf_code}")
        return found[0]

    def portfolio_by_id(
        self, exchange: str, pf_id: int
    ) -> PhysicalPortfolio | FuturesPortfolio | OptionPortfolio:
        """Find the portfolio a ``pfLink`` / ``undC`` refers to (``KeyError`` if none)."""
        for e in self.exchanges:
            if e.code != exchange:
                continue
            for p in (*e.physical_portfolios, *e.futures_portfolios, *e.option_portfolios):
                if p.pf_id == pf_id:
                    return p
        raise KeyError(f"no portfolio {pf_id} on exchange {exchange}")


def _pick_rate(rates: tuple[Rate, ...], rate_id: int) -> float:
    for r in rates:
        if r.rate_id == rate_id:
            return r.value
    return math.nan


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

#: Option portfolio tags and their pfType.
_OPTION_PF = {"oopPf": "OOP", "oofPf": "OOF", "ooePf": "OOE", "oocPf": "OOC"}
#: All portfolio tags read, and their pfType.
_PF_TYPES = {"phyPf": "PHY", "futPf": "FUT", **_OPTION_PF}
#: Portfolio tags of the schema not modelled here (counted in ``ignored_portfolios``).
_OTHER_PF = frozenset({"debtPf", "equityPf", "fwdPf", "IRSwapPf", "CDSwapPf", "eDebtPf", "cmbPf"})
#: Tags that may repeat among siblings: their key-path component always shows an index.
_REPEATING = frozenset(
    {
        "currencyDef", "curConv", "pbRateDef", "pointDef",
        "scanPointDef", "deltaPointDef", "exchange", "ccDef", "dSpread", "tLeg", "pfLink",
        "tier", "rate", "adjRate", "spotRate", "series", "fut", "opt", "phy", "a",
        *_PF_TYPES, *_OTHER_PF,
    }
)  # fmt: skip
#: Header children kept until their container ends (everything else unknown is dropped).
_HEADERS: dict[str, frozenset[str]] = {
    "spanFile": frozenset({"fileFormat", "created", "spanVersion"}),
    "definitions": frozenset(),
    "pointInTime": frozenset({"date", "isSetl", "setlQualifier"}),
    "clearingOrg": frozenset({"ec", "name", "isContractScale", "isNetMargin", "finalizeMeth"}),
    "exchange": frozenset({"exch", "name"}),
    "pf": frozenset(
        {
            "pfId", "pfCode", "name", "currency", "cvf", "priceDl", "priceFmt", "valueMeth",
            "priceMeth", "setlMeth", "undPf", "exercise", "strikeDl", "strikeFmt", "cab",
            "priceModel",
        }
    ),
    "series": frozenset(
        {"pe", "v", "setlDate", "t", "cvf", "svf", "sc", "undC", "intrRate", "divRate", "scanRate"}
    ),
    "interSpreads": frozenset(),
}  # fmt: skip
_SCAN_FIELDS = (
    ("priceScan", "price_scan"),
    ("priceScanPct", "price_scan_pct"),
    ("volScan", "vol_scan"),
    ("volScanPct", "vol_scan_pct"),
    ("priceScanDown", "price_scan_down"),
    ("priceScanDownPct", "price_scan_down_pct"),
    ("volScanDown", "vol_scan_down"),
    ("volScanDownPct", "vol_scan_down_pct"),
)
_NAN_SCAN = (math.nan,) * len(_SCAN_FIELDS)
#: Element kinds whose whole subtree is handled at the element's end.
_SUBTREE_KINDS = frozenset({"record", "skip", "leaf"})
#: Bytes read and parsed per step (the partial tree is walked after each).
_BLOCK_SIZE = 1 << 16
#: Tag of the holder element opened above the document root (not an XML name: never a real tag).
_HOLDER = "#document"
_EPOCH = date(1970, 1, 1)
_isfinite = math.isfinite
_TEXT = attrgetter("text")
_NAT_DAYS = int(np.iinfo(np.int64).min)  # the int64 behind datetime64 NaT


def _ro(a: np.ndarray) -> np.ndarray:
    """Mark an array read-only (the dataclasses are frozen; so are their arrays)."""
    a.flags.writeable = False
    return a


def _first_children(elem: Element) -> dict[str, Element]:
    """Map each child tag to its first child element with that tag."""
    return {ch.tag: ch for ch in reversed(elem)}  # in reverse: the first one is written last


def _repair_text(s: str) -> str:
    """Undo UTF-8 read as Latin-1 (the Takasbank file declares ISO-8859-1 but holds UTF-8)."""
    if s.isascii():
        return s
    try:
        return s.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return s


def _parse_yyyymmdd(s: str) -> date:
    s = s.strip()
    if len(s) == 8 and s.isdigit():
        return date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    return date.fromisoformat(s)


def _parse_created(s: str) -> datetime:
    s = s.strip()
    for n, fmt in ((12, "%Y%m%d%H%M"), (14, "%Y%m%d%H%M%S"), (8, "%Y%m%d")):
        if len(s) == n and s.isdigit():
            return datetime.strptime(s, fmt)
    return datetime.fromisoformat(s)


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------


_INT_COLS = frozenset({"ids", "und_pf", "und_c", "series_index", "setl", "is_call"})
_STR_COLS = frozenset({"period"})


class _Columns:
    """Per-portfolio column accumulators.

    Numbers go into compact typed buffers (``array('d')`` / ``array('q')``: 8 bytes a value) until
    the portfolio ends and they become numpy arrays; ``setl`` holds days since 1970-01-01.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.cols: dict[str, Any] = {
            n: [] if n in _STR_COLS else array("q") if n in _INT_COLS else array("d") for n in names
        }
        self.ra = array("d")
        self.scan = array("d")


_COMMON_COLS = ("ids", "period", "price", "delta", "volatility", "cvf", "value", "scale", "cd")
_FUT_COLS = (*_COMMON_COLS, "setl", "t", "und_pf", "und_c", "und_i")
_OPT_COLS = (*_COMMON_COLS, "series_index", "is_call", "strike", "svf")
_SERIES_COLS = (
    "period", "volatility", "setl", "t", "cvf", "svf", "scale", "und_pf", "und_c", "und_i",
    "intr", "div",
)  # fmt: skip


class _RootElementReached(Exception):
    """Raised by the prolog guard at the root element's start tag: the prolog is over."""


class _PrologGuardTarget:
    """Parser target of the prolog guard: stops it at the start tag of the root element."""

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        raise _RootElementReached

    def close(self) -> None:
        return None


class _Reader:
    """One pass over one file. Holds the open-element stack for key paths."""

    def __init__(self, path: Path, rate_id: int) -> None:
        self.path = path
        self.file = str(path)
        self.rate_id = rate_id
        # open-element stack
        self.tags: list[str] = []
        self.idx: list[int] = []
        self.kinds: list[str] = []
        self.elems: list[Element] = []
        self.counts: list[dict[str, int]] = [{}]
        # number of header leaves kept at the front of each open element (and of the holder)
        self.kept: list[int] = [0]
        self.doc: Element = Element(_HOLDER)
        # results
        self.file_format: str | None = None
        self.created: datetime | None = None
        self.business_date: date | None = None
        self.is_settlement: bool | None = None
        self.setl_qualifier: str | None = None
        self.clearing_org: str | None = None
        self.clearing_org_name: str | None = None
        self.is_contract_scale: bool | None = None
        self.currencies: dict[str, Currency] = {}
        self.conversion_rates: list[ConversionRate] = []
        self.pb_rate_defs: list[PbRateDef] = []
        self.point_defs: list[PointDef] = []
        self.exchanges: list[Exchange] = []
        self.ccs: dict[str, CombinedCommodity] = {}
        self.inter_spreads: list[DeltaSpread] = []
        self.ignored: dict[str, int] = {}
        self.n_points: int | None = None
        self.n_contracts = 0
        self.seen_pit = False
        self.seen_co = False
        # builders of the open exchange / portfolio
        self.ex_pfs: dict[str, list[Any]] = {}
        self.pf_tag = ""
        self.pf_cols: _Columns | None = None
        self.series_cols: _Columns | None = None
        self.n_series = 0
        self.date_cache: dict[str, int] = {}

    # ---- errors ------------------------------------------------------------------------

    def key_path(self, rel: str = "") -> str:
        parts = []
        for tag, i in zip(self.tags, self.idx, strict=True):
            parts.append(f"{tag}[{i}]" if (i > 1 or tag in _REPEATING) else tag)
        out = ".".join(parts)
        if rel:
            out = f"{out}.{rel}" if out else rel
        return out

    def error(self, problem: str, rel: str = "") -> InputError:
        return InputError(problem, file=self.file, key_path=self.key_path(rel))

    # ---- value access --------------------------------------------------------------------

    @staticmethod
    def _join(rel: str, tag: str) -> str:
        return f"{rel}.{tag}" if rel else tag

    def text(self, ch: dict[str, Element], tag: str, rel: str = "", *, required: bool = False) -> str | None:
        el = ch.get(tag)
        t = None if el is None or el.text is None else el.text.strip()
        if not t:
            if required:
                what = "missing required element" if el is None else "empty required element"
                raise self.error(f"{what} <{tag}>", self._join(rel, tag) if el is not None else rel)
            return None
        return t

    def name(self, ch: dict[str, Element], tag: str, rel: str = "") -> str | None:
        t = self.text(ch, tag, rel)
        return None if t is None else _repair_text(t)

    def num(
        self,
        ch: dict[str, Element],
        tag: str,
        rel: str = "",
        *,
        required: bool = False,
        default: float = math.nan,
    ) -> float:
        el = ch.get(tag)
        if el is None:
            if not required:
                return default
        else:
            # fast path: float() ignores the surrounding whitespace that the careful path strips
            try:
                v = float(el.text)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                pass
            else:
                if _isfinite(v):
                    return v
        return self._num(ch, tag, rel, required, default)

    def _num(self, ch: dict[str, Element], tag: str, rel: str, required: bool, default: float) -> float:
        """:meth:`num` for the absent, empty, non-numeric or non-finite value: the error if any."""
        t = self.text(ch, tag, rel, required=required)
        if t is None:
            return default
        try:
            v = float(t)
        except ValueError:
            raise self.error(f"<{tag}> is not a number: {t[:40]!r}", self._join(rel, tag)) from None
        if not math.isfinite(v):
            raise self.error(f"<{tag}> is not a finite number: {t[:40]!r}", self._join(rel, tag))
        return v

    def int_(
        self,
        ch: dict[str, Element],
        tag: str,
        rel: str = "",
        *,
        required: bool = False,
        default: int | None = None,
    ) -> int | None:
        el = ch.get(tag)
        if el is None:
            if not required:
                return default
        else:
            try:  # fast path, as in :meth:`num`
                return int(el.text)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                pass
        t = self.text(ch, tag, rel, required=required)
        if t is None:
            return default
        try:
            return int(t)
        except ValueError:
            try:  # tolerate "1.000000"
                v = float(t)
            except ValueError:
                v = math.nan
            if math.isfinite(v) and v == int(v):
                return int(v)
            raise self.error(f"<{tag}> is not an integer: {t[:40]!r}", self._join(rel, tag)) from None

    def req_int(self, ch: dict[str, Element], tag: str, rel: str = "") -> int:
        v = self.int_(ch, tag, rel, required=True)
        assert v is not None
        return v

    def bool_(self, ch: dict[str, Element], tag: str, rel: str = "") -> bool | None:
        t = self.text(ch, tag, rel)
        if t is None:
            return None
        low = t.lower()
        if low in ("1", "true", "y", "yes"):
            return True
        if low in ("0", "false", "n", "no"):
            return False
        raise self.error(f"<{tag}> is not a boolean: {t[:40]!r}", self._join(rel, tag))

    def setl_date(self, ch: dict[str, Element], rel: str = "") -> int:
        """``setlDate`` as days since 1970-01-01 (the int64 of ``datetime64[D]``; NaT if absent)."""
        t = self.text(ch, "setlDate", rel)
        if t is None:
            return _NAT_DAYS
        d = self.date_cache.get(t)
        if d is None:
            try:
                d = (_parse_yyyymmdd(t) - _EPOCH).days
            except ValueError:
                raise self.error(
                    f"<setlDate> is not a date (YYYYMMDD): {t[:40]!r}", self._join(rel, "setlDate")
                ) from None
            self.date_cache[t] = d
        return d

    # ---- repeated sub-structures -------------------------------------------------------------

    def pick_by_rate(self, elem: Element, tag: str, rel: str) -> tuple[Element | None, str]:
        """The child ``tag`` (``ra``, ``scanRate``) whose ``r`` is ``self.rate_id``.

        A single child without ``r`` is taken as is. Children for other rate classes are
        ignored; if there are children but none for ``self.rate_id``, that is an error (the
        reader does not mix rate classes).
        """
        found = elem.findall(tag)
        if not found:
            return None, rel
        many = len(found) > 1
        for i, c in enumerate(found, 1):
            r = c.find("r")
            rtext = None if r is None or r.text is None else r.text.strip()
            if rtext is None and not many:
                return c, self._join(rel, tag)
            try:
                ok = rtext is not None and int(rtext) == self.rate_id
            except ValueError:
                raise self.error(
                    f"<r> is not an integer: {rtext[:40]!r}",
                    self._join(rel, f"{tag}[{i}].r" if many else f"{tag}.r"),
                ) from None
            if ok:
                return c, self._join(rel, f"{tag}[{i}]" if many else tag)
        raise self.error(
            f"no <{tag}> for rate id {self.rate_id} (found {len(found)} for other rate ids)", rel
        )

    def scan_rate(self, elem: Element, rel: str = "") -> tuple[float, ...]:
        sr, srel = self.pick_by_rate(elem, "scanRate", rel)
        if sr is None:
            return _NAN_SCAN
        ch = _first_children(sr)
        return tuple(self.num(ch, tag, srel) for tag, _ in _SCAN_FIELDS)

    def risk_array(self, elem: Element, rel: str = "") -> tuple[list[float], float]:
        n = self.n_points if self.n_points is not None else DEFAULT_N_POINTS
        ra, rrel = self.pick_by_rate(elem, "ra", rel)
        if ra is None:
            return [math.nan] * n, math.nan
        # the values in bulk: the ``a`` children in C, converted by map() in C
        texts: list[str | None] = list(map(_TEXT, ra.findall("a")))
        try:
            vals = list(map(float, texts))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            for i, t in enumerate(texts, 1):
                try:
                    float(t)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise self.error(
                        f"risk array value is not a number: {(t or '').strip()[:40]!r}",
                        self._join(rrel, f"a[{i}]"),
                    ) from None
            raise  # pragma: no cover
        if not all(map(_isfinite, vals)):
            i = next(i for i, v in enumerate(vals, 1) if not math.isfinite(v))
            raise self.error("risk array value is not finite", self._join(rrel, f"a[{i}]"))
        if len(vals) != n:
            raise self.error(f"risk array has {len(vals)} values, expected {n} (one per scan point)", rrel)
        ds = ra.findall("d")
        if not ds:
            raise self.error("missing required element <d> (composite delta)", rrel)
        d_el = ds[-1]
        cd = self.num({"d": d_el}, "d", rrel, required=True)
        return vals, cd

    def rates(self, elem: Element, rel: str, tag: str = "rate") -> tuple[Rate, ...]:
        out = []
        for i, r in enumerate((c for c in elem if c.tag == tag), 1):
            ch = _first_children(r)
            rrel = self._join(rel, f"{tag}[{i}]")
            out.append(Rate(self.req_int(ch, "r", rrel), self.num(ch, "val", rrel, required=True)))
        return tuple(out)

    def und(self, el: Element | None, rel: str) -> tuple[int, int, float]:
        if el is None:
            return -1, -1, math.nan
        ch = _first_children(el)
        return (
            self.req_int(ch, "pfId", rel),
            self.req_int(ch, "cId", rel),
            self.num(ch, "i", rel, default=1.0),
        )

    # ---- records ------------------------------------------------------------------------------

    def on_currency_def(self, e: Element) -> None:
        ch = _first_children(e)
        code = self.text(ch, "currency", required=True)
        assert code is not None
        self.currencies[code] = Currency(
            code=code,
            symbol=self.text(ch, "symbol") or "",
            name=self.name(ch, "name") or "",
            decimal_pos=self.int_(ch, "decimalPos", default=2) or 0,
        )

    def on_cur_conv(self, e: Element) -> None:
        ch = _first_children(e)
        f = self.num(ch, "factor", required=True)
        if f <= 0:
            raise self.error(f"conversion factor must be positive, got {f}", "factor")
        self.conversion_rates.append(
            ConversionRate(
                self.text(ch, "fromCur", required=True) or "", self.text(ch, "toCur", required=True) or "", f
            )
        )

    def on_pb_rate_def(self, e: Element) -> None:
        ch = _first_children(e)
        self.pb_rate_defs.append(
            PbRateDef(
                rate_id=self.req_int(ch, "r"),
                is_customer=bool(self.bool_(ch, "isCust")),
                account_type=self.text(ch, "acctType") or "",
                is_maintenance=bool(self.bool_(ch, "isM")),
                pb_class=self.text(ch, "pbc") or "",
            )
        )

    def point_def(self, e: Element, rel: str = "") -> PointDef:
        ch = _first_children(e)
        rate_id = self.req_int(ch, "r", rel)

        def moves(p: Element, prel: str) -> tuple[float, float]:
            out = []
            for tag in ("priceScanDef", "volScanDef"):
                d = p.find(tag)
                if d is None:
                    raise self.error(f"missing required element <{tag}>", prel)
                dch = _first_children(d)
                drel = self._join(prel, tag)
                mult = self.num(dch, "mult", drel, required=True)
                num = self.num(dch, "numerator", drel)
                den = self.num(dch, "denominator", drel)
                out.append(num / den if math.isfinite(num) and math.isfinite(den) and den != 0 else mult)
            return out[0], out[1]

        rows: dict[str, list[list[float]]] = {"scanPointDef": [], "deltaPointDef": []}
        counters = {"scanPointDef": 0, "deltaPointDef": 0}
        for p in e:
            if p.tag not in rows:
                continue
            counters[p.tag] += 1
            prel = self._join(rel, f"{p.tag}[{counters[p.tag]}]")
            pch = _first_children(p)
            pm, vm = moves(p, prel)
            row = [self.req_int(pch, "point", prel), pm, vm, self.num(pch, "weight", prel, required=True)]
            if p.tag == "scanPointDef":
                row.append(self.req_int(pch, "pairedPoint", prel))
            rows[p.tag].append(row)
        if not rows["scanPointDef"]:
            raise self.error("missing required element <scanPointDef>", rel)
        s = np.array(rows["scanPointDef"], dtype=np.float64).reshape(-1, 5)
        d = np.array(rows["deltaPointDef"], dtype=np.float64).reshape(-1, 4)
        return PointDef(
            rate_id=rate_id,
            scan=ScanPoints(
                point=_ro(s[:, 0].astype(np.int64)),
                price_move=_ro(s[:, 1].copy()),
                vol_move=_ro(s[:, 2].copy()),
                weight=_ro(s[:, 3].copy()),
                paired_point=_ro(s[:, 4].astype(np.int64)),
            ),
            delta=DeltaPoints(
                point=_ro(d[:, 0].astype(np.int64)),
                price_move=_ro(d[:, 1].copy()),
                vol_move=_ro(d[:, 2].copy()),
                weight=_ro(d[:, 3].copy()),
            ),
        )

    def on_point_def(self, e: Element) -> None:
        pd = self.point_def(e)
        self.point_defs.append(pd)
        if self.n_points is None or pd.rate_id == self.rate_id:
            n_before = self.n_points if self.n_points is not None else DEFAULT_N_POINTS
            if self.n_contracts and pd.n_points != n_before:
                raise self.error(
                    f"<pointDef> with {pd.n_points} scan points comes after contracts whose risk "
                    f"arrays were read with {n_before} points"
                )
            self.n_points = pd.n_points

    def contract_common(
        self, e: Element, cols: _Columns, *, price_required: bool = False
    ) -> dict[str, Element]:
        ch = _first_children(e)
        c = cols.cols
        c["ids"].append(self.req_int(ch, "cId"))
        c["price"].append(self.num(ch, "p", required=price_required))
        c["delta"].append(self.num(ch, "d"))
        c["volatility"].append(self.num(ch, "v"))
        c["cvf"].append(self.num(ch, "cvf"))
        c["value"].append(self.num(ch, "val"))
        c["scale"].append(self.num(ch, "sc", default=1.0))
        vals, cd = self.risk_array(e)
        self.n_contracts += 1
        cols.ra.extend(vals)
        c["cd"].append(cd)
        return ch

    def on_phy(self, e: Element) -> None:
        assert self.pf_cols is not None
        ch = self.contract_common(e, self.pf_cols)
        self.pf_cols.cols["period"].append(self.text(ch, "pe") or "")
        self.pf_cols.scan.extend(self.scan_rate(e))

    def on_fut(self, e: Element) -> None:
        cols = self.pf_cols
        assert cols is not None
        ch = self.contract_common(e, cols)
        c = cols.cols
        c["period"].append(self.text(ch, "pe", required=True))
        c["setl"].append(self.setl_date(ch))
        c["t"].append(self.num(ch, "t"))
        pf, cid, i = self.und(ch.get("undC"), "undC")
        c["und_pf"].append(pf)
        c["und_c"].append(cid)
        c["und_i"].append(i)
        cols.scan.extend(self.scan_rate(e))

    def on_opt(self, e: Element) -> None:
        cols = self.pf_cols
        assert cols is not None
        ch = self.contract_common(e, cols, price_required=True)
        c = cols.cols
        o = (self.text(ch, "o", required=True) or "").upper()
        if o not in ("C", "P"):
            raise self.error(f"<o> must be C or P, got {o[:10]!r}", "o")
        c["is_call"].append(o == "C")
        c["strike"].append(self.num(ch, "k", required=True))
        c["svf"].append(self.num(ch, "svf"))
        c["series_index"].append(self.n_series)

    def on_series_end(self, e: Element) -> None:
        s = self.series_cols
        assert s is not None
        ch = _first_children(e)
        c = s.cols
        c["period"].append(self.text(ch, "pe", required=True))
        c["volatility"].append(self.num(ch, "v"))
        c["setl"].append(self.setl_date(ch))
        c["t"].append(self.num(ch, "t"))
        c["cvf"].append(self.num(ch, "cvf"))
        c["svf"].append(self.num(ch, "svf"))
        c["scale"].append(self.num(ch, "sc", default=1.0))
        pf, cid, i = self.und(ch.get("undC"), "undC")
        c["und_pf"].append(pf)
        c["und_c"].append(cid)
        c["und_i"].append(i)
        ir = ch.get("intrRate")
        c["intr"].append(math.nan if ir is None else self.num(_first_children(ir), "val", "intrRate"))
        dv = ch.get("divRate")
        c["div"].append(math.nan if dv is None else self.num(_first_children(dv), "val", "divRate"))
        s.scan.extend(self.scan_rate(e))
        self.n_series += 1

    # ---- portfolios -------------------------------------------------------------------------

    def _scan_rates(self, rows: array, n: int) -> ScanRates:
        arr = np.array(rows, dtype=np.float64).reshape(n, len(_SCAN_FIELDS))
        return ScanRates(**{name: _ro(arr[:, j].copy()) for j, (_, name) in enumerate(_SCAN_FIELDS)})

    def _common_arrays(self, cols: _Columns, pf_cvf: float) -> dict[str, Any]:
        c = cols.cols
        n = len(c["ids"])
        npts = self.n_points if self.n_points is not None else DEFAULT_N_POINTS
        cvf = np.array(c["cvf"], dtype=np.float64)
        cvf[np.isnan(cvf)] = pf_cvf
        return {
            "ids": _ro(np.array(c["ids"], dtype=np.int64)),
            "period": _ro(np.array(c["period"], dtype=np.str_)),
            "price": _ro(np.array(c["price"], dtype=np.float64)),
            "delta": _ro(np.array(c["delta"], dtype=np.float64)),
            "volatility": _ro(np.array(c["volatility"], dtype=np.float64)),
            "cvf": _ro(cvf),
            "value": _ro(np.array(c["value"], dtype=np.float64)),
            "scale": _ro(np.array(c["scale"], dtype=np.float64)),
            "risk_arrays": _ro(np.array(cols.ra, dtype=np.float64).reshape(n, npts)),
            "composite_delta": _ro(np.array(c["cd"], dtype=np.float64)),
        }

    def on_pf_start(self, tag: str) -> None:
        self.pf_tag = tag
        if tag == "phyPf":
            self.pf_cols = _Columns(_COMMON_COLS)
        elif tag == "futPf":
            self.pf_cols = _Columns(_FUT_COLS)
        else:
            self.pf_cols = _Columns(_OPT_COLS)
            self.series_cols = _Columns(_SERIES_COLS)
            self.n_series = 0

    def on_pf_end(self, e: Element, exchange: str) -> None:
        ch = _first_children(e)
        tag = self.pf_tag
        cols = self.pf_cols
        assert cols is not None
        und_el = ch.get("undPf")
        underlying = None
        if und_el is not None:
            uch = _first_children(und_el)
            underlying = UnderlyingPf(
                exchange=self.text(uch, "exch", "undPf", required=True) or "",
                pf_id=self.req_int(uch, "pfId", "undPf"),
                pf_code=self.text(uch, "pfCode", "undPf"),
                pf_type=self.text(uch, "pfType", "undPf"),
                ratio=self.num(uch, "i", "undPf", default=1.0),
            )
        pf_cvf = self.num(ch, "cvf", default=math.nan)
        head: dict[str, Any] = {
            "exchange": exchange,
            "pf_id": self.req_int(ch, "pfId"),
            "pf_code": self.text(ch, "pfCode", required=True),
            "pf_type": _PF_TYPES[tag],
            "name": self.name(ch, "name"),
            "currency": self.text(ch, "currency", required=True),
            "cvf": pf_cvf,
            "price_dl": self.int_(ch, "priceDl"),
            "price_fmt": self.text(ch, "priceFmt"),
            "value_meth": self.text(ch, "valueMeth"),
            "price_meth": self.text(ch, "priceMeth"),
            "setl_meth": self.text(ch, "setlMeth"),
            "underlying": underlying,
        }
        # A portfolio-level cvf of 0 means "not given here": do not let it fill contracts.
        fill_cvf = pf_cvf if pf_cvf else math.nan
        n = len(cols.cols["ids"])
        arrays = self._common_arrays(cols, fill_cvf)
        c = cols.cols
        pf: PhysicalPortfolio | FuturesPortfolio | OptionPortfolio
        if tag == "phyPf":
            pf = PhysicalPortfolio(
                **head, contracts=PhysicalContracts(**arrays, scan_rates=self._scan_rates(cols.scan, n))
            )
        elif tag == "futPf":
            contracts = FuturesContracts(
                **arrays,
                scan_rates=self._scan_rates(cols.scan, n),
                settlement_date=_ro(np.array(c["setl"], dtype=np.int64).view("datetime64[D]")),
                time_to_expiry=_ro(np.array(c["t"], dtype=np.float64)),
                underlying_pf_id=_ro(np.array(c["und_pf"], dtype=np.int64)),
                underlying_contract_id=_ro(np.array(c["und_c"], dtype=np.int64)),
                underlying_ratio=_ro(np.array(c["und_i"], dtype=np.float64)),
            )
            pf = FuturesPortfolio(**head, contracts=contracts)
        else:
            pf = self._option_pf(e, ch, head, cols, arrays, fill_cvf)
        self.ex_pfs[tag if tag in ("phyPf", "futPf") else "opt"].append(pf)
        self.pf_cols = None
        self.series_cols = None

    def _option_pf(
        self,
        e: Element,
        ch: dict[str, Element],
        head: dict[str, Any],
        cols: _Columns,
        arrays: dict[str, Any],
        fill_cvf: float,
    ) -> OptionPortfolio:
        s = self.series_cols
        assert s is not None
        sc = s.cols
        ns = len(sc["period"])
        s_cvf = np.array(sc["cvf"], dtype=np.float64)
        s_cvf[np.isnan(s_cvf)] = fill_cvf
        s_svf = np.array(sc["svf"], dtype=np.float64)
        s_svf[np.isnan(s_svf)] = s_cvf[np.isnan(s_svf)]
        s_scan = self._scan_rates(s.scan, ns)
        series = OptionSeries(
            period=_ro(np.array(sc["period"], dtype=np.str_)),
            volatility=_ro(np.array(sc["volatility"], dtype=np.float64)),
            settlement_date=_ro(np.array(sc["setl"], dtype=np.int64).view("datetime64[D]")),
            time_to_expiry=_ro(np.array(sc["t"], dtype=np.float64)),
            cvf=_ro(s_cvf),
            svf=_ro(s_svf),
            scale=_ro(np.array(sc["scale"], dtype=np.float64)),
            underlying_pf_id=_ro(np.array(sc["und_pf"], dtype=np.int64)),
            underlying_contract_id=_ro(np.array(sc["und_c"], dtype=np.int64)),
            underlying_ratio=_ro(np.array(sc["und_i"], dtype=np.float64)),
            interest_rate=_ro(np.array(sc["intr"], dtype=np.float64)),
            dividend_yield=_ro(np.array(sc["div"], dtype=np.float64)),
            scan_rates=s_scan,
        )
        c = cols.cols
        si = np.array(c["series_index"], dtype=np.int64)
        # broadcast series columns to options; option-level cvf/svf override the series'
        opt_cvf = np.array(c["cvf"], dtype=np.float64)
        miss = np.isnan(opt_cvf)
        opt_cvf[miss] = series.cvf[si[miss]]
        opt_svf = np.array(c["svf"], dtype=np.float64)
        miss = np.isnan(opt_svf)
        opt_svf[miss] = series.svf[si[miss]]
        arrays = {**arrays, "period": _ro(series.period[si]), "cvf": _ro(opt_cvf)}
        contracts = OptionContracts(
            **arrays,
            scan_rates=ScanRates(**{name: _ro(getattr(s_scan, name)[si]) for _, name in _SCAN_FIELDS}),
            series_index=_ro(si),
            is_call=_ro(np.array(c["is_call"], dtype=bool)),
            strike=_ro(np.array(c["strike"], dtype=np.float64)),
            svf=_ro(opt_svf),
            settlement_date=_ro(series.settlement_date[si]),
            time_to_expiry=_ro(series.time_to_expiry[si]),
            underlying_pf_id=_ro(series.underlying_pf_id[si]),
            underlying_contract_id=_ro(series.underlying_contract_id[si]),
        )
        return OptionPortfolio(
            **head,
            exercise=self.text(ch, "exercise"),
            strike_dl=self.int_(ch, "strikeDl"),
            strike_fmt=self.text(ch, "strikeFmt"),
            cab=self.num(ch, "cab", default=0.0),
            price_model=self.text(ch, "priceModel"),
            series=series,
            contracts=contracts,
        )

    def on_exchange_end(self, e: Element) -> None:
        ch = _first_children(e)
        code = self.text(ch, "exch", required=True)
        assert code is not None

        def fix(pfs: list[Any]) -> tuple[Any, ...]:
            return tuple(p if p.exchange == code else replace(p, exchange=code) for p in pfs)

        self.exchanges.append(
            Exchange(
                code=code,
                name=self.name(ch, "name"),
                physical_portfolios=fix(self.ex_pfs["phyPf"]),
                futures_portfolios=fix(self.ex_pfs["futPf"]),
                option_portfolios=fix(self.ex_pfs["opt"]),
            )
        )

    # ---- combined commodities and spreads ------------------------------------------------------

    def d_spread(self, e: Element, rel: str) -> DeltaSpread:
        ch = _first_children(e)
        meth = self.text(ch, "chargeMeth", rel, required=True) or ""
        rates = self.rates(e, rel)
        legs = []
        unparsed = 0
        n_leg = 0
        for c in e:
            if c.tag == "tLeg":
                n_leg += 1
                lrel = self._join(rel, f"tLeg[{n_leg}]")
                lch = _first_children(c)
                side = (self.text(lch, "rs", lrel, required=True) or "").upper()
                if side not in ("A", "B"):
                    raise self.error(f"<rs> must be A or B, got {side[:10]!r}", self._join(lrel, "rs"))
                ratio = self.num(lch, "i", lrel, required=True)
                if ratio <= 0:
                    raise self.error(
                        f"<i> (delta ratio) must be positive, got {ratio}", self._join(lrel, "i")
                    )
                legs.append(
                    SpreadLeg(
                        cc=self.text(lch, "cc", lrel, required=True) or "",
                        tier=self.req_int(lch, "tn", lrel),
                        side=side,
                        ratio=ratio,
                        rates=self.rates(c, lrel),
                    )
                )
            elif c.tag in ("pLeg", "rpLeg", "dSpread"):
                unparsed += 1
        if meth == "W":
            for i, r in enumerate(rates, 1):
                if not 0.0 <= r.value <= 1.0:
                    raise self.error(
                        f"credit rate {r.value} of a W (weighted futures price risk) spread is not "
                        "a fraction in [0, 1]; a percent is not accepted",
                        self._join(rel, f"rate[{i}].val"),
                    )
        return DeltaSpread(
            spread=self.req_int(ch, "spread", rel),
            charge_method=meth,
            rates=rates,
            legs=tuple(legs),
            spread_type=self.text(ch, "spreadType", rel),
            unparsed_legs=unparsed,
        )

    def tiers(self, e: Element, rel: str) -> list[Tier]:
        out = []
        for i, t in enumerate((c for c in e if c.tag == "tier"), 1):
            trel = self._join(rel, f"tier[{i}]")
            tch = _first_children(t)
            out.append(
                Tier(
                    tn=self.req_int(tch, "tn", trel),
                    start_period=self.text(tch, "sPe", trel),
                    end_period=self.text(tch, "ePe", trel),
                    rates=self.rates(t, trel),
                )
            )
        return out

    def on_cc_def(self, e: Element) -> None:
        ch = _first_children(e)
        code = self.text(ch, "cc", required=True)
        assert code is not None
        tiers: dict[str, list[Tier]] = {"intraTiers": [], "interTiers": [], "somTiers": [], "scanTiers": []}
        seen: dict[str, int] = {}
        links, adj, spreads, spots, pdefs = [], [], [], [], []
        for c in e:
            tag = c.tag
            seen[tag] = seen.get(tag, 0) + 1
            rel = f"{tag}[{seen[tag]}]"
            if tag in tiers:
                tiers[tag].extend(self.tiers(c, rel))
            elif tag == "pfLink":
                lch = _first_children(c)
                links.append(
                    PfLink(
                        exchange=self.text(lch, "exch", rel, required=True) or "",
                        pf_id=self.req_int(lch, "pfId", rel),
                        pf_code=self.text(lch, "pfCode", rel),
                        pf_type=self.text(lch, "pfType", rel),
                        scale=self.num(lch, "sc", rel, required=True),
                        cmb_meth=self.text(lch, "cmbMeth", rel),
                        apply_basis_risk=self.bool_(lch, "applyBasisRisk", rel),
                        array_precision=self.int_(lch, "arrayPrecision", rel),
                        oop_delta_meth=self.text(lch, "oopDeltaMeth", rel),
                    )
                )
            elif tag == "adjRate":
                ach = _first_children(c)
                adj.append(
                    AdjRate(
                        rate_id=self.req_int(ach, "r", rel),
                        base_rate_id=self.req_int(ach, "baseR", rel),
                        value=self.num(ach, "val", rel, required=True),
                    )
                )
            elif tag == "dSpread":
                spreads.append(self.d_spread(c, rel))
            elif tag == "spotRate":
                sch = _first_children(c)
                spots.append(
                    SpotRate(
                        rate_id=self.req_int(sch, "r", rel),
                        period=self.text(sch, "pe", rel, required=True) or "",
                        spread_rate=self.num(sch, "sprd", rel, required=True),
                        outright_rate=self.num(sch, "outr", rel, required=True),
                    )
                )
            elif tag == "pointDef":
                pdefs.append(self.point_def(c, rel))
        if code in self.ccs:
            raise self.error(f"combined commodity {code!r} is defined twice", "cc")
        self.ccs[code] = CombinedCommodity(
            code=code,
            name=self.name(ch, "name"),
            currency=self.text(ch, "currency", required=True) or "",
            risk_exponent=self.int_(ch, "riskExponent"),
            cap_anov=self.bool_(ch, "capAnov"),
            proc_meth=self.text(ch, "procMeth"),
            wfpr_meth=self.text(ch, "wfprMeth"),
            spot_meth=self.text(ch, "spotMeth"),
            som_meth=self.text(ch, "somMeth"),
            cmb_meth=self.text(ch, "cmbMeth"),
            pf_links=tuple(links),
            adj_rates=tuple(adj),
            intra_tiers=tuple(tiers["intraTiers"]),
            inter_tiers=tuple(tiers["interTiers"]),
            som_tiers=tuple(tiers["somTiers"]),
            scan_tiers=tuple(tiers["scanTiers"]),
            d_spreads=tuple(spreads),
            spot_rates=tuple(spots),
            point_defs=tuple(pdefs),
        )

    # ---- containers ------------------------------------------------------------------------

    def on_span_file_end(self, e: Element) -> None:
        ch = _first_children(e)
        self.file_format = self.text(ch, "fileFormat")
        created = self.text(ch, "created")
        if created is not None:
            try:
                self.created = _parse_created(created)
            except ValueError:
                raise self.error(f"<created> is not a date-time: {created[:40]!r}", "created") from None

    def on_pit_end(self, e: Element) -> None:
        ch = _first_children(e)
        t = self.text(ch, "date", required=True)
        assert t is not None
        try:
            self.business_date = _parse_yyyymmdd(t)
        except ValueError:
            raise self.error(f"<date> is not a date (YYYYMMDD): {t[:40]!r}", "date") from None
        self.is_settlement = self.bool_(ch, "isSetl")
        self.setl_qualifier = self.text(ch, "setlQualifier")

    def on_co_end(self, e: Element) -> None:
        ch = _first_children(e)
        self.clearing_org = self.text(ch, "ec", required=True)
        self.clearing_org_name = self.name(ch, "name")
        self.is_contract_scale = self.bool_(ch, "isContractScale")

    # ---- the tree walk ------------------------------------------------------------------------

    def kind_of(self, tag: str) -> str:
        """What to do with a new child ``tag`` of the element on top of the stack (no side effects)."""
        parent = self.kinds[-1] if self.kinds else ""
        if parent == "":
            return "spanFile"  # :meth:`push` refuses another root
        if parent == "spanFile":
            if tag == "definitions" or tag == "pointInTime":
                return tag
        elif parent == "definitions":
            if tag == "currencyDef":
                return "record"
        elif parent == "pointInTime":
            if tag == "clearingOrg":
                return "clearingOrg"
        elif parent == "clearingOrg":
            if tag == "exchange":
                return "exchange"
            if tag in ("ccDef", "curConv", "pbRateDef", "pointDef"):
                return "record"
            if tag == "interSpreads":
                return "interSpreads"
        elif parent == "exchange":
            if tag in _PF_TYPES:
                return "pf"
            if tag in _OTHER_PF:
                return "skip"
        elif parent == "pf":
            if (tag == "phy" and self.pf_tag == "phyPf") or (tag == "fut" and self.pf_tag == "futPf"):
                return "record"
            if tag == "series" and self.pf_tag in _OPTION_PF:
                return "series"
        elif parent == "series":
            if tag == "opt":
                return "record"
        elif parent == "interSpreads":
            if tag == "dSpread":
                return "record"
        return "leaf" if tag in _HEADERS.get(parent, ()) else "skip"

    def push(self, elem: Element, tag: str, kind: str) -> None:
        """Enter ``elem``: onto the open-element stack, with the side effects of its start tag.

        An error raised here names ``elem`` (its tag and index are pushed first; ``kinds[-1]``
        is still the parent's while the start is checked).
        """
        c = self.counts[-1]
        n = c.get(tag, 0) + 1
        c[tag] = n
        self.tags.append(tag)
        self.idx.append(n)
        self.counts.append({})
        self.elems.append(elem)
        if not self.kinds and tag != "spanFile":
            raise self.error(f"not a SPAN XML file: the root element is <{tag}>, expected <spanFile>")
        if kind == "pointInTime":
            if self.seen_pit:
                raise self.error("more than one <pointInTime> is not supported")
            self.seen_pit = True
        elif kind == "clearingOrg":
            if self.seen_co:
                raise self.error("more than one <clearingOrg> is not supported")
            self.seen_co = True
        elif kind == "exchange":
            self.ex_pfs = {"phyPf": [], "futPf": [], "opt": []}
        elif kind == "pf":
            self.on_pf_start(tag)
        elif kind == "skip" and tag in _OTHER_PF and self.kinds[-1] == "exchange":
            self.ignored[tag] = self.ignored.get(tag, 0) + 1
        self.kinds.append(kind)
        self.kept.append(0)

    def pop(self) -> None:
        """Leave the element on top of the stack."""
        self.tags.pop()
        self.idx.pop()
        self.counts.pop()
        self.elems.pop()
        self.kinds.pop()
        self.kept.pop()

    def on_end(self, elem: Element, kind: str) -> None:
        """Turn a complete record or container (on top of the stack) into data."""
        tag = elem.tag
        if kind == "record":
            parent = self.kinds[-2]
            if tag == "fut":
                self.on_fut(elem)
            elif tag == "opt":
                self.on_opt(elem)
            elif tag == "phy":
                self.on_phy(elem)
            elif tag == "ccDef":
                self.on_cc_def(elem)
            elif tag == "dSpread" and parent == "interSpreads":
                self.inter_spreads.append(self.d_spread(elem, ""))
            elif tag == "currencyDef":
                self.on_currency_def(elem)
            elif tag == "curConv":
                self.on_cur_conv(elem)
            elif tag == "pbRateDef":
                self.on_pb_rate_def(elem)
            elif tag == "pointDef":
                self.on_point_def(elem)
        elif kind == "series":
            self.on_series_end(elem)
        elif kind == "pf":
            # the exchange code precedes its portfolios in the schema; if it comes later, it is
            # filled in when the exchange ends
            exch_el = self.elems[-2].find("exch")
            self.on_pf_end(elem, "" if exch_el is None or exch_el.text is None else exch_el.text.strip())
        elif kind == "exchange":
            self.on_exchange_end(elem)
        elif kind == "clearingOrg":
            self.on_co_end(elem)
        elif kind == "pointInTime":
            self.on_pit_end(elem)
        elif kind == "spanFile":
            self.on_span_file_end(elem)

    def walk(self, level: int, final: bool, open_ids: frozenset[int] | None = None) -> None:
        """Turn the complete children of an open element into data and drop them from the tree.

        The C parser appends every element to its parent at its start tag, so after a block has
        been parsed the partial tree holds everything read so far. A child that has a later
        sibling is complete; the last child may still be open, so it waits for the next block
        (or ``final``, once the whole document has been parsed). The open elements are always
        the last child of their parent, which makes them the ``elems`` stack: ``elems[level]``,
        if present, is the open child of ``elems[level - 1]`` (of the holder at ``level`` 0)
        left by an earlier walk. Header leaves are kept at the front of their parent
        (``kept[level]`` of them) until the parent ends; everything else is removed once read.

        Parameters
        ----------
        level
            Stack depth of the parent (0: the holder element above the document root).
        final
            True if the parent is known to be complete.
        open_ids
            After a parse error: ``id`` of every element still open (then the last child is
            complete unless it is one of them, and an open record is pushed onto the stack so
            that the key path names it).
        """
        elems = self.elems
        parent = self.doc if level == 0 else elems[level - 1]
        first = self.kept[level]
        kids = parent[first:]
        n = len(kids)
        keep: list[Element] = []
        done = 0
        for i, child in enumerate(kids):
            complete = final or i < n - 1 or (open_ids is not None and id(child) not in open_ids)
            if len(elems) > level and elems[level] is child:  # an open container, already entered
                self.walk(level + 1, complete, open_ids)
                if not complete:
                    break
                self.on_end(child, self.kinds[-1])
                self.pop()
                done += 1
                continue
            tag = child.tag
            kind = self.kind_of(tag)
            if kind in _SUBTREE_KINDS:
                if not complete:
                    if open_ids is not None:
                        self.push(child, tag, kind)
                    break
                self.push(child, tag, kind)
                if kind == "leaf":
                    keep.append(child)
                else:
                    self.on_end(child, kind)
                self.pop()
            else:
                self.push(child, tag, kind)
                self.walk(level + 1, complete, open_ids)
                if not complete:
                    break
                self.on_end(child, kind)
                self.pop()
            done += 1
        if done:
            # drop what has been read (frees it), keep the header leaves at the front
            parent[first : first + done] = keep
            self.kept[level] = first + len(keep)

    def run(self) -> SpanFile:
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"cannot open file: {exc.strerror or exc}", file=self.file) from None
        with fh:
            self._parse(fh)
        return self.result()

    def _parse(self, fh: Any) -> None:
        # The prolog guard: defusedxml's parser, fed every block before the C parser gets it,
        # until it reaches the root element's start tag (see the module docstring).
        guard: Any = _DET.XMLParser(
            target=_PrologGuardTarget(), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        builder = TreeBuilder()
        # a holder above the document root: a handle on the partial tree while it is built
        self.doc = builder.start(_HOLDER, {})
        parser = XMLParser(target=builder)
        try:
            while True:
                block = fh.read(_BLOCK_SIZE)
                if guard is not None:
                    try:
                        if block:
                            guard.feed(block)
                        else:
                            guard.close()  # raises: the document ended before its root element
                    except _RootElementReached:
                        guard = None
                    except DefusedXmlException as exc:  # a ValueError: caught before those below
                        raise InputError(
                            f"forbidden XML construct ({type(exc).__name__}): SPAN files must not "
                            "contain a document type declaration or entities; nothing was expanded",
                            file=self.file,
                            key_path=self.key_path() or "prolog",
                        ) from None
                    except (ValueError, LookupError) as exc:
                        raise self._decode_error(exc) from None
                if not block:
                    break
                try:
                    parser.feed(block)
                except (ValueError, LookupError) as exc:  # ParseError is not a ValueError
                    raise self._decode_error(exc) from None
                self.walk(0, False)
            try:
                parser.close()
            except (ValueError, LookupError) as exc:
                raise self._decode_error(exc) from None
        except ParseError as exc:
            self._parse_error(exc, builder)
        self.walk(0, True)

    def _decode_error(self, exc: Exception) -> InputError:
        """The error for bytes the parser cannot decode: an unknown or multi-byte declared
        encoding (``LookupError``, ``ValueError``) or undecodable text (``UnicodeError``)."""
        return InputError(f"cannot decode the XML: {exc}", file=self.file, key_path=self.key_path())

    def _parse_error(self, exc: ParseError, builder: TreeBuilder) -> None:
        """Raise the :class:`InputError` for a parse error, with the key path of where it stopped.

        The parser is dead; its tree builder still holds the elements left open, innermost
        first: closing them one by one names them. The elements read before the error are then
        turned into data as usual (a bad value there is reported first, as it comes first in
        the file), which leaves the stack at the open record or container.
        """
        open_ids = set()
        # the C builder closes its current element whatever the tag; the holder is the last
        while (el := builder.end(_HOLDER)) is not self.doc:
            open_ids.add(id(el))
        self.walk(0, False, frozenset(open_ids))
        line, col = getattr(exc, "position", (0, 0))
        msg = str(exc)
        if "no element found" in msg or ("unclosed token" in msg and self.kinds):
            problem = f"the XML ends early (truncated file?): {msg}"
        else:
            problem = f"malformed XML: {msg}"
        where = self.key_path()
        raise InputError(problem, file=self.file, key_path=where or f"line {line}, column {col}") from None

    def result(self) -> SpanFile:
        if not self.seen_pit or self.business_date is None:
            raise InputError("missing required element <pointInTime>", file=self.file, key_path="spanFile")
        if not self.seen_co or self.clearing_org is None:
            raise InputError(
                "missing required element <clearingOrg>", file=self.file, key_path="spanFile.pointInTime"
            )
        return SpanFile(
            path=self.path,
            file_format=self.file_format,
            created=self.created,
            business_date=self.business_date,
            is_settlement=self.is_settlement,
            settlement_qualifier=self.setl_qualifier,
            clearing_org=self.clearing_org,
            clearing_org_name=self.clearing_org_name,
            is_contract_scale=self.is_contract_scale,
            currencies=self.currencies,
            conversion_rates=tuple(self.conversion_rates),
            pb_rate_defs=tuple(self.pb_rate_defs),
            point_defs=tuple(self.point_defs),
            exchanges=tuple(self.exchanges),
            combined_commodities=self.ccs,
            inter_spreads=tuple(self.inter_spreads),
            ignored_portfolios=self.ignored,
        )


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def read_span_xml(path: str | PathLike[str], *, rate_id: int = 1) -> SpanFile:
    """Read a SPAN XML risk-parameter file (format 4.00) streaming.

    Parameters
    ----------
    path
        The ``.spn`` / ``.xml`` file (uncompressed).
    rate_id
        Rate class (``r``) whose risk arrays and scan rates to take when a contract has several
        (Takasbank writes one, ``r = 1``).

    Returns
    -------
    SpanFile
        Currencies, point definitions, exchanges with their portfolios and contract arrays,
        combined commodities and inter-commodity spreads. Risk arrays are losses of one long
        contract (positive = loss) in the portfolio currency per contract.

    Raises
    ------
    InputError
        For any problem with the file: cannot be opened, malformed or truncated XML, a DTD or
        entity (refused before anything is expanded), a missing required element, a value that
        is not a number, a risk array with the wrong number of points. The error names the file
        and the XML key path.

    Notes
    -----
    The cyclic garbage collector is paused while the file is read and then restored to its
    previous state (see :func:`_cyclic_gc_paused`): the reader makes no reference cycles, and
    the collections that its many short-lived elements would trigger cost more than the parse.
    """
    reader = _Reader(Path(path), rate_id)
    with _cyclic_gc_paused():
        return reader.run()


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (restoring its previous state).

    The reader creates tens of thousands of short-lived elements, each of which counts towards
    the collector's thresholds, so it would traverse the caller's whole heap again and again
    (a full read of the Takasbank file triggers ~120 young and one full collection, which cost
    more than the parse itself when numpy and the rest of the package are loaded). The reader
    makes no reference cycles -- elements, lists, arrays and frozen dataclasses are freed by
    reference counting as soon as they are dropped -- so pausing the collector changes no
    memory bound; it only skips those traversals.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def summarize(span_file: SpanFile) -> dict[str, Any]:
    """Summarize a :class:`SpanFile` as plain JSON-serialisable data (for ``marginsim span-file``).

    Parameters
    ----------
    span_file
        The file read by :func:`read_span_xml`.

    Returns
    -------
    dict
        ``file``, ``file_format``, ``created`` (ISO), ``business_date`` (ISO), ``clearing_org``,
        ``exchanges`` (codes), ``currencies`` (codes used by portfolios and combined
        commodities), ``n_currency_definitions``, ``conversion_rates`` (``"USD/TRY"`` -> factor),
        ``n_combined_commodities``, ``n_portfolios`` and ``n_contracts`` by kind (``physical``,
        ``futures``, ``options``), ``n_option_series``, ``n_intra_spreads``,
        ``n_inter_spreads``, ``n_scan_points`` and ``ignored_portfolios``.
    """
    phy, fut, opt = span_file.physical_portfolios, span_file.futures_portfolios, span_file.option_portfolios
    used = {p.currency for p in (*phy, *fut, *opt)} | {
        c.currency for c in span_file.combined_commodities.values()
    }
    pd = span_file.point_def()
    return {
        "file": str(span_file.path),
        "file_format": span_file.file_format,
        "created": None if span_file.created is None else span_file.created.isoformat(),
        "business_date": span_file.business_date.isoformat(),
        "clearing_org": span_file.clearing_org,
        "exchanges": [e.code for e in span_file.exchanges],
        "currencies": sorted(used),
        "n_currency_definitions": len(span_file.currencies),
        "conversion_rates": {
            f"{r.from_currency}/{r.to_currency}": r.factor for r in span_file.conversion_rates
        },
        "n_combined_commodities": len(span_file.combined_commodities),
        "n_portfolios": {"physical": len(phy), "futures": len(fut), "options": len(opt)},
        "n_contracts": {
            "physical": sum(len(p.contracts) for p in phy),
            "futures": sum(len(p.contracts) for p in fut),
            "options": sum(len(p.contracts) for p in opt),
        },
        "n_option_series": sum(len(p.series) for p in opt),
        "n_intra_spreads": sum(len(c.d_spreads) for c in span_file.combined_commodities.values()),
        "n_inter_spreads": len(span_file.inter_spreads),
        "n_scan_points": DEFAULT_N_POINTS if pd is None else pd.n_points,
        "ignored_portfolios": dict(span_file.ignored_portfolios),
    }
