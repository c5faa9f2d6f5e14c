"""The base of every scenario-file model and the field types they share (defined once).

Unknown keys are errors and assignments are validated. Every parameter module of
:mod:`marginsim.params` and :mod:`marginsim.scenario` build on this; it imports only pydantic.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "StrictModel",
    "NonNegFloat",
    "PosFloat",
    "Fraction",
    "PosFraction",
    "Currency",
    "Country",
    "Money",
]


class StrictModel(BaseModel):
    """Base of the scenario-file models: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
PosFraction = Annotated[float, Field(gt=0, le=1)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code")]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 country code")]
#: an amount in the reporting currency, or per currency
Money = float | dict[Currency, float]
