"""Margin backtests over a market history (``marginsim backtest``, :func:`backtest`).

The book is held fixed and the market rolled day by day from the scenario's ``history:``: on each
date the underlyings take the history's close, the contracts' times to expiry run from that date
(options keep their strike and expiry) and, where the history has implied vols, option vols move
by the change of the history's vol since the valuation date. Each method's margin on each date
is set against the loss the book realises over the next ``holding_days`` dates of the history.

Vectorised over dates: each method runs with a ``date`` grid dim
(:func:`marginsim.model.with_dates`), once for each set of live contracts. A contract with an
expiry drops out of the book on its expiry date (it is live while the date is before its expiry;
options and futures alike); the method runs once when no held contract expires within the tested
dates, else once per stretch of dates between expiries (a few runs, each over many dates). A
position that drops out within a holding period is valued at the end of it at its expiry value
(an option's intrinsic value at that date's close; a future at that date's price). An account
holding no live contract on a date has no margin and no loss on it (that date is not tested).

Statistics per method and account (:class:`BacktestResult`): days tested, exceedances (loss
above margin), exceedance rate, Kupiec's proportion-of-failures and Christoffersen's
independence p-values (chi-squared, 1 degree of freedom: ``scipy.stats.chi2``), and
procyclicality: peak-to-trough ratio (largest margin / smallest) and largest 1-day and 30-day
margin increases as fractions of the earlier margin (over tested dates, in dates of the
history). The overlapping ``holding_days``-day losses make consecutive exceedances dependent
when ``holding_days`` > 1: Christoffersen's test then rejects more often than its size.

Methods that read the history (``var``) take, at each date tested, only the history up to that
date. The backtest starts where each such date has its full window: for ``var``, at least
``lookback_days + holding_days`` closes up to the first date tested (``var.lookback_days``
scenarios of ``var.holding_days``-day returns; more with ``apc: floor``, a longer EWMA seed or
``filter: garch``'s first fit: :func:`history_needed`). Then var's margin at a date is exactly
that of the scenario valued on that date with the history cut there, with as many scenarios on
every date; with ``filter: garch`` it uses only that history too, but its GARCH(1,1) parameters
are those of the latest refit (every ``var.garch_refit_days`` dates of the history, from the first
with ``var.garch_min_days`` returns), not a fit on the whole cut history. By default the
first date tested is the first such date; an earlier ``--from`` is an error (lower
``var.lookback_days`` to backtest earlier dates).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import chi2

from .api import load, margin
from .errors import InputError
from .kernels import backtest as K
from .model import Inputs, with_dates
from .params.var import VarParams
from .registry import applicable_methods
from .scenario import ScenarioFile

__all__ = [
    "backtest",
    "BacktestResult",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_HOLDING_DAYS",
    "INCREASE_WINDOWS",
    "LOOK_AHEAD_METHODS",
    "STATISTICS",
    "history_needed",
]

log = logging.getLogger(__name__)

#: Coverage the exceedance tests expect by default [fraction]: 99 %, EMIR RTS 153/2013 Art. 24(1)(b)
#: (initial margin of instruments other than OTC derivatives); the expected exceedance rate is 1 - it.
DEFAULT_CONFIDENCE = 0.99

#: Holding period of the realised loss without ``holding_days`` nor a ``var.holding_days`` [dates
#: of the history]: 2, the VaR method's default.
DEFAULT_HOLDING_DAYS = 2

#: The windows of the largest margin increases [dates of the history]: 1 day and 30 days.
INCREASE_WINDOWS = (1, 30)

#: Methods that build their margin from the whole history (its last dates) rather than from the
#: history up to each date of a ``date`` grid dim: backtesting them would use returns after the date
#: tested (look-ahead), so :func:`backtest` refuses them. None now: ``var``, over a ``date`` dim,
#: takes each date's own window (:func:`marginsim.methods.var.scenarios.build_scenarios`).
LOOK_AHEAD_METHODS: frozenset[str] = frozenset()

#: The statistics per method and account: JSON key -> (unit, description).
STATISTICS: dict[str, tuple[str, str]] = {
    "days": ("count", "dates tested (margin and realised loss both known)"),
    "exceedances": ("count", "dates whose realised loss exceeded the margin"),
    "exceedance_rate": ("fraction", "exceedances / days"),
    "kupiec_pof_p": ("1", "Kupiec proportion-of-failures p-value (chi2, 1 dof)"),
    "christoffersen_independence_p": ("1", "Christoffersen independence p-value (chi2, 1 dof)"),
    "peak_to_trough": ("1", "largest margin / smallest margin"),
    "largest_1_day_increase": ("fraction", "largest 1-day margin increase / the earlier margin"),
    "largest_30_day_increase": ("fraction", "largest 30-day margin increase / the earlier margin"),
}


@dataclass
class BacktestResult:
    """A backtest: the daily series and the statistics per method and account.

    Attributes
    ----------
    series
        Dataset over ``method``, ``account`` and ``date`` (the dates tested): ``margin``
        [reporting currency] (method, account, date), ``loss`` [reporting currency, losses
        positive] (account, date): the loss over the next ``holding_days`` dates, and
        ``exceedance`` (method, account, date, bool). NaN where the account holds no live
        contract.
    statistics
        Dataset over ``method`` and ``account``: the variables of :data:`STATISTICS`.
    scenario
        The scenario's name.
    holding_days, confidence, requirement
        The loss horizon [dates], the coverage the tests expect [fraction], and the result
        variable taken as each method's margin (``maintenance`` or ``initial``).
    dropped_out
        Contract -> expiry (YYYY-MM-DD) of the held contracts that expire on or before the last
        date tested (those expired before the first are in none of its runs).
    runs
        Method runs per method (1, or one per stretch between expiries).
    """

    series: xr.Dataset
    statistics: xr.Dataset
    scenario: str
    holding_days: int
    confidence: float
    requirement: str
    currency: str
    dropped_out: dict[str, str] = field(default_factory=dict)
    runs: int = 1

    @property
    def methods(self) -> list[str]:
        return [str(m) for m in self.series["method"].values]

    @property
    def accounts(self) -> list[str]:
        return [str(a) for a in self.series["account"].values]

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``marginsim backtest --json``.

        Shape::

            {"scenario": NAME, "currency": CCY, "from": "YYYY-MM-DD", "to": "YYYY-MM-DD",
             "holding_days": 2, "confidence": 0.99, "requirement": "maintenance",
             "dropped_out": {CONTRACT: "YYYY-MM-DD", ...},
             "methods": {METHOD: {ACCOUNT: {"days": int, "exceedances": int,
                                            "exceedance_rate": float, "kupiec_pof_p": float,
                                            "christoffersen_independence_p": float,
                                            "peak_to_trough": float,
                                            "largest_1_day_increase": float,
                                            "largest_30_day_increase": float}}}}

        A statistic that cannot be computed (no date tested, a margin of 0) is ``null``.
        """
        dates = self.series["date"].values
        st = {k: self.statistics[k].transpose("method", "account").values.tolist() for k in STATISTICS}
        methods = {
            m: {
                a: {k: _plain(st[k][i][j], integer=k in ("days", "exceedances")) for k in STATISTICS}
                for j, a in enumerate(self.accounts)
            }
            for i, m in enumerate(self.methods)
        }
        return {
            "scenario": self.scenario,
            "currency": self.currency,
            "from": _day(dates[0]) if dates.size else None,
            "to": _day(dates[-1]) if dates.size else None,
            "holding_days": self.holding_days,
            "confidence": self.confidence,
            "requirement": self.requirement,
            "dropped_out": dict(self.dropped_out),
            "methods": methods,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """A readable table: one row per method and account."""
        d = self.to_dict()
        head = (
            f"backtest {self.scenario}: {d['from']} to {d['to']}, loss over {self.holding_days} days vs "
            f"{self.requirement} margin [{self.currency}], expected exceedance rate {1 - self.confidence:.2%}"
        )
        lines = [head]
        if self.dropped_out:
            lines.append(
                "dropped out on expiry: " + ", ".join(f"{c} {e}" for c, e in self.dropped_out.items())
            )
        cols = (
            "method",
            "account",
            "days",
            "exceed",
            "rate",
            "Kupiec p",
            "Christ. p",
            "peak/trough",
            "max 1d",
            "max 30d",
        )
        widths = (18, 18, 7, 7, 8, 9, 10, 12, 9, 9)
        lines.append(
            "".join(f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cols, widths)))
        )

        def num(v: Any, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        for m, per in d["methods"].items():
            for a, s in per.items():
                cells = (
                    m,
                    a,
                    num(s["days"], "d"),
                    num(s["exceedances"], "d"),
                    num(s["exceedance_rate"], ".2%"),
                    num(s["kupiec_pof_p"], ".3f"),
                    num(s["christoffersen_independence_p"], ".3f"),
                    num(s["peak_to_trough"], ".2f"),
                    num(s["largest_1_day_increase"], ".1%"),
                    num(s["largest_30_day_increase"], ".1%"),
                )
                lines.append(
                    "".join(
                        f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths))
                    )
                )
        return "\n".join(lines)


