"""The CFD method's JSON object and readable table.

The JSON keys, their order and their sections come from the declared outputs
(:data:`~.variables.OUTPUTS`); each variable is converted for every account at once
(:func:`marginsim.outputs.per_account`). Two keys are lists of events built here: ``close_out``
(from ``close_step``) and ``rejected`` (from ``rejected``): per grid point, the positions closed
out (or the new orders rejected) there. Each position's values constant along the grid are
written as one number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ...outputs import json_keys, per_account
from .variables import OUTPUTS

__all__ = ["cfd_to_dict", "cfd_table"]

#: The account keys that list events, by the variable they come from.
_EVENTS = {"close_step": "close", "rejected": "reject"}


def _empty_lists(n: int) -> np.ndarray:
    """An object array of ``n`` distinct empty lists."""
    return np.fromiter(([] for _ in range(n)), dtype=object, count=n)


def _events(ds: xr.Dataset, gd: list[str], flag: str, acct_of: np.ndarray) -> list[Any]:
    """Per account: per grid point (nested in the order of ``gd``), the positions closed (or rejected) there.

    Parameters
    ----------
    ds
        A CFD result.
    gd
        The grid dims, in JSON order.
    flag
        ``"close"``: close-outs (with the realised pnl); ``"reject"``: rejected new orders (with
        the initial margin they needed).
    acct_of
        Account index of each position (-1: none).
    """
    dims = [d for d in gd if d in ds["cash"].dims]
    shape = tuple(ds.sizes[d] for d in dims)
    n_a = ds.sizes["account"]
    n_g = int(np.prod(shape)) if shape else 1
    cells = _empty_lists(n_a * n_g).reshape(n_a, n_g)
    bd = [d for d in dims if d != "step"]
    if flag == "close":
        at = ds["close_step"].transpose("position", *bd).values
        hit = at >= 0
    else:
        hit = ds["rejected"].transpose("position", *bd).values
        at = np.broadcast_to(ds["open_step"].values.reshape((-1,) + (1,) * len(bd)), hit.shape)
    hit = hit & (acct_of >= 0).reshape((-1,) + (1,) * len(bd))
    ev = np.nonzero(hit)  # by position, then grid point: the order of each cell's list
    p = ev[0]
    if p.size:
        where = {d: ev[1 + i] for i, d in enumerate(bd)}
        if "step" in dims:
            where["step"] = at[ev].astype(np.int64)
        idx = tuple(where[d] for d in dims)
        cell = np.ravel_multi_index(idx, shape) if shape else np.zeros(p.size, dtype=np.int64)
        u = pd.Index(ds["underlying"].values).get_indexer(ds["position_underlying"].values[p])
        price = ds["price"].transpose("underlying", *dims).values[(u,) + idx]
        qty = ds["quantity"].values[p]
        cols: dict[str, list[Any]] = {
            "position": ds["position"].values[p].astype(np.int64).tolist(),
            "contract": [str(c) for c in ds["position_contract"].values[p]],
            "quantity": qty.astype(float).tolist(),
            "price": price.astype(float).tolist(),
        }
        if flag == "close":
            cols["realised"] = (
                ds["position_realised"].transpose("position", *bd).values[ev].astype(float).tolist()
            )
        else:
            order_px = ds["order_price"].values[p]
            fill = np.where(np.isnan(order_px), price, order_px)
            cols["initial"] = (
                ds["initial_rate"].values[p] * np.abs(qty) * fill * ds["value_factor"].values[p]
            ).tolist()
        keys = list(cols)
        flat = cells.reshape(-1)
        for k, entry in zip((acct_of[p] * n_g + cell).tolist(), zip(*cols.values())):
            flat[k].append(dict(zip(keys, entry)))
    if not shape:
        out: list[Any] = cells[:, 0].tolist()
        return out
    return cells.reshape((n_a, *shape)).tolist()


def _position_values(ds: xr.Dataset, name: str, gd: list[str]) -> list[Any]:
    """Per position, the JSON value of ``ds[name]``: a scalar, ``None`` (all NaN), one number
    (constant along the grid), else nested lists over the grid dims."""
    da = ds[name]
    v = da.values
    if da.dims == ("position",):
        if name == "opened":
            return [str(x) or None for x in v]
        if v.dtype.kind == "O":
            return [str(x) for x in v]
        return v.tolist()
    flat = v.reshape(v.shape[0], int(np.prod(v.shape[1:])))
    if flat.dtype.kind == "f":
        all_nan = np.isnan(flat).all(axis=1)
    else:
        all_nan = np.zeros(flat.shape[0], dtype=bool)
    const = (flat == flat[:, :1]).all(axis=1) & (flat.shape[1] > 0)
    first = flat[:, 0].tolist() if flat.shape[1] else [None] * flat.shape[0]
    plain = per_account(da, gd, dim="position") if (~all_nan & ~const).any() else [None] * flat.shape[0]
    return [
        None if n else (f if c else x) for n, c, f, x in zip(all_nan.tolist(), const.tolist(), first, plain)
    ]


def cfd_to_dict(ds: xr.Dataset, gd: list[str]) -> dict[str, Any]:
    """Per account: the ``cfd`` object of the JSON contract (numbers along grid dims are nested lists).

    Its keys are the declared outputs of section ``account`` (``close_out`` and ``rejected``: the
    events at each grid point), then ``positions`` (keyed by position number; keys of section
    ``position``), ``concentration`` where it applies and ``paths`` with a ``path`` dim.
    """
    accounts = ds["account"].values.tolist()
    acct_of = pd.Index(ds["account"].values).get_indexer(ds["position_account"].values)
    columns: dict[str, list[Any]] = {}
    for o in json_keys(OUTPUTS, "account"):
        if o.name in _EVENTS:
            columns[o.json_key] = _events(ds, gd, _EVENTS[o.name], acct_of)
        else:
            columns[o.json_key] = per_account(ds[o.name], gd)
    # positions: per account, in the order of the result's position dim
    pos_cols = {o.json_key: _position_values(ds, o.name, gd) for o in json_keys(OUTPUTS, "position")}
    pos_keys = list(pos_cols)
    pos_rows = [dict(zip(pos_keys, row)) for row in zip(*pos_cols.values())]
    pos_names = [str(int(x)) for x in ds["position"].values]
    positions: list[dict[str, Any]] = [{} for _ in accounts]
    for p, a in enumerate(acct_of.tolist()):
        if a >= 0:
            positions[a][pos_names[p]] = pos_rows[p]
    sections: list[tuple[str, list[Any], dict[str, list[Any]]]] = []
    applies = ds["concentration_applies"].values.tolist()
    sections.append(
        (
            "concentration",
            applies,
            {o.json_key: per_account(ds[o.name], gd) for o in json_keys(OUTPUTS, "concentration")},
        )
    )
    if "close_out_probability" in ds:
        sections.append(
            (
                "paths",
                [True] * len(accounts),
                {o.json_key: per_account(ds[o.name], gd) for o in json_keys(OUTPUTS, "paths")},
            )
        )
    out: dict[str, Any] = {}
    for i, acct in enumerate(accounts):
        obj = {k: col[i] for k, col in columns.items()}
        obj["positions"] = positions[i]
        for key, present, cols in sections:
            if present[i]:
                obj[key] = {k: col[i] for k, col in cols.items()}
        out[acct] = obj
    return out


def _f(x: float) -> str:
    return f"{x:,.2f}"


def _opt(x: float, fmt: str = "{:,.2f}") -> str:
    return "-" if np.isnan(x) else fmt.format(x)


def cfd_table(ds: xr.Dataset, account: str) -> str:
    """A readable CFD breakdown of one account: positions, then the state at each step.

    With grid dims other than ``step`` the first point is shown (and, with ``path``, a summary
    over paths).
    """
    d = ds.sel(account=account)
    ccy = ds.attrs.get("currency", "")
    other = [dim for dim in d["cash"].dims if dim != "step"]
    note = ""
    if other:
        note = "  (first grid point: " + ", ".join(f"{dim}={ds[dim].values[0]}" for dim in other) + ")"
        d = d.isel({dim: 0 for dim in other})
    lines = [
        f"CFD  account {account}  [{ccy}]  client {d['client'].values}"
        f"  CFD cash {_f(float(d['cfd_cash_start']))}{note}"
    ]
    mine = np.flatnonzero(ds["position_account"].values == account)
    head = (
        f"{'pos':>4} {'contract':<14}{'class':<18}{'qty':>12}{'open px':>12}{'IM rate':>9}{'MM rate':>9}"
        f"{'IM':>13}{'MM':>13}  status"
    )
    lines += [head, "-" * len(head)]
    for p in mine:
        dp = d.isel(position=p)
        cs = int(dp["close_step"].values)
        if bool(dp["rejected"].values):
            status = f"rejected at step {int(dp['open_step'].values)}"
        elif cs >= 0:
            status = f"closed at step {cs}"
        elif np.isnan(float(dp["open_price"].values)):
            status = "opens after the last step"
        else:
            status = f"open from step {int(dp['open_step'].values)}"
        lines.append(
            f"{int(dp['position'].values):>4} {str(dp['position_contract'].values):<14}{str(dp['cfd_class'].values):<18}"
            f"{float(dp['quantity'].values):>12,.2f}{_opt(float(dp['open_price'].values), '{:,.4f}'):>12}"
            f"{float(dp['initial_rate'].values):>9.2%}{float(dp['maintenance_rate'].values):>9.2%}"
            f"{_opt(float(dp['position_initial'].values)):>13}{_opt(float(dp['position_maintenance'].values)):>13}"
            f"  {status}"
        )
    cols = (
        "cash",
        "equity",
        "value",
        "unrealised",
        "initial",
        "maintenance",
        "available_cash",
        "written_off",
    )
    head = (
        f"{'step':>5}" + "".join(f"{c.replace('_', ' '):>16}" for c in cols) + f"{'deficiency':>12}  closed"
    )
    lines += ["", head, "-" * len(head)]
    steps = d["step"].values.tolist() if "step" in d.dims else [None]
    for i, s in enumerate(steps):
        ds_s = d.isel(step=i) if s is not None else d
        closed = [
            str(int(ds_s["position"].values[p]))
            for p in mine
            if int(ds_s["close_step"].values[p]) == (i if s is not None else 0)
        ]
        lines.append(
            f"{'' if s is None else s:>5}"
            + "".join(f"{_f(float(ds_s[c].values)):>16}" for c in cols)
            + f"{'yes' if bool(ds_s['deficiency'].values) else 'no':>12}  {', '.join(closed)}"
        )
    if bool(d["concentration_applies"].values):
        first = {"step": 0} if "step" in d.dims else {}
        dc = d.isel(first)
        lines.append("")
        lines.append(
            f"concentration (step 0): stress loss {_f(float(dc['concentration_loss']))}, standard "
            f"{_f(float(dc['standard_requirement']))}, maintenance {_f(float(dc['combined_maintenance']))}"
            f"{' (concentration binds)' if bool(dc['concentration_binding']) else ''}"
        )
    if "close_out_probability" in ds:
        s = ds.sel(account=account)
        rest = [dim for dim in s["close_out_probability"].dims]
        s = s.isel({dim: 0 for dim in rest})
        lines.append("")
        lines.append(
            f"over {ds.sizes['path']} paths: close-out probability {float(s['close_out_probability']):.2%}, "
            f"written off: mean {_f(float(s['written_off_mean']))}, 99 % {_f(float(s['written_off_q99']))}, "
            f"max {_f(float(s['written_off_max']))}"
        )
    return "\n".join(line.rstrip() for line in lines)
