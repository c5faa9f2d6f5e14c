"""The base of every scenario-file model and the field types they share (defined once).

Unknown keys are errors, assignments are validated, and every number must be finite: ``.nan``,
``.inf`` and ``-.inf`` (or the strings ``nan``, ``Infinity``, a literal such as ``1e400`` that
overflows) are refused wherever a float is read, in lists and mappings too. Every parameter module of
:mod:`marginsim.params` and :mod:`marginsim.scenario` build on this; it imports only pydantic.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "StrictModel",
    "NonNegFloat",
    "PosFloat",
    "Fraction",
    "PosFraction",
    "Currency",
    "Country",
    "Money",
    "Amount",
    "MAX_AMOUNT",
    "MAX_VOL",
    "MAX_RATE",
    "Vol",
    "Rate",
    "check_step_times",
    "MAX_STEP_DAYS",
    "StepDays",
    "StepMinutes",
    "Date",
]


class StrictModel(BaseModel):
    """Base of the scenario-file models: unknown keys are errors, values are validated on assignment
    too, and no float may be NaN or infinite (pydantic's ``allow_inf_nan=False``, which reaches
    floats inside lists, mappings and unions)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


#: The largest amount of money a scenario file may state, up or down [currency units]: 1e15 is
#: a thousand times the largest balance sheets, and far enough below the float range (1.8e308)
#: that sums and products of amounts, prices and FX rates cannot overflow. The same figure is the
#: default of the scenario key ``max_amount`` (the largest notional of a contract or a position).
MAX_AMOUNT: float = 1.0e15


NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
PosFraction = Annotated[float, Field(gt=0, le=1)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code")]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 country code")]
#: The largest volatility a scenario file may state [decimal per sqrt(year)]: 10 = 1,000 % a year,
#: beyond any traded implied vol; above it option values leave the range the pricing kernels
#: compute (a vol of 1e300 priced every option at 0).
MAX_VOL: float = 10.0
#: The largest interest rate, dividend yield or drift, up or down, a scenario file may state
#: [decimal per year]: 10 = 1,000 % a year; above it discount factors underflow to 0 (a rate of
#: 1e300 dropped the net option value).
MAX_RATE: float = 10.0

#: an annualised volatility [decimal]: 0 to :data:`MAX_VOL`
Vol = Annotated[float, Field(ge=0, le=MAX_VOL)]
#: a continuously compounded rate [decimal per year]: within +/- :data:`MAX_RATE`
Rate = Annotated[float, Field(ge=-MAX_RATE, le=MAX_RATE)]
#: an amount of money [its currency]: finite and at most :data:`MAX_AMOUNT` either way
Amount = Annotated[float, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
#: an amount in the reporting currency, or per currency
Money = Amount | dict[Currency, Amount]

#: The longest time between two path steps a scenario file may state [calendar days]: ten years.
#: Above it step offsets leave the range of datetime64 (a ``step_days`` of 1e300 gave wrong times).
MAX_STEP_DAYS: float = 3660.0
#: calendar days between path steps: 0 to :data:`MAX_STEP_DAYS`
StepDays = Annotated[float, Field(ge=0, le=MAX_STEP_DAYS)]
#: minutes between path steps: 0 to :data:`MAX_STEP_DAYS` days
StepMinutes = Annotated[float, Field(ge=0, le=MAX_STEP_DAYS * 24 * 60)]


def _not_a_number(value: object) -> object:
    # pydantic reads a number given for a date as a Unix timestamp: in a scenario file it is a slip
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"a date is written YYYY-MM-DD, not as a number (got {value!r})")
    return value


#: a calendar date (YYYY-MM-DD; a number is refused, not read as a Unix timestamp)
Date = Annotated[dt.date, BeforeValidator(_not_a_number)]


def check_step_times(times: list[dt.datetime] | None) -> list[dt.datetime] | None:
    """Validate a section's ``step_times``: not empty, all with a time zone or all without (a
    naive time next to a zoned one has no single order), and never decreasing.

    Raises
    ------
    ValueError
        Naming the first offending entry (``step_times[i]``).
    """
    if times is None:
        return None
    if not times:
        raise ValueError("step_times is empty")
    zoned = times[0].tzinfo is not None
    for i, t in enumerate(times):
        if (t.tzinfo is not None) != zoned:
            raise ValueError(
                f"step_times[{i}] ({t.isoformat()}) is {'without' if zoned else 'with'} a time zone and "
                f"step_times[0] is {'with' if zoned else 'without'}: give every time a zone or none"
            )
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            raise ValueError(f"step_times must not decrease (step_times[{i}] is before step_times[{i - 1}])")
    return times
