"""CFD attribution: each CFD position's part of its account's maintenance.

The rule: the CFD maintenance of an account is the sum of the maintenance margins of its
positions open on arrival at the step (each fixed at opening: rate x notional at the open
price), so a position's contribution is its own maintenance margin where it is open on arrival
at the step, and 0 where it is not (not yet opened, rejected, closed out).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ...model import Inputs
from .positions import open_on_arrival

__all__ = ["cfd_attribution"]


def cfd_attribution(inputs: Inputs, result: xr.Dataset, engine: str = "auto") -> xr.Dataset:
    """The contribution of each CFD position to its account's maintenance.

    Parameters
    ----------
    inputs
        The in-memory data model the result was computed from (unused: the result has it all).
    result
        The CFD result (:func:`marginsim.methods.cfd.cfd_margin`).
    engine
        Unused (the signature of :attr:`marginsim.registry.MethodSpec.attribution`).

    Returns
    -------
    xarray.Dataset
        ``contribution`` with dims ``(position, grid dims of maintenance)`` [reporting
        currency], over the result's positions; per account and grid point they sum to
        ``maintenance``.
    """
    gd = [str(d) for d in result["maintenance"].dims if d != "account"]
    has_step = "step" in gd
    bd = [d for d in gd if d != "step"]
    n_p = result.sizes["position"]
    bshape = tuple(result.sizes[d] for d in bd)
    n_b = int(np.prod(bshape)) if bshape else 1
    is_open = open_on_arrival(result, bd, has_step)  # (P, B, S)
    pm = result["position_maintenance"].transpose("position", *bd).values.reshape(n_p, n_b, 1)
    part = np.where(is_open, np.nan_to_num(pm), 0.0)  # (P, B, S)
    shape = (n_p, *bshape, *((part.shape[-1],) if has_step else ()))
    dims = ("position", *bd, *(("step",) if has_step else ()))
    da = xr.DataArray(part.reshape(shape), dims=dims, coords={"position": result["position"].values})
    return xr.Dataset({"contribution": da.transpose("position", *gd)})
