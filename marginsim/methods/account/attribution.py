"""Account-layer attribution: each position's part of its account's broker maintenance.

The account layer's maintenance is a sum of requirement lines (per currency group and currency,
valued in the base currency, then in the reporting currency); each line comes from the source
that margins the position (:mod:`.requirements`), and the rule follows the source:

- **exchange rule** (fixed per contract, percentage of notional) and **no loan value** (100 % of
  a long stock's value): the position's own line (with the broker's mark-up);
- **SPAN**: SPAN's own allocation (:attr:`marginsim.registry.MethodSpec.attribution` of
  ``span``: the position's part of its combined commodity's risk) in the combined commodity's
  currency with the broker's maintenance mark-up, less the position's net option value; a line
  floored at 0 (the net option value covers it) gives 0 to each of its positions;
- **portfolio margin**, **CFD** and any method the layer takes requirements from: that method's
  allocation of its maintenance on the positions it margins; a method without one shares its
  account's requirement equally among its positions there.

Requirements given to :func:`marginsim.methods.account.account_margin` as a Dataset (not from
positions) are not allocated (the registry's run has none).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ...kernels import pricing
from ...kernels.allocation import group_total, pro_rata
from ...model import Inputs
from ...params.account import AccountParams
from ...registry import REGISTRY
from .context import CFD, PM, RULE, SOURCE_NAMES, SPAN, Ctx, G, build_ctx, grid_shape, sub_inputs
from .eligibility import mark_no_loan, ready_market
from .requirements import no_loan_values, rule_position_values, span_option_values, span_run

__all__ = ["account_attribution"]


def account_attribution(inputs: Inputs, result: xr.Dataset, engine: pricing.Engine = "auto") -> xr.Dataset:
    """The contribution of each position to its account's (broker) maintenance.

    Parameters
    ----------
    inputs
        The in-memory data model the result was computed from.
    result
        The account layer's result (:func:`marginsim.methods.account.account_margin`, through the
        registry: no given requirements).
    engine
        Pricing engine of SPAN and the other methods, as for the margin.

    Returns
    -------
    xarray.Dataset
        ``contribution`` with dims ``(position, grid dims)`` [reporting currency], over every
        position of the book; per account and grid point they sum to ``maintenance``.
    """
    sc = inputs.scenario
    params = sc.account if sc.account is not None else AccountParams()
    ctx = build_ctx(inputs, params, set())
    mark_no_loan(ctx, inputs, ready_market(ctx, inputs))
    gd, gshape = grid_shape(inputs)
    n_g = int(np.prod(gshape))
    book = inputs.book
    n = book.sizes["position"]
    pk_all = book["contract_index"].values
    q_all = book["quantity"].values.astype(float)
    part = np.zeros((n, n_g))  # [base currency]

    rows = np.flatnonzero(ctx.pos_source == RULE)
    if rows.size:
        brk_m = rule_position_values(ctx, inputs, pk_all[rows], q_all[rows])[3]
        part[rows] = brk_m * ctx.usd[ctx.k_rule_ccy[ctx.local[pk_all[rows]]]][:, None]
    rows = np.flatnonzero(ctx.pos_source == SPAN)
    part[rows] = _span_parts(ctx, inputs, rows, engine)
    for source in (PM, CFD):
        rows = np.flatnonzero(ctx.pos_source == source)
        part[rows] = _method_parts(ctx, inputs, rows, SOURCE_NAMES[source], engine)
    rows, value, idx = no_loan_values(ctx, inputs)
    if rows.size:
        part[rows] = value * ctx.usd[idx[2]][:, None]

    r = float(sc.fx_rate(params.base_currency, key_path="account.base_currency"))
    contribution = xr.DataArray(
        (part * r).reshape((n, *gshape)), dims=("position", *gd), coords={"position": book["position"].values}
    )
    return xr.Dataset({"contribution": contribution})


def _span_parts(ctx: Ctx, inputs: Inputs, rows: np.ndarray, engine: pricing.Engine) -> np.ndarray:
    """The SPAN lines' allocation to the book rows ``rows`` [base currency], ``(R, grid points)``."""
    gd, gshape = grid_shape(inputs)
    n_g = int(np.prod(gshape))
    out = np.zeros((rows.size, n_g))
    nonzero = rows[inputs.book["quantity"].values[rows] != 0]
    run = span_run(
        ctx,
        inputs,
        inputs.book["contract_index"].values[nonzero],
        inputs.book["quantity"].values[nonzero],
        ctx.book_acct[nonzero],
        engine,
    )
    if run is None:
        return out
    span = REGISTRY["span"]
    if span.attribution is None:  # pragma: no cover - the built-in SPAN has its rule
        raise RuntimeError("the SPAN method declares no attribution rule")
    att = span.attribution(run.sub, run.ds, engine=engine)
    p = run.sub.book.sizes["position"]
    risk_part = np.zeros((p, n_g))
    at = pd.Index(run.sub.book["position"].values).get_indexer(att["position"].values)
    risk_part[at] = _on_grid(att["risk_part"], gd, gshape).reshape(at.size, n_g)
    cc = run.cc_of_pos
    known = cc >= 0
    if not known.any():  # no position SPAN margins (an option on a stock sent to SPAN): no line
        return out
    fx = np.where(known, run.cc_fx[np.maximum(cc, 0)], 1.0)[:, None]
    markup = np.where(known, 1.0 + run.cc_mm[np.maximum(cc, 0)], 0.0)[:, None]
    _, nov = span_option_values(ctx, inputs, run)
    line_part = np.where(known[:, None], risk_part / fx * markup - nov, 0.0)  # [CC currency]
    # the line of each position: (account, currency group, currency); floored at 0 as a whole
    n_c = len(ctx.ccys)
    line = (run.pa * G + np.where(known, run.cc_group[np.maximum(cc, 0)], 0)) * n_c + np.where(
        known, run.cc_ccy[np.maximum(cc, 0)], 0
    )
    code, line = np.unique(line, return_inverse=True)
    total = group_total(line, line_part, code.size)
    line_part = np.where(total[line] > 0.0, line_part, 0.0)
    usd = np.where(known, ctx.usd[run.cc_ccy[np.maximum(cc, 0)]], 0.0)[:, None]
    out[np.searchsorted(rows, nonzero)] = line_part * usd
    return out


