"""Requirement lines of the account layer: per (account, currency group, currency, grid point).

Each book position's exchange requirement comes from one source (:data:`.context.SOURCE_NAMES`):
SPAN, an exchange rule given as data (fixed per contract or a percentage of notional), another
registered method (portfolio margin, CFD) or, for long foreign stocks without a ready market, 100 %
of their value. SPAN and the other methods are reached through :data:`marginsim.registry.REGISTRY`
only. Each source gives four lines: exchange initial and maintenance, and the broker's initial and
maintenance (the exchange lines with the broker's mark-ups) [currency of the line].
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import xarray as xr

from ...errors import InputError
from ...kernels import pricing
from ...model import Inputs, book_from_arrays
from ...params.account import CURRENCY_GROUPS
from ...registry import REGISTRY
from .context import (
    CFD,
    GROUP_INDEX,
    LINES,
    NO_LOAN,
    PM,
    RULE,
    SOURCE_NAMES,
    SPAN,
    Ctx,
    G,
    flat,
    grid_shape,
    sub_inputs,
)

__all__ = [
    "requirements_from_method",
    "empty_lines",
    "rule_lines",
    "span_lines",
    "span_run",
    "span_option_values",
    "SpanRun",
    "rule_position_values",
    "no_loan_values",
    "method_lines",
    "injected_lines",
    "no_loan_lines",
    "add_lines",
    "requirement_lines",
]


def requirements_from_method(
    ds: xr.Dataset,
    *,
    currency_group: str,
    currency: str,
    initial: str = "initial",
    maintenance: str = "maintenance",
) -> xr.Dataset:
    """A method's per-account result as account-layer requirements.

    Parameters
    ----------
    ds
        A method result with per-account ``initial`` and ``maintenance`` (dims ``account`` and
        grid dims) [``currency``].
    currency_group
        The currency group (``HK_``, ``NonHK_``, ``CN_``) the requirement is funded from.
    currency
        The currency of the amounts (a method's amounts are in the scenario's reporting currency).
    initial, maintenance
        Names of the variables.

    Returns
    -------
    xarray.Dataset
        ``initial``, ``maintenance`` with dims ``account``, ``currency_group`` (one), ``currency``
        (one) and the grid dims: the format :func:`account_margin` takes as ``requirements``.
        They are taken as the broker's own requirement (no mark-up).
    """
    if currency_group not in GROUP_INDEX:
        raise InputError(f"unknown currency group {currency_group!r} (one of {', '.join(CURRENCY_GROUPS)})")
    out = xr.Dataset(
        {
            "initial": ds[initial].expand_dims(currency_group=[currency_group], currency=[currency]),
            "maintenance": ds[maintenance].expand_dims(currency_group=[currency_group], currency=[currency]),
        }
    )
    out.attrs["markup"] = "none"
    return out


def empty_lines(n_a: int, C: int, n_g: int) -> dict[str, np.ndarray]:
    """Zero requirement lines, each (account, currency group, currency, grid point)."""
    return {k: np.zeros((n_a, G, C, n_g)) for k in LINES}


def rule_lines(
    ctx: Ctx, inputs_x: Inputs, pk: np.ndarray, q: np.ndarray, pa: np.ndarray, n_a: int
) -> dict[str, np.ndarray]:
    """Fixed-per-contract and percentage-of-notional exchange margins, in each margin currency."""
    gd, gshape = grid_shape(inputs_x)
    n_g = int(np.prod(gshape))
    C = len(ctx.ccys)
    out = empty_lines(n_a, C, n_g)
    if pk.size == 0:
        return out
    kk = ctx.local[pk]
    idx = (pa, ctx.k_group[kk], ctx.k_rule_ccy[kk])
    for name, v in zip(LINES, rule_position_values(ctx, inputs_x, pk, q)):
        np.add.at(out[name], idx, v)
    return out


def rule_position_values(
    ctx: Ctx, inputs_x: Inputs, pk: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each position's exchange-rule lines (exchange initial and maintenance, broker initial and
    maintenance), each ``(P, grid points)`` [the rule's margin currency, ``ctx.k_rule_ccy``]."""
    gd, gshape = grid_shape(inputs_x)
    kk = ctx.local[pk]
    uniq = np.unique(kk)
    level = inputs_x.underlying_level(inputs_x.contracts.isel(contract=ctx.held[uniq]))
    lvl = flat(level, ["contract"], gd, gshape)[np.searchsorted(uniq, kk)]  # (P, n_g)
    absq = np.abs(q)[:, None]
    fixed = ctx.k_rule_fixed[kk][:, None]
    notional = absq * ctx.k_mult[kk][:, None] * lvl
    exch_i = np.where(fixed, absq * ctx.k_rule_init[kk][:, None], notional * ctx.k_rule_init[kk][:, None])
    exch_m = np.where(fixed, absq * ctx.k_rule_maint[kk][:, None], notional * ctx.k_rule_maint[kk][:, None])
    brk_m = exch_m * (1.0 + ctx.k_mm[kk][:, None])
    brk_i = np.maximum(exch_i * (1.0 + ctx.k_mi[kk][:, None]), brk_m)
    return exch_i, exch_m, brk_i, brk_m


