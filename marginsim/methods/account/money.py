"""Money of the account layer: cash, LME profits, position values, balances and tiered interest.

Amounts are in the currency of their ``currency`` coordinate unless a name says ``_base`` (the
base currency, USD by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ...errors import InputError
from ...kernels import account as K
from ...kernels import pricing
from ...model import Inputs
from ...params.account import InterestTier
from .context import GROUP_INDEX, Ctx, G, base_inputs, flat, grid_shape

__all__ = ["cash_arrays", "position_values", "to_lines", "interest", "withdrawable"]


def cash_arrays(ctx: Ctx) -> dict[str, np.ndarray]:
    """Static money per (account, group, currency) [currency units]."""
    n_a, C = len(ctx.accounts), len(ctx.ccys)
    cash = np.zeros((n_a, G, C))
    unsettled = np.zeros((n_a, G, C))
    lme_due = np.zeros((n_a, G, C))
    lme_not_due = np.zeros((n_a, G, C))
    as_of = ctx.sc.as_of_date
    for name, f in ctx.params.accounts.items():  # per account definition of the scenario file
        a = ctx.account_pos.get(name)
        if a is None:  # another chunk's
            continue
        for g, row in f.cash.items():
            for c, v in row.items():
                cash[a, GROUP_INDEX[g], ctx.ccys.index(c)] += v
        for g, row in f.unsettled.items():
            for c, v in row.items():
                unsettled[a, GROUP_INDEX[g], ctx.ccys.index(c)] += v
        for x in f.lme_profits:
            target = lme_due if x.prompt_date <= as_of else lme_not_due
            target[a, GROUP_INDEX[x.currency_group], ctx.ccys.index(x.currency)] += x.amount
    return {"cash": cash, "unsettled": unsettled, "lme_due": lme_due, "lme_not_due": lme_not_due}


def position_values(ctx: Ctx, inputs: Inputs, engine: pricing.Engine) -> dict[str, np.ndarray]:
    """Per book position over the grid [contract currency]: the value counted in equity (futures and
    CFD variation since the reference price, stock market value) and the option value excluded."""
    gd, gshape = grid_shape(inputs)
    book = inputs.book
    pk = book["contract_index"].values
    n_p = pk.size
    n_g = int(np.prod(gshape))
    if n_p == 0:
        z = np.zeros((0, n_g))
        return {"counted": z, "option": z, "level": z, "base_level": np.zeros(0)}
    kk = ctx.local[pk]
    held_c = inputs.contracts.isel(contract=ctx.held)
    level = flat(inputs.underlying_level(held_c), ["contract"], gd, gshape)[kk]
    base = base_inputs(inputs)
    base_level = np.asarray(base.underlying_level(base.contracts.isel(contract=ctx.held)).values)[kk]
    q = book["quantity"].values
    mult = ctx.k_mult[kk]
    typ = ctx.k_type[kk]
    ref = base_level.copy()
    open_px = _open_prices(inputs)
    if open_px is not None:
        ref = np.where((typ == "cfd") & ~np.isnan(open_px), open_px, ref)
    variation = q[:, None] * mult[:, None] * (level - ref[:, None])
    stock_value = q[:, None] * mult[:, None] * level
    counted = np.where(
        np.isin(typ, ["future", "cfd"])[:, None],
        variation,
        np.where((typ == "stock")[:, None], stock_value, 0.0),
    )
    option = np.zeros((n_p, n_g))
    is_opt = np.isin(typ, ["call", "put"])
    if is_opt.any():
        uniq = np.unique(pk[is_opt])
        prem = flat(
            inputs.option_premium(inputs.contracts.isel(contract=uniq), engine=engine),
            ["contract"],
            gd,
            gshape,
        )
        option[is_opt] = q[is_opt, None] * mult[is_opt, None] * prem[np.searchsorted(uniq, pk[is_opt])]
    return {"counted": counted, "option": option, "level": level, "base_level": base_level}


def _open_prices(inputs: Inputs) -> np.ndarray | None:
    """Given open prices of the book's positions (NaN: none), or None when the book has none.

    From the book's ``open_price`` (a stored book) when it has one, else from the scenario file's
    ``positions``: the whole book's when it is the scenario's book, by the position numbers (which
    a chunk of the book keeps) for a chunk of a larger book.
    """
    book, sc = inputs.book, inputs.scenario
    if "open_price" in book:
        return np.asarray(book["open_price"].values, dtype=float)
    n_p = book.sizes["position"]
    table = sc.position_table()
    if inputs.universe is None:
        if len(table) != n_p:
            return None
        where = np.arange(n_p)
    else:
        where = np.asarray(book["position"].values, dtype=np.int64)
        if where.size and (where.min() < 0 or where.max() >= len(table)):
            return None
    if table.open_price is None:
        return np.full(where.size, np.nan)
    return table.open_price[where]


def to_lines(ctx: Ctx, per_pos: np.ndarray) -> np.ndarray:
    """Per position values (P, n_g) [contract currency] -> (A, G, C, n_g)."""
    n_g = per_pos.shape[-1] if per_pos.ndim == 2 else 1
    out = np.zeros((len(ctx.accounts), G, len(ctx.ccys), n_g))
    if per_pos.shape[0]:
        kk = ctx.local[ctx.pos_k]
        np.add.at(out, (ctx.book_acct, ctx.k_group[kk], ctx.k_ccy[kk]), per_pos)
    return out



def _tier_rates(ctx: Ctx, tiers: Sequence[InterestTier], ccy_needed: np.ndarray, kind: str, floor: bool) -> np.ndarray:
    """Rates (C, T) [decimal per year] of a tier table; a spread needs the currency's benchmark."""
    ip = ctx.params.interest
    C = len(ctx.ccys)
    rates = np.zeros((C, len(tiers)))
    for t, tier in enumerate(tiers):  # per tier definition
        for c, name in enumerate(ctx.ccys):  # per currency
            if tier.rate is not None:
                rates[c, t] = tier.rate
            elif name in ip.benchmark:
                rates[c, t] = ip.benchmark[name] + (tier.spread or 0.0)  # a tier without a rate has a spread
            elif ccy_needed[c]:
                raise InputError(
                    f"no benchmark rate for {name} (needed by the {kind} tiers); add account.interest.benchmark.{name}",
                    file=ctx.file,
                    key_path=("account", "interest", "benchmark"),
                )
            else:
                rates[c, t] = np.nan
    return np.maximum(rates, 0.0) if floor else rates