def _plain(v: Any, integer: bool = False) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return int(v) if integer else float(v)


def _day(d: Any) -> str:
    return str(np.datetime64(d, "D"))


def _parse_day(text: Any, key: str, file: str | None) -> np.datetime64:
    try:
        day = (
            np.datetime64(str(text), "D")
            if not isinstance(text, np.datetime64)
            else text.astype("datetime64[D]")
        )
    except ValueError:
        day = np.datetime64("NaT")
    if np.isnat(day):
        raise InputError(f"{text!r} is not a date (YYYY-MM-DD)", file=file, key_path=key)
    return day


def _holding_days(sc: ScenarioFile, given: int | None) -> int:
    if given is not None:
        h = given
    else:
        var = sc.section("var")
        h = getattr(var, "holding_days", None) or DEFAULT_HOLDING_DAYS
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
        raise InputError(
            f"holding_days must be a whole number of days >= 1, not {h!r}",
            file=sc.file,
            key_path="holding_days",
        )
    return int(h)


def history_needed(sc: ScenarioFile, method: str) -> tuple[int, str, str]:
    """Closes of the history a method needs up to (and including) the first date tested.

    ``var``: ``lookback_days + holding_days`` (``lookback_days`` overlapping ``holding_days``-day
    returns), at least ``apc_floor_days + holding_days`` with ``apc: floor`` and
    ``ewma_seed_days + 1`` with ``filter: ewma`` (the EWMA seed's returns) and
    ``garch_min_days + 1`` with ``filter: garch`` (the first GARCH fit's returns); every date then
    takes its full window, and its margin is that of the history cut at the date (with ``garch``:
    filtered with the parameters of the latest refit, see :mod:`marginsim.methods.var.scenarios`).
    Other methods: 1 (they do not read the history).

    Parameters
    ----------
    sc
        The scenario (its ``var:`` section; the defaults of :class:`VarParams` without one).
    method
        The method name.

    Returns
    -------
    tuple of (int, str, str)
        The closes [count], the key that sets them (``var.lookback_days``, ...; ``""`` for 1) and
        the sum that gives them (for messages).
    """
    if method != "var":
        return 1, "", ""
    p = sc.section("var") or VarParams()
    h = p.holding_days
    out = (p.lookback_days + h, "var.lookback_days", f"lookback_days {p.lookback_days} + holding_days {h}")
    if p.apc == "floor" and p.apc_floor_days + h > out[0]:
        out = (
            p.apc_floor_days + h,
            "var.apc_floor_days",
            f"apc_floor_days {p.apc_floor_days} + holding_days {h}",
        )
    if p.filter == "ewma" and p.ewma_seed_days + 1 > out[0]:
        out = (p.ewma_seed_days + 1, "var.ewma_seed_days", f"ewma_seed_days {p.ewma_seed_days} + 1")
    if p.filter == "garch" and p.garch_min_days + 1 > out[0]:
        out = (p.garch_min_days + 1, "var.garch_min_days", f"garch_min_days {p.garch_min_days} + 1")
    return out


