"""The CFD method (``spec/cfd.md``): ESMA / Central Bank of Ireland retail rules, along price paths.

An xarray wrapper over :mod:`marginsim.kernels.cfd`:

* **rates** per position: the retail leverage cap of the underlying's class (data:
  ``cfd.leverage``, ``cfd.major_currencies``, ``cfd.major_indices``), the broker's own
  volatility-based rate, and the applied initial ``max(broker initial, regulatory initial)`` and
  maintenance ``max(broker maintenance, close_out_fraction x applied initial)`` (retail;
  professional clients: the broker's rates, no caps);
* **funding**: initial margin from cash only (``cfd.accounts``: cash less the cash used for other
  products' initial margin; a margin loan leaves nothing), unrealised profit excluded, realised
  pnl is cash at once; initial and maintenance margin fixed at opening;
* **path simulation** over the grid dims ``step`` (``grid.path``) and ``path``
  (``grid.monte_carlo``), and any other grid dim: overnight financing (retail + 1 %), new orders
  checked against available cash, close-out of the most recent positions when equity falls below
  maintenance, negative balance protection with the written-off amount;
* **concentration margin** when CFD and stock positions are margined together.

Accounts, positions and grid points are array axes; the loop over steps runs in the kernel.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError
from ..kernels import cfd as K
from ..kernels.grouping import group_sum, membership
from ..model import Inputs
from ..params.cfd import CfdParams
from ..result import to_plain

__all__ = [
    "classify_underlying",
    "broker_rates",
    "applied_rates",
    "cfd_margin",
    "cfd_to_dict",
    "cfd_table",
]

_DAY = 86400.0
_ISO = frozenset(
    "USD EUR GBP JPY CHF CAD AUD NZD SEK NOK DKK PLN CZK HUF HKD SGD CNH CNY MXN ZAR TRY ILS RUB "
    "KRW INR BRL THB TWD SAR AED KWD QAR XAU XAG XPT XPD".split()
)
_PAIR = re.compile(r"^([A-Z]{3})[./\-_ ]?([A-Z]{3})$")
_METALS = {"XAG", "XPT", "XPD"}
_GOLD_NAMES = {"XAU", "GOLD"}


def _norm(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def classify_underlying(
    name: str,
    params: CfdParams,
    *,
    cfd_class: str | None = None,
    product_class: str | None = None,
) -> str:
    """The leverage class of an underlying.

    In order: ``cfd.underlyings.<name>.cfd_class``; the market entry's ``cfd_class`` (passed as
    ``cfd_class``); a currency pair (``EUR.USD``, ``EUR/USD``, ``EURUSD``): ``major_fx`` when both
    currencies are in ``params.major_currencies``, ``gold`` with XAU, ``commodity`` with another
    metal, else ``nonmajor_fx``; a name or alias of ``params.major_indices``: ``major_index``;
    ``XAU`` / ``GOLD``: ``gold``; an index ``product_class``: ``nonmajor_index``; else
    ``individual_equity`` (ESMA: "individual equities and other reference values").

    Parameters
    ----------
    name
        The underlying's key in ``market``.
    params
        The CFD parameters (tables of classes, major currencies and indices).
    cfd_class, product_class
        The market entry's ``cfd_class`` and ``product_class``, if any.

    Returns
    -------
    str
        A key of ``params.leverage``.
    """
    own = params.underlyings.get(name)
    if own is not None and own.cfd_class is not None:
        return own.cfd_class
    if cfd_class is not None:
        return cfd_class
    upper = name.upper().strip()
    m = _PAIR.match(upper)
    if m and m.group(1) in _ISO and m.group(2) in _ISO:
        pair = {m.group(1), m.group(2)}
        if "XAU" in pair:
            return "gold"
        if pair & _METALS:
            return "commodity"
        major = set(params.major_currencies)
        return "major_fx" if pair <= major else "nonmajor_fx"
    key = _norm(name)
    for index, aliases in params.major_indices.items():
        if key in {_norm(index), *(_norm(a) for a in aliases)}:
            return "major_index"
    if key in _GOLD_NAMES:
        return "gold"
    if product_class in ("broad_index_high_cap", "broad_index", "sector_index"):
        return "nonmajor_index"
    return "individual_equity"


def broker_rates(
    historical_vol: np.ndarray,
    maintenance: np.ndarray,
    initial: np.ndarray,
    *,
    z: float,
    horizon_days: float,
    minimum: float,
    initial_ratio: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The broker's own maintenance and initial rates.

    Parameters
    ----------
    historical_vol
        Historical vol [decimal per sqrt(year)]; NaN: none.
    maintenance, initial
        Given broker rates [fraction of notional]; NaN: not given.
    z, horizon_days, minimum
        The vol rule: ``max(minimum, z * vol * sqrt(horizon_days / 365))`` [fraction].
    initial_ratio
        Broker initial / maintenance (1.25) where the initial rate is not given.

    Returns
    -------
    (maintenance, initial)
        Rates [fraction of notional]; 0 where neither a rate nor a vol is given.
    """
    vol = np.asarray(historical_vol, dtype=float)
    from_vol = np.where(np.isnan(vol), 0.0, np.maximum(minimum, z * vol * np.sqrt(horizon_days / 365.0)))
    mm = np.where(np.isnan(maintenance), from_vol, maintenance)
    im = np.where(np.isnan(initial), initial_ratio * mm, initial)
    return mm, np.maximum(im, mm)