def interest(ctx: Ctx, inputs: Inputs, money: dict[str, np.ndarray], base_level: np.ndarray) -> xr.Dataset:
    """Tiered interest per year on settled cash per account and currency [currency units].

    ``base_level``: the price level of each book position at the base market (settlement prices).
    """
    ip = ctx.params.interest
    n_a, C = len(ctx.accounts), len(ctx.ccys)
    usd = ctx.usd
    settled = (money["cash"] - money["unsettled"]).sum(axis=1)  # (A, C), across groups
    # short-sale credit: given, else the value of short stock positions at the settlement prices
    short = np.zeros((n_a, C))
    book = inputs.book
    pk = book["contract_index"].values
    if pk.size:
        kk = ctx.local[pk]
        q = book["quantity"].values
        is_short_stock = (ctx.k_type[kk] == "stock") & (q < 0)
        if is_short_stock.any():
            np.add.at(
                short,
                (ctx.book_acct[is_short_stock], ctx.k_ccy[kk[is_short_stock]]),
                -q[is_short_stock] * ctx.k_mult[kk[is_short_stock]] * base_level[is_short_stock],
            )
    for name, f in ctx.params.accounts.items():
        a = ctx.account_pos.get(name)
        if f.short_proceeds is not None and a is not None:
            short[a] = 0.0
            for c, v in f.short_proceeds.items():
                short[a, ctx.ccys.index(c)] = v
    ordinary = settled - short
    credit_amt = np.maximum(ordinary, 0.0)
    debit_amt = np.maximum(-ordinary, 0.0)
    need = lambda x: (x > 0).any(axis=0)  # noqa: E731
    tables = {
        "credit_interest": (ip.credit_tiers, credit_amt, True),
        "debit_interest": (ip.debit_tiers, debit_amt, False),
        "short_credit_interest": (ip.short_credit_tiers, short, True),
    }
    out = {}
    for key, (tiers, amount, floor) in tables.items():
        rates = _tier_rates(ctx, tiers, need(amount), key.replace("interest", ""), floor)
        bounds = np.array([t.above_usd for t in tiers])
        per_year_usd = K.tiered_interest(amount * usd[None, :], bounds, np.nan_to_num(rates)[None, :, :])
        out[key] = per_year_usd / usd[None, :]
    basis = np.array([ip.day_basis.get(c, ip.default_day_basis) for c in ctx.ccys], dtype=float)
    net = out["credit_interest"] + out["short_credit_interest"] - out["debit_interest"]
    ds = xr.Dataset(
        {
            "settled_balance": (("account", "currency"), settled),
            "short_credit": (("account", "currency"), short),
            "credit_interest": (("account", "currency"), out["credit_interest"]),
            "debit_interest": (("account", "currency"), out["debit_interest"]),
            "short_credit_interest": (("account", "currency"), out["short_credit_interest"]),
            "net_interest": (("account", "currency"), net),
            "net_interest_daily": (("account", "currency"), net / basis[None, :]),
            "day_basis": (("currency",), basis),
            "net_interest_base": (("account",), (net * usd[None, :]).sum(axis=1)),
        }
    )
    return ds




