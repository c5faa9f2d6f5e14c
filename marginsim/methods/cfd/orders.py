"""Orders of CFD positions: when each was placed, at what price, and the step it opens at.

A position held before the path opens at step 0 at its given open price (else the market's base
price); a new order (placed at or after the first step's time) opens at the first step at or
after its time, at its limit price (else the market), if the available cash covers its initial
margin (checked in the path kernel).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...model import Inputs

__all__ = ["days_since_epoch", "order_times", "Orders", "cfd_orders"]

_DAY = 86400.0


def days_since_epoch(t: dt.datetime | dt.date) -> float:
    """Days since 1970-01-01 (UTC for times with a zone; naive times as given) [days]."""
    if isinstance(t, dt.datetime):
        if t.tzinfo is not None:
            t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return (t - dt.datetime(1970, 1, 1)).total_seconds() / _DAY
    return float((t - dt.date(1970, 1, 1)).days)


def order_times(inputs: Inputs, rows: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """Opening times and given open prices of book ``rows``.

    From the book's ``opened`` (datetimes or ``datetime64``; None / NaT: held before the path) and
    ``open_price`` (NaN: none) when it has them (a stored book), else from the scenario file's
    ``positions`` by the book's position numbers (which a chunk of the book keeps).

    Returns
    -------
    (opened, open_price)
        Per row: the order's time (``None``: held before the path) and price [price units; NaN:
        none given].
    """
    book, sc = inputs.book, inputs.scenario
    if "opened" in book or "open_price" in book:
        px = book["open_price"].values[rows] if "open_price" in book else np.full(rows.size, np.nan)
        opened: list[Any] = [None] * rows.size
        if "opened" in book:
            raw = book["opened"].values[rows]
            if raw.dtype.kind == "M":
                ts = pd.to_datetime(raw)
                opened = [None if pd.isna(t) else t.to_pydatetime() for t in ts]
            else:
                opened = [None if t is None or t != t else t for t in raw]
        return opened, np.asarray(px, dtype=float)
    where = book["position"].values[rows]
    table = sc.position_table()
    opened = [None] * where.size if table.opened is None else table.opened[where].tolist()
    px = np.full(where.size, np.nan) if table.open_price is None else table.open_price[where]
    return opened, px


@dataclass(frozen=True)
class Orders:
    """Per CFD position: its order.

    Attributes
    ----------
    opened
        Time the order was placed (``None``: held before the path).
    time
        That time [days since 1970-01-01]; ``-inf``: held before the path.
    order_price
        Given price [price units]; NaN: at the market.
    new_order
        Placed at or after the first step's time.
    open_step
        Step it opens at (0 for positions held before the path; the number of steps: after the
        last step).
    open_price
        Known open price [price units]: the given one, else the base price for positions held
        before the path; NaN: set by the path (a new order at the market).
    """

    opened: list[Any]
    time: np.ndarray
    order_price: np.ndarray
    new_order: np.ndarray
    open_step: np.ndarray
    open_price: np.ndarray


def cfd_orders(inputs: Inputs, rows: np.ndarray, times: np.ndarray, base_price: np.ndarray) -> Orders:
    """The orders of the CFD ``rows`` of the book against the step ``times``.

    Parameters
    ----------
    inputs
        The data model.
    rows
        The CFD rows of the book.
    times
        Time of every step [days since 1970-01-01].
    base_price
        Base price of each row's underlying [price units].
    """
    opened, given_px = order_times(inputs, rows)
    t_open = np.array([-np.inf if t is None else days_since_epoch(t) for t in opened], dtype=float)
    new_order = t_open >= times[0]
    open_step = np.where(new_order, np.searchsorted(times, t_open, side="left"), 0).astype(np.int64)
    open_px = np.where(np.isnan(given_px) & ~new_order, base_price, given_px)
    return Orders(opened, t_open, given_px, new_order, open_step, open_px)
