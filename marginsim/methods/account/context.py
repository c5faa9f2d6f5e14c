"""The account layer's context: the accounts, currencies and held products of one run, and the grid.

:func:`build_ctx` reads the ``account`` section once per run into per-contract arrays (currency
group, margin source, exchange-rule margins, mark-ups, fees, limits) so that the other modules of
the layer work on arrays; the grid helpers give a run's grid dims and shape, flatten a variable to
``(lead dims..., grid point)`` and pick the decision point of the plans.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import xarray as xr

from ...errors import InputError
from ...kernels import account as K
from ...model import Inputs, Universe, book_from_arrays, flat_grid
from ...outputs import base_grid_point
from ...params.account import CURRENCY_GROUPS, AccountParams, ProductParams
from ...params.span import SpanParams
from ...scenario import ScenarioFile

__all__ = [
    "G",
    "GROUP_INDEX",
    "SPAN",
    "RULE",
    "PM",
    "CFD",
    "NO_LOAN",
    "SOURCE_NAMES",
    "LINES",
    "Ctx",
    "Shell",
    "build_ctx",
    "usd_rate",
    "grid_shape",
    "flat",
    "grid_coords",
    "at_point",
    "base_inputs",
    "sub_inputs",
    "decision_point",
    "flat_index",
    "point_str",
]

#: Number of currency groups.
G = len(CURRENCY_GROUPS)
#: Currency group name -> index along the ``currency_group`` dim.
GROUP_INDEX = {g: i for i, g in enumerate(CURRENCY_GROUPS)}

#: Sources of a position's exchange requirement (codes), and their names.
SPAN, RULE, PM, CFD, NO_LOAN = 0, 1, 2, 3, 4
SOURCE_NAMES = ("span", "exchange_rule", "portfolio_margin", "cfd", "no_loan_value")
METHOD_SOURCE = {"span": SPAN, "portfolio_margin": PM, "cfd": CFD}
#: The requirement lines of every source: exchange initial and maintenance, broker initial and maintenance.
LINES = ("exchange_initial", "exchange_maintenance", "initial", "maintenance")


@dataclass
class Ctx:
    """The account layer's view of one run: accounts, currencies [FX: base-currency and
    reporting-currency value of one unit] and, per held contract (``k_*``), its currency group,
    margin source, exchange-rule margins, mark-ups [decimal], fee [contract currency], class,
    limits [contracts] and definition; per book position (``pos_*``), its source and contract."""

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


def usd_rate(sc: ScenarioFile, ccy: str, base: str, key_path: str) -> float:
    """Value of one unit of ``ccy`` in ``base`` (the scenario's FX rates) [base per unit]."""
    return sc.fx_rate(ccy, key_path=key_path) / sc.fx_rate(base, key_path="account.base_currency")


def build_ctx(inputs: Inputs, params: AccountParams, extra_ccys: set[str]) -> Ctx:
    """Read the ``account`` section against the inputs: the run's :class:`Ctx`.

    ``extra_ccys``: currencies of given requirements. Raises :class:`~marginsim.errors.InputError`
    for an unknown product key or a currency without an FX rate.
    """
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
        k_group[i] = GROUP_INDEX[grp]
        if p.margin is not None:
            k_source[i] = RULE
            k_rule_fixed[i] = p.margin.type == "fixed"
            k_rule_init[i] = p.margin.initial
            k_rule_maint[i] = p.margin.initial if p.margin.maintenance is None else p.margin.maintenance
            if p.margin.type == "fixed" and p.margin.currency is not None:
                rule_ccy[i] = p.margin.currency
        else:
            k_source[i] = METHOD_SOURCE[params.margin_source[ctype[i]]]
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
    for k in np.flatnonzero(k_source == SPAN):
        ccp = span_params.combined_commodities.get(groups[k])
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
    usd = np.array([usd_rate(sc, c, params.base_currency, f"account: currency {c}") for c in ccys_l])
    rep = np.array([sc.fx_rate(c, key_path=f"account: currency {c}") for c in ccys_l])
    cidx = {c: i for i, c in enumerate(ccys_l)}
    k_ccy = np.array([cidx[c] for c in cccy], dtype=np.int64)
    k_rule_ccy = np.array([cidx[c] for c in rule_ccy], dtype=np.int64)
    # liquidation fee: per product, else the house default converted to the contract's currency
    k_fee = np.where(np.isnan(k_fee), params.liquidation.fee_per_contract_usd / usd[k_ccy], k_fee)

    # per position: stocks without a ready market (long) lose their loan value
    pos_k = local[book["contract_index"].values]
    pos_source = k_source[pos_k] if pos_k.size else np.zeros(0, dtype=np.int64)
    return Ctx(
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



def grid_shape(inputs: Inputs) -> tuple[list[str], tuple[int, ...]]:
    """The grid dims present, in result order, and their sizes."""
    gd = list(inputs.grid_dims)
    shape = tuple(int(inputs.market.sizes[d] if d in inputs.market.sizes else inputs.grid.sizes[d]) for d in gd)
    return gd, shape


def flat(da: xr.DataArray, lead: list[str], gd: list[str], gshape: tuple[int, ...]) -> np.ndarray:
    """Numpy array with axes (lead..., grid flattened); missing grid dims are broadcast."""
    extra = [d for d in da.dims if d not in lead and d not in gd]
    if extra:
        raise InputError(f"a requirement has dims {extra} that are not grid dims ({gd})")
    return flat_grid(da, lead, gd, gshape)


def grid_coords(inputs: Inputs, gd: list[str]) -> dict[str, np.ndarray]:
    """The coordinate values of each grid dim (from the market, else the parameter grid)."""
    out = {}
    for d in gd:
        out[d] = inputs.market[d].values if d in inputs.market.coords else inputs.grid[d].values
    return out


def at_point(inputs: Inputs, point: dict[str, int]) -> Inputs:
    """The inputs at one grid point (market and parameter grid dims selected)."""
    m = {d: i for d, i in point.items() if d in inputs.market.dims}
    g = {d: i for d, i in point.items() if d in inputs.grid.dims}
    return dataclasses.replace(inputs, market=inputs.market.isel(m), grid=inputs.grid.isel(g))


def base_inputs(inputs: Inputs) -> Inputs:
    """The inputs at the base market (settlement prices, no grid)."""
    mk = inputs.market
    mk = mk.isel({d: 0 for d in inputs.grid_dims if d in mk.dims})
    mk = mk.drop_vars([v for v in ("shift_value", "vol_shift_value") if v in mk], errors="ignore")
    mk = mk.assign(price=mk["base_price"])
    mk = mk.drop_vars([d for d in inputs.grid_dims if d in mk.coords], errors="ignore")
    return dataclasses.replace(inputs, market=mk, grid=xr.Dataset())


def sub_inputs(inputs: Inputs, rows: np.ndarray) -> Inputs:
    """Inputs whose book is the given rows of the book (the positions another method margins).

    The rows keep their accounts; the inputs' :attr:`~marginsim.model.Inputs.universe` is the
    whole book's (a chunk of a larger book) or, for a whole book, the rows' contracts and every
    account of the book.
    """
    book = inputs.book
    k = book["contract_index"].values[rows]
    q = book["quantity"].values[rows]
    a = book["account_name"].values[book["account_index"].values[rows]]
    new_book = book_from_arrays(
        inputs.contracts, contract=np.asarray(k, dtype=np.int64), quantity=q, account=a
    )
    sc = inputs.scenario
    if inputs.universe is not None:
        # a chunk of a larger book: the rows keep their position numbers (which index the scenario
        # file's positions) and the book's order data
        new_book = new_book.assign_coords(position=book["position"].values[rows])
        for name in ("open_price", "opened"):
            if name in book:
                new_book[name] = ("position", book[name].values[rows])
        return dataclasses.replace(inputs, book=new_book)
    if len(sc.position_table()) == book.sizes["position"]:
        sc = sc.with_position_rows(rows)
    # part of the whole book: its contracts, and every account of the book (a method's section may
    # name an account that holds none of these rows, e.g. portfolio_margin.cash)
    part = Universe(np.unique(np.asarray(k, dtype=np.int64)), inputs.book_accounts())
    return dataclasses.replace(inputs, book=new_book, scenario=sc, universe=part)


def point_str(point: dict[str, int]) -> str:
    """A grid point as text (``"step=3, path=0"``; ``""`` without grid dims): a result attr."""
    return ", ".join(f"{d}={i}" for d, i in point.items())


def decision_point(
    ctx: Ctx | Shell,
    inputs: Inputs,
    gd: list[str],
    gshape: tuple[int, ...],
    state: np.ndarray | None,
    *,
    kind: str,
    step: Any = None,
) -> dict[str, int]:
    """Grid point of a plan: base point of the what-if dims, the chosen step and path (``step``:
    given, e.g. the whole book's first step in forced liquidation for a chunk of it)."""
    if not gd:
        return {}
    shell = xr.Dataset(coords=grid_coords(inputs, gd))
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
            if state is None:
                raise ValueError("the first step in forced liquidation needs the states (or a given step)")
            st = state.reshape((state.shape[0], *gshape))
            idx: tuple[Any, ...] = tuple(point.get(x, slice(None)) if x != "step" else slice(None) for x in gd)
            along = st[(slice(None),) + idx]  # (A, step)
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


def flat_index(point: dict[str, int], gd: list[str], gshape: tuple[int, ...]) -> int:
    """Index of a grid point into the flattened grid (C order of ``gd``)."""
    if not gd:
        return 0
    return int(np.ravel_multi_index(tuple(point[d] for d in gd), gshape))




@dataclass
class Shell:
    """What :func:`decision_point` reads of a context (the chunk layout has no :class:`Ctx`)."""

    params: AccountParams
    file: str | None
