"""JSON objects and text tables of method results (the contract of ``spec/scenario-format.md``)."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["base_grid_point"]


def base_grid_point(ds: xr.Dataset, dims: list[str]) -> dict[str, int]:
    """Index of the "no change" point of each grid dim (shift 0, scale 1, step 0), else the first."""
    neutral = {"shift": 0.0, "vol_shift": 0.0, "price_scan_scale": 1.0, "vol_scan_scale": 1.0}
    out = {}
    for dim in dims:
        vals = ds[dim].values
        hit = np.flatnonzero(vals == neutral[dim]) if dim in neutral and vals.dtype.kind == "f" else []
        out[dim] = int(hit[0]) if len(hit) else 0
    return out
