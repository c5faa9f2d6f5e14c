"""The built-in margin methods, declared in :data:`marginsim.registry.REGISTRY` on import.

One package per method, each declaring itself in its ``SPEC`` (:class:`~marginsim.registry.MethodSpec`),
imported the first time the registry is asked for that method.
The order of registration is the order of the methods in the JSON result: SPAN, CFD, portfolio
margin, the account layer (which reaches the others through the registry), VaR, strategy-based margin.
``REGISTRY``, ``MethodSpec`` and ``applicable_methods`` are re-exported here for existing code.
"""

from __future__ import annotations

from ..registry import REGISTRY, MethodSpec, applicable_methods, declare_builtin
from .needs import portfolio_margin_applies

__all__ = ["MethodSpec", "REGISTRY", "applicable_methods"]

# each package is imported the first time its method is looked up (``REGISTRY[name]``): a SPAN
# book imports SPAN only
declare_builtin("span", "marginsim.methods.span")
declare_builtin("cfd", "marginsim.methods.cfd")
declare_builtin("portfolio_margin", "marginsim.methods.portfolio_margin", portfolio_margin_applies)
declare_builtin("account", "marginsim.methods.account")
declare_builtin("var", "marginsim.methods.var")
declare_builtin("strategy", "marginsim.methods.strategy")
