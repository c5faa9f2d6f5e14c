"""The JSON contract and the readable table of the account layer.

Both are written by hand, not by :mod:`marginsim.outputs`' generic writers: the account object
nests currency groups, currencies, plans, interest and eligibility, and its bytes are fixed by the
recorded outputs (``tests/test_golden.py``).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import numpy as np
import xarray as xr

from ...kernels.account import STATE_NAMES
from ...outputs import base_grid_point, to_plain

__all__ = ["account_to_dict", "account_table"]


def _iso(values: np.ndarray, tz: zoneinfo.ZoneInfo) -> np.ndarray:
    out = np.empty(values.shape, dtype=object)
    for idx, v in np.ndenumerate(values):  # formatting only
        if np.isnat(v):
            out[idx] = None
        else:
            t = v.astype("datetime64[s]").astype(dt.datetime)
            out[idx] = t.replace(tzinfo=tz).isoformat()
    return out


def _flag(v: int) -> bool | None:
    return None if v < 0 else bool(v)


def account_to_dict(ds: xr.Dataset, gd: list[str]) -> dict[str, Any]:
    """Per account: the ``account`` object of the JSON contract (numbers along grid dims are nested lists)."""
    tz = zoneinfo.ZoneInfo(ds.attrs.get("timezone", "Asia/Hong_Kong"))
    out: dict[str, Any] = {}
    names = np.array(STATE_NAMES, dtype=object)
    for a, acct in enumerate(ds["account"].values.tolist()):
        d = ds.isel(account=a)
        obj: dict[str, Any] = {
            k: to_plain(d[k], gd)
            for k in ("equity", "initial", "maintenance", "risk_ratio", "maintenance_risk_ratio")
        }
        obj["state"] = to_plain(xr.DataArray(names[d["state"].values], dims=d["state"].dims), gd)
        obj["deadline"] = to_plain(xr.DataArray(_iso(d["deadline"].values, tz), dims=d["deadline"].dims), gd)
        groups: dict[str, Any] = {}
        for g, gname in enumerate(ds["currency_group"].values.tolist()):
            dg = d.isel(currency_group=g)
            ccys = {}
            for c, cname in enumerate(ds["currency"].values.tolist()):
                dc = dg.isel(currency=c)
                if not (
                    np.any(dc["balance"].values != 0) or np.any(dc["currency_exchange_initial"].values != 0)
                ):
                    continue
                ccys[cname] = {
                    "balance": to_plain(dc["balance"], gd),
                    "cash": float(dc["cash"].values),
                    "exchange_initial": to_plain(dc["currency_exchange_initial"], gd),
                    "initial": to_plain(dc["currency_initial"], gd),
                    "conversion_test_met": to_plain(dc["conversion_test_met"], gd),
                    "withdrawable": to_plain(dc["currency_withdrawable"], gd),
                }
            groups[gname] = {
                "base": to_plain(dg["group_base"], gd),
                "initial": to_plain(dg["group_initial"], gd),
                "maintenance": to_plain(dg["group_maintenance"], gd),
                "available_funds": to_plain(dg["group_available"], gd),
                "transfer_test_met": to_plain(dg["transfer_test_met"], gd),
                "withdrawable": to_plain(dg["group_withdrawable"], gd),
                "currencies": ccys,
            }
        obj["currency_groups"] = groups
        mv = np.flatnonzero(ds["movement_account"].values == acct) if "movement" in ds.dims else np.zeros(0, np.int64)
        obj["forced_conversions"] = [
            {
                "kind": str(ds["kind"].values[i]),
                "amount": float(ds["amount"].values[i]),
                "currency": str(ds["movement_currency"].values[i]),
                "from_group": str(ds["from_group"].values[i]),
                "to_group": str(ds["to_group"].values[i]),
                "rate": float(ds["rate"].values[i]),
                "to_currency": str(ds["to_currency"].values[i]),
                "to_amount": float(ds["to_amount"].values[i]),
                "rule": str(ds["movement_rule"].values[i]),
            }
            for i in mv
        ]
        obj["base_currency"] = ds.attrs["base_currency"]
        obj["total_base"] = to_plain(d["total_base"], gd)
        for k in (
            "exchange_initial",
            "exchange_maintenance",
            "available_funds",
            "excess_liquidity",
            "withdrawable",
            "option_value_excluded",
            "forced_conversion_needed",
            "overdue",
        ):
            obj[k] = to_plain(d[k], gd)
        obj["call_time"] = to_plain(
            xr.DataArray(_iso(d["call_time"].values, tz), dims=d["call_time"].dims), gd
        )
        obj["lme_not_due"] = float(d["lme_not_due"].values)
        obj["initial_by_source"] = {
            str(k).removeprefix("initial_"): to_plain(d[k], gd) for k in ds.data_vars if str(k).startswith("initial_")
        }
        obj["conversion_plan"] = {
            "point": ds.attrs["conversion_point"],
            "rule": str(d["conversion_rule"].values),
            "complete": bool(d["conversion_complete"].values),
            "shortfall_before": float(d["conversion_shortfall_before"].values),
            "shortfall_after": float(d["conversion_shortfall_after"].values),
            "currencies_converted": [c for c in str(d["currencies_converted"].values).split(",") if c],
        }
        rows = (
            np.flatnonzero(ds["liquidation_account"].values == acct)
            if "liquidation" in ds.dims
            else np.zeros(0, np.int64)
        )
        obj["liquidation"] = {
            "point": ds.attrs["liquidation_point"],
            "needed": bool(d["liquidation_needed"].values),
            "complete": bool(d["liquidation_complete"].values),
            "contracts": float(d["liquidation_contracts"].values),
            "fees": float(d["liquidation_fees"].values),
            "cash_realised": float(d["liquidation_cash"].values),
            "realised_pnl": float(d["liquidation_realised_pnl"].values),
            "available_after": float(d["available_after_liquidation"].values),
            "positions": [
                {
                    "position": int(ds["liquidation_position"].values[i]),
                    "contract": str(ds["liquidation_contract"].values[i]),
                    "quantity": float(ds["liquidation_quantity"].values[i]),
                    "close": float(ds["close"].values[i]),
                    "price": float(ds["close_price"].values[i]),
                    "fee": float(ds["fee"].values[i]),
                    "cash_realised": float(ds["cash_realised"].values[i]),
                    "realised_pnl": float(ds["realised_pnl"].values[i]),
                }
                for i in rows
            ],
        }
        obj["interest"] = {
            "per_year_base": float(d["net_interest_base"].values),
            "currencies": {
                str(c): {
                    "settled_balance": float(d["settled_balance"].values[i]),
                    "short_credit": float(d["short_credit"].values[i]),
                    "credit_interest": float(d["credit_interest"].values[i]),
                    "debit_interest": float(d["debit_interest"].values[i]),
                    "short_credit_interest": float(d["short_credit_interest"].values[i]),
                    "net_per_year": float(d["net_interest"].values[i]),
                    "net_per_day": float(d["net_interest_daily"].values[i]),
                    "day_basis": int(ds["day_basis"].values[i]),
                }
                for i, c in enumerate(ds["currency"].values.tolist())
                if d["settled_balance"].values[i] != 0 or d["short_credit"].values[i] != 0
            },
        }
        pos = np.flatnonzero(ds["position_account"].values == a)
        elig: dict[str, Any] = {
            "opening_threshold_met": _flag(int(d["opening_threshold_met"].values)),
            "opening_assets_usd": None
            if np.isnan(d["opening_assets_usd"].values)
            else float(d["opening_assets_usd"].values),
            "trading_activated": _flag(int(d["trading_activated"].values)),
            "deposits_usd": None if np.isnan(d["deposits_usd"].values) else float(d["deposits_usd"].values),
            "controlled_products_allowed": _flag(int(d["controlled_products_allowed"].values)),
            "positions": {
                str(int(p)): {
                    "contract": str(ds["position_contract"].values[p]),
                    "product": str(ds["position_product"].values[p]),
                    "margin_source": str(ds["position_source"].values[p]),
                    "product_class": "controlled" if bool(ds["product_controlled"].values[p]) else "ordinary",
                    "product_allowed": _flag(int(ds["product_allowed"].values[p])),
                    "net_quantity": float(ds["product_net_quantity"].values[p]),
                    "over_position_limit": bool(ds["over_position_limit"].values[p]),
                    "reportable": bool(ds["reportable"].values[p]),
                }
                for p in pos
            },
        }
        if "stock" in ds.dims:
            elig["ready_market"] = {
                str(s): {
                    k: bool(ds[v].values[i])
                    for k, v in (
                        ("listed_90_days_recognised_exchange", "ready_listed"),
                        ("electronic_quotes", "ready_quotes"),
                        ("volume", "ready_volume"),
                        ("free_float", "ready_free_float"),
                        ("meets_all", "ready_meets_all"),
                        ("in_grace", "in_grace"),
                        ("ready_market", "ready_market"),
                    )
                }
                for i, s in enumerate(ds["stock"].values.tolist())
            }
        obj["eligibility"] = elig
        out[acct] = obj
    return out


def _f(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:,.2f}"


def _pct(x: float) -> str:
    return "inf" if not np.isfinite(x) else f"{100 * x:,.1f} %"


def account_table(ds: xr.Dataset, account: str) -> str:
    """A readable breakdown of one account: state along the path, groups, plans, interest, flags."""
    tz = zoneinfo.ZoneInfo(ds.attrs.get("timezone", "Asia/Hong_Kong"))
    d = ds.sel(account=account)
    ccy, base = ds.attrs["currency"], ds.attrs["base_currency"]
    gd = [str(x) for x in d["equity"].dims]
    lines = [f"ACCOUNT  {account}  [{ccy}; group bases in {base}]"]
    head = f"{'point':<16}{'equity':>16}{'initial':>16}{'maintenance':>16}{'risk ratio':>12}{'maint. ratio':>14}  {'state':<20}{'deadline'}"
    lines += [head, "-" * len(head)]
    other = {x: i for x, i in base_grid_point(ds, [x for x in gd if x != "step"]).items()}
    dd = d.isel(other) if other else d
    steps = list(range(ds.sizes["step"])) if "step" in gd else [None]
    for s in steps:
        p = dd.isel(step=s) if s is not None else dd
        dl = p["deadline"].values
        dl_s = "" if np.isnat(dl) else _iso(np.array([dl]), tz)[0]
        label = f"step {s}" if s is not None else "now"
        lines.append(
            f"{label:<16}{_f(float(p['equity'])):>16}{_f(float(p['initial'])):>16}{_f(float(p['maintenance'])):>16}"
            f"{_pct(float(p['risk_ratio'])):>12}{_pct(float(p['maintenance_risk_ratio'])):>14}  "
            f"{STATE_NAMES[int(p['state'])]:<20}{dl_s}{'  OVERDUE' if bool(p['overdue']) else ''}"
        )
    if other:
        lines.append("  (at " + ", ".join(f"{x}={ds[x].values[i]}" for x, i in other.items()) + ")")
    last = dd.isel(step=-1) if "step" in gd else dd
    lines.append("")
    lines.append(f"currency groups ({'last step' if 'step' in gd else 'now'})")
    head = f"{'group':<8}{'currency':<10}{'balance':>16}{'exch. initial':>16}{'test':>6}{'base ' + base:>18}{'initial':>14}{'available':>14}{'test':>6}"
    lines += [head, "-" * len(head)]
    for g, gname in enumerate(ds["currency_group"].values.tolist()):
        dg = last.isel(currency_group=g)
        lines.append(
            f"{gname:<8}{'':<10}{'':>16}{'':>16}{'':>6}{_f(float(dg['group_base'])):>18}"
            f"{_f(float(dg['group_initial'])):>14}{_f(float(dg['group_available'])):>14}"
            f"{'ok' if bool(dg['transfer_test_met']) else 'SHORT':>6}"
        )
        for c, cname in enumerate(ds["currency"].values.tolist()):
            dc = dg.isel(currency=c)
            if float(dc["balance"]) == 0 and float(dc["currency_exchange_initial"]) == 0:
                continue
            lines.append(
                f"{'':<8}{cname:<10}{_f(float(dc['balance'])):>16}{_f(float(dc['currency_exchange_initial'])):>16}"
                f"{'ok' if bool(dc['conversion_test_met']) else 'SHORT':>6}"
            )
    lines.append(
        f"total base {base}: {_f(float(last['total_base']))}   withdrawable: {_f(float(last['withdrawable']))} {ccy}"
    )
    lines.append("")
    lines.append(
        f"forced conversion plan (at {ds.attrs['conversion_point'] or 'now'}): rule {d['conversion_rule'].item()}, "
        f"{'complete' if bool(d['conversion_complete']) else 'INCOMPLETE'}, shortfall {_f(float(d['conversion_shortfall_before']))}"
        f" -> {_f(float(d['conversion_shortfall_after']))} {base}"
    )
    for i in np.flatnonzero(ds["movement_account"].values == account) if "movement" in ds.dims else []:
        kind = str(ds["kind"].values[i])
        lines.append(
            f"  {kind:<11}{_f(float(ds['amount'].values[i])):>16} {ds['movement_currency'].values[i]} "
            f"{ds['from_group'].values[i]} -> {_f(float(ds['to_amount'].values[i]))} {ds['to_currency'].values[i]} "
            f"{ds['to_group'].values[i]}  @ {float(ds['rate'].values[i]):.6g}  [{ds['movement_rule'].values[i]}]"
        )
    if bool(d["liquidation_needed"]):
        lines.append("")
        lines.append(
            f"forced liquidation plan (at {ds.attrs['liquidation_point'] or 'now'}): "
            f"{'complete' if bool(d['liquidation_complete']) else 'INCOMPLETE'}, fees {_f(float(d['liquidation_fees']))}, "
            f"realised pnl {_f(float(d['liquidation_realised_pnl']))}, available after {_f(float(d['available_after_liquidation']))} {ccy}"
        )
        for i in np.flatnonzero(ds["liquidation_account"].values == account):
            lines.append(
                f"  close {float(ds['close'].values[i]):g} of {float(ds['liquidation_quantity'].values[i]):g} "
                f"{ds['liquidation_contract'].values[i]} @ {float(ds['close_price'].values[i]):g}"
                f"  fee {_f(float(ds['fee'].values[i]))}  realised pnl {_f(float(ds['realised_pnl'].values[i]))}"
            )
    lines.append("")
    lines.append(f"interest per year (settled cash): {_f(float(d['net_interest_base']))} {base}")
    for c, cname in enumerate(ds["currency"].values.tolist()):
        if float(d["settled_balance"][c]) == 0 and float(d["short_credit"][c]) == 0:
            continue
        lines.append(
            f"  {cname}: balance {_f(float(d['settled_balance'][c]))}, short credit {_f(float(d['short_credit'][c]))}"
            f"  credit +{_f(float(d['credit_interest'][c]))}  debit -{_f(float(d['debit_interest'][c]))}"
            f"  short credit +{_f(float(d['short_credit_interest'][c]))}"
        )
    flags = []
    for k in ("opening_threshold_met", "trading_activated", "controlled_products_allowed"):
        v = _flag(int(d[k]))
        if v is not None:
            flags.append(f"{k}={v}")
    pos = np.flatnonzero(ds["position_account"].values == list(ds["account"].values).index(account))
    for row in pos:
        notes = []
        if bool(ds["over_position_limit"].values[row]):
            notes.append("OVER POSITION LIMIT")
        if bool(ds["reportable"].values[row]):
            notes.append("reportable (large open position)")
        if int(ds["product_allowed"].values[row]) == 0:
            notes.append("product class not allowed for the investor class")
        if notes:
            flags.append(f"{ds['position_contract'].values[row]}: " + ", ".join(notes))
    if flags:
        lines.append("")
        lines.append("eligibility: " + "; ".join(flags))
    return "\n".join(lines)
