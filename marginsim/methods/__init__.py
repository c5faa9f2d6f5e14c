"""The built-in margin methods, registered in :data:`marginsim.registry.REGISTRY` on import.

One package per method, each declaring itself in its ``SPEC`` (:class:`~marginsim.registry.MethodSpec`).
The order of registration is the order of the methods in the JSON result: SPAN, CFD, portfolio
margin, the account layer (which reaches the others through the registry), VaR, strategy-based margin.
``REGISTRY``, ``MethodSpec`` and ``applicable_methods`` are re-exported here for existing code.
"""

from __future__ import annotations

from ..registry import REGISTRY, MethodSpec, applicable_methods, register_method
from . import account, cfd, portfolio_margin, span, strategy, var

__all__ = ["MethodSpec", "REGISTRY", "applicable_methods"]

register_method(span.SPEC)
register_method(cfd.SPEC)
register_method(portfolio_margin.SPEC)
register_method(account.SPEC)
register_method(var.SPEC)
register_method(strategy.SPEC)
