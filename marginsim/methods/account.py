"""The account layer of a futures broker (``spec/account.md``): an xarray wrapper over
:mod:`marginsim.kernels.account`.

It consumes exchange (or upstream) requirements per account, currency group and currency, over
the grid dims:

* SPAN (:func:`marginsim.methods.span.span_margin`) for futures and options without margin data;
* fixed-per-contract or percentage-of-notional exchange margins given as data
  (``account.products.<key>.margin``);
* the other registered methods (portfolio margin for stocks, CFD for CFDs), run through the
  registry on the positions they cover;
* any extra requirements passed as a Dataset (:func:`requirements_from_method` builds one from a
  method's per-account result);

and the account's cash by currency group and currency. It returns equity, the broker's initial
and maintenance margins, risk ratios, the risk state and the margin-call deadline at every grid
point, group bases and the conversion / transfer tests, the forced conversion plan, the forced
liquidation plan, tiered interest and eligibility flags.

Accounts, positions and grid points are array axes; Python loops run over parameter definitions
(currency groups, currencies, products, tiers) and, for the two plans, over accounts at one
decision point (the conversion planner is a small search per account; see
:func:`marginsim.kernels.account.plan_movements`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError
from ..kernels import account as K
from ..kernels import pricing
from ..model import Inputs, book_from_arrays, flat_grid
from ..params.account import CURRENCY_GROUPS, INVESTOR_CLASSES, AccountParams, ProductParams
from ..params.span import SpanParams
from ..registry import REGISTRY, ChunkLayout
from ..result import to_plain
from ..scenario import ScenarioFile
from ._json import base_grid_point

__all__ = [
    "account_margin",
    "account_applies",
    "account_to_dict",
    "account_table",
    "requirements_from_method",
    "business_holidays",
    "STATE_NAMES",
]

STATE_NAMES = K.STATE_NAMES
G = len(CURRENCY_GROUPS)
_GROUP_INDEX = {g: i for i, g in enumerate(CURRENCY_GROUPS)}

# sources of a position's exchange requirement
SPAN, RULE, PM, CFD, NO_LOAN = 0, 1, 2, 3, 4
_SOURCE_NAMES = ("span", "exchange_rule", "portfolio_margin", "cfd", "no_loan_value")
_METHOD_SOURCE = {"span": SPAN, "portfolio_margin": PM, "cfd": CFD}
_LINES = ("exchange_initial", "exchange_maintenance", "initial", "maintenance")


def account_applies(sc: ScenarioFile) -> bool:
    """The account layer runs when the scenario has an ``account:`` section."""
    return sc.account is not None


@lru_cache(maxsize=32)
def _holidays_cached(code: str, first_year: int, last_year: int) -> tuple:
    import holidays

    years = list(range(first_year, last_year + 1))
    try:
        cal = holidays.financial_holidays(code, years=years)
    except (NotImplementedError, KeyError, AttributeError):
        cal = holidays.country_holidays(code, years=years)
    return tuple(sorted(cal))


def business_holidays(code: str, first_year: int, last_year: int) -> np.ndarray:
    """Non-business days (besides weekends) of a market or country, from the ``holidays`` package.

    Parameters
    ----------
    code
        A market code of ``holidays.financial_holidays`` (e.g. ``XHKG``: Hong Kong Exchanges) or a
        country code of ``holidays.country_holidays`` (e.g. ``HK``).
    first_year, last_year
        Years to cover.

    Returns
    -------
    numpy.ndarray
        ``datetime64[D]`` holidays.

    Raises
    ------
    InputError
        For a code the ``holidays`` package does not know.
    """
    try:
        days = _holidays_cached(code, int(first_year), int(last_year))
    except NotImplementedError:
        raise InputError(
            f"unknown holiday calendar {code!r} (a `holidays` market code such as XHKG, or a country code)",
            key_path="account.calendar",
        ) from None
    return np.array(days, dtype="datetime64[D]")


def _holidays_for(ctx: _Ctx, code: str, first: int, last: int, key_path: str) -> np.ndarray:
    try:
        return business_holidays(code, first, last)
    except InputError as e:
        raise InputError(e.problem, file=ctx.file, key_path=key_path) from None


# ----------------------------------------------------------------------------------------------------
# context: currencies, products, accounts
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    sc: ScenarioFile
    params: AccountParams
    accounts: list[str]
    book_acct: np.ndarray  # context account index of each book position
    ccys: list[str]
    usd: np.ndarray  # base-currency value of one unit of each currency
    rep: np.ndarray  # reporting-currency value of one unit
    held: np.ndarray  # held contract indices (global)
    local: np.ndarray  # global contract index -> index into `held` (-1: not held)
    k_group: np.ndarray  # per held contract: currency group index
    k_ccy: np.ndarray  # contract currency index
    k_source: np.ndarray  # SPAN | RULE | PM | CFD
    k_rule_fixed: np.ndarray  # bool: fixed (else percentage) where RULE
    k_rule_init: np.ndarray
    k_rule_maint: np.ndarray
    k_rule_ccy: np.ndarray
    k_mi: np.ndarray
    k_mm: np.ndarray
    k_fee: np.ndarray  # liquidation fee per contract [contract currency]
    k_product: np.ndarray  # product key (object)
    k_controlled: np.ndarray
    k_limit: np.ndarray
    k_report: np.ndarray
    k_mult: np.ndarray
    k_type: np.ndarray
    k_premium_style: np.ndarray
    pos_source: np.ndarray  # per book position
    pos_k: np.ndarray  # per book position: global contract index
    span_params: SpanParams
    file: str | None
    book_accounts: frozenset[str] = frozenset()  # every account of the whole book

    @cached_property
    def account_pos(self) -> dict[str, int]:
        """Account name -> index into :attr:`accounts` (the first, as ``accounts.index``)."""
        pos: dict[str, int] = {}
        for i, a in enumerate(self.accounts):
            pos.setdefault(a, i)
        return pos


def _product(params: AccountParams, contract: str, group: str, underlying: str) -> tuple[str, ProductParams]:
    for key in (contract, group, underlying):
        if key in params.products:
            return key, params.products[key]
    return contract, ProductParams()


def _usd_rate(sc: ScenarioFile, ccy: str, base: str, key_path: str) -> float:
    return sc.fx_rate(ccy, key_path=key_path) / sc.fx_rate(base, key_path="account.base_currency")


def _build_ctx(inputs: Inputs, params: AccountParams, extra_ccys: set[str]) -> _Ctx:
    sc = inputs.scenario
    file = sc.file
    book = inputs.book
    contracts = inputs.contracts
    # funded accounts without positions come after the book's (in one chunk only of a chunked book)
    in_book = inputs.book_accounts()
    extra = inputs.universe is None or inputs.universe.extra_accounts
    accounts = list(inputs.accounts) + [a for a in params.accounts if extra and a not in in_book]
    book_acct = book["account_index"].values.astype(np.int64)

    n_all = contracts.sizes["contract"]
    # held by the whole book (inputs.universe, for a chunk of accounts): the same currencies and
    # stocks in every chunk
    held = np.asarray(inputs.held_contracts(), dtype=np.int64)
    local = np.full(n_all, -1, dtype=np.int64)
    local[held] = np.arange(held.size)
    names = contracts["contract"].values[held].astype(str)
    groups = contracts["group"].values[held].astype(str)
    unds = contracts["underlying"].values[held].astype(str)
    ctype = contracts["type"].values[held].astype(str)
    cccy = contracts["currency"].values[held].astype(str)

    for key in params.products:
        known = (
            key in sc.contracts
            or key in sc.market
            or key in set(contracts["contract"].values.tolist())
            or key in set(contracts["group"].values.tolist())
        )
        if not known:
            raise InputError(
                f"unknown product {key!r}: not a contract, combined commodity or underlying",
                file=file,
                key_path=("account", "products", key),
            )

    n_k = held.size
    k_group = np.zeros(n_k, dtype=np.int64)
    k_source = np.zeros(n_k, dtype=np.int64)
    k_rule_fixed = np.zeros(n_k, dtype=bool)
    k_rule_init = np.zeros(n_k)
    k_rule_maint = np.zeros(n_k)
    rule_ccy = list(cccy)
    k_mi = np.full(n_k, params.initial_markup)
    k_mm = np.full(n_k, params.maintenance_markup)
    k_fee = np.full(n_k, np.nan)
    k_product = np.empty(n_k, dtype=object)
    k_controlled = np.zeros(n_k, dtype=bool)
    k_limit = np.full(n_k, np.nan)
    k_report = np.full(n_k, np.nan)
    # one dict lookup per held contract definition (no work per position or grid point)
    for i in range(n_k):
        key, p = _product(params, names[i], groups[i], unds[i])
        k_product[i] = key
        grp = p.currency_group or params.currency_group_of_currency.get(
            cccy[i], params.default_currency_group
        )
        k_group[i] = _GROUP_INDEX[grp]
        if p.margin is not None:
            k_source[i] = RULE
            k_rule_fixed[i] = p.margin.type == "fixed"
            k_rule_init[i] = p.margin.initial
            k_rule_maint[i] = p.margin.initial if p.margin.maintenance is None else p.margin.maintenance
            if p.margin.type == "fixed" and p.margin.currency is not None:
                rule_ccy[i] = p.margin.currency
        else:
            k_source[i] = _METHOD_SOURCE[params.margin_source[ctype[i]]]
        if p.initial_markup is not None:
            k_mi[i] = p.initial_markup
        if p.maintenance_markup is not None:
            k_mm[i] = p.maintenance_markup
        if p.fee_per_contract is not None:
            k_fee[i] = p.fee_per_contract
        k_controlled[i] = p.product_class == "controlled"
        k_limit[i] = np.nan if p.position_limit is None else p.position_limit
        k_report[i] = np.nan if p.reporting_level is None else p.reporting_level

    span_params = inputs.span_params or sc.span or SpanParams()
    span_ccys = set()
    for i in np.flatnonzero(k_source == SPAN):
        ccp = span_params.combined_commodities.get(groups[i])
        if ccp is not None and ccp.currency is not None:
            span_ccys.add(ccp.currency)

    ccys = {params.base_currency, sc.currency, *cccy.tolist(), *rule_ccy, *span_ccys, *extra_ccys}
    for f in params.accounts.values():
        for table in (f.cash, f.unsettled):
            for row in table.values():
                ccys.update(row)
        ccys.update(x.currency for x in f.lme_profits)
        ccys.update(m.currency for m in f.instructions)
        ccys.update(m.to_currency for m in f.instructions if m.to_currency)
        if f.short_proceeds:
            ccys.update(f.short_proceeds)
    ccys_l = sorted(ccys)
    usd = np.array([_usd_rate(sc, c, params.base_currency, f"account: currency {c}") for c in ccys_l])
    rep = np.array([sc.fx_rate(c, key_path=f"account: currency {c}") for c in ccys_l])
    cidx = {c: i for i, c in enumerate(ccys_l)}
    k_ccy = np.array([cidx[c] for c in cccy], dtype=np.int64)
    k_rule_ccy = np.array([cidx[c] for c in rule_ccy], dtype=np.int64)
    # liquidation fee: per product, else the house default converted to the contract's currency
    k_fee = np.where(np.isnan(k_fee), params.liquidation.fee_per_contract_usd / usd[k_ccy], k_fee)

    # per position: stocks without a ready market (long) lose their loan value
    pos_k = local[book["contract_index"].values]
    pos_source = k_source[pos_k] if pos_k.size else np.zeros(0, dtype=np.int64)
    return _Ctx(
        sc=sc,
        params=params,
        accounts=accounts,
        book_acct=book_acct,
        ccys=ccys_l,
        usd=usd,
        rep=rep,
        held=held,
        local=local,
        k_group=k_group,
        k_ccy=k_ccy,
        k_source=k_source,
        k_rule_fixed=k_rule_fixed,
        k_rule_init=k_rule_init,
        k_rule_maint=k_rule_maint,
        k_rule_ccy=k_rule_ccy,
        k_mi=k_mi,
        k_mm=k_mm,
        k_fee=k_fee,
        k_product=k_product,
        k_controlled=k_controlled,
        k_limit=k_limit,
        k_report=k_report,
        k_mult=contracts["multiplier"].values[held].astype(float),
        k_type=ctype.astype(object),
        k_premium_style=contracts["premium_style"].values[held].astype(bool),
        pos_source=pos_source.astype(np.int64),
        pos_k=book["contract_index"].values.astype(np.int64),
        span_params=span_params,
        file=file,
        book_accounts=in_book,
    )


# ----------------------------------------------------------------------------------------------------
# grid helpers
# ----------------------------------------------------------------------------------------------------


def _grid(inputs: Inputs) -> tuple[list[str], tuple[int, ...]]:
    gd = list(inputs.grid_dims)
    shape = tuple(int(inputs.market.sizes.get(d) or inputs.grid.sizes.get(d)) for d in gd)
    return gd, shape


def _flat(da: xr.DataArray, lead: list[str], gd: list[str], gshape: tuple[int, ...]) -> np.ndarray:
    """Numpy array with axes (lead..., grid flattened); missing grid dims are broadcast."""
    extra = [d for d in da.dims if d not in lead and d not in gd]
    if extra:
        raise InputError(f"a requirement has dims {extra} that are not grid dims ({gd})")
    return flat_grid(da, lead, gd, gshape)


def _grid_coords(inputs: Inputs, gd: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for d in gd:
        out[d] = inputs.market[d].values if d in inputs.market.coords else inputs.grid[d].values
    return out


def _at_point(inputs: Inputs, point: dict[str, int]) -> Inputs:
    """The inputs at one grid point (market and parameter grid dims selected)."""
    m = {d: i for d, i in point.items() if d in inputs.market.dims}
    g = {d: i for d, i in point.items() if d in inputs.grid.dims}
    return dataclasses.replace(inputs, market=inputs.market.isel(m), grid=inputs.grid.isel(g))


def _base_inputs(inputs: Inputs) -> Inputs:
    """The inputs at the base market (settlement prices, no grid)."""
    mk = inputs.market
    mk = mk.isel({d: 0 for d in inputs.grid_dims if d in mk.dims})
    mk = mk.drop_vars([v for v in ("shift_value", "vol_shift_value") if v in mk], errors="ignore")
    mk = mk.assign(price=mk["base_price"])
    mk = mk.drop_vars([d for d in inputs.grid_dims if d in mk.coords], errors="ignore")
    return dataclasses.replace(inputs, market=mk, grid=xr.Dataset())


def _sub_inputs(inputs: Inputs, rows: np.ndarray, quantity=None, account=None) -> Inputs:
    """Inputs whose book is the given rows of the book (or given contracts / quantities / accounts)."""
    book = inputs.book
    k = book["contract_index"].values[rows]
    q = book["quantity"].values[rows] if quantity is None else quantity
    a = book["account_name"].values[book["account_index"].values[rows]] if account is None else account
    new_book = book_from_arrays(
        inputs.contracts, contract=np.asarray(k, dtype=np.int64), quantity=q, account=a
    )
    sc = inputs.scenario
    if account is None and inputs.universe is not None:
        # a chunk of a larger book: the rows keep their position numbers (which index the scenario
        # file's positions) and the book's order data
        new_book = new_book.assign_coords(position=book["position"].values[rows])
        for name in ("open_price", "opened"):
            if name in book:
                new_book[name] = ("position", book[name].values[rows])
        return dataclasses.replace(inputs, book=new_book)
    if account is None and len(sc.positions) == book.sizes["position"]:
        sc = sc.model_copy(update={"positions": [sc.positions[int(i)] for i in rows]})
        sc._file = inputs.scenario.file
    return dataclasses.replace(inputs, book=new_book, scenario=sc)


# ----------------------------------------------------------------------------------------------------
# requirements
# ----------------------------------------------------------------------------------------------------


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
    if currency_group not in _GROUP_INDEX:
        raise InputError(f"unknown currency group {currency_group!r} (one of {', '.join(CURRENCY_GROUPS)})")
    out = xr.Dataset(
        {
            "initial": ds[initial].expand_dims(currency_group=[currency_group], currency=[currency]),
            "maintenance": ds[maintenance].expand_dims(currency_group=[currency_group], currency=[currency]),
        }
    )
    out.attrs["markup"] = "none"
    return out


def _empty_lines(n_a: int, C: int, n_g: int) -> dict[str, np.ndarray]:
    return {k: np.zeros((n_a, G, C, n_g)) for k in _LINES}


def _rule_lines(ctx: _Ctx, inputs_x: Inputs, pk: np.ndarray, q: np.ndarray, pa: np.ndarray, n_a: int):
    """Fixed-per-contract and percentage-of-notional exchange margins, in each margin currency."""
    gd, gshape = _grid(inputs_x)
    n_g = int(np.prod(gshape))
    C = len(ctx.ccys)
    out = _empty_lines(n_a, C, n_g)
    if pk.size == 0:
        return out
    kk = ctx.local[pk]
    uniq = np.unique(kk)
    level = inputs_x.underlying_level(inputs_x.contracts.isel(contract=ctx.held[uniq]))
    lvl = _flat(level, ["contract"], gd, gshape)[np.searchsorted(uniq, kk)]  # (P, n_g)
    absq = np.abs(q)[:, None]
    fixed = ctx.k_rule_fixed[kk][:, None]
    notional = absq * ctx.k_mult[kk][:, None] * lvl
    exch_i = np.where(fixed, absq * ctx.k_rule_init[kk][:, None], notional * ctx.k_rule_init[kk][:, None])
    exch_m = np.where(fixed, absq * ctx.k_rule_maint[kk][:, None], notional * ctx.k_rule_maint[kk][:, None])
    brk_m = exch_m * (1.0 + ctx.k_mm[kk][:, None])
    brk_i = np.maximum(exch_i * (1.0 + ctx.k_mi[kk][:, None]), brk_m)
    idx = (pa, ctx.k_group[kk], ctx.k_rule_ccy[kk])
    for name, v in zip(_LINES, (exch_i, exch_m, brk_i, brk_m)):
        np.add.at(out[name], idx, v)
    return out


def _span_lines(
    ctx: _Ctx, inputs_x: Inputs, pk: np.ndarray, q: np.ndarray, pa: np.ndarray, n_a: int, engine: str
):
    """SPAN requirements per (account, currency group, margin currency): combined commodity risks in
    their currency, less the net option value of the line; the broker's mark-ups apply to the risks."""
    from .span import span_margin

    gd, gshape = _grid(inputs_x)
    n_g = int(np.prod(gshape))
    C = len(ctx.ccys)
    out = _empty_lines(n_a, C, n_g)
    keep = q != 0
    pk, q, pa = pk[keep], q[keep], pa[keep]
    if pk.size == 0:
        return out
    labels = np.array([str(a) for a in pa], dtype=object)
    sub = dataclasses.replace(
        inputs_x,
        book=book_from_arrays(inputs_x.contracts, contract=pk, quantity=q, account=labels),
        universe=None,  # virtual accounts of this book only: the combined commodities it holds
    )
    ds = span_margin(sub, engine=engine)
    sub_acct = np.array([int(a) for a in ds["account"].values.tolist()], dtype=np.int64)
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
            (sp.combined_commodities.get(n).initial_ratio if n in sp.combined_commodities else None)
            or sp.initial_ratio
            for n in cc_names
        ]
    )
    risk = _flat(ds["risk"], ["account", "group"], gd, gshape) / cc_fx[None, :, None]  # (A_sub, CC, n_g)
    # net option value of premium-style options, in the currency of their combined commodity
    opt = ctx.k_premium_style[kk]
    nov_lines = np.zeros((n_a, G, C, n_g))
    if opt.any():
        ko = np.unique(pk[opt])
        prem = inputs_x.option_premium(inputs_x.contracts.isel(contract=ko))
        prem = _flat(prem, ["contract"], gd, gshape)[np.searchsorted(ko, pk[opt])]
        cc_o = cc_of_pos[opt]
        value = (
            q[opt, None]
            * ctx.k_mult[kk[opt], None]
            * prem
            * (ctx.rep[ctx.k_ccy[kk[opt]]] / cc_fx[cc_o])[:, None]
        )
        np.add.at(nov_lines, (pa[opt], cc_group[cc_o], cc_ccy[cc_o]), value)
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


