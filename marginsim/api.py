"""The Python API: load a scenario, run methods, get a result."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .model import Inputs, build_inputs
from .result import MarginResult
from .scenario import ScenarioFile, load_scenario, parse_scenario

__all__ = ["margin", "load"]


def load(scenario: str | Path | dict | ScenarioFile) -> Inputs:
    """The data model of a scenario file (path), a mapping, or a validated :class:`ScenarioFile`."""
    if isinstance(scenario, ScenarioFile):
        sc = scenario
    elif isinstance(scenario, dict):
        sc = parse_scenario(scenario)
    else:
        sc = load_scenario(scenario)
    return build_inputs(sc)


def margin(
    scenario: str | Path | dict | ScenarioFile | Inputs,
    methods: list[str] | str | None = None,
    *,
    engine: str = "auto",
) -> MarginResult:
    """Run margin methods on a scenario.

    Parameters
    ----------
    scenario
        A scenario file path, a mapping in the scenario format, a :class:`ScenarioFile`, or
        :class:`Inputs` already built.
    methods
        Method names (see :data:`marginsim.methods.REGISTRY`); default: the file's ``methods``,
        else every method the book needs.
    engine
        Pricing engine: ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    MarginResult
        One xarray Dataset per method; ``.to_dict()`` gives the JSON contract.
    """
    from .methods import REGISTRY, applicable_methods

    inputs = scenario if isinstance(scenario, Inputs) else load(scenario)
    if isinstance(methods, str):
        methods = [methods]
    names = applicable_methods(inputs.scenario) if methods is None else list(methods)
    for n in names:
        if n not in REGISTRY:
            available = ", ".join(REGISTRY)
            raise InputError(
                f"method {n!r} is not available (available: {available})",
                file=inputs.scenario.file,
                key_path="methods",
            )
    result = MarginResult(inputs)
    for n in names:
        result.methods[n] = REGISTRY[n].run(inputs, engine=engine)
    return result
