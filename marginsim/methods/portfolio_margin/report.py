"""The JSON contract and the text table of portfolio margin.

The JSON object of each account is laid out by :data:`.OUTPUTS` (section paths and keys, in
declaration order). Each variable is converted to Python values once for the whole book (an
account-level variable once over every account, a class-group variable once over every held
(account, class group) pair); the loop over accounts only places those values in the objects.
The table is written by hand: the generic table (:func:`marginsim.outputs.account_table`) would
change its bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ...outputs import Output, per_account, to_plain
from .groups import SINGLE_NAME_METHODS
from .outputs import OUTPUTS

__all__ = ["to_dict", "table"]

# rows of the text table, in order
_TABLE_ROWS = (
    "base",
    "scan",
    "minimum",
    "extreme",
    "concentration",
    "single_name",
    "large_position",
    "days_to_liquidate",
)


# ------------------------------------------------------------------------------------------------
# conversions of whole arrays to the JSON's Python values
# ------------------------------------------------------------------------------------------------


def _names(values: np.ndarray) -> Any:
    """Labels, ``""`` (no name) -> None."""
    obj = values.astype(object)
    obj[obj == ""] = None
    return obj.tolist()


def _flags(values: np.ndarray) -> Any:
    """1.0 / 0.0 / NaN (unknown) -> True / False / None."""
    obj = (values != 0).astype(object)
    obj[np.isnan(values)] = None
    return obj.tolist()


def _drop_empty(x: Any) -> Any:
    """Innermost lists without "" (drivers that do not exist)."""
    if isinstance(x, list):
        if all(not isinstance(v, list) for v in x):
            return [v for v in x if v != ""]
        return [_drop_empty(v) for v in x]
    return x


def _ordered(da: xr.DataArray, lead: Sequence[str], gd: Sequence[str]) -> np.ndarray:
    """Values with axes ``lead``, then the grid dims in JSON order, then the array's others."""
    grid = [d for d in gd if d in da.dims]
    rest = [d for d in da.dims if d not in lead and d not in grid]
    return da.transpose(*lead, *grid, *rest).values


def _account_column(ds: xr.Dataset, o: Output, gd: Sequence[str]) -> list[Any]:
    """An account-level variable as one JSON value per account."""
    da = ds[o.name]
    if o.name in ("binding", "single_name_driver"):
        return _names(_ordered(da, ["account"], gd))
    if o.name in ("opening_equity_met", "minimum_equity_met"):
        return _flags(_ordered(da, ["account"], gd))
    if o.name == "concentration_driver":
        return [_drop_empty(x) for x in _ordered(da, ["account"], gd).tolist()]
    return per_account(da, gd)


def _pair_column(da: xr.DataArray, pairs: tuple[xr.DataArray, xr.DataArray], gd: Sequence[str]) -> list[Any]:
    """An (account, class group) variable as one JSON value per held pair."""
    if da.name == "option_contracts":
        da = da.astype(float)
    sel = da.isel(account=pairs[0], group=pairs[1])
    return to_plain(sel, ["pair", *gd])


def _group_column(da: xr.DataArray, gd: Sequence[str]) -> list[Any]:
    """A class-group variable as one JSON value per class group."""
    if da.dtype.kind == "f" and da.ndim == 1:
        return da.values.tolist()  # a plain float per class group, NaN kept
    if da.dtype.kind == "O":
        return [str(x) for x in da.values.tolist()]
    if da.dtype.kind == "b":
        return da.values.tolist()
    return to_plain(da, ["group", *gd])


# ------------------------------------------------------------------------------------------------
# JSON
# ------------------------------------------------------------------------------------------------


def _by_group(column: list[Any], group_of_pair: list[int]) -> Callable[[int], Any]:
    """The value of pair ``j`` from a per-class-group column."""
    return lambda j: column[group_of_pair[j]]