def applied_rates(
    regulatory_initial: np.ndarray,
    broker_maintenance: np.ndarray,
    broker_initial: np.ndarray,
    *,
    close_out_fraction: float,
    retail: np.ndarray | bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Applied initial and maintenance rates (``spec/cfd.md`` section 2).

    Retail: initial = ``max(broker initial, regulatory initial)``; maintenance =
    ``max(broker maintenance, close_out_fraction x applied initial)`` (the close-out level of the
    initial margin posted; with the 1.25 broker ratio this equals the spec's
    ``max(broker maintenance, 50 % of the regulatory initial)``). Professional: the broker's rates.

    Parameters
    ----------
    regulatory_initial
        1 / leverage cap [fraction of notional] (retail).
    broker_maintenance, broker_initial
        The broker's rates [fraction of notional].
    close_out_fraction
        Close-out level as a fraction of the initial margin (0.5).
    retail
        Whether the client is retail (bool or array).

    Returns
    -------
    (initial, maintenance)
        Applied rates [fraction of notional].
    """
    retail = np.asarray(retail, dtype=bool)
    reg = np.where(retail, regulatory_initial, 0.0)
    im = np.maximum(broker_initial, reg)
    mm = np.where(retail, np.maximum(broker_maintenance, close_out_fraction * im), broker_maintenance)
    return im, mm


def _days(t: dt.datetime | dt.date) -> float:
    """Days since 1970-01-01 (UTC for times with a zone; naive times as given)."""
    if isinstance(t, dt.datetime):
        if t.tzinfo is not None:
            t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return (t - dt.datetime(1970, 1, 1)).total_seconds() / _DAY
    return float((t - dt.date(1970, 1, 1)).days)


def _money(value: float | dict[str, float], sc, key_path: str) -> float:
    if isinstance(value, dict):
        return float(sum(v * sc.fx_rate(c, key_path=f"{key_path}.{c}") for c, v in value.items()))
    return float(value)


def cfd_margin(inputs: Inputs, params: CfdParams | None = None, *, engine: K.Engine = "auto") -> xr.Dataset:
    """CFD margin, close-out and negative balance protection of every account, along the grid.

    Parameters
    ----------
    inputs
        The data model (:func:`marginsim.model.build_inputs`).
    params
        CFD parameters; default: the scenario file's ``cfd`` section.
    engine
        Path kernel engine: ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    xarray.Dataset
        Dims ``account``, the market grid dims (``step``, ``path``, ``shift``...), ``position``
        (the CFD rows of the book) and ``underlying``. Per account and grid point, in the
        reporting currency: ``cash``, ``equity``, ``unrealised``, ``initial``, ``maintenance``,
        ``available_cash``, ``deficiency`` (on arrival at the step, before its close-out);
        ``financing`` (charged on arrival), ``realised``, ``written_off``, ``cash_after``,
        ``equity_after`` (after the step's close-out and protection); ``open_positions``,
        ``closed_positions`` (cumulative); concentration: ``concentration_loss``,
        ``standard_requirement``, ``combined_maintenance``, ``concentration_binding``. Per
        position: class, rates, ``open_price``, ``position_initial``, ``position_maintenance``
        (fixed at opening), ``close_step`` (-1: not closed), ``position_realised``, ``rejected``.
        With a ``path`` dim: ``close_out_probability``, ``written_off_mean``, ``written_off_q99``,
        ``written_off_max`` over paths. Lazy (dask-backed) inputs are refused: margin them
        with :func:`marginsim.margin`, which runs the method chunk by chunk.
    """
    inputs.require_in_memory("cfd_margin")
    sc = inputs.scenario
    file = sc.file
    params = params or sc.cfd or CfdParams()
    book, contracts, market = inputs.book, inputs.contracts, inputs.market

    # -- accounts and positions -----------------------------------------------------------------
    # funded accounts without positions come after the book's (in one chunk only of a chunked book)
    in_book = inputs.book_accounts()
    extra = inputs.universe is None or inputs.universe.extra_accounts
    acct_names = list(inputs.accounts) + [a for a in params.accounts if extra and a not in in_book]
    n_a = len(acct_names)
    ci = book["contract_index"].values
    ctype = contracts["type"].values[ci] if ci.size else np.array([], dtype=object)
    pos_acct = book["account_index"].values
    is_cfd = ctype == "cfd"
    is_stock = ctype == "stock"
    cfd_rows = np.flatnonzero(is_cfd)
    n_p = cfd_rows.size
    und_names = market["underlying"].values.tolist()
    for name in params.underlyings:
        if name not in und_names:
            raise InputError(f"unknown underlying {name!r}", file=file, key_path=("cfd", "underlyings", name))
    holds_cfd = np.zeros(n_a, dtype=bool)
    holds_cfd[pos_acct[cfd_rows]] = True
    unfunded = np.flatnonzero(holds_cfd & ~np.isin(np.array(acct_names, dtype=object), list(params.accounts)))
    if unfunded.size:
        name = acct_names[int(unfunded[0])]
        raise InputError(
            f"account {name!r} holds CFD positions: give its funding, cfd.accounts.{name}.cash",
            file=file,
            key_path=("cfd", "accounts"),
        )
    fund = [params.accounts.get(n) for n in acct_names]
    client = np.array([(f.client if f and f.client else params.client) for f in fund], dtype=object)
    retail_a = client == "retail"
    cash_total = np.array(
        [0.0 if f is None else _money(f.cash, sc, f"cfd.accounts.{n}.cash") for n, f in zip(acct_names, fund)]
    )
    other_im = np.array(
        [
            0.0 if f is None else _money(f.other_initial_margin, sc, f"cfd.accounts.{n}.other_initial_margin")
            for n, f in zip(acct_names, fund)
        ]
    )
    cash0 = np.maximum(cash_total - other_im, 0.0)

    # -- per underlying: class, regulatory and broker rates ----------------------------------------
    n_u = len(und_names)
    cls_u = np.array(
        [
            classify_underlying(
                n,
                params,
                cfd_class=sc.market[n].cfd_class if n in sc.market else None,
                product_class=sc.market[n].product_class if n in sc.market else None,
            )
            for n in und_names
        ],
        dtype=object,
    )
    for n, c in zip(und_names, cls_u):
        if c not in params.leverage:
            raise InputError(
                f"class {c!r} of {n!r} has no leverage cap in cfd.leverage",
                file=file,
                key_path="cfd.leverage",
            )
    reg_u = np.array([1.0 / params.leverage[c] for c in cls_u]) if n_u else np.zeros(0)

    def und_param(key: str) -> np.ndarray:
        vals = [
            getattr(params.underlyings.get(n), key, None) if n in params.underlyings else None
            for n in und_names
        ]
        return np.array([np.nan if v is None else v for v in vals], dtype=float)

    rule = params.broker_vol_rule
    bmm_u, bim_u = broker_rates(
        und_param("historical_vol"),
        und_param("broker_maintenance"),
        und_param("broker_initial"),
        z=rule.z,
        horizon_days=rule.horizon_days,
        minimum=rule.minimum,
        initial_ratio=params.broker_initial_ratio,
    )
    ccy_u = market["currency"].values
    bench_u = np.array(
        [params.financing.benchmark.get(str(c), r) for c, r in zip(ccy_u, market["rate"].values)], dtype=float
    )

    # -- per CFD position --------------------------------------------------------------------------
    p_contract = ci[cfd_rows]
    p_und = contracts["underlying_index"].values[p_contract]
    p_acct = pos_acct[cfd_rows]
    qty = book["quantity"].values[cfd_rows].astype(float)
    p_retail = retail_a[p_acct]
    mf = contracts["multiplier"].values[p_contract] * market["fx"].values[p_und]
    im_rate, mm_rate = applied_rates(
        reg_u[p_und],
        bmm_u[p_und],
        bim_u[p_und],
        close_out_fraction=params.close_out_fraction,
        retail=p_retail,
    )
    no_rate = im_rate <= 0.0
    if no_rate.any():
        u = und_names[int(p_und[np.flatnonzero(no_rate)[0]])]
        raise InputError(
            f"a professional client's CFD on {u!r} needs the broker's rate: give cfd.underlyings.{u}."
            "historical_vol or broker_maintenance",
            file=file,
            key_path=("cfd", "underlyings", u),
        )
    fin = params.financing
    fin_rate = fin.spread + np.where(p_retail, fin.retail_extra_spread, 0.0) + np.sign(qty) * bench_u[p_und]
    yf_scale = 1.0 / fin.day_count

    # -- steps: times, nights, grid layout -------------------------------------------------------------
    price = market["price"]
    gd = [d for d in inputs.grid_dims if d in price.dims]
    bd = [d for d in gd if d != "step"]
    has_step = "step" in price.dims
    n_s = price.sizes["step"] if has_step else 1
    mc = sc.grid.monte_carlo if sc.grid is not None else None
    if params.step_times is not None:
        if len(params.step_times) != n_s:
            raise InputError(
                f"cfd.step_times has {len(params.step_times)} times; the path has {n_s} steps",
                file=file,
                key_path="cfd.step_times",
            )
        times = np.array([_days(t) for t in params.step_times])
    else:
        step_days = params.step_days if params.step_days is not None else (mc.step_days if mc else 0.0)
        t0 = _days(sc.as_of) if isinstance(sc.as_of, dt.datetime) else _days(sc.as_of) + 1.0
        times = t0 + step_days * np.arange(n_s)
    nights = np.concatenate([[0.0], np.diff(np.floor(times + 1e-9))])
    yf = nights * yf_scale

    opened, given_px = _orders(inputs, cfd_rows)
    t_open = np.array([-np.inf if t is None else _days(t) for t in opened], dtype=float)
    new_order = t_open >= times[0]
    open_step = np.where(new_order, np.searchsorted(times, t_open, side="left"), 0).astype(np.int64)
    base_px = market["base_price"].values[p_und] if n_p else np.zeros(0)
    open_px = np.where(np.isnan(given_px) & ~new_order, base_px, given_px)

    # slots: per account, most recent first (ties: later row first)
    order = np.lexsort((-cfd_rows, -t_open, p_acct)) if n_p else np.zeros(0, dtype=np.int64)
    counts = np.bincount(p_acct, minlength=n_a) if n_p else np.zeros(n_a, dtype=np.int64)
    n_k = int(counts.max()) if n_p else 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot_of = np.empty(n_p, dtype=np.int64)
    slot_of[order] = np.arange(n_p) - starts[p_acct[order]]

    def slots(values: np.ndarray, fill: Any, dtype: Any = float) -> np.ndarray:
        out = np.full((n_a, n_k), fill, dtype=dtype)
        out[p_acct, slot_of] = values
        return out

    px = price.transpose(*bd, *(["step"] if has_step else []), "underlying").values
    bshape = tuple(price.sizes[d] for d in bd)
    n_b = int(np.prod(bshape)) if bshape else 1
    px = px.reshape(n_b, n_s, n_u)

    acct_out, slot_out, close_step, rejected = K.simulate(
        px,
        slots(p_und, -1, np.int64),
        slots(qty, 0.0),
        slots(open_px, np.nan),
        slots(mf, 0.0),
        slots(im_rate, 0.0),
        slots(mm_rate, 0.0),
        slots(fin_rate, 0.0),
        slots(open_step, n_s, np.int64),
        slots(new_order, False, bool),
        cash0,
        retail_a,
        yf,
        engine=engine,
    )

    # -- back to xarray --------------------------------------------------------------------------------
    out_dims = ("account", *bd, *(["step"] if has_step else []))

    def acct_var(j: int) -> np.ndarray:  # (B, S, A) -> (A, *bshape, [S])
        a = np.moveaxis(acct_out[..., j], -1, 0).reshape((n_a, *bshape, n_s))
        return a if has_step else a[..., 0]

    coords: dict[str, Any] = {"account": acct_names}
    for d in bd + (["step"] if has_step else []):
        coords[d] = price[d].values
    ds = xr.Dataset(coords=coords, attrs={"method": "cfd", "currency": sc.currency, "scenario": sc.name})
    ccy = sc.currency
    descr = {
        "cash": "CFD cash on arrival at the step (after financing), before its close-out",
        "equity": "cash + unrealised CFD pnl (both signs), before the step's close-out",
        "unrealised": "unrealised pnl of the open CFD positions",
        "initial": "initial margin of the open CFD positions, fixed at opening",
        "maintenance": "maintenance margin of the open CFD positions, fixed at opening (close-out level)",
        "available_cash": "cash available to open CFD positions: max(min(cash, equity) - initial, 0)",
        "financing": "overnight financing charged on arrival at the step (negative: received)",
        "realised": "pnl realised by the step's close-out (cash at once)",
        "written_off": "loss written off by negative balance protection at the step",
        "cash_after": "cash after the step's close-out and write-off",
        "equity_after": "equity after the step's close-out and write-off",
    }
    for j, name in enumerate(K.ACCOUNT_VARS):
        arr = acct_var(j)
        if name == "deficiency":
            ds[name] = (out_dims, arr > 0.5)
            ds[name].attrs["description"] = "equity below maintenance with positions open: close-out"
        elif name in ("open_positions", "closed_positions"):
            ds[name] = (out_dims, arr.astype(np.int64))
            ds[name].attrs["description"] = (
                "open CFD positions on arrival"
                if name == "open_positions"
                else "CFD positions closed out so far"
            )
        else:
            ds[name] = (out_dims, arr)
            ds[name].attrs.update(units=ccy, description=descr[name])
    ds["client"] = ("account", client)
    ds["cfd_cash_start"] = ("account", cash0)
    ds["cfd_cash_start"].attrs.update(units=ccy, description="cash less other products' initial margin, >= 0")
    ds["negative_balance_protection"] = ("account", retail_a)

    # positions
    pos_dims = ("position", *bd)

    def slot_var(x: np.ndarray) -> np.ndarray:  # (B, A, K) -> (P, *bshape)
        v = x[:, p_acct, slot_of] if n_p else np.zeros((n_b, 0), dtype=x.dtype)
        return np.moveaxis(v, 0, -1).reshape((n_p, *bshape))

    ds = ds.assign_coords(position=book["position"].values[cfd_rows], underlying=und_names)
    ds["position_account"] = ("position", np.array([acct_names[a] for a in p_acct], dtype=object))
    ds["position_contract"] = ("position", contracts["contract"].values[p_contract].astype(object))
    ds["position_underlying"] = ("position", np.array([und_names[u] for u in p_und], dtype=object))
    ds["cfd_class"] = ("position", cls_u[p_und] if n_p else np.array([], dtype=object))
    ds["quantity"] = ("position", qty)
    ds["opened"] = (
        "position",
        np.array(["" if t is None else t.isoformat() for t in opened], dtype=object),
    )
    ds["new_order"] = ("position", new_order)
    ds["open_step"] = ("position", np.where(new_order, open_step, 0))
    ds["regulatory_initial_rate"] = (
        "position",
        np.where(p_retail, reg_u[p_und], 0.0) if n_p else np.zeros(0),
    )
    ds["broker_maintenance_rate"] = ("position", bmm_u[p_und] if n_p else np.zeros(0))
    ds["broker_initial_rate"] = ("position", bim_u[p_und] if n_p else np.zeros(0))
    ds["initial_rate"] = ("position", im_rate)
    ds["maintenance_rate"] = ("position", mm_rate)
    ds["financing_rate"] = ("position", fin_rate)
    ds["value_factor"] = ("position", mf)
    ds["value_factor"].attrs["units"] = f"{ccy} per price point per contract (multiplier x FX)"
    ds["order_price"] = ("position", given_px)
    ds["order_price"].attrs["units"] = "price units (NaN: at the market)"
    for name, x in (
        ("open_price", slot_out[..., 0]),
        ("position_initial", slot_out[..., 1]),
        ("position_maintenance", slot_out[..., 2]),
        ("position_realised", slot_out[..., 3]),
    ):
        ds[name] = (pos_dims, slot_var(x))
    ds["close_step"] = (pos_dims, slot_var(close_step))
    ds["rejected"] = (pos_dims, slot_var(rejected))
    for v in ("position_initial", "position_maintenance", "position_realised"):
        ds[v].attrs["units"] = ccy
    ds["open_price"].attrs["units"] = "price units"
    ds["close_step"].attrs["description"] = "step of the close-out (-1: not closed)"
    ds["rejected"].attrs["description"] = "new order rejected: initial margin above available cash"
    ds["price"] = price.sel(underlying=und_names).transpose(
        "underlying", *bd, *(["step"] if has_step else [])
    )
    ds["price"].attrs.update(units="price units", description="underlying price")

    # value of the CFD positions open on arrival (the seed table's "value" column)
    open_pre = _open_on_arrival(ds, bd, has_step)  # (P, B, S)
    pv = np.moveaxis(px, 2, 0)[p_und] if n_p else np.zeros((0, n_b, n_s))  # (P, B, S)
    val = (qty * mf)[:, None, None] * pv * open_pre
    ds["value"] = (
        out_dims,
        _by_group(p_acct, val, n_a).reshape((n_a, *bshape, n_s))[..., slice(None) if has_step else 0],
    )
    ds["value"].attrs.update(units=ccy, description="signed value of the CFD positions open on arrival")
    _concentration(ds, inputs, params, is_stock, cfd_rows, p_und, qty, mf, bd, has_step)
    if "path" in bd:
        for k, v in _path_statistics(ds["written_off"], ds["closed_positions"]).items():
            ds[k] = v
        for v in ("written_off_mean", "written_off_q99", "written_off_max"):
            ds[v].attrs.update(units=ccy, description="over paths, of the written-off loss summed along step")
        ds["close_out_probability"].attrs["description"] = "share of paths with a close-out"
    return ds


#: The quantile over paths of the written-off loss reported as ``written_off_q99``.
WRITTEN_OFF_QUANTILE = 0.99


def _path_statistics(written_off: xr.DataArray, closed_positions: xr.DataArray) -> dict[str, xr.DataArray]:
    """Close-out probability and written-off loss over paths (mean, 99 % quantile, max)."""
    has_step = "step" in written_off.dims
    total_wo = written_off.sum("step") if has_step else written_off
    closed_any = (closed_positions.isel(step=-1) if has_step else closed_positions) > 0
    return {
        "close_out_probability": closed_any.mean("path"),
        "written_off_mean": total_wo.mean("path"),
        "written_off_q99": total_wo.quantile(WRITTEN_OFF_QUANTILE, dim="path").drop_vars("quantile"),
        "written_off_max": total_wo.max("path"),
    }


def finalize_chunked(ds: xr.Dataset, split_dims: frozenset[str]) -> xr.Dataset:
    """After a run split along ``path``: the path statistics recomputed over every path.

    Each task of a chunked run saw a chunk of paths only (see
    :attr:`marginsim.registry.MethodSpec.finalize_chunked`).
    """
    if "path" not in split_dims or "close_out_probability" not in ds:
        return ds
    stats = _path_statistics(ds["written_off"].chunk(path=-1), ds["closed_positions"].chunk(path=-1))
    for k, v in stats.items():
        ds[k] = v.transpose(*ds[k].dims).assign_attrs(ds[k].attrs)
    return ds


def _orders(inputs: Inputs, rows: np.ndarray) -> tuple[list, np.ndarray]:
    """Opening times and given open prices of book ``rows``.

    From the book's ``opened`` (datetimes or ``datetime64``; None / NaT: held before the path) and
    ``open_price`` (NaN: none) when it has them (a stored book), else from the scenario file's
    ``positions`` by the book's position numbers (which a chunk of the book keeps).
    """
    book, sc = inputs.book, inputs.scenario
    if "opened" in book or "open_price" in book:
        px = book["open_price"].values[rows] if "open_price" in book else np.full(rows.size, np.nan)
        opened = [None] * rows.size
        if "opened" in book:
            raw = book["opened"].values[rows]
            if raw.dtype.kind == "M":
                ts = pd.to_datetime(raw)
                opened = [None if pd.isna(t) else t.to_pydatetime() for t in ts]
            else:
                opened = [None if t is None or t != t else t for t in raw]
        return opened, np.asarray(px, dtype=float)
    where = book["position"].values[rows]
    opened = [sc.positions[int(i)].opened for i in where]
    px = np.array([sc.positions[int(i)].open_price or np.nan for i in where], dtype=float)
    return opened, px


def _by_group(rows: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the rows of ``values`` (first axis) into ``n_groups`` groups (sparse membership)."""
    n = values.shape[0]
    return group_sum(membership(rows, np.arange(n), np.ones(n), n_groups, n), values)


def _open_on_arrival(ds: xr.Dataset, bd: list[str], has_step: bool) -> np.ndarray:
    """``(P, B, S)`` bool: the CFD position is open on arrival at the step (before its close-out)."""
    n_p = ds.sizes["position"]
    n_b = int(np.prod([ds.sizes[d] for d in bd])) if bd else 1
    step = ds["step"].values if has_step else np.zeros(1, dtype=np.int64)
    cs = ds["close_step"].transpose("position", *bd).values.reshape(n_p, n_b, 1)
    rej = ds["rejected"].transpose("position", *bd).values.reshape(n_p, n_b, 1)
    ostep = ds["open_step"].values.reshape(n_p, 1, 1)
    opened = np.isfinite(ds["open_price"].transpose("position", *bd).values).reshape(n_p, n_b, 1)
    return (ostep <= step) & opened & ~rej & ((cs < 0) | (cs >= step))


def _concentration(ds, inputs, params, is_stock, cfd_rows, p_und, qty, mf, bd, has_step) -> None:
    """Concentration stress of CFD + stock positions per account and grid point (in place)."""
    conc = params.concentration
    book, contracts, market = inputs.book, inputs.contracts, inputs.market
    n_a = ds.sizes["account"]
    n_u = market.sizes["underlying"]
    stock_rows = np.flatnonzero(is_stock)
    pos_acct = book["account_index"].values
    has_stock = np.zeros(n_a, dtype=bool)
    has_stock[pos_acct[stock_rows]] = True
    # CFD positions of the classes margined with stocks (share CFDs by default)
    keep = np.isin(ds["cfd_class"].values, conc.cfd_classes) if cfd_rows.size else np.zeros(0, bool)
    has_cfd = np.zeros(n_a, dtype=bool)
    has_cfd[pos_acct[cfd_rows[keep]]] = True
    applies = {"auto": has_stock & has_cfd, "always": has_stock | has_cfd, "never": np.zeros(n_a, bool)}[
        conc.mode
    ]
    ds["concentration_applies"] = ("account", applies)
    sdims = (*bd, *(["step"] if has_step else []))
    shape = (n_a, *(ds.sizes[d] for d in sdims))
    if not applies.any():  # the same variables, NaN: a result's variables never depend on the book's data
        nan_ = np.full(shape, np.nan)
        _put_concentration(ds, conc, ("account", *sdims), nan_, nan_, np.zeros(shape, dtype=bool))
        return
    price = market["price"].transpose("underlying", *sdims).values.reshape(n_u, -1)  # (U, G)
    # CFD exposure of the positions open on arrival at the step (before its close-out)
    open_pre = _open_on_arrival(ds, bd, has_step)
    n_p, n_b, n_s = open_pre.shape
    open_pre = open_pre.reshape(n_p, n_b * n_s) & keep[:, None]  # (P, G) in (bd..., step) order
    p_acct = pos_acct[cfd_rows]
    cfd_val = qty[:, None] * mf[:, None] * price[p_und] * open_pre  # (P, G)
    rows = p_acct * n_u + p_und
    exposure = _by_group(rows, cfd_val, n_a * n_u)
    s_und = contracts["underlying_index"].values[book["contract_index"].values[stock_rows]]
    s_mf = (
        book["quantity"].values[stock_rows]
        * contracts["multiplier"].values[book["contract_index"].values[stock_rows]]
        * market["fx"].values[s_und]
    )
    s_val = s_mf[:, None] * price[s_und]  # (Q, G)
    s_acct = pos_acct[stock_rows]
    exposure = exposure + _by_group(s_acct * n_u + s_und, s_val, n_a * n_u)
    exposure = np.abs(exposure.reshape(n_a, n_u, -1))  # (A, U, G)
    ranked = -np.sort(-exposure, axis=1)
    moves = np.full(n_u, conc.other_move)
    moves[: min(conc.largest_count, n_u)] = conc.largest_move
    loss = (ranked * moves[None, :, None]).sum(axis=1)  # (A, G)
    stock_std = conc.stock_maintenance * _by_group(s_acct, np.abs(s_val), n_a)
    mm_pos = ds["position_maintenance"].transpose("position", *bd).values.reshape(cfd_rows.size, n_b)
    mm_pos = (np.nan_to_num(mm_pos)[:, :, None] * open_pre.reshape(cfd_rows.size, n_b, n_s)).reshape(
        cfd_rows.size, n_b * n_s
    )
    cfd_mm = _by_group(p_acct, mm_pos, n_a)
    standard = cfd_mm + stock_std
    nan = ~applies[:, None]
    _put_concentration(
        ds,
        conc,
        ("account", *sdims),
        np.where(nan, np.nan, loss).reshape(shape),
        np.where(nan, np.nan, standard).reshape(shape),
        ((loss > standard) & applies[:, None]).reshape(shape),
    )


def _put_concentration(ds, conc, dims, loss, standard, binding) -> None:
    """The concentration variables (NaN for accounts it does not apply to), with their attrs."""
    ds["concentration_loss"] = (dims, loss)
    ds["standard_requirement"] = (dims, standard)
    ds["combined_maintenance"] = (dims, np.maximum(loss, standard))
    ds["concentration_binding"] = (dims, binding)
    ccy = ds.attrs["currency"]
    ds["concentration_loss"].attrs.update(
        units=ccy,
        description=f"loss of a {conc.largest_move:.0%} adverse move of the {conc.largest_count} largest "
        f"positions (net per underlying, CFD + stock) and {conc.other_move:.0%} of the rest",
    )
    ds["standard_requirement"].attrs.update(
        units=ccy, description="CFD maintenance + stock maintenance (standard requirement)"
    )
    ds["combined_maintenance"].attrs.update(
        units=ccy, description="maintenance of CFD and stock positions together: max(stress loss, standard)"
    )


# ----------------------------------------------------------------------------------------------------
# JSON and table
# ----------------------------------------------------------------------------------------------------

_FIXED = ("initial", "maintenance", "cash", "equity", "unrealised", "available_cash", "deficiency")
_EXTRA = (
    "value",
    "financing",
    "realised",
    "cash_after",
    "equity_after",
    "open_positions",
    "closed_positions",
)


def _events(ds: xr.Dataset, a: int, gd: list[str], flag: str) -> Any:
    """Per grid point (nested in the order of ``gd``), the positions closed (or rejected) there."""
    acct = ds["account"].values[a]
    dims = [d for d in gd if d in ds["cash"].dims]
    shape = tuple(ds.sizes[d] for d in dims)
    cells = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        cells[idx] = []
    mine = np.flatnonzero(ds["position_account"].values == acct)
    if mine.size:
        sub = ds.isel(position=mine)
        bd = [d for d in dims if d != "step"]
        if flag == "close":
            at = sub["close_step"].transpose("position", *bd).values
            hit = at >= 0
        else:
            hit = sub["rejected"].transpose("position", *bd).values
            at = np.broadcast_to(sub["open_step"].values.reshape((-1,) + (1,) * len(bd)), hit.shape)
        price = ds["price"]
        for ev in zip(*np.nonzero(hit)):
            p, bidx = ev[0], ev[1:]
            where = dict(zip(bd, bidx))
            if "step" in dims:
                where["step"] = int(at[ev])
            u = str(sub["position_underlying"].values[p])
            entry: dict[str, Any] = {
                "position": int(sub["position"].values[p]),
                "contract": str(sub["position_contract"].values[p]),
                "quantity": float(sub["quantity"].values[p]),
                "price": float(price.sel(underlying=u).isel(where).values),
            }
            if flag == "close":
                entry["realised"] = float(sub["position_realised"].transpose("position", *bd).values[ev])
            else:
                order_px = float(sub["order_price"].values[p])
                fill = entry["price"] if np.isnan(order_px) else order_px
                entry["initial"] = (
                    float(sub["initial_rate"].values[p])
                    * abs(entry["quantity"])
                    * fill
                    * float(sub["value_factor"].values[p])
                )
            cells[tuple(where[d] for d in dims)].append(entry)
    return cells.tolist() if shape else cells[()]


def _const_or_plain(da: xr.DataArray, gd: list[str]) -> Any:
    v = da.values
    if v.dtype.kind == "f" and np.isnan(v).all():
        return None
    if v.size and np.all(v == v.flat[0]):
        x = v.flat[0]
        return x.item() if hasattr(x, "item") else x
    return to_plain(da, gd)


def cfd_to_dict(ds: xr.Dataset, gd: list[str]) -> dict[str, Any]:
    """Per account: the ``cfd`` object of the JSON contract (numbers along grid dims are nested lists)."""
    out: dict[str, Any] = {}
    for a, acct in enumerate(ds["account"].values.tolist()):
        d = ds.isel(account=a)
        obj: dict[str, Any] = {k: to_plain(d[k], gd) for k in _FIXED}
        obj["close_out"] = _events(ds, a, gd, "close")
        obj["written_off"] = to_plain(d["written_off"], gd)
        obj.update({k: to_plain(d[k], gd) for k in _EXTRA})
        obj["rejected"] = _events(ds, a, gd, "reject")
        obj["client"] = str(d["client"].values)
        obj["negative_balance_protection"] = bool(d["negative_balance_protection"].values)
        obj["cfd_cash_start"] = float(d["cfd_cash_start"].values)
        mine = np.flatnonzero(ds["position_account"].values == acct)
        positions = {}
        for p in mine:
            dp = ds.isel(position=p)
            positions[str(int(dp["position"].values))] = {
                "contract": str(dp["position_contract"].values),
                "underlying": str(dp["position_underlying"].values),
                "cfd_class": str(dp["cfd_class"].values),
                "quantity": float(dp["quantity"].values),
                "opened": str(dp["opened"].values) or None,
                "new_order": bool(dp["new_order"].values),
                "open_step": int(dp["open_step"].values),
                "regulatory_initial_rate": float(dp["regulatory_initial_rate"].values),
                "broker_initial_rate": float(dp["broker_initial_rate"].values),
                "broker_maintenance_rate": float(dp["broker_maintenance_rate"].values),
                "initial_rate": float(dp["initial_rate"].values),
                "maintenance_rate": float(dp["maintenance_rate"].values),
                "financing_rate": float(dp["financing_rate"].values),
                "open_price": _const_or_plain(dp["open_price"], gd),
                "initial": _const_or_plain(dp["position_initial"], gd),
                "maintenance": _const_or_plain(dp["position_maintenance"], gd),
            }
        obj["positions"] = positions
        if bool(d["concentration_applies"].values):
            obj["concentration"] = {
                "loss": to_plain(d["concentration_loss"], gd),
                "standard_requirement": to_plain(d["standard_requirement"], gd),
                "maintenance": to_plain(d["combined_maintenance"], gd),
                "binding": to_plain(d["concentration_binding"], gd),
            }
        if "close_out_probability" in ds:
            obj["paths"] = {
                "close_out_probability": to_plain(d["close_out_probability"], gd),
                "written_off_mean": to_plain(d["written_off_mean"], gd),
                "written_off_q99": to_plain(d["written_off_q99"], gd),
                "written_off_max": to_plain(d["written_off_max"], gd),
            }
        out[acct] = obj
    return out


def _f(x: float) -> str:
    return f"{x:,.2f}"


def _opt(x: float, fmt: str = "{:,.2f}") -> str:
    return "-" if np.isnan(x) else fmt.format(x)


def cfd_table(ds: xr.Dataset, account: str) -> str:
    """A readable CFD breakdown of one account: positions, then the state at each step.

    With grid dims other than ``step`` the first point is shown (and, with ``path``, a summary
    over paths).
    """
    d = ds.sel(account=account)
    ccy = ds.attrs.get("currency", "")
    other = [dim for dim in d["cash"].dims if dim != "step"]
    note = ""
    if other:
        note = "  (first grid point: " + ", ".join(f"{dim}={ds[dim].values[0]}" for dim in other) + ")"
        d = d.isel({dim: 0 for dim in other})
    lines = [
        f"CFD  account {account}  [{ccy}]  client {d['client'].values}"
        f"  CFD cash {_f(float(d['cfd_cash_start']))}{note}"
    ]
    mine = np.flatnonzero(ds["position_account"].values == account)
    head = (
        f"{'pos':>4} {'contract':<14}{'class':<18}{'qty':>12}{'open px':>12}{'IM rate':>9}{'MM rate':>9}"
        f"{'IM':>13}{'MM':>13}  status"
    )
    lines += [head, "-" * len(head)]
    for p in mine:
        dp = d.isel(position=p)
        cs = int(dp["close_step"].values)
        if bool(dp["rejected"].values):
            status = f"rejected at step {int(dp['open_step'].values)}"
        elif cs >= 0:
            status = f"closed at step {cs}"
        elif np.isnan(float(dp["open_price"].values)):
            status = "opens after the last step"
        else:
            status = f"open from step {int(dp['open_step'].values)}"
        lines.append(
            f"{int(dp['position'].values):>4} {str(dp['position_contract'].values):<14}{str(dp['cfd_class'].values):<18}"
            f"{float(dp['quantity'].values):>12,.2f}{_opt(float(dp['open_price'].values), '{:,.4f}'):>12}"
            f"{float(dp['initial_rate'].values):>9.2%}{float(dp['maintenance_rate'].values):>9.2%}"
            f"{_opt(float(dp['position_initial'].values)):>13}{_opt(float(dp['position_maintenance'].values)):>13}"
            f"  {status}"
        )
    cols = (
        "cash",
        "equity",
        "value",
        "unrealised",
        "initial",
        "maintenance",
        "available_cash",
        "written_off",
    )
    head = (
        f"{'step':>5}" + "".join(f"{c.replace('_', ' '):>16}" for c in cols) + f"{'deficiency':>12}  closed"
    )
    lines += ["", head, "-" * len(head)]
    steps = d["step"].values.tolist() if "step" in d.dims else [None]
    for i, s in enumerate(steps):
        ds_s = d.isel(step=i) if s is not None else d
        closed = [
            str(int(ds_s["position"].values[p]))
            for p in mine
            if int(ds_s["close_step"].values[p]) == (i if s is not None else 0)
        ]
        lines.append(
            f"{'' if s is None else s:>5}"
            + "".join(f"{_f(float(ds_s[c].values)):>16}" for c in cols)
            + f"{'yes' if bool(ds_s['deficiency'].values) else 'no':>12}  {', '.join(closed)}"
        )
    if bool(d["concentration_applies"].values):
        first = {"step": 0} if "step" in d.dims else {}
        dc = d.isel(first)
        lines.append("")
        lines.append(
            f"concentration (step 0): stress loss {_f(float(dc['concentration_loss']))}, standard "
            f"{_f(float(dc['standard_requirement']))}, maintenance {_f(float(dc['combined_maintenance']))}"
            f"{' (concentration binds)' if bool(dc['concentration_binding']) else ''}"
        )
    if "close_out_probability" in ds:
        s = ds.sel(account=account)
        rest = [dim for dim in s["close_out_probability"].dims]
        s = s.isel({dim: 0 for dim in rest})
        lines.append("")
        lines.append(
            f"over {ds.sizes['path']} paths: close-out probability {float(s['close_out_probability']):.2%}, "
            f"written off: mean {_f(float(s['written_off_mean']))}, 99 % {_f(float(s['written_off_q99']))}, "
            f"max {_f(float(s['written_off_max']))}"
        )
    return "\n".join(line.rstrip() for line in lines)
