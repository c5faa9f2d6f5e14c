"""Scenario sets as data.

A scenario set is an :class:`xarray.Dataset` over the ``scenario`` dim with the variables

- ``price_move``: the price move in multiples of the price scan range,
- ``vol_move``: the vol move in multiples of the vol scan range,
- ``weight``: the weight applied to the loss of the scenario,
- ``pair``: the 1-based number of the paired scenario (0 where unpaired),

and the ``scenario`` coordinate numbered from 1. SPAN's 16 scenarios are one such set; a
clearing-house file carries its own (``pointDef/scanPointDef``) and users may define others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = [
    "DEFAULT_EXTREME_MULTIPLIER",
    "DEFAULT_COVER_FRACTION",
    "COMPOSITE_DELTA_MOVES",
    "COMPOSITE_DELTA_WEIGHTS",
    "span16",
    "span16_arrays",
    "custom",
    "composite_delta_points",
    "time_risk_scenarios",
    "time_risk_indices",
]

#: Default extreme move in multiples of the price scan range (seed document, Takasbank file).
DEFAULT_EXTREME_MULTIPLIER = 3.0
#: Default share of the extreme loss that counts (seed document, Takasbank file).
DEFAULT_COVER_FRACTION = 0.32

#: Price moves of the composite-delta points [multiples of the price scan range].
COMPOSITE_DELTA_MOVES = (-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0)
#: Weights of the composite-delta points, as clearing-house files publish them (they sum to 1).
COMPOSITE_DELTA_WEIGHTS = (0.037, 0.111, 0.217, 0.270, 0.217, 0.111, 0.037)


def _dataset(price, vol, weight, pair, *, name: str) -> xr.Dataset:
    n = len(price)
    coords = {"scenario": np.arange(1, n + 1)}
    ds = xr.Dataset(
        {
            "price_move": ("scenario", np.asarray(price, dtype=float)),
            "vol_move": ("scenario", np.asarray(vol, dtype=float)),
            "weight": ("scenario", np.asarray(weight, dtype=float)),
            "pair": ("scenario", np.asarray(pair, dtype=np.int64)),
        },
        coords=coords,
        attrs={"name": name},
    )
    ds["price_move"].attrs.update(units="price scan ranges", description="price move per scenario")
    ds["vol_move"].attrs.update(units="vol scan ranges", description="implied vol move per scenario")
    ds["weight"].attrs.update(units="1", description="weight of the scenario's loss")
    ds["pair"].attrs.update(description="1-based number of the paired scenario, 0 if none")
    return ds


def span16(
    extreme_multiplier: float = DEFAULT_EXTREME_MULTIPLIER,
    cover_fraction: float = DEFAULT_COVER_FRACTION,
) -> xr.Dataset:
    """The 16 standard SPAN scenarios.

    Parameters
    ----------
    extreme_multiplier
        Extreme move of scenarios 15 and 16 [multiples of the price scan range].
    cover_fraction
        Weight of the extreme scenarios' losses [fraction].

    Returns
    -------
    xarray.Dataset
        Scenario set over ``scenario`` = 1..16.
    """
    ds = _dataset(*span16_arrays(extreme_multiplier, cover_fraction), name="span16")
    ds.attrs.update(extreme_multiplier=float(extreme_multiplier), cover_fraction=float(cover_fraction))
    return ds


def span16_arrays(
    extreme_multiplier: float = DEFAULT_EXTREME_MULTIPLIER,
    cover_fraction: float = DEFAULT_COVER_FRACTION,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 16 SPAN scenarios as arrays: price move, vol move [scan ranges], weight, 1-based pair."""
    thirds = np.array([0, 0, 1, 1, -1, -1, 2, 2, -2, -2, 3, 3, -3, -3], dtype=float) / 3.0
    price = np.concatenate([thirds, [extreme_multiplier, -extreme_multiplier]])
    vol = np.array([1, -1] * 7 + [0, 0], dtype=float)
    weight = np.array([1.0] * 14 + [cover_fraction, cover_fraction])
    pair = np.array([2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15], dtype=np.int64)
    return price, vol, weight, pair


def custom(
    price_move: Sequence[float],
    vol_move: Sequence[float] | None = None,
    weight: Sequence[float] | None = None,
    pair: Sequence[int | None] | None = None,
    *,
    name: str = "custom",
) -> xr.Dataset:
    """A user-defined scenario set.

    Parameters
    ----------
    price_move
        Price moves [multiples of the price scan range].
    vol_move
        Vol moves [multiples of the vol scan range]; default 0.
    weight
        Loss weights [fraction]; default 1.
    pair
        1-based paired scenario numbers (``None`` or 0 where unpaired).
    """
    n = len(price_move)
    vol_move = [0.0] * n if vol_move is None else list(vol_move)
    weight = [1.0] * n if weight is None else list(weight)
    pair = [0] * n if pair is None else [0 if p is None else int(p) for p in pair]
    if not (len(vol_move) == len(weight) == len(pair) == n):
        raise ValueError("price_move, vol_move, weight and pair must have the same length")
    return _dataset(price_move, vol_move, weight, pair, name=name)


def composite_delta_points(
    moves: Sequence[float] = COMPOSITE_DELTA_MOVES, weights: Sequence[float] = COMPOSITE_DELTA_WEIGHTS
) -> xr.Dataset:
    """The delta points of SPAN's composite delta, over dim ``delta_point``.

    Parameters
    ----------
    moves
        Price moves [multiples of the price scan range] (vol unchanged, after time decay).
    weights
        Weights of the deltas at those moves [fraction]; normalised to sum to 1.
    """
    w = np.asarray(weights, dtype=float)
    return xr.Dataset(
        {
            "price_move": ("delta_point", np.asarray(moves, dtype=float)),
            "weight": ("delta_point", w / w.sum()),
        },
        coords={"delta_point": np.arange(1, len(w) + 1)},
    )


def time_risk_scenarios(scenarios: xr.Dataset) -> np.ndarray:
    """0-based indices of the scenarios that move only time and vol (price move 0, full weight).

    SPAN's time risk is the mean loss over them (scenarios 1 and 2 of the standard set).
    """
    return time_risk_indices(scenarios["price_move"].values)


def time_risk_indices(price_move: np.ndarray) -> np.ndarray:
    """:func:`time_risk_scenarios` from the price moves [scan ranges] of a scenario set."""
    idx = np.flatnonzero(np.asarray(price_move) == 0)
    if idx.size == 0:
        raise ValueError("the scenario set has no point with price move 0 (needed for time risk)")
    return idx