@dataclasses.dataclass
class SpanRun:
    """SPAN through the registry on the positions the account layer sends to it (virtual accounts:
    the context's account indices), and what its lines need per combined commodity."""

    sub: Inputs  # the SPAN book: positions pk, q (non-zero) of accounts pa
    ds: xr.Dataset  # SPAN's result on it
    pk: np.ndarray  # (P,) contract index of each position
    q: np.ndarray  # (P,) quantity
    pa: np.ndarray  # (P,) context account index
    cc_of_pos: np.ndarray  # (P,) combined commodity of each position on ds's group dim (-1: none)
    cc_group: np.ndarray  # (CC,) currency group
    cc_ccy: np.ndarray  # (CC,) margin currency (index into ctx.ccys)
    cc_fx: np.ndarray  # (CC,) margin currency -> reporting currency
    cc_mi: np.ndarray  # (CC,) broker initial mark-up
    cc_mm: np.ndarray  # (CC,) broker maintenance mark-up
    ratio: np.ndarray  # (CC,) initial / maintenance


def span_run(
    ctx: Ctx, inputs_x: Inputs, pk: np.ndarray, q: np.ndarray, pa: np.ndarray, engine: pricing.Engine
) -> SpanRun | None:
    """SPAN on the positions ``pk``, ``q`` of the context accounts ``pa`` (``None``: no non-zero one)."""
    keep = q != 0
    pk, q, pa = pk[keep], q[keep], pa[keep]
    if pk.size == 0:
        return None
    labels = np.array([str(a) for a in pa], dtype=object)
    sub = dataclasses.replace(
        inputs_x,
        book=book_from_arrays(inputs_x.contracts, contract=pk, quantity=q, account=labels),
        universe=None,  # virtual accounts of this book only: the combined commodities it holds
    )
    span = REGISTRY["span"]
    ds = span.run(sub, engine=engine, **span.lean)
    cc_names = [str(n) for n in ds["group"].values.tolist()]
    cc_ccy = np.array([ctx.ccys.index(str(c)) for c in ds["group_currency"].values], dtype=np.int64)
    cc_fx = ds["group_fx"].values.astype(float)
    n_cc = len(cc_names)
    # currency group, ratio and mark-ups of each combined commodity, from its contracts
    kk = ctx.local[pk]
    cc_of_pos = pd.Index(cc_names).get_indexer(inputs_x.contracts["group"].values[pk].astype(str))
    cc_group = np.full(n_cc, -1, dtype=np.int64)
    cc_mi = np.zeros(n_cc)
    cc_mm = np.zeros(n_cc)
    for c in range(n_cc):  # per combined commodity definition
        sel = kk[cc_of_pos == c]
        grps = np.unique(ctx.k_group[sel])
        if grps.size > 1:
            raise InputError(
                f"the contracts of combined commodity {cc_names[c]!r} are in different currency groups "
                f"({', '.join(CURRENCY_GROUPS[g] for g in grps)}); give account.products.{cc_names[c]}.currency_group",
                file=ctx.file,
                key_path=("account", "products", cc_names[c]),
            )
        cc_group[c] = grps[0]
        cc_mi[c] = ctx.k_mi[sel].max()
        cc_mm[c] = ctx.k_mm[sel].max()
    sp = ctx.span_params
    ratio = np.array(
        [
            (sp.combined_commodities[n].initial_ratio if n in sp.combined_commodities else None)
            or sp.initial_ratio
            for n in cc_names
        ]
    )
    return SpanRun(sub, ds, pk, q, pa, cc_of_pos, cc_group, cc_ccy, cc_fx, cc_mi, cc_mm, ratio)


