"""The method registry: one place that maps a method name to its function, parameters and outputs.

The CLI, the notebooks and the JSON result all go through :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import xarray as xr
from pydantic import BaseModel

from ..cfd_params import CfdParams
from ..model import Inputs
from ..scenario import ScenarioFile, SpanParams
from . import span as _span
from ._json import span_table, span_to_dict
from .account import AccountParams, account_applies, account_margin, account_table, account_to_dict
from .cfd import cfd_margin, cfd_table, cfd_to_dict
from .portfolio_margin import PortfolioMarginParams, pm_applies, pm_table, pm_to_dict, portfolio_margin

__all__ = ["MethodSpec", "REGISTRY", "applicable_methods"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered margin method.

    Attributes
    ----------
    name
        The method's name (the key of its result and of its scenario-file section).
    run
        ``run(inputs, engine=...) -> xr.Dataset``.
    params_model
        The pydantic model of its scenario-file section.
    to_dict
        ``to_dict(result, grid_dims) -> {account: json object}`` (the JSON contract).
    table
        ``table(result, account) -> str``: a readable breakdown.
    applies
        ``applies(scenario) -> bool``: whether the book needs this method.
    lean
        Keyword arguments of ``run`` that leave out results the JSON contract and the tables do
        not carry (``margin(..., detail=False)``); empty when there are none.
    """

    name: str
    run: Callable[..., xr.Dataset]
    params_model: type[BaseModel]
    to_dict: Callable[[xr.Dataset, list[str]], dict[str, Any]]
    table: Callable[[xr.Dataset, str], str]
    applies: Callable[[ScenarioFile], bool]
    lean: Mapping[str, Any] = field(default_factory=dict)


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


def _run_span(inputs: Inputs, engine: str = "auto", scan_loss: bool = True) -> xr.Dataset:
    return _span.span_margin(inputs, engine=engine, scan_loss=scan_loss)


def _cfd_applies(sc: ScenarioFile) -> bool:
    if sc.cfd is not None:
        return True
    held = {p.contract for p in sc.positions}
    return any(sc.contracts[c].type == "cfd" for c in held if c in sc.contracts)


REGISTRY: dict[str, MethodSpec] = {
    "span": MethodSpec(
        "span", _run_span, SpanParams, span_to_dict, span_table, _span_applies, {"scan_loss": False}
    ),
    "cfd": MethodSpec("cfd", cfd_margin, CfdParams, cfd_to_dict, cfd_table, _cfd_applies),
    "portfolio_margin": MethodSpec(
        "portfolio_margin", portfolio_margin, PortfolioMarginParams, pm_to_dict, pm_table, pm_applies
    ),
    "account": MethodSpec(
        "account", account_margin, AccountParams, account_to_dict, account_table, account_applies
    ),
}


def applicable_methods(sc: ScenarioFile) -> list[str]:
    """The methods to run: the file's ``methods``, else every registered method the book needs."""
    if sc.methods is not None:
        return list(sc.methods)
    return [name for name, spec in REGISTRY.items() if spec.applies(sc)]
