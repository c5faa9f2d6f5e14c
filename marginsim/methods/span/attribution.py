"""SPAN attribution: each position's part of its account's SPAN requirement.

The rule (per account, combined commodity and grid point, amounts in the reporting currency):

- **scanning risk**: the position's loss in the active scenario (quantity x risk array at the
  scenario that set the scanning risk, losses positive); nothing when the scanning risk is
  floored at 0 (the combined commodity gains in every scenario);
- **intra-commodity spread and spot-month charges**, **inter-commodity spread credit** (a
  negative part; a method F spread's flat amount is in it, a charge when positive) and **super
  inter-commodity spread credit** (a negative part, like the inter credit): pro rata to the positions' absolute deltas (|quantity x composite delta|), the
  deltas the spreads are formed from (equal shares when the combined commodity has no delta);
- **short option minimum**, when it sets the combined commodity's risk: the excess of the
  minimum over scan + intra + spot - credit, pro rata to the short option contracts
  (equal shares when there is none);
- **rate class**: a combined commodity whose risk arrays are the initial requirement (rate class
  ``initial``) gives each position its part of the risk / the initial ratio (maintenance = initial
  / ratio), as the requirement does;
- **exposure margin** (``span.exposure_margin``): the exposure of each (account, contract) net
  position goes to that contract's rows, pro rata to their absolute quantity (one row: all of
  it); it is added after the floor below;
- **net option value**: each premium-style option's value (quantity x price x multiplier) is
  taken off its own contribution; when the requirement is floored at 0 (the net option value
  covers the risk), every contribution is 0.

The contributions of an account's positions sum to its ``maintenance`` (to rounding).

The hook also gives SPAN's own exact leave-one-out ``marginal``: combined commodities joined by
inter-commodity spreads form linked sets whose risks do not depend on each other's positions, so
the account without a position differs only in the position's linked set: each position's set
less the position is margined as a variant (one pass of the kernels over all of them), and the
account's other risks and the net option value of the rest are taken from the result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ...kernels import Engine, resolve_engine
from ...kernels import leave_one_out as LOO
from ...kernels import span_pairs as SP
from ...kernels import span_whatif as W
from ...kernels.allocation import pro_rata
from ...model import Inputs
from ...params.span import SpanParams
from .arrays import _held_contracts, in_scope
from .book import _book_in_scope, _margin_book, _net_positions
from .plan import _file_plan, _joined_sets, _Plan, _plan, _run_plan
from .what_if import _tables

__all__ = ["span_attribution", "INCREMENTAL"]

#: The leave-one-out re-margins each position's own combined commodity only, the other CCs of its
#: linked set keeping the book's state (:func:`marginsim.kernels.span_whatif.risk_without`; numba
#: engine, no super spreads); ``False``: each variant's whole linked set is margined again (the
#: same numbers, bit for bit).
INCREMENTAL = True


def span_attribution(inputs: Inputs, result: xr.Dataset, engine: Engine = "auto") -> xr.Dataset:
    """The contribution of each SPAN position to its account's maintenance.

    Parameters
    ----------
    inputs
        The in-memory data model the result was computed from.
    result
        The SPAN result (:func:`marginsim.methods.span.span_margin`) of ``inputs``.
    engine
        Pricing engine of the plan (risk arrays, option values), as for the margin.

    Returns
    -------
    xarray.Dataset
        ``contribution`` with dims ``(position, grid dims...)`` [reporting currency], over the
        positions of the result (those SPAN margins); per account and grid point they sum to
        ``maintenance``. Its two parts before the floor at 0: ``risk_part`` (the position's part
        of its combined commodity's risk) and ``option_value`` (its net option value), both
        [reporting currency]: ``contribution = risk_part - option_value`` where the maintenance
        is positive, plus ``exposure_part`` (dim ``position``: its part of the exposure margin,
        0 without one). ``marginal``: the maintenance less that of the account without the position
        [reporting currency] (exact).
    """
    params = inputs.span_params or inputs.scenario.span or SpanParams()
    cached = _file_plan(inputs, params, engine)
    netted = None  # whether the book nets rows, when the margin run says
    if cached is None:  # the plan of the margin run of this result, when it kept it
        kept = _run_plan(inputs, params, resolve_engine(engine), result["maintenance"].values)
        if kept is not None:
            cached, netted = kept[:2], kept[2]
    if cached is not None:
        scope, plan = cached
    else:
        scope = in_scope(inputs, params)
        plan = _plan(inputs, params, _held_contracts(inputs, scope), engine)
    book = _book_in_scope(inputs.book, scope)
    gd = [str(d) for d in result["maintenance"].dims if d != "account"]
    gshape = tuple(result.sizes[d] for d in gd)
    n_g = int(np.prod(gshape)) if gshape else 1
    n_a = result.sizes["account"]

    pos_k = plan.local[book["contract_index"].values]
    pos_a = book["account_index"].values.astype(np.int64)
    qty = np.asarray(book["quantity"].values, dtype=float)
    n = qty.size
    # the result's column of each position's combined commodity
    column = pd.Index(np.asarray(result["group"].values).astype(str)).get_indexer(
        np.asarray(plan.groups.names, dtype=object).astype(str)
    )
    n_col = result.sizes["group"]
    pair = pos_a * n_col + column[plan.cc_of_k[pos_k]]  # (N,) cell of the (account, group) layout

    def cells(name: str) -> np.ndarray:  # (A * C, G) per (account, group) cell
        v = result[name].transpose("account", "group", *gd).values
        return v.reshape(n_a * n_col, n_g).astype(float)

    scan, active = cells("scan_risk"), cells("active_scenario").astype(np.int64) - 1
    charges = cells("intra_spread_charge") + cells("spot_charge") - cells("inter_spread_credit")
    if "super_spread_credit" in result:  # a credit like the inter-commodity one
        charges = charges - cells("super_spread_credit")
    risk = cells("risk")
    fx = np.broadcast_to(result["group_fx"].values.astype(float)[None, :], (n_a, n_col)).reshape(
        -1, 1
    )  # margin currency -> reporting currency, per cell

    # scanning risk: the loss at the active scenario, in the reporting currency
    g_of = np.arange(n_g) if plan.risk_array.shape[1] == n_g else np.zeros(n_g, dtype=np.int64)
    at = plan.risk_array[pos_k[:, None], g_of[None, :], active[pair]]  # (N, G), no (N, G, S) copy
    scan_part = np.where(scan[pair] > 0.0, qty[:, None] * at * fx[pair], 0.0)
    # spreads and credits: pro rata to |delta|; the short option minimum's excess: to short options
    abs_delta = np.abs(qty[:, None] * plan.delta[pos_k])  # (N, G)
    spread_part = pro_rata(charges, pair, abs_delta) if n else np.zeros((0, n_g))
    excess = risk - (scan + charges)  # > 0 where the short option minimum sets the risk
    excess = np.where(excess > 0.0, excess, 0.0)
    is_option = plan.is_call[pos_k] | plan.is_put[pos_k]
    shorts = np.where(is_option & (qty < 0.0), -qty, 0.0)[:, None]
    som_part = pro_rata(excess, pair, shorts) if n else np.zeros((0, n_g))
    # sums to `risk` per held cell; in the maintenance class (rate class initial: / the ratio)
    m_factor = np.where(plan.initial_class, 1.0 / plan.ratio, 1.0)  # (C,) risk -> maintenance
    cc_part = (scan_part + spread_part + som_part) * m_factor[plan.cc_of_k[pos_k]][:, None]

    # net option value, and the floor at 0 of the account's requirement before the exposure margin
    nov = qty[:, None] * plan.nov[pos_k]  # (N, G) reporting currency
    maintenance = result["maintenance"].transpose("account", *gd).values.reshape(n_a, n_g)
    exposure_a, exposure_part, exposure_without = _exposure_parts(plan, pos_a, pos_k, qty, n_a)
    floored = maintenance - exposure_a[:, None]  # max(risk - nov, 0)
    contribution = np.where(floored[pos_a] > 0.0, cc_part - nov, 0.0) + exposure_part[:, None]
    # the exact leave-one-out, on the linked combined commodities of the position only
    linked = _joined_sets(plan.n_cc, [plan.inter, plan.super_])[
        plan.cc_of_k[pos_k]
    ]  # (N,) linked set of each position's CC
    group_risk = np.zeros((n_a * (int(linked.max(initial=-1)) + 1), n_g))
    held = np.zeros(n_a * n_col, dtype=bool)
    cell_factor = np.zeros(n_a * n_col)
    if n:  # each account's risk in each linked set [reporting currency]
        cell_set = np.zeros(n_a * n_col, dtype=np.int64)
        cell_set[pair] = pos_a * (int(linked.max()) + 1) + linked
        held = result["held"].transpose("account", "group").values.reshape(-1)
        cell_factor = np.zeros(n_a * n_col)
        cell_factor[pair] = m_factor[plan.cc_of_k[pos_k]]
        np.add.at(group_risk, cell_set[held], risk[held] * cell_factor[held][:, None])
    key = pos_a * (int(linked.max(initial=-1)) + 1) + linked
    without = _risk_without(
        plan, book, key, resolve_engine(engine), n_g, netted
    )  # (N, G) risk, NOV of the rest
    nov_a = result["net_option_value"].transpose("account", *gd).values.reshape(n_a, n_g)
    # each account's risk in the maintenance class
    risk_a = result["span_risk"].transpose("account", *gd).values.reshape(n_a, n_g)
    if n and plan.initial_class.any():
        at = np.flatnonzero(held)
        risk_a = SP.segment_sum(
            at // n_col, at, cell_factor[at], risk, n_a, resolve_engine(engine)
        )  # risk x factor per held cell, added in the account's group order
    other = risk_a[pos_a] - group_risk[key] + without
    marginal = maintenance[pos_a] - (
        np.maximum(other - (nov_a[pos_a] - nov), 0.0) + exposure_without[:, None]
    )

    pdims = ("position", *gd)
    return xr.Dataset(
        {
            "contribution": (pdims, contribution.reshape((n,) + gshape)),
            "risk_part": (pdims, cc_part.reshape((n,) + gshape)),
            "option_value": (pdims, nov.reshape((n,) + gshape)),
            "exposure_part": ("position", exposure_part),
            "marginal": (pdims, marginal.reshape((n,) + gshape)),
        },
        coords={"position": book["position"].values},
    )


def _exposure_parts(
    plan: _Plan, pos_a: np.ndarray, pos_k: np.ndarray, qty: np.ndarray, n_a: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exposure margin per account ``(A,)``, each position's part of it ``(N,)`` (the exposure
    of its (account, contract) net position shared among the contract's rows pro rata to their
    absolute quantity) and its account's exposure margin without the position ``(N,)``
    [reporting currency]; zeros without ``span.exposure_margin``."""
    n = qty.size
    if plan.exposure is None or n == 0:
        return np.zeros(n_a), np.zeros(n), np.zeros(n)
    rates = plan.exposure
    account, k, net, inverse = SP.net_positions(pos_a, pos_k, qty, plan.risk_array.shape[0])

    def exposure_of(net: np.ndarray, k: np.ndarray) -> np.ndarray:
        return np.abs(net) * rates[k, (net < 0).astype(np.int64)]

    per_key = exposure_of(net, k)
    exposure_a = np.bincount(account, weights=per_key, minlength=n_a)
    part = pro_rata(per_key, inverse, np.abs(qty))
    rest = net[inverse] - qty  # the contract's net position without the row
    without = exposure_a[pos_a] - per_key[inverse] + exposure_of(rest, pos_k)
    return exposure_a, part, without


def _risk_without(
    plan: _Plan, book: xr.Dataset, key: np.ndarray, eng: str, n_g: int, netted: bool | None = None
) -> np.ndarray:
    """For each position, the risk of its account's positions in the same linked set but itself
    [reporting currency], ``(N, G)``: one variant per position, margined in one pass on the plan.

    Variant ``i`` holds the rows with the same ``key`` (account and linked set) as row ``i`` but
    row ``i``: sum(m - 1) rows over the groups of m rows (:func:`~marginsim.kernels.leave_one_out.variant_rows`).
    When some variant holds a contract twice, the variants are netted there, as :func:`_net_positions`
    would (one row per variant and contract, in contract order, summed in book order), from the
    rows sorted by (key, contract) once instead of sorting the variants' rows. ``netted``: whether
    the book has repeated (account, contract) rows, when known (else found here).
    """
    n = key.size
    if n == 0:
        return np.zeros((0, n_g))
    contract = book["contract_index"].values
    qty = np.asarray(book["quantity"].values, dtype=float)
    book_a = book["account_index"].values
    if INCREMENTAL and eng == "numba" and plan.super_ is None:  # its own CC again, the rest as the book's
        linked = _joined_sets(plan.n_cc, [plan.inter, plan.super_])
        return W.risk_without(
            book_a, plan.local[contract], qty, book.sizes["account"], _tables(plan), linked, netted
        )
    # a variant's rows are some rows of one account: one per (account, contract) when the book's are
    net = _net_positions(book_a, plan.local[contract], qty)[0] is not book_a if netted is None else netted
    if net:  # by key, then contract (ties in book order): a variant's rows to net are adjacent
        order = np.lexsort((plan.local[contract], key))
        sk, sc = key[order], contract[order]
        new_run = np.r_[True, (sk[1:] != sk[:-1]) | (sc[1:] != sc[:-1])]
        run = np.cumsum(new_run) - 1
        run_len = np.bincount(run)[run]
        group_size = np.bincount(key, minlength=int(key.max()) + 1)[sk]
        # a variant nets rows when its group less its row repeats a contract
        net = bool(((run_len >= 3) | ((run_len == 2) & (group_size > 2))).any())
    if not net:  # as they come (no variant nets rows): in book order
        order = np.argsort(key, kind="stable")
    variant, k_rows, q_rows = LOO.variant_rows(key, order, contract, qty, net, eng)
    sub = xr.Dataset(
        {
            "contract_index": ("position", k_rows),
            "account_index": ("position", variant),
            "quantity": ("position", q_rows),
            "account_name": ("account", np.arange(n)),
        }
    )
    margined = _margin_book(plan, sub, eng, False, distinct=True)  # netted above
    pairs = margined.pairs
    risk = margined.span_risk  # in the maintenance class
    if plan.initial_class.any():
        m_factor = np.where(plan.initial_class, 1.0 / plan.ratio, 1.0)[pairs.cc][:, None]
        every = np.arange(pairs.size)
        risk = SP.segment_sum(
            pairs.account, every, np.ones(pairs.size), margined.risk_cc * m_factor * margined.fx, n, eng
        )
    out = np.empty((n, n_g))
    out[order] = risk  # variant i is sorted row i
    return out
