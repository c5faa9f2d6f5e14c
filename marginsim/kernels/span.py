"""SPAN kernels: pure numpy functions on arrays, no xarray, no I/O.

Leading axes of every array (accounts, grid points...) ride along; the axis each function
works on is stated in its docstring. Sign convention: SPAN losses are positive
(``loss = -pnl``), as in clearing-house risk arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "risk_array",
    "scanning_risk",
    "price_risk",
    "weighted_futures_price_risk",
    "SpreadLeg",
    "Spread",
    "intra_commodity_spreads",
    "spot_month_charge",
    "inter_commodity_credit",
    "short_option_minimum",
]


def risk_array(
    value_now: np.ndarray,
    value_moved: np.ndarray,
    multiplier: np.ndarray,
    weight: np.ndarray,
    decimals: int | None = None,
) -> np.ndarray:
    """Weighted losses of one long contract per scenario.

    Parameters
    ----------
    value_now
        Value of one unit now [price units], shape ``(...)``.
    value_moved
        Value in each scenario [price units], shape ``(..., S)``.
    multiplier
        Currency per price point per contract, broadcastable to ``(...)``.
    weight
        Scenario weights, shape ``(S,)`` or broadcastable to ``(..., S)``.
    decimals
        Round to this many decimals (clearing-house array precision); ``None`` keeps all.

    Returns
    -------
    numpy.ndarray
        Losses [currency per contract], positive = loss, shape ``(..., S)``.
    """
    loss = -(value_moved - np.asarray(value_now)[..., None]) * np.asarray(multiplier)[..., None] * weight
    if decimals is not None:
        loss = np.round(loss, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return loss


def scanning_risk(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scanning risk and active scenario.

    Parameters
    ----------
    loss
        Losses per scenario (last axis) [currency].

    Returns
    -------
    risk, active
        ``risk`` = the largest loss floored at 0 [currency]; ``active`` = 0-based index of the
        scenario with the largest loss (the first one on ties).
    """
    active = np.argmax(loss, axis=-1)
    risk = np.maximum(_pick(loss, active), 0.0)
    return risk, active