def _place(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for p in path[:-1]:
        obj = obj.setdefault(p, {})
    obj[path[-1]] = value


def to_dict(ds: xr.Dataset, gd: list[str]) -> dict[str, Any]:
    """Per account: the ``portfolio_margin`` object of the JSON contract.

    Parameters
    ----------
    ds
        Result of :func:`marginsim.methods.portfolio_margin.portfolio_margin`.
    gd
        Grid dims, in the order of the JSON ``dims``.

    Returns
    -------
    dict
        Account name -> object with the fixed keys ``maintenance``, ``initial``, ``binding``,
        ``components``, ``single_name_driver``, ``concentration_drivers``, plus ``base``,
        ``currency``, equity figures and ``class_groups`` (per held class group breakdown and its
        ``loss_grid``). Numbers that vary along grid dims are nested lists in the order of ``gd``.
    """
    accounts = ds["account"].values.tolist()
    currency = ds.attrs.get("currency")

    # -- the account's own keys, with the constant "currency" after "base" --------------------------------
    acct_plan: list[tuple[tuple[str, ...], Callable[[int], Any]]] = []
    for o in OUTPUTS:
        if o.json is None or not (o.json == "account" or o.json.startswith("account.")):
            continue
        col = _account_column(ds, o, gd)
        path = (*o.json.split(".")[1:], o.json_key)
        acct_plan.append((path, col.__getitem__))
        if o.name == "base":
            acct_plan.append((("currency",), lambda i: currency))

    # -- held (account, class group) pairs, account-major -------------------------------------------------
    a_idx, g_idx = np.nonzero(ds["held"].transpose("account", "group").values)
    pairs = (xr.DataArray(a_idx, dims="pair"), xr.DataArray(g_idx, dims="pair"))
    start = np.searchsorted(a_idx, np.arange(len(accounts) + 1)).tolist()
    g_list = g_idx.tolist()
    group_names = ds["group"].values.tolist()

    # single-name methods of each pair's class group: one object per applicable method
    applies = ds["single_name_applies"].transpose("group", "single_name_method").values
    method_keys = [o for o in OUTPUTS if o.json == "single_name_method"]
    method_cols: list[tuple[str, list[Any], bool]] = []
    for o in method_keys:
        da = ds[o.name]
        if "account" in da.dims:
            sel = da.isel(account=pairs[0], group=pairs[1])
            method_cols.append((o.json_key, to_plain(sel, ["pair", "single_name_method", *gd]), True))
        else:
            method_cols.append(
                (o.json_key, da.transpose("group", "single_name_method").values.tolist(), False)
            )
    applicable = [
        [m for m in range(len(SINGLE_NAME_METHODS)) if applies[g, m]] for g in range(applies.shape[0])
    ]

    def methods(j: int) -> dict[str, Any]:
        g = g_list[j]
        return {
            SINGLE_NAME_METHODS[m]: {
                key: (col[j] if per_pair else col[g])[m] for key, col, per_pair in method_cols
            }
            for m in applicable[g]
        }

    vol_points = ds["vol_point"].values.tolist()
    vol_shift_kind, vol_shift = ds.attrs["vol_shift_kind"], ds.attrs["vol_shift"]
    group_plan: list[tuple[tuple[str, ...], Callable[[int], Any]]] = []
    for o in OUTPUTS:
        if o.json is None or not (o.json == "class_group" or o.json.startswith("class_group.")):
            continue
        da = ds[o.name]
        path = (*o.json.split(".")[1:], o.json_key)
        if "account" in da.dims:
            group_plan.append((path, _pair_column(da, pairs, gd).__getitem__))
        else:
            by_group = _group_column(da, gd)
            group_plan.append((path, _by_group(by_group, g_list)))
        if o.name == "group_single_name":
            group_plan.append((("single_name", "methods"), methods))
        elif o.name == "price_move":
            group_plan.append((("loss_grid", "vol_points"), lambda j: vol_points))
            group_plan.append((("loss_grid", "vol_shift"), lambda j: {vol_shift_kind: vol_shift}))

    out: dict[str, Any] = {}
    for i, acct in enumerate(accounts):
        obj: dict[str, Any] = {}
        for path, get in acct_plan:
            _place(obj, path, get(i))
        cgs: dict[str, Any] = {}
        for j in range(start[i], start[i + 1]):
            cg: dict[str, Any] = {}
            for path, get in group_plan:
                _place(cg, path, get(j))
            cgs[group_names[g_list[j]]] = cg
        obj["class_groups"] = cgs
        out[acct] = obj
    return out


# ------------------------------------------------------------------------------------------------
# table
# ------------------------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{float(x):,.2f}"


def _flag(x: float) -> bool | None:
    """1.0 / 0.0 / NaN -> True / False / None."""
    return None if x != x else bool(x)


def table(ds: xr.Dataset, account: str) -> str:
    """A readable portfolio-margin breakdown of one account (first grid point when there are grid dims)."""
    d = ds.sel(account=account)
    gd = list(d["maintenance"].dims)
    note = ""
    if gd:
        d = d.isel({dim: 0 for dim in gd})
        note = "  (first grid point: " + ", ".join(f"{dim}={ds[dim].values[0]}" for dim in gd) + ")"
    ccy = ds.attrs.get("currency", "")
    binding = d["binding"].item()
    lines = [f"PORTFOLIO MARGIN  account {account}  [{ccy}]{note}"]
    w = 15
    head = (
        f"{'class group':<14}{'class':<21}{'scan':>{w}}{'minimum':>{w}}{'extreme':>{w}}"
        f"{'concentration':>{w + 1}}{'single name':>{w}}{'large pos.':>{w}}{'DTL':>{w}}"
    )
    lines += [head, "-" * len(head)]
    for g, name in enumerate(ds["group"].values.tolist()):
        if not bool(d["held"].values[g]):
            continue
        dg = d.isel(group=g)
        star = "*" if bool(dg["concentration_top"]) else " "
        sn = dg["group_single_name"].item() if ds["product_class"].values[g] == "equity" else None
        lines.append(
            f"{name:<14}{str(ds['product_class'].values[g]):<21}{_fmt(dg['group_scan'].item()):>{w}}"
            f"{_fmt(dg['group_minimum'].item()):>{w}}{_fmt(dg['group_extreme'].item()):>{w}}"
            f"{_fmt(dg['concentration_contribution'].item()):>{w}}{star}{_fmt(sn):>{w}}"
            f"{_fmt(dg['large_position_charge'].item()):>{w}}{_fmt(dg['days_to_liquidate_charge'].item()):>{w}}"
        )
    lines.append("-" * len(head))
    for k in _TABLE_ROWS:
        mark = "  <- binding" if k == binding or (k == "base" and binding in ("scan", "minimum")) else ""
        extra = ""
        if k == "concentration":
            drv = [x for x in d["concentration_driver"].values.tolist() if x]
            extra = f"  drivers: {', '.join(drv) if drv else '-'}"
        elif k == "single_name":
            extra = f"  driver: {d['single_name_driver'].item() or '-'}"
        elif k == "days_to_liquidate":
            extra = "  (initial only)"
        lines.append(f"{k:<22}{_fmt(d[k].item()):>16}{mark}{extra}")
    lines.append(f"{'maintenance':<22}{_fmt(d['maintenance'].item()):>16}  binding: {binding or '-'}")
    lines.append(f"{'initial':<22}{_fmt(d['initial'].item()):>16}")
    lines.append(f"{'market value':<22}{_fmt(d['market_value'].item()):>16}")
    if not np.isnan(d["equity"].item()):
        lines.append(f"{'equity':<22}{_fmt(d['equity'].item()):>16}")
        lines.append(f"{'available funds':<22}{_fmt(d['available_funds'].item()):>16}")
        lines.append(f"{'excess liquidity':<22}{_fmt(d['excess_liquidity'].item()):>16}")
        lines.append(
            f"{'opening equity met':<22}{str(_flag(d['opening_equity_met'].item())):>16}"
            f"   {'minimum equity met':<20}{str(_flag(d['minimum_equity_met'].item())):>6}"
        )
    return "\n".join(lines)
