"""Strategy-based margin (Regulation T, FINRA Rule 4210, the CBOE Margin Manual) with optimal pairing.

For stocks, ETFs and equity and index options on a spot (``option_on: spot``); futures, options on
futures and CFDs are left to SPAN and the CFD method, as in portfolio margin.

- :mod:`.rules`: each position alone and every strategy two positions (or a stock and two
  options) of one account and underlying can form, as arrays;
- :mod:`.pairing`: the least requirement over every grouping, an integer program per account
  solved by HiGHS (``scipy.optimize.milp``), many accounts per call;
- :mod:`.report`: the JSON (with the strategies chosen and the comparison with portfolio
  margin) and the table.

``initial`` and ``maintenance`` are each the least over the groupings (two programs);
``opening_deposit`` = initial - proceeds of the short options. With
``strategy.comparison.enabled`` (the default), portfolio margin runs on the same book through the
registry and a ``comparison`` block says which margin the account qualifies for and which to choose.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ...kernels import pricing
from ...model import GRID_DIMS, Inputs, flat_grid
from ...outputs import describe
from ...params.strategy import StrategyParams
from ...registry import REGISTRY, ChunkLayout, MethodSpec
from . import report
from .outputs import OUTPUTS
from .pairing import solve
from .rules import RULES, SINGLE_RULES, STOCK, Book, Candidates, candidates, standalone

__all__ = ["StrategyParams", "OUTPUTS", "RULES", "SINGLE_RULES", "SPEC", "strategy_margin", "strategy_book", "LEG_ROWS"]

#: Rows of the ``strategy`` dim declared per position of a chunk (two optima, each at most a row
#: per position left alone and a strategy per position).
LEG_ROWS = 4

_BROAD = ("broad_index", "broad_index_high_cap")


def _grid(inputs: Inputs) -> tuple[list[str], tuple[int, ...]]:
    gd = list(inputs.grid_dims)
    shape = tuple(int(inputs.market.sizes.get(d) or inputs.grid.sizes[d]) for d in gd)
    return gd, shape


def strategy_book(inputs: Inputs, params: StrategyParams, engine: pricing.Engine = "auto") -> Book:
    """The method's positions, netted per (account, contract), with their market per grid point."""
    c = inputs.contracts
    book = inputs.book
    mask = (c["type"].values == "stock") | (c["is_option"].values & (c["model"].values == pricing.BSM))
    ck = book["contract_index"].values
    sel = np.flatnonzero(mask[ck])
    n_k = c.sizes["contract"]
    key = book["account_index"].values[sel].astype(np.int64) * n_k + ck[sel]
    uniq, inv = np.unique(key, return_inverse=True)
    qty = np.bincount(inv, weights=book["quantity"].values[sel].astype(float), minlength=uniq.size)
    keep = qty != 0
    uniq, qty = uniq[keep], qty[keep]
    acct, k = uniq // n_k, uniq % n_k
    held, local = np.unique(k, return_inverse=True)
    cs = c.isel(contract=held)
    gd, gshape = _grid(inputs)
    level = flat_grid(inputs.underlying_level(cs), ["contract"], gd, gshape)
    prem = flat_grid(inputs.option_premium(cs, engine=engine), ["contract"], gd, gshape)
    fx_da = inputs.market["fx"].drop_vars("underlying").isel(underlying=cs["underlying_index"])
    fx = flat_grid(fx_da, ["contract"], gd, gshape)
    sc = inputs.scenario
    und_names = [str(u) for u in inputs.market["underlying"].values.tolist()]
    broad_u = np.array([(sc.market.get(u) is not None and sc.market[u].product_class in _BROAD) for u in und_names])
    no_loan_u = np.isin(np.asarray(und_names, dtype=object), np.asarray(params.stock.no_loan_value, dtype=object))
    und = cs["underlying_index"].values[local].astype(np.int64)
    kind = np.where(cs["type"].values == "stock", STOCK, np.where(cs["is_call"].values, 1, 2))[local]
    as_of = np.datetime64(sc.as_of_date, "D")
    days = (cs["expiry"].values.astype("datetime64[D]") - as_of).astype("timedelta64[D]").astype(float)
    names = np.asarray(inputs.accounts, dtype=object).astype(str)
    rank = np.argsort(np.argsort(names, kind="stable"), kind="stable")
    return Book(
        rank=rank[acct].astype(np.int64),
        account=acct.astype(np.int64),
        contract=held[local].astype(np.int64),
        underlying=und,
        quantity=qty,
        kind=kind.astype(np.int64),
        multiplier=cs["multiplier"].values[local].astype(float),
        strike=cs["strike"].values[local].astype(float),
        expiry_days=np.nan_to_num(days[local], nan=0.0),
        t=np.nan_to_num(cs["t"].values[local].astype(float), nan=0.0),
        broad=broad_u[und] if und.size else np.zeros(0, bool),
        no_loan=(no_loan_u[und] & (kind == STOCK)) if und.size else np.zeros(0, bool),
        level=level[local],
        premium=prem[local],
        fx=fx[local],
    )


