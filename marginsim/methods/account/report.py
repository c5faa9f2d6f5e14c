"""The JSON contract and the readable table of the account layer.

The JSON is generated from the declaration (:data:`.variables.OUTPUTS`): every output with a
``json`` section is converted once for the whole book (:func:`marginsim.outputs.per_account`,
``.tolist()`` of whole arrays) and each section's keys come in declaration order. What cannot be
declared is here, as small named pieces: the conversions of codes, local times and flags
(:data:`CONVERT`), where the nested objects and the attrs go among the account's keys
(:data:`AFTER`), and the filters (currencies that hold nothing). The table keeps its own layout;
its bytes, like the JSON's, are fixed by the recorded outputs (``tests/test_golden.py``).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import xarray as xr

from ...kernels.account import STATE_NAMES
from ...outputs import base_grid_point, json_keys, per_account, rows_per_account, to_plain
from .variables import OUTPUTS

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


def _flags(values: np.ndarray) -> np.ndarray:
    """1 / 0 / -1 (not checked) -> True / False / None."""
    out = values.astype(bool).astype(object)
    out[values < 0] = None
    return out


def _state_names(values: np.ndarray) -> np.ndarray:
    return np.array(STATE_NAMES, dtype=object)[values]


def _product_class(values: np.ndarray) -> np.ndarray:
    return np.where(values.astype(bool), "controlled", "ordinary").astype(object)


def _labels(values: np.ndarray) -> np.ndarray:
    return values.astype(str).astype(object)


def _split(values: np.ndarray) -> np.ndarray:
    """Comma-separated lists -> lists (``""``: none)."""
    out = np.empty(values.shape, dtype=object)
    out[...] = [[c for c in str(v).split(",") if c] for v in values.ravel().tolist()]
    return out


#: What cannot be declared: the variables the JSON shows otherwise than as their plain values.
#: (Labels are ``str``; money, ratios and flags keep their type; NaN becomes null.)
CONVERT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "state": _state_names,
    "opening_threshold_met": _flags,
    "trading_activated": _flags,
    "controlled_products_allowed": _flags,
    "product_allowed": _flags,
    "product_controlled": _product_class,
    "currencies_converted": _split,
    "day_basis": lambda v: v.astype(np.int64),
    "liquidation_position": lambda v: v.astype(np.int64),
}

#: Where each nested object (and attr) goes among the keys of its parent: after this key.
AFTER = {
    "deadline": ("currency_groups", "forced_conversions", "base_currency"),
    "lme_not_due": ("initial_by_source", "conversion_plan", "liquidation", "interest", "eligibility"),
}


def _columns(
    ds: xr.Dataset, section: str, dims: list[str], tz: zoneinfo.ZoneInfo, by_account: bool = True
) -> dict[str, Any]:
    """Each declared output of ``section``: its JSON key -> its plain value per account (over
    ``account`` first, then ``dims``; a variable without the ``account`` dim is the same for
    every account), or, with ``by_account=False``, its plain value over ``dims``.
    Every variable is converted once for the whole book."""
    by_kind: dict[str, Callable[[np.ndarray], np.ndarray]] = {"M": partial(_iso, tz=tz), "O": _labels}
    out = {}
    for o in json_keys(OUTPUTS, section):
        da = ds[o.name]
        if by_account and "account" not in da.dims:
            da = da.expand_dims(account=ds.sizes["account"])
        convert = CONVERT.get(o.name) or by_kind.get(da.dtype.kind)
        if convert is None:
            out[o.json_key] = per_account(da, dims) if by_account else to_plain(da, dims)
            continue
        order = ["account"] if by_account else []
        order += [d for d in dims if d in da.dims and d not in order]
        out[o.json_key] = convert(da.transpose(*order, ...).values).tolist()  # no NaN: None, labels, ints
    return out


def account_to_dict(ds: xr.Dataset, gd: list[str]) -> dict[str, Any]:
    """Per account: the ``account`` object of the JSON contract (numbers along grid dims are nested lists).

    Every key comes from the declaration (:data:`.variables.OUTPUTS`: its ``json`` section and
    key, in declaration order), each variable converted once for the whole book; the nesting
    (:data:`AFTER`), the attrs and the filters (currencies that hold nothing) are here.
    """
    tz = zoneinfo.ZoneInfo(ds.attrs.get("timezone", "Asia/Hong_Kong"))
    accounts = [str(a) for a in ds["account"].values.tolist()]
    ccys = [str(c) for c in ds["currency"].values.tolist()]
    groups = [str(g) for g in ds["currency_group"].values.tolist()]
    top = _columns(ds, "account", gd, tz)
    by_source = _columns(ds, "initial_by_source", gd, tz)
    group_cols = _columns(ds, "currency_group", ["currency_group", *gd], tz)
    ccy_cols = _columns(ds, "currency", ["currency_group", "currency", *gd], tz)
    nonzero = (ds["balance"] != 0) | (ds["currency_exchange_initial"] != 0)
    along = [d for d in nonzero.dims if d not in ("account", "currency_group", "currency")]
    held = per_account(nonzero.any(along) if along else nonzero, ["currency_group", "currency"])
    conv = _columns(ds, "conversion_plan", gd, tz)
    liq = _columns(ds, "liquidation", gd, tz)
    interest = _columns(ds, "interest", gd, tz)
    interest_ccy = _columns(ds, "interest.currencies", ["currency"], tz)
    shown = per_account((ds["settled_balance"] != 0) | (ds["short_credit"] != 0), ["currency"])
    elig = _columns(ds, "eligibility", gd, tz)

    def rows(section: str, dim: str, owner: str) -> tuple[dict[str, Any], list[list[int]]]:
        if dim not in ds.dims:
            return {}, [[] for _ in accounts]
        return _columns(ds, section, [dim], tz, by_account=False), rows_per_account(
            ds[owner].values, accounts
        )

    mv_cols, mv_rows = rows("forced_conversions", "movement", "movement_account")
    lq_cols, lq_rows = rows("liquidation.positions", "liquidation", "liquidation_account")
    pos_cols, pos_rows = rows("eligibility.positions", "position", "position_account")
    ready: dict[str, Any] | None = None
    if "stock" in ds.dims:
        cols = _columns(ds, "eligibility.ready_market", ["stock"], tz, by_account=False)
        ready = {
            str(s): {k: col[i] for k, col in cols.items()} for i, s in enumerate(ds["stock"].values.tolist())
        }

    def one(cols: dict[str, Any], a: int) -> dict[str, Any]:
        return {k: col[a] for k, col in cols.items()}

    out: dict[str, Any] = {}
    for a, acct in enumerate(accounts):  # assembly only: every value is converted above
        nested: dict[str, Any] = {
            "currency_groups": {
                gname: {
                    **{k: col[a][g] for k, col in group_cols.items()},
                    "currencies": {
                        cname: {k: col[a][g][c] for k, col in ccy_cols.items()}
                        for c, cname in enumerate(ccys)
                        if held[a][g][c]
                    },
                }
                for g, gname in enumerate(groups)
            },
            "forced_conversions": [{k: col[i] for k, col in mv_cols.items()} for i in mv_rows[a]],
            "base_currency": ds.attrs["base_currency"],
            "initial_by_source": one(by_source, a),
            "conversion_plan": {"point": ds.attrs["conversion_point"], **one(conv, a)},
            "liquidation": {
                "point": ds.attrs["liquidation_point"],
                **one(liq, a),
                "positions": [{k: col[i] for k, col in lq_cols.items()} for i in lq_rows[a]],
            },
            "interest": {
                **one(interest, a),
                "currencies": {
                    cname: {k: col[a][c] for k, col in interest_ccy.items()}
                    for c, cname in enumerate(ccys)
                    if shown[a][c]
                },
            },
            "eligibility": {
                **one(elig, a),
                "positions": {str(i): {k: col[i] for k, col in pos_cols.items()} for i in pos_rows[a]},
                **({"ready_market": {s: dict(v) for s, v in ready.items()}} if ready is not None else {}),
            },
        }
        obj: dict[str, Any] = {}
        for k, col in top.items():
            obj[k] = col[a]
            for n in AFTER.get(k, ()):
                obj[n] = nested[n]
        out[acct] = obj
    return out


def _f(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:,.2f}"


def _pct(x: float) -> str:
    return "inf" if not np.isfinite(x) else f"{100 * x:,.1f} %"


def _names(section: str) -> list[str]:
    """The variables of a JSON section, in declaration order."""
    return [o.name for o in json_keys(OUTPUTS, section)]


def _values(d: xr.Dataset | xr.DataArray, names: tuple[str, ...], *dims: str) -> dict[str, Any]:
    """Plain values (lists over ``dims``) of variables of one account, each converted once."""
    return {k: d[k].transpose(*dims).values.tolist() for k in names}


def account_table(ds: xr.Dataset, account: str) -> str:
    """A readable breakdown of one account: state along the path, groups, plans, interest, flags."""
    tz = zoneinfo.ZoneInfo(ds.attrs.get("timezone", "Asia/Hong_Kong"))
    d = ds.sel(account=account)
    a = [str(x) for x in ds["account"].values.tolist()].index(account)
    ccy, base = ds.attrs["currency"], ds.attrs["base_currency"]
    gd = [str(x) for x in d["equity"].dims]
    lines = [f"ACCOUNT  {account}  [{ccy}; group bases in {base}]"]
    head = f"{'point':<16}{'equity':>16}{'initial':>16}{'maintenance':>16}{'risk ratio':>12}{'maint. ratio':>14}  {'state':<20}{'deadline'}"
    lines += [head, "-" * len(head)]
    other = {x: i for x, i in base_grid_point(ds, [x for x in gd if x != "step"]).items()}
    dd = d.isel(other) if other else d
    along = ("step",) if "step" in gd else ()
    path = _values(
        dd, ("equity", "initial", "maintenance", "risk_ratio", "maintenance_risk_ratio", "overdue"), *along
    )
    path["state"] = _state_names(dd["state"].values.reshape(-1)).tolist()
    path["deadline"] = _iso(dd["deadline"].values.reshape(-1), tz).tolist()
    if not along:
        path = {k: [v] if k not in ("state", "deadline") else v for k, v in path.items()}
    for s in range(len(path["state"])):
        label = f"step {s}" if along else "now"
        lines.append(
            f"{label:<16}{_f(path['equity'][s]):>16}{_f(path['initial'][s]):>16}{_f(path['maintenance'][s]):>16}"
            f"{_pct(path['risk_ratio'][s]):>12}{_pct(path['maintenance_risk_ratio'][s]):>14}  "
            f"{path['state'][s]:<20}{path['deadline'][s] or ''}{'  OVERDUE' if path['overdue'][s] else ''}"
        )
    if other:
        lines.append("  (at " + ", ".join(f"{x}={ds[x].values[i]}" for x, i in other.items()) + ")")
    last = dd.isel(step=-1) if "step" in gd else dd
    lines.append("")
    lines.append(f"currency groups ({'last step' if 'step' in gd else 'now'})")
    head = f"{'group':<8}{'currency':<10}{'balance':>16}{'exch. initial':>16}{'test':>6}{'base ' + base:>18}{'initial':>14}{'available':>14}{'test':>6}"
    lines += [head, "-" * len(head)]
    grp = _values(
        last, ("group_base", "group_initial", "group_available", "transfer_test_met"), "currency_group"
    )
    cur = _values(
        last, ("balance", "currency_exchange_initial", "conversion_test_met"), "currency_group", "currency"
    )
    for g, gname in enumerate(ds["currency_group"].values.tolist()):
        lines.append(
            f"{gname:<8}{'':<10}{'':>16}{'':>16}{'':>6}{_f(grp['group_base'][g]):>18}"
            f"{_f(grp['group_initial'][g]):>14}{_f(grp['group_available'][g]):>14}"
            f"{'ok' if grp['transfer_test_met'][g] else 'SHORT':>6}"
        )
        for c, cname in enumerate(ds["currency"].values.tolist()):
            bal, exch = cur["balance"][g][c], cur["currency_exchange_initial"][g][c]
            if bal == 0 and exch == 0:
                continue
            lines.append(
                f"{'':<8}{cname:<10}{_f(bal):>16}{_f(exch):>16}"
                f"{'ok' if cur['conversion_test_met'][g][c] else 'SHORT':>6}"
            )
    lines.append(
        f"total base {base}: {_f(last['total_base'].item())}   withdrawable: {_f(last['withdrawable'].item())} {ccy}"
    )
    one = _values(
        d,
        (
            "conversion_rule",
            "conversion_complete",
            "conversion_shortfall_before",
            "conversion_shortfall_after",
            "liquidation_needed",
            "liquidation_complete",
            "liquidation_fees",
            "liquidation_realised_pnl",
            "available_after_liquidation",
            "net_interest_base",
            "opening_threshold_met",
            "trading_activated",
            "controlled_products_allowed",
        ),
    )
    lines.append("")
    lines.append(
        f"forced conversion plan (at {ds.attrs['conversion_point'] or 'now'}): rule {one['conversion_rule']}, "
        f"{'complete' if one['conversion_complete'] else 'INCOMPLETE'}, shortfall {_f(one['conversion_shortfall_before'])}"
        f" -> {_f(one['conversion_shortfall_after'])} {base}"
    )
    if "movement" in ds.dims:
        (rows,) = rows_per_account(ds["movement_account"].values, [account])
        mv = {k: ds[k].values[rows].tolist() for k in _names("forced_conversions")}
        for i in range(len(rows)):
            lines.append(
                f"  {str(mv['kind'][i]):<11}{_f(mv['amount'][i]):>16} {mv['movement_currency'][i]} "
                f"{mv['from_group'][i]} -> {_f(mv['to_amount'][i])} {mv['to_currency'][i]} "
                f"{mv['to_group'][i]}  @ {mv['rate'][i]:.6g}  [{mv['movement_rule'][i]}]"
            )
    if one["liquidation_needed"]:
        lines.append("")
        lines.append(
            f"forced liquidation plan (at {ds.attrs['liquidation_point'] or 'now'}): "
            f"{'complete' if one['liquidation_complete'] else 'INCOMPLETE'}, fees {_f(one['liquidation_fees'])}, "
            f"realised pnl {_f(one['liquidation_realised_pnl'])}, available after {_f(one['available_after_liquidation'])} {ccy}"
        )
        (rows,) = rows_per_account(ds["liquidation_account"].values, [account])
        lq = {k: ds[k].values[rows].tolist() for k in _names("liquidation.positions")}
        for i in range(len(rows)):
            lines.append(
                f"  close {lq['close'][i]:g} of {lq['liquidation_quantity'][i]:g} "
                f"{lq['liquidation_contract'][i]} @ {lq['close_price'][i]:g}"
                f"  fee {_f(lq['fee'][i])}  realised pnl {_f(lq['realised_pnl'][i])}"
            )
    lines.append("")
    lines.append(f"interest per year (settled cash): {_f(one['net_interest_base'])} {base}")
    rate = _values(
        d,
        ("settled_balance", "short_credit", "credit_interest", "debit_interest", "short_credit_interest"),
        "currency",
    )
    for c, cname in enumerate(ds["currency"].values.tolist()):
        if rate["settled_balance"][c] == 0 and rate["short_credit"][c] == 0:
            continue
        lines.append(
            f"  {cname}: balance {_f(rate['settled_balance'][c])}, short credit {_f(rate['short_credit'][c])}"
            f"  credit +{_f(rate['credit_interest'][c])}  debit -{_f(rate['debit_interest'][c])}"
            f"  short credit +{_f(rate['short_credit_interest'][c])}"
        )
    flags = []
    for k in ("opening_threshold_met", "trading_activated", "controlled_products_allowed"):
        v = _flag(one[k])
        if v is not None:
            flags.append(f"{k}={v}")
    pos = np.flatnonzero(ds["position_account"].values == a)
    el = {
        k: ds[k].values[pos].tolist()
        for k in ("position_contract", "over_position_limit", "reportable", "product_allowed")
    }
    for i in range(pos.size):
        notes = []
        if el["over_position_limit"][i]:
            notes.append("OVER POSITION LIMIT")
        if el["reportable"][i]:
            notes.append("reportable (large open position)")
        if el["product_allowed"][i] == 0:
            notes.append("product class not allowed for the investor class")
        if notes:
            flags.append(f"{el['position_contract'][i]}: " + ", ".join(notes))
    if flags:
        lines.append("")
        lines.append("eligibility: " + "; ".join(flags))
    return "\n".join(lines)