def _method_lines(ctx: _Ctx, inputs: Inputs, source: int, engine: str) -> dict[str, np.ndarray]:
    """Requirements of another registered method on the positions it covers (broker level, no mark-up)."""
    gd, gshape = _grid(inputs)
    n_g = int(np.prod(gshape))
    out = _empty_lines(len(ctx.accounts), len(ctx.ccys), n_g)
    rows = np.flatnonzero(ctx.pos_source == source)
    if rows.size == 0:
        return out
    name = _SOURCE_NAMES[source]
    sub = _sub_inputs(inputs, rows)
    ds = REGISTRY[name].run(sub, engine=engine)
    req = requirements_from_method(
        ds,
        currency_group=ctx.params.method_currency_group[name],
        currency=ctx.sc.currency,
    )
    return _injected_lines(ctx, req, gd, gshape, markup=False)


def _injected_lines(ctx: _Ctx, req: xr.Dataset, gd, gshape, *, markup: bool) -> dict[str, np.ndarray]:
    n_g = int(np.prod(gshape))
    C = len(ctx.ccys)
    out = _empty_lines(len(ctx.accounts), C, n_g)
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
            g, c = _GROUP_INDEX[str(gname)], ctx.ccys.index(str(cname))
            ei = np.nan_to_num(_flat(sel["initial"], ["account"], gd, gshape))
            em = np.nan_to_num(_flat(sel["maintenance"], ["account"], gd, gshape))
            bi = ei * (1 + ctx.params.initial_markup) if markup else ei
            bm = em * (1 + ctx.params.maintenance_markup) if markup else em
            if "broker_initial" in sel:
                bi = np.nan_to_num(_flat(sel["broker_initial"], ["account"], gd, gshape))
            if "broker_maintenance" in sel:
                bm = np.nan_to_num(_flat(sel["broker_maintenance"], ["account"], gd, gshape))
            for k, v in zip(_LINES, (ei, em, np.maximum(bi, bm), bm)):
                np.add.at(out[k][:, g, c], a_idx, v)
    return out


