"""The built-in margin methods, registered in :data:`marginsim.registry.REGISTRY` on import.

The CLI, the notebooks and the JSON result all go through the registry; ``REGISTRY``,
``MethodSpec`` and ``applicable_methods`` are re-exported here for existing code.
"""

from __future__ import annotations

from ..model import GRID_DIMS
from ..registry import REGISTRY, MethodSpec, applicable_methods, register_method
from . import cfd, portfolio_margin, span
from .account import (
    AccountParams,
    account_applies,
    account_chunk_layout,
    account_margin,
    account_table,
    account_to_dict,
)

__all__ = ["MethodSpec", "REGISTRY", "applicable_methods"]


register_method(span.SPEC)
register_method(cfd.SPEC)
register_method(portfolio_margin.SPEC)
# the account layer's plans are made at one grid point and its margin calls run along the steps:
# it is split along accounts only
register_method(
    MethodSpec(
        "account",
        account_margin,
        AccountParams,
        account_to_dict,
        account_table,
        account_applies,
        unsplit_dims=frozenset(GRID_DIMS),
        chunk_layout=account_chunk_layout,
    )
)
