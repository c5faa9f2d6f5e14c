"""The Python API: load a scenario, run methods, get a result."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from . import limits, scale
from . import methods as _builtin_methods  # noqa: F401 - registers the built-in methods
from .attribution import attribute, attributed_run
from .io import span as span_files  # (lazy: the reader is imported when a scenario names a SPAN file)
from .io.book import read_book
from .io.history import scenario_history
from .kernels import numba_available
from .model import Inputs, inputs_from_scenario
from .registry import applicable_methods, method_spec
from .result import MarginResult
from .scenario import ScenarioFile, load_scenario, parse_scenario

__all__ = ["margin", "load", "build_inputs"]

log = logging.getLogger(__name__)


def build_inputs(sc: ScenarioFile, *, memory_limit: int | str | limits.Limit | None = None) -> Inputs:
    """The data model of a validated scenario file.

    Parameters
    ----------
    sc
        A validated scenario file (:func:`marginsim.scenario.load_scenario`).
    memory_limit
        Memory limit (:func:`marginsim.limits.memory_limit`: bytes, ``"8GB"``, ``"75%"``,
        ``"off"``; default: ``set_options``, ``MARGINSIM_MEMORY_LIMIT``, half the physical memory):
        a market (grid prices, ``grid.monte_carlo`` paths) that would not fit is refused before it
        is built.

    Returns
    -------
    Inputs
        Book, contracts, market and grid Datasets: from the clearing-house file of ``span.source``
        (:func:`marginsim.io.span.inputs_from_span_file`) when the scenario names one, else from
        the scenario's own contracts (:func:`marginsim.model.inputs_from_scenario`); with the
        scenario's ``history:`` read into :attr:`Inputs.history <marginsim.model.Inputs.history>`.

    Raises
    ------
    InputError
        A bad scenario, or a market that would not fit in ``memory_limit``.
    """
    limits.check_market(sc, limits.memory_limit(memory_limit))
    if sc.span is not None and sc.span.source is not None:
        inputs = span_files.inputs_from_span_file(sc)
    else:
        inputs = inputs_from_scenario(sc)
    if sc.history is not None:  # the market's underlyings that have a column of the history file
        inputs.history = scenario_history(sc, inputs.market["underlying"].values.tolist())
    return inputs


def load(
    scenario: str | Path | dict | ScenarioFile, *, memory_limit: int | str | limits.Limit | None = None
) -> Inputs:
    """The data model of a scenario file (path), a mapping, or a validated :class:`ScenarioFile`
    (``memory_limit``: see :func:`build_inputs`)."""
    if isinstance(scenario, ScenarioFile):
        sc = scenario
    elif isinstance(scenario, dict):
        sc = parse_scenario(scenario)
    else:
        sc = load_scenario(scenario)
    return build_inputs(sc, memory_limit=memory_limit)


def margin(
    scenario: str | Path | dict | ScenarioFile | Inputs,
    methods: list[str] | str | None = None,
    *,
    engine: str = "auto",
    chunks: int | None = None,
    book: str | Path | None = None,
    compute: bool = True,
    detail: bool = True,
    memory_limit: int | str | limits.Limit | None = None,
    attribution: bool = False,
) -> MarginResult:
    """Run margin methods on a scenario.

    Parameters
    ----------
    scenario
        A scenario file path, a mapping in the scenario format, a :class:`ScenarioFile`, or
        :class:`Inputs` already built.
    methods
        Method names (see :data:`marginsim.registry.REGISTRY`); default: the file's ``methods``,
        else every method the book needs.
    engine
        Pricing engine: ``"numba"``, ``"numpy"`` or ``"auto"``.
    chunks
        Accounts per chunk [count]: margin the book chunk by chunk of accounts on dask
        (:mod:`marginsim.scale`); the numbers are the same as in one piece. Default: in one piece,
        unless the caller has connected a ``distributed.Client``, which then gets about two chunks
        per worker thread. Every method whose spec says ``chunked`` runs chunk by chunk.
    book
        A stored book (zarr or netCDF, :mod:`marginsim.io.book`) that replaces the scenario's
        positions; it is read chunk by chunk (``chunks`` accounts each, default 1000).
    compute
        With chunks: compute the results (one pass, on dask's current scheduler: the connected
        ``distributed.Client`` if any, else threads). ``False``: return lazy results.
    detail
        ``False`` leaves out the results that the JSON contract and the tables do not carry and
        that grow with accounts x groups x scenarios (SPAN's ``scan_loss``): for large books when
        only the requirements are wanted. The CLI uses ``False``.
    memory_limit
        The most memory the run may need [bytes, or ``"8GB"``, ``"75%"``, ``"off"``]; default:
        :func:`marginsim.set_options`, else ``MARGINSIM_MEMORY_LIMIT``, else half the physical
        memory. The run's arrays are estimated first (:mod:`marginsim.limits`; a chunked run counts
        the chunks in flight and the whole result): a run that would not fit is refused with an
        :class:`InputError` naming the estimate and what to lower, before anything is allocated.
    attribution
        Add, per method, account and position, the ``contribution`` (the method's allocation of
        the maintenance: the parts sum to it) and the ``marginal`` (the maintenance minus that of
        the account without the position) [reporting currency] (:mod:`marginsim.attribution`).
        With ``chunks`` or ``book``, chunk by chunk of accounts (each chunk's positions are
        attributed with the chunk).

    Returns
    -------
    MarginResult
        One xarray Dataset per method; ``.to_dict()`` gives the JSON contract.
    """
    limit = limits.memory_limit(memory_limit)
    t0 = time.perf_counter()
    inputs = scenario if isinstance(scenario, Inputs) else load(scenario, memory_limit=limit)
    if log.isEnabledFor(logging.INFO):
        log.info(
            "scenario %r loaded in %.2f s: positions %d, accounts %d, contracts %d, grid %s",
            inputs.scenario.name,
            time.perf_counter() - t0,
            inputs.book.sizes["position"],
            inputs.book.sizes["account"],
            inputs.contracts.sizes["contract"],
            {d: inputs.market.sizes.get(d, inputs.grid.sizes.get(d)) for d in inputs.grid_dims} or "none",
        )
    held_names = None
    if book is not None:
        inputs = read_book(book, inputs, accounts=chunks or 1000)
        held_names = inputs.contracts["contract"].values[inputs.held_contracts()]
        log.info(
            "stored book %s: accounts %d, %d per chunk", book, inputs.book.sizes["account"], chunks or 1000
        )
    elif not inputs.is_lazy:
        client = scale.current_client()
        if chunks is None and client is not None:  # the caller connected a cluster: use it
            chunks = scale.auto_accounts_per_chunk(inputs.book.sizes["account"], client)
        if chunks is not None:
            inputs = scale.chunk(inputs, accounts=chunks)
            log.info("chunks of %d accounts on dask%s", chunks, " (connected cluster)" if client else "")
    if isinstance(methods, str):
        methods = [methods]
    if methods is not None:
        names = list(methods)
    elif held_names is not None:
        names = scale.stored_book_methods(inputs, held_names)
    else:
        names = applicable_methods(inputs.scenario)
    specs = [method_spec(n, file=inputs.scenario.file) for n in names]
    limits.check_methods(
        inputs, specs, detail=detail, limit=limit, distributed=scale.current_client() is not None
    )
    result = MarginResult(inputs)
    lazy = inputs.is_lazy
    if log.isEnabledFor(logging.INFO):  # (numba_available imports numba: only when it is logged)
        shown = f"auto ({'numba' if numba_available() else 'numpy'})" if engine == "auto" else engine
        log.info(
            "methods %s, engine %s%s", ", ".join(names) or "none", shown, ", lazy (chunked)" if lazy else ""
        )
    for n, spec in zip(names, specs):
        run: Callable[..., Any] = partial(spec.run, engine=engine, **({} if detail else spec.lean))
        if attribution and lazy:  # attribution is per account: each chunk computes its own
            run = attributed_run(run, n, engine=engine)
        t1 = time.perf_counter()
        if lazy:  # chunk by chunk: the method runs on each chunk in memory
            result.methods[n] = scale.lazy_method(inputs, spec, run)
            log.info("%s: graph built in %.2f s", n, time.perf_counter() - t1)
        else:
            result.methods[n] = run(inputs)
            log.info("%s: margined in %.2f s", n, time.perf_counter() - t1)
    if lazy and compute:
        t1 = time.perf_counter()
        done = scale.compute(*result.methods.values())
        result.methods = dict(zip(result.methods, done))
        log.info("computed on dask in %.2f s", time.perf_counter() - t1)
    if attribution and not lazy:
        attribute(result, engine=engine)
    return result