def span_option_values(ctx: Ctx, inputs_x: Inputs, run: SpanRun) -> tuple[np.ndarray, np.ndarray]:
    """``(opt, value)``: which positions of a SPAN run are premium-style options SPAN margins, and
    the net option value of each position ``(P, grid points)`` [currency of its combined
    commodity; 0 for the others]."""
    gd, gshape = grid_shape(inputs_x)
    pk, q, cc_of_pos = run.pk, run.q, run.cc_of_pos
    kk = ctx.local[pk]
    opt = ctx.k_premium_style[kk] & (cc_of_pos >= 0)
    value = np.zeros((pk.size, int(np.prod(gshape))))
    if opt.any():
        ko = np.unique(pk[opt])
        prem = inputs_x.option_premium(inputs_x.contracts.isel(contract=ko))
        prem = flat(prem, ["contract"], gd, gshape)[np.searchsorted(ko, pk[opt])]
        value[opt] = (
            q[opt, None]
            * ctx.k_mult[kk[opt], None]
            * prem
            * (ctx.rep[ctx.k_ccy[kk[opt]]] / run.cc_fx[cc_of_pos[opt]])[:, None]
        )
    return opt, value


def span_lines(
    ctx: Ctx, inputs_x: Inputs, pk: np.ndarray, q: np.ndarray, pa: np.ndarray, n_a: int, engine: pricing.Engine
) -> dict[str, np.ndarray]:
    """SPAN requirements per (account, currency group, margin currency): combined commodity risks in
    their currency, less the net option value of the line; the broker's mark-ups apply to the risks.

    SPAN runs through the registry. A position SPAN does not margin (an option on a stock that
    ``account.margin_source`` sends to SPAN) has no combined commodity: it gives no line and no
    net option value.
    """
    gd, gshape = grid_shape(inputs_x)
    n_g = int(np.prod(gshape))
    C = len(ctx.ccys)
    out = empty_lines(n_a, C, n_g)
    run = span_run(ctx, inputs_x, pk, q, pa, engine)
    if run is None:
        return out
    ds, pk, q, pa, cc_of_pos = run.ds, run.pk, run.q, run.pa, run.cc_of_pos
    cc_group, cc_ccy, cc_fx, cc_mi, cc_mm, ratio = (
        run.cc_group, run.cc_ccy, run.cc_fx, run.cc_mi, run.cc_mm, run.ratio
    )
    sub_acct = np.array([int(a) for a in ds["account"].values.tolist()], dtype=np.int64)
    n_cc = cc_fx.size
    risk = flat(ds["risk"], ["account", "group"], gd, gshape) / cc_fx[None, :, None]  # (A_sub, CC, n_g)
    # net option value of premium-style options, in the currency of their combined commodity
    opt, value = span_option_values(ctx, inputs_x, run)
    nov_lines = np.zeros((n_a, G, C, n_g))
    if opt.any():
        cc_o = cc_of_pos[opt]
        np.add.at(nov_lines, (pa[opt], cc_group[cc_o], cc_ccy[cc_o]), value[opt])
    acct_idx = np.repeat(sub_acct, n_cc)
    g_idx = np.tile(cc_group, sub_acct.size)
    c_idx = np.tile(cc_ccy, sub_acct.size)
    flat_risk = risk.reshape(-1, n_g)
    parts = {
        "exchange_maintenance": flat_risk,
        "exchange_initial": flat_risk * np.tile(ratio, sub_acct.size)[:, None],
        "maintenance": flat_risk * np.tile(1.0 + cc_mm, sub_acct.size)[:, None],
        "initial": flat_risk * np.tile(ratio * (1.0 + cc_mi), sub_acct.size)[:, None],
    }
    for name, v in parts.items():
        np.add.at(out[name], (acct_idx, g_idx, c_idx), v)
        out[name] = np.maximum(out[name] - nov_lines, 0.0)
    out["initial"] = np.maximum(out["initial"], out["maintenance"])
    return out


