"""What the study notebooks compute: variants of a scenario, what-ifs and summary tables.

Every variant is built as data and computed in one call of :func:`marginsim.margin`: a grid of
what-ifs is a grid dim of the scenario (``grid:``), many books are many accounts. Nothing here
loops over grid points, accounts or positions to compute a margin.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from ..api import build_inputs, margin
from ..errors import InputError
from ..labels import display_name, method_name, with_unit
from ..model import Inputs
from ..params.cfd import CfdParams
from ..registry import REGISTRY, method_applies
from ..result import MarginResult, base_point
from ..scale import connect
from ..scenario import GridParams, ScenarioFile, load_scenario, parse_scenario

if TYPE_CHECKING:  # annotations only
    from ..trades import TradeBatch
    from ..whatif import BestHedge, WhatIfResult

__all__ = [
    "base_point",
    "load_book",
    "with_grid",
    "applicable_methods",
    "margin_by_method",
    "headline",
    "summary_table",
    "report_table",
    "grid_point_text",
    "without_group",
    "pm_top_driver",
    "cfd_leverage_book",
    "leverage_grid",
    "straight_path",
    "decision_point",
    "movements",
    "balances_before_after",
    "connect",
    "largest_account",
    "attribution_table",
    "trade_legs",
    "what_if_table",
    "best_hedge_table",
    "hedge_grid",
]


def load_book(path: str | Path) -> ScenarioFile:
    """A validated scenario file (:func:`marginsim.load_scenario`)."""
    return load_scenario(path)


def with_grid(sc: ScenarioFile, **grid: Any) -> ScenarioFile:
    """The scenario with its ``grid:`` replaced by ``grid`` (no grid when empty).

    Parameters
    ----------
    sc
        A validated scenario.
    **grid
        Keys of the ``grid:`` section, e.g. ``shift=[-0.1, 0, 0.1]`` or
        ``price_scan_scale=[...], vol_scan_scale=[...]``.

    Returns
    -------
    ScenarioFile
        A copy (the file it came from is kept, so relative paths still resolve).
    """
    new = GridParams(**grid) if grid else None
    return sc.model_copy(update={"grid": new})


def applicable_methods(sc: ScenarioFile) -> list[str]:
    """Every registered method that applies to the book (ignoring the file's ``methods:`` list)."""
    return [name for name in REGISTRY if method_applies(name, sc)]


def margin_by_method(
    sc: ScenarioFile | Inputs, methods: Sequence[str] | None = None, *, attribution: bool = False
) -> tuple[MarginResult, dict[str, str]]:
    """Run each method on the same book; a method that cannot run is reported, not raised.

    Parameters
    ----------
    sc
        The scenario (or its data model, built once and shared by the methods).
    methods
        Method names; default: :func:`applicable_methods`.
    attribution
        Also attribute each method's requirement to the positions
        (``margin(..., attribution=True)``: ``contribution`` and ``marginal``).

    Returns
    -------
    (MarginResult, dict)
        The results of the methods that ran, and method -> the reason for each that could not.
    """
    inputs = sc if isinstance(sc, Inputs) else build_inputs(sc)
    names = list(methods) if methods is not None else applicable_methods(inputs.scenario)
    result = MarginResult(inputs)
    problems: dict[str, str] = {}
    for name in names:  # a handful of methods, each over the whole book
        try:
            result.methods[name] = margin(inputs, methods=[name], attribution=attribution).methods[name]
        except InputError as e:
            problems[name] = str(e)
    return result, problems


def headline(result: MarginResult) -> pd.DataFrame:
    """Maintenance and initial margin per account and method, at the base point of the grid.

    Returns
    -------
    pandas.DataFrame
        Index ``account``; columns (``method``, ``maintenance`` | ``initial``) [reporting currency].
    """
    frames = {
        name: base_point(ds[["maintenance", "initial"]], keep=("account",)).to_dataframe()[
            ["maintenance", "initial"]
        ]
        for name, ds in result.methods.items()
    }
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, axis=1, names=["method", "amount"])
    table.index.name = "account"
    return table


