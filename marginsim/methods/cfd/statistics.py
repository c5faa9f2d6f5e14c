"""Statistics over Monte Carlo paths: close-out probability and the written-off loss.

Computed in a run over every path; after a run split along ``path`` (each task saw a chunk of
paths), :func:`finalize_chunked` recomputes them over every path.
"""

from __future__ import annotations

import xarray as xr

__all__ = ["WRITTEN_OFF_QUANTILE", "path_statistics", "finalize_chunked"]

#: The quantile over paths of the written-off loss reported as ``written_off_q99``.
WRITTEN_OFF_QUANTILE = 0.99


def path_statistics(written_off: xr.DataArray, closed_positions: xr.DataArray) -> dict[str, xr.DataArray]:
    """Close-out probability and written-off loss over paths (mean, 99 % quantile, max).

    Parameters
    ----------
    written_off
        Loss written off per step [reporting currency], over ``path`` (and ``step``).
    closed_positions
        Positions closed out so far, over ``path`` (and ``step``).

    Returns
    -------
    dict
        ``close_out_probability`` (share of paths with a close-out by the last step) and
        ``written_off_mean``, ``written_off_q99``, ``written_off_max`` of the loss summed along
        ``step`` [reporting currency].
    """
    has_step = "step" in written_off.dims
    total_wo = written_off.sum("step") if has_step else written_off
    closed_any = (closed_positions.isel(step=-1) if has_step else closed_positions) > 0
    return {
        "close_out_probability": closed_any.mean("path"),
        "written_off_mean": total_wo.mean("path"),
        "written_off_q99": total_wo.quantile(WRITTEN_OFF_QUANTILE, dim="path").drop_vars("quantile"),
        "written_off_max": total_wo.max("path"),
    }


def finalize_chunked(ds: xr.Dataset, split_dims: frozenset[str]) -> xr.Dataset:
    """After a run split along ``path``: the path statistics recomputed over every path.

    Each task of a chunked run saw a chunk of paths only (see
    :attr:`marginsim.registry.MethodSpec.finalize_chunked`).
    """
    if "path" not in split_dims or "close_out_probability" not in ds:
        return ds
    stats = path_statistics(ds["written_off"].chunk(path=-1), ds["closed_positions"].chunk(path=-1))
    for k, v in stats.items():
        ds[k] = v.transpose(*ds[k].dims).assign_attrs(ds[k].attrs)
    return ds
