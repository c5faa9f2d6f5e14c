"""The method registry: the one place a margin method is declared.

A method is a :class:`MethodSpec`: its name (the key of its result and of its scenario-file
section), the function that runs it, its parameter model, its JSON and table writers, when a
book needs it, and the facts chunked runs need (which grid dims it cannot be split along, what
it recomputes over the whole book after a chunked run). The CLI, the API, the notebooks, the
JSON result and :mod:`marginsim.scale` all read :data:`REGISTRY`.

The built-in methods (SPAN, CFD, portfolio margin, the account layer, VaR, strategy-based margin)
are declared by name when :mod:`marginsim.methods` is imported, which the registry does by name the
first time it is looked at (``import marginsim`` is lazy and imports no method); each method's
package is imported the first time its spec is looked up (:func:`declare_builtin`), so a SPAN book
imports SPAN only. A method defined outside the package
registers with :func:`register_method`, or through the ``marginsim.methods`` entry-point group (an
entry point names a :class:`MethodSpec`, or a function returning one), which is read the first
time the registry is looked at, after the built-in methods.

This module imports nothing of marginsim but :mod:`marginsim.errors` and the data types it names
(:data:`BUILTIN_METHODS` is imported by name, like an entry point).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .errors import InputError
from .outputs import Output, account_json, account_table

if TYPE_CHECKING:  # the types of the fields only: no import of the data model at run time
    import xarray as xr

    from .limits import Footprint, Sizes
    from .model import Inputs
    from .scenario import ScenarioFile
    from .trades import TradeBatch

__all__ = [
    "MethodSpec",
    "ChunkLayout",
    "Ragged",
    "REGISTRY",
    "register_method",
    "unregister_method",
    "applicable_methods",
    "method_applies",
    "declare_builtin",
    "method_spec",
    "ENTRY_POINT_GROUP",
    "BUILTIN_METHODS",
]

#: The entry-point group through which installed packages add methods.
ENTRY_POINT_GROUP = "marginsim.methods"

#: The package of the built-in methods, imported (it registers them) on the first look at the registry.
BUILTIN_METHODS = "marginsim.methods"


#: A method's result dims whose length depends on the data (the account layer's plans: one row
#: per movement, per position closed), as ``{dim: (unit, rows per unit, sort by)}``: each chunk pads
#: the dim to ``rows per unit`` x its accounts (``unit="account"``) or positions (``"position"``)
#: with a validity flag, and :func:`marginsim.scale.compact` keeps the valid rows (sorted by the
#: ``sort by`` variable when given, else in chunk order). ``rows per unit`` is an int or a function
#: of the result's structure (the template Dataset).
Ragged = Mapping[str, tuple[str, "int | Callable[[xr.Dataset], int]", "str | None"]]


@dataclass(frozen=True)
class ChunkLayout:
    """What a chunked run of a method needs beyond "each chunk of accounts on its own".

    Attributes
    ----------
    ragged
        Result dims whose length depends on the data (see :data:`Ragged`).
    data_attrs
        Result attrs whose value depends on the data: set from the computed result.
    first_pass
        Keyword arguments of ``run`` for a first, whole-book pass (``None``: no first pass). Its
        lazy result goes to ``deps``.
    deps
        ``deps(first_pass_result) -> {keyword: lazy value}``: whole-book values (dask or lazy
        xarray reductions of the first pass) that every chunk of the main pass gets as keyword
        arguments of ``run`` (the account layer's liquidation step: the first step at which any
        account of the book is in forced liquidation).
    """

    ragged: Ragged = field(default_factory=dict)
    data_attrs: tuple[str, ...] = ()
    first_pass: Mapping[str, Any] | None = None
    deps: Callable[[xr.Dataset], Mapping[str, Any]] | None = None


def _DEFAULT_TO_DICT(ds: xr.Dataset, grid_dims: list[str]) -> dict[str, Any]:
    raise AssertionError("replaced by MethodSpec.__post_init__")


def _DEFAULT_TABLE(ds: xr.Dataset, account: str) -> str:
    raise AssertionError("replaced by MethodSpec.__post_init__")


def _DEFAULT_APPLIES(sc: ScenarioFile) -> bool:
    raise AssertionError("replaced by MethodSpec.__post_init__")


@dataclass(frozen=True)
class MethodSpec:
    """A registered margin method.

    Attributes
    ----------
    name
        The method's name (the key of its result and of its scenario-file section).
    run
        ``run(inputs, engine=...) -> xr.Dataset`` on in-memory inputs (:func:`marginsim.margin`
        runs it chunk by chunk on lazy ones).
    params_model
        The pydantic model of its scenario-file section.
    to_dict
        ``to_dict(result, grid_dims) -> {account: json object}`` (the JSON contract); default:
        the ``json="account"`` outputs (:func:`marginsim.outputs.account_json`).
    table
        ``table(result, account) -> str``: a readable breakdown; default: those outputs at the
        base grid point (:func:`marginsim.outputs.account_table`).
    applies
        ``applies(scenario) -> bool``: whether the book needs this method; default: the file has
        the method's section.
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
    outputs
        The result's variables (:class:`~marginsim.outputs.Output`): their attrs, JSON keys and
        units are generated from this declaration.
    check
        ``check(scenario) -> [(key path, problem), ...]``: checks of the method's section against
        the rest of the file (run after validation when the file has the section; the first
        problem is the input error).
    chunk_layout
        ``chunk_layout(inputs) -> ChunkLayout``: what a chunked run needs beyond independent
        chunks of accounts (data-sized dims, a whole-book first pass); ``None``: nothing.
    memory
        ``memory(sizes, detail) -> Footprint``: the memory the method needs for a book or chunk of
        the given :class:`~marginsim.limits.Sizes` [bytes] (:mod:`marginsim.limits`, which refuses
        a run that would not fit before anything is allocated); ``None``:
        :func:`marginsim.limits.generic_memory`.
    attribution
        ``attribution(inputs, result, engine=...) -> xr.Dataset``: on in-memory inputs and the
        method's result, the ``contribution`` of each of the method's positions (dims
        ``position`` and grid dims, coord ``position``: the book's position numbers) [reporting
        currency], summing over each account's positions to its ``maintenance``
        (:mod:`marginsim.attribution`); optionally ``marginal`` as well, the method's own exact
        leave-one-out (else the generic one, :func:`marginsim.attribution.leave_one_out`);
        ``None``: the method gets the generic leave-one-out ``marginal`` only.
    what_if
        ``what_if(inputs, trades, before) -> Dataset``: the method's own what-if (in-memory
        ``inputs``, a :class:`~marginsim.trades.TradeBatch`, the method's result on the book):
        its result after each trade, with dim ``trade`` instead of ``account`` (e.g. an
        incremental path); ``None``: :func:`marginsim.what_if` margins every after-book in one
        batched run (:func:`marginsim.variants.margin_variants`).
    """

    name: str
    run: Callable[..., xr.Dataset]
    params_model: type[BaseModel]
    to_dict: Callable[[xr.Dataset, list[str]], dict[str, Any]] = _DEFAULT_TO_DICT
    table: Callable[[xr.Dataset, str], str] = _DEFAULT_TABLE
    applies: Callable[[ScenarioFile], bool] = _DEFAULT_APPLIES
    lean: Mapping[str, Any] = field(default_factory=dict)
    chunked: bool = True
    unsplit_dims: frozenset[str] = frozenset()
    finalize_chunked: Callable[[xr.Dataset, frozenset[str]], xr.Dataset] | None = None
    outputs: tuple[Output, ...] = ()
    check: Callable[[ScenarioFile], list[tuple[tuple[str | int, ...], str]]] | None = None
    chunk_layout: Callable[[Inputs], ChunkLayout] | None = None
    memory: Callable[[Sizes, bool], Footprint] | None = None
    attribution: Callable[..., xr.Dataset] | None = None
    what_if: Callable[[Inputs, TradeBatch, xr.Dataset], xr.Dataset] | None = None

    def __post_init__(self) -> None:
        # the defaults: JSON and table from the declared outputs; needed when the file has the section
        if self.to_dict is _DEFAULT_TO_DICT:
            object.__setattr__(self, "to_dict", lambda ds, gd: account_json(ds, self.outputs, gd))
        if self.table is _DEFAULT_TABLE:
            title = self.name.replace("_", " ").upper()
            object.__setattr__(self, "table", lambda ds, acct: account_table(ds, self.outputs, acct, title))
        if self.applies is _DEFAULT_APPLIES:
            object.__setattr__(self, "applies", lambda sc: sc.section(self.name) is not None)

    def output(self, name: str) -> Output:
        """The declaration of the output variable ``name``."""
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(f"method {self.name!r} declares no output {name!r}")


@dataclass(frozen=True)
class _Declared:
    """A built-in method declared by name and not imported yet (:func:`declare_builtin`)."""

    module: str
    applies: Callable[[ScenarioFile], bool] | None


class _Registry(Mapping[str, MethodSpec]):
    """Method name -> :class:`MethodSpec`, in registration order; entry points read on first use.

    The built-in methods are declared by name and module (:func:`declare_builtin`): a method's
    package is imported the first time its spec is looked up, so that margining a SPAN book does
    not import the other methods. Names, ``in`` and :func:`method_applies` need no import.
    """

    def __init__(self) -> None:
        self._specs: dict[str, MethodSpec | _Declared] = {}
        self._entry_points_read = False
        self._builtins_loaded = False
        self.version = 0  # bumped by every change: caches keyed on the registry's contents

    def _load_builtins(self) -> None:
        """Import :data:`BUILTIN_METHODS` once (it declares the built-in methods, in their order)."""
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        try:
            importlib.import_module(BUILTIN_METHODS)
        except BaseException:
            self._builtins_loaded = False  # tried again at the next look (and fails loudly again)
            raise

    def _read_entry_points(self) -> None:
        self._load_builtins()
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
                self.version += 1

    def __getitem__(self, name: str) -> MethodSpec:
        self._read_entry_points()
        entry = self._specs[name]
        if isinstance(entry, _Declared):  # a built-in method's first use: import its package
            spec = importlib.import_module(entry.module).SPEC
            if not isinstance(spec, MethodSpec) or spec.name != name:
                raise TypeError(f"{entry.module}.SPEC is not the MethodSpec of {name!r}")
            if self._specs.get(name) is entry:  # (not replaced meanwhile: the same method, now loaded)
                self._specs[name] = spec
            return spec
        return entry

    def __contains__(self, name: object) -> bool:
        self._read_entry_points()
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        self._read_entry_points()
        return iter(list(self._specs))

    def __len__(self) -> int:
        self._read_entry_points()
        return len(self._specs)

    def declare(self, name: str, module: str, applies: Callable[[ScenarioFile], bool] | None) -> None:
        """Declare the built-in method ``name``, defined by ``module.SPEC`` (imported on first use)."""
        if name not in self._specs:
            self._specs[name] = _Declared(module, applies)
            self.version += 1

    def applies(self, name: str, sc: ScenarioFile) -> bool:
        """Whether the book of ``sc`` needs method ``name``, without importing a declared method."""
        self._read_entry_points()
        entry = self._specs[name]
        if isinstance(entry, _Declared):
            return entry.applies(sc) if entry.applies is not None else sc.section(name) is not None
        return entry.applies(sc)

    def add(self, spec: MethodSpec, *, replace: bool) -> None:
        self._load_builtins()  # the built-in methods come first, whoever registers first
        old = self._specs.get(spec.name)
        if isinstance(old, _Declared) and getattr(sys.modules.get(old.module), "SPEC", None) is spec:
            old = spec  # the declared built-in's own spec: the same method
        if old is not None and not replace and old is not spec:
            raise ValueError(f"a method named {spec.name!r} is already registered (pass replace=True)")
        self._specs[spec.name] = spec
        self.version += 1

    def remove(self, name: str) -> MethodSpec:
        self._load_builtins()
        spec = self[name]
        del self._specs[name]
        self.version += 1
        return spec

    def contents_version(self) -> int:
        """A number that changes whenever a method is added or removed (entry points read first)."""
        self._read_entry_points()
        return self.version


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


def declare_builtin(name: str, module: str, applies: Callable[[ScenarioFile], bool] | None = None) -> None:
    """Declare a built-in method by name: its package ``module`` (whose ``SPEC`` is its
    :class:`MethodSpec`) is imported the first time the method is looked up in :data:`REGISTRY`.

    Parameters
    ----------
    name
        The method's name (``module.SPEC.name``).
    module
        The package that defines ``SPEC``.
    applies
        Whether a book needs the method, answered without importing ``module`` (it must agree
        with ``SPEC.applies``); ``None``: the file has the method's section.
    """
    REGISTRY.declare(name, module, applies)


def method_applies(name: str, sc: ScenarioFile) -> bool:
    """Whether the book of ``sc`` needs the registered method ``name`` (``spec.applies``; a
    built-in method not used yet is not imported to answer)."""
    return REGISTRY.applies(name, sc)


def applicable_methods(sc: ScenarioFile) -> list[str]:
    """The methods to run: the file's ``methods``, else every registered method the book needs."""
    if sc.methods is not None:
        return list(sc.methods)
    return [name for name in REGISTRY if REGISTRY.applies(name, sc)]


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
