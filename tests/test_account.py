"""The account layer of a Hong Kong futures broker (spec/account.md), with hand-computed numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import marginsim
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.kernels import account as K
from marginsim.methods.account import (
    account_margin,
    business_holidays,
    requirements_from_method,
)
from marginsim.testing import check_method, mixed_contracts

ROOT = Path(__file__).resolve().parents[1]
CALL = ROOT / "scenarios" / "account_hk_margin_call.yaml"
CONV = ROOT / "scenarios" / "account_forced_conversion.yaml"

HKD, CNH = 0.125, 0.14  # round FX rates (USD per unit) for hand computation
HSI_FIXED = {"type": "fixed", "initial": 100_000, "maintenance": 80_000, "currency": "HKD"}


def scenario(
    positions: list[dict],
    *,
    accounts: dict,
    products: dict | None = None,
    market: dict | None = None,
    contracts: dict | None = None,
    grid: dict | None = None,
    as_of: str = "2026-03-10T17:00:00",
    extra: dict | None = None,
    span: dict | None = None,
) -> dict:
    """A scenario mapping with HSI (HKD), ES (USD) and IRON (CNH) futures."""
    sc = {
        "name": "t",
        "as_of": as_of,
        "currency": "USD",
        "fx": {"HKD": HKD, "CNH": CNH, "EUR": 1.1},
        "methods": ["account"],
        "market": market
        or {
            "HSI": {"price": 20000, "vol": 0.2, "currency": "HKD"},
            "ES": {"price": 5000, "vol": 0.2, "currency": "USD"},
            "IRON": {"price": 800, "vol": 0.3, "currency": "CNH"},
        },
        "contracts": contracts
        or {
            "HSI-F": {"type": "future", "underlying": "HSI", "multiplier": 50, "expiry": "2026-03-30"},
            "ES-F": {"type": "future", "underlying": "ES", "multiplier": 50, "expiry": "2026-06-19"},
            "IRON-F": {"type": "future", "underlying": "IRON", "multiplier": 100, "expiry": "2026-05-15"},
        },
        "positions": positions,
        "account": {
            "products": products
            if products is not None
            else {
                "HSI-F": {"currency_group": "HK_", "margin": HSI_FIXED},
                "IRON-F": {"margin": {"type": "percentage", "initial": 0.12, "maintenance": 0.10}},
            },
            "accounts": accounts,
            **(extra or {}),
        },
    }
    if grid:
        sc["grid"] = grid
    if span:
        sc["span"] = span
    return sc


def run(sc: dict, **kw) -> xr.Dataset:
    return account_margin(marginsim.load(sc), **kw)


def at(ds: xr.Dataset, var: str, account: str = "main", **sel):
    d = ds[var].sel(account=account, **sel)
    return d.values.item() if d.size == 1 else d.values


# ----------------------------------------------------------------------------------------------------
# 1. margins, mark-ups, equity, ratios, state
# ----------------------------------------------------------------------------------------------------


def test_fixed_and_percentage_margins_with_markup():
    # HSI: 3 x HKD 100,000 initial, 80,000 maintenance; IRON: 10 x 100 x 800 CNH x 12 % / 10 %
    sc = scenario(
        [{"contract": "HSI-F", "quantity": 3}, {"contract": "IRON-F", "quantity": -10}],
        accounts={"main": {"cash": {"HK_": {"HKD": 500_000}, "CN_": {"CNH": 200_000}}}},
        extra={"initial_markup": 0.2, "maintenance_markup": 0.05},
    )
    ds = run(sc)
    hsi_i, hsi_m = 300_000 * HKD, 240_000 * HKD
    iron_i, iron_m = 800_000 * 0.12 * CNH, 800_000 * 0.10 * CNH
    assert at(ds, "exchange_initial") == pytest.approx(hsi_i + iron_i)
    assert at(ds, "exchange_maintenance") == pytest.approx(hsi_m + iron_m)
    assert at(ds, "initial") == pytest.approx(1.2 * (hsi_i + iron_i))
    assert at(ds, "maintenance") == pytest.approx(1.05 * (hsi_m + iron_m))
    assert at(ds, "equity") == pytest.approx(500_000 * HKD + 200_000 * CNH)
    # per currency: the exchange initial in the margin currency, in its group
    assert at(ds, "currency_exchange_initial", currency_group="HK_", currency="HKD") == pytest.approx(300_000)
    assert at(ds, "currency_exchange_initial", currency_group="CN_", currency="CNH") == pytest.approx(96_000)
    # CNH defaults to the CN_ group; group bases in USD
    assert at(ds, "group_base", currency_group="CN_") == pytest.approx(200_000 * CNH)
    assert at(ds, "group_initial", currency_group="HK_") == pytest.approx(1.2 * hsi_i)
    eq = 500_000 * HKD + 200_000 * CNH
    assert at(ds, "risk_ratio") == pytest.approx(1.2 * (hsi_i + iron_i) / eq)
    assert at(ds, "state") == K.NORMAL


def test_percentage_margin_moves_with_the_price_path():
    sc = scenario(
        [{"contract": "IRON-F", "quantity": 10}],
        accounts={"main": {"cash": {"CN_": {"CNH": 200_000}}}},
        grid={"path": {"IRON": [800, 700, 900]}},
        extra={"initial_markup": 0.0},
    )
    ds = run(sc)
    np.testing.assert_allclose(at(ds, "exchange_initial"), np.array([800, 700, 900]) * 1000 * 0.12 * CNH)
    # futures variation since the settlement price counts in equity
    np.testing.assert_allclose(at(ds, "equity"), (200_000 + np.array([0, -100, 100]) * 1000) * CNH)


def test_span_requirement_in_its_group_and_currency():
    # ES: SPAN with a 6 % price scan: 2 x 5000 x 50 x 0.06 = 30,000 USD, NonHK_ by currency
    sc = scenario(
        [{"contract": "ES-F", "quantity": 2}],
        accounts={"main": {"cash": {"NonHK_": {"USD": 100_000}}}},
        span={"combined_commodities": {"ES": {"price_scan": 0.06, "vol_scan": 0.04}}},
    )
    ds = run(sc)
    assert at(ds, "exchange_maintenance") == pytest.approx(30_000)
    assert at(ds, "initial") == pytest.approx(33_000)  # house mark-up 10 %
    assert at(ds, "currency_exchange_initial", currency_group="NonHK_", currency="USD") == pytest.approx(
        30_000
    )
    assert at(ds, "initial_span") == pytest.approx(33_000)


def test_option_value_is_excluded_from_equity():
    sc = scenario(
        [{"contract": "ES-P", "quantity": 1}],
        accounts={"main": {"cash": {"NonHK_": {"USD": 50_000}}}},
        contracts={
            "ES-P": {
                "type": "put",
                "underlying": "ES",
                "option_on": "future",
                "strike": 5000,
                "expiry": "2026-06-19",
                "multiplier": 50,
                "price": 120,
            }
        },
        products={},
        span={"combined_commodities": {"ES": {"price_scan": 0.06, "vol_scan": 0.04}}},
    )
    ds = run(sc)
    assert at(ds, "equity") == pytest.approx(50_000)
    assert at(ds, "option_value_excluded") == pytest.approx(120 * 50)


@pytest.mark.parametrize(
    ("equity", "state"),
    [
        (1_000_000, K.NORMAL),
        (120_001, K.NORMAL),
        (120_000, K.MARGIN_CALL),  # general risk ratio exactly 100 %
        (90_000, K.MARGIN_CALL),
        (80_001, K.MARGIN_CALL),
        (80_000, K.FORCED_LIQUIDATION),  # maintenance risk ratio exactly 100 %
        (10_000, K.FORCED_LIQUIDATION),
        (0, K.FORCED_LIQUIDATION),
        (-5_000, K.FORCED_LIQUIDATION),
    ],
)
def test_risk_state(equity, state):
    assert K.risk_state(np.array([equity]), np.array([120_000.0]), np.array([80_000.0]))[0] == state


def test_risk_ratios():
    np.testing.assert_allclose(
        K.risk_ratio(np.array([50.0, 0.0, 10.0, 10.0]), np.array([200.0, -5.0, 0.0, -1.0])),
        [0.25, 0.0, np.inf, np.inf],
    )


@settings(max_examples=200, deadline=None)
@given(
    e1=st.floats(-1e6, 1e7, allow_nan=False),
    e2=st.floats(-1e6, 1e7, allow_nan=False),
    maint=st.floats(0, 1e6, allow_nan=False),
    extra=st.floats(0, 1e6, allow_nan=False),
)
def test_state_is_monotone_in_equity(e1, e2, maint, extra):
    lo, hi = min(e1, e2), max(e1, e2)
    s = K.risk_state(np.array([lo, hi]), np.array([maint + extra] * 2), np.array([maint] * 2))
    assert s[1] <= s[0]


# ----------------------------------------------------------------------------------------------------
# deadlines
# ----------------------------------------------------------------------------------------------------

HOL = business_holidays("XHKG", 2025, 2027)


def deadline(t: str) -> str:
    out = K.call_deadline(
        np.array([t], dtype="datetime64[s]"), cutoff_minutes=720, deadline_minutes=960, holidays=HOL
    )
    return str(out[0])


@pytest.mark.parametrize(
    ("raised", "due"),
    [
        ("2026-03-10T11:59:00", "2026-03-10T16:00:00"),  # Tuesday morning: same day
        ("2026-03-10T12:00:00", "2026-03-10T16:00:00"),  # 12:00 is still the morning window
        ("2026-03-10T12:01:00", "2026-03-11T16:00:00"),  # afternoon: next business day
        ("2026-03-10T00:01:00", "2026-03-10T16:00:00"),
        ("2026-03-11T00:00:00", "2026-03-11T16:00:00"),  # midnight closes the evening of the 10th
        ("2026-03-13T15:00:00", "2026-03-16T16:00:00"),  # Friday afternoon: Monday
        ("2026-03-13T10:00:00", "2026-03-13T16:00:00"),  # Friday morning: Friday
        ("2026-03-14T10:00:00", "2026-03-16T16:00:00"),  # Saturday: next business day
        ("2026-02-16T14:00:00", "2026-02-20T16:00:00"),  # the day before Chinese New Year (17-19 Feb)
        ("2026-02-16T09:00:00", "2026-02-16T16:00:00"),
        ("2026-04-02T13:00:00", "2026-04-08T16:00:00"),  # Easter: Good Friday, 6-7 April closed
        ("2026-12-24T12:30:00", "2026-12-28T16:00:00"),  # Christmas Day, then the weekend
    ],
)
def test_margin_call_deadline(raised, due):
    assert deadline(raised) == due


def test_holidays_come_from_the_calendar_library():
    days = set(HOL.astype(str).tolist())
    assert {"2026-02-17", "2026-02-18", "2026-02-19", "2026-12-25"} <= days
    assert "2026-02-16" not in days
    with pytest.raises(InputError, match="unknown holiday calendar"):
        business_holidays("NOT-A-MARKET", 2026, 2026)


def test_state_and_deadline_along_the_path():
    """The scenario file: a call raised at 14:00 before Chinese New Year is due Friday 16:00."""
    ds = account_margin(marginsim.load(CALL))
    assert at(ds, "state").tolist() == [0, 0, 0, 1, 1]
    dl = at(ds, "deadline")
    assert np.isnat(dl[:3]).all()
    assert str(dl[3]) == str(dl[4]) == "2026-02-20T16:00:00"
    assert str(at(ds, "call_time")[4]) == "2026-02-16T14:00:00"
    # equity by hand: cash + HSI / ES / IRON variation at the last step
    hsi = 1_500_000 + 8 * 50 * (23_400 - 25_000)
    es = 60_000 + 2 * 50 * (5900 - 6000)
    iron = 250_000 + 20 * 100 * (780 - 800)
    assert at(ds, "equity")[4] == pytest.approx(hsi * 0.1282 + es + iron * 0.1389)
    # initial: HSI fixed 8 x 120,000 HKD, ES SPAN 6 %, IRON 12 % of notional; all x 1.10
    init = 1.1 * (8 * 120_000 * 0.1282 + 2 * 5900 * 50 * 0.06 + 20 * 100 * 780 * 0.12 * 0.1389)
    assert at(ds, "initial")[4] == pytest.approx(init)
    assert at(ds, "equity")[4] > at(ds, "maintenance")[4]


def test_call_outstanding_keeps_its_deadline_and_goes_overdue():
    sc = scenario(
        [{"contract": "HSI-F", "quantity": 1}],
        accounts={"main": {"cash": {"HK_": {"HKD": 115_000}}}},
        grid={"path": {"HSI": [20000, 19850, 19800, 19700, 20200]}},
        as_of="2026-03-10T11:00:00",
        extra={
            "step_times": [
                "2026-03-10T11:00",
                "2026-03-10T11:30",
                "2026-03-10T15:00",
                "2026-03-10T16:30",
                "2026-03-10T17:00",
            ]
        },
    )
    ds = run(sc)
    # initial 110,000 HKD: equity 115,000 - 50 x (20000 - p)
    assert at(ds, "state").tolist() == [0, 1, 1, 1, 0]
    dl = at(ds, "deadline").astype(str).tolist()
    assert dl[1:4] == ["2026-03-10T16:00:00"] * 3  # raised at 11:30: same day
    assert at(ds, "overdue").tolist() == [False, False, False, True, False]


# ----------------------------------------------------------------------------------------------------
# 2. liquidation plan
# ----------------------------------------------------------------------------------------------------


def test_liquidation_plan_largest_release_first():
    # HSI: broker initial 110,000 HKD (13,750 USD) per contract; IRON: 800 x 100 x 12 % x 1.1 = 10,560 CNH
    # (1,478.4 USD) per contract. Equity 40,000 USD; initial 4 x 13,750 + 10 x 1,478.4 = 69,784.
    sc = scenario(
        [{"contract": "IRON-F", "quantity": 10}, {"contract": "HSI-F", "quantity": 4}],
        accounts={"main": {"cash": {"HK_": {"HKD": 200_000}, "CN_": {"CNH": 100_000}}}},
        products={
            "HSI-F": {"currency_group": "HK_", "margin": HSI_FIXED, "fee_per_contract": 40},
            "IRON-F": {"margin": {"type": "percentage", "initial": 0.12, "maintenance": 0.10}},
        },
        extra={"liquidation": {"fee_per_contract_usd": 2.0}},
    )
    ds = run(sc)
    equity = 200_000 * HKD + 100_000 * CNH  # 39,000
    maint = 4 * 80_000 * HKD + 10 * 80_000 * 0.10 * CNH  # 51,120
    assert at(ds, "equity") == pytest.approx(equity)
    assert at(ds, "maintenance") == pytest.approx(maint)
    assert at(ds, "state") == K.FORCED_LIQUIDATION
    assert str(ds["deadline"].sel(account="main").values) == "2026-03-10T17:00:00"  # immediate
    # need = 69,784 - 39,000 = 30,784. HSI gains 13,750 - 40 x 0.125 = 13,745 per contract:
    # 2 contracts give 27,490, the 3rd covers the rest -> 3 HSI closed, IRON untouched.
    rows = ds["liquidation_account"].values == "main"
    assert ds["liquidation_contract"].values[rows].tolist() == ["HSI-F"]
    assert ds["close"].values[rows].tolist() == [3.0]
    assert at(ds, "liquidation_fees") == pytest.approx(3 * 40 * HKD)
    after = equity - 3 * 40 * HKD - (13_750 + 10 * 1478.4)
    assert at(ds, "available_after_liquidation") == pytest.approx(after)
    assert after >= 0 and bool(at(ds, "liquidation_complete"))


def test_liquidation_realises_losses_and_spares_hedges():
    # a calendar spread (SPAN nets the legs) plus an outright: closing a spread leg raises margin,
    # so only the outright goes (leave-one-out release)
    contracts = {
        "ES-M": {"type": "future", "underlying": "ES", "multiplier": 50, "expiry": "2026-06-19"},
        "ES-U": {"type": "future", "underlying": "ES", "multiplier": 50, "expiry": "2026-09-18"},
        "IRON-F": {"type": "future", "underlying": "IRON", "multiplier": 100, "expiry": "2026-05-15"},
    }
    spread = {"priority": 1, "rate": 500, "legs": [{"tier": 0, "side": "A"}, {"tier": 0, "side": "B"}]}
    sc = scenario(
        [
            {"contract": "ES-M", "quantity": 5},
            {"contract": "ES-U", "quantity": -5},
            {"contract": "IRON-F", "quantity": 30},
        ],
        contracts=contracts,
        products={"IRON-F": {"margin": {"type": "percentage", "initial": 0.12, "maintenance": 0.10}}},
        accounts={"main": {"cash": {"NonHK_": {"USD": 20_000}, "CN_": {"CNH": 330_000}}}},
        grid={"path": {"IRON": [800, 700]}},
        span={
            "combined_commodities": {"ES": {"price_scan": 0.06, "vol_scan": 0.04, "intra_spreads": [spread]}}
        },
        extra={"liquidation": {"fee_per_contract_usd": 2.0}},
    )
    ds = run(sc)
    assert at(ds, "state").tolist() == [K.NORMAL, K.FORCED_LIQUIDATION]
    assert ds.attrs["liquidation_point"] == "step=1"  # the first step in forced liquidation
    equity = 20_000 + (330_000 - 30 * 100 * 100) * CNH  # 24,200
    spread_init = 1.1 * 5 * 500  # 5 spreads x 500 USD, x 1.10
    iron_init = 1.1 * 30 * 100 * 700 * 0.12 * CNH
    assert at(ds, "initial")[1] == pytest.approx(spread_init + iron_init)
    # need 17,358; an IRON contract releases 1,293.6 and costs a 2 USD fee: ceil(17,358 / 1,291.6) = 14
    rows = ds["liquidation_account"].values == "main"
    assert ds["liquidation_contract"].values[rows].tolist() == ["IRON-F"]
    assert ds["close"].values[rows].tolist() == [14.0]
    # realised loss: 100 CNH x 100 per contract closed
    assert at(ds, "liquidation_realised_pnl") == pytest.approx(-14 * 100 * 100 * CNH)
    assert at(ds, "liquidation_fees") == pytest.approx(28.0)
    assert at(ds, "available_after_liquidation") == pytest.approx(
        equity - 28 - spread_init - iron_init * 16 / 30
    )
    assert bool(at(ds, "liquidation_complete"))


def test_greedy_close_kernel():
    n = K.greedy_close(
        np.array([0, 0, 0, 1, 1]),
        np.array([10.0, 5, 1, 3, 2]),
        np.array([2.0, 4, 5, 1, 10]),
        np.array([27.0, 6.0]),
    )
    assert n.tolist() == [2, 2, 0, 1, 2]


# ----------------------------------------------------------------------------------------------------
# 3. currency groups and the forced conversion / transfer planner
# ----------------------------------------------------------------------------------------------------

U3 = np.array([HKD, 1.0, CNH])  # HKD, USD, CNH


def check_plan(b, r, q, u, plan):
    after = K.replay(b, plan.movements)
    scale = np.abs(b * u).sum() + 1.0
    assert (after >= r - 1e-7 * scale).all(), after - r
    assert ((after * u).sum(axis=1) >= q - 1e-7 * scale).all()
    # value is conserved by every movement
    assert (after * u).sum() == pytest.approx((b * u).sum())
    for m in plan.movements:
        assert m.amount > 0
        assert m.rate == pytest.approx(u[m.currency] / u[m.to_currency])


def test_transfer_only_plan_beats_conversions():
    b = np.array([[10_000.0, 0, 0], [300_000, 20_000, 0], [0, 0, 0]])
    r = np.array([[80_000.0, 0, 0], [0, 5_000, 0], [0, 0, 0]])
    q = np.array([80_000 * HKD * 1.1, 5_500, 0])
    plan = K.plan_movements(b, r, q, U3)
    assert plan.rule == "transfers" and plan.complete
    assert {m.kind for m in plan.movements} == {"transfer"}
    check_plan(b, r, q, U3, plan)
    # the HKD shortfall (70,000) and the group's (8,000 HKD more) move as HKD
    assert sum(m.amount for m in plan.movements if m.currency == 0) == pytest.approx(78_000)


def test_conversion_plan_fewest_currencies_within_group_first():
    # HK_ short of HKD; it holds USD (within-group) and CN_ holds CNH (cross-group): one currency,
    # within the group, is preferred
    b = np.array([[10_000.0, 20_000, 0], [0, 0, 0], [0, 0, 500_000]])
    r = np.array([[80_000.0, 0, 0], [0, 0, 0], [0, 0, 0]])
    q = np.array([80_000 * HKD, 0, 0])
    plan = K.plan_movements(b, r, q, U3)
    assert plan.rule == "conversions" and plan.complete
    assert plan.currencies_converted == (1,)
    assert all(m.from_group == m.to_group == 0 for m in plan.movements)
    check_plan(b, r, q, U3, plan)
    assert plan.movements[0].amount == pytest.approx(70_000 * HKD)


def test_cross_group_conversion_when_nothing_else_works():
    b = np.array([[0.0, 0, 0], [0, 100_000, 0], [50_000, 0, 10_000]])
    r = np.array([[0.0, 0, 0], [0, 0, 0], [0, 0, 96_000]])
    q = np.array([0, 0, 96_000 * CNH])
    plan = K.plan_movements(b, r, q, U3)
    assert plan.complete
    check_plan(b, r, q, U3, plan)
    # one currency sold; HKD sits in CN_ itself (within the group) and is worth 6,250 USD; the
    # rest must come from USD across groups: fewest currencies wins -> USD only, across groups
    assert len(plan.currencies_converted) == 1


def test_no_plan_when_every_test_is_met():
    b = np.array([[100_000.0, 0, 0], [0, 10_000, 0], [0, 0, 0]])
    plan = K.plan_movements(b, np.zeros((3, 3)), np.zeros(3), U3)
    assert plan.rule == "none" and plan.movements == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bal=st.lists(st.floats(-50_000, 400_000, allow_nan=False), min_size=9, max_size=9),
    req=st.lists(st.floats(0, 80_000, allow_nan=False), min_size=9, max_size=9),
    markup=st.floats(0, 0.5),
    rates=st.tuples(st.floats(0.05, 2.0), st.floats(0.05, 2.0)),
)
def test_replayed_plan_meets_every_test_when_funds_suffice(bal, req, markup, rates):
    u = np.array([rates[0], 1.0, rates[1]])
    b = np.array(bal).reshape(3, 3)
    r = np.array(req).reshape(3, 3) * (np.arange(9).reshape(3, 3) % 2 == 0)
    q = (r * u).sum(axis=1) * (1 + markup)
    total_needed = np.maximum(q, (r * u).sum(axis=1)).sum()
    plan = K.plan_movements(b, r, q, u)
    if (b * u).sum() >= total_needed * (1 + 1e-9):
        assert plan.complete
        check_plan(b, r, q, u, plan)
    else:  # short in total: the plan only reduces the shortfall
        assert plan.shortfall_after <= plan.shortfall_before + 1e-6


def test_forced_conversion_scenario_replays():
    ds = account_margin(marginsim.load(CONV))
    rules = dict(zip(ds["account"].values.tolist(), ds["conversion_rule"].values.tolist()))
    assert rules["client-a"] == "conversions"
    assert rules["client-b"] == "transfers"
    assert rules["client-c"] == "conversions"
    ccys = ds["currency"].values.tolist()
    groups = ds["currency_group"].values.tolist()
    u = ds["fx_base"].values
    for a, acct in enumerate(ds["account"].values.tolist()):
        assert bool(ds["forced_conversion_needed"].values[a])
        b = ds["balance"].values[a].copy()
        rows = np.flatnonzero(ds["movement_account"].values == acct)
        moves = [
            K.Movement(
                str(ds["kind"].values[i]),
                float(ds["amount"].values[i]),
                ccys.index(ds["movement_currency"].values[i]),
                groups.index(ds["from_group"].values[i]),
                groups.index(ds["to_group"].values[i]),
                ccys.index(ds["to_currency"].values[i]),
                float(ds["rate"].values[i]),
            )
            for i in rows
        ]
        after = K.replay(b, moves)
        assert (after >= ds["currency_exchange_initial"].values[a] - 1e-6).all(), acct
        assert ((after * u).sum(axis=1) >= ds["group_initial"].values[a] - 1e-6).all(), acct
        assert bool(ds["conversion_complete"].values[a])
    # client-a: one conversion within HK_, USD -> HKD 40,000 (the HKD shortfall)
    rows = np.flatnonzero(ds["movement_account"].values == "client-a")
    assert len(rows) == 1
    i = rows[0]
    assert (ds["from_group"].values[i], ds["to_group"].values[i]) == ("HK_", "HK_")
    assert ds["to_amount"].values[i] == pytest.approx(40_000)
    # client-d: the client's instruction comes first, then the broker's top-up
    rows = np.flatnonzero(ds["movement_account"].values == "client-d")
    assert ds["movement_rule"].values[rows[0]] == "client"
    assert ds["amount"].values[rows[0]] == pytest.approx(30_000)


def test_margin_call_and_forced_conversion_are_different_tests():
    # plenty of total funds (no call) but HKD short in HK_
    sc = scenario(
        [{"contract": "HSI-F", "quantity": 1}],
        accounts={"main": {"cash": {"HK_": {"HKD": 50_000}, "NonHK_": {"USD": 100_000}}}},
    )
    ds = run(sc)
    assert at(ds, "state") == K.NORMAL
    assert bool(at(ds, "forced_conversion_needed"))
    assert not bool(at(ds, "conversion_test_met", currency_group="HK_", currency="HKD"))


# ----------------------------------------------------------------------------------------------------
# 4. interest
# ----------------------------------------------------------------------------------------------------


def test_interest_example_1_debit_currency_charged_while_net_positive():
    # USD 8,000 long + EUR short worth USD 3,000: net credit USD 5,000
    sc = scenario(
        [],
        accounts={"main": {"cash": {"NonHK_": {"USD": 8_000, "EUR": -3_000 / 1.1}}}},
        extra={"interest": {"benchmark": {"EUR": 0.02}}},
    )
    ds = run(sc)
    assert at(ds, "credit_interest", currency="USD") == 0.0  # below the first USD 10,000 tier
    # EUR debit: (2 % + 1.5 %) on EUR 2,727.27
    assert at(ds, "debit_interest", currency="EUR") == pytest.approx(3_000 / 1.1 * 0.035)
    assert at(ds, "net_interest_base") == pytest.approx(-3_000 * 0.035)


def test_interest_example_2_short_sale_credit_below_its_tier():
    # net cash USD 12,000 = 6,000 debit in the securities segment + 18,000 short-stock credit
    sc = scenario(
        [{"contract": "XYZ", "quantity": -180}],
        accounts={"main": {"cash": {"NonHK_": {"USD": 12_000}}}},
        market={"XYZ": {"price": 100, "currency": "USD"}},
        contracts={"XYZ": {"type": "stock", "underlying": "XYZ"}},
        products={},
        extra={
            "interest": {"benchmark": {"USD": 0.05}},
            "margin_source": {"stock": "span", "future": "span", "call": "span", "put": "span", "cfd": "cfd"},
        },
        span={"combined_commodities": {"XYZ": {"price_scan": 0.15}}},
    )
    ds = run(sc)
    assert at(ds, "short_credit", currency="USD") == pytest.approx(18_000)
    assert at(ds, "debit_interest", currency="USD") == pytest.approx(6_000 * 0.065)
    assert at(ds, "short_credit_interest", currency="USD") == 0.0  # below USD 100,000
    assert at(ds, "credit_interest", currency="USD") == 0.0


def test_interest_tiers_are_marginal_and_overridable():
    sc = scenario(
        [],
        accounts={"main": {"cash": {"NonHK_": {"USD": 150_000}}, "unsettled": {"NonHK_": {"USD": 20_000}}}},
        extra={
            "interest": {
                "credit_tiers": [
                    {"above_usd": 0, "rate": 0.0},
                    {"above_usd": 10_000, "rate": 0.03},
                    {"above_usd": 100_000, "rate": 0.04},
                ]
            }
        },
    )
    ds = run(sc)
    # settled only: 130,000 = 10,000 at 0 + 90,000 at 3 % + 30,000 at 4 %
    assert at(ds, "credit_interest", currency="USD") == pytest.approx(90_000 * 0.03 + 30_000 * 0.04)
    assert at(ds, "net_interest_daily", currency="USD") == pytest.approx((2700 + 1200) / 360)


def test_missing_benchmark_is_an_error():
    sc = scenario(
        [],
        accounts={"main": {"cash": {"NonHK_": {"USD": 1_000, "EUR": -100}}}},
        extra={"interest": {"benchmark": {}}},
    )
    sc["account"]["interest"]["benchmark"] = {"USD": 0.04}
    sc["fx"]["XAU"] = 2000.0
    sc["account"]["accounts"]["main"]["cash"]["NonHK_"]["XAU"] = -1.0
    with pytest.raises(InputError, match="no benchmark rate for XAU"):
        run(sc)


# ----------------------------------------------------------------------------------------------------
# 5. eligibility
# ----------------------------------------------------------------------------------------------------


def test_opening_activation_and_product_class():
    base = {"cash": {"HK_": {"HKD": 2_000_000}, "CN_": {"CNH": 500_000}}}
    sc = scenario(
        [{"contract": "IRON-F", "quantity": 1, "account": a} for a in ("pro", "bal", "bal-x", "cons")],
        accounts={
            "pro": {**base, "investor_class": "professional", "opening_assets": {"USD": 499_999}},
            "bal": {
                **base,
                "investor_class": "balanced",
                "controlled_approved": True,
                "deposits": [{"amount": 50_000}, {"amount": 400_000, "currency": "HKD"}],
            },
            "bal-x": {
                "cash": {"CN_": {"CNH": 100_000}},
                "investor_class": "balanced",
                "controlled_approved": True,
                "deposits": [{"amount": 99_999}],
            },
            "cons": {**base, "investor_class": "conservative", "controlled_approved": True},
        },
        products={
            "IRON-F": {"product_class": "controlled", "margin": {"type": "percentage", "initial": 0.1}}
        },
    )
    ds = run(sc)
    allowed = dict(
        zip(
            ds["account"].values[ds["position_account"].values].tolist(),
            ds["product_allowed"].values.tolist(),
        )
    )
    # balanced: approved and equity 2,000,000 x 0.125 + 500,000 x 0.14 = 320,000 USD < 500,000,
    # no experience -> not allowed; professional always; conservative never
    assert allowed == {"pro": 1, "bal": 0, "bal-x": 0, "cons": 0}
    sc["account"]["accounts"]["bal"]["derivatives_experience"] = True
    ds = run(sc)
    assert ds["product_allowed"].values[1] == 1
    assert at(ds, "opening_threshold_met", "pro") == 0  # 499,999 < 500,000
    assert at(ds, "trading_activated", "bal") == 1  # 50,000 + 400,000 x 0.125 = 100,000
    assert at(ds, "trading_activated", "bal-x") == 0
    assert at(ds, "trading_activated", "pro") == -1  # not checked


def test_position_limits_and_reporting_levels():
    sc = scenario(
        [
            {"contract": "HSI-F", "quantity": 300},
            {"contract": "HSI-F", "quantity": 200},
            {"contract": "IRON-F", "quantity": -99},
        ],
        accounts={"main": {"cash": {"HK_": {"HKD": 1e8}, "CN_": {"CNH": 1e7}}}},
        products={
            "HSI-F": {"margin": HSI_FIXED, "position_limit": 600, "reporting_level": 500},
            "IRON": {
                "margin": {"type": "percentage", "initial": 0.1},
                "position_limit": 100,
                "reporting_level": 99,
            },
        },
    )
    ds = run(sc)
    assert ds["reportable"].values.tolist() == [True, True, True]  # 500 net HSI; |-99| IRON
    assert ds["over_position_limit"].values.tolist() == [False, False, False]
    assert ds["product_net_quantity"].values.tolist() == [500, 500, -99]
    assert ds["position_product"].values.tolist() == ["HSI-F", "HSI-F", "IRON"]


def _stock_sc(data: dict, *, quantity: float = 1000) -> dict:
    return scenario(
        [{"contract": "FOO", "quantity": quantity}],
        accounts={"main": {"cash": {"NonHK_": {"USD": 100_000}}}},
        market={"FOO": {"price": 20.0, "currency": "USD", "domicile": "DE", "listing": "DE"}},
        contracts={"FOO": {"type": "stock", "underlying": "FOO"}},
        products={},
        as_of="2026-03-10T17:00:00",
        extra={"stocks": {"FOO": data}},
    )


GOOD = {
    "listed_since": "2025-12-01",  # 99 days
    "electronic_quotes": True,
    "median_volume_shares": 100_000,
    "free_float_cap_usd": [6e8] * 10,
}


@pytest.mark.parametrize(
    ("change", "ready"),
    [
        ({}, True),
        ({"listed_since": "2025-12-11"}, False),  # 89 days
        ({"electronic_quotes": False}, False),
        ({"median_volume_shares": 99_999}, True),  # but 99,999 x 20 USD >= 500,000 USD
        ({"median_volume_shares": 20_000}, False),  # 400,000 USD
        ({"free_float_cap_usd": [6e8] * 9 + [4.99e8]}, False),
        ({"free_float_cap_usd": [6e8] * 9}, False),  # fewer than 10 days of data
        ({"failing_since": "2026-03-03"}, True),  # 5th business day after: 10 March, still in grace
        ({"failing_since": "2026-03-02"}, False),  # grace ended on 9 March
    ],
)
def test_ready_market(change, ready):
    ds = run(_stock_sc({**GOOD, **change}))
    assert bool(ds["ready_market"].sel(stock="FOO")) is ready
    # no loan value: the long stock is margined at 100 % of its value
    source = ds["position_source"].values[0]
    assert source == ("portfolio_margin" if ready else "no_loan_value")
    if not ready:
        assert at(ds, "initial_no_loan_value") == pytest.approx(20_000)


def test_foreign_stock_without_data_is_an_error():
    sc = _stock_sc(GOOD)
    del sc["account"]["stocks"]
    with pytest.raises(InputError, match="ready-market data"):
        run(sc)


def test_withdrawable_excludes_lme_profits_not_due():
    sc = scenario(
        [{"contract": "HSI-F", "quantity": 1}],
        accounts={
            "main": {
                "cash": {"HK_": {"HKD": 400_000}, "NonHK_": {"USD": 30_000}},
                "lme_profits": [
                    {"amount": 8_000, "currency": "USD", "prompt_date": "2026-04-15"},
                    {"amount": 2_000, "currency": "USD", "prompt_date": "2026-03-01"},
                ],
            }
        },
        extra={"withdrawal_buffer": 0.1},
    )
    ds = run(sc)
    equity = 400_000 * HKD + 30_000 + 10_000
    assert at(ds, "equity") == pytest.approx(equity)  # usable for margin
    init = 110_000 * HKD
    assert at(ds, "withdrawable") == pytest.approx(equity - 8_000 - init * 1.1)
    assert at(ds, "lme_not_due") == pytest.approx(8_000)


# ----------------------------------------------------------------------------------------------------
# interfaces: requirements from other methods, JSON, CLI, bad input
# ----------------------------------------------------------------------------------------------------


def test_requirements_dataset_interface():
    sc = scenario([], accounts={"main": {"cash": {"NonHK_": {"USD": 50_000}}}})
    other = xr.Dataset(
        {"initial": ("account", [60_000.0]), "maintenance": ("account", [40_000.0])},
        coords={"account": ["main"]},
    )
    req = requirements_from_method(other, currency_group="NonHK_", currency="USD")
    ds = run(sc, requirements=req)
    assert at(ds, "initial") == pytest.approx(60_000)  # broker-level: no mark-up
    assert at(ds, "state") == K.MARGIN_CALL


def test_json_contract_and_cli(capsys):
    assert main(["margin", str(CALL), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    acct = out["accounts"]["main"]["account"]
    for key in (
        "equity",
        "initial",
        "maintenance",
        "risk_ratio",
        "maintenance_risk_ratio",
        "state",
        "deadline",
        "currency_groups",
        "forced_conversions",
    ):
        assert key in acct
    assert out["dims"] == {"step": [0, 1, 2, 3, 4]}
    assert acct["state"] == ["normal", "normal", "normal", "margin_call", "margin_call"]
    assert acct["deadline"][3] == "2026-02-20T16:00:00+08:00"
    assert set(acct["currency_groups"]) == {"HK_", "NonHK_", "CN_"}
    assert len(acct["currency_groups"]["HK_"]["base"]) == 5
    assert main(["margin", str(CONV)]) == 0
    text = capsys.readouterr().out
    assert "forced conversion plan" in text and "client-b" in text


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s["account"].update({"bogus": 1}), "unknown key"),
        (
            lambda s: s["account"]["accounts"]["main"]["cash"].update({"XX_": {"USD": 1}}),
            "account.accounts.main.cash",
        ),
        (
            lambda s: s["account"]["accounts"]["main"]["cash"]["NonHK_"].update({"SEK": 1}),
            "no FX rate for SEK",
        ),
        (lambda s: s["account"]["products"].update({"NOPE": {}}), "unknown product"),
        (
            lambda s: s["account"]["products"]["HSI-F"]["margin"].update({"maintenance": 2e5}),
            "maintenance margin above",
        ),
    ],
)
def test_bad_input(mutate, match):
    sc = scenario(
        [{"contract": "HSI-F", "quantity": 1}], accounts={"main": {"cash": {"NonHK_": {"USD": 1.0}}}}
    )
    mutate(sc)
    with pytest.raises(InputError, match=match):
        run(sc)


# ----------------------------------------------------------------------------------------------------
# regressions found by tests/test_method_contract.py (the mixed book of marginsim.testing)
# ----------------------------------------------------------------------------------------------------

MIXED_MARKET = {
    "IDX": {"price": 1000.0, "vol": 0.08, "rate": 0.0},
    "MEGA": {
        "price": 20.0,
        "vol": 0.08,
        "rate": 0.0,
        "dividend_yield": 0.0,
        "market_cap": 1.2e12,
        "shares_outstanding": 4.8e9,
        "adv": 3.0e7,
        "domicile": "US",
        "listing": "US",
        "sector": "technology",
        "product_class": "equity",
    },
    "EUR.USD": {"price": 1.0, "vol": 0.08, "rate": 0.0},
    "US 500": {"price": 3000.0, "vol": 0.08, "rate": 0.0},
}


def mixed(positions: list[dict], cash: dict[str, float], pm_cash: dict[str, float] | None = None) -> dict:
    """A scenario of the mixed book (:func:`marginsim.testing.scenarios`) with fixed prices."""
    return {
        "name": "mixed",
        "as_of": "2026-11-20",
        "currency": "USD",
        "market": MIXED_MARKET,
        "contracts": mixed_contracts(MIXED_MARKET),
        "positions": positions,
        "span": {"combined_commodities": {"IDX": {"price_scan": 0.06, "vol_scan": 0.04}}},
        "portfolio_margin": {"cash": cash if pm_cash is None else pm_cash},
        "cfd": {"client": "retail", "accounts": {a: {"cash": c} for a, c in cash.items()}},
        "account": {},
    }


def test_portfolio_margin_cash_of_an_account_without_stocks():
    # portfolio_margin.cash names a1, which holds a future only: the account layer runs portfolio
    # margin on the stock positions (a0's) and must not make a1 "unknown" to it
    sc = mixed(
        [{"contract": "MEGA", "quantity": 100, "account": "a0"}, {"contract": "IDX-DEC26", "quantity": 1, "account": "a1"}],
        cash={"a0": 1e5, "a1": 1e5},
    )
    sc["cfd"]["accounts"] = {}
    ds = marginsim.margin(sc, methods=["account", "portfolio_margin"])
    acct = ds["account"]
    assert acct["initial_portfolio_margin"].sel(account="a0").item() == pytest.approx(
        ds["portfolio_margin"]["initial"].sel(account="a0").item()
    )
    assert acct["initial_portfolio_margin"].sel(account="a1").item() == 0.0
    assert acct["initial_span"].sel(account="a1").item() > 0.0
    check_method("account", sc)  # chunk by chunk, reordered, JSON


#: A book of the mixed market whose liquidation leave-one-out left an option SPAN does not
#: margin alone in a virtual account (the IndexError the method contract test found).
LIQUIDATION_BOOK = [
    {"contract": "IDX-DEC26", "quantity": 8, "account": "a0"},
    {"contract": "IDX-DEC26", "quantity": -6, "account": "a0"},
    {"contract": "IDX-DEC26", "quantity": -1, "account": "a2"},
    {"contract": "MEGA-C", "quantity": 20, "account": "a0"},
    {"contract": "IDX-MAR27-P", "quantity": -20, "account": "a0"},
    {"contract": "US500-CFD", "quantity": -3, "account": "a2", "open_price": 3000.0, "opened": "2026-11-10T08:00:00"},
]


def test_an_option_span_does_not_margin_has_no_span_line():
    # MEGA-C (an option on a stock) goes to SPAN by account.margin_source, but SPAN does not margin
    # it: it has no combined commodity, so no SPAN line and no net option value (it used to index
    # the last combined commodity, and an IndexError when the leave-one-out left it alone)
    book = LIQUIDATION_BOOK
    ds = marginsim.margin(mixed(book, cash={"a0": 1_000.0, "a2": 1_000.0}), methods=["account"])["account"]
    assert (ds["state"].values == K.FORCED_LIQUIDATION).all()
    assert ds["liquidation_needed"].values.all()
    assert (ds["liquidation_contracts"].values > 0).all()
    without = [p for p in book if p["contract"] != "MEGA-C"]
    ds2 = marginsim.margin(mixed(without, cash={"a0": 1_000.0, "a2": 1_000.0}), methods=["account"])["account"]
    assert ds["initial_span"].sel(account="a0").item() == ds2["initial_span"].sel(account="a0").item()
    # a book of that option alone: no SPAN requirement, no error
    alone = marginsim.margin(
        mixed([{"contract": "MEGA-C", "quantity": 20, "account": "a0"}], cash={"a0": 1_000.0}), methods=["account"]
    )["account"]
    assert alone["initial_span"].item() == 0.0
    check_method("account", mixed(book, cash={"a0": 1_000.0, "a2": 1_000.0}))  # chunk by chunk, reordered, JSON
