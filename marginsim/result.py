"""Results: xarray Datasets per method, and the JSON contract of ``spec/scenario-format.md``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from .errors import InputError
from .model import GRID_DIMS, Inputs
from .outputs import first_nonfinite_money, to_plain
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

    def check_finite(self) -> None:
        """Refuse a result with a NaN or infinite amount where a number is due (the last guard
        against inputs no check caught: a value a method cannot handle, an overflow).

        Raises
        ------
        InputError
            Naming the method, the variable and the account.
        """
        for name, ds in self.methods.items():
            bad = first_nonfinite_money(ds, REGISTRY[name].outputs)
            if bad is not None:
                variable, account = bad
                raise InputError(
                    f"{name}: {variable} of account {account!r} is not a finite number: an input is "
                    "too large or out of the range this method can compute",
                    file=self.inputs.scenario.file,
                )

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``marginsim margin FILE --json`` (after :meth:`check_finite`)."""
        self.check_finite()
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
