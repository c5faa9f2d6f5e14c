"""JSON and table of strategy-based margin: per account, the strategies chosen and the comparison."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ...model import Inputs
from ...outputs import (
    NEUTRAL_GRID_POINT,
    account_json,
    base_grid_point,
    json_keys,
    per_account,
    rows_per_account,
)
from .outputs import OUTPUTS

__all__ = ["to_dict", "table", "base_point"]


def base_point(inputs: Inputs, dims: list[str]) -> dict[str, int]:
    """Index of the "no change" point of each grid dim of ``inputs`` (as :func:`base_grid_point`)."""
    out = {}
    for d in dims:
        src = inputs.market if d in inputs.market.coords else inputs.grid
        vals = src[d].values if d in src.coords else np.zeros(0)
        hit = np.zeros(0, dtype=np.int64)
        if d in NEUTRAL_GRID_POINT and vals.dtype.kind == "f":
            hit = np.flatnonzero(vals == NEUTRAL_GRID_POINT[d])
        out[d] = int(hit[0]) if hit.size else 0
    return out


def _strategies(ds: xr.Dataset) -> list[list[dict[str, Any]]]:
    """The rows of each account, as JSON objects."""
    accounts = [str(a) for a in ds["account"].values.tolist()]
    if "strategy" not in ds.dims or ds.sizes["strategy"] == 0:
        return [[] for _ in accounts]
    owner = ds["strategy_account"].values.astype(str)
    rows = rows_per_account(owner, accounts)
    legs = ds["leg_contract"].values
    qty = ds["leg_quantity"].values
    cols = {o.json_key: ds[o.name].values.tolist() for o in json_keys(OUTPUTS, "strategies") if ds[o.name].ndim == 1}
    cols.pop("account", None)
    out = []
    for r in rows:  # accounts: the rows of each (JSON objects are per account)
        objs = []
        for i in r:
            has = legs[i] != ""
            obj = {k: v[i] for k, v in cols.items()}
            obj["legs"] = [{"contract": str(c), "quantity": float(q)} for c, q in zip(legs[i][has], qty[i][has])]
            objs.append(obj)
        out.append(objs)
    return out


def to_dict(ds: xr.Dataset, grid_dims: list[str]) -> dict[str, dict[str, Any]]:
    """The JSON object of each account: the figures, ``strategies`` and (with it) ``comparison``."""
    out = account_json(ds, OUTPUTS, grid_dims)
    for name, rows in zip(out, _strategies(ds)):
        out[name]["strategies"] = rows
    comp = [o for o in json_keys(OUTPUTS, "comparison") if o.name in ds]
    if comp:
        cols = {o.json_key: per_account(ds[o.name], grid_dims) for o in comp}
        cols["strategy_initial"] = per_account(ds["initial"], grid_dims)
        cols["strategy_maintenance"] = per_account(ds["maintenance"], grid_dims)
        for i, name in enumerate(out):
            out[name]["comparison"] = {k: v[i] for k, v in cols.items()}
    return out


def table(ds: xr.Dataset, account: str) -> str:
    """A readable breakdown of one account at the base grid point."""
    d = ds.sel(account=account)
    gd = [str(g) for g in d.dims if g in d.coords and g not in ("strategy", "leg")]
    note = ""
    if gd:
        point = base_grid_point(ds, gd)
        d = d.isel(point)
        note = "  (grid point " + ", ".join(f"{g}={ds[g].values[i]}" for g, i in point.items()) + ")"
    lines = [f"STRATEGY-BASED MARGIN  account {account}  [{ds.attrs.get('currency', '')}]{note}"]
    for name in ("initial", "maintenance", "opening_deposit", "initial_unpaired", "maintenance_unpaired",
                 "short_option_proceeds", "market_value", "equity"):
        lines.append(f"{name:<30}{float(d[name]):>20,.2f}")
    if "pm_initial" in ds:
        lines.append("comparison with portfolio margin")
        for name in ("pm_initial", "pm_maintenance", "saving"):
            lines.append(f"  {name:<28}{float(d[name]):>20,.2f}")
        for name in ("qualifies_for", "choose"):
            lines.append(f"  {name:<28}{str(d[name].values):>20}")
    if "strategy" in ds.dims and ds.sizes["strategy"]:
        (rows,) = rows_per_account(ds["strategy_account"].values.astype(str), [account])
        lines.append(f"{'basis':<12}{'rule':<20}{'units':>10}{'initial':>16}{'maintenance':>16}  legs")
        for i in rows:  # the account's rows
            legs = ", ".join(
                f"{q:+g} {c}"
                for c, q in zip(ds["leg_contract"].values[i], ds["leg_quantity"].values[i])
                if c != ""
            )
            lines.append(
                f"{ds['strategy_basis'].values[i]:<12}{ds['strategy_rule'].values[i]:<20}"
                f"{ds['strategy_units'].values[i]:>10g}{ds['strategy_initial'].values[i]:>16,.2f}"
                f"{ds['strategy_maintenance'].values[i]:>16,.2f}  {legs}"
            )
    return "\n".join(lines)
