"""The base of every scenario-file model: unknown keys are errors, assignments are validated.

Kept in its own module so that the parameter modules of each method and :mod:`marginsim.scenario`
(which imports them) share it without an import cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """Base of the scenario-file models: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