def _pick(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[..., index]`` element by element (one index per leading cell)."""
    flat = values.reshape(-1, values.shape[-1])
    return flat[np.arange(flat.shape[0]), index.ravel()].reshape(index.shape)


def price_risk(
    loss: np.ndarray, active: np.ndarray, pair: np.ndarray, time_scenarios: np.ndarray
) -> np.ndarray:
    """SPAN price risk: mean loss of the active scenario and its pair, less the time risk.

    Parameters
    ----------
    loss
        Losses per scenario (last axis) [currency].
    active
        0-based active scenario index, shape ``loss.shape[:-1]``.
    pair
        0-based index of each scenario's pair, shape ``(S,)`` (an unpaired scenario pairs with itself).
    time_scenarios
        0-based indices of the scenarios whose mean loss is the time risk (SPAN: 1 and 2).

    Returns
    -------
    numpy.ndarray
        Price risk [currency], floored at 0.
    """
    time_risk = loss[..., time_scenarios].mean(axis=-1)
    return np.maximum((_pick(loss, active) + _pick(loss, pair[active])) / 2.0 - time_risk, 0.0)


def weighted_futures_price_risk(price_risk_: np.ndarray, net_delta: np.ndarray) -> np.ndarray:
    """Price risk per unit of net delta [currency per delta]; 0 where the net delta is 0."""
    d = np.abs(net_delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, price_risk_ / np.where(d > 0, d, 1.0), 0.0)


@dataclass(frozen=True)
class SpreadLeg:
    """One leg of a spread.

    Attributes
    ----------
    index
        For intra spreads: a boolean mask over the month axis (the tier's months). For inter
        spreads: the integer index of the combined commodity on the last axis.
    side
        ``"A"`` or ``"B"``: A legs must be on one side (long or short), B legs on the other.
    ratio
        Delta per spread on this leg.
    rate
        Inter spreads: this leg's own credit rate [fraction]; ``None``: the spread's.
    flat
        Inter spreads: flat credit to this leg's combined commodity per spread formed [currency]
        (method F: minus the spread's amount shared among its combined commodities).
    """

    index: np.ndarray | int
    side: str
    ratio: float
    rate: float | None = None
    flat: float = 0.0


@dataclass(frozen=True)
class Spread:
    """A spread definition: a rate and its legs (taken in priority order by the caller)."""

    rate: float
    legs: Sequence[SpreadLeg]


def _sign(side: str, direction: int) -> int:
    return direction if side == "A" else -direction


def intra_commodity_spreads(
    month_delta: np.ndarray, spreads: Sequence[Spread]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intra-commodity (calendar) spread charge on a month-delta ledger.

    Spreads are formed in the given order; each is tried with its A legs long and B legs short,
    then the other way round. A leg draws from the months of its tier that are on the needed
    side, pro rata to their remaining delta; the deltas used are consumed. With one tier for the
    whole combined commodity on both legs this is the flat method: spreads = min(sum of long
    month-deltas, sum of short month-deltas).

    Parameters
    ----------
    month_delta
        Net delta per contract month, **first** axis = months [delta units]; the other axes
        (accounts, grid points) ride along.
    spreads
        Spreads in priority order; each leg's ``index`` is a boolean mask over the months.

    Returns
    -------
    charge, remaining, consumed
        ``charge`` [currency], shape ``month_delta.shape[1:]``; ``remaining`` month deltas after
        the spreads; ``consumed`` absolute delta used per month (both shaped like ``month_delta``).
    """
    remaining = np.array(month_delta, dtype=float, copy=True)
    consumed = np.zeros_like(remaining)
    charge = np.zeros(remaining.shape[1:])
    for spread in spreads:
        rows = [np.flatnonzero(leg.index) for leg in spread.legs]
        for direction in (1, -1):
            parts = []
            n = np.full(remaining.shape[1:], np.inf)
            for leg, r in zip(spread.legs, rows):
                part = np.maximum(_sign(leg.side, direction) * remaining[r], 0.0)
                avail = part.sum(axis=0)
                parts.append((part, avail))
                n = np.minimum(n, avail / leg.ratio)
            n = np.where(np.isfinite(n), n, 0.0)
            if not n.any():
                continue
            for leg, r, (part, avail) in zip(spread.legs, rows, parts):
                with np.errstate(divide="ignore", invalid="ignore"):
                    frac = np.where(avail > 0, n * leg.ratio / np.where(avail > 0, avail, 1.0), 0.0)
                take = part * np.minimum(frac, 1.0)
                remaining[r] -= _sign(leg.side, direction) * take
                consumed[r] += take
            charge += n * spread.rate
    return charge, remaining, consumed


def spot_month_charge(
    remaining: np.ndarray,
    consumed: np.ndarray,
    spot_mask: np.ndarray,
    rate_spread: float | np.ndarray,
    rate_outright: float | np.ndarray,
) -> np.ndarray:
    """Spot-month (delivery) charge: per spot month, ``rate_spread`` x the delta its intra spreads
    consumed plus ``rate_outright`` x the absolute delta left, summed over the spot months.

    Parameters
    ----------
    remaining, consumed
        Month deltas left after intra spreads, and absolute deltas consumed by them (first
        axis = months).
    spot_mask
        Boolean mask of the spot months.
    rate_spread
        Charge per unit of spot-month delta consumed by spreads [currency per delta]: one rate,
        or one per month (shape ``(M,)``).
    rate_outright
        Charge per unit of spot-month delta left after spreads [currency per delta] (0: no
        outright charge): one rate, or one per month.
    """
    n_m = spot_mask.shape[0]
    shape = (-1,) + (1,) * (remaining.ndim - 1)
    rs = np.broadcast_to(np.asarray(rate_spread, dtype=float), (n_m,))[spot_mask].reshape(shape)
    ro = np.broadcast_to(np.asarray(rate_outright, dtype=float), (n_m,))[spot_mask].reshape(shape)
    used = (rs * consumed[spot_mask]).sum(axis=0)
    left = (ro * np.abs(remaining[spot_mask])).sum(axis=0)
    return used + left


def inter_commodity_credit(
    net_delta: np.ndarray, wfpr: np.ndarray, spreads: Sequence[Spread]
) -> tuple[np.ndarray, np.ndarray]:
    """Inter-commodity spread credit.

    Parameters
    ----------
    net_delta
        Net delta per combined commodity, last axis = combined commodities [delta units].
    wfpr
        Weighted futures price risk per combined commodity [currency per delta], same shape.
    spreads
        Inter spreads in priority order; ``rate`` is the credit rate as a fraction, each leg's
        ``index`` the combined commodity's position on the last axis; a leg's own ``rate`` replaces
        the spread's, and its ``flat`` is added per spread formed (currency).

    Returns
    -------
    credit, remaining
        Credit per combined commodity [currency], and the net deltas left.
    """
    remaining = np.array(net_delta, dtype=float, copy=True)
    credit = np.zeros_like(remaining)
    for spread in spreads:
        for direction in (1, -1):
            n = np.full(remaining.shape[:-1], np.inf)
            for leg in spread.legs:
                s = _sign(leg.side, direction)
                n = np.minimum(n, np.maximum(s * remaining[..., leg.index], 0.0) / leg.ratio)
            n = np.where(np.isfinite(n), n, 0.0)
            for leg in spread.legs:
                s = _sign(leg.side, direction)
                rate = spread.rate if leg.rate is None else leg.rate
                credit[..., leg.index] += n * leg.ratio * wfpr[..., leg.index] * rate + n * leg.flat
                remaining[..., leg.index] -= s * n * leg.ratio
    return credit, remaining


def short_option_minimum(
    short_calls: np.ndarray,
    short_puts: np.ndarray,
    long_calls: np.ndarray,
    long_puts: np.ndarray,
    rate: np.ndarray,
    net: np.ndarray | bool = False,
) -> np.ndarray:
    """Short option minimum.

    Parameters
    ----------
    short_calls, short_puts, long_calls, long_puts
        Numbers of option contracts (non-negative).
    rate
        Charge per short option [currency per contract].
    net
        ``False`` (gross, CME): the larger of short calls and short puts. ``True``: the larger of
        net short calls and net short puts (after long options of the same kind).
    """
    gross = np.maximum(short_calls, short_puts)
    netted = np.maximum(np.maximum(short_calls - long_calls, 0.0), np.maximum(short_puts - long_puts, 0.0))
    return rate * np.where(net, netted, gross)