def summary_table(
    result: MarginResult, problems: Mapping[str, str] | None = None, at: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """The opening table of a report: one row per account and method.

    Columns: maintenance, initial [reporting currency], what set the requirement (binding
    component or largest combined commodity), and a note (grid point, or why a method did not run).

    Parameters
    ----------
    result
        The results.
    problems
        Method -> why it did not run (a row each).
    at
        Grid point to show, as dim -> index (e.g. ``{"step": 3}``, the step of a margin call);
        dims not given (and methods without the dim) are at their base point.
    """
    rows = []
    for name, ds in result.methods.items():
        # the grid point asked for, the rest at its base point (a shift grid without 0 starts elsewhere)
        one = base_point(
            ds.isel({d: i for d, i in (at or {}).items() if d in ds.dims}), keep=("account", "group")
        )
        extra = {d: one[d].item() if d in one.coords else 0 for d in result.grid_dims if d in ds.dims}
        note = ", ".join(f"{k}={v}" for k, v in extra.items())
        if name == "portfolio_margin" and "binding" in one:
            driver = one["binding"].to_pandas().astype(str)
        elif "risk" in one and "group" in one["risk"].dims and one.sizes.get("group", 0):
            driver = one["risk"].idxmax("group").to_pandas().astype(str)
        else:
            driver = pd.Series("", index=one["account"].values)
        part = pd.DataFrame(
            {
                "method": name,
                "maintenance": one["maintenance"].to_pandas(),
                "initial": one["initial"].to_pandas(),
                "set by": driver,
                "note": note,
            }
        )
        rows.append(part)
    for name, why in (problems or {}).items():
        rows.append(pd.DataFrame({"method": [name], "note": [f"not run: {why}"]}, index=["(all)"]))
    if not rows:
        return pd.DataFrame(columns=["account", "method", "maintenance", "initial", "set by", "note"])
    out = pd.concat(rows)
    out.index.name = "account"
    out = out.reset_index()
    order = [*map(str, result.inputs.accounts), "(all)"]
    out["account"] = pd.Categorical(out["account"].astype(str), categories=order, ordered=True)
    out = out.sort_values("account", kind="stable")  # accounts in book order, methods in run order
    out["account"] = out["account"].astype(str)
    return out.set_index(["account", "method"])


def grid_point_text(note: str) -> str:
    """A summary table's grid-point note (``"shift=0.0, step=3"``) in words: ``"shift 0 %, step 3"``."""
    parts = []
    for pair in filter(None, (p.strip() for p in str(note).split(","))):
        dim, _, value = pair.partition("=")
        if dim == "shift":
            parts.append(f"price move {float(value):+.0%}".replace("+0%", "0 %").replace("%", " %"))
        else:
            parts.append(f"{display_name(dim)} {value}")
    return ", ".join(parts)


def report_table(
    frame: pd.DataFrame,
    *,
    caption: str = "",
    units: Mapping[str, str] | None = None,
    fmt: str = "{:,.2f}",
    formats: Mapping[str, str] | None = None,
) -> Any:
    """A table as a report shows it: display names, units in the headers, no empty column.

    Identifiers in the index, the column names and the text cells (method, component, class,
    currency-group names) become their display names (:mod:`marginsim.labels`); numeric column
    labels lose trailing zeros (``0.25``); columns that are empty in every row are left out; a
    summary table's grid-point note becomes words (``step 3``) and, when it is the same on every
    row, goes to the caption instead of a column.

    Parameters
    ----------
    frame
        The table (e.g. :func:`summary_table`); not changed.
    caption
        Text above the table: what it shows and at which grid point.
    units
        Column -> unit, added to the column's header as ``[unit]``.
    fmt
        Number format of the numeric columns.
    formats
        Column -> number format, instead of ``fmt``.

    Returns
    -------
    pandas.io.formats.style.Styler
        For ``display()`` in a notebook (its HTML is what the report shows).
    """
    out = frame.copy()
    empty = [c for c in out.columns if (out[c].isna() | (out[c].astype(str).str.strip() == "")).all()]
    out = out.drop(columns=empty)
    if "note" in out.columns:
        notes = out["note"].fillna("").astype(str)
        words = notes.where(notes.str.startswith("not run"), notes.map(grid_point_text))
        if words.nunique() == 1 and not words.iloc[0].startswith("not run"):
            if words.iloc[0] and words.iloc[0] not in caption:
                caption = f"{caption} At {words.iloc[0]}.".strip()
            out = out.drop(columns="note")
        else:
            out["note"] = words
    units = units or {}
    formats = formats or {}

    def one(v: Any, level_name: Any = None) -> Any:
        if level_name == "method":
            return method_name(str(v))
        if isinstance(v, float):
            return f"{v:g}"
        return display_name(v) if isinstance(v, str) else v

    def relabel(index: pd.Index, top_units: bool = False) -> pd.Index:
        names = list(index.names)
        if isinstance(index, pd.MultiIndex):
            rows = [
                tuple(
                    with_unit(display_name(v), units.get(v)) if top_units and i == 0 else one(v, names[i])
                    for i, v in enumerate(t)
                )
                for t in index
            ]
            return pd.MultiIndex.from_tuples(rows, names=[display_name(n) if n else n for n in names])
        cells = [with_unit(display_name(v), units.get(v)) if top_units else one(v, names[0]) for v in index]
        return pd.Index(cells, name=display_name(names[0]) if names[0] else None)

    numeric = [pd.api.types.is_numeric_dtype(out[c]) for c in out.columns]
    keys = [c[0] if isinstance(c, tuple) else c for c in out.columns]
    text = [c for c, num in zip(out.columns, numeric) if not num]
    for c in text:
        out[c] = out[c].map(lambda v: display_name(v) if isinstance(v, str) else v)
    out.index = relabel(out.index)
    out.columns = relabel(out.columns, top_units=True)
    fmts = {c: formats.get(k, fmt) for c, k, num in zip(out.columns, keys, numeric) if num}
    style = out.style.format(fmts, na_rep="")
    if not caption:
        return style
    return style.set_caption(caption).set_table_styles(
        [{"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: bold;"}],
        overwrite=False,
    )


def without_group(inputs: Inputs, group: str, account: str | None = None) -> Inputs:
    """A what-if: the book without the positions of one group (class group or combined commodity).

    Parameters
    ----------
    inputs
        The data model of the book.
    group
        The group whose positions are removed (their quantities set to 0).
    account
        Only in this account (default: every account).

    Returns
    -------
    Inputs
        A copy; the original is unchanged.
    """
    book = inputs.book
    pos_group = inputs.contracts["group"].values[book["contract_index"].values]
    drop = pos_group == group
    if account is not None:
        names = list(book["account_name"].values)
        if account not in names:
            raise KeyError(f"no account {account!r} (accounts: {', '.join(map(str, names))})")
        drop &= book["account_index"].values == names.index(account)
    new_book = book.assign(quantity=book["quantity"].where(~xr.DataArray(drop, dims="position"), 0.0))
    return dataclasses.replace(inputs, book=new_book)


def pm_top_driver(pm: xr.Dataset, account: str) -> str:
    """The class group behind an account's binding portfolio-margin component.

    ``single_name``: the single-name driver; ``concentration``: the riskiest class group of the
    stress; ``scan`` / ``minimum`` / ``extreme``: the class group with the largest part of it.

    Parameters
    ----------
    pm
        Result of the ``portfolio_margin`` method (grid dims at their base point).
    account
        The account.

    Returns
    -------
    str
        The class group ("" when nothing is charged).
    """
    at = base_point(pm.sel(account=account), keep=("group", "driver_rank", "single_name_method"))
    binding = str(at["binding"].values)
    if binding == "single_name":
        return str(at["single_name_driver"].values)
    if binding == "concentration":
        return str(at["concentration_driver"].isel(driver_rank=0).values)
    per_group = {"scan": "group_scan", "minimum": "group_minimum", "extreme": "group_extreme"}
    var = per_group.get(binding)
    if var is None or at.sizes.get("group", 0) == 0:
        return ""
    return str(at[var].idxmax("group").values)


def cfd_leverage_book(
    sc: ScenarioFile,
    leverage_used: Sequence[float],
    class_vols: Mapping[str, float],
    *,
    paths: int,
    steps: int,
    step_days: float = 1.0,
    seed: int = 0,
    cash: float | None = None,
    default_cash: float = 10_000.0,
    price: float = 100.0,
) -> tuple[ScenarioFile, pd.DataFrame]:
    """A synthetic CFD book: one account per (leverage class, leverage used), on Monte Carlo paths.

    Each account holds one long CFD on an underlying of its class (price ``price``, vol
    ``class_vols[class]``, in the scenario's currency) sized so that its initial margin is
    ``leverage_used`` x its cash: at 1.0 the account uses the whole retail cap (e.g. 30:1 for
    a major currency pair). The leverage table, client type and financing come from the
    scenario's ``cfd:`` section.

    Parameters
    ----------
    sc
        The scenario whose CFD parameters (and, when ``cash`` is not given, the first CFD
        account's cash) are used.
    leverage_used
        Fractions of the leverage cap [0-1].
    class_vols
        Annualised vol per leverage class [decimal]; its keys are the classes studied.
    paths, steps, step_days, seed
        The Monte Carlo grid (``grid.monte_carlo``).
    cash
        Cash of each account [reporting currency]; default: the first CFD account's cash
        (converted with the scenario's ``fx``), else ``default_cash``.
    default_cash
        Cash of each account when ``cash`` is not given and the scenario has no CFD account
        [reporting currency].
    price
        Start price of every underlying [price units].

    Returns
    -------
    (ScenarioFile, pandas.DataFrame)
        The book, and per account its ``cfd_class``, ``leverage_used``, ``leverage`` (x:1 used),
        ``cap`` (x:1 allowed).
    """
    cfd = sc.cfd or CfdParams()
    classes = list(class_vols)
    missing = [c for c in classes if c not in cfd.leverage]
    if missing:
        raise InputError(
            f"unknown leverage classes {missing} (known: {', '.join(cfd.leverage)})", file=sc.file
        )
    if cash is None:
        first = next(iter(cfd.accounts.items()), None)
        cash = (
            default_cash
            if first is None
            else sc.cash_amount(first[1].cash, key_path=f"cfd.accounts.{first[0]}.cash")
        )
    combos = pd.DataFrame(
        list(itertools.product(classes, map(float, leverage_used))), columns=["cfd_class", "leverage_used"]
    )
    combos["cap"] = combos["cfd_class"].map(cfd.leverage).astype(float)
    combos["leverage"] = combos["leverage_used"] * combos["cap"]
    combos["account"] = (
        combos["cfd_class"] + " @ " + (combos["leverage_used"] * 100).round(1).astype(str) + "%"
    )
    combos["underlying"] = "U_" + combos["cfd_class"]
    combos["contract"] = combos["underlying"] + "-CFD"
    combos["quantity"] = combos["leverage"] * cash / price
    data: dict[str, Any] = {
        "name": f"{sc.name}-leverage",
        "description": f"Synthetic CFD books by leverage class and leverage used ({sc.name}).",
        "as_of": sc.as_of,
        "currency": sc.currency,
        "methods": ["cfd"],
        "market": {
            f"U_{c}": {"price": price, "vol": float(class_vols[c]), "currency": sc.currency} for c in classes
        },
        "contracts": {f"U_{c}-CFD": {"type": "cfd", "underlying": f"U_{c}"} for c in classes},
        "positions": combos[["contract", "quantity", "account"]]
        .assign(open_price=price)
        .to_dict(orient="records"),
        "cfd": {
            **cfd.model_dump(mode="python", exclude={"accounts", "underlyings", "step_times", "step_days"}),
            "accounts": {a: {"cash": cash} for a in combos["account"]},
            "underlyings": {f"U_{c}": {"cfd_class": c} for c in classes},
        },
        "grid": {
            "monte_carlo": {
                "paths": int(paths),
                "steps": int(steps),
                "step_days": step_days,
                "seed": int(seed),
            }
        },
    }
    return parse_scenario(data, file=sc.file), combos.set_index("account")


def leverage_grid(values: xr.DataArray, combos: pd.DataFrame) -> xr.DataArray:
    """Per-account results of :func:`cfd_leverage_book` as a grid (cfd_class, leverage_used)."""
    idx = combos.loc[values["account"].values]
    return (
        values.assign_coords(
            cfd_class=("account", idx["cfd_class"].values),
            leverage_used=("account", idx["leverage_used"].values),
        )
        .set_index(account=["cfd_class", "leverage_used"])
        .unstack("account")
    )


def straight_path(sc: ScenarioFile, steps: int, move: float) -> dict[str, list[float]]:
    """A ``grid.path``: every price moves in a straight line by ``move`` over ``steps`` steps.

    Parameters
    ----------
    sc
        The scenario (its market prices are step 0).
    steps
        Number of steps (at least 1).
    move
        Relative move at the last step [fraction], e.g. ``-0.1``.

    Returns
    -------
    dict
        Underlying -> prices, for ``with_grid(sc, path=...)``.
    """
    names = list(sc.market)
    start = np.array([sc.market[n].price for n in names], dtype=float)
    levels = start[:, None] * (1.0 + move * np.linspace(0.0, 1.0, max(int(steps), 1)))[None, :]
    return dict(zip(names, levels.tolist()))


def decision_point(ds: xr.Dataset, attr: str = "conversion_point") -> dict[str, int]:
    """The grid point a plan of the account method was made at (its ``attrs[attr]``, ``"step=4"``).

    Returns
    -------
    dict
        Dim -> index; empty without grid dims.
    """
    text = str(ds.attrs.get(attr, "") or "")
    pairs = [p.split("=") for p in text.replace(" ", "").split(",") if "=" in p]
    return {k: int(v) for k, v in pairs if k in ds.dims}


def movements(ds: xr.Dataset, account: str | None = None) -> pd.DataFrame:
    """The forced conversion / transfer plan of the account method as a table (one row a movement)."""
    cols = [v for v in ds.data_vars if ds[v].dims == ("movement",)]
    frame = ds[cols].to_dataframe() if cols else pd.DataFrame(columns=["movement_account"])
    if account is not None and len(frame):
        frame = frame[frame["movement_account"] == account]
    return frame


def balances_before_after(ds: xr.Dataset, account: str) -> pd.DataFrame:
    """Balances per currency group and currency before and after the forced conversion plan.

    The plan is replayed on the balances at its decision point: each movement takes ``amount``
    of ``movement_currency`` out of ``from_group`` and puts ``to_amount`` of ``to_currency``
    into ``to_group``.

    Parameters
    ----------
    ds
        Result of the ``account`` method.
    account
        The account.

    Returns
    -------
    pandas.DataFrame
        Index (``currency_group``, ``currency``); columns ``before``, ``after`` [the currency],
        ``before_base``, ``after_base`` [base currency]; rows that are zero before and after
        are left out.
    """
    bal = ds["balance"].sel(account=account).isel(decision_point(ds))
    bal = base_point(bal, keep=("currency_group", "currency"))
    before = bal.to_series()
    mv = movements(ds, account)
    names = ["currency_group", "currency"]
    out = mv.groupby(["from_group", "movement_currency"])["amount"].sum().rename_axis(names)
    into = mv.groupby(["to_group", "to_currency"])["to_amount"].sum().rename_axis(names)
    after = before.sub(out, fill_value=0.0).add(into, fill_value=0.0)
    frame = pd.DataFrame({"before": before, "after": after}).fillna(0.0)
    fx = ds["fx_base"].to_series()
    rate = fx.reindex(frame.index.get_level_values("currency")).to_numpy()
    frame["before_base"] = frame["before"] * rate
    frame["after_base"] = frame["after"] * rate
    keep = (frame["before"].abs() > 0) | (frame["after"].abs() > 0)
    return frame[keep]


# -- what-if and attribution ------------------------------------------------------------------------


def largest_account(result: MarginResult) -> str:
    """The account with the largest maintenance margin, summed over the methods that margin
    products (the account layer, built on the others, is not added), at the base grid point."""
    heads = headline(result)
    if not len(heads):
        raise ValueError("no method ran: no account to show")
    maint = pd.DataFrame(heads.xs("maintenance", axis=1, level="amount"))
    products = [m for m in maint.columns if m != "account"] or list(maint.columns)
    return str(maint[products].sum(axis=1).idxmax())


def attribution_table(result: MarginResult, account: str | None = None) -> pd.DataFrame:
    """Contribution and marginal of each position, per method, at the base grid point.

    Parameters
    ----------
    result
        A result with attribution (``margin(..., attribution=True)``); methods without it are
        left out.
    account
        Only this account's positions (default: every account).

    Returns
    -------
    pandas.DataFrame
        Index (``method``, ``position``); columns ``account``, ``contract``, ``quantity``
        [contracts], ``contribution`` (NaN for a method without an allocation rule) and
        ``marginal`` [reporting currency], sorted by contribution (largest first) within each
        method.
    """
    frames = {}
    for name, ds in result.methods.items():
        if "marginal" not in ds:
            continue
        at = base_point(ds[[v for v in ("contribution", "marginal") if v in ds]], keep=("position",))
        frame = pd.DataFrame(
            {
                "account": np.asarray(at["attribution_account"].values).astype(str),
                "contract": np.asarray(at["attribution_contract"].values).astype(str),
                "quantity": np.asarray(at["attribution_quantity"].values, dtype=float),
                "contribution": (
                    np.asarray(at["contribution"].values, dtype=float)
                    if "contribution" in at
                    else np.full(at.sizes["position"], np.nan)
                ),
                "marginal": np.asarray(at["marginal"].values, dtype=float),
            },
            index=pd.Index(at["position"].values, name="position"),
        )
        if account is not None:
            frame = frame[frame["account"] == str(account)]
        frames[name] = frame.sort_values("contribution", ascending=False, kind="stable")
    if not frames:
        return pd.DataFrame(
            columns=["account", "contract", "quantity", "contribution", "marginal"],
            index=pd.MultiIndex.from_arrays([[], []], names=["method", "position"]),
        )
    return pd.concat(frames, names=["method", "position"])


def trade_legs(trades: TradeBatch) -> pd.Series:
    """Each trade's legs in words (``"-3 IDX-DEC26, +3 IDX-MAR27"``), indexed by trade id."""
    legs = pd.DataFrame(
        {
            "trade": trades.leg_trade,
            "text": pd.Series(trades.leg_quantity).map("{:+,.15g}".format)
            + " "
            + pd.Series(trades.leg_contract.astype(str)),
        }
    )
    text = legs.groupby("trade", sort=True)["text"].agg(", ".join)
    return pd.Series(
        text.reindex(np.arange(len(trades))).to_numpy(),
        index=pd.Index(trades.ids.astype(str), name="trade"),
        name="legs",
    )


def what_if_table(
    result: WhatIfResult, variables: Sequence[str] = ("maintenance", "initial")
) -> pd.DataFrame:
    """Before, after and change per trade and method, at the base grid point.

    Parameters
    ----------
    result
        :func:`marginsim.what_if`'s result.
    variables
        The compared variables shown (each method's own; a method without one has NaN).

    Returns
    -------
    pandas.DataFrame
        Index (``trade``, ``method``), trades in the file's order; columns ``account``,
        ``legs``, ``<x> before``, ``<x> after``, ``<x> change`` [reporting currency] for each
        ``x`` of ``variables``, and ``CFD order`` (``"accepted"`` or ``"rejected: ..."`` on the
        CFD method's rows of trades with a CFD leg, empty on the others).
    """
    legs = trade_legs(result.trades)
    contracts = result.inputs.contracts
    kind = np.asarray(contracts["type"].values).astype(str)[
        pd.Index(np.asarray(contracts["contract"].values).astype(str)).get_indexer(
            result.trades.leg_contract.astype(str)
        )
    ]
    has_cfd = np.bincount(result.trades.leg_trade[kind == "cfd"], minlength=len(legs)) > 0
    frames = {}
    for name, ds in result.items():
        at = base_point(ds)
        cols: dict[str, Any] = {
            "account": np.asarray(at["account"].values).astype(str),
            "legs": legs.to_numpy(),
        }
        for x in variables:
            for w in ("before", "after", "change"):
                v = f"{x}_{w}"
                cols[f"{x} {w}"] = (
                    np.asarray(at[v].values, dtype=float) if v in at else np.full(len(legs), np.nan)
                )
        if "accepted" in at:
            ok = np.asarray(at["accepted"].values, dtype=bool)
            reason = np.asarray(at["rejected_reason"].values).astype(str)
            verdict = np.where(ok, "accepted", np.char.add("rejected: ", reason))
            cols["CFD order"] = np.where(has_cfd, verdict, "")
        else:
            cols["CFD order"] = np.full(len(legs), "", dtype=object)
        frames[name] = pd.DataFrame(cols, index=legs.index)
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, names=["method", "trade"]).swaplevel("method", "trade")
    order = pd.MultiIndex.from_product([legs.index, list(frames)], names=["trade", "method"])
    return table.reindex(order)


