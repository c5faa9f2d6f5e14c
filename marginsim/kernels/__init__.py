"""Pure numpy kernels (and their numba-compiled twins): no xarray, no I/O, nothing of the package.

The engine choice and the compilation live in one place, re-exported here: :data:`Engine`,
:data:`ENGINES`, :func:`numba_available`, :func:`resolve_engine`, :func:`compile_kernel` and
:data:`prange` (see :mod:`marginsim.kernels._jit`).
"""

from ._jit import ENGINES, Engine, compile_kernel, numba_available, prange, resolve_engine

__all__ = ["ENGINES", "Engine", "compile_kernel", "numba_available", "prange", "resolve_engine"]
