"""The stacked stresses every contract is revalued over (dim ``stress``).

- the theoretical-value scan (price points x implied vol points), ranges by product class;
- the extreme price scan (``multiple`` x the range, vol shifted as in the scan);
- the concentration stresses, the same for every class group (+/- the hard stress of the riskiest
  class groups, +/- the mild stress of the others; vol unchanged);
- the single-name stresses (small cap, China concept, default, Hong Kong property);
- the large-position stress.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ... import scenario_sets
from ...kernels import portfolio_margin as K
from ...params.portfolio_margin import PortfolioMarginParams
from .groups import SINGLE_NAME_METHODS, ClassGroups

__all__ = ["VOL_POINTS", "Stresses", "stresses", "vol_shift", "scan_scenario_set"]

#: Implied vol points of the scan [multiples of the vol shift].
VOL_POINTS = (-1.0, 0.0, 1.0)


def vol_shift(params: PortfolioMarginParams) -> tuple[float, str]:
    """The implied vol shift of the scan: ``(size, "absolute")`` [vol] or ``(size, "relative")``
    [fraction of the vol] (the parameter model sets exactly one of the two)."""
    if params.vol_shift is not None:
        return float(params.vol_shift), "absolute"
    return float(params.vol_shift_relative or 0.0), "relative"


@dataclass
class Stresses:
    """The stacked stresses (``S`` of them).

    Attributes
    ----------
    moves
        Relative price move of each class group and stress [fraction of price], shape ``(C, S)``.
    vol_step
        Implied vol move [multiples of the vol shift], shape ``(S,)``.
    scaled
        Whether the move scales with the grid's ``price_scan_scale``, shape ``(S,)``.
    blocks
        Block name (``scan``, ``extreme``, ``concentration``, ``single_name``, ``large_position``)
        -> its slice along ``stress``.
    """

    moves: np.ndarray
    vol_step: np.ndarray
    scaled: np.ndarray
    blocks: dict[str, slice]


def stresses(groups: ClassGroups, params: PortfolioMarginParams) -> Stresses:
    """Every stress of the method for the class groups ``groups``."""
    n_c = len(groups.names)
    fr = K.scan_fractions(params.points_per_side)
    vp = np.asarray(VOL_POINTS)
    n_v = len(vp)
    scan = np.repeat(K.scan_moves(fr, groups.up, groups.down), n_v, axis=1)  # (C, P*V)
    m = params.extreme.multiple
    ext = np.repeat(K.stress_moves(m * groups.up, m * groups.down), n_v, axis=1)  # (C, 2V)
    cp = params.concentration
    conc = np.broadcast_to(
        np.concatenate(
            [K.stress_moves(cp.top_stress, cp.top_stress), K.stress_moves(cp.rest_stress, cp.rest_stress)]
        ),
        (n_c, 4),
    )
    sn = groups.sn_moves.reshape(n_c, 2 * len(SINGLE_NAME_METHODS))  # (C, M*2)
    lp = np.broadcast_to(K.stress_moves(params.large_position.stress, params.large_position.stress), (n_c, 2))
    parts = [
        ("scan", scan, np.tile(vp, len(fr)), True),
        ("extreme", ext, np.tile(vp, 2), True),
        ("concentration", conc, np.zeros(4), False),
        ("single_name", sn, np.zeros(sn.shape[1]), False),
        ("large_position", lp, np.zeros(2), False),
    ]
    blocks: dict[str, slice] = {}
    start = 0
    for name, mv, _, _ in parts:
        blocks[name] = slice(start, start + mv.shape[1])
        start += mv.shape[1]
    return Stresses(
        moves=np.concatenate([p[1] for p in parts], axis=1),
        vol_step=np.concatenate([p[2] for p in parts]),
        scaled=np.concatenate([np.full(p[1].shape[1], p[3]) for p in parts]),
        blocks=blocks,
    )


def scan_scenario_set(points_per_side: int = 5) -> xr.Dataset:
    """The theoretical-value scan as a scenario set: price points x implied vol points.

    Parameters
    ----------
    points_per_side
        Price points up and down (5: the ten-point scan).

    Returns
    -------
    xarray.Dataset
        Over ``scenario`` (price-point major): ``price_move`` [fractions of the class group's scan
        range, up or down], ``vol_move`` [multiples of the vol shift], ``weight`` (1).
    """
    fr = K.scan_fractions(points_per_side)
    n_v = len(VOL_POINTS)
    return scenario_sets.custom(
        np.repeat(fr, n_v).tolist(), np.tile(VOL_POINTS, len(fr)).tolist(), name="portfolio_margin_scan"
    )
