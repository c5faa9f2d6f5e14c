"""The VaR method's scenarios: price (and vol) factors per underlying, from the history.

One stacked set of scenario columns, in this order: the HVaR scenarios (the filtered
``holding_days``-day log returns ending on each of the last ``lookback_days`` dates), the stress
windows' (unfiltered returns ending inside each window), the explicit stress scenarios, and
with ``apc: floor`` the unfiltered returns of the last ``apc_floor_days`` dates. A scenario's
factor multiplies the price now: ``exp(return)`` (``1 + move`` for an explicit one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ...errors import InputError
from ...kernels.var import ewma_variance, filter_returns, overlapping_sums
from ...params.var import VarParams

__all__ = ["ScenarioSet", "build_scenarios", "garch_variance"]


@dataclass(frozen=True)
class ScenarioSet:
    """The stacked scenario columns.

    Attributes
    ----------
    underlyings
        The history's underlyings (rows of ``price`` and ``vol``).
    price
        ``(U, S)`` price factors [ratio].
    vol
        ``(U, S)`` vol factors [ratio] (1 for an underlying without vol history), or ``None``
        when no vol moves.
    labels
        ``(S,)`` the end date of each return (YYYY-MM-DD) or the explicit stress scenario's name.
    main, windows, explicit, floor
        Column slices of each part (``floor`` empty unless ``apc: floor``).
    vol_underlyings
        Underlyings whose vols move with the history's vol returns.
    """

    underlyings: list[str]
    price: np.ndarray
    vol: np.ndarray | None
    labels: np.ndarray
    main: slice
    windows: slice
    explicit: slice
    floor: slice
    vol_underlyings: list[str]

    @property
    def size(self) -> int:
        return int(self.labels.size)

    @property
    def stress(self) -> slice:
        """The stress columns: windows and explicit scenarios (contiguous)."""
        return slice(self.windows.start, self.explicit.stop)


def garch_variance(r: np.ndarray, file: str | None) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) variances of daily returns (the ``arch`` package, zero mean), per underlying.

    Returns
    -------
    at_date : numpy.ndarray
        ``(T, U)`` conditional variance of each return (given the returns before it).
    now : numpy.ndarray
        ``(U,)`` the one-day-ahead forecast after the last return.
    """
    try:
        from arch import arch_model
    except ImportError:
        raise InputError(
            "var.filter: garch needs the arch package: pip install arch", file=file, key_path="var.filter"
        ) from None
    at_date = np.empty_like(r)
    now = np.empty(r.shape[1])
    scale = 100.0  # arch fits returns in percent best
    for j in range(r.shape[1]):  # one fit per underlying (a handful): arch fits one series at a time
        res = arch_model(r[:, j] * scale, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(
            disp="off", show_warning=False
        )
        at_date[:, j] = (np.asarray(res.conditional_volatility) / scale) ** 2
        now[j] = float(res.forecast(horizon=1, reindex=False).variance.values[-1, 0]) / scale**2
    return at_date, now


def build_scenarios(history: xr.Dataset, params: VarParams, file: str | None) -> ScenarioSet:
    """The scenario set of a history (:func:`marginsim.io.history.read_history`) and ``var:``.

    Raises
    ------
    InputError
        A history shorter than ``holding_days + 1`` dates, or a stress window in which no
        return of the history ends.
    """
    h = params.holding_days
    close = history["close"].values
    dates = pd.DatetimeIndex(history["date"].values)
    if close.shape[0] < h + 1:
        raise InputError(
            f"the history has {close.shape[0]} dates: {h}-day returns need at least {h + 1}",
            file=file,
            key_path="var.holding_days",
        )
    r = np.diff(np.log(close), axis=0)  # (T - 1, U): the return ending on dates[1:]
    if params.filter == "ewma":
        r_f = filter_returns(r, *ewma_variance(r, params.ewma_lambda, params.ewma_seed_days))
    elif params.filter == "garch":
        r_f = filter_returns(r, *garch_variance(r, file))
    else:
        r_f = r
    ends = dates[h:]  # end date of each h-day return
    raw = overlapping_sums(r, h)
    filt = overlapping_sums(r_f, h)
    n = min(params.lookback_days, raw.shape[0])
    parts = [filt[-n:]]
    labels = [ends[-n:]]
    vol_unds = [u for u in history.attrs.get("vol_underlyings", "").split(", ") if u]
    rv = raw_v = None
    if "vol" in history and vol_unds:
        rv = np.nan_to_num(np.diff(np.log(history["vol"].values), axis=0))  # no vol history: no move
        raw_v = overlapping_sums(rv, h)
    vparts = [raw_v[-n:]] if raw_v is not None else []
    stress = params.stress
    n_windows = 0
    for i, w in enumerate(stress.windows if stress is not None else []):
        inside = (ends >= pd.Timestamp(w.start)) & (ends <= pd.Timestamp(w.to))
        if not inside.any():
            raise InputError(
                f"no {h}-day return of the history ends from {w.start} to {w.to} (history: {dates[0].date()} "
                f"to {dates[-1].date()})",
                file=file,
                key_path=("var", "stress", "windows", i),
            )
        parts.append(raw[inside])
        labels.append(ends[inside])
        if raw_v is not None:
            vparts.append(raw_v[inside])
        n_windows += int(inside.sum())
    unds = [str(u) for u in history["underlying"].values]
    explicit = stress.scenarios if stress is not None else []
    price_x = np.ones((len(unds), len(explicit)))
    vol_x = np.ones((len(unds), len(explicit)))
    index = {u: j for j, u in enumerate(unds)}
    for s, sc in enumerate(explicit):  # a few named scenarios, each a few underlyings
        for u, m in sc.moves.items():
            if u in index:
                price_x[index[u], s] = 1.0 + m
        for u, m in sc.vol_moves.items():
            if u in index:
                vol_x[index[u], s] = 1.0 + m
    n_floor = 0
    floor_parts: list[np.ndarray] = []
    floor_v: list[np.ndarray] = []
    if params.apc == "floor":
        n_floor = min(params.apc_floor_days, raw.shape[0])
        floor_parts = [raw[-n_floor:]]
        labels_floor = ends[-n_floor:]
        if raw_v is not None:
            floor_v = [raw_v[-n_floor:]]
    hist = np.concatenate(parts, axis=0)
    price = np.concatenate([np.exp(hist).T, price_x] + [np.exp(p).T for p in floor_parts], axis=1)
    vol_moves = bool(vol_unds) or any(sc.vol_moves for sc in explicit)
    vol = None
    if vol_moves:
        hv = np.exp(np.concatenate(vparts, axis=0)).T if vparts else np.ones((len(unds), hist.shape[0]))
        fv = [np.exp(p).T for p in floor_v] if floor_v else [np.ones((len(unds), n_floor))]
        vol = np.concatenate([hv, vol_x] + fv, axis=1)
    text = [pd.DatetimeIndex(x).strftime("%Y-%m-%d").to_numpy(dtype=object) for x in labels]
    text.append(np.array([sc.name for sc in explicit], dtype=object))
    if n_floor:
        text.append(pd.DatetimeIndex(labels_floor).strftime("%Y-%m-%d").to_numpy(dtype=object))
    all_labels = np.concatenate(text) if text else np.zeros(0, dtype=object)
    n_exp = len(explicit)
    return ScenarioSet(
        underlyings=unds,
        price=np.ascontiguousarray(price),
        vol=None if vol is None else np.ascontiguousarray(vol),
        labels=all_labels,
        main=slice(0, n),
        windows=slice(n, n + n_windows),
        explicit=slice(n + n_windows, n + n_windows + n_exp),
        floor=slice(n + n_windows + n_exp, n + n_windows + n_exp + n_floor),
        vol_underlyings=vol_unds,
    )
