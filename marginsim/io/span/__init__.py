"""Clearing-house SPAN XML risk-parameter files (CME SPAN XML format 4.00, ``.spn``).

Reading a file (:func:`read_span_xml`: streaming and hardened) gives a :class:`SpanFile` of frozen
records; :func:`inputs_from_span_file` turns it into the data model
(:class:`~marginsim.model.Inputs`) of a scenario whose ``span.source`` names it.

Modules
-------
records
    The records (dataclasses) and their units.
reader
    The hardened, streaming parse (:func:`read_span_xml`) and the schema of the walk.
walk
    The walk over the partial tree (memory bounded by the largest record).
fields
    Values of child elements, with errors that name the XML key path.
definitions, portfolios, commodities
    The records of the header and definitions, of the portfolios (contract columns), and of the
    combined commodities and spreads.
summary
    :func:`summarize` (``marginsim span-file FILE``).
to_model
    A file as :class:`~marginsim.model.Inputs`; contract ids (:func:`contract_id`,
    :func:`canonical_id`); :func:`load_span_file` (cached).
"""

from .reader import read_span_xml
from .records import (
    DEFAULT_N_POINTS,
    AdjRate,
    AnyPortfolio,
    CombinedCommodity,
    ContractArrays,
    ConversionRate,
    Currency,
    DeltaPoints,
    DeltaSpread,
    Exchange,
    FuturesContracts,
    FuturesPortfolio,
    OptionContracts,
    OptionPortfolio,
    OptionSeries,
    PbRateDef,
    PfLink,
    PhysicalContracts,
    PhysicalPortfolio,
    PointDef,
    Portfolio,
    Rate,
    ScanPoints,
    ScanRates,
    SpanFile,
    SpotRate,
    SpreadLeg,
    Tier,
    UnderlyingPf,
)
from .summary import summarize
from .to_model import (
    canonical_id,
    clear_span_file_cache,
    contract_id,
    file_contract_ids,
    file_contract_table,
    inputs_from_span_file,
    load_span_file,
    span_params_from_file,
)

__all__ = [
    "DEFAULT_N_POINTS",
    "AdjRate",
    "AnyPortfolio",
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
    "canonical_id",
    "clear_span_file_cache",
    "contract_id",
    "file_contract_ids",
    "file_contract_table",
    "inputs_from_span_file",
    "load_span_file",
    "read_span_xml",
    "span_params_from_file",
    "summarize",
]