def _optimum(cands: Candidates, total: np.ndarray, alone: np.ndarray, b: Book, n_a: int, params: StrategyParams):
    """The least requirement per (account, grid point) and the units taken."""
    saving = cands.saving(total, alone)
    block = b.rank[cands.legs[:, 0]] if cands.size else np.zeros(0, np.int64)
    cand, g, units = solve(
        saving,
        cands.legs,
        cands.coef,
        block,
        b.quantity,
        batch_variables=params.batch_variables,
        relaxation_first=params.relaxation_first,
        tie_break=params.tie_break,
    )
    n_g = alone.shape[1]
    base = np.zeros((n_a, n_g))
    flat = b.account[:, None] * n_g + np.arange(n_g)[None, :]
    base += np.bincount(flat.ravel(), (np.abs(b.quantity)[:, None] * alone).ravel(), minlength=n_a * n_g).reshape(
        n_a, n_g
    )
    unpaired = base.copy()
    if cand.size:
        at = b.account[cands.legs[cand, 0]] * n_g + g
        base += np.bincount(at, saving[cand, g] * units, minlength=n_a * n_g).reshape(n_a, n_g)
    return base, unpaired, (cand, g, units)


def strategy_margin(
    inputs: Inputs, params: StrategyParams | None = None, *, engine: pricing.Engine = "auto"
) -> xr.Dataset:
    """Strategy-based margin of every account of the book, the positions paired optimally.

    Parameters
    ----------
    inputs
        The data model (:func:`marginsim.build_inputs`), in memory.
    params
        Method parameters; default: the scenario file's ``strategy`` section, else the defaults.
    engine
        Pricing engine of the option premiums (``"numba"``, ``"numpy"``, ``"auto"``).

    Returns
    -------
    xarray.Dataset
        Amounts in the reporting currency [currency], per account and grid point (see
        :data:`OUTPUTS`): ``initial``, ``maintenance``, ``opening_deposit``, the unpaired
        requirements, market value, equity; with the comparison, portfolio margin's
        requirements, ``saving``, ``qualifies_for``, ``keeps_portfolio_margin``, ``choose``; and
        the strategies chosen at the base grid point (dim ``strategy``, legs along ``leg``).
    """
    inputs.require_in_memory("strategy_margin")
    sc = inputs.scenario
    params = params or sc.section("strategy") or StrategyParams()
    no_loan = _without_ready_market(inputs, engine)
    if no_loan:
        stock = params.stock.model_copy(update={"no_loan_value": sorted({*params.stock.no_loan_value, *no_loan})})
        params = params.model_copy(update={"stock": stock})
    b = strategy_book(inputs, params, engine)
    alone = standalone(b, params)
    cands = candidates(b, params, alone)
    accounts = np.asarray(inputs.accounts, dtype=object)
    n_a = accounts.size
    gd, gshape = _grid(inputs)
    n_g = int(np.prod(gshape)) if gshape else 1
    ini, ini_alone, ini_sol = _optimum(cands, cands.initial, alone.initial, b, n_a, params)
    mnt, mnt_alone, mnt_sol = _optimum(cands, cands.maintenance, alone.maintenance, b, n_a, params)

    def per_account(x: np.ndarray) -> np.ndarray:
        return np.bincount(
            (b.account[:, None] * n_g + np.arange(n_g)).ravel(), x.ravel(), minlength=n_a * n_g
        ).reshape(n_a, n_g)

    absq = np.abs(b.quantity)[:, None]
    proceeds = per_account(absq * alone.proceeds)
    value = per_account(absq * alone.value)
    cash = _per_name(params.cash, accounts)
    equity = cash[:, None] + value
    shape = (n_a, *gshape)
    dims = ("account", *gd)

    def var(x: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
        return dims, np.asarray(x, dtype=float).reshape(shape)

    data = {
        "initial": var(ini),
        "maintenance": var(mnt),
        "opening_deposit": var(ini - proceeds),
        "initial_unpaired": var(ini_alone),
        "maintenance_unpaired": var(mnt_alone),
        "short_option_proceeds": var(proceeds),
        "market_value": var(value),
        "equity": var(equity),
    }
    coords: dict = {"account": accounts}
    for d in gd:
        src = inputs.market if d in inputs.market.coords else inputs.grid
        coords[d] = src[d].values
    ds = xr.Dataset(data, coords=coords, attrs={"method": "strategy", "currency": sc.currency})
    if params.comparison.enabled and "portfolio_margin" in REGISTRY:
        ds = _compare(ds, inputs, params, engine)
    ds = ds.merge(_rows(b, cands, alone, ini_sol, mnt_sol, accounts, inputs, gd, gshape))
    ds.attrs.update(method="strategy", currency=sc.currency)
    return describe(ds, OUTPUTS)


def _without_ready_market(inputs: Inputs, engine: pricing.Engine) -> list[str]:
    """Foreign stocks the account layer finds without a ready market (the seed's rule), when the
    file has an ``account`` section: run through the registry, its ``ready_market`` flags."""
    if inputs.scenario.section("account") is None or "account" not in REGISTRY:
        return []
    acc = REGISTRY["account"].run(inputs, engine=engine)
    if "ready_market" not in acc or "stock" not in acc.dims:
        return []
    ready = np.asarray(acc["ready_market"].values, dtype=bool)
    return [str(u) for u in np.asarray(acc["stock"].values)[~ready].tolist()]


def _compare(ds: xr.Dataset, inputs: Inputs, params: StrategyParams, engine: pricing.Engine) -> xr.Dataset:
    """Portfolio margin on the same book (through the registry) and the choice between the two."""
    pm = REGISTRY["portfolio_margin"].run(inputs, engine=engine)
    pm_i = pm["initial"].reindex(account=ds["account"].values, fill_value=0.0)
    pm_m = pm["maintenance"].reindex(account=ds["account"].values, fill_value=0.0)
    cmp = params.comparison
    eq = ds["equity"]
    known = eq.notnull()
    qualifies = xr.where(known, xr.where(eq >= cmp.opening_equity, "portfolio_margin", "strategy"), "")
    keeps = xr.where(known, (eq >= cmp.minimum_equity).astype(float), np.nan)
    saving = ds["initial"] - pm_i
    pm_ok = (qualifies == "portfolio_margin") | ~known
    choose = xr.where((saving > 0) & pm_ok, "portfolio_margin", "strategy")
    return ds.assign(
        pm_initial=pm_i.transpose(*ds["initial"].dims),
        pm_maintenance=pm_m.transpose(*ds["initial"].dims),
        saving=saving,
        qualifies_for=qualifies.astype(str).transpose(*ds["initial"].dims),
        keeps_portfolio_margin=keeps.transpose(*ds["initial"].dims),
        choose=choose.astype(str).transpose(*ds["initial"].dims),
    )


def _rows(b, cands, alone, ini_sol, mnt_sol, accounts, inputs, gd, gshape) -> xr.Dataset:
    """The strategies chosen at the base grid point and the positions left alone: one row each."""
    g0 = 0
    if gd:
        point = report.base_point(inputs, gd)
        g0 = int(np.ravel_multi_index(tuple(point[d] for d in gd), gshape))
    names = np.asarray(inputs.contracts["contract"].values, dtype=object)
    parts = []
    for basis, (cand, g, units) in (("initial", ini_sol), ("maintenance", mnt_sol)):  # the two optima
        at = g == g0
        cand, units = cand[at], units[at]
        legs = cands.legs[cand]
        coef = cands.coef[cand]
        used = np.zeros(b.size)
        has = legs >= 0
        np.add.at(used, legs[has], (coef * units[:, None])[has])
        left = np.abs(b.quantity) - used
        lone = np.flatnonzero(left > 1e-9)
        sign = np.sign(b.quantity)
        q_legs = np.where(has, coef * units[:, None] * sign[np.where(has, legs, 0)], 0.0)
        c_legs = np.where(has, names[b.contract[np.where(has, legs, 0)]], "")
        lone_legs = np.full((lone.size, 3), "", dtype=object)
        lone_legs[:, 0] = names[b.contract[lone]]
        lone_q = np.zeros((lone.size, 3))
        lone_q[:, 0] = left[lone] * sign[lone]
        acct = np.r_[b.account[legs[:, 0]] if cand.size else np.zeros(0, np.int64), b.account[lone]].astype(np.int64)
        rule = np.r_[np.asarray(RULES, dtype=object)[cands.rule[cand]], np.asarray(SINGLE_RULES, dtype=object)[alone.rule[lone]]]
        parts.append(
            dict(
                acct=acct,
                basis=np.full(acct.size, basis, dtype=object),
                rule=rule,
                units=np.r_[units, left[lone]],
                legs=np.concatenate([c_legs.astype(object), lone_legs]),
                qty=np.concatenate([q_legs, lone_q]),
                ini=np.r_[cands.initial[cand, g0] * units, alone.initial[lone, g0] * left[lone]],
                mnt=np.r_[cands.maintenance[cand, g0] * units, alone.maintenance[lone, g0] * left[lone]],
            )
        )
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    names_sorted = np.asarray(accounts, dtype=object).astype(str)
    order = np.argsort(names_sorted[cat["acct"]] if cat["acct"].size else cat["acct"], kind="stable")  # by account name
    cat = {k: v[order] for k, v in cat.items()}
    return xr.Dataset(
        {
            "strategy_account": ("strategy", accounts[cat["acct"]].astype(object) if accounts.size else cat["acct"].astype(object)),
            "strategy_basis": ("strategy", cat["basis"].astype(object)),
            "strategy_rule": ("strategy", cat["rule"].astype(object)),
            "strategy_units": ("strategy", cat["units"].astype(float)),
            "leg_contract": (("strategy", "leg"), cat["legs"].astype(object).reshape(-1, 3)),
            "leg_quantity": (("strategy", "leg"), cat["qty"].astype(float).reshape(-1, 3)),
            "strategy_initial": ("strategy", cat["ini"].astype(float)),
            "strategy_maintenance": ("strategy", cat["mnt"].astype(float)),
        }
    )


def _per_name(values: dict[str, float], names: np.ndarray) -> np.ndarray:
    """``values[name]`` for each of ``names`` (NaN where absent), by a sorted lookup."""
    out = np.full(names.size, np.nan)
    if not values or names.size == 0:
        return out
    keys = np.asarray(list(values), dtype=object).astype(str)
    vals = np.asarray(list(values.values()), dtype=float)
    order = np.argsort(keys)
    keys, vals = keys[order], vals[order]
    want = names.astype(str)
    at = np.minimum(np.searchsorted(keys, want), keys.size - 1)
    hit = keys[at] == want
    out[hit] = vals[at[hit]]
    return out


def strategy_chunk_layout(inputs: Inputs) -> ChunkLayout:
    """Chunks of accounts pad the ``strategy`` rows to :data:`LEG_ROWS` per position."""
    return ChunkLayout(ragged={"strategy": ("position", LEG_ROWS, "strategy_account")})


#: The method's registration (:func:`marginsim.registry.register_method` in :mod:`marginsim.methods`).
#: The strategies chosen are at the base grid point: split along accounts only.
SPEC = MethodSpec(
    "strategy",
    strategy_margin,
    StrategyParams,
    to_dict=report.to_dict,
    table=report.table,
    unsplit_dims=frozenset(GRID_DIMS),
    outputs=OUTPUTS,
    chunk_layout=strategy_chunk_layout,
)
