"""The SPAN method: an xarray wrapper over the numpy kernels of :mod:`marginsim.kernels.span`.

Steps (``spec/span.md``): risk arrays (model or given), scanning risk per combined commodity and
account, super inter-commodity spread credit (before the intra spreads), intra-commodity spread
charge, spot-month charge, inter-commodity spread credit (methods W and F; WFPR normal, scan range
or capped at it), short option minimum, net option value, account requirement (maintenance and
initial), plus the optional exposure margin (a fraction of notional, NSE). Accounts,
combined commodities and grid dims are array axes: nothing loops over positions, accounts,
scenarios or grid points. Loops run over parameter definitions only (combined commodities and
their spread definitions).

Modules: :mod:`.arrays` (risk arrays and their revaluation inputs), :mod:`.plan` (the plan of a
book: every definition, no positions), :mod:`.book` (the book through the kernels),
:mod:`.dataset` (the result), :mod:`.outputs` (its variables), :mod:`.report` (JSON and table).
"""

from __future__ import annotations

import math

import pandas as pd
import xarray as xr

from ...kernels import Engine, resolve_engine
from ...limits import span_memory
from ...model import Inputs
from ...outputs import describe
from ...params.span import SpanParams
from ...registry import MethodSpec
from ...scenario import ScenarioFile
from .arrays import _held_contracts, in_scope, risk_arrays
from .attribution import span_attribution
from .book import _book_in_scope, _margin_book
from .dataset import _span_dataset
from .outputs import OUTPUTS
from .plan import _file_plan, _keep_run_plan, _plan
from .report import span_table, span_to_dict
from .what_if import span_what_if

__all__ = [
    "span_margin",
    "span_attribution",
    "risk_arrays",
    "in_scope",
    "span_applies",
    "span_check",
    "OUTPUTS",
    "SPEC",
]


def span_margin(
    inputs: Inputs,
    params: SpanParams | None = None,
    *,
    engine: Engine = "auto",
    scan_loss: bool = True,
) -> xr.Dataset:
    """SPAN margin of every account of the book.

    Parameters
    ----------
    inputs
        The data model (:func:`marginsim.build_inputs`).
    params
        SPAN parameters; default: the scenario file's ``span`` section.
    engine
        ``"numba"``, ``"numpy"`` or ``"auto"``: pricing engine for computed risk arrays, and the
        engine of the aggregation over (account, combined commodity) pairs
        (:mod:`marginsim.kernels.span_pairs`; both give the same results).
    scan_loss
        Include ``scan_loss``, the loss of every (account, combined commodity) per scenario. It is
        the one result of size accounts x combined commodities x scenarios: leave it out for large
        books of many small portfolios when only the requirements are wanted.

    Returns
    -------
    xarray.Dataset
        Per account: ``maintenance``, ``initial``, ``net_option_value``, ``span_risk``; per account
        and combined commodity (``group``): ``scan_risk``, ``active_scenario`` (1-based),
        ``intra_spread_charge``, ``spot_charge``, ``inter_spread_credit``, ``short_option_minimum``,
        ``risk``, ``held``, ``scan_loss`` (per scenario; with ``scan_loss=True``),
        ``super_spread_credit`` (only with ``span.super_spreads``); per account ``exposure_margin``
        (only with ``span.exposure_margin``: included in ``maintenance`` and ``initial``); per contract:
        ``risk_array``, ``composite_delta``. Amounts per account and group are in the scenario's
        reporting currency; risk arrays in each contract's own currency. Every variable's units
        and description are attrs (:data:`OUTPUTS`). Every grid dim of the inputs is a dim of the
        result. Lazy (dask-backed) inputs are refused: margin them with :func:`marginsim.margin`,
        which runs the method chunk by chunk.
    """
    inputs.require_in_memory("span_margin")
    params = params or inputs.span_params or inputs.scenario.span or SpanParams()
    # one engine for the whole method; a small book on a small file runs on numpy (same numbers,
    # no numba to load): the work is about (contracts + positions) x 16 scenarios x grid points
    grid_points = math.prod(inputs.market.sizes.get(d, inputs.grid.sizes.get(d, 1)) for d in inputs.grid_dims)
    work = (inputs.contracts.sizes["contract"] + inputs.book.sizes["position"]) * 16 * grid_points
    eng = resolve_engine(engine, size=work)
    # every definition first (contracts, combined commodities, spreads: no positions), then the
    # book in one pass of compiled kernels, then the result
    cached = _file_plan(inputs, params, eng)
    if cached is not None:  # the whole file's plan; the result keeps the book's contracts and CCs
        scope, plan = cached
        out_k = plan.local[_held_contracts(inputs, scope)]  # the result's contracts (plan indices)
        out_cc = pd.unique(plan.cc_of_k[out_k])  # the result's CCs, in order of first appearance
    else:
        scope = in_scope(inputs, params)
        plan = _plan(inputs, params, _held_contracts(inputs, scope), eng)
        out_k, out_cc = None, None  # every contract and CC of the plan, in its order
    book = _book_in_scope(inputs.book, scope)
    margined = _margin_book(plan, book, eng, scan_loss)
    if cached is None:  # the attribution of this result takes the plan (not made again)
        _keep_run_plan(inputs, params, eng, scope, plan, margined.maintenance, margined.netted)
    return describe(_span_dataset(inputs, plan, book, margined, out_k, out_cc), OUTPUTS)


def span_applies(sc: ScenarioFile) -> bool:
    """SPAN runs with a `span` section, or for books holding futures or options on futures."""
    return sc.span is not None or sc.holds(lambda c: c.type == "future" or c.option_on == "future")


def span_check(sc: ScenarioFile) -> list[tuple[tuple[str | int, ...], str]]:
    """The ``span`` section against the rest of the file: FX of CC currencies, risk-array lengths."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for cc, params in sc.span.combined_commodities.items():
        if params.currency is not None and params.currency != sc.currency and params.currency not in sc.fx:
            problems.append(
                (("span", "combined_commodities", cc, "currency"), f"no FX rate for {params.currency}")
            )
    n_points = 16 if sc.span.scenario_set is None else len(sc.span.scenario_set)
    for name, c in sc.contracts.items():
        if c.risk_array is not None and len(c.risk_array) != n_points:
            problems.append(
                (
                    ("contracts", name, "risk_array"),
                    f"has {len(c.risk_array)} values; the scenario set has {n_points}",
                )
            )
    return problems


def _run(inputs: Inputs, engine: Engine = "auto", scan_loss: bool = True) -> xr.Dataset:
    """The registry's entry: :func:`span_margin` with the scenario's parameters."""
    return span_margin(inputs, engine=engine, scan_loss=scan_loss)


#: The SPAN method's declaration (registered by :mod:`marginsim.methods`).
SPEC = MethodSpec(
    "span",
    _run,
    SpanParams,
    span_to_dict,
    span_table,
    span_applies,
    {"scan_loss": False},
    check=span_check,
    outputs=OUTPUTS,
    memory=span_memory,
    what_if=span_what_if,
    attribution=span_attribution,
)
