"""JSON objects and text tables of method results (the contract of ``spec/scenario-format.md``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..result import to_plain

__all__ = ["span_to_dict", "span_table", "base_grid_point"]

_GROUP_KEYS = (
    "scan_risk",
    "active_scenario",
    "intra_spread_charge",
    "spot_charge",
    "inter_spread_credit",
    "short_option_minimum",
    "risk",
)
_ACCOUNT_KEYS = ("maintenance", "initial", "net_option_value", "span_risk")


def span_to_dict(ds: xr.Dataset, gd: list[str]) -> dict[str, Any]:
    """Per account: the ``span`` object of the JSON contract."""
    out: dict[str, Any] = {}
    # the contracts each account holds, for every account at once: sorted unique (account,
    # contract) keys, split by account
    n_k = max(ds.sizes["contract"], 1)
    key = np.unique(ds["position_account"].values.astype(np.int64) * n_k + ds["position_contract"].values)
    first = np.searchsorted(key // n_k, np.arange(ds.sizes["account"] + 1))
    for a, acct in enumerate(ds["account"].values.tolist()):
        d = ds.isel(account=a)
        obj: dict[str, Any] = {k: to_plain(d[k], gd) for k in _ACCOUNT_KEYS}
        groups = {}
        for g, name in enumerate(ds["group"].values.tolist()):
            if not bool(d["held"].values[g]):
                continue
            dg = d.isel(group=g)
            gobj = {k: to_plain(dg[k], gd) for k in _GROUP_KEYS}
            gobj["margin_currency"] = str(ds["group_currency"].values[g])
            gobj["fx_rate"] = float(ds["group_fx"].values[g])
            groups[name] = gobj
        obj["groups"] = groups
        held = key[first[a] : first[a + 1]] % n_k
        obj["risk_arrays"] = {
            str(ds["contract"].values[k]): to_plain(ds["risk_array"].isel(contract=k), gd + ["scenario"])
            for k in held
        }
        obj["composite_deltas"] = {
            str(ds["contract"].values[k]): to_plain(ds["composite_delta"].isel(contract=k), gd) for k in held
        }
        obj["risk_array_currency"] = {
            str(ds["contract"].values[k]): str(ds["contract_currency"].values[k]) for k in held
        }
        out[acct] = obj
    return out


def _fmt(x: float) -> str:
    return f"{x:,.2f}"


def base_grid_point(ds: xr.Dataset, dims: list[str]) -> dict[str, int]:
    """Index of the "no change" point of each grid dim (shift 0, scale 1, step 0), else the first."""
    neutral = {"shift": 0.0, "vol_shift": 0.0, "price_scan_scale": 1.0, "vol_scan_scale": 1.0}
    out = {}
    for dim in dims:
        vals = ds[dim].values
        hit = np.flatnonzero(vals == neutral[dim]) if dim in neutral and vals.dtype.kind == "f" else []
        out[dim] = int(hit[0]) if len(hit) else 0
    return out


def span_table(ds: xr.Dataset, account: str) -> str:
    """A readable SPAN breakdown of one account (at the base grid point when there are grid dims)."""
    d = ds.sel(account=account)
    gd = list(d["maintenance"].dims)
    note = ""
    if gd:
        point = base_grid_point(ds, gd)
        d = d.isel(point)
        note = "  (grid point " + ", ".join(f"{dim}={ds[dim].values[i]}" for dim, i in point.items()) + ")"
    ccy = ds.attrs.get("currency", "")
    lines = [f"SPAN  account {account}  [{ccy}]{note}"]
    head = f"{'combined commodity':<20}{'scan risk':>14}{'scenario':>9}{'intra':>12}{'spot':>12}{'inter cr.':>12}{'SOM':>12}{'CC risk':>14}"
    lines += [head, "-" * len(head)]
    for g, name in enumerate(ds["group"].values.tolist()):
        if not bool(d["held"].values[g]):
            continue
        dg = d.isel(group=g)
        lines.append(
            f"{name:<20}{_fmt(float(dg['scan_risk'])):>14}{int(dg['active_scenario']):>9}"
            f"{_fmt(float(dg['intra_spread_charge'])):>12}{_fmt(float(dg['spot_charge'])):>12}"
            f"{_fmt(float(dg['inter_spread_credit'])):>12}{_fmt(float(dg['short_option_minimum'])):>12}"
            f"{_fmt(float(dg['risk'])):>14}"
        )
    lines.append("-" * len(head))
    lines.append(f"{'sum of CC risks':<30}{_fmt(float(d['span_risk'])):>20}")
    lines.append(f"{'net option value':<30}{_fmt(float(d['net_option_value'])):>20}")
    lines.append(f"{'maintenance':<30}{_fmt(float(d['maintenance'])):>20}")
    lines.append(f"{'initial':<30}{_fmt(float(d['initial'])):>20}")
    return "\n".join(lines)