def method_lines(ctx: Ctx, inputs: Inputs, source: int, engine: pricing.Engine) -> dict[str, np.ndarray]:
    """Requirements of another registered method on the positions it covers (broker level, no mark-up)."""
    gd, gshape = grid_shape(inputs)
    n_g = int(np.prod(gshape))
    out = empty_lines(len(ctx.accounts), len(ctx.ccys), n_g)
    rows = np.flatnonzero(ctx.pos_source == source)
    if rows.size == 0:
        return out
    name = SOURCE_NAMES[source]
    sub = sub_inputs(inputs, rows)
    spec = REGISTRY[name]
    ds = spec.run(sub, engine=engine, **spec.lean)
    req = requirements_from_method(
        ds,
        currency_group=ctx.params.method_currency_group["portfolio_margin" if source == PM else "cfd"],
        currency=ctx.sc.currency,
    )
    return injected_lines(ctx, req, gd, gshape, markup=False)


def injected_lines(
    ctx: Ctx, req: xr.Dataset, gd: list[str], gshape: tuple[int, ...], *, markup: bool
) -> dict[str, np.ndarray]:
    """Requirement lines from a requirements Dataset (the format of :func:`requirements_from_method`);
    with ``markup``, the account's mark-ups make the broker lines unless the Dataset gives them."""
    n_g = int(np.prod(gshape))
    C = len(ctx.ccys)
    out = empty_lines(len(ctx.accounts), C, n_g)
    accts = [str(a) for a in req["account"].values.tolist()]
    known = set(ctx.accounts) | set(ctx.book_accounts) | set(ctx.params.accounts)
    unknown = [a for a in accts if a not in known]
    if unknown:
        raise InputError(f"requirements for unknown accounts {unknown}")
    # a chunk of a larger book: the requirements of this chunk's accounts only
    pos = ctx.account_pos
    a_idx = np.array([pos.get(a, -1) for a in accts], dtype=np.int64)
    mine = np.flatnonzero(a_idx >= 0)
    if mine.size == 0:
        return out
    if mine.size < len(accts):
        req = req.isel(account=mine)
        a_idx = a_idx[mine]
    for gname in req["currency_group"].values.tolist():
        for cname in req["currency"].values.tolist():
            sel = req.sel(currency_group=gname, currency=cname)
            g, c = GROUP_INDEX[str(gname)], ctx.ccys.index(str(cname))
            ei = np.nan_to_num(flat(sel["initial"], ["account"], gd, gshape))
            em = np.nan_to_num(flat(sel["maintenance"], ["account"], gd, gshape))
            bi = ei * (1 + ctx.params.initial_markup) if markup else ei
            bm = em * (1 + ctx.params.maintenance_markup) if markup else em
            if "broker_initial" in sel:
                bi = np.nan_to_num(flat(sel["broker_initial"], ["account"], gd, gshape))
            if "broker_maintenance" in sel:
                bm = np.nan_to_num(flat(sel["broker_maintenance"], ["account"], gd, gshape))
            for k, v in zip(LINES, (ei, em, np.maximum(bi, bm), bm)):
                np.add.at(out[k][:, g, c], a_idx, v)
    return out


