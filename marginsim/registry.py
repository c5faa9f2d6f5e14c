"""The method registry: the one place a margin method is declared.

A method is a :class:`MethodSpec`: its name (the key of its result and of its scenario-file
section), the function that runs it, its parameter model, its JSON and table writers, when a
book needs it, and the facts chunked runs need (which grid dims it cannot be split along, what
it recomputes over the whole book after a chunked run). The CLI, the API, the notebooks, the
JSON result and :mod:`marginsim.scale` all read :data:`REGISTRY`.

The built-in methods (SPAN, portfolio margin, CFD, the account layer) register themselves when
:mod:`marginsim.methods` is imported (``import marginsim`` does). A method defined outside the
package registers with :func:`register_method`, or through the ``marginsim.methods`` entry-point
group (an entry point names a :class:`MethodSpec`, or a function returning one), which is read
the first time the registry is looked at.

This module imports nothing of marginsim but :mod:`marginsim.errors` and the data types it names.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .errors import InputError

if TYPE_CHECKING:  # the types of the fields only: no import of the data model at run time
    import xarray as xr

    from .scenario import ScenarioFile

__all__ = [
    "MethodSpec",
    "REGISTRY",
    "register_method",
    "unregister_method",
    "applicable_methods",
    "method_spec",
    "ENTRY_POINT_GROUP",
]

#: The entry-point group through which installed packages add methods.
ENTRY_POINT_GROUP = "marginsim.methods"


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
    chunked
        Whether the method runs chunk by chunk of accounts on dask (:mod:`marginsim.scale`).
    unsplit_dims
        Grid dims the method cannot be split along: its result at one point of the dim depends
        on other points of it (CFD: ``step``; the account layer: every grid dim).
    finalize_chunked
        ``finalize_chunked(result, split_dims) -> result``: recomputes, after a run split along
        the grid dims ``split_dims``, the values that depend on the whole dim (CFD: its path
        statistics over every path); ``None``: nothing to recompute.
    handles_lazy
        ``run`` takes dask-backed inputs itself and returns a lazy result (the account layer,
        whose chunks need a whole-book value first). Otherwise :func:`marginsim.margin` runs
        the method chunk by chunk with :func:`marginsim.scale.lazy_margin`, each chunk in memory.
    """

    name: str
    run: Callable[..., xr.Dataset]
    params_model: type[BaseModel]
    to_dict: Callable[[xr.Dataset, list[str]], dict[str, Any]]
    table: Callable[[xr.Dataset, str], str]
    applies: Callable[[ScenarioFile], bool]
    lean: Mapping[str, Any] = field(default_factory=dict)
    chunked: bool = True
    unsplit_dims: frozenset[str] = frozenset()
    finalize_chunked: Callable[[xr.Dataset, frozenset[str]], xr.Dataset] | None = None
    handles_lazy: bool = False


class _Registry(Mapping[str, MethodSpec]):
    """Method name -> :class:`MethodSpec`, in registration order; entry points read on first use."""

    def __init__(self) -> None:
        self._specs: dict[str, MethodSpec] = {}
        self._entry_points_read = False

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            spec = obj if isinstance(obj, MethodSpec) else obj()
            if not isinstance(spec, MethodSpec):
                raise TypeError(
                    f"entry point {ep.name!r} of group {ENTRY_POINT_GROUP!r} gives {type(spec).__name__}, "
                    "not a marginsim.registry.MethodSpec"
                )
            if spec.name not in self._specs:
                self._specs[spec.name] = spec

    def __getitem__(self, name: str) -> MethodSpec:
        self._read_entry_points()
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        self._read_entry_points()
        return iter(list(self._specs))

    def __len__(self) -> int:
        self._read_entry_points()
        return len(self._specs)

    def add(self, spec: MethodSpec, *, replace: bool) -> None:
        if spec.name in self._specs and not replace and self._specs[spec.name] is not spec:
            raise ValueError(f"a method named {spec.name!r} is already registered (pass replace=True)")
        self._specs[spec.name] = spec

    def remove(self, name: str) -> MethodSpec:
        return self._specs.pop(name)


#: Every registered method, by name.
REGISTRY = _Registry()


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Register a margin method (the built-in ones and any defined outside the package).

    Parameters
    ----------
    spec
        The method's declaration.
    replace
        Replace a method already registered under the same name.

    Returns
    -------
    MethodSpec
        ``spec``, so that a module can write ``SPEC = register_method(MethodSpec(...))``.

    Raises
    ------
    ValueError
        A different method is already registered under ``spec.name`` and ``replace`` is false.
    """
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"register_method takes a MethodSpec, not {type(spec).__name__}")
    REGISTRY.add(spec, replace=replace)
    return spec


def unregister_method(name: str) -> MethodSpec:
    """Remove the method ``name`` from the registry (a plug-in under development, a test) and return it.

    Raises
    ------
    KeyError
        No method of that name is registered.
    """
    return REGISTRY.remove(name)


def applicable_methods(sc: ScenarioFile) -> list[str]:
    """The methods to run: the file's ``methods``, else every registered method the book needs."""
    if sc.methods is not None:
        return list(sc.methods)
    return [name for name, spec in REGISTRY.items() if spec.applies(sc)]


def method_spec(name: str, *, file: str | None = None, key_path: str = "methods") -> MethodSpec:
    """The registered method ``name``; an unknown name is an input error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(
            f"method {name!r} is not available (available: {', '.join(REGISTRY)})",
            file=file,
            key_path=key_path,
        ) from None
