"""The account layer of a futures broker (``spec/account.md``): an xarray wrapper over
:mod:`marginsim.kernels.account`.

It consumes exchange (or upstream) requirements per account, currency group and currency, over
the grid dims:

* SPAN for futures and options without margin data, run through the registry;
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

The package: :mod:`.context` (accounts, currencies, products, the grid), :mod:`.requirements`
(requirement lines per source), :mod:`.money` (cash, values, withdrawable, interest),
:mod:`.calls` (ratios, states, deadlines), :mod:`.eligibility`, :mod:`.conversion` and
:mod:`.liquidation` (the plans), :mod:`.variables` (every result variable: dims, units,
description) and :mod:`.report` (JSON and table).

Accounts, positions and grid points are array axes; Python loops run over parameter definitions
(currency groups, currencies, products, tiers) and, for the two plans, over accounts at one
decision point (the conversion planner is a small search per account; see
:func:`marginsim.kernels.account.plan_movements`).
"""

from __future__ import annotations

import dataclasses
import zoneinfo
from typing import Any

import numpy as np
import xarray as xr

from ...errors import InputError
from ...kernels import account as K
from ...kernels import pricing
from ...limits import account_memory
from ...model import GRID_DIMS, Inputs
from ...outputs import describe
from ...params.account import CURRENCY_GROUPS, AccountParams
from ...registry import ChunkLayout, MethodSpec
from ...scenario import ScenarioFile
from .attribution import account_attribution
from .calls import business_holidays, deadlines, states
from .context import G, Shell, build_ctx, decision_point, grid_coords, grid_shape, point_str
from .conversion import conversion_plans, conversion_tests, max_movements
from .eligibility import eligibility, mark_no_loan, ready_market
from .liquidation import liquidation_plans
from .money import balances, interest, withdrawable
from .report import account_table, account_to_dict
from .requirements import requirement_lines, requirements_from_method
from .variables import OUTPUTS

__all__ = [
    "account_margin",
    "account_attribution",
    "account_applies",
    "account_chunk_layout",
    "account_to_dict",
    "account_table",
    "requirements_from_method",
    "business_holidays",
    "AccountParams",
    "STATE_NAMES",
    "OUTPUTS",
    "SPEC",
]

#: Names of the risk states (``state`` codes 0, 1, 2).
STATE_NAMES = K.STATE_NAMES


