"""The SPAN result as the JSON contract (``spec/scenario-format.md``) and as a readable table.

The JSON object of an account is generated from the declared outputs (:data:`.outputs.OUTPUTS`):
the ``"account"`` outputs as its keys (the generic writer, :func:`marginsim.outputs.account_json`), the ``"group"`` outputs as the object of each combined
commodity it holds (under ``groups``), the ``"contract"`` outputs as one object per output keyed
by the contracts it holds. Each variable is converted to plain lists once for the whole book.
The table keeps its own layout (one row per combined commodity).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ...outputs import Output, account_json, base_grid_point, json_keys, to_plain
from .outputs import OUTPUTS

__all__ = ["span_to_dict", "span_table"]


def _plain(o: Output, da: xr.DataArray, dims: list[str]) -> list[Any]:
    """``da`` as nested lists in the order of ``dims``; labels as ``str``."""
    out: list[Any] = to_plain(da, dims)
    return [str(v) for v in out] if o.units == "" else out


def span_to_dict(ds: xr.Dataset, gd: list[str]) -> dict[str, Any]:
    """Per account: the ``span`` object of the JSON contract.

    Parameters
    ----------
    ds
        A SPAN result (:func:`marginsim.methods.span.span_margin`).
    gd
        The grid dims, in JSON order.

    Returns
    -------
    dict
        Account name -> its ``span`` object (amounts in the reporting currency, risk arrays in
        each contract's currency).
    """
    out = account_json(ds, OUTPUTS, gd)  # the "account" outputs: the generic writer
    n_a = len(out)

    # groups: one object per (account, combined commodity) pair held, in group order
    group_names = ds["group"].values.tolist()
    columns = []
    for o in json_keys(OUTPUTS, "group"):
        if o.name not in ds:
            continue  # an optional variable (super spread credit: only with super spreads)
        by_account = "account" in ds[o.name].dims
        dims = ["account", "group", *gd] if by_account else ["group", *gd]
        columns.append((o.json_key, by_account, _plain(o, ds[o.name], dims)))
    groups: list[dict[str, Any]] = [{} for _ in range(n_a)]
    pair_a, pair_g = np.nonzero(ds["held"].transpose("account", "group").values)
    for a, g in zip(pair_a.tolist(), pair_g.tolist()):
        groups[a][group_names[g]] = {k: col[a][g] if by_account else col[g] for k, by_account, col in columns}

    # contracts: each account's held contracts, for every account at once (sorted unique
    # (account, contract) keys, split by account)
    n_k = max(ds.sizes["contract"], 1)
    key = np.unique(ds["position_account"].values.astype(np.int64) * n_k + ds["position_contract"].values)
    first = np.searchsorted(key // n_k, np.arange(n_a + 1)).tolist()
    held = (key % n_k).tolist()
    names = [str(c) for c in ds["contract"].values.tolist()]
    contract_cols = [
        (o.json_key, _plain(o, ds[o.name], ["contract", *gd, "scenario"]))
        for o in json_keys(OUTPUTS, "contract")
    ]
    for a, obj in enumerate(out.values()):
        obj["groups"] = groups[a]
        mine = held[first[a] : first[a + 1]]
        for k_json, col in contract_cols:
            obj[k_json] = {names[k]: col[k] for k in mine}
    return out


def _fmt(x: float) -> str:
    return f"{x:,.2f}"


def span_table(ds: xr.Dataset, account: str) -> str:
    """A readable SPAN breakdown of one account (at the base grid point when there are grid dims)."""
    d = ds.sel(account=account)
    gd = [str(dim) for dim in d["maintenance"].dims]
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
    if "super_spread_credit" in d:
        lines.append(f"{'super spread credit':<30}{_fmt(float(d['super_spread_credit'].sum())):>20}")
    if "exposure_margin" in d:
        lines.append(f"{'exposure margin':<30}{_fmt(float(d['exposure_margin'])):>20}")
    lines.append(f"{'maintenance':<30}{_fmt(float(d['maintenance'])):>20}")
    lines.append(f"{'initial':<30}{_fmt(float(d['initial'])):>20}")
    if "rate_class" in ds:
        held = d["held"].values.astype(bool)
        initial = sorted(str(g) for g, k, h in zip(ds["group"].values, ds["rate_class"].values, held) if h and k == "initial")
        if initial:
            lines.append(
                "rate class initial (the risk arrays give the initial requirement; maintenance = initial / "
                f"initial_ratio): {', '.join(initial)}"
            )
    return "\n".join(lines)