def _no_loan_lines(ctx: _Ctx, inputs: Inputs) -> dict[str, np.ndarray]:
    """Long foreign stocks without a ready market: no loan value, margined at 100 % of their value."""
    gd, gshape = _grid(inputs)
    n_g = int(np.prod(gshape))
    out = _empty_lines(len(ctx.accounts), len(ctx.ccys), n_g)
    rows = np.flatnonzero(ctx.pos_source == NO_LOAN)
    if rows.size == 0:
        return out
    pk = inputs.book["contract_index"].values[rows]
    kk = ctx.local[pk]
    uniq = np.unique(pk)
    lvl = _flat(inputs.underlying_level(inputs.contracts.isel(contract=uniq)), ["contract"], gd, gshape)
    value = inputs.book["quantity"].values[rows, None] * ctx.k_mult[kk, None] * lvl[np.searchsorted(uniq, pk)]
    idx = (ctx.book_acct[rows], ctx.k_group[kk], ctx.k_ccy[kk])
    for k in _LINES:
        np.add.at(out[k], idx, value)
    return out


def _add(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: a[k] + b[k] for k in _LINES}


# ----------------------------------------------------------------------------------------------------
# balances
# ----------------------------------------------------------------------------------------------------


def _cash_arrays(ctx: _Ctx) -> dict[str, np.ndarray]:
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
                cash[a, _GROUP_INDEX[g], ctx.ccys.index(c)] += v
        for g, row in f.unsettled.items():
            for c, v in row.items():
                unsettled[a, _GROUP_INDEX[g], ctx.ccys.index(c)] += v
        for x in f.lme_profits:
            target = lme_due if x.prompt_date <= as_of else lme_not_due
            target[a, _GROUP_INDEX[x.currency_group], ctx.ccys.index(x.currency)] += x.amount
    return {"cash": cash, "unsettled": unsettled, "lme_due": lme_due, "lme_not_due": lme_not_due}


