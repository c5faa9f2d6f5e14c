"""The forced liquidation plan of the account layer: which positions, and how many contracts, the
broker closes at the liquidation decision point until available funds are back to >= 0."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ...kernels import account as K
from ...kernels import pricing
from ...model import Inputs
from .context import RULE, SPAN, Ctx, at_point, base_inputs, flat_index
from .requirements import add_lines, rule_lines, span_lines

__all__ = ["liquidation_plans"]


def _futures_initial(
    ctx: Ctx,
    inputs_pt: Inputs,
    pk: np.ndarray,
    q: np.ndarray,
    pa: np.ndarray,
    n_a: int,
    engine: pricing.Engine,
) -> np.ndarray:
    """Broker initial [base] of SPAN and exchange-rule positions per (virtual) account, at one point."""
    rule = ctx.k_source[ctx.local[pk]] == RULE
    lines = add_lines(
        rule_lines(ctx, inputs_pt, pk[rule], q[rule], pa[rule], n_a),
        span_lines(ctx, inputs_pt, pk[~rule], q[~rule], pa[~rule], n_a, engine),
    )
    return (lines["initial"][..., 0] * ctx.usd[None, None, :]).sum(axis=(1, 2))


def liquidation_plans(
    ctx: Ctx,
    inputs: Inputs,
    point: dict[str, int],
    gd: list[str],
    gshape: tuple[int, ...],
    state: np.ndarray,
    equity_b: np.ndarray,
    init_b: np.ndarray,
    lines: dict[str, np.ndarray],
    by_source: dict[str, dict[str, np.ndarray]],
    pv: dict[str, np.ndarray],
    engine: pricing.Engine,
) -> tuple[xr.Dataset, dict[str, np.ndarray]]:
    """Which positions and how many contracts the broker closes in forced liquidation.

    Rule: the largest improvement of available funds per contract closed first, where the
    improvement is the exact release of the broker's initial margin when the whole position goes
    (leave-one-out re-margining of the account's book, so that closing one leg of a spread, which
    raises the margin, comes last), plus the cash an option brings in (long: its value; short: minus
    the buy-back cost), less the fee. Contracts are closed whole, the last position in part; then
    the account is re-margined exactly and the step repeats until available funds are >= 0. When
    no position improves available funds, every remaining one is closed.
    """
    n_a = len(ctx.accounts)
    j = flat_index(point, gd, gshape)
    usd = ctx.usd
    book = inputs.book
    pk_all = book["contract_index"].values
    q0 = book["quantity"].values.astype(float)
    pa_all = ctx.book_acct
    n_p = pk_all.size
    p = ctx.params.liquidation
    st = state[:, j]
    r = float(ctx.sc.fx_rate(ctx.params.base_currency, key_path="account.base_currency"))
    summary = {
        "liquidation_needed": st == K.FORCED_LIQUIDATION,
        "liquidation_complete": np.ones(n_a, dtype=bool),
        "liquidation_fees": np.zeros(n_a),
        "liquidation_cash": np.zeros(n_a),
        "liquidation_realised_pnl": np.zeros(n_a),
        "liquidation_contracts": np.zeros(n_a),
        "available_after_liquidation": (equity_b[:, j] - init_b[:, j]) * r,  # [reporting currency]
        "liquidation_rounds": np.zeros(n_a, dtype=np.int64),
    }
    empty = xr.Dataset(
        {
            "liquidation_account": ("liquidation", np.array([], dtype=object)),
            "liquidation_position": ("liquidation", np.array([], dtype=np.int64)),
            "liquidation_contract": ("liquidation", np.array([], dtype=object)),
            "liquidation_quantity": ("liquidation", np.array([], dtype=float)),
            "close": ("liquidation", np.array([], dtype=float)),
            "close_price": ("liquidation", np.array([], dtype=float)),
            "fee": ("liquidation", np.array([], dtype=float)),
            "cash_realised": ("liquidation", np.array([], dtype=float)),
            "realised_pnl": ("liquidation", np.array([], dtype=float)),
        }
    )
    accts = np.flatnonzero(st == K.FORCED_LIQUIDATION)
    if accts.size == 0 or n_p == 0:
        return empty, summary
    kk_all = ctx.local[pk_all]
    cand = np.isin(pa_all, accts) & np.isin(ctx.pos_source, [SPAN, RULE]) & (q0 != 0)
    if not cand.any():
        summary["liquidation_complete"][accts] = False
        return empty, summary
    pt = at_point(inputs, point)
    # constant part of the requirement (other methods, stocks without loan value, injected)
    fut_now = (
        (by_source["span"]["initial"] + by_source["exchange_rule"]["initial"])[..., j] * usd[None, None, :]
    ).sum(axis=(1, 2))
    const_init = init_b[:, j] - fut_now
    # per contract: option cash (premium-style options), fee, realised pnl per contract [base]
    fx_k = usd[ctx.k_ccy[kk_all]]
    mult = ctx.k_mult[kk_all]
    sign = np.sign(q0)
    opt_unit = np.where(
        q0 != 0, pv["option"][:, j] / np.where(q0 != 0, q0, 1.0), 0.0
    )  # value per long contract
    cash_per = np.where(ctx.k_premium_style[kk_all], sign * opt_unit, 0.0) * fx_k
    fee_per = ctx.k_fee[kk_all] * fx_k
    level = pv["level"][:, j]
    fut_pnl_per = sign * mult * (level - pv["base_level"]) * fx_k
    is_fut = ctx.k_type[kk_all] == "future"
    base_pt = base_inputs(inputs)
    opt_rows = np.isin(ctx.k_type[kk_all], ["call", "put"])
    opt_base = np.zeros(n_p)
    if opt_rows.any():
        uniq = np.unique(pk_all[opt_rows])
        prem0 = np.asarray(
            base_pt.option_premium(base_pt.contracts.isel(contract=uniq), engine=engine).values
        )
        opt_base[opt_rows] = prem0[np.searchsorted(uniq, pk_all[opt_rows])] * mult[opt_rows]
    opt_pnl_per = sign * (opt_unit - opt_base) * fx_k
    pnl_per = np.where(is_fut, fut_pnl_per, np.where(opt_rows, opt_pnl_per, 0.0))

    q = q0.copy()
    closed = np.zeros(n_p)
    fees = np.zeros(n_a)
    cash = np.zeros(n_a)
    equity_pt = equity_b[:, j]
    rounds = np.zeros(n_a, dtype=np.int64)
    active = np.zeros(n_a, dtype=bool)
    active[accts] = True
    tol = 1e-9
    for _round in range(p.max_rounds):  # rounds of exact re-margining (each vectorised over accounts)
        live = cand & (q != 0) & active[pa_all]
        rows = np.flatnonzero(live)
        fut_init = _futures_initial(ctx, pt, pk_all[live], q[live], pa_all[live], n_a, engine)
        need = const_init + fut_init - (equity_pt - fees + cash)
        still = active & (need > tol * np.maximum(np.abs(equity_pt), 1.0))
        active = still
        if not still.any() or rows.size == 0:
            break
        rows = rows[still[pa_all[rows]]]
        if rows.size == 0:
            break
        # a round counts for the accounts it closes positions of (not for one with none left while
        # other accounts go on: an account's plan never depends on the other accounts)
        rounds[np.unique(pa_all[rows])] += 1
        # release of each candidate: leave-one-out (exact) or stand-alone margin
        counts = np.bincount(pa_all[rows], minlength=n_a)
        if int((counts.astype(np.int64) ** 2).sum()) <= p.leave_one_out_max_rows:
            # virtual account v = candidate index: the account's other live positions
            same = pa_all[rows][:, None] == pa_all[rows][None, :]
            np.fill_diagonal(same, False)
            vi, pj = np.nonzero(same)
            sub = rows[pj]
            loo = _futures_initial(ctx, pt, pk_all[sub], q[sub], vi, rows.size, engine)
            release = (fut_init[pa_all[rows]] - loo) / np.abs(q[rows])
        else:
            alone = _futures_initial(ctx, pt, pk_all[rows], q[rows], np.arange(rows.size), rows.size, engine)
            release = alone / np.abs(q[rows])
        gain = release + cash_per[rows] - fee_per[rows]
        order = np.lexsort((-gain, pa_all[rows]))
        r_sorted = rows[order]
        g_sorted = gain[order]
        pos_gain = g_sorted > tol
        n_close = np.zeros(r_sorted.size)
        sel = np.flatnonzero(pos_gain)
        if sel.size:
            n_close[sel] = K.greedy_close(
                pa_all[r_sorted[sel]], g_sorted[sel], np.abs(q[r_sorted[sel]]), np.maximum(need, 0.0)
            )
        # accounts short with nothing that helps: close everything left
        helped = np.bincount(pa_all[r_sorted], weights=n_close, minlength=n_a) > 0
        stuck = still & ~helped
        n_close = np.where(stuck[pa_all[r_sorted]], np.abs(q[r_sorted]), n_close)
        closed[r_sorted] += n_close
        fees += np.bincount(pa_all[r_sorted], weights=n_close * fee_per[r_sorted], minlength=n_a)
        cash += np.bincount(pa_all[r_sorted], weights=n_close * cash_per[r_sorted], minlength=n_a)
        q[r_sorted] -= sign[r_sorted] * n_close
    live = cand & (q != 0)
    fut_init = _futures_initial(ctx, pt, pk_all[live], q[live], pa_all[live], n_a, engine)
    avail = (equity_pt - fees + cash) - (const_init + fut_init)
    liq = accts
    summary["liquidation_complete"][liq] = avail[liq] >= -tol * np.maximum(np.abs(equity_pt[liq]), 1.0)
    summary["liquidation_fees"] = fees * r
    summary["liquidation_cash"] = cash * r
    summary["liquidation_realised_pnl"] = np.bincount(pa_all, weights=closed * pnl_per, minlength=n_a) * r
    summary["liquidation_contracts"] = np.bincount(pa_all, weights=closed, minlength=n_a)
    summary["available_after_liquidation"] = (
        np.where(np.isin(np.arange(n_a), liq), avail * r, summary["available_after_liquidation"])
    )
    summary["liquidation_rounds"] = rounds
    done = np.flatnonzero(closed > 0)
    price = np.where(opt_rows, opt_unit / np.where(mult > 0, mult, 1.0), level)
    ds = xr.Dataset(
        {
            "liquidation_account": (
                "liquidation",
                np.array([ctx.accounts[a] for a in pa_all[done]], dtype=object),
            ),
            "liquidation_position": ("liquidation", book["position"].values[done].astype(np.int64)),
            "liquidation_contract": ("liquidation", book["contract"].values[done].astype(object)),
            "liquidation_quantity": ("liquidation", q0[done]),
            "close": ("liquidation", closed[done]),
            "close_price": ("liquidation", price[done]),
            "fee": ("liquidation", closed[done] * fee_per[done] * r),
            "cash_realised": ("liquidation", closed[done] * cash_per[done] * r),
            "realised_pnl": ("liquidation", closed[done] * pnl_per[done] * r),
        }
    )
    return ds, summary


