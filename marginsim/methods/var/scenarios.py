"""The VaR method's scenarios: price (and vol) factors per underlying, from the history.

One stacked set of scenario columns, in this order: the HVaR scenarios (the filtered
``holding_days``-day log returns ending on each of the last ``lookback_days`` dates), the stress
windows' (unfiltered returns ending inside each window), the explicit stress scenarios, and
with ``apc: floor`` the unfiltered returns of the last ``apc_floor_days`` dates. A scenario's
factor multiplies the price now: ``exp(return)`` (``1 + move`` for an explicit one).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ...errors import InputError
from ...kernels.var import ewma_variance, filter_returns, garch_variance_path, overlapping_sums
from ...params.var import VarParams

__all__ = [
    "ScenarioSet",
    "build_scenarios",
    "garch_variance",
    "garch_refit_variance",
    "garch_refit_dates",
    "clear_garch_fits",
]


@dataclass(frozen=True)
class ScenarioSet:
    """The stacked scenario columns, per valuation date.

    Attributes
    ----------
    underlyings
        The history's underlyings (rows of ``price`` and ``vol``).
    price
        ``(U, S, D)`` price factors [ratio]: ``D`` valuation dates (the market's ``date`` dim), or
        1 (the scenario's ``as_of``: the whole history).
    log_price
        ``(U, S, D)`` their logarithms, the log moves (the options' ``ln(F / K)`` moves by them).
    vol
        ``(U, S, D)`` vol factors [ratio] (1 for an underlying without vol history), or ``None``
        when no vol moves.
    label_index
        ``(S, D)`` index into ``label_text`` of each scenario's label.
    label_text
        The end date of each return (YYYY-MM-DD) and the explicit stress scenarios' names.
    main, windows, explicit, floor
        Column slices of each part (``floor`` empty unless ``apc: floor``).
    vol_underlyings
        Underlyings whose vols move with the history's vol returns.
    """

    underlyings: list[str]
    price: np.ndarray
    log_price: np.ndarray
    vol: np.ndarray | None
    label_index: np.ndarray
    label_text: np.ndarray
    main: slice
    windows: slice
    explicit: slice
    floor: slice
    vol_underlyings: list[str]

    @property
    def size(self) -> int:
        return int(self.label_index.shape[0])

    @property
    def stress(self) -> slice:
        """The stress columns: windows and explicit scenarios (contiguous)."""
        return slice(self.windows.start, self.explicit.stop)

    def labels(self, part: slice, index: np.ndarray, date: np.ndarray) -> np.ndarray:
        """The labels of scenarios ``index`` of ``part`` at valuation-date rows ``date`` (same shape)."""
        return self.label_text[self.label_index[part][index, date]]


def _arch_model(file: str | None) -> Any:
    """arch's ``arch_model`` (imported on first use: a book without ``filter: garch`` needs none)."""
    try:
        from arch import arch_model
    except ImportError:
        raise InputError(
            "var.filter: garch needs the arch package: pip install arch", file=file, key_path="var.filter"
        ) from None
    return arch_model


def garch_variance(r: np.ndarray, file: str | None) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) variances of daily returns (the ``arch`` package, zero mean), per underlying.

    Returns
    -------
    at_date : numpy.ndarray
        ``(T, U)`` conditional variance of each return (given the returns before it).
    now : numpy.ndarray
        ``(U,)`` the one-day-ahead forecast after the last return.
    """
    arch_model = _arch_model(file)
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


def garch_refit_dates(upto: int, params: VarParams) -> np.ndarray:
    """Rows of the history's dates on which ``filter: garch`` refits over a ``date`` dim, up to ``upto``.

    The calendar is the history's: the first refit on the date with ``garch_min_days`` returns up
    to it (row ``garch_min_days``), then every ``garch_refit_days`` dates. It does not depend on the
    dates valued (a backtest's ``--from``, its runs between expiries), so that a date's margin
    does not either. The refit on row ``i`` fits the returns ``r[:i]`` (those ending on rows 1 to
    ``i``), known at that date's close.
    """
    return np.arange(params.garch_min_days, upto + 1, params.garch_refit_days)


def garch_refit_variance(
    r: np.ndarray,
    upto: int,
    params: VarParams,
    file: str | None,
    underlyings: list[str] | None = None,
    dates: pd.DatetimeIndex | None = None,
) -> np.ndarray:
    """GARCH(1,1) variances of daily returns with only the information of each day: no look-ahead.

    The parameters are re-estimated (``arch``, zero mean, as :func:`garch_variance`) on each
    refit date of :func:`garch_refit_dates` on the returns up to it; the conditional variance is
    then filtered forward day by day, each day with the parameters of the latest refit at or
    before it (the days before the first refit with the first's, and from the first fit's
    starting variance, arch's backcast). So the variance known at a date uses no later return.

    Parameters
    ----------
    r
        ``(T, U)`` daily log returns, ``r[t]`` ending on the history's row ``t + 1``.
    upto
        The last row of the history needed (the last valuation date): ``r[:upto]`` is used.
    params
        ``var:`` (``garch_min_days``, ``garch_refit_days``).
    file
        The scenario file, named by errors.
    underlyings, dates
        The names of ``r``'s columns and the history's dates, named by errors.

    Returns
    -------
    numpy.ndarray
        ``(upto + 1, U)``: row ``t`` the variance of ``r[t]`` known at the close of row ``t``
        (row ``upto``: the forecast for the day after the last valuation date)
        [squared log return].

    Raises
    ------
    InputError
        ``upto < garch_min_days`` (``var.garch_min_days``); a fit with non-finite parameters
        (``var.filter``).
    """
    if upto < params.garch_min_days:
        raise InputError(
            f"{upto} daily returns: filter: garch's first fit needs garch_min_days ({params.garch_min_days})",
            file=file,
            key_path="var.garch_min_days",
        )
    arch_model = _arch_model(file)
    refit = garch_refit_dates(upto, params)
    n_u = r.shape[1]
    est = np.empty((4, refit.size, n_u))  # omega [squared log return], alpha, beta, first variance
    # one arch fit per (underlying, refit date): arch has no batched fit (each is a scipy
    # optimisation of one series' likelihood); the filtering after them is one vectorised pass
    for j in range(n_u):
        for k, i in enumerate(refit.tolist()):
            est[:, k, j] = _garch_fit(np.ascontiguousarray(r[:i, j]), arch_model)
    bad = np.argwhere(~np.isfinite(est).all(axis=0))
    if bad.size:
        k, j = bad[0]
        name = underlyings[j] if underlyings is not None else f"column {j}"
        day = dates[refit[k]].date() if dates is not None else f"row {refit[k]}"
        raise InputError(
            f"the GARCH(1,1) fit of {name} on its returns up to {day} failed (non-finite parameters)",
            file=file,
            key_path="var.filter",
        )
    fit = np.clip((np.arange(upto + 1) - params.garch_min_days) // params.garch_refit_days, 0, None)
    return garch_variance_path(r[:upto], est[0], est[1], est[2], fit, est[3, 0])


#: The GARCH(1,1) fits made in this process: SHA-1 of the returns fitted -> omega [squared log
#: return], alpha, beta and the first return's variance. A backtest runs the method once per
#: stretch of dates between expiries, a chunked run once per chunk of accounts: each run would
#: refit the same returns (arch's fit is deterministic). Emptied when it reaches
#: :data:`_GARCH_FITS_MAX` entries (about 100 bytes each).
_GARCH_FITS: dict[bytes, np.ndarray] = {}
_GARCH_FITS_MAX = 50_000


def clear_garch_fits() -> None:
    """Forget the GARCH(1,1) fits made in this process (the next run refits: e.g. to time it)."""
    _GARCH_FITS.clear()


def _garch_fit(x: np.ndarray, arch_model: Any) -> np.ndarray:
    """arch's zero-mean GARCH(1,1) fit of daily log returns ``x``: omega [squared log return], alpha,
    beta, and the variance of ``x[0]`` (from arch's backcast) [squared log return]."""
    key = hashlib.sha1(x.tobytes(), usedforsecurity=False).digest()
    got = _GARCH_FITS.get(key)
    if got is not None:
        return got
    scale = 100.0  # arch fits returns in percent best
    with warnings.catch_warnings():  # a flat series: arch divides by its zero variance
        warnings.simplefilter("ignore", RuntimeWarning)
        res = arch_model(x * scale, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(
            disp="off", show_warning=False
        )
    omega, alpha, beta = res.params[["omega", "alpha[1]", "beta[1]"]].to_numpy()
    first = float(np.asarray(res.conditional_volatility)[0]) ** 2
    out = np.array([omega / scale**2, alpha, beta, first / scale**2])
    if len(_GARCH_FITS) >= _GARCH_FITS_MAX:
        _GARCH_FITS.clear()
    _GARCH_FITS[key] = out
    return out


def _rows(last: np.ndarray, n: int) -> np.ndarray:
    """``(n, D)`` rows ``last[d] - n + 1 .. last[d]`` of each valuation date."""
    return last[None, :] - n + 1 + np.arange(n)[:, None]


def build_scenarios(
    history: xr.Dataset, params: VarParams, file: str | None, valuation: np.ndarray | None = None
) -> ScenarioSet:
    """The scenario set of a history (:func:`marginsim.io.history.read_history`) and ``var:``.

    Parameters
    ----------
    history, params
        The history and the ``var:`` section.
    file
        The scenario file, named by errors.
    valuation
        Valuation dates (datetime64, dates of the history; a backtest's ``date`` dim): each date's
        scenarios are the returns ending on the ``lookback_days`` dates up to it, filtered with
        that date's vol (as many for every date: as many as the first date has). ``None``: one
        valuation at the end of the history.

    Raises
    ------
    InputError
        A history shorter than ``holding_days + 1`` dates, a stress window in which no return of
        the history ends; with ``valuation``: a date not in the history or without a return
        before it, with ``filter: garch`` a date with fewer than ``garch_min_days`` returns up to
        it (``var.garch_min_days``), a stress window that ends after the first date.
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
    ends = dates[h:]  # end date of each h-day return (row j ends on dates[j + h])
    raw = overlapping_sums(r, h)
    if valuation is None:
        last = np.array([raw.shape[0] - 1])
    else:
        at = dates.get_indexer(pd.DatetimeIndex(valuation).normalize())
        missing = np.flatnonzero(at < 0)
        if missing.size:
            raise InputError(
                f"valuation date {pd.Timestamp(valuation[missing[0]]).date()} is not a date of the history",
                file=file,
                key_path="history",
            )
        last = at - h
        if last.min() < 0:
            raise InputError(
                f"valuation date {pd.Timestamp(valuation[int(np.argmin(last))]).date()} has no {h}-day return "
                "of the history before it",
                file=file,
                key_path="history",
            )
        if params.filter == "garch" and at.min() < params.garch_min_days:
            raise InputError(
                f"valuation date {pd.Timestamp(valuation[int(np.argmin(at))]).date()} has {int(at.min())} "
                f"daily returns of history up to it: filter: garch's first fit needs garch_min_days "
                f"({params.garch_min_days}); give a longer history, a later first date or lower "
                "var.garch_min_days",
                file=file,
                key_path="var.garch_min_days",
            )
    n = min(params.lookback_days, int(last.min()) + 1)
    rows = _rows(last, n)  # (n, D)
    if params.filter == "none":
        main = raw[rows]
    elif valuation is None:  # the whole history: each return scaled by today's vol / its date's
        at_date, now = (
            ewma_variance(r, params.ewma_lambda, params.ewma_seed_days)
            if params.filter == "ewma"
            else garch_variance(r, file)
        )
        main = overlapping_sums(filter_returns(r, at_date, now), h)[rows]
    else:  # per date: sum of r / vol at its date, times the vol after the date's own return
        if params.filter == "ewma":
            at_date, now = ewma_variance(r, params.ewma_lambda, params.ewma_seed_days)
            after = np.concatenate([at_date[1:], now[None, :]])  # variance after each return
            rd = r
        else:  # garch refitted along the dates: the returns after the last date are not read
            upto = int(at.max())
            unds = [str(u) for u in history["underlying"].values]
            path = garch_refit_variance(r, upto, params, file, unds, dates)
            at_date, after, rd = path[:-1], path[1:], r[:upto]
        z = overlapping_sums(np.divide(rd, np.sqrt(at_date), out=rd.copy(), where=at_date > 0), h)
        main = z[rows] * np.sqrt(after[last + h - 1])[None, :, :]
    parts = [main]  # (n, D, U)
    index = [rows]
    vol_unds = [u for u in history.attrs.get("vol_underlyings", "").split(", ") if u]
    raw_v = None
    if "vol" in history and vol_unds:
        rv = np.nan_to_num(np.diff(np.log(history["vol"].values), axis=0))  # no vol history: no move
        raw_v = overlapping_sums(rv, h)
    vparts = [raw_v[rows]] if raw_v is not None else []
    n_d = last.size
    stress = params.stress
    n_windows = 0
    for i, w in enumerate(stress.windows if stress is not None else []):
        inside = np.flatnonzero((ends >= pd.Timestamp(w.start)) & (ends <= pd.Timestamp(w.to)))
        if not inside.size:
            raise InputError(
                f"no {h}-day return of the history ends from {w.start} to {w.to} (history: {dates[0].date()} "
                f"to {dates[-1].date()})",
                file=file,
                key_path=("var", "stress", "windows", i),
            )
        if inside[-1] > last.min():
            raise InputError(
                f"the window ends after the first valuation date ({ends[last.min()].date()}): its returns "
                "would come from the future",
                file=file,
                key_path=("var", "stress", "windows", i),
            )
        parts.append(np.broadcast_to(raw[inside][:, None, :], (inside.size, n_d, raw.shape[1])))
        index.append(np.broadcast_to(inside[:, None], (inside.size, n_d)))
        if raw_v is not None:
            vparts.append(np.broadcast_to(raw_v[inside][:, None, :], (inside.size, n_d, raw_v.shape[1])))
        n_windows += int(inside.size)
    unds = [str(u) for u in history["underlying"].values]
    explicit = stress.scenarios if stress is not None else []
    n_exp = len(explicit)
    price_x = np.ones((len(unds), n_exp))
    vol_x = np.ones((len(unds), n_exp))
    position = {u: j for j, u in enumerate(unds)}
    for s, sc in enumerate(explicit):  # a few named scenarios, each a few underlyings
        for u, m in sc.moves.items():
            if u in position:
                price_x[position[u], s] = 1.0 + m
        for u, m in sc.vol_moves.items():
            if u in position:
                vol_x[position[u], s] = 1.0 + m
    index.append(np.broadcast_to(raw.shape[0] + np.arange(n_exp)[:, None], (n_exp, n_d)))
    n_floor = 0
    floor_parts: list[np.ndarray] = []
    floor_v: list[np.ndarray] = []
    if params.apc == "floor":
        n_floor = min(params.apc_floor_days, int(last.min()) + 1)
        f_rows = _rows(last, n_floor)
        floor_parts = [raw[f_rows]]
        index.append(f_rows)
        if raw_v is not None:
            floor_v = [raw_v[f_rows]]

    def factor(x: np.ndarray) -> np.ndarray:  # (m, D, U) log moves -> (U, m, D) factors
        return np.exp(np.moveaxis(x, 2, 0))

    hist = np.concatenate(parts, axis=0)
    log_price = np.concatenate(
        [np.moveaxis(hist, 2, 0), np.broadcast_to(np.log(price_x)[:, :, None], (len(unds), n_exp, n_d))]
        + [np.moveaxis(p, 2, 0) for p in floor_parts],
        axis=1,
    )  # (U, S, D) log moves
    price = np.exp(log_price)
    price[:, hist.shape[0] : hist.shape[0] + n_exp] = price_x[:, :, None]  # the explicit moves as given
    vol_moves = bool(vol_unds) or any(sc.vol_moves for sc in explicit)
    vol = None
    if vol_moves:
        hv = factor(np.concatenate(vparts, axis=0)) if vparts else np.ones((len(unds), hist.shape[0], n_d))
        fv = [factor(p) for p in floor_v] if floor_v else [np.ones((len(unds), n_floor, n_d))]
        vol = np.concatenate([hv, np.broadcast_to(vol_x[:, :, None], (len(unds), n_exp, n_d))] + fv, axis=1)
    text = np.concatenate(
        [
            ends.strftime("%Y-%m-%d").to_numpy(dtype=object),
            np.array([sc.name for sc in explicit], dtype=object),
        ]
    )
    return ScenarioSet(
        underlyings=unds,
        price=np.ascontiguousarray(price),
        log_price=np.ascontiguousarray(log_price),
        vol=None if vol is None else np.ascontiguousarray(vol),
        label_index=np.ascontiguousarray(np.concatenate(index, axis=0)),
        label_text=text,
        main=slice(0, n),
        windows=slice(n, n + n_windows),
        explicit=slice(n + n_windows, n + n_windows + n_exp),
        floor=slice(n + n_windows + n_exp, n + n_windows + n_exp + n_floor),
        vol_underlyings=vol_unds,
    )
