"""Lazy public names of a package (PEP 562): a name is imported from its module on first use.

``import marginsim`` and ``import marginsim.studies`` import nothing heavy (no numpy, xarray,
pandas, numba or dask) so that the command line starts fast; their public names come from the
modules that define them when a program first uses them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from types import ModuleType
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, namespace: MutableMapping[str, Any], names: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package with lazy public names.

    Parameters
    ----------
    package
        The package's name (``__name__``), for the error of an unknown attribute.
    namespace
        The package's ``globals()``: a name, once imported, is kept there.
    names
        Public name -> the module that defines it.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)``; ``__dir__`` lists ``__all__`` and the submodules imported so far.
    """

    def getattr_(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        loaded = [k for k, v in namespace.items() if isinstance(v, ModuleType) and not k.startswith("_")]
        return sorted({*namespace.get("__all__", ()), *loaded})

    return getattr_, dir_