def account_applies(sc: ScenarioFile) -> bool:
    """The account layer runs when the scenario has an ``account:`` section."""
    return sc.account is not None


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
        The data model (:func:`marginsim.build_inputs`).
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
        ``account``, ``position``, ``stock``). Every variable, with its units, is declared in
        :data:`OUTPUTS` (:mod:`.variables`).
    """
    inputs.require_in_memory("account_margin")
    sc = inputs.scenario
    if params is None:
        params = sc.account if sc.account is not None else AccountParams()
    extra_ccys = set() if requirements is None else {str(c) for c in requirements["currency"].values}
    ctx = build_ctx(inputs, params, extra_ccys)
    try:
        tz = zoneinfo.ZoneInfo(params.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"unknown time zone {params.timezone!r}", file=ctx.file, key_path="account.timezone"
        ) from None
    gd, gshape = grid_shape(inputs)
    n_a, C = len(ctx.accounts), len(ctx.ccys)
    usd = ctx.usd

    # eligibility of stocks first: it decides which long stocks lose their loan value
    stocks = ready_market(ctx, inputs)
    mark_no_loan(ctx, inputs, stocks)
    lines, by_source = requirement_lines(ctx, inputs, engine, requirements)
    money, pv, balance, option_lines = balances(ctx, inputs, engine)

    u4 = usd[None, None, :, None]
    equity_b = (balance * u4).sum(axis=(1, 2))
    init_b = (lines["initial"] * u4).sum(axis=(1, 2))
    maint_b = (lines["maintenance"] * u4).sum(axis=(1, 2))
    ratio, mratio, state = states(equity_b, init_b, maint_b)
    if stage == "state":
        return xr.Dataset(
            {"state": (("account", *gd), state.reshape((n_a, *gshape)))},
            coords={"account": ctx.accounts, **grid_coords(inputs, gd)},
        )

    group_base = (balance * u4).sum(axis=2)  # (A, G, n_g)
    group_init = (lines["initial"] * u4).sum(axis=2)
    conv_met, trans_met, forced_conv = conversion_tests(balance, lines["exchange_initial"], group_base, group_init)
    call_t, deadline, overdue = deadlines(ctx, inputs, tz, state, gd, gshape)
    withdrawable_b, group_w, ccy_w, lme_nd_b = withdrawable(
        ctx, money, balance, lines["exchange_initial"], equity_b, init_b, group_base, group_init
    )

    # the plans at their decision points
    conv_point = decision_point(ctx, inputs, gd, gshape, state, kind="settlement")
    movements, conv_summary = conversion_plans(ctx, balance, lines, conv_point, gd, gshape)
    liq_point = decision_point(ctx, inputs, gd, gshape, state, kind="liquidation", step=liquidation_step)
    liquidation, liq_summary = liquidation_plans(
        ctx, inputs, liq_point, gd, gshape, state, equity_b, init_b, lines, by_source, pv, engine
    )

    # the result: amounts per account in the reporting currency (r per unit of the base currency)
    gdims = tuple(gd)

    def ag(x: Any) -> tuple[tuple[str, ...], np.ndarray]:
        return (("account", *gdims), np.asarray(x).reshape((n_a, *gshape)))

    def agg(x: Any) -> tuple[tuple[str, ...], np.ndarray]:
        return (("account", "currency_group", *gdims), np.asarray(x).reshape((n_a, G, *gshape)))

    def agc(x: Any) -> tuple[tuple[str, ...], np.ndarray]:
        return (("account", "currency_group", "currency", *gdims), np.asarray(x).reshape((n_a, G, C, *gshape)))

    def base_sum(x: np.ndarray) -> np.ndarray:
        return (x * u4).sum(axis=(1, 2))

    r = float(sc.fx_rate(params.base_currency, key_path="account.base_currency"))
    ds = xr.Dataset(
        {
            "equity": ag(equity_b * r),
            "initial": ag(init_b * r),
            "maintenance": ag(maint_b * r),
            "exchange_initial": ag(base_sum(lines["exchange_initial"]) * r),
            "exchange_maintenance": ag(base_sum(lines["exchange_maintenance"]) * r),
            "risk_ratio": ag(ratio),
            "maintenance_risk_ratio": ag(mratio),
            "state": ag(state),
            "call_time": ag(call_t),
            "deadline": ag(deadline),
            "overdue": ag(overdue),
            "available_funds": ag((equity_b - init_b) * r),
            "excess_liquidity": ag((equity_b - maint_b) * r),
            "withdrawable": ag(withdrawable_b * r),
            "option_value_excluded": ag(base_sum(option_lines) * r),
            "lme_not_due": (("account",), lme_nd_b[:, 0] * r),
            "forced_conversion_needed": ag(forced_conv),
            "total_base": ag(equity_b),
            "group_base": agg(group_base),
            "group_initial": agg(group_init),
            "group_maintenance": agg((lines["maintenance"] * u4).sum(axis=2)),
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
        coords={
            "account": ctx.accounts,
            "currency_group": list(CURRENCY_GROUPS),
            "currency": ctx.ccys,
            **grid_coords(inputs, gd),
        },
        attrs={
            "method": "account",
            "currency": sc.currency,
            "base_currency": params.base_currency,
            "scenario": sc.name,
            "timezone": params.timezone,
            "calendar": params.calendar,
            "conversion_point": point_str(conv_point),
            "liquidation_point": point_str(liq_point),
        },
    )
    for name, part in by_source.items():
        ds[f"initial_{name}"] = ag(base_sum(part["initial"]) * r)
    ds = ds.merge(movements).merge(liquidation)
    ds = ds.merge(interest(ctx, inputs, money, pv["base_level"])).merge(eligibility(ctx, inputs, equity_b, gd, gshape))
    for k, v in conv_summary.items():
        ds[k] = ("account", v)
    for k, v in liq_summary.items():
        ds[k] = ("account", v)
    if stocks is not None:
        ds = ds.merge(stocks)
    return describe(ds, OUTPUTS)


def account_chunk_layout(inputs: Inputs) -> ChunkLayout:
    """How the account layer runs chunk by chunk of accounts (:func:`marginsim.scale.lazy_method`).

    Every account is margined on its own except for two things, which are made whole-book:

    * the plans' rows (``movement``, ``liquidation``) vary in number with the data: each chunk pads
      them to the most rows its accounts (:func:`max_movements`) or positions (one each) can give,
      and :func:`marginsim.scale.compact` drops the padding after computing;
    * the liquidation plan's step, with ``account.decision.liquidation_step: first``, is the first
      step at which *any* account of the book is in forced liquidation: a first pass computes the
      states chunk by chunk and reduces them to that step, which every chunk of the second pass
      takes (the ``liquidation_point`` attr comes back with the computed result).
    """
    sc = inputs.scenario
    params = sc.account if sc.account is not None else AccountParams()
    gd, gshape = grid_shape(inputs)
    ragged: dict[str, Any] = {
        "movement": ("account", lambda t: max_movements(t.sizes["currency"], params), None),
        "liquidation": ("position", 1, "liquidation_position"),
    }
    layout = ChunkLayout(ragged=ragged, data_attrs=("conversion_point", "liquidation_point"))
    if "step" not in gd or params.decision.liquidation_step != "first":
        return layout
    shell = Shell(params=params, file=sc.file)
    point = decision_point(shell, inputs, gd, gshape, None, kind="liquidation", step=0)
    n_s = gshape[gd.index("step")]

    def liquidation_step(states: xr.Dataset) -> dict[str, Any]:
        along = states["state"].isel({d: i for d, i in point.items() if d != "step"}).transpose("account", "step")
        hit = (along == K.FORCED_LIQUIDATION).any("account")
        return {"liquidation_step": xr.where(hit.any(), hit.argmax("step"), n_s - 1).data}

    return dataclasses.replace(layout, first_pass={"stage": "state"}, deps=liquidation_step)


#: The account layer in the registry. Its plans are made at one grid point and its margin calls
#: run along the steps: it is split along accounts only.
SPEC = MethodSpec(
    "account",
    account_margin,
    AccountParams,
    account_to_dict,
    account_table,
    account_applies,
    unsplit_dims=frozenset(GRID_DIMS),
    outputs=OUTPUTS,
    chunk_layout=account_chunk_layout,
    memory=account_memory,
    attribution=account_attribution,
)
