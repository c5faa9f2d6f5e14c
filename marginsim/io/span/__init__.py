"""Clearing-house SPAN XML risk-parameter files (CME SPAN XML format 4.00, ``.spn``).

Reading a file (:func:`read_span_xml`: streaming and hardened) gives a :class:`SpanFile` of frozen
records; :func:`inputs_from_span_file` turns it into the data model
(:class:`~marginsim.model.Inputs`) of a scenario whose ``span.source`` names it.

Modules
-------
records
    The records (dataclasses) and their units.
reader
    The hardened, streaming parse (:func:`read_span_xml`) and the schema of the walk; compressed
    and fixed-width (pa2) files are recognised from their first bytes and refused.
walk
    The walk over the partial tree (memory bounded by the largest record).
fields
    Values of child elements, with errors that name the XML key path; every number finite and at
    most :data:`MAX_ABS_VALUE` in magnitude.
checks
    The whole-file checks made at load (``pointDef``, duplicates, references to nothing).
ids
    Contract identifiers (:func:`contract_id`, :func:`canonical_id`).
definitions, portfolios, commodities
    The records of the header and definitions, of the portfolios (contract columns), and of the
    combined commodities and spreads.
summary
    :func:`summarize` (``marginsim span-file FILE``).
to_model
    A file as :class:`~marginsim.model.Inputs`; :func:`load_span_file` (cached).
"""

from typing import TYPE_CHECKING

from ...lazy import lazy_attributes

if TYPE_CHECKING:  # the names below, imported from their modules on first use (PEP 562)
    from .fields import MAX_ABS_VALUE
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
    "MAX_ABS_VALUE",
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

#: Public name -> the module that defines it: a scenario without `span.source` reads no SPAN file
#: and imports none of the reader.
_LAZY = {
    "MAX_ABS_VALUE": "marginsim.io.span.fields",
    "read_span_xml": "marginsim.io.span.reader",
    "DEFAULT_N_POINTS": "marginsim.io.span.records",
    "AdjRate": "marginsim.io.span.records",
    "AnyPortfolio": "marginsim.io.span.records",
    "CombinedCommodity": "marginsim.io.span.records",
    "ContractArrays": "marginsim.io.span.records",
    "ConversionRate": "marginsim.io.span.records",
    "Currency": "marginsim.io.span.records",
    "DeltaPoints": "marginsim.io.span.records",
    "DeltaSpread": "marginsim.io.span.records",
    "Exchange": "marginsim.io.span.records",
    "FuturesContracts": "marginsim.io.span.records",
    "FuturesPortfolio": "marginsim.io.span.records",
    "OptionContracts": "marginsim.io.span.records",
    "OptionPortfolio": "marginsim.io.span.records",
    "OptionSeries": "marginsim.io.span.records",
    "PbRateDef": "marginsim.io.span.records",
    "PfLink": "marginsim.io.span.records",
    "PhysicalContracts": "marginsim.io.span.records",
    "PhysicalPortfolio": "marginsim.io.span.records",
    "PointDef": "marginsim.io.span.records",
    "Portfolio": "marginsim.io.span.records",
    "Rate": "marginsim.io.span.records",
    "ScanPoints": "marginsim.io.span.records",
    "ScanRates": "marginsim.io.span.records",
    "SpanFile": "marginsim.io.span.records",
    "SpotRate": "marginsim.io.span.records",
    "SpreadLeg": "marginsim.io.span.records",
    "Tier": "marginsim.io.span.records",
    "UnderlyingPf": "marginsim.io.span.records",
    "summarize": "marginsim.io.span.summary",
    "canonical_id": "marginsim.io.span.to_model",
    "clear_span_file_cache": "marginsim.io.span.to_model",
    "contract_id": "marginsim.io.span.to_model",
    "file_contract_ids": "marginsim.io.span.to_model",
    "file_contract_table": "marginsim.io.span.to_model",
    "inputs_from_span_file": "marginsim.io.span.to_model",
    "load_span_file": "marginsim.io.span.to_model",
    "span_params_from_file": "marginsim.io.span.to_model",
}

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
