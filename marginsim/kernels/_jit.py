"""Engine choice and compilation of the kernels: the one place that knows about numba.

Every kernel comes twice, side by side in its module: a numpy reference (array operations) and a
compiled twin, a plain Python function of loops that :func:`compile_kernel` hands to numba. The
``engine`` argument of the public kernels picks one:

* ``"numba"``: the compiled twins (compiled on first use, cached on disk);
* ``"numpy"``: the numpy references;
* ``"auto"``: numba when it can be imported, else numpy with one :class:`RuntimeWarning` per
  process.

Importing this module never imports numba (numba is imported on the first compilation or on the
first ``engine="auto"``). Nothing here imports the rest of the package.
"""

from __future__ import annotations

import functools
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

__all__ = [
    "ENGINES",
    "Engine",
    "compile_kernel",
    "numba_available",
    "prange",
    "resolve_engine",
    "AUTO_NUMPY_BELOW",
]

Engine = Literal["auto", "numba", "numpy"]
"""Engine selector of the kernels: ``"auto"``, ``"numba"`` or ``"numpy"``."""

ENGINES: tuple[Engine, ...] = ("auto", "numba", "numpy")
"""The allowed values of :data:`Engine`."""

prange = range
"""Loop over independent iterations in a compiled twin: ``range`` when the function runs as plain
Python, ``numba.prange`` (parallel when compiled with ``parallel=True``) in the copy that
:func:`compile_kernel` compiles. Use it by name (``for i in prange(n):``) after
``from ._jit import prange``."""

_F = TypeVar("_F", bound=Callable[..., Any])

AUTO_NUMPY_BELOW = 100_000
"""Work size [elements, e.g. contracts x scenarios x grid points] below which ``engine="auto"``
runs the numpy engine when the caller states the size (:func:`resolve_engine`): loading numba and
its cached kernels costs about 0.6 s of CPU per process, more than numpy needs for such a problem,
and both engines give the same numbers (see :mod:`marginsim.kernels.pricing`). ``0`` always picks
numba when it can be imported."""


@functools.cache
def numba_available() -> bool:
    """Whether numba can be imported (checked once per process; imports numba).

    Returns
    -------
    bool
        ``True`` when ``import numba`` succeeds.
    """
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _warn_fallback() -> None:
    """Warn once (per process) that ``engine="auto"`` falls back to numpy."""
    warnings.warn(
        "numba cannot be imported: marginsim's kernels (pricing, SPAN aggregation, CFD paths) fall "
        "back to the slower numpy engine (install numba for the compiled, multi-threaded engine)",
        RuntimeWarning,
        stacklevel=4,  # the caller of the public kernel that called resolve_engine
    )


def resolve_engine(engine: str, size: int | None = None) -> Literal["numba", "numpy"]:
    """The engine to run: ``"auto"`` mapped to ``"numba"`` or ``"numpy"``, the name checked.

    Parameters
    ----------
    engine
        ``"auto"``, ``"numba"`` or ``"numpy"``. ``"auto"`` is ``"numba"`` when numba can be
        imported, else ``"numpy"`` with one :class:`RuntimeWarning` per process; and ``"numpy"``
        (without importing numba) when ``size`` is below :data:`AUTO_NUMPY_BELOW`.
    size
        The work the engine is chosen for [elements], when the caller knows it.

    Returns
    -------
    {"numba", "numpy"}

    Raises
    ------
    ValueError
        For any other name (the message names the allowed values).
    """
    if engine == "auto":
        if size is not None and size < AUTO_NUMPY_BELOW:
            return "numpy"
        if numba_available():
            return "numba"
        _warn_fallback()
        return "numpy"
    if engine == "numba":
        return "numba"
    if engine == "numpy":
        return "numpy"
    raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


def _numba_signature(signature: str | Sequence[str]) -> Any:
    """numba signature: a numba signature string as it is, or a sequence of short type names for a
    function returning nothing: ``"f8"``, ``"i8"``, ``"b1"`` scalars, ``"f8[]"`` etc. read-only
    C-contiguous 1-D inputs (writable arrays convert to them, so one compilation serves both),
    ``"f8[w]"`` etc. writable 1-D outputs."""
    if isinstance(signature, str):
        return signature
    from numba import types as nt

    scalars = {"f8": nt.float64, "i8": nt.int64, "b1": nt.boolean}

    def one(name: str) -> Any:
        if name.endswith("[]"):
            return nt.Array(scalars[name[:-2]], 1, "C", readonly=True)
        if name.endswith("[w]"):
            return nt.Array(scalars[name[:-3]], 1, "C")
        return scalars[name]

    return nt.void(*(one(a) for a in signature))


def compile_kernel(
    fn: _F,
    signature: str | Sequence[str] | None = None,
    *,
    parallel: bool = False,
    helpers: dict[str, Callable[..., Any]] | None = None,
    suffix: str = "",
    **options: Any,
) -> _F:
    """The compiled twin of the module-level function ``fn`` (numba ``njit``, cached on disk).

    ``fn`` is rebuilt on a copy of its module's globals in which :data:`prange` is
    ``numba.prange`` and the names in ``helpers`` are bound to the given (compiled) functions;
    the module itself is not changed. Without numba, ``fn`` itself is returned (plain Python:
    same results, much slower).

    Parameters
    ----------
    fn
        A module-level function written in the subset of Python and numpy numba compiles.
    signature
        Eager compilation for these types: a numba signature string, or a sequence of short
        type names for a function returning nothing (``"f8"``, ``"i8"``, ``"b1"``; ``"f8[]"``:
        read-only 1-D input; ``"f8[w]"``: writable 1-D output). Default: lazy, per argument types.
    parallel
        Compile with ``parallel=True`` (``prange`` loops run on threads).
    helpers
        Global names of ``fn`` to rebind, e.g. to the compiled versions of the helpers it calls.
    suffix
        Added to the compiled function's qualified name, so that variants of one function
        (serial / parallel) keep apart in the on-disk cache.
    **options
        Further ``numba.njit`` options; defaults ``cache=True``, ``error_model="numpy"``.

    Returns
    -------
    callable
        The compiled function (or ``fn`` when numba cannot be imported).
    """
    if not numba_available():
        return fn
    import numba

    env = dict(fn.__globals__, prange=numba.prange, **(helpers or {}))
    clone = types.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__module__ = fn.__module__
    options = {"cache": True, "error_model": "numpy", **options}
    if parallel:
        options["parallel"] = True
    if signature is None:
        return numba.njit(**options)(clone)
    return numba.njit(_numba_signature(signature), **options)(clone)
