"""What the margin model study computes: real histories and the backtest of several margin models.

A *model* is a margin method with its parameters: SPAN with the scenario's fixed scans, or
``var`` with a ``var:`` section (historical VaR, filtered, SPAN 2-style). Each model is
backtested by :func:`marginsim.backtest` (one method run over every date, not one per day) and
the models' daily series and statistics are put side by side over a ``model`` dim.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..backtesting import DEFAULT_CONFIDENCE, STATISTICS, BacktestResult, backtest, history_needed
from ..io.history import export_history, scenario_history
from ..scenario import parse_scenario
from .runner import atomic_write_text

__all__ = ["STRESS_PERIODS", "study_history", "backtest_models", "statistics_table"]

#: Periods of market stress marked on the study's figures: label -> (first day, last day).
STRESS_PERIODS: dict[str, tuple[str, str]] = {
    "2008 crisis": ("2008-09-01", "2009-03-31"),
    "2011 debt crisis": ("2011-07-25", "2011-10-31"),
    "2014-16 oil crash": ("2014-06-20", "2016-02-29"),
}


def study_history(series: Mapping[str, str], path: str | Path) -> Path:
    """The real daily closes the ``arch`` package ships, one column per underlying, in one CSV.

    Parameters
    ----------
    series
        Underlying -> name of an ``arch`` series (``sp500``, ``nasdaq``, ``wti``, ``vix``:
        :func:`marginsim.io.history.export_history`).
    path
        The CSV to write (columns ``date`` and the underlyings); the series are exported next to
        it. Only the dates every series has are kept.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    frames = []
    for und, name in series.items():
        one = export_history(name, path.with_name(f"{path.stem}-{name}.csv"))
        frames.append(pd.read_csv(one, index_col="date").rename(columns={name: und}))
    joined = pd.concat(frames, axis=1, join="inner").sort_index()
    atomic_write_text(path, joined.reset_index().to_csv(index=False))
    return path


def backtest_models(
    scenario: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any] | None],
    *,
    start: str | None = None,
    end: str | None = None,
    holding_days: int | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> tuple[xr.Dataset, xr.Dataset, dict[str, BacktestResult]]:
    """Backtest each model on the scenario's history, on the same dates.

    Parameters
    ----------
    scenario
        The scenario as a mapping (with ``history:``), not changed.
    models
        Model name (as shown) -> ``None`` for SPAN with the scenario's ``span:``, or a ``var:``
        section for the ``var`` method.
    start, end
        First and last date tested (``YYYY-MM-DD``); default: the first date every model can
        be tested on (``var`` needs its lookback before it) and the history's last.
    holding_days, confidence
        The loss horizon [dates] and the coverage the exceedance tests expect [fraction]
        (:func:`marginsim.backtest`).

    Returns
    -------
    series : xarray.Dataset
        ``margin`` and ``exceedance`` over (model, account, date), ``loss`` over (account, date).
    statistics : xarray.Dataset
        The backtest statistics (:data:`marginsim.backtesting.STATISTICS`) over (model, account).
    results : dict
        Model -> its :class:`marginsim.backtesting.BacktestResult`.
    """

    def variant(var: Mapping[str, Any] | None) -> tuple[dict, str]:
        sc = copy.deepcopy(dict(scenario))
        sc.pop("methods", None)
        if var is None:
            sc.pop("var", None)
            return sc, "span"
        sc["var"] = dict(var)
        return sc, "var"

    variants = [variant(v) for v in models.values()]
    if start is None:  # the latest default start of the models: every model on the same dates
        parsed = [(parse_scenario(sc), m) for sc, m in variants]
        need = max(history_needed(sc, m)[0] for sc, m in parsed)
        if need > 1:
            history = scenario_history(parsed[0][0])
            dates = history["date"].values if history is not None else np.array([])
            start = str(dates[need - 1])[:10] if need <= dates.size else None
    results: dict[str, BacktestResult] = {}
    for name, (sc, method) in zip(models, variants):
        results[name] = backtest(
            sc, [method], start=start, end=end, holding_days=holding_days, confidence=confidence
        )
    names = list(results)
    first = results[names[0]].series
    series = xr.Dataset(
        {
            "margin": xr.concat(
                [r.series["margin"].isel(method=0, drop=True) for r in results.values()], "model"
            ),
            "exceedance": xr.concat(
                [r.series["exceedance"].isel(method=0, drop=True) for r in results.values()], "model"
            ),
            "loss": first["loss"],
        }
    ).assign_coords(model=names)
    series["margin"].attrs.update(first["margin"].attrs)
    series["loss"].attrs.update(first["loss"].attrs)
    statistics = xr.concat(
        [r.statistics.isel(method=0, drop=True) for r in results.values()], "model"
    ).assign_coords(model=names)
    return series, statistics, results


def statistics_table(statistics: xr.Dataset, keys: list[str] | None = None) -> pd.DataFrame:
    """The statistics as a table: one row per (account, model), one column per statistic.

    Parameters
    ----------
    statistics
        Over ``model`` and ``account`` (:func:`backtest_models`).
    keys
        The statistics to show; default: all of :data:`marginsim.backtesting.STATISTICS`.

    Returns
    -------
    pandas.DataFrame
        Indexed by (account, model); ``days`` and ``exceedances`` as whole numbers.
    """
    keys = list(STATISTICS) if keys is None else keys
    frame = statistics[keys].to_dataframe().reset_index().set_index(["account", "model"])[keys]
    order = pd.MultiIndex.from_product([statistics["account"].values, statistics["model"].values])
    frame = frame.reindex(order).rename_axis(["account", "model"])
    for k in ("days", "exceedances"):
        if k in frame:
            frame[k] = frame[k].astype(np.int64)
    return frame
