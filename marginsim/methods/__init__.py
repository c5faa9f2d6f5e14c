"""The built-in margin methods, registered in :data:`marginsim.registry.REGISTRY` on import.

The CLI, the notebooks and the JSON result all go through the registry; ``REGISTRY``,
``MethodSpec`` and ``applicable_methods`` are re-exported here for existing code.
"""

from __future__ import annotations

import xarray as xr

from ..model import Inputs
from ..params.cfd import CfdParams
from ..params.span import SpanParams
from ..registry import REGISTRY, MethodSpec, applicable_methods, register_method
from ..scenario import ScenarioFile
from . import account
from . import span as _span
from ._json import span_table, span_to_dict
from .cfd import cfd_margin, cfd_table, cfd_to_dict
from .cfd import finalize_chunked as _cfd_finalize
from .portfolio_margin import PortfolioMarginParams, pm_applies, pm_table, pm_to_dict, portfolio_margin

__all__ = ["MethodSpec", "REGISTRY", "applicable_methods"]


def _span_applies(sc: ScenarioFile) -> bool:
    """SPAN runs with a `span` section, or for books holding futures or options on futures."""
    if sc.span is not None:
        return True
    held = {p.contract for p in sc.positions}
    return any(
        sc.contracts[c].type == "future" or sc.contracts[c].option_on == "future"
        for c in held
        if c in sc.contracts
    )


def _span_check(sc: ScenarioFile) -> list[tuple[tuple[str | int, ...], str]]:
    """The ``span`` section against the rest of the file: FX of CC currencies, risk-array lengths."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for cc, params in sc.span.combined_commodities.items():
        if params.currency is not None and params.currency != sc.currency and params.currency not in sc.fx:
            problems.append((("span", "combined_commodities", cc, "currency"), f"no FX rate for {params.currency}"))
    n_points = 16 if sc.span.scenario_set is None else len(sc.span.scenario_set)
    for name, c in sc.contracts.items():
        if c.risk_array is not None and len(c.risk_array) != n_points:
            problems.append(
                (("contracts", name, "risk_array"), f"has {len(c.risk_array)} values; the scenario set has {n_points}")
            )
    return problems


def _run_span(inputs: Inputs, engine: str = "auto", scan_loss: bool = True) -> xr.Dataset:
    return _span.span_margin(inputs, engine=engine, scan_loss=scan_loss)


def _cfd_applies(sc: ScenarioFile) -> bool:
    if sc.cfd is not None:
        return True
    held = {p.contract for p in sc.positions}
    return any(sc.contracts[c].type == "cfd" for c in held if c in sc.contracts)


register_method(
    MethodSpec(
        "span",
        _run_span,
        SpanParams,
        span_to_dict,
        span_table,
        _span_applies,
        {"scan_loss": False},
        check=_span_check,
    )
)
register_method(
    MethodSpec(
        "cfd",
        cfd_margin,
        CfdParams,
        cfd_to_dict,
        cfd_table,
        _cfd_applies,
        unsplit_dims=frozenset({"step"}),
        finalize_chunked=_cfd_finalize,
    )
)
register_method(
    MethodSpec("portfolio_margin", portfolio_margin, PortfolioMarginParams, pm_to_dict, pm_table, pm_applies)
)
register_method(account.SPEC)