def _method_parts(ctx: Ctx, inputs: Inputs, rows: np.ndarray, name: str, engine: pricing.Engine) -> np.ndarray:
    """Another method's allocation of its maintenance to the book rows ``rows`` [base currency]."""
    gd, gshape = grid_shape(inputs)
    n_g = int(np.prod(gshape))
    if rows.size == 0:
        return np.zeros((0, n_g))
    sub = sub_inputs(inputs, rows)
    spec = REGISTRY[name]
    ds = spec.run(sub, engine=engine, **spec.lean)
    usd = ctx.usd[ctx.ccys.index(ctx.sc.currency)]
    sub_pos = sub.book["position"].values
    if spec.attribution is not None:
        att = spec.attribution(sub, ds, engine=engine)["contribution"]
        part = np.zeros((rows.size, n_g))
        at = pd.Index(sub_pos).get_indexer(att["position"].values)
        part[at] = _on_grid(att, gd, gshape).reshape(at.size, n_g)
        return part * usd
    # no rule: the account's requirement in equal shares among its positions of the method
    maint = _on_grid(ds["maintenance"].transpose("account", ...), gd, gshape).reshape(
        ds.sizes["account"], n_g
    )
    names = pd.Index(np.asarray(ds["account"].values).astype(str))
    acct = names.get_indexer(
        np.asarray(sub.book["account_name"].values).astype(str)[sub.book["account_index"].values]
    )
    return pro_rata(maint, acct, np.zeros((rows.size, 1))) * usd


def _on_grid(da: xr.DataArray, gd: list[str], gshape: tuple[int, ...]) -> np.ndarray:
    """``da`` with every grid dim of the inputs, in their order, after its other dims."""
    for d, size in zip(gd, gshape):
        if d not in da.dims:
            da = da.expand_dims({d: size}, axis=-1)
    lead = [d for d in da.dims if d not in gd]
    return da.transpose(*lead, *gd).values
