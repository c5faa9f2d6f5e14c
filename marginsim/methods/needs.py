"""Which books need a built-in method, answered without importing the method's package.

The registry asks this before a built-in method is first used (:func:`marginsim.registry.declare_builtin`),
so that margining a SPAN book imports neither portfolio margin nor the other methods. A method whose
book needs only its own section (the default) has no entry here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..scenario import ScenarioFile

__all__ = ["portfolio_margin_applies"]


def portfolio_margin_applies(sc: ScenarioFile) -> bool:
    """Whether the book needs portfolio margin: a ``portfolio_margin`` section, or stocks or options on spot."""
    return sc.section("portfolio_margin") is not None or sc.holds(
        lambda c: c.type == "stock" or (c.type in ("call", "put") and c.option_on == "spot")
    )
