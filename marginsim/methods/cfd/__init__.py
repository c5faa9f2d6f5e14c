"""The CFD method (``spec/cfd.md``): ESMA / Central Bank of Ireland retail rules, along price paths.

An xarray wrapper over :mod:`marginsim.kernels.cfd`, by concern:

* :mod:`.rates`: per position, the retail leverage cap of the underlying's class, the broker's
  own volatility-based rate, and the applied initial and maintenance rates;
* :mod:`.funding`: initial margin from cash only (``cfd.accounts``: cash less the cash used for
  other products' initial margin; a margin loan leaves nothing);
* :mod:`.orders`, :mod:`.positions`: when each position opens, and its slot in its account
  (most recent first: the close-out order);
* :mod:`.paths`: the simulation over the grid dims ``step`` (``grid.path``) and ``path``
  (``grid.monte_carlo``) and any other: overnight financing (retail + 1 %), new orders checked
  against available cash, close-out of the most recent positions when equity falls below
  maintenance, negative balance protection with the written-off amount;
* :mod:`.concentration`: concentration margin when CFD and stock positions are margined together;
* :mod:`.statistics`: close-out probability and written-off loss over paths;
* :mod:`.variables`: every result variable, declared once; :mod:`.report`: the JSON and the table.

Accounts, positions and grid points are array axes; the loop over steps runs in the kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ...errors import InputError
from ...kernels import cfd as K
from ...limits import cfd_memory
from ...model import Inputs
from ...params.cfd import CfdParams
from ...registry import MethodSpec
from ...scenario import ScenarioFile
from .attribution import cfd_attribution
from .concentration import add_concentration, concentration_description
from .funding import account_funding
from .orders import cfd_orders
from .paths import account_variables, price_block, simulate_paths, step_times, year_fractions
from .positions import Slots, by_group, open_on_arrival
from .rates import applied_rates, broker_rates, check_underlyings, classify_underlying, underlying_rates
from .report import cfd_table, cfd_to_dict
from .statistics import WRITTEN_OFF_QUANTILE, finalize_chunked, path_statistics
from .variables import OUTPUTS, describe_result

__all__ = [
    "classify_underlying",
    "broker_rates",
    "applied_rates",
    "cfd_margin",
    "cfd_attribution",
    "cfd_to_dict",
    "cfd_table",
    "cfd_applies",
    "finalize_chunked",
    "WRITTEN_OFF_QUANTILE",
    "OUTPUTS",
    "SPEC",
]


def cfd_margin(inputs: Inputs, params: CfdParams | None = None, *, engine: K.Engine = "auto") -> xr.Dataset:
    """CFD margin, close-out and negative balance protection of every account, along the grid.

    Parameters
    ----------
    inputs
        The data model (:func:`marginsim.build_inputs`).
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
        ``written_off_max`` over paths. Every variable is declared in :data:`OUTPUTS` (its
        ``units``, ``currency`` and ``description`` attrs). Lazy (dask-backed) inputs are
        refused: margin them with :func:`marginsim.margin`, which runs the method chunk by chunk.
    """
    inputs.require_in_memory("cfd_margin")
    sc = inputs.scenario
    file = sc.file
    params = params or sc.cfd or CfdParams()
    book, contracts, market = inputs.book, inputs.contracts, inputs.market

    # -- accounts and positions -----------------------------------------------------------------
    ci = book["contract_index"].values
    ctype = contracts["type"].values[ci] if ci.size else np.array([], dtype=object)
    pos_acct = book["account_index"].values
    is_stock = ctype == "stock"
    cfd_rows = np.flatnonzero(ctype == "cfd")
    n_p = cfd_rows.size
    und_names = market["underlying"].values.tolist()
    check_underlyings(params, und_names, file)
    p_acct = pos_acct[cfd_rows]
    funding = account_funding(inputs, params, p_acct)
    acct_names, n_a = funding.accounts, len(funding.accounts)

    # -- per underlying, then per CFD position: class, regulatory and broker rates ------------------
    und = underlying_rates(params, sc, market)
    p_contract = ci[cfd_rows]
    p_und = contracts["underlying_index"].values[p_contract]
    qty = book["quantity"].values[cfd_rows].astype(float)
    p_retail = funding.retail[p_acct]
    mf = contracts["multiplier"].values[p_contract] * market["fx"].values[p_und]
    im_rate, mm_rate = applied_rates(
        und.regulatory_initial[p_und],
        und.broker_maintenance[p_und],
        und.broker_initial[p_und],
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
    fin_rate = (
        fin.spread + np.where(p_retail, fin.retail_extra_spread, 0.0) + np.sign(qty) * und.benchmark[p_und]
    )

    # -- steps, orders, the path kernel ------------------------------------------------------------
    price = market["price"]
    prices = price_block(price, list(inputs.grid_dims))
    bd, bshape, has_step, n_s = prices.batch_dims, prices.batch_shape, prices.has_step, prices.n_steps
    times = step_times(params, sc, n_s)
    orders = cfd_orders(inputs, cfd_rows, times, market["base_price"].values[p_und] if n_p else np.zeros(0))
    slots = Slots(p_acct, orders.time, cfd_rows, n_a)
    acct_out, slot_out, close_step, rejected = simulate_paths(
        prices,
        slots,
        underlying=p_und,
        quantity=qty,
        open_price=orders.open_price,
        value_factor=mf,
        initial_rate=im_rate,
        maintenance_rate=mm_rate,
        financing_rate=fin_rate,
        open_step=orders.open_step,
        new_order=orders.new_order,
        cash=funding.cash,
        retail=funding.retail,
        year_fraction=year_fractions(times, fin.day_count),
        engine=engine,
    )

    # -- back to xarray --------------------------------------------------------------------------------
    coords: dict[str, Any] = {"account": acct_names}
    for d in bd + prices.step_dims:
        coords[d] = price[d].values
    ds = xr.Dataset(
        account_variables(acct_out, prices),
        coords=coords,
        attrs={"method": "cfd", "currency": sc.currency, "scenario": sc.name},
    )
    ds["client"] = ("account", funding.client)
    ds["cfd_cash_start"] = ("account", funding.cash)
    ds["negative_balance_protection"] = ("account", funding.retail)

    # positions
    pos_dims = ("position", *bd)
    ds = ds.assign_coords(position=book["position"].values[cfd_rows], underlying=und_names)
    ds["position_account"] = ("position", np.array([acct_names[a] for a in p_acct], dtype=object))
    ds["position_contract"] = ("position", contracts["contract"].values[p_contract].astype(object))
    ds["position_underlying"] = ("position", np.array([und_names[u] for u in p_und], dtype=object))
    ds["cfd_class"] = ("position", und.cfd_class[p_und] if n_p else np.array([], dtype=object))
    ds["quantity"] = ("position", qty)
    ds["opened"] = (
        "position",
        np.array(["" if t is None else t.isoformat() for t in orders.opened], dtype=object),
    )
    ds["new_order"] = ("position", orders.new_order)
    ds["open_step"] = ("position", np.where(orders.new_order, orders.open_step, 0))
    ds["regulatory_initial_rate"] = (
        "position",
        np.where(p_retail, und.regulatory_initial[p_und], 0.0) if n_p else np.zeros(0),
    )
    ds["broker_maintenance_rate"] = ("position", und.broker_maintenance[p_und] if n_p else np.zeros(0))
    ds["broker_initial_rate"] = ("position", und.broker_initial[p_und] if n_p else np.zeros(0))
    ds["initial_rate"] = ("position", im_rate)
    ds["maintenance_rate"] = ("position", mm_rate)
    ds["financing_rate"] = ("position", fin_rate)
    ds["value_factor"] = ("position", mf)
    ds["order_price"] = ("position", orders.order_price)
    for j, name in enumerate(("open_price", "position_initial", "position_maintenance", "position_realised")):
        ds[name] = (pos_dims, slots.take(slot_out[..., j], bshape))
    ds["close_step"] = (pos_dims, slots.take(close_step, bshape))
    ds["rejected"] = (pos_dims, slots.take(rejected, bshape))
    ds["price"] = price.sel(underlying=und_names).transpose("underlying", *bd, *prices.step_dims)

    # value of the CFD positions open on arrival (the seed table's "value" column)
    open_pre = open_on_arrival(ds, bd, has_step)  # (P, B, S)
    pv = np.moveaxis(prices.price, 2, 0)[p_und] if n_p else np.zeros((0, prices.n_batch, n_s))  # (P, B, S)
    val = (qty * mf)[:, None, None] * pv * open_pre
    ds["value"] = (
        ("account", *bd, *prices.step_dims),
        by_group(p_acct, val, n_a).reshape((n_a, *bshape, n_s))[..., slice(None) if has_step else 0],
    )
    add_concentration(ds, inputs, params, is_stock, cfd_rows, p_und, qty, mf, bd, has_step)
    if "path" in bd:
        for k, v in path_statistics(ds["written_off"], ds["closed_positions"]).items():
            ds[k] = v
    return describe_result(ds, concentration_description(params.concentration))


def cfd_applies(sc: ScenarioFile) -> bool:
    """CFD runs with a ``cfd`` section, or for books holding CFD contracts."""
    return sc.cfd is not None or sc.holds(lambda c: c.type == "cfd")


SPEC = MethodSpec(
    "cfd",
    cfd_margin,
    CfdParams,
    cfd_to_dict,
    cfd_table,
    cfd_applies,
    unsplit_dims=frozenset({"step"}),
    finalize_chunked=finalize_chunked,
    outputs=OUTPUTS,
    memory=cfd_memory,
    attribution=cfd_attribution,
)