def backtest(
    scenario: str | Path | dict | ScenarioFile | Inputs,
    methods: Sequence[str] | str | None = None,
    *,
    start: str | np.datetime64 | None = None,
    end: str | np.datetime64 | None = None,
    holding_days: int | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    requirement: str = "maintenance",
    engine: str = "auto",
) -> BacktestResult:
    """Backtest margin methods on the scenario's history: margin per date vs the realised loss.

    Parameters
    ----------
    scenario
        A scenario (path, mapping, :class:`ScenarioFile` or in-memory :class:`Inputs`) with a
        ``history:`` and without grid dims (the dates are the grid).
    methods
        Method names; default: the file's ``methods``, else every method the book needs but those
        of :data:`LOOK_AHEAD_METHODS` (refused when named here or in the file's ``methods``).
    start, end
        First and last date tested (``YYYY-MM-DD``, inclusive); default: the history's first
        date with the history each method needs before it (:func:`history_needed`: for
        ``var``, ``lookback_days + holding_days`` closes up to it), and its last date that has
        ``holding_days`` dates after it.
    holding_days
        Dates of the history over which the loss is realised [count]; default: the scenario's
        ``var.holding_days``, else :data:`DEFAULT_HOLDING_DAYS`.
    confidence
        Coverage the exceedance tests expect [fraction] (the expected exceedance rate is
        ``1 - confidence``); default :data:`DEFAULT_CONFIDENCE`.
    requirement
        The result variable taken as each method's margin: ``"maintenance"`` or ``"initial"``.
    engine
        Pricing engine: ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    BacktestResult

    Raises
    ------
    InputError
        No ``history:``; a grid dim; a bad or out-of-range ``start`` / ``end`` (key paths
        ``--from`` / ``--to``), a ``start`` with less history before it than a method needs
        (``--from``; without ``start``, a history too short for it: ``var.lookback_days``); no
        date with a known loss; a method without ``requirement``.
    """
    inputs = scenario if isinstance(scenario, Inputs) else load(scenario)
    sc = inputs.scenario
    file = sc.file
    inputs.require_in_memory("backtest")
    hist = inputs.history
    if hist is None:
        raise InputError(
            "a backtest needs the market's history: add history: {file: ...} to the scenario",
            file=file,
            key_path="history",
        )
    if inputs.grid_dims:
        raise InputError(
            f"a backtest runs on each date's market: remove the grid ({', '.join(inputs.grid_dims)})",
            file=file,
            key_path="grid",
        )
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise InputError(
            f"confidence must be in (0, 1), not {confidence!r}", file=file, key_path="confidence"
        )
    if requirement not in ("maintenance", "initial"):
        raise InputError(
            f"requirement must be 'maintenance' or 'initial', not {requirement!r}",
            file=file,
            key_path="requirement",
        )
    h = _holding_days(sc, holding_days)
    if methods is None and sc.methods is None:  # the methods that apply, but those that would look ahead
        names = applicable_methods(sc)
        left_out = [m for m in names if m in LOOK_AHEAD_METHODS]
        if left_out and len(left_out) < len(names):
            log.warning("backtest: %s left out (cannot be backtested yet)", ", ".join(left_out))
            names = [m for m in names if m not in LOOK_AHEAD_METHODS]
    elif methods is None:
        names = list(applicable_methods(sc))  # the file's `methods`: as named
    else:
        names = [methods] if isinstance(methods, str) else list(methods)
    ahead = [m for m in names if m in LOOK_AHEAD_METHODS]
    if ahead:
        raise InputError(
            f"method {ahead[0]!r} cannot be backtested yet: it builds its scenarios from the whole history "
            "(returns after each date tested); backtest the other methods (--method)",
            file=file,
            key_path="methods",
        )

    # -- the dates tested: in [start, end] with the history the methods need before them and h ---
    # -- dates of history after them ---------------------------------------------------------------
    all_dates = hist["date"].values.astype("datetime64[D]")
    n_all = all_dates.size
    first, last = all_dates[0], all_dates[-1]
    need, need_key, why = 1, "", ""
    needy = ""
    for m in names:
        n_m, key_m, why_m = history_needed(sc, m)
        if n_m > need:
            need, need_key, why, needy = n_m, key_m, why_m, m
    earliest = need - 1  # index of the first date with `need` closes up to it
    lo = first if start is None else _parse_day(start, "--from", file)
    hi = last if end is None else _parse_day(end, "--to", file)
    for day, key in ((lo, "--from"), (hi, "--to")):
        if day < first or day > last:
            raise InputError(f"{day} is outside the history ({first} to {last})", file=file, key_path=key)
    if lo > hi:
        raise InputError(f"--from {lo} is after --to {hi}", file=file, key_path="--from")
    i0 = int(np.searchsorted(all_dates, lo, side="left"))
    if i0 < earliest:
        if earliest > n_all - 1 - h:
            raise InputError(
                f"the history has {n_all} dates ({first} to {last}): {needy} needs {need} closes up to the "
                f"first date tested ({why}) and {h} after it; give a longer history or lower {need_key}",
                file=file,
                key_path="--from" if start is not None else need_key,
            )
        if start is not None:
            raise InputError(
                f"--from {lo} has {i0 + 1} closes of history up to it: {needy} needs {need} ({why}); the "
                f"first date with enough is {all_dates[earliest]} (or lower {need_key})",
                file=file,
                key_path="--from",
            )
        i0 = earliest
        if hi < all_dates[i0]:
            raise InputError(
                f"--to {hi} is before the first date with the history {needy} needs ({all_dates[i0]}: "
                f"{need} closes, {why})",
                file=file,
                key_path="--to",
            )
    i1 = min(int(np.searchsorted(all_dates, hi, side="right")), n_all - h)
    if i1 <= i0:
        raise InputError(
            f"no date from {lo} to {hi} has {h} dates of history after it (the history ends {last})",
            file=file,
            key_path="--to",
        )
    tested = np.arange(i0, i1)
    dates = all_dates[tested]

    # -- the market per date: closes and the history's vol change since the valuation date ------
    vol_shift = None
    if "vol" in hist:
        as_of = np.datetime64(sc.as_of_date, "D")
        ref = max(int(np.searchsorted(all_dates, as_of, side="right")) - 1, 0)
        vol_shift = hist["vol"] - hist["vol"].isel(date=ref)

    # every held contract's underlying must have a history (else its market would stand still)
    c_all = inputs.contracts
    held_und = np.unique(c_all["underlying"].values[np.unique(inputs.book["contract_index"].values)])
    lacking = [str(u) for u in held_und if u not in set(hist["underlying"].values.tolist())]
    if lacking:
        raise InputError(
            f"underlying {lacking[0]!r} of a held contract has no history (the history's: "
            f"{', '.join(map(str, hist['underlying'].values))}); map it with history.columns",
            file=file,
            key_path="history.columns",
        )

    # given SPAN risk arrays (a clearing-house file's, or the scenario's) are those of one day:
    # they would not follow the market from date to date
    if "span" in names:
        held_k = np.unique(inputs.book["contract_index"].values)
        ra = c_all["risk_array"].transpose("contract", ...).values[held_k]
        given = np.flatnonzero(~np.isnan(ra).all(axis=1))
        if given.size:
            name = str(c_all["contract"].values[held_k[given[0]]])
            source = sc.span.source if sc.span is not None and sc.span.source is not None else None
            raise InputError(
                f"contract {name!r} has a given SPAN risk array (of one day: it would not follow the history); "
                "backtest SPAN on contracts whose risk arrays are computed (give SPAN parameters instead)",
                file=file,
                key_path="span.source" if source else ("contracts", name, "risk_array"),
            )

    # -- live contracts: a contract with an expiry drops out on its expiry date ------------------
    book = inputs.book
    c_index = book["contract_index"].values
    held = np.unique(c_index)
    expiry = inputs.contracts["expiry"].values.astype("datetime64[D]")
    exp_held = expiry[held]
    ends = np.unique(exp_held[~np.isnat(exp_held) & (exp_held > dates[0]) & (exp_held <= dates[-1])])
    dropped = {
        str(inputs.contracts["contract"].values[k]): _day(expiry[k])
        for k in held
        if not np.isnat(expiry[k]) and expiry[k] <= dates[-1]
    }
    segment = np.searchsorted(ends, dates, side="right")  # stretch of each date between expiries
    pos_expiry = expiry[c_index]

    accounts = inputs.accounts
    pieces: list[xr.DataArray] = []
    runs = 0
    method_names = names
    for s in np.unique(segment):  # one run per stretch of dates between expiries (not per date)
        at = np.flatnonzero(segment == s)
        d0 = dates[at[0]]
        live = np.isnat(pos_expiry) | (pos_expiry > d0)
        close = hist["close"].isel(date=tested[at])
        if not live.any():
            continue
        sub = inputs.with_book(
            c_index[live],
            book["quantity"].values[live],
            book["account_name"].values[book["account_index"].values[live]],
        )
        seg = with_dates(sub, close, None if vol_shift is None else vol_shift.isel(date=tested[at]))
        result = margin(seg, methods=method_names, engine=engine, detail=False)
        runs += 1
        per_method = []
        for m in method_names:
            ds = result.methods[m]
            if requirement not in ds or set(ds[requirement].dims) != {"account", "date"}:
                raise InputError(
                    f"method {m!r} has no {requirement!r} result per account and date to backtest",
                    file=file,
                    key_path="methods",
                )
            per_method.append(ds[requirement].transpose("account", "date").reindex(account=accounts))
        pieces.append(xr.concat(per_method, dim="method").assign_coords(method=method_names))
    if not pieces:
        raise InputError(
            f"no position of the book is live from {dates[0]} to {dates[-1]} (every contract has expired)",
            file=file,
            key_path="--from",
        )
    margin_da = xr.concat(pieces, dim="date").reindex(date=dates.astype("datetime64[ns]"))

    loss, holds = _realised_loss(inputs, hist, tested, h, vol_shift)
    margin_v = np.where(holds[None], margin_da.transpose("method", "account", "date").values, np.nan)
    loss_v = np.where(holds, loss, np.nan)
    hit = K.exceedances(margin_v, loss_v[None])
    valid = ~np.isnan(margin_v) & ~np.isnan(loss_v)[None]
    statistics = _statistics(margin_v, hit, valid, 1.0 - confidence)
    coords = {"method": method_names, "account": accounts}
    series = xr.Dataset(
        {
            "margin": (("method", "account", "date"), margin_v),
            "loss": (("account", "date"), loss_v),
            "exceedance": (("method", "account", "date"), hit & valid),
        },
        coords={**coords, "date": dates.astype("datetime64[ns]")},
        attrs={"holding_days": h, "confidence": confidence, "requirement": requirement},
    )
    series["margin"].attrs.update(units=sc.currency, description=f"each method's {requirement} margin")
    series["loss"].attrs.update(units=sc.currency, description=f"loss realised over the next {h} dates")
    series["exceedance"].attrs.update(description="realised loss above the margin")
    stats = xr.Dataset({k: (("method", "account"), v) for k, v in statistics.items()}, coords=coords)
    for k, (unit, text) in STATISTICS.items():
        stats[k].attrs.update(units=unit, description=text)
    log.info("backtest %s: %d dates, %d method runs", sc.name, dates.size, runs)
    return BacktestResult(
        series=series,
        statistics=stats,
        scenario=str(sc.name),
        holding_days=h,
        confidence=float(confidence),
        requirement=requirement,
        currency=str(sc.currency),
        dropped_out=dropped,
        runs=runs,
    )


