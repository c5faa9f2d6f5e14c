"""Risk-based portfolio margin (spec/portfolio-margin.md): test facts, hand-computed components,
single-name methods, binding logic, broadcasting, the JSON contract, and property tests."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

import marginsim
from marginsim.errors import InputError
from marginsim.kernels import portfolio_margin as K
from marginsim.methods import REGISTRY, applicable_methods
from marginsim.methods.portfolio_margin import COMPONENTS, scan_scenario_set

AS_OF = "2026-11-20"
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def stock(und):
    return {"type": "stock", "underlying": und}


def option(kind, und, strike, expiry="2027-02-19", mult=100, exercise="european", **kw):
    return {
        "type": kind,
        "underlying": und,
        "option_on": "spot",
        "exercise": exercise,
        "strike": strike,
        "expiry": expiry,
        "multiplier": mult,
        **kw,
    }


def scenario(market, contracts, positions, pm=None, **kw):
    sc = {
        "name": "t",
        "as_of": AS_OF,
        "currency": "USD",
        "market": market,
        "contracts": contracts,
        "positions": positions,
        "methods": ["portfolio_margin"],
        **kw,
    }
    if pm is not None:
        sc["portfolio_margin"] = pm
    return sc


def run(sc, **kw):
    return marginsim.margin(sc, **kw)["portfolio_margin"]


def acct(ds, name="main"):
    return ds.sel(account=name)


def val(ds, var, account="main", **sel):
    return float(ds[var].sel(account=account, **sel))


def bs(s, k, t, vol, r=0.0, q=0.0, call=True):
    """Independent Black-Scholes-Merton value (European, continuous dividend yield)."""
    if t <= 0 or vol <= 0:
        f = s * math.exp((r - q) * t)
        return math.exp(-r * t) * max((f - k) if call else (k - f), 0.0)
    sd = vol * math.sqrt(t)
    d1 = (math.log(s / k) + (r - q) * t) / sd + 0.5 * sd
    d2 = d1 - sd
    if call:
        return s * math.exp(-q * t) * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    return k * math.exp(-r * t) * norm.cdf(-d2) - s * math.exp(-q * t) * norm.cdf(-d1)


def one_stock(price=75.0, qty=1000.0, pm=None, **und):
    return scenario(
        {"ABC": {"price": price, "vol": 0.3, **und}},
        {"ABC": stock("ABC")},
        [{"contract": "ABC", "quantity": qty}],
        pm,
    )


T_FEB = (np.datetime64("2027-02-19") - np.datetime64(AS_OF)).astype(int) / 365.0


# ------------------------------------------------------------------------------------------------
# the spec's test facts
# ------------------------------------------------------------------------------------------------


def test_fact_1000_shares_at_75_scan_15_percent():
    ds = run(one_stock())
    assert val(ds, "scan") == pytest.approx(11_250.0, abs=1e-6)
    assert val(ds, "group_scan", group="ABC") == pytest.approx(11_250.0, abs=1e-6)
    # the loss grid: ten points +/-3..15 %, a stock has no vol risk
    grid = ds["scan_loss"].sel(account="main", group="ABC")
    assert grid.shape == (10, 3)
    expected = -np.array([-15, -12, -9, -6, -3, 3, 6, 9, 12, 15]) / 100 * 75_000
    np.testing.assert_allclose(grid.values, np.repeat(expected[:, None], 3, axis=1), atol=1e-6)
    np.testing.assert_allclose(
        ds["price_move"].sel(group="ABC").values,
        [-0.15, -0.12, -0.09, -0.06, -0.03, 0.03, 0.06, 0.09, 0.12, 0.15],
    )


def test_fact_long_straddle_charged_the_option_minimum():
    # 100 ATM calls + 100 ATM puts, multiplier 100, one month: the worst scan loss is small
    sc = scenario(
        {"XYZ": {"price": 100.0, "vol": 0.25, "rate": 0.03}},
        {
            "C": option("call", "XYZ", 100, "2026-12-18", exercise="american"),
            "P": option("put", "XYZ", 100, "2026-12-18", exercise="american"),
        },
        [{"contract": "C", "quantity": 100}, {"contract": "P", "quantity": 100}],
    )
    ds = run(sc)
    assert val(ds, "scan") < 7_500.0
    assert val(ds, "minimum") == pytest.approx(200 * 0.375 * 100)
    assert val(ds, "maintenance") == pytest.approx(7_500.0)
    assert str(ds["binding"].sel(account="main").item()) == "minimum"
    # with the vol shift switched off (0 is allowed) the straddle gains at every point
    ds0 = run({**sc, "portfolio_margin": {"vol_shift": 0}})
    assert val(ds0, "scan") == 0.0
    assert val(ds0, "maintenance") == pytest.approx(7_500.0)


# ------------------------------------------------------------------------------------------------
# theoretical-value scan: ranges by product class, vol shifts, revaluation
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "product_class, long_loss, short_loss",
    [
        ("equity", 0.15, 0.15),
        ("sector_index", 0.15, 0.15),
        ("broad_index_high_cap", 0.08, 0.06),
        ("broad_index", 0.10, 0.10),
    ],
)
def test_scan_range_by_product_class(product_class, long_loss, short_loss):
    for qty, frac in ((10.0, long_loss), (-10.0, short_loss)):
        ds = run(one_stock(price=5000.0, qty=qty, product_class=product_class))
        assert val(ds, "scan") == pytest.approx(frac * 50_000.0)
        assert str(ds["product_class"].sel(group="ABC").item()) == product_class


def test_high_cap_index_points_are_asymmetric():
    ds = run(one_stock(price=5000.0, qty=1.0, product_class="broad_index_high_cap"))
    np.testing.assert_allclose(
        ds["price_move"].sel(group="ABC").values,
        [-0.08, -0.064, -0.048, -0.032, -0.016, 0.012, 0.024, 0.036, 0.048, 0.06],
    )


def test_scan_ranges_overridable_and_dynamic_house_scan():
    ds = run(one_stock(pm={"ranges": {"equity": {"up": 0.2, "down": 0.25}}}))
    assert val(ds, "scan") == pytest.approx(0.25 * 75_000)
    # other classes keep the FINRA minimums
    ds = run(
        one_stock(
            price=5000.0,
            qty=1.0,
            product_class="broad_index",
            pm={"ranges": {"equity": {"up": 0.2, "down": 0.2}}},
        )
    )
    assert val(ds, "scan") == pytest.approx(500.0)
    # a house scan for a listing country widens the range where it is wider
    ds = run(one_stock(listing="JP", pm={"dynamic_house_scan": {"JP": 0.2}}))
    assert val(ds, "scan") == pytest.approx(0.2 * 75_000)
    ds = run(one_stock(listing="JP", pm={"dynamic_house_scan": {"JP": 0.1}}))
    assert val(ds, "scan") == pytest.approx(0.15 * 75_000)


def _index_call(pm):
    return scenario(
        {
            "IDX": {
                "price": 1000.0,
                "vol": 0.2,
                "rate": 0.03,
                "dividend_yield": 0.01,
                "product_class": "broad_index",
            }
        },
        {"C": option("call", "IDX", 1000, mult=10)},
        [{"contract": "C", "quantity": 3}],
        pm,
    )


@pytest.mark.parametrize(
    "pm, dv",
    [({"vol_shift": 0}, lambda v: 0.0), ({"vol_shift": 0.05}, lambda v: 0.05), ({}, lambda v: 0.15 * v)],
)
def test_vol_shift_absolute_relative_and_zero(pm, dv):
    ds = run(_index_call(pm))
    s, k, t, v, r, q = 1000.0, 1000.0, T_FEB, 0.2, 0.03, 0.01
    now = bs(s, k, t, v, r, q)
    grid = np.array(
        [
            [-(bs(s * (1 + m), k, t, max(v + p * dv(v), 0.0), r, q) - now) * 30 for p in (-1, 0, 1)]
            for m in (-0.1, -0.08, -0.06, -0.04, -0.02, 0.02, 0.04, 0.06, 0.08, 0.1)
        ]
    )
    np.testing.assert_allclose(
        ds["scan_loss"].sel(account="main", group="IDX").values, grid, rtol=1e-9, atol=1e-7
    )
    assert val(ds, "scan") == pytest.approx(max(grid.max(), 0.0), rel=1e-9)


def test_vol_shift_given_twice_is_an_input_error():
    with pytest.raises(InputError, match="vol_shift"):
        run(_index_call({"vol_shift": 0.05, "vol_shift_relative": 0.1}))


def test_american_put_is_revalued_with_early_exercise():
    # a deep in-the-money American put is worth at least its intrinsic value: the scan loss of a
    # short position at -15 % is at least the intrinsic change, more than the European model gives
    def book(exercise):
        return scenario(
            {"XYZ": {"price": 100.0, "vol": 0.3, "rate": 0.05}},
            {"P": option("put", "XYZ", 150, "2027-11-19", exercise=exercise)},
            [{"contract": "P", "quantity": -1}],
            {"vol_shift": 0},
        )

    am, eu = run(book("american")), run(book("european"))
    assert val(am, "scan") == pytest.approx(1500.0, rel=1e-3)  # delta -1: exercised now
    assert val(eu, "scan") < val(am, "scan")


def test_option_premium_implies_its_vol():
    ds = run(
        scenario(
            {"XYZ": {"price": 100.0, "rate": 0.0}},
            {"C": option("call", "XYZ", 100, price=bs(100, 100, T_FEB, 0.4))},
            [{"contract": "C", "quantity": -1}],
            {"vol_shift": 0},
        )
    )
    expected = (bs(115, 100, T_FEB, 0.4) - bs(100, 100, T_FEB, 0.4)) * 100
    assert val(ds, "scan") == pytest.approx(expected, rel=1e-6)


def test_scan_scenario_set_is_price_points_times_vol_points():
    s = scan_scenario_set(5)
    assert s.sizes["scenario"] == 30
    assert sorted(set(s["price_move"].values.round(6))) == [
        -1.0,
        -0.8,
        -0.6,
        -0.4,
        -0.2,
        0.2,
        0.4,
        0.6,
        0.8,
        1.0,
    ]
    assert sorted(set(s["vol_move"].values)) == [-1.0, 0.0, 1.0]


# ------------------------------------------------------------------------------------------------
# option minimum
# ------------------------------------------------------------------------------------------------


def test_option_minimum_long_or_short_net_per_contract():
    sc = scenario(
        {"XYZ": {"price": 100.0, "vol": 0.2}},
        {"C": option("call", "XYZ", 300, mult=100), "P": option("put", "XYZ", 20, mult=50)},
        [
            {"contract": "C", "quantity": -4},
            {"contract": "C", "quantity": 1},  # nets to -3 contracts
            {"contract": "P", "quantity": 2},
        ],
        {"vol_shift": 0},
    )
    ds = run(sc)
    assert val(ds, "minimum") == pytest.approx(0.375 * (3 * 100 + 2 * 50))
    assert float(ds["option_contracts"].sel(account="main", group="XYZ")) == 5
    assert str(ds["binding"].sel(account="main").item()) == "minimum"


def test_option_minimum_in_usd_converted_to_the_reporting_currency():
    sc = scenario(
        {"XYZ": {"price": 100.0, "vol": 0.2, "currency": "EUR"}},
        {"C": option("call", "XYZ", 300, mult=100)},
        [{"contract": "C", "quantity": -4}],
        {"vol_shift": 0},
    )
    sc["currency"] = "EUR"
    with pytest.raises(InputError, match="no FX rate for USD"):
        run(sc)
    sc["fx"] = {"USD": 0.9}
    ds = run(sc)
    assert val(ds, "minimum") == pytest.approx(0.375 * 400 * 0.9)


# ------------------------------------------------------------------------------------------------
# extreme scan
# ------------------------------------------------------------------------------------------------


def test_extreme_scan_on_a_short_far_out_of_the_money_put():
    sc = scenario(
        {"XYZ": {"price": 100.0, "vol": 0.25}},
        {"P": option("put", "XYZ", 70, mult=100)},
        [{"contract": "P", "quantity": -10}],
        {"vol_shift": 0},
    )
    ds = run(sc)
    now = bs(100, 70, T_FEB, 0.25, call=False)
    extreme = 0.32 * (bs(55, 70, T_FEB, 0.25, call=False) - now) * 1000
    scan = (bs(85, 70, T_FEB, 0.25, call=False) - now) * 1000
    conc = (bs(70, 70, T_FEB, 0.25, call=False) - now) * 1000
    assert val(ds, "extreme") == pytest.approx(extreme, rel=1e-9)
    assert val(ds, "scan") == pytest.approx(scan, rel=1e-9)
    assert val(ds, "concentration") == pytest.approx(conc, rel=1e-9)
    assert extreme > max(scan, conc)
    assert str(ds["binding"].sel(account="main").item()) == "extreme"
    assert val(ds, "maintenance") == pytest.approx(extreme, rel=1e-9)
    # parameters: multiple and cover fraction
    ds = run({**sc, "portfolio_margin": {"vol_shift": 0, "extreme": {"multiple": 2, "cover_fraction": 1}}})
    assert val(ds, "extreme") == pytest.approx((bs(70, 70, T_FEB, 0.25, call=False) - now) * 1000, rel=1e-9)


def test_extreme_down_move_is_capped_at_minus_100_percent():
    ds = run(one_stock(pm={"extreme": {"multiple": 10, "cover_fraction": 1.0}}))
    assert val(ds, "extreme") == pytest.approx(75_000.0)


# ------------------------------------------------------------------------------------------------
# concentration
# ------------------------------------------------------------------------------------------------

THREE = {
    "market": {n: {"price": 100.0, "vol": 0.3, "market_cap": 5e10} for n in ("AAA", "BBB", "CCC")},
    "contracts": {n: stock(n) for n in ("AAA", "BBB", "CCC")},
}


def test_concentration_two_riskiest_at_30_rest_at_5():
    pos = [
        {"contract": "AAA", "quantity": 1000},  # 100k
        {"contract": "BBB", "quantity": -500},  # 50k short: worse side is up
        {"contract": "CCC", "quantity": 200},  # 20k
    ]
    ds = run(scenario(THREE["market"], THREE["contracts"], pos))
    assert val(ds, "concentration") == pytest.approx(30_000 + 15_000 + 1_000)
    drivers = [x for x in ds["concentration_driver"].sel(account="main").values.tolist() if x]
    assert drivers == ["AAA", "BBB"]
    np.testing.assert_allclose(
        ds["concentration_contribution"].sel(account="main").values, [30_000, 15_000, 1_000]
    )
    # the scan (15 % of 170k) is smaller: concentration binds
    assert val(ds, "scan") == pytest.approx(25_500)
    assert str(ds["binding"].sel(account="main").item()) == "concentration"
    d = marginsim.margin(scenario(THREE["market"], THREE["contracts"], pos)).to_dict()
    assert d["accounts"]["main"]["portfolio_margin"]["concentration_drivers"] == ["AAA", "BBB"]


def test_concentration_parameters():
    pos = [{"contract": n, "quantity": q} for n, q in (("AAA", 1000), ("BBB", 500), ("CCC", 200))]
    pm = {"concentration": {"top_n": 1, "top_stress": 0.4, "rest_stress": 0.1}}
    ds = run(scenario(THREE["market"], THREE["contracts"], pos, pm))
    assert val(ds, "concentration") == pytest.approx(40_000 + 5_000 + 2_000)


def test_concentration_riskiest_is_by_loss_not_by_size():
    # AAA is large but hedged with deep ITM puts: its 30 % loss is small, so BBB and CCC are the riskiest
    mkt = {**THREE["market"]}
    contracts = {**THREE["contracts"], "AAA-P": option("put", "AAA", 200, mult=100)}
    pos = [
        {"contract": "AAA", "quantity": 10_000},
        {"contract": "AAA-P", "quantity": 100},
        {"contract": "BBB", "quantity": 500},
        {"contract": "CCC", "quantity": 200},
    ]
    ds = run(scenario(mkt, contracts, pos, {"vol_shift": 0}))
    drivers = [x for x in ds["concentration_driver"].sel(account="main").values.tolist() if x]
    assert drivers == ["BBB", "CCC"]


# ------------------------------------------------------------------------------------------------
# single-name methods
# ------------------------------------------------------------------------------------------------


def test_market_cap_moves_kernel():
    up, down = K.market_cap_moves(np.array([2e9, 4e8, 5e8, 6e9]), 5e8)
    np.testing.assert_allclose(up, [0.25, 1.25, 1.0, 5e8 / 6e9])
    np.testing.assert_allclose(down, [0.25, 1.0, 1.0, 5e8 / 6e9])
    np.testing.assert_allclose(K.stress_moves(1.25, 1.25), [1.25, -1.0])


def _sn(ds, method):
    return float(ds["single_name_loss"].sel(account="main", group="ABC", single_name_method=method))


def test_small_cap_2bn_is_plus_minus_25_percent():
    ds = run(one_stock(price=50.0, qty=1000, market_cap=2e9))
    assert float(ds["single_name_move_up"].sel(group="ABC", single_name_method="small_cap")) == pytest.approx(
        0.25
    )
    assert float(
        ds["single_name_move_down"].sel(group="ABC", single_name_method="small_cap")
    ) == pytest.approx(0.25)
    assert _sn(ds, "small_cap") == pytest.approx(12_500)
    # the default method does not apply to a stock another method covers
    assert math.isnan(_sn(ds, "default"))
    assert val(ds, "single_name") == pytest.approx(12_500)
    assert str(ds["single_name_driver"].sel(account="main").item()) == "ABC"
    short = run(one_stock(price=50.0, qty=-1000, market_cap=2e9))
    assert val(short, "single_name") == pytest.approx(12_500)


def test_small_cap_400m_falls_to_zero():
    ds = run(one_stock(price=10.0, qty=1000, market_cap=4e8))
    assert float(ds["single_name_move_down"].sel(group="ABC", single_name_method="small_cap")) == 1.0
    assert val(ds, "single_name") == pytest.approx(10_000)  # the whole position
    short = run(one_stock(price=10.0, qty=-1000, market_cap=4e8))
    assert val(short, "single_name") == pytest.approx(12_500)  # up 125 %


def test_small_cap_cut_off_is_a_parameter():
    ds = run(one_stock(price=50.0, qty=1000, market_cap=3e9))  # above the USD 2B default: default method
    assert math.isnan(_sn(ds, "small_cap"))
    assert val(ds, "single_name") == pytest.approx(12_500)  # -25 %
    ds = run(
        one_stock(
            price=50.0, qty=1000, market_cap=3e9, pm={"single_name": {"small_cap": {"max_market_cap": 5e9}}}
        )
    )
    assert _sn(ds, "small_cap") == pytest.approx(50_000 * 5e8 / 3e9)


def test_china_concept_1_5bn():
    ds = run(one_stock(price=20.0, qty=1000, market_cap=1e10, domicile="CN", listing="US"))
    assert _sn(ds, "china_concept") == pytest.approx(20_000 * 0.15)
    assert math.isnan(_sn(ds, "default"))
    # small and China-domiciled: both apply, the largest is kept
    ds = run(one_stock(price=20.0, qty=-1000, market_cap=1e9, domicile="CN"))
    assert _sn(ds, "small_cap") == pytest.approx(20_000 * 0.5)
    assert _sn(ds, "china_concept") == pytest.approx(20_000 * 1.5)
    assert val(ds, "single_name") == pytest.approx(30_000)


def test_china_concept_without_market_cap_is_an_input_error():
    with pytest.raises(InputError, match="market_cap"):
        run(one_stock(domicile="CN"))


@pytest.mark.parametrize("qty, loss", [(1000, 25_000), (-1000, 30_000)])
def test_default_plus_30_minus_25(qty, loss):
    ds = run(one_stock(price=100.0, qty=qty, market_cap=5e10))
    assert _sn(ds, "default") == pytest.approx(loss)
    assert val(ds, "single_name") == pytest.approx(loss)


def test_default_for_all_stocks_switch():
    pm = {"single_name": {"default": {"applies_to_all": True}}}
    ds = run(one_stock(price=50.0, qty=-1000, market_cap=2e9, pm=pm))
    assert _sn(ds, "small_cap") == pytest.approx(12_500)
    assert _sn(ds, "default") == pytest.approx(15_000)
    assert val(ds, "single_name") == pytest.approx(15_000)


def test_hong_kong_property_plus_minus_50():
    hk = {"listing": "HK", "sector": "real_estate", "market_cap": 1e10, "currency": "HKD"}
    sc = one_stock(price=40.0, qty=10_000, **hk)
    sc["fx"] = {"HKD": 0.128}
    ds = run(sc)
    assert _sn(ds, "hk_property") == pytest.approx(0.5 * 400_000 * 0.128)
    assert math.isnan(_sn(ds, "default"))
    # a Hong Kong bank takes the default method
    sc2 = one_stock(price=40.0, qty=10_000, **{**hk, "sector": "financials"})
    sc2["fx"] = {"HKD": 0.128}
    assert _sn(run(sc2), "default") == pytest.approx(0.25 * 400_000 * 0.128)


def test_single_name_revalues_options_and_names_the_driver():
    market = {
        "AAA": {"price": 100.0, "vol": 0.3, "market_cap": 5e10},
        "BBB": {"price": 50.0, "vol": 0.3, "market_cap": 1e9},
    }
    contracts = {"AAA": stock("AAA"), "BBB": stock("BBB"), "AAA-P": option("put", "AAA", 100)}
    pos = [
        {"contract": "AAA", "quantity": 2000},
        {"contract": "AAA-P", "quantity": 20},  # fully hedged down
        {"contract": "BBB", "quantity": 1000},
    ]
    ds = run(scenario(market, contracts, pos, {"vol_shift": 0}))
    now = bs(100, 100, T_FEB, 0.3, call=False)
    aaa = 2000 * 25 - (bs(75, 100, T_FEB, 0.3, call=False) - now) * 2000
    assert float(ds["group_single_name"].sel(account="main", group="AAA")) == pytest.approx(aaa, rel=1e-9)
    assert float(ds["group_single_name"].sel(account="main", group="BBB")) == pytest.approx(25_000)
    assert val(ds, "single_name") == pytest.approx(25_000)
    assert str(ds["single_name_driver"].sel(account="main").item()) == "BBB"


def test_single_name_not_for_index_class_groups():
    ds = run(one_stock(price=5000.0, qty=10, product_class="broad_index"))
    assert val(ds, "single_name") == 0.0
    assert str(ds["single_name_driver"].sel(account="main").item()) == ""
    d = marginsim.margin(one_stock(price=5000.0, qty=10, product_class="broad_index")).to_dict()
    assert d["accounts"]["main"]["portfolio_margin"]["single_name_driver"] is None


def test_single_name_binds():
    # a small cap at USD 500M: down to zero beats the 30 % concentration stress
    ds = run(one_stock(price=10.0, qty=1000, market_cap=5e8))
    assert val(ds, "single_name") == pytest.approx(10_000)
    assert str(ds["binding"].sel(account="main").item()) == "single_name"
    assert val(ds, "maintenance") == pytest.approx(10_000)


# ------------------------------------------------------------------------------------------------
# add-ons
# ------------------------------------------------------------------------------------------------


def test_large_position_at_1_percent_of_shares_outstanding():
    kw = {"market_cap": 5e10, "shares_outstanding": 1e6}
    ds = run(one_stock(price=100.0, qty=10_000, **kw))
    assert float(ds["shares_outstanding_fraction"].sel(account="main", group="ABC")) == pytest.approx(0.01)
    assert val(ds, "large_position") == pytest.approx(0.10 * 1_000_000)
    assert val(ds, "maintenance") == pytest.approx(300_000 + 100_000)  # concentration 30 % + charge
    below = run(one_stock(price=100.0, qty=9_999, **kw))
    assert val(below, "large_position") == 0.0
    stressed = run(one_stock(price=100.0, qty=10_000, pm={"large_position": {"stress": 0.2}}, **kw))
    assert val(stressed, "large_position") == pytest.approx(200_000)


def test_large_position_counts_option_deltas():
    kw = {"market_cap": 5e10, "shares_outstanding": 1e6}
    sc = scenario(
        {"ABC": {"price": 100.0, "vol": 0.2, **kw}},
        {"C": option("call", "ABC", 50, mult=100)},  # deep in the money: delta about 1
        [{"contract": "C", "quantity": 101}],
        {"vol_shift": 0},
    )
    ds = run(sc)
    assert float(ds["delta_shares"].sel(account="main", group="ABC")) == pytest.approx(10_100, rel=1e-3)
    # the class group's loss at -10 %: the calls lose about their delta x 10
    assert val(ds, "large_position") == pytest.approx(0.10 * 10_100 * 100, rel=1e-3)


def test_days_to_liquidate_raises_initial_only():
    kw = {"market_cap": 5e10, "adv": 1000.0, "listing": "US"}
    ds = run(one_stock(price=100.0, qty=3000, **kw))  # 3 x ADV: 2 above the threshold
    base = 0.15 * 300_000
    assert float(ds["adv_multiple"].sel(account="main", group="ABC")) == pytest.approx(3.0)
    assert val(ds, "days_to_liquidate") == pytest.approx(0.10 * 2 * base)
    assert val(ds, "maintenance") == pytest.approx(90_000)  # concentration: the add-on is not in it
    assert val(ds, "initial") == pytest.approx(1.10 * 90_000 + 0.2 * base)
    capped = run(
        one_stock(price=100.0, qty=3000, pm={"days_to_liquidate": {"scaling": 1.0, "cap": 0.5}}, **kw)
    )
    assert val(capped, "days_to_liquidate") == pytest.approx(0.5 * base)
    small = run(one_stock(price=100.0, qty=900, **kw))
    assert val(small, "days_to_liquidate") == 0.0


def test_liquidity_factor_kernel():
    np.testing.assert_allclose(
        K.liquidity_factor(np.array([0.5, 1.0, 3.0, 50.0, np.nan]), 1.0, 0.1, 1.0), [0, 0, 0.2, 1.0, 0]
    )


# ------------------------------------------------------------------------------------------------
# initial margin, binding logic
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "und, ratio",
    [
        ({"listing": "US"}, 1.10),
        ({"listing": "GB", "currency": "GBP"}, 1.25),
        ({"listing": "DE"}, 1.25),  # a USD price does not make a German listing US
        ({}, 1.10),  # no listing: a USD price counts as US
        ({"currency": "GBP"}, 1.25),
    ],
)
def test_initial_ratio_us_and_non_us(und, ratio):
    sc = one_stock(**und)
    sc["fx"] = {"GBP": 1.25}
    ds = run(sc)
    assert val(ds, "initial") == pytest.approx(ratio * val(ds, "maintenance"))


def test_initial_ratios_are_parameters():
    ds = run(one_stock(listing="US", pm={"initial_ratio_us": 1.5}))
    assert val(ds, "initial") == pytest.approx(1.5 * val(ds, "maintenance"))


def test_initial_of_a_mixed_book_weights_each_class_group_by_its_ratio():
    market = {
        "US1": {"price": 100.0, "vol": 0.3, "listing": "US", "market_cap": 5e10},
        "EU1": {"price": 100.0, "vol": 0.3, "listing": "FR", "market_cap": 5e10},
        "US2": {"price": 100.0, "vol": 0.3, "listing": "US", "market_cap": 5e10},
    }
    contracts = {n: stock(n) for n in market}
    pos = [
        {"contract": "US1", "quantity": 1000},
        {"contract": "EU1", "quantity": 600},
        {"contract": "US2", "quantity": 100},
    ]
    ds = run(scenario(market, contracts, pos))
    # concentration binds: US1 30k, EU1 18k (top two), US2 5 % of 10k
    assert val(ds, "maintenance") == pytest.approx(30_000 + 18_000 + 500)
    assert val(ds, "initial") == pytest.approx(1.1 * 30_000 + 1.25 * 18_000 + 1.1 * 500)


def test_binding_component_kernel():
    v, i = K.binding_component(np.array([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0], [5.0, 5.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(v, [3.0, 0.0, 5.0])
    np.testing.assert_array_equal(i, [1, -1, 0])  # first wins ties; none when all are zero


def test_binding_scan_when_the_stresses_are_mild():
    pm = {
        "concentration": {"top_stress": 0.01, "rest_stress": 0.0},
        "single_name": {"default": {"up": 0.01, "down": 0.01}},
    }
    ds = run(one_stock(pm=pm))
    assert str(ds["binding"].sel(account="main").item()) == "scan"
    assert val(ds, "maintenance") == pytest.approx(11_250)


def test_binding_none_for_an_empty_requirement():
    sc = scenario(
        {"F": {"price": 100.0}, "ABC": {"price": 10.0}},
        {"FUT": {"type": "future", "underlying": "F", "expiry": "2026-12-18"}, "ABC": stock("ABC")},
        [{"contract": "FUT", "quantity": 1}],
    )
    res = marginsim.margin(sc)
    obj = res.to_dict()["accounts"]["main"]["portfolio_margin"]
    assert obj["maintenance"] == 0.0 and obj["binding"] is None
    assert obj["class_groups"] == {} and obj["concentration_drivers"] == []


# ------------------------------------------------------------------------------------------------
# account thresholds and equity
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cash, opening, keep", [(40_000, True, True), (30_000, False, True), (20_000, False, False)]
)
def test_account_threshold_flags(cash, opening, keep):
    ds = run(one_stock(pm={"cash": {"main": cash}}))  # market value 75,000
    assert val(ds, "equity") == pytest.approx(75_000 + cash)
    assert bool(ds["opening_equity_met"].sel(account="main")) is opening
    assert bool(ds["minimum_equity_met"].sel(account="main")) is keep
    assert val(ds, "available_funds") == pytest.approx(75_000 + cash - val(ds, "initial"))
    assert val(ds, "excess_liquidity") == pytest.approx(75_000 + cash - val(ds, "maintenance"))


def test_account_flags_unknown_without_cash_and_entity_minima():
    d = marginsim.margin(one_stock()).to_dict()["accounts"]["main"]["portfolio_margin"]
    assert d["equity"] is None and d["opening_equity_met"] is None
    sc = one_stock(price=10.0, qty=100, pm={"entity": "AU", "cash": {"main": 2000}})  # equity USD 3,000
    with pytest.raises(InputError, match="AUD"):
        run(sc)
    sc["fx"] = {"AUD": 0.65}
    d = marginsim.margin(sc).to_dict()["accounts"]["main"]["portfolio_margin"]
    assert d["opening_equity_met"] is None  # no opening threshold outside the US entity
    assert d["minimum_equity_met"] is True  # AUD 2,000 = USD 1,300


def test_cash_for_an_unknown_account_is_an_input_error():
    with pytest.raises(InputError, match="no positions"):
        run(one_stock(pm={"cash": {"other": 1.0}}))


def test_unknown_key_in_the_section_is_an_input_error():
    with pytest.raises(InputError, match="unknown key"):
        run(one_stock(pm={"concentration": {"top": 2}}))


# ------------------------------------------------------------------------------------------------
# broadcasting: accounts, grid dims, currencies, engines
# ------------------------------------------------------------------------------------------------


def test_many_accounts_in_one_call_equal_separate_runs():
    pos = [
        {"contract": "AAA", "quantity": 1000, "account": "a"},
        {"contract": "BBB", "quantity": -300, "account": "a"},
        {"contract": "CCC", "quantity": 500, "account": "b"},
        {"contract": "AAA", "quantity": 100, "account": "b"},
    ]
    both = run(scenario(THREE["market"], THREE["contracts"], pos))
    for name in ("a", "b"):
        alone = run(scenario(THREE["market"], THREE["contracts"], [p for p in pos if p["account"] == name]))
        for var in ("maintenance", "initial", *COMPONENTS):
            assert val(both, var, account=name) == pytest.approx(val(alone, var, account=name)), var


def test_grid_dims_broadcast_and_equal_separate_runs():
    sc = scenario(
        {"XYZ": {"price": 100.0, "vol": 0.3, "market_cap": 5e10}},
        {"XYZ": stock("XYZ"), "P": option("put", "XYZ", 95)},
        [{"contract": "XYZ", "quantity": 1000}, {"contract": "P", "quantity": 5}],
    )
    grid = {"shift": [-0.1, 0.0, 0.2], "vol_shift": [0.0, 0.05], "price_scan_scale": [1.0, 1.5]}
    ds = run({**sc, "grid": grid})
    assert ds["maintenance"].dims == ("account", "shift", "vol_shift", "price_scan_scale")
    assert ds["scan_loss"].dims[-3:] == ("shift", "vol_shift", "price_scan_scale")
    for s in grid["shift"]:
        for v in grid["vol_shift"]:
            alone = run(
                {
                    **sc,
                    "market": {"XYZ": {"price": 100.0 * (1 + s), "vol": 0.3 + v, "market_cap": 5e10}},
                    "portfolio_margin": {"ranges": {"equity": {"up": 0.225, "down": 0.225}}},
                }
            )
            got = ds.sel(shift=s, vol_shift=v, price_scan_scale=1.5)
            assert float(got["scan"].sel(account="main")) == pytest.approx(val(alone, "scan"), rel=1e-9)
            assert float(got["concentration"].sel(account="main")) == pytest.approx(
                val(alone, "concentration"), rel=1e-9
            )
    d = marginsim.margin({**sc, "grid": grid}).to_dict()
    assert d["dims"] == {"shift": [-0.1, 0.0, 0.2], "vol_shift": [0.0, 0.05], "price_scan_scale": [1.0, 1.5]}
    m = d["accounts"]["main"]["portfolio_margin"]["maintenance"]
    assert len(m) == 3 and len(m[0]) == 2 and len(m[0][0]) == 2
    lg = d["accounts"]["main"]["portfolio_margin"]["class_groups"]["XYZ"]["loss_grid"]["loss"]
    assert np.asarray(lg).shape == (3, 2, 2, 10, 3)


def test_amounts_are_converted_to_the_reporting_currency():
    sc = one_stock(price=75.0, qty=1000, currency="HKD")
    with pytest.raises(InputError, match="HKD"):
        run(sc)
    sc["fx"] = {"HKD": 0.128}
    ds = run(sc)
    assert val(ds, "scan") == pytest.approx(11_250 * 0.128)


def test_numpy_and_numba_engines_agree():
    sc = scenario(
        {"XYZ": {"price": 100.0, "vol": 0.3, "rate": 0.04, "market_cap": 1e9}},
        {
            "XYZ": stock("XYZ"),
            "P": option("put", "XYZ", 110, exercise="american"),
            "C": option("call", "XYZ", 120),
        },
        [
            {"contract": "XYZ", "quantity": 1000},
            {"contract": "P", "quantity": 5},
            {"contract": "C", "quantity": -7},
        ],
    )
    a, b = run(sc, engine="numpy"), run(sc, engine="numba")
    for var in ("maintenance", "initial", *COMPONENTS):
        assert val(a, var) == pytest.approx(val(b, var), rel=1e-9, abs=1e-9)


def test_applies_to_stocks_and_options_on_spot_only():
    sc = one_stock()
    sc.pop("methods")
    assert "portfolio_margin" in applicable_methods(marginsim.parse_scenario(sc))
    fut = scenario(
        {"F": {"price": 100.0}},
        {"FUT": {"type": "future", "underlying": "F", "expiry": "2026-12-18"}},
        [{"contract": "FUT", "quantity": 1}],
    )
    fut.pop("methods")
    assert not REGISTRY["portfolio_margin"].applies(marginsim.parse_scenario(fut))


# ------------------------------------------------------------------------------------------------
# JSON contract and scenario files
# ------------------------------------------------------------------------------------------------

FIXED_KEYS = {
    "maintenance",
    "initial",
    "binding",
    "components",
    "single_name_driver",
    "concentration_drivers",
}


def test_json_contract_keys():
    obj = marginsim.margin(one_stock()).to_dict()["accounts"]["main"]["portfolio_margin"]
    assert FIXED_KEYS <= set(obj)
    assert set(obj["components"]) == set(COMPONENTS)
    grid = obj["class_groups"]["ABC"]["loss_grid"]
    assert np.asarray(grid["loss"]).shape == (10, 3)
    assert grid["vol_points"] == [-1.0, 0.0, 1.0]
    json.dumps(obj)


PM_FILES = sorted((ROOT / "scenarios").glob("pm_*.yaml"))


def test_the_four_scenarios_exist():
    names = {p.stem for p in PM_FILES}
    assert {
        "pm_small_cap_concentrated",
        "pm_china_concept_options",
        "pm_hk_property",
        "pm_diversified_large_cap",
    } <= names


@pytest.mark.parametrize("path", PM_FILES, ids=lambda p: p.stem)
def test_scenario_files_through_the_cli(path):
    out = subprocess.run(
        [sys.executable, "-m", "marginsim.cli", "margin", str(path), "--json"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    for obj in res["accounts"].values():
        pm = obj["portfolio_margin"]
        assert FIXED_KEYS <= set(pm)
        assert pm["maintenance"] > 0 and pm["initial"] >= pm["maintenance"]
        assert pm["binding"] in {"scan", "minimum", "extreme", "concentration", "single_name"}
    text = subprocess.run(
        [sys.executable, "-m", "marginsim.cli", "margin", str(path)], capture_output=True, text=True
    )
    assert text.returncode == 0 and "PORTFOLIO MARGIN" in text.stdout


def test_scenario_expectations():
    small = marginsim.margin(ROOT / "scenarios/pm_small_cap_concentrated.yaml").to_dict()["accounts"]["main"]
    pm = small["portfolio_margin"]
    assert pm["binding"] == "single_name" and pm["single_name_driver"] == "MICRO"
    assert pm["class_groups"]["TINY"]["single_name"]["methods"]["small_cap"]["down"] == 1.0
    assert pm["components"]["large_position"] > 0 and pm["components"]["days_to_liquidate"] > 0
    china = marginsim.margin(ROOT / "scenarios/pm_china_concept_options.yaml").to_dict()["accounts"]["main"]
    methods = china["portfolio_margin"]["class_groups"]["DRGN"]["single_name"]["methods"]
    assert set(methods) == {"china_concept"} and methods["china_concept"]["up"] == pytest.approx(0.25)
    hk = marginsim.margin(ROOT / "scenarios/pm_hk_property.yaml").to_dict()["accounts"]["main"][
        "portfolio_margin"
    ]
    assert set(hk["class_groups"]["HKPROP"]["single_name"]["methods"]) == {"hk_property"}
    assert hk["class_groups"]["HKPROP"]["initial_ratio"] == 1.25
    div = marginsim.margin(ROOT / "scenarios/pm_diversified_large_cap.yaml").to_dict()["accounts"]
    assert div["stocks-only"]["portfolio_margin"]["binding"] == "scan"
    assert div["main"]["portfolio_margin"]["class_groups"]["SPX"]["scan_range"] == {"up": 0.06, "down": 0.08}


# ------------------------------------------------------------------------------------------------
# property tests
# ------------------------------------------------------------------------------------------------

PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_classes = st.sampled_from(["equity", "broad_index_high_cap", "broad_index", "sector_index"])
_option = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["call", "put"]),
        "moneyness": st.floats(0.5, 1.5),
        "days": st.integers(5, 400),
        "american": st.booleans(),
        "qty": st.integers(-20, 20),
    }
)
_name = st.fixed_dictionaries(
    {
        "price": st.floats(1.0, 500.0),
        "vol": st.floats(0.05, 1.0),
        "market_cap": st.one_of(st.none(), st.floats(1e8, 1e12)),
        "cn": st.booleans(),
        "listing": st.sampled_from(["US", "HK", "GB"]),
        "property": st.booleans(),
        "shares": st.floats(-50_000, 50_000),
        "product_class": _classes,
        "options": st.lists(_option, max_size=3),
    }
)


def _random_book(names, pm=None):
    market, contracts, pos = {}, {}, []
    for i, n in enumerate(names):
        u = f"U{i}"
        m = {
            "price": n["price"],
            "vol": n["vol"],
            "rate": 0.03,
            "listing": n["listing"],
            "product_class": n["product_class"],
            "shares_outstanding": 5e6,
            "adv": 5e4,
        }
        if n["market_cap"] is not None:
            m["market_cap"] = n["market_cap"]
            m["domicile"] = "CN" if n["cn"] else "US"
        if n["property"]:
            m["sector"] = "real_estate"
        market[u] = m
        contracts[u] = stock(u)
        pos.append({"contract": u, "quantity": n["shares"]})
        for j, o in enumerate(n["options"]):
            expiry = str(np.datetime64(AS_OF) + np.timedelta64(o["days"], "D"))
            c = option(
                o["kind"],
                u,
                n["price"] * o["moneyness"],
                expiry,
                exercise="american" if o["american"] else "european",
            )
            contracts[f"{u}-O{j}"] = c
            pos.append({"contract": f"{u}-O{j}", "quantity": o["qty"]})
    return scenario(market, contracts, pos, pm)


@PROPS
@given(st.lists(_name, min_size=1, max_size=3))
def test_property_requirement_at_least_each_component(names):
    ds = run(_random_book(names))
    d = acct(ds)
    m, i = float(d["maintenance"]), float(d["initial"])
    for k in ("scan", "minimum", "base", "extreme", "concentration", "single_name", "large_position"):
        assert m >= float(d[k]) - 1e-6 * max(1.0, m), k
        assert float(d[k]) >= 0.0
    assert i >= m - 1e-6 * max(1.0, m)
    assert i >= float(d["days_to_liquidate"]) - 1e-9
    assert (ds["scan_loss"].max(["price_point", "vol_point"]).clip(min=0) - ds["group_scan"]).pipe(
        lambda x: float(abs(x).max())
    ) < 1e-6


@PROPS
@given(
    price=st.floats(5.0, 500.0),
    vol=st.floats(0.05, 1.0),
    shares=st.integers(100, 50_000),
    hedge_share=st.floats(0.0, 1.0),
    vol_shift_relative=st.floats(0.0, 0.5),
)
def test_property_stock_hedge_never_raises_the_scan(price, vol, shares, hedge_share, vol_shift_relative):
    pm = {"vol_shift_relative": vol_shift_relative}
    base = {"X": {"price": price, "vol": vol}}
    unhedged = run(scenario(base, {"X": stock("X")}, [{"contract": "X", "quantity": shares}], pm))
    hedged = run(
        scenario(
            base,
            {"X": stock("X")},
            [
                {"contract": "X", "quantity": shares},
                {"contract": "X", "quantity": -hedge_share * shares, "account": "main"},
            ],
            pm,
        )
    )
    assert val(hedged, "group_scan", group="X") <= val(unhedged, "group_scan", group="X") + 1e-6


@PROPS
@given(
    price=st.floats(5.0, 500.0),
    vol=st.floats(0.05, 1.0),
    lots=st.integers(1, 50),
    covered=st.floats(0.0, 1.0),
    moneyness=st.floats(0.5, 1.5),
    days=st.integers(5, 500),
    kind=st.sampled_from(["protective_put", "covered_call"]),
    american=st.booleans(),
    product_class=_classes,
)
def test_property_option_hedge_never_raises_the_scan(
    price, vol, lots, covered, moneyness, days, kind, american, product_class
):
    # long stock hedged by long puts or short calls on at most the same number of shares, vol
    # unchanged: at every scan point the hedged loss is at most the unhedged one
    shares = lots * 100
    n_opt = math.floor(covered * lots)
    expiry = str(np.datetime64(AS_OF) + np.timedelta64(days, "D"))
    o = option(
        "put" if kind == "protective_put" else "call",
        "X",
        price * moneyness,
        expiry,
        exercise="american" if american else "european",
    )
    qty = n_opt if kind == "protective_put" else -n_opt
    market = {"X": {"price": price, "vol": vol, "rate": 0.03, "product_class": product_class}}
    pm = {"vol_shift": 0}
    unhedged = run(scenario(market, {"X": stock("X")}, [{"contract": "X", "quantity": shares}], pm))
    hedged = run(
        scenario(
            market,
            {"X": stock("X"), "O": o},
            [{"contract": "X", "quantity": shares}, {"contract": "O", "quantity": qty}],
            pm,
        )
    )
    u = val(unhedged, "group_scan", group="X")
    assert val(hedged, "group_scan", group="X") <= u + 1e-9 * max(1.0, u)


@PROPS
@given(
    names=st.lists(_name, min_size=1, max_size=3),
    us=st.booleans(),
)
def test_property_us_and_non_us_initial_ratios(names, us):
    for n in names:
        n["listing"] = "US" if us else "HK"
    sc = _random_book(names, {"days_to_liquidate": {"scaling": 0.0}})
    ds = run(sc)
    m, i = val(ds, "maintenance"), val(ds, "initial")
    ratio = 1.10 if us else 1.25
    assert i == pytest.approx(ratio * m, rel=1e-9, abs=1e-9)


@PROPS
@given(names=st.lists(_name, min_size=2, max_size=3))
def test_property_mixed_book_initial_between_the_ratios(names):
    names[0]["listing"] = "US"
    names[1]["listing"] = "GB"
    ds = run(_random_book(names, {"days_to_liquidate": {"scaling": 0.0}}))
    m, i = val(ds, "maintenance"), val(ds, "initial")
    assert 1.10 * m - 1e-6 <= i <= 1.25 * m + 1e-6
