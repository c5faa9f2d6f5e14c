"""Results: xarray Datasets per method, and the JSON contract of ``spec/scenario-format.md``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from .model import GRID_DIMS, Inputs
from .outputs import to_plain
from .registry import REGISTRY

__all__ = ["MarginResult", "to_plain", "base_point"]


def base_point(da: xr.DataArray | xr.Dataset, keep: Sequence[str] = ()) -> Any:
    """``da`` at the base point of its what-if grid dims (those of :data:`marginsim.model.GRID_DIMS`
    not in ``keep``); other dims (account, group, movement...) are left whole.

    The base point is ``shift = 0`` where the shift grid has it, else the first coordinate
    (``step`` 0: the start of a path; ``path`` 0: the first simulated path).

    Parameters
    ----------
    da
        A result variable or Dataset.
    keep
        Grid dims to keep whole.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
    """
    sel: dict[str, int] = {}
    for d in da.dims:
        if d in keep or d not in GRID_DIMS:
            continue
        if d == "shift" and "shift" in da.coords and (da["shift"].values == 0.0).any():
            sel[d] = int(np.flatnonzero(da["shift"].values == 0.0)[0])
        else:
            sel[d] = 0
    return da.isel(sel)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    return x


@dataclass
class MarginResult:
    """The result of running one or more methods on a scenario.

    Attributes
    ----------
    inputs
        The data model the methods ran on.
    methods
        Method name -> result Dataset (dims ``account``, ``group``, grid dims, ...).
    """

    inputs: Inputs
    methods: dict[str, xr.Dataset] = field(default_factory=dict)

    def __getitem__(self, name: str) -> xr.Dataset:
        return self.methods[name]

    @property
    def grid_dims(self) -> tuple[str, ...]:
        return self.inputs.grid_dims

    def dims(self) -> dict[str, list]:
        """Each grid dim and its coordinate values."""
        out: dict[str, list] = {}
        for d in self.grid_dims:
            for ds in self.methods.values():
                if d in ds.coords:
                    out[d] = ds[d].values.tolist()
                    break
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``marginsim margin FILE --json``."""
        sc = self.inputs.scenario
        gd = list(self.grid_dims)
        accounts: dict[str, dict[str, Any]] = {a: {} for a in self.inputs.accounts}
        for name, ds in self.methods.items():
            per_account = REGISTRY[name].to_dict(ds, gd)
            for acct, obj in per_account.items():
                accounts.setdefault(acct, {})[name] = obj
        return _clean(
            {
                "scenario": sc.name,
                "currency": sc.currency,
                "as_of": sc.as_of.isoformat(),
                "dims": self.dims(),
                "accounts": accounts,
            }
        )

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a JSON string."""
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)
