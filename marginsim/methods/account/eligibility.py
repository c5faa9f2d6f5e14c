"""Eligibility of the account layer: ready-market tests of foreign stocks, account opening and
activation, product classes against investor classes, position limits and reporting levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ...errors import InputError
from ...kernels import account as K
from ...model import Inputs
from ...outputs import base_grid_point
from ...params.account import INVESTOR_CLASSES
from .calls import holidays_for
from .context import NO_LOAN, SOURCE_NAMES, Ctx, flat_index, grid_coords, usd_rate

__all__ = ["ready_market", "eligibility", "mark_no_loan"]


def ready_market(ctx: Ctx, inputs: Inputs) -> xr.Dataset | None:
    """Ready-market test of the foreign stocks held (dim ``stock``), or None when none is held."""
    sc, rp = ctx.sc, ctx.params.ready_market
    held = ctx.held  # by the whole book: the same stocks in every chunk of a chunked book
    if held.size == 0:
        return None
    stock_und = sorted(
        set(inputs.contracts["underlying"].values[held[ctx.k_type == "stock"]].astype(str).tolist())
    )
    foreign = [
        u
        for u in stock_und
        if u in sc.market
        and sc.market[u].domicile is not None
        and sc.market[u].domicile not in rp.home_countries
    ]
    for u in ctx.params.stocks:
        if u not in sc.market:
            raise InputError(f"unknown underlying {u!r}", file=ctx.file, key_path=("account", "stocks", u))
    if not foreign:
        return None
    missing = [u for u in foreign if u not in ctx.params.stocks]
    if missing:
        raise InputError(
            f"foreign stock {missing[0]!r} (domicile {sc.market[missing[0]].domicile}) needs its ready-market data",
            file=ctx.file,
            key_path=("account", "stocks", missing[0]),
        )
    data = [ctx.params.stocks[u] for u in foreign]
    as_of = np.datetime64(sc.as_of_date, "D")
    listed_days = (as_of - np.array([d.listed_since for d in data], dtype="datetime64[D]")).astype(float)
    country = np.array(
        [(sc.market[u].listing or sc.market[u].domicile) in rp.ftse_world_countries for u in foreign]
    )
    price_usd = np.array(
        [
            sc.market[u].price * usd_rate(sc, sc.market[u].currency or sc.currency, "USD", "market")
            for u in foreign
        ]
    )
    vol_sh = np.array([d.median_volume_shares for d in data])
    vol_usd = np.array(
        [
            d.median_volume_usd if d.median_volume_usd is not None else d.median_volume_shares * px
            for d, px in zip(data, price_usd)
        ]
    )
    ff = [d.free_float_cap_usd[-rp.free_float_days :] for d in data]
    ff_min = np.array([min(x) for x in ff])
    ff_enough = np.array([len(x) >= rp.free_float_days for x in ff])
    failing = np.array(
        [np.datetime64(d.failing_since, "D") if d.failing_since else np.datetime64("NaT", "D") for d in data]
    )
    y = int(as_of.astype("datetime64[Y]").astype(int) + 1970)
    hol = holidays_for(ctx, rp.calendar, y - 2, y + 1, "account.ready_market.calendar")
    safe = np.where(np.isnat(failing), as_of, failing)
    grace_end = np.busday_offset(safe, rp.grace_business_days, roll="forward", holidays=hol)
    in_grace = ~np.isnat(failing) & (as_of <= grace_end)
    res = K.ready_market(
        listed_days,
        country,
        np.array([d.electronic_quotes for d in data]),
        vol_sh,
        vol_usd,
        ff_min,
        ff_enough,
        in_grace,
        min_listed_days=rp.min_listed_days,
        min_volume_shares=rp.min_median_volume_shares,
        min_volume_usd=rp.min_median_volume_usd,
        min_free_float_usd=rp.min_free_float_usd,
    )
    # a stock reported as failing keeps loan value only inside the grace period
    failing_now = ~np.isnat(failing)
    res["ready_market"] = np.where(failing_now, in_grace, res["meets_all"])
    ds = xr.Dataset({f"ready_{k}" if k != "ready_market" else k: ("stock", v) for k, v in res.items()})
    ds["in_grace"] = ("stock", in_grace)
    ds["grace_end"] = ("stock", np.where(failing_now, grace_end, np.datetime64("NaT", "D")))
    return ds.assign_coords(stock=foreign)


def eligibility(
    ctx: Ctx, inputs: Inputs, equity_b: np.ndarray, gd: list[str], gshape: tuple[int, ...]
) -> xr.Dataset:
    """Account opening / activation, product vs investor class, position limits and reporting levels."""
    sc, ep = ctx.sc, ctx.params.eligibility
    n_a = len(ctx.accounts)
    base_j = flat_index(
        base_grid_point(xr.Dataset(coords=grid_coords(inputs, gd)), gd) if gd else {}, gd, gshape
    )
    eq_now = equity_b[:, base_j] / ctx.usd[ctx.ccys.index("USD")] if "USD" in ctx.ccys else None
    opening = np.full(n_a, np.nan)
    activation = np.full(n_a, np.nan)
    cls_rank = np.full(n_a, -1, dtype=np.int64)
    approved = np.zeros(n_a, dtype=bool)
    experience = np.zeros(n_a, dtype=bool)
    for name, f in ctx.params.accounts.items():  # per account definition
        a = ctx.account_pos.get(name)
        if a is None:  # another chunk's
            continue
        if f.opening_assets is not None:
            opening[a] = sum(
                v * usd_rate(sc, c, "USD", f"account.accounts.{name}.opening_assets")
                for c, v in f.opening_assets.items()
            )
        if f.deposits is not None:
            activation[a] = sum(
                d.amount * usd_rate(sc, d.currency, "USD", f"account.accounts.{name}.deposits")
                for d in f.deposits
            )
        if f.investor_class is not None:
            cls_rank[a] = INVESTOR_CLASSES.index(f.investor_class)
        approved[a] = f.controlled_approved
        experience[a] = f.derivatives_experience
    if eq_now is None:
        eq_usd = np.zeros(n_a)
    else:
        eq_usd = eq_now
    professional = cls_rank == INVESTOR_CLASSES.index("professional")
    allowed_cls = np.isin(cls_rank, [INVESTOR_CLASSES.index(c) for c in ep.controlled_classes])
    balanced = cls_rank == INVESTOR_CLASSES.index("balanced")
    balanced_ok = experience | (eq_usd > ep.balanced_equity_minimum_usd)
    controlled_ok = professional | (allowed_cls & approved & (~balanced | balanced_ok))

    book = inputs.book
    pk = book["contract_index"].values
    kk = ctx.local[pk]
    pa = ctx.book_acct
    q = book["quantity"].values
    controlled = ctx.k_controlled[kk] if pk.size else np.zeros(0, dtype=bool)
    # 1 allowed, 0 not allowed, -1 not checked (no investor class)
    allowed = np.where(cls_rank[pa] < 0, -1, np.where(~controlled | controlled_ok[pa], 1, 0)).astype(np.int8)
    # net quantity per (account, product), back on each position
    key = pd.MultiIndex.from_arrays([pa, ctx.k_product[kk] if pk.size else np.zeros(0, dtype=object)])
    net = pd.Series(q).groupby(key).transform("sum").to_numpy() if pk.size else np.zeros(0)
    limit = ctx.k_limit[kk] if pk.size else np.zeros(0)
    report = ctx.k_report[kk] if pk.size else np.zeros(0)
    with np.errstate(invalid="ignore"):
        over = ~np.isnan(limit) & (np.abs(net) >= limit)
        reportable = ~np.isnan(report) & (np.abs(net) >= report)
    return xr.Dataset(
        {
            "opening_assets_usd": ("account", opening),
            "opening_threshold_met": (
                "account",
                np.where(np.isnan(opening), -1, opening >= ep.opening_minimum_usd).astype(np.int8),
            ),
            "deposits_usd": ("account", activation),
            "trading_activated": (
                "account",
                np.where(np.isnan(activation), -1, activation >= ep.activation_minimum_usd).astype(np.int8),
            ),
            "controlled_products_allowed": (
                "account",
                np.where(cls_rank < 0, -1, controlled_ok).astype(np.int8),
            ),
            "position_account": ("position", pa),
            "position_contract": ("position", book["contract"].values.astype(object)),
            "position_product": ("position", ctx.k_product[kk] if pk.size else np.zeros(0, dtype=object)),
            "position_source": (
                "position",
                np.array([SOURCE_NAMES[s] for s in ctx.pos_source], dtype=object),
            ),
            "product_controlled": ("position", controlled),
            "product_allowed": ("position", allowed),
            "product_net_quantity": ("position", net),
            "position_limit": ("position", limit),
            "reporting_level": ("position", report),
            "over_position_limit": ("position", over),
            "reportable": ("position", reportable),
        },
        coords={"position": book["position"].values},
    )




def mark_no_loan(ctx: Ctx, inputs: Inputs, stocks: xr.Dataset | None) -> None:
    """Long positions in foreign stocks without a ready market lose their loan value: set their
    source to :data:`.context.NO_LOAN` in ``ctx.pos_source`` (in place)."""
    if stocks is None or not inputs.book.sizes["position"]:
        return
    pk = inputs.book["contract_index"].values
    und = inputs.contracts["underlying"].values[pk].astype(str)
    no_loan_und = set(np.asarray(stocks["stock"].values)[~stocks["ready_market"].values].tolist())
    is_long_stock = (ctx.k_type[ctx.local[pk]] == "stock") & (inputs.book["quantity"].values > 0)
    ctx.pos_source = np.where(is_long_stock & np.isin(und, list(no_loan_und)), NO_LOAN, ctx.pos_source)