def best_hedge_table(hedge: BestHedge) -> pd.DataFrame:
    """The best hedge of each account and method (:func:`marginsim.best_hedge`) as a table.

    Returns
    -------
    pandas.DataFrame
        Index (``account``, ``method``); columns ``trade`` (the one-contract trade in words, or
        ``"none lowers it"``), ``maintenance before``, ``maintenance after``, ``maintenance
        change`` [reporting currency] (NaN where no candidate lowers it).
    """
    rows = [  # the answer's accounts x methods (already reduced by best_hedge)
        {
            "account": acct,
            "method": name,
            "trade": "none lowers it" if b is None else "{:+,.15g} {}".format(b["quantity"], b["contract"]),
            **{
                f"maintenance {w}": np.nan if b is None else float(b["maintenance"][w])
                for w in ("before", "after", "change")
            },
        }
        for acct, per in hedge.best.items()
        for name, b in per.items()
    ]
    columns = ["account", "method", "trade", "maintenance before", "maintenance after", "maintenance change"]
    return pd.DataFrame(rows, columns=columns).set_index(["account", "method"])


def hedge_grid(hedge: BestHedge, method: str, account: str) -> xr.DataArray:
    """The maintenance change of every best-hedge candidate of one account, as a grid.

    Parameters
    ----------
    hedge
        :func:`marginsim.best_hedge`'s answer (its candidates' what-if).
    method
        A method of the what-if.
    account
        An account the candidates went to.

    Returns
    -------
    xarray.DataArray
        Dims (``contract``, ``quantity``) [reporting currency], at the base grid point; NaN for
        a candidate not tried.

    Raises
    ------
    ValueError
        The what-if has trades of several legs (not best-hedge candidates).
    """
    wi = hedge.what_if
    at = base_point(wi[method]["maintenance_change"], keep=("trade",))
    t = wi.trades
    if t.n_legs != len(t):
        raise ValueError("best-hedge candidates are one-leg trades: these are not")
    frame = pd.DataFrame(
        {
            "account": t.account.astype(str),
            "contract": t.leg_contract[np.argsort(t.leg_trade, kind="stable")].astype(str),
            "quantity": t.leg_quantity[np.argsort(t.leg_trade, kind="stable")],
            "change": np.asarray(at.values, dtype=float),
        }
    )
    frame = frame[frame["account"] == str(account)]
    grid = frame.pivot_table(
        index="contract", columns="quantity", values="change", aggfunc="first", sort=False
    )
    out = xr.DataArray(
        grid.to_numpy(dtype=float),
        dims=("contract", "quantity"),
        coords={
            "contract": grid.index.to_numpy(dtype=object),
            "quantity": grid.columns.to_numpy(dtype=float),
        },
        name="maintenance_change",
    )
    out.attrs["units"] = str(
        wi[method]["maintenance_change"].attrs.get("units") or wi[method].attrs.get("currency", "")
    )
    return out.sortby("quantity")