def balances(
    ctx: Ctx, inputs: Inputs, engine: pricing.Engine
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The money of every account: static amounts, position values and balances.

    Returns
    -------
    money, values, balance, option_lines
        :func:`cash_arrays`; :func:`position_values`; the balance counted in equity (cash, LME
        profits, futures and CFD variation, stock value) and the value of the options held (not
        counted), each (account, currency group, currency, grid point) [currency of the index].
    """
    money = cash_arrays(ctx)
    pv = position_values(ctx, inputs, engine)
    balance = (money["cash"] + money["lme_due"] + money["lme_not_due"])[..., None] + to_lines(ctx, pv["counted"])
    return money, pv, balance, to_lines(ctx, pv["option"])


def withdrawable(
    ctx: Ctx,
    money: dict[str, np.ndarray],
    balance: np.ndarray,
    exchange_initial: np.ndarray,
    equity_b: np.ndarray,
    init_b: np.ndarray,
    group_base: np.ndarray,
    group_init: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the client may withdraw: settled funds, never LME profits not yet due, less the initial
    margin with the withdrawal buffer, per account, currency group and currency.

    Parameters
    ----------
    ctx
        The run's context.
    money
        :func:`cash_arrays`.
    balance, exchange_initial
        (account, currency group, currency, grid point) [currency of the index].
    equity_b, init_b
        (account, grid point) [base currency].
    group_base, group_init
        (account, currency group, grid point) [base currency].

    Returns
    -------
    withdrawable_b, group_w, ccy_w, lme_not_due_b
        Per account (account, grid point) and per group [base currency], per currency [currency of
        the index], and the LME profits not due per account (account, 1) [base currency].
    """
    usd = ctx.usd
    buf = 1.0 + ctx.params.withdrawal_buffer
    settled = money["cash"] + money["lme_due"]  # after yesterday's settlement
    lme_nd = money["lme_not_due"]
    settled_b = (settled * usd[None, None, :]).sum(axis=(1, 2))[:, None]
    lme_nd_b = (lme_nd * usd[None, None, :]).sum(axis=(1, 2))[:, None]
    withdrawable_b = np.maximum(np.minimum(settled_b, equity_b - lme_nd_b) - init_b * buf, 0.0)
    g_settled = (settled * usd[None, None, :]).sum(axis=2)[..., None]
    g_lme = (lme_nd * usd[None, None, :]).sum(axis=2)[..., None]
    group_w = np.minimum(
        np.maximum(np.minimum(g_settled, group_base - g_lme) - group_init * buf, 0.0),
        withdrawable_b[:, None, :],
    )
    ccy_w = np.maximum(np.minimum(settled[..., None], balance - lme_nd[..., None]) - exchange_initial * buf, 0.0)
    ccy_w = np.minimum(ccy_w, group_w[:, :, None, :] / usd[None, None, :, None])
    return withdrawable_b, group_w, ccy_w, lme_nd_b