def _realised_loss(
    inputs: Inputs, hist: xr.Dataset, tested: np.ndarray, h: int, vol_shift: xr.DataArray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Loss of each account's live positions over the next ``h`` dates [reporting currency] and
    whether the account holds a live position, both ``(account, date tested)``."""
    at = np.union1d(tested, tested + h)  # every date whose value the losses need
    close = hist["close"].isel(date=at)
    dated = with_dates(inputs, close, None if vol_shift is None else vol_shift.isel(date=at))
    c = inputs.contracts
    held = np.unique(inputs.book["contract_index"].values)
    ch = c.isel(contract=held)
    level = dated.underlying_level(ch)
    value = xr.where(ch["is_option"], dated.option_premium(ch, level=level), level)
    unit = ch["multiplier"] * xr.DataArray(
        inputs.market["fx"].values[ch["underlying_index"].values], dims="contract"
    )
    v = (value * unit).transpose("contract", "date").values  # (held contract, at)
    now = np.searchsorted(at, tested)
    later = np.searchsorted(at, tested + h)
    pnl_unit = v[:, later] - v[:, now]  # gain per long contract over the holding period
    dates = hist["date"].values.astype("datetime64[D]")[tested]
    expiry = c["expiry"].values.astype("datetime64[D]")[held]
    live = np.isnat(expiry)[:, None] | (expiry[:, None] > dates[None, :])  # (held contract, date)
    book = inputs.book
    k = np.searchsorted(held, book["contract_index"].values)
    acct = book["account_index"].values
    qty = book["quantity"].values
    n_a = book.sizes["account"]
    loss = np.zeros((n_a, tested.size))
    np.add.at(loss, acct, -qty[:, None] * np.where(live[k], pnl_unit[k], 0.0))
    holds = np.zeros((n_a, tested.size))
    np.add.at(holds, acct, live[k].astype(float))
    return loss, holds > 0


def _statistics(margin: np.ndarray, hit: np.ndarray, valid: np.ndarray, p: float) -> dict[str, np.ndarray]:
    """The statistics of :data:`STATISTICS` per (method, account) from ``(method, account, date)``."""
    days = valid.sum(axis=-1).astype(float)
    x = (hit & valid).sum(axis=-1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(days > 0, x / np.where(days > 0, days, 1.0), np.nan)
    kupiec = K.kupiec_lr(days, x, p)
    ind = K.christoffersen_lr(K.transition_counts(hit & valid, valid))
    m = np.where(valid, margin, np.nan)
    out = {
        "days": days,
        "exceedances": x,
        "exceedance_rate": rate,
        "kupiec_pof_p": np.where(np.isnan(kupiec), np.nan, chi2.sf(np.nan_to_num(kupiec), 1)),
        "christoffersen_independence_p": np.where(np.isnan(ind), np.nan, chi2.sf(np.nan_to_num(ind), 1)),
        "peak_to_trough": K.peak_to_trough(m),
    }
    for w in INCREASE_WINDOWS:
        out[f"largest_{w}_day_increase"] = K.largest_increase(m, w)
    return out
