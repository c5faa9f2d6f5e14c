"""Property tests of SPAN scanning risk (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import marginsim

CONTRACTS = {
    "F1": {"type": "future", "underlying": "ABC", "multiplier": 100, "expiry": "2026-12-18"},
    "F2": {"type": "future", "underlying": "ABC", "multiplier": 100, "expiry": "2027-03-19", "price": 1012.0},
    "C1": {
        "type": "call",
        "underlying": "ABC",
        "option_on": "future",
        "strike": 1050,
        "expiry": "2026-12-18",
        "multiplier": 100,
    },
    "P1": {
        "type": "put",
        "underlying": "ABC",
        "option_on": "future",
        "strike": 950,
        "expiry": "2027-03-19",
        "multiplier": 100,
    },
    "S1": {
        "type": "call",
        "underlying": "XYZ",
        "option_on": "spot",
        "strike": 48,
        "expiry": "2027-01-15",
        "multiplier": 100,
        "exercise": "american",
    },
    "G1": {"type": "future", "underlying": "XYZ", "multiplier": 1000, "expiry": "2026-12-18"},
}
NAMES = sorted(CONTRACTS)

quantities = st.lists(
    st.tuples(st.sampled_from(NAMES), st.integers(-20, 20).filter(bool)), min_size=1, max_size=8
)


def scenario(positions):
    return {
        "name": "prop",
        "as_of": "2026-11-20",
        "market": {
            "ABC": {"price": 1000.0, "vol": 0.22, "rate": 0.03},
            "XYZ": {"price": 50.0, "vol": 0.35, "rate": 0.03, "dividend_yield": 0.01},
        },
        "contracts": CONTRACTS,
        "positions": [{"contract": c, "quantity": q} for c, q in positions],
        "span": {
            "combined_commodities": {
                "ABC": {"price_scan": 0.06, "vol_scan": 0.04},
                "XYZ": {"price_scan": 0.12, "vol_scan_relative": 0.25},
            }
        },
    }


def scan(positions, **kw):
    ds = marginsim.margin(scenario(positions), **kw)["span"]
    return ds["scan_risk"].sel(account="main").to_series().reindex(["ABC", "XYZ"], fill_value=0.0)


@settings(max_examples=30, deadline=None)
@given(quantities)
def test_scanning_risk_is_never_negative(pos):
    assert (scan(pos) >= 0).all()


@settings(max_examples=30, deadline=None)
@given(quantities, quantities)
def test_adding_a_position_never_raises_scan_risk_above_the_sum_of_the_parts(p, x):
    both = scan(p + x)
    assert (both <= scan(p) + scan(x) + 1e-6).all()


@settings(max_examples=25, deadline=None)
@given(quantities, st.integers(2, 7))
def test_scaling_quantities_scales_scan_risk(pos, k):
    np.testing.assert_allclose(scan([(c, q * k) for c, q in pos]), k * scan(pos), rtol=1e-9, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(quantities, st.randoms(use_true_random=False))
def test_position_order_does_not_matter(pos, rnd):
    shuffled = list(pos)
    rnd.shuffle(shuffled)
    a = marginsim.margin(scenario(pos))["span"]
    b = marginsim.margin(scenario(shuffled))["span"]
    for v in ("maintenance", "initial", "net_option_value"):
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(
        a["scan_risk"].sortby("group").values, b["scan_risk"].sortby("group").values, rtol=1e-12, atol=1e-9
    )


@settings(max_examples=15, deadline=None)
@given(quantities)
def test_numba_and_numpy_engines_agree(pos):
    a = marginsim.margin(scenario(pos), engine="numba")["span"]
    b = marginsim.margin(scenario(pos), engine="numpy")["span"]
    np.testing.assert_allclose(a["risk_array"].values, b["risk_array"].values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a["maintenance"].values, b["maintenance"].values, rtol=1e-12, atol=1e-6)