def _position_values(ctx: _Ctx, inputs: Inputs, engine: str) -> dict[str, np.ndarray]:
    """Per book position over the grid [contract currency]: the value counted in equity (futures and
    CFD variation since the reference price, stock market value) and the option value excluded."""
    gd, gshape = _grid(inputs)
    book = inputs.book
    pk = book["contract_index"].values
    n_p = pk.size
    n_g = int(np.prod(gshape))
    if n_p == 0:
        z = np.zeros((0, n_g))
        return {"counted": z, "option": z, "level": z, "base_level": np.zeros(0)}
    kk = ctx.local[pk]
    held_c = inputs.contracts.isel(contract=ctx.held)
    level = _flat(inputs.underlying_level(held_c), ["contract"], gd, gshape)[kk]
    base = _base_inputs(inputs)
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
        prem = _flat(
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
    if inputs.universe is None:
        if len(sc.positions) != n_p:
            return None
        where = np.arange(n_p)
    else:
        where = np.asarray(book["position"].values, dtype=np.int64)
        if where.size and (where.min() < 0 or where.max() >= len(sc.positions)):
            return None
    return np.array(
        [
            np.nan if sc.positions[int(i)].open_price is None else sc.positions[int(i)].open_price
            for i in where
        ],
        dtype=float,
    )


def _to_lines(ctx: _Ctx, per_pos: np.ndarray) -> np.ndarray:
    """Per position values (P, n_g) [contract currency] -> (A, G, C, n_g)."""
    n_g = per_pos.shape[-1] if per_pos.ndim == 2 else 1
    out = np.zeros((len(ctx.accounts), G, len(ctx.ccys), n_g))
    if per_pos.shape[0]:
        kk = ctx.local[ctx.pos_k]
        np.add.at(out, (ctx.book_acct, ctx.k_group[kk], ctx.k_ccy[kk]), per_pos)
    return out


# ----------------------------------------------------------------------------------------------------
# times and deadlines
# ----------------------------------------------------------------------------------------------------


def _local_naive(t: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return t.astimezone(tz).replace(tzinfo=None) if t.tzinfo is not None else t


def _step_times(ctx: _Ctx, inputs: Inputs, tz: zoneinfo.ZoneInfo) -> tuple[np.datetime64, np.ndarray | None]:
    """Evaluation time (as_of, local) and the time of each path step (None without a ``step`` dim)."""
    sc, p = ctx.sc, ctx.params
    if isinstance(sc.as_of, dt.datetime):
        t0 = _local_naive(sc.as_of, tz)
    else:
        t0 = dt.datetime.combine(sc.as_of, p.settlement_time)
    t0_64 = np.datetime64(t0, "s")
    if "step" not in inputs.grid_dims:
        return t0_64, None
    n_s = int(inputs.market.sizes["step"])
    if p.step_times is not None:
        if len(p.step_times) != n_s:
            raise InputError(
                f"account.step_times has {len(p.step_times)} times; the path has {n_s} steps",
                file=ctx.file,
                key_path="account.step_times",
            )
        return t0_64, np.array([np.datetime64(_local_naive(t, tz), "s") for t in p.step_times])
    mc = sc.grid.monte_carlo if sc.grid is not None else None
    minutes = p.step_minutes if p.step_minutes is not None else (mc.step_days * 1440.0 if mc else 0.0)
    offsets = np.round(np.arange(n_s) * minutes * 60.0).astype(np.int64).astype("timedelta64[s]")
    return t0_64, t0_64 + offsets


def _minutes(t: dt.time) -> float:
    return t.hour * 60.0 + t.minute + t.second / 60.0


# ----------------------------------------------------------------------------------------------------
# the method
# ----------------------------------------------------------------------------------------------------


def account_margin(
    inputs: Inputs,
    params: AccountParams | None = None,
    *,
    requirements: xr.Dataset | None = None,
    engine: pricing.Engine = "auto",
    liquidation_step: Any = None,
    stage: str = "all",
) -> xr.Dataset:
    """The account layer of a futures broker for every account, along the grid.

    Parameters
    ----------
    inputs
        The data model (:func:`marginsim.model.build_inputs`).
    params
        Account parameters; default: the scenario file's ``account`` section (else the defaults).
    requirements
        Extra exchange requirements (e.g. from :func:`requirements_from_method`): ``initial`` and
        ``maintenance`` over ``account``, ``currency_group``, ``currency`` and grid dims
        [``currency``]; optional ``broker_initial`` / ``broker_maintenance`` (else the account's
        mark-ups apply, or none when the Dataset's attrs say ``markup: none``).
    engine
        Pricing engine (SPAN risk arrays, option values).
    liquidation_step
        Step index of the liquidation plan, overriding the decision rule (a chunk of a larger
        book takes the whole book's; see :func:`account_chunk_layout`).
    stage
        ``"all"``; ``"state"`` returns ``state`` only (the first pass of a chunked run).

    Returns
    -------
    xarray.Dataset
        Amounts in the reporting currency unless a name ends in ``_base`` (base currency, USD by
        default) or the variable has a ``currency`` dim (amounts in that currency). Per account and
        grid point: ``equity``, ``initial``, ``maintenance`` (broker), ``exchange_initial``,
        ``exchange_maintenance``, ``risk_ratio``, ``maintenance_risk_ratio`` [fraction, 1 = 100 %],
        ``state`` (0 normal, 1 margin call, 2 forced liquidation), ``call_time``, ``deadline``,
        ``overdue``, ``available_funds``, ``excess_liquidity``, ``withdrawable``,
        ``option_value_excluded``, ``forced_conversion_needed``; per currency group: ``group_base``,
        ``group_initial``, ``group_maintenance``, ``group_available``, ``transfer_test_met``,
        ``group_withdrawable``; per group and currency: ``balance``, ``currency_exchange_initial``,
        ``currency_initial``, ``conversion_test_met``; the plans (dims ``movement``,
        ``liquidation``); interest (dims ``account``, ``currency``); eligibility flags (dims
        ``account``, ``position``, ``stock``).
    """
    inputs.require_in_memory("account_margin")
    return _account_margin(
        inputs, params, requirements=requirements, engine=engine, liquidation_step=liquidation_step, stage=stage
    )


def _max_movements(n_ccy: int, params: AccountParams) -> int:
    """The most rows an account can give the forced conversion plan: the client's instructions, then
    at most one movement per (from group, currency) -> (to group, currency) pair the planner has."""
    pairs = n_ccy * G * (G - 1) + n_ccy * (n_ccy - 1) * G * G
    return pairs + max((len(f.instructions) for f in params.accounts.values()), default=0)


def account_chunk_layout(inputs: Inputs) -> ChunkLayout:
    """How the account layer runs chunk by chunk of accounts (:func:`marginsim.scale.lazy_method`).

    Every account is margined on its own except for two things, which are made whole-book:

    * the plans' rows (``movement``, ``liquidation``) vary in number with the data: each chunk pads
      them to the most rows its accounts (:func:`_max_movements`) or positions (one each) can give,
      and :func:`marginsim.scale.compact` drops the padding after computing;
    * the liquidation plan's step, with ``account.decision.liquidation_step: first``, is the first
      step at which *any* account of the book is in forced liquidation: a first pass computes the
      states chunk by chunk and reduces them to that step, which every chunk of the second pass
      takes (the ``liquidation_point`` attr comes back with the computed result).
    """
    sc = inputs.scenario
    params = sc.account if sc.account is not None else AccountParams()
    gd, gshape = _grid(inputs)
    ragged: dict[str, Any] = {
        "movement": ("account", lambda t: _max_movements(t.sizes["currency"], params), None),
        "liquidation": ("position", 1, "liquidation_position"),
    }
    layout = ChunkLayout(ragged=ragged, data_attrs=("conversion_point", "liquidation_point"))
    if "step" not in gd or params.decision.liquidation_step != "first":
        return layout
    shell = _Shell(params=params, file=sc.file)
    point = _decision_point(shell, inputs, gd, gshape, None, kind="liquidation", step=0)
    n_s = gshape[gd.index("step")]

    def liquidation_step(states: xr.Dataset) -> dict[str, Any]:
        along = states["state"].isel({d: i for d, i in point.items() if d != "step"}).transpose("account", "step")
        hit = (along == K.FORCED_LIQUIDATION).any("account")
        return {"liquidation_step": xr.where(hit.any(), hit.argmax("step"), n_s - 1).data}

    return dataclasses.replace(layout, first_pass={"stage": "state"}, deps=liquidation_step)


@dataclass
class _Shell:
    """What :func:`_decision_point` reads of a context."""

    params: AccountParams
    file: str | None


def _account_margin(
    inputs: Inputs,
    params: AccountParams | None = None,
    *,
    requirements: xr.Dataset | None = None,
    engine: pricing.Engine = "auto",
    liquidation_step: Any = None,
    stage: str = "all",
) -> xr.Dataset:
    """:func:`account_margin` on in-memory inputs (a whole book or one chunk of it).

    ``liquidation_step`` overrides the step of the liquidation plan (the whole book's, for a chunk);
    ``stage="state"`` returns ``state`` only (the first pass of a chunked run).
    """
    sc = inputs.scenario
    if params is None:
        params = sc.account if sc.account is not None else AccountParams()
    extra_ccys = set() if requirements is None else {str(c) for c in requirements["currency"].values}
    ctx = _build_ctx(inputs, params, extra_ccys)
    try:
        tz = zoneinfo.ZoneInfo(params.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"unknown time zone {params.timezone!r}", file=ctx.file, key_path="account.timezone"
        ) from None
    gd, gshape = _grid(inputs)
    n_g = int(np.prod(gshape))
    n_a, C = len(ctx.accounts), len(ctx.ccys)
    usd = ctx.usd
    base_to_rep = float(sc.fx_rate(params.base_currency, key_path="account.base_currency"))

    # -- eligibility of stocks first: it decides which long stocks lose their loan value --------------
    stocks = _ready_market(ctx, inputs)
    if stocks is not None and inputs.book.sizes["position"]:
        pk = inputs.book["contract_index"].values
        und = inputs.contracts["underlying"].values[pk].astype(str)
        no_loan_und = set(np.asarray(stocks["stock"].values)[~stocks["ready_market"].values].tolist())
        is_long_stock = (ctx.k_type[ctx.local[pk]] == "stock") & (inputs.book["quantity"].values > 0)
        ctx.pos_source = np.where(is_long_stock & np.isin(und, list(no_loan_und)), NO_LOAN, ctx.pos_source)

    # -- requirements per (account, group, currency, grid) --------------------------------------------
    book = inputs.book
    pk_all = book["contract_index"].values
    q_all = book["quantity"].values
    by_source = {}
    rows = np.flatnonzero(ctx.pos_source == RULE)
    by_source["exchange_rule"] = _rule_lines(ctx, inputs, pk_all[rows], q_all[rows], ctx.book_acct[rows], n_a)
    rows = np.flatnonzero(ctx.pos_source == SPAN)
    by_source["span"] = _span_lines(ctx, inputs, pk_all[rows], q_all[rows], ctx.book_acct[rows], n_a, engine)
    by_source["portfolio_margin"] = _method_lines(ctx, inputs, PM, engine)
    by_source["cfd"] = _method_lines(ctx, inputs, CFD, engine)
    by_source["no_loan_value"] = _no_loan_lines(ctx, inputs)
    lines = _empty_lines(n_a, C, n_g)
    for v in by_source.values():
        lines = _add(lines, v)
    if requirements is not None:
        lines = _add(
            lines,
            _injected_lines(ctx, requirements, gd, gshape, markup=requirements.attrs.get("markup") != "none"),
        )

    # -- balances --------------------------------------------------------------------------------------
    money = _cash_arrays(ctx)
    pv = _position_values(ctx, inputs, engine)
    balance = (money["cash"] + money["lme_due"] + money["lme_not_due"])[..., None] + _to_lines(
        ctx, pv["counted"]
    )
    option_lines = _to_lines(ctx, pv["option"])

    u4 = usd[None, None, :, None]
    equity_b = (balance * u4).sum(axis=(1, 2))
    init_b = (lines["initial"] * u4).sum(axis=(1, 2))
    maint_b = (lines["maintenance"] * u4).sum(axis=(1, 2))
    ex_init_b = (lines["exchange_initial"] * u4).sum(axis=(1, 2))
    ex_maint_b = (lines["exchange_maintenance"] * u4).sum(axis=(1, 2))
    ratio = K.risk_ratio(init_b, equity_b)
    mratio = K.risk_ratio(maint_b, equity_b)
    state = K.risk_state(equity_b, init_b, maint_b)
    if stage == "state":
        return xr.Dataset(
            {"state": (("account", *gd), state.reshape((n_a, *(gshape or ()))))},
            coords={"account": ctx.accounts, **_grid_coords(inputs, gd)},
        )

    # -- groups and the conversion / transfer tests ---------------------------------------------------
    group_base = (balance * u4).sum(axis=2)  # (A, G, n_g)
    group_init = (lines["initial"] * u4).sum(axis=2)
    group_maint = (lines["maintenance"] * u4).sum(axis=2)
    conv_met = balance >= lines["exchange_initial"] - 1e-9 * np.maximum(
        np.abs(lines["exchange_initial"]), 1.0
    )
    trans_met = group_base >= group_init - 1e-9 * np.maximum(np.abs(group_init), 1.0)
    forced_conv = ~(conv_met.all(axis=(1, 2)) & trans_met.all(axis=1))

    # -- times and deadlines --------------------------------------------------------------------------
    t0, steps = _step_times(ctx, inputs, tz)
    gshape_full = gshape if gshape else ()
    st = state.reshape((n_a, *gshape_full))
    if steps is not None:
        ax = 1 + gd.index("step")
        start = K.call_start(st, axis=ax)
        shape_t = [1] * st.ndim
        shape_t[ax] = steps.size
        t_step = np.broadcast_to(steps.reshape(shape_t), st.shape)
        start_c = np.clip(start, 0, None)
        call_t = np.where(start >= 0, steps[start_c], np.datetime64("NaT", "s"))
    else:
        t_step = np.broadcast_to(t0, st.shape)
        call_t = np.where(st != K.NORMAL, t0, np.datetime64("NaT", "s"))
    years = [t0.astype("datetime64[Y]").astype(int) + 1970]
    if steps is not None:
        years.append(steps[-1].astype("datetime64[Y]").astype(int) + 1970)
    hol = _holidays_for(ctx, params.calendar, min(years) - 1, max(years) + 2, "account.calendar")
    due_call = K.call_deadline(
        call_t,
        cutoff_minutes=_minutes(params.call_cutoff),
        deadline_minutes=_minutes(params.call_deadline),
        holidays=hol,
    )
    deadline = np.where(
        st == K.MARGIN_CALL, due_call, np.where(st == K.FORCED_LIQUIDATION, t_step, np.datetime64("NaT", "s"))
    )
    overdue = (st == K.MARGIN_CALL) & (t_step > due_call)

    # -- withdrawable ---------------------------------------------------------------------------------
    buf = 1.0 + params.withdrawal_buffer
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
    ccy_w = np.maximum(
        np.minimum(settled[..., None], balance - lme_nd[..., None]) - lines["exchange_initial"] * buf, 0.0
    )
    ccy_w = np.minimum(ccy_w, group_w[:, :, None, :] / u4)

    # -- plans at their decision points ---------------------------------------------------------------
    conv_point = _decision_point(ctx, inputs, gd, gshape, state, kind="settlement")
    movements, conv_summary = _conversion_plans(ctx, balance, lines, conv_point, gd, gshape)
    liq_point = _decision_point(ctx, inputs, gd, gshape, state, kind="liquidation", step=liquidation_step)
    liquidation, liq_summary = _liquidation_plans(
        ctx, inputs, liq_point, gd, gshape, state, equity_b, init_b, lines, by_source, pv, engine
    )

    # -- interest and eligibility ---------------------------------------------------------------------
    interest = _interest(ctx, inputs, money, pv["base_level"])
    elig = _eligibility(ctx, inputs, equity_b, gd, gshape)

    # -- result ---------------------------------------------------------------------------------------
    gdims = tuple(gd)

    def ag(x):
        return (("account", *gdims), np.asarray(x).reshape((n_a, *gshape_full)))

    def agg(x):
        return (("account", "currency_group", *gdims), np.asarray(x).reshape((n_a, G, *gshape_full)))

    def agc(x):
        return (
            ("account", "currency_group", "currency", *gdims),
            np.asarray(x).reshape((n_a, G, C, *gshape_full)),
        )

    coords: dict[str, Any] = {
        "account": ctx.accounts,
        "currency_group": list(CURRENCY_GROUPS),
        "currency": ctx.ccys,
        **_grid_coords(inputs, gd),
    }
    r = base_to_rep
    ds = xr.Dataset(
        {
            "equity": ag(equity_b * r),
            "initial": ag(init_b * r),
            "maintenance": ag(maint_b * r),
            "exchange_initial": ag(ex_init_b * r),
            "exchange_maintenance": ag(ex_maint_b * r),
            "risk_ratio": ag(ratio),
            "maintenance_risk_ratio": ag(mratio),
            "state": ag(state),
            "call_time": ag(call_t),
            "deadline": ag(deadline),
            "overdue": ag(overdue),
            "available_funds": ag((equity_b - init_b) * r),
            "excess_liquidity": ag((equity_b - maint_b) * r),
            "withdrawable": ag(withdrawable_b * r),
            "option_value_excluded": ag((option_lines * u4).sum(axis=(1, 2)) * r),
            "lme_not_due": (("account",), lme_nd_b[:, 0] * r),
            "forced_conversion_needed": ag(forced_conv),
            "total_base": ag(equity_b),
            "group_base": agg(group_base),
            "group_initial": agg(group_init),
            "group_maintenance": agg(group_maint),
            "group_available": agg(group_base - group_init),
            "group_withdrawable": agg(group_w),
            "transfer_test_met": agg(trans_met),
            "balance": agc(balance),
            "currency_exchange_initial": agc(lines["exchange_initial"]),
            "currency_initial": agc(lines["initial"]),
            "currency_withdrawable": agc(ccy_w),
            "conversion_test_met": agc(conv_met),
            "cash": (("account", "currency_group", "currency"), money["cash"]),
            "fx_base": (("currency",), usd),
        },
        coords=coords,
        attrs={
            "method": "account",
            "currency": sc.currency,
            "base_currency": params.base_currency,
            "scenario": sc.name,
            "timezone": params.timezone,
            "calendar": params.calendar,
            "conversion_point": _point_str(conv_point),
            "liquidation_point": _point_str(liq_point),
        },
    )
    for name, part in by_source.items():
        ds[f"initial_{name}"] = ag((part["initial"] * u4).sum(axis=(1, 2)) * r)
    ds = ds.merge(movements).merge(liquidation).merge(interest).merge(elig)
    for k, v in conv_summary.items():
        ds[k] = ("account", v)
    for k, v in liq_summary.items():
        ds[k] = ("account", v)
    if stocks is not None:
        ds = ds.merge(stocks)
    _describe(ds, sc.currency, params.base_currency)
    return ds


def _point_str(point: dict[str, int]) -> str:
    return ", ".join(f"{d}={i}" for d, i in point.items())


def _decision_point(ctx, inputs, gd, gshape, state, *, kind: str, step: Any = None) -> dict[str, int]:
    """Grid point of a plan: base point of the what-if dims, the chosen step and path (``step``:
    given, e.g. the whole book's first step in forced liquidation for a chunk of it)."""
    if not gd:
        return {}
    shell = xr.Dataset(coords=_grid_coords(inputs, gd))
    point = base_grid_point(shell, [d for d in gd if d not in ("step", "path")])
    d = ctx.params.decision
    if "path" in gd:
        n_path = gshape[gd.index("path")]
        if d.path_index >= n_path:
            raise InputError(
                f"account.decision.path_index {d.path_index} is beyond the {n_path} paths",
                file=ctx.file,
                key_path="account.decision.path_index",
            )
        point["path"] = d.path_index
    if "step" in gd:
        n_s = gshape[gd.index("step")]
        choice = d.settlement_step if kind == "settlement" else d.liquidation_step
        if step is not None:
            step = int(step)
        elif choice == "last":
            step = n_s - 1
        elif choice == "first":
            st = state.reshape((state.shape[0], *gshape))
            idx = tuple(point.get(x, slice(None)) if x != "step" else slice(None) for x in gd)
            along = st[(slice(None), *idx)]  # (A, step)
            hit = np.flatnonzero((along == K.FORCED_LIQUIDATION).any(axis=0))
            step = int(hit[0]) if hit.size else n_s - 1
        else:
            step = int(choice) % n_s if -n_s <= int(choice) < n_s else -1
            if step < 0:
                raise InputError(
                    f"account.decision step {choice} is beyond the {n_s} steps",
                    file=ctx.file,
                    key_path="account.decision",
                )
        point["step"] = step
    return {dname: point[dname] for dname in gd}


def _flat_index(point: dict[str, int], gd: list[str], gshape) -> int:
    if not gd:
        return 0
    return int(np.ravel_multi_index(tuple(point[d] for d in gd), gshape))


# ----------------------------------------------------------------------------------------------------
# forced conversion plan
# ----------------------------------------------------------------------------------------------------


def _conversion_plans(ctx: _Ctx, balance, lines, point, gd, gshape):
    n_a = len(ctx.accounts)
    j = _flat_index(point, gd, gshape)
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
        client = []
        if funds is not None:
            for m in funds.instructions:
                c = ctx.ccys.index(m.currency)
                d = ctx.ccys.index(m.to_currency or m.currency)
                client.append(
                    K.Movement(
                        m.kind,
                        m.amount,
                        c,
                        _GROUP_INDEX[m.from_group],
                        _GROUP_INDEX[m.to_group],
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


# ----------------------------------------------------------------------------------------------------
# forced liquidation plan
# ----------------------------------------------------------------------------------------------------


def _futures_initial(ctx, inputs_pt, pk, q, pa, n_a, engine) -> np.ndarray:
    """Broker initial [base] of SPAN and exchange-rule positions per (virtual) account, at one point."""
    rule = ctx.k_source[ctx.local[pk]] == RULE
    lines = _add(
        _rule_lines(ctx, inputs_pt, pk[rule], q[rule], pa[rule], n_a),
        _span_lines(ctx, inputs_pt, pk[~rule], q[~rule], pa[~rule], n_a, engine),
    )
    return (lines["initial"][..., 0] * ctx.usd[None, None, :]).sum(axis=(1, 2))


def _liquidation_plans(ctx, inputs, point, gd, gshape, state, equity_b, init_b, lines, by_source, pv, engine):
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
    j = _flat_index(point, gd, gshape)
    usd = ctx.usd
    book = inputs.book
    pk_all = book["contract_index"].values
    q0 = book["quantity"].values.astype(float)
    pa_all = ctx.book_acct
    n_p = pk_all.size
    p = ctx.params.liquidation
    st = state[:, j]
    summary = {
        "liquidation_needed": st == K.FORCED_LIQUIDATION,
        "liquidation_complete": np.ones(n_a, dtype=bool),
        "liquidation_fees": np.zeros(n_a),
        "liquidation_cash": np.zeros(n_a),
        "liquidation_realised_pnl": np.zeros(n_a),
        "liquidation_contracts": np.zeros(n_a),
        "available_after_liquidation": (equity_b[:, j] - init_b[:, j]),
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
    pt = _at_point(inputs, point)
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
    base_pt = _base_inputs(inputs)
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
    r = float(ctx.sc.fx_rate(ctx.params.base_currency, key_path="account.base_currency"))
    liq = accts
    summary["liquidation_complete"][liq] = avail[liq] >= -tol * np.maximum(np.abs(equity_pt[liq]), 1.0)
    summary["liquidation_fees"] = fees * r
    summary["liquidation_cash"] = cash * r
    summary["liquidation_realised_pnl"] = np.bincount(pa_all, weights=closed * pnl_per, minlength=n_a) * r
    summary["liquidation_contracts"] = np.bincount(pa_all, weights=closed, minlength=n_a)
    summary["available_after_liquidation"] = (
        np.where(np.isin(np.arange(n_a), liq), avail, summary["available_after_liquidation"]) * r
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


# ----------------------------------------------------------------------------------------------------
# interest
# ----------------------------------------------------------------------------------------------------


def _tier_rates(ctx: _Ctx, tiers, ccy_needed: np.ndarray, kind: str, floor: bool) -> np.ndarray:
    """Rates (C, T) [decimal per year] of a tier table; a spread needs the currency's benchmark."""
    ip = ctx.params.interest
    C = len(ctx.ccys)
    rates = np.zeros((C, len(tiers)))
    for t, tier in enumerate(tiers):  # per tier definition
        for c, name in enumerate(ctx.ccys):  # per currency
            if tier.rate is not None:
                rates[c, t] = tier.rate
            elif name in ip.benchmark:
                rates[c, t] = ip.benchmark[name] + tier.spread
            elif ccy_needed[c]:
                raise InputError(
                    f"no benchmark rate for {name} (needed by the {kind} tiers); add account.interest.benchmark.{name}",
                    file=ctx.file,
                    key_path=("account", "interest", "benchmark"),
                )
            else:
                rates[c, t] = np.nan
    return np.maximum(rates, 0.0) if floor else rates


def _interest(ctx: _Ctx, inputs: Inputs, money, base_level: np.ndarray) -> xr.Dataset:
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
        rates = _tier_rates(ctx, tiers, need(amount), key.replace("_interest", ""), floor)
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


# ----------------------------------------------------------------------------------------------------
# eligibility
# ----------------------------------------------------------------------------------------------------


def _ready_market(ctx: _Ctx, inputs: Inputs) -> xr.Dataset | None:
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
            sc.market[u].price * _usd_rate(sc, sc.market[u].currency or sc.currency, "USD", "market")
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
    hol = _holidays_for(ctx, rp.calendar, y - 2, y + 1, "account.ready_market.calendar")
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


def _eligibility(ctx: _Ctx, inputs: Inputs, equity_b: np.ndarray, gd, gshape) -> xr.Dataset:
    """Account opening / activation, product vs investor class, position limits and reporting levels."""
    sc, ep = ctx.sc, ctx.params.eligibility
    n_a = len(ctx.accounts)
    base_j = _flat_index(
        base_grid_point(xr.Dataset(coords=_grid_coords(inputs, gd)), gd) if gd else {}, gd, gshape
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
                v * _usd_rate(sc, c, "USD", f"account.accounts.{name}.opening_assets")
                for c, v in f.opening_assets.items()
            )
        if f.deposits is not None:
            activation[a] = sum(
                d.amount * _usd_rate(sc, d.currency, "USD", f"account.accounts.{name}.deposits")
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
                np.array([_SOURCE_NAMES[s] for s in ctx.pos_source], dtype=object),
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


# ----------------------------------------------------------------------------------------------------
# attrs, JSON and table
# ----------------------------------------------------------------------------------------------------

_DESCRIPTIONS = {
    "equity": "cash + LME profits + futures / CFD variation + stock value; option floating profit and value excluded",
    "initial": "broker initial margin: exchange initial x (1 + mark-up), never below maintenance",
    "maintenance": "broker maintenance margin: exchange maintenance x (1 + mark-up)",
    "exchange_initial": "exchange (or upstream broker) initial margin",
    "exchange_maintenance": "exchange (or upstream broker) maintenance margin",
    "risk_ratio": "general risk ratio: initial / equity (1 = 100 %); inf when equity <= 0",
    "maintenance_risk_ratio": "maintenance / equity (1 = 100 %); inf when equity <= 0",
    "state": "0 normal, 1 margin call, 2 forced liquidation",
    "call_time": "time of the step that raised the outstanding call (local time)",
    "deadline": "margin call: 16:00 same or next business day; forced liquidation: immediate (local time)",
    "overdue": "a margin call outstanding after its deadline",
    "available_funds": "equity - initial",
    "excess_liquidity": "equity - maintenance",
    "withdrawable": "min(settled funds, equity - LME profits not due) - initial x (1 + buffer), >= 0",
    "option_value_excluded": "value of the options held (not counted in equity)",
    "group_base": "group base: sum of its currencies at the FX rates",
    "balance": "money per currency group and currency (cash, LME profits, variation, stock value)",
    "currency_exchange_initial": "initial margin required in the currency by the exchange / upstream broker",
    "conversion_test_met": "balance >= the exchange initial margin required in the currency",
    "transfer_test_met": "group base >= the broker's initial margin of the group",
}


def _describe(ds: xr.Dataset, currency: str, base: str) -> None:
    for name, text in _DESCRIPTIONS.items():
        if name in ds:
            ds[name].attrs["description"] = text
    for name in (
        "equity",
        "initial",
        "maintenance",
        "exchange_initial",
        "exchange_maintenance",
        "available_funds",
        "excess_liquidity",
        "withdrawable",
        "option_value_excluded",
    ):
        ds[name].attrs["units"] = currency
    for name in (
        "total_base",
        "group_base",
        "group_initial",
        "group_maintenance",
        "group_available",
        "group_withdrawable",
        "net_interest_base",
    ):
        ds[name].attrs["units"] = base
    for name in (
        "balance",
        "currency_exchange_initial",
        "currency_initial",
        "currency_withdrawable",
        "settled_balance",
        "short_credit",
        "credit_interest",
        "debit_interest",
        "short_credit_interest",
        "net_interest",
        "net_interest_daily",
    ):
        ds[name].attrs["units"] = "currency of the `currency` coordinate (per year for interest)"
    for name in ("risk_ratio", "maintenance_risk_ratio"):
        ds[name].attrs["units"] = "1"


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
        mv = np.flatnonzero(ds["movement_account"].values == acct) if "movement" in ds.dims else []
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
            k.removeprefix("initial_"): to_plain(d[k], gd) for k in ds.data_vars if k.startswith("initial_")
        }
        obj["conversion_plan"] = {
            "point": ds.attrs["conversion_point"],
            "rule": str(d["conversion_rule"].values),
            "complete": bool(d["conversion_complete"].values),
            "shortfall_before": float(d["conversion_shortfall_before"].values),
            "shortfall_after": float(d["conversion_shortfall_after"].values),
            "currencies_converted": [c for c in str(d["currencies_converted"].values).split(",") if c],
        }
        rows = np.flatnonzero(ds["liquidation_account"].values == acct) if "liquidation" in ds.dims else []
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
    gd = [x for x in d["equity"].dims]
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
    for p in pos:
        notes = []
        if bool(ds["over_position_limit"].values[p]):
            notes.append("OVER POSITION LIMIT")
        if bool(ds["reportable"].values[p]):
            notes.append("reportable (large open position)")
        if int(ds["product_allowed"].values[p]) == 0:
            notes.append("product class not allowed for the investor class")
        if notes:
            flags.append(f"{ds['position_contract'].values[p]}: " + ", ".join(notes))
    if flags:
        lines.append("")
        lines.append("eligibility: " + "; ".join(flags))
    return "\n".join(lines)