def no_loan_lines(ctx: Ctx, inputs: Inputs) -> dict[str, np.ndarray]:
    """Long foreign stocks without a ready market: no loan value, margined at 100 % of their value."""
    gd, gshape = grid_shape(inputs)
    n_g = int(np.prod(gshape))
    out = empty_lines(len(ctx.accounts), len(ctx.ccys), n_g)
    rows, value, idx = no_loan_values(ctx, inputs)
    if rows.size == 0:
        return out
    for k in LINES:
        np.add.at(out[k], idx, value)
    return out


def no_loan_values(
    ctx: Ctx, inputs: Inputs
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(rows, value, (account, currency group, currency))``: the book rows margined at 100 % of
    their value (no loan value), that value ``(R, grid points)`` [currency of the contract] and the
    line of each."""
    gd, gshape = grid_shape(inputs)
    rows = np.flatnonzero(ctx.pos_source == NO_LOAN)
    if rows.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return rows, np.zeros((0, int(np.prod(gshape)))), (empty, empty, empty)
    pk = inputs.book["contract_index"].values[rows]
    kk = ctx.local[pk]
    uniq = np.unique(pk)
    lvl = flat(inputs.underlying_level(inputs.contracts.isel(contract=uniq)), ["contract"], gd, gshape)
    value = inputs.book["quantity"].values[rows, None] * ctx.k_mult[kk, None] * lvl[np.searchsorted(uniq, pk)]
    return rows, value, (ctx.book_acct[rows], ctx.k_group[kk], ctx.k_ccy[kk])


def add_lines(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sum of two sets of requirement lines."""
    return {k: a[k] + b[k] for k in LINES}



def requirement_lines(
    ctx: Ctx, inputs: Inputs, engine: pricing.Engine, requirements: xr.Dataset | None = None
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Every requirement line of the book, in total and by source.

    Parameters
    ----------
    ctx
        The run's context (:func:`.context.build_ctx`), with each position's source set.
    inputs
        The in-memory inputs.
    engine
        Pricing engine of SPAN and the other methods.
    requirements
        Extra requirements given to :func:`marginsim.methods.account.account_margin`, if any.

    Returns
    -------
    lines, by_source
        :data:`.context.LINES` -> array (account, currency group, currency, grid point) [currency
        of the ``currency`` index], in total (with ``requirements``) and per source name (without).
    """
    gd, gshape = grid_shape(inputs)
    n_g = int(np.prod(gshape))
    n_a, C = len(ctx.accounts), len(ctx.ccys)
    book = inputs.book
    pk_all = book["contract_index"].values
    q_all = book["quantity"].values
    by_source = {}
    rows = np.flatnonzero(ctx.pos_source == RULE)
    by_source["exchange_rule"] = rule_lines(ctx, inputs, pk_all[rows], q_all[rows], ctx.book_acct[rows], n_a)
    rows = np.flatnonzero(ctx.pos_source == SPAN)
    by_source["span"] = span_lines(ctx, inputs, pk_all[rows], q_all[rows], ctx.book_acct[rows], n_a, engine)
    by_source["portfolio_margin"] = method_lines(ctx, inputs, PM, engine)
    by_source["cfd"] = method_lines(ctx, inputs, CFD, engine)
    by_source["no_loan_value"] = no_loan_lines(ctx, inputs)
    lines = empty_lines(n_a, C, n_g)
    for v in by_source.values():
        lines = add_lines(lines, v)
    if requirements is not None:
        lines = add_lines(
            lines,
            injected_lines(ctx, requirements, gd, gshape, markup=requirements.attrs.get("markup") != "none"),
        )
    return lines, by_source
