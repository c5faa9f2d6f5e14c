"""Risk ratios, risk states and margin-call deadlines of the account layer.

A margin call raised at a step is due at the call deadline (16:00 by default) of the same business
day when raised before the cut-off (12:00), else of the next business day; business days skip
weekends and the holidays of the ``holidays`` package's market calendar (HKEX: ``XHKG``). A forced
liquidation is due at once.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

import numpy as np

from ...errors import InputError
from ...kernels import account as K
from ...model import Inputs
from .context import Ctx

__all__ = ["business_holidays", "holidays_for", "step_times", "minutes", "states", "deadlines"]


@lru_cache(maxsize=32)
def _holidays_cached(code: str, first_year: int, last_year: int) -> tuple:
    import holidays  # imported on first use: only books with margin-call deadlines need a calendar

    years = list(range(first_year, last_year + 1))
    try:
        cal = holidays.financial_holidays(code, years=years)
    except (NotImplementedError, KeyError, AttributeError):
        cal = holidays.country_holidays(code, years=years)
    return tuple(sorted(cal))


def business_holidays(code: str, first_year: int, last_year: int) -> np.ndarray:
    """Non-business days (besides weekends) of a market or country, from the ``holidays`` package.

    Parameters
    ----------
    code
        A market code of ``holidays.financial_holidays`` (e.g. ``XHKG``: Hong Kong Exchanges) or a
        country code of ``holidays.country_holidays`` (e.g. ``HK``).
    first_year, last_year
        Years to cover.

    Returns
    -------
    numpy.ndarray
        ``datetime64[D]`` holidays.

    Raises
    ------
    InputError
        For a code the ``holidays`` package does not know.
    """
    try:
        days = _holidays_cached(code, int(first_year), int(last_year))
    except NotImplementedError:
        raise InputError(
            f"unknown holiday calendar {code!r} (a `holidays` market code such as XHKG, or a country code)",
            key_path="account.calendar",
        ) from None
    return np.array(days, dtype="datetime64[D]")


def holidays_for(ctx: Ctx, code: str, first: int, last: int, key_path: str) -> np.ndarray:
    """Holidays of ``code`` (:func:`business_holidays`); an unknown code is an input error at ``key_path``."""
    try:
        return business_holidays(code, first, last)
    except InputError as e:
        raise InputError(e.problem, file=ctx.file, key_path=key_path) from None



def _local_naive(t: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return t.astimezone(tz).replace(tzinfo=None) if t.tzinfo is not None else t


def step_times(ctx: Ctx, inputs: Inputs, tz: zoneinfo.ZoneInfo) -> tuple[np.datetime64, np.ndarray | None]:
    """Evaluation time (as_of, local) and the time of each path step (None without a ``step`` dim)."""
    sc, p = ctx.sc, ctx.params
    if isinstance(sc.as_of, dt.datetime):
        t0 = _local_naive(sc.as_of, tz)
    else:
        t0 = dt.datetime.combine(sc.as_of, p.settlement_time)
    t0_64 = np.datetime64(t0, "s")
    if "step" not in inputs.grid_dims:
        return t0_64, None
    n_s = int(inputs.market.sizes["step"])
    if p.step_times is not None:
        if len(p.step_times) != n_s:
            raise InputError(
                f"account.step_times has {len(p.step_times)} times; the path has {n_s} steps",
                file=ctx.file,
                key_path="account.step_times",
            )
        return t0_64, np.array([np.datetime64(_local_naive(t, tz), "s") for t in p.step_times])
    mc = sc.grid.monte_carlo if sc.grid is not None else None
    minutes = p.step_minutes if p.step_minutes is not None else (mc.step_days * 1440.0 if mc else 0.0)
    offsets = np.round(np.arange(n_s) * minutes * 60.0).astype(np.int64).astype("timedelta64[s]")
    return t0_64, t0_64 + offsets


def minutes(t: dt.time) -> float:
    """A time of day in minutes after midnight."""
    return t.hour * 60.0 + t.minute + t.second / 60.0



def states(
    equity_b: np.ndarray, init_b: np.ndarray, maint_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Risk ratios and the risk state per account and grid point.

    Parameters
    ----------
    equity_b, init_b, maint_b
        Equity, broker initial and maintenance margin (account, grid point) [base currency].

    Returns
    -------
    risk_ratio, maintenance_risk_ratio, state
        Initial / equity and maintenance / equity [1 = 100 %; inf when equity <= 0]; the state
        (:data:`marginsim.kernels.account.STATE_NAMES`: 0 normal, 1 margin call, 2 forced
        liquidation).
    """
    return (
        K.risk_ratio(init_b, equity_b),
        K.risk_ratio(maint_b, equity_b),
        K.risk_state(equity_b, init_b, maint_b),
    )


def deadlines(
    ctx: Ctx,
    inputs: Inputs,
    tz: zoneinfo.ZoneInfo,
    state: np.ndarray,
    gd: list[str],
    gshape: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """When each outstanding call was raised, when it is due, and whether it is overdue.

    Parameters
    ----------
    ctx
        The run's context.
    inputs
        The in-memory inputs (the times of the path's steps).
    tz
        The account layer's time zone.
    state
        Risk state (account, grid point).
    gd, gshape
        The grid dims and their sizes.

    Returns
    -------
    call_time, deadline, overdue
        Arrays (account, *grid dims): ``datetime64[s]`` local times (NaT: no call) and a flag.
    """
    params = ctx.params
    n_a = state.shape[0]
    t0, steps = step_times(ctx, inputs, tz)
    st = state.reshape((n_a, *gshape))
    if steps is not None:
        ax = 1 + gd.index("step")
        start = K.call_start(st, axis=ax)
        shape_t = [1] * st.ndim
        shape_t[ax] = steps.size
        t_step = np.broadcast_to(steps.reshape(shape_t), st.shape)
        start_c = np.clip(start, 0, None)
        call_t = np.where(start >= 0, steps[start_c], np.datetime64("NaT", "s"))
    else:
        t_step = np.broadcast_to(t0, st.shape)
        call_t = np.where(st != K.NORMAL, t0, np.datetime64("NaT", "s"))
    years = [t0.astype("datetime64[Y]").astype(int) + 1970]
    if steps is not None:
        years.append(steps[-1].astype("datetime64[Y]").astype(int) + 1970)
    hol = holidays_for(ctx, params.calendar, min(years) - 1, max(years) + 2, "account.calendar")
    due_call = K.call_deadline(
        call_t,
        cutoff_minutes=minutes(params.call_cutoff),
        deadline_minutes=minutes(params.call_deadline),
        holidays=hol,
    )
    deadline = np.where(
        st == K.MARGIN_CALL, due_call, np.where(st == K.FORCED_LIQUIDATION, t_step, np.datetime64("NaT", "s"))
    )
    overdue = (st == K.MARGIN_CALL) & (t_step > due_call)
    return call_t, deadline, overdue
