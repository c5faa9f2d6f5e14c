"""The scenario key ``history:``: daily closes (and optionally implied vols) per underlying.

Read by :func:`marginsim.io.history.read_history`; used by the VaR method (its scenarios) and the
backtest (the market rolled day by day).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import StrictModel

__all__ = ["HistoryParams", "DEFAULT_MAX_GAP_DAYS"]

#: The longest span between two consecutive dates of a history accepted by default [calendar
#: days]: 10 covers weekends, holiday weekends and the four-day close of September 2001; a longer
#: span is a hole in a daily series, reported with its dates.
DEFAULT_MAX_GAP_DAYS: int = 10


class HistoryParams(StrictModel):
    """``history:``: a file of daily closes per underlying (CSV with a ``date`` column, Parquet or netCDF)."""

    file: str = Field(
        min_length=1,
        description="The history file (.csv, .parquet, .nc): relative to the scenario file's folder. CSV and "
        "Parquet: a `date` column (YYYY-MM-DD) and one column per series; netCDF: variables over dim `date`.",
    )
    columns: dict[str, str] | None = Field(
        None,
        description="Underlying (key of `market`) -> its close column; default: the column named as the "
        "underlying (an underlying without a column has no history).",
    )
    vol_columns: dict[str, str] | None = Field(
        None,
        description="Underlying -> its implied-vol column (optional): VaR scenarios move the option vols by "
        "the history's vol returns; without one, vols stay as they are.",
    )
    vol_unit: Literal["decimal", "percent"] = Field(
        "decimal", description="Unit of the vol columns: `decimal` (0.2) or `percent` (20, as VIX)."
    )
    max_gap_days: int = Field(
        DEFAULT_MAX_GAP_DAYS,
        ge=1,
        le=3660,
        description="Longest span between two consecutive dates accepted [calendar days]; a longer one is a gap "
        "(an error naming its dates).",
    )
