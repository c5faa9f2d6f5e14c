"""The forced conversion plan of the account layer: the movements (transfers between currency
groups, conversions between currencies) that make every account meet the conversion and transfer
tests at the settlement decision point (:func:`marginsim.kernels.account.plan_movements`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ...kernels import account as K
from ...params.account import CURRENCY_GROUPS, AccountParams
from .context import GROUP_INDEX, Ctx, G, flat_index

__all__ = ["max_movements", "conversion_plans", "conversion_tests"]


def max_movements(n_ccy: int, params: AccountParams) -> int:
    """The most rows an account can give the forced conversion plan: the client's instructions, then
    at most one movement per (from group, currency) -> (to group, currency) pair the planner has."""
    pairs = n_ccy * G * (G - 1) + n_ccy * (n_ccy - 1) * G * G
    return pairs + max((len(f.instructions) for f in params.accounts.values()), default=0)




def conversion_plans(
    ctx: Ctx,
    balance: np.ndarray,
    lines: dict[str, np.ndarray],
    point: dict[str, int],
    gd: list[str],
    gshape: tuple[int, ...],
) -> tuple[xr.Dataset, dict[str, np.ndarray]]:
    """The forced conversion plan of every account at the grid point ``point``.

    Returns the plan's rows (dim ``movement``: the client's instructions first, then the planner's
    movements) and a summary per account (rule, complete, shortfalls before and after [base
    currency], currencies converted).
    """
    n_a = len(ctx.accounts)
    j = flat_index(point, gd, gshape)
    usd = ctx.usd
    rows: list[dict[str, Any]] = []
    summary = {
        "conversion_rule": np.empty(n_a, dtype=object),
        "conversion_complete": np.zeros(n_a, dtype=bool),
        "conversion_shortfall_before": np.zeros(n_a),
        "conversion_shortfall_after": np.zeros(n_a),
        "currencies_converted": np.empty(n_a, dtype=object),
    }
    for a in range(n_a):  # the planner is a small search per account (see the kernel's notes)
        b = balance[a, :, :, j].copy()
        req = lines["exchange_initial"][a, :, :, j]
        qg = (lines["initial"][a, :, :, j] * usd).sum(axis=1)
        name = ctx.accounts[a]
        funds = ctx.params.accounts.get(name)
        client: list[K.Movement] = []
        if funds is not None:
            for ins in funds.instructions:
                c = ctx.ccys.index(ins.currency)
                d = ctx.ccys.index(ins.to_currency or ins.currency)
                client.append(
                    K.Movement(
                        ins.kind,
                        ins.amount,
                        c,
                        GROUP_INDEX[ins.from_group],
                        GROUP_INDEX[ins.to_group],
                        d,
                        usd[c] / usd[d],
                    )
                )
        before_ccy, before_grp = K.shortfalls(b, req, qg, usd)
        b_after_client = K.replay(b, client)
        plan = K.plan_movements(b_after_client, req, qg, usd)
        for rule, moves in (("client", client), (plan.rule, plan.movements)):
            for m in moves:
                rows.append(
                    {
                        "movement_account": name,
                        "movement_rule": rule,
                        "kind": m.kind,
                        "amount": m.amount,
                        "movement_currency": ctx.ccys[m.currency],
                        "from_group": CURRENCY_GROUPS[m.from_group],
                        "to_group": CURRENCY_GROUPS[m.to_group],
                        "to_currency": ctx.ccys[m.to_currency],
                        "to_amount": m.to_amount,
                        "rate": float(m.rate),
                    }
                )
        summary["conversion_rule"][a] = "client" if client and not plan.movements else plan.rule
        summary["conversion_complete"][a] = plan.complete
        summary["conversion_shortfall_before"][a] = float((before_ccy * usd).sum() + before_grp.sum())
        summary["conversion_shortfall_after"][a] = plan.shortfall_after
        summary["currencies_converted"][a] = ",".join(ctx.ccys[c] for c in plan.currencies_converted)
    cols = [
        "movement_account",
        "movement_rule",
        "kind",
        "amount",
        "movement_currency",
        "from_group",
        "to_group",
        "to_currency",
        "to_amount",
        "rate",
    ]
    data = {}
    for col in cols:
        vals = [r[col] for r in rows]
        dtype = float if col in ("amount", "to_amount", "rate") else object
        data[col] = ("movement", np.array(vals, dtype=dtype))
    return xr.Dataset(data), summary




def conversion_tests(
    balance: np.ndarray, exchange_initial: np.ndarray, group_base: np.ndarray, group_init: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The conversion test (each currency's balance covers the exchange initial margin required in
    it) and the transfer test (each group's base covers the broker's initial margin of the group).

    Parameters
    ----------
    balance, exchange_initial
        (account, currency group, currency, grid point) [currency of the index].
    group_base, group_init
        (account, currency group, grid point) [base currency].

    Returns
    -------
    conversion_met, transfer_met, forced_conversion
        The tests, and whether a forced conversion is needed (account, grid point): some test fails.
    """
    conv_met = balance >= exchange_initial - 1e-9 * np.maximum(np.abs(exchange_initial), 1.0)
    trans_met = group_base >= group_init - 1e-9 * np.maximum(np.abs(group_init), 1.0)
    forced_conv = ~(conv_met.all(axis=(1, 2)) & trans_met.all(axis=1))
    return conv_met, trans_met, forced_conv
