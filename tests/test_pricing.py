"""Tests of marginsim.kernels.pricing: closed forms, parity, edge cases, trees, implied vol, engines."""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginsim.kernels import _jit as J
from marginsim.kernels import pricing as P

ENGINES = ["numba", "numpy"]

# sane market ranges for property tests
spot = st.floats(1.0, 1000.0)
moneyness = st.floats(0.5, 2.0)
expiry = st.floats(0.02, 3.0)
sigma = st.floats(0.05, 1.0)
rate = st.floats(-0.01, 0.10)
dividend = st.floats(0.0, 0.06)


def ncdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def ref_value(model: int, s: float, k: float, t: float, vol: float, r: float, q: float, call: bool) -> float:
    """Textbook Black-76 / BSM value, one element, with math.erfc."""
    f = s if model == P.BLACK76 else s * math.exp((r - q) * t)
    sd = vol * math.sqrt(t)
    d1 = math.log(f / k) / sd + 0.5 * sd
    d2 = d1 - sd
    df = math.exp(-r * t)
    if call:
        return df * (f * ncdf(d1) - k * ncdf(d2))
    return df * (k * ncdf(-d2) - f * ncdf(-d1))


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_hull_bsm_example(engine):
    # Hull, Options Futures and Other Derivatives: S=42, K=40, r=10%, sigma=20%, T=0.5
    call = P.value(P.BSM, 42.0, 40.0, 0.5, 0.2, 0.1, 0.0, True, engine=engine)
    put = P.value(P.BSM, 42.0, 40.0, 0.5, 0.2, 0.1, 0.0, False, engine=engine)
    assert round(float(call), 2) == 4.76
    assert round(float(put), 2) == 0.81
    assert call == pytest.approx(4.759422392871535, rel=1e-12)
    assert put == pytest.approx(0.8085993729000958, rel=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_black76_at_the_money_by_hand(engine):
    # F = K = 100, r = 5%, sigma = 20%, T = 1: d1 = 0.1, d2 = -0.1, so
    # call = put = 100 exp(-0.05) (N(0.1) - N(-0.1)) = 100 exp(-0.05) erf(0.1 / sqrt 2)
    #      = 100 * 0.951229424500714 * 0.0796556745540577 = 7.577082146427...
    for is_call in (True, False):
        v = P.value(P.BLACK76, 100.0, 100.0, 1.0, 0.2, 0.05, 0.0, is_call, engine=engine)
        assert v == pytest.approx(7.577082146427273, abs=1e-8)
        assert v == pytest.approx(100.0 * math.exp(-0.05) * math.erf(0.1 / math.sqrt(2.0)), rel=1e-13)


@pytest.mark.parametrize("engine", ENGINES)
def test_hull_black76_futures_put(engine):
    # Hull: European put on crude oil futures, F = K = 20, r = 9%, sigma = 25%, 4 months -> 1.12
    put = P.value(P.BLACK76, 20.0, 20.0, 4.0 / 12.0, 0.25, 0.09, 0.0, False, engine=engine)
    assert round(float(put), 2) == 1.12


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from([P.BLACK76, P.BSM]),
    s=spot,
    m=moneyness,
    t=expiry,
    vol=sigma,
    r=rate,
    q=dividend,
    call=st.booleans(),
)
def test_value_matches_textbook_formula(engine, model, s, m, t, vol, r, q, call):
    k = s * m
    v = float(P.value(model, s, k, t, vol, r, q, call, engine=engine))
    assert v == pytest.approx(ref_value(model, s, k, t, vol, r, q, call), rel=1e-11, abs=1e-13 * k)


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=200, deadline=None)
@given(s=spot, m=moneyness, t=expiry, vol=sigma, r=rate, q=dividend)
def test_put_call_parity(engine, s, m, t, vol, r, q):
    k = s * m
    both = np.array([True, False])
    c, p = P.value(P.BLACK76, s, k, t, vol, r, q, both, engine=engine)
    assert c - p == pytest.approx(math.exp(-r * t) * (s - k), abs=1e-11 * max(s, k))
    c, p = P.value(P.BSM, s, k, t, vol, r, q, both, engine=engine)
    assert c - p == pytest.approx(s * math.exp(-q * t) - k * math.exp(-r * t), abs=1e-11 * max(s, k))
    # delta parity: call delta - put delta = exp(-r t) (Black-76), exp(-q t) (BSM)
    dc, dp = P.delta(P.BLACK76, s, k, t, vol, r, q, both, engine=engine)
    assert dc - dp == pytest.approx(math.exp(-r * t), abs=1e-13)
    dc, dp = P.delta(P.BSM, s, k, t, vol, r, q, both, engine=engine)
    assert dc - dp == pytest.approx(math.exp(-q * t), abs=1e-13)


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=100, deadline=None)
@given(
    model=st.sampled_from([P.BLACK76, P.BSM]),
    s=spot,
    m=moneyness,
    t=expiry,
    vol=sigma,
    r=rate,
    q=dividend,
    call=st.booleans(),
)
def test_delta_is_the_slope_of_value(engine, model, s, m, t, vol, r, q, call):
    k = s * m
    h = 1e-3 * s * vol * math.sqrt(t)  # small against the width of the distribution
    up, dn = P.value(model, np.array([s + h, s - h]), k, t, vol, r, q, call, engine=engine)
    fd = (up - dn) / (2.0 * h)
    assert P.delta(model, s, k, t, vol, r, q, call, engine=engine) == pytest.approx(fd, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model", [P.BLACK76, P.BSM])
@pytest.mark.parametrize("american", [False, True])
def test_expired_gives_intrinsic(engine, model, american):
    s = np.array([90.0, 100.0, 110.0])
    for t in (0.0, -0.5):
        call = P.value(model, s, 100.0, t, 0.3, 0.05, 0.02, True, american, engine=engine)
        put = P.value(model, s, 100.0, t, 0.3, 0.05, 0.02, False, american, engine=engine)
        np.testing.assert_array_equal(call, [0.0, 0.0, 10.0])
        np.testing.assert_array_equal(put, [10.0, 0.0, 0.0])
        dcall = P.delta(model, s, 100.0, t, 0.3, 0.05, 0.02, True, american, engine=engine)
        dput = P.delta(model, s, 100.0, t, 0.3, 0.05, 0.02, False, american, engine=engine)
        np.testing.assert_array_equal(dcall, [0.0, 0.5, 1.0])
        np.testing.assert_array_equal(dput, [-1.0, -0.5, 0.0])


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_vol_gives_discounted_forward_intrinsic(engine):
    s = np.array([80.0, 100.0, 120.0])
    k, t, r, q = 100.0, 0.5, 0.04, 0.01
    df = math.exp(-r * t)
    np.testing.assert_allclose(
        P.value(P.BLACK76, s, k, t, 0.0, r, q, True, engine=engine), df * np.maximum(s - k, 0.0), rtol=1e-15
    )
    np.testing.assert_allclose(
        P.value(P.BLACK76, s, k, t, 0.0, r, q, False, engine=engine), df * np.maximum(k - s, 0.0), rtol=1e-15
    )
    fwd = s * math.exp((r - q) * t)
    np.testing.assert_allclose(
        P.value(P.BSM, s, k, t, 0.0, r, q, True, engine=engine), df * np.maximum(fwd - k, 0.0), rtol=1e-14
    )
    np.testing.assert_allclose(
        P.value(P.BSM, s, k, t, 0.0, r, q, False, engine=engine), df * np.maximum(k - fwd, 0.0), rtol=1e-14
    )
    # delta: the model's discount times the step of the forward payoff (0.5 at the forward)
    np.testing.assert_allclose(
        P.delta(P.BLACK76, s, k, t, 0.0, r, q, True, engine=engine),
        df * np.array([0.0, 0.5, 1.0]),
        rtol=1e-15,
    )
    np.testing.assert_allclose(
        P.delta(P.BSM, s, k, t, 0.0, r, q, False, engine=engine),
        -math.exp(-q * t) * np.array([1.0, 0.0, 0.0]),
        rtol=1e-15,
    )


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model", [P.BLACK76, P.BSM])
def test_zero_underlying(engine, model):
    k, t, r = 100.0, 1.0, 0.05
    assert P.value(model, 0.0, k, t, 0.3, r, 0.02, True, engine=engine) == 0.0
    assert P.value(model, 0.0, k, t, 0.3, r, 0.02, False, engine=engine) == pytest.approx(
        k * math.exp(-r * t), rel=1e-15
    )
    assert P.delta(model, 0.0, k, t, 0.3, r, 0.02, True, engine=engine) == 0.0
    # american put at s = 0: exercise now, worth the strike
    assert P.value(model, 0.0, k, t, 0.3, r, 0.02, False, True, engine=engine) == k
    assert P.delta(model, 0.0, k, t, 0.3, r, 0.02, False, True, engine=engine) == -1.0


@pytest.mark.parametrize("engine", ENGINES)
def test_no_nan_on_the_edges(engine):
    s = np.array([0.0, 100.0, 100.0, 100.0, 0.0])
    t = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    vol = np.array([0.2, 0.2, 0.0, 0.2, 0.0])
    k = np.array([100.0, 100.0, 100.0, 0.0, 0.0])
    for model in (P.BLACK76, P.BSM):
        for call in (True, False):
            for american in (False, True):
                for fn in (P.value, P.delta):
                    out = fn(model, s, k, t, vol, 0.03, 0.01, call, american, engine=engine)
                    assert np.isfinite(out).all(), (fn.__name__, model, call, american, out)


@pytest.mark.parametrize("engine", ENGINES)
def test_invalid_inputs_give_nan(engine):
    out = P.value(
        P.BSM, np.array([-1.0, 100.0, np.nan]), 100.0, 1.0, np.array([0.2, -0.2, 0.2]), engine=engine
    )
    assert np.isnan(out).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_linear_ignores_option_fields(engine):
    s = np.array([95.0, -3.5, 0.0])
    out = P.value(P.LINEAR, s, np.nan, np.nan, np.nan, 0.05, 0.02, False, True, engine=engine)
    np.testing.assert_array_equal(out, s)
    np.testing.assert_array_equal(P.delta(P.LINEAR, s, np.nan, 1.0, np.nan, engine=engine), 1.0)


@pytest.mark.parametrize("engine", ENGINES)
def test_mixed_book_in_one_call(engine):
    model = np.array([P.LINEAR, P.BLACK76, P.BSM, P.BLACK76, P.BSM, P.LINEAR])
    s = np.array([101.0, 101.0, 42.0, 20.0, 42.0, 55.0])
    k = np.array([0.0, 100.0, 40.0, 20.0, 40.0, 0.0])
    t = np.array([0.0, 0.25, 0.5, 4 / 12, 0.5, 1.0])
    vol = np.array([np.nan, 0.3, 0.2, 0.25, 0.2, np.nan])
    r = np.array([0.05, 0.05, 0.1, 0.09, 0.1, 0.05])
    call = np.array([True, True, True, False, False, False])
    american = np.array([False, False, False, False, True, True])
    v = P.value(model, s, k, t, vol, r, 0.0, call, american, engine=engine)
    assert v[0] == 101.0 and v[5] == 55.0
    assert v[1] == pytest.approx(ref_value(P.BLACK76, 101.0, 100.0, 0.25, 0.3, 0.05, 0.0, True), rel=1e-12)
    assert v[2] == pytest.approx(4.759422392871535, rel=1e-12)
    assert v[3] == pytest.approx(1.1166414565589438, rel=1e-12)
    assert v[4] == pytest.approx(
        float(P.american_binomial(42.0, 40.0, 0.5, 0.2, 0.1, 0.0, False, engine=engine)), rel=1e-14
    )
    d = P.delta(model, s, k, t, vol, r, 0.0, call, american, engine=engine)
    assert d[0] == 1.0 and d[5] == 1.0
    assert -1.0 < d[4] < 0.0


def test_scalar_inputs_give_0d_float64():
    out = P.value(P.BSM, 42, 40, 0.5, 0.2, 0.1)
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float64


@pytest.mark.parametrize("engine", ENGINES)
def test_broadcasting_shape(engine):
    s = np.linspace(80.0, 120.0, 16).reshape(16, 1)
    k = np.linspace(70.0, 130.0, 50).reshape(1, 50)
    model = np.array([P.BLACK76, P.BSM]).reshape(2, 1, 1)
    for fn in (P.value, P.delta):
        out = fn(model, s, k, 0.75, 0.25, 0.03, 0.01, True, engine=engine)
        assert out.shape == (2, 16, 50) and out.dtype == np.float64
        for m in range(2):
            for i in (0, 7, 15):
                for j in (0, 13, 49):
                    one = fn(
                        int(model[m, 0, 0]), s[i, 0], k[0, j], 0.75, 0.25, 0.03, 0.01, True, engine=engine
                    )
                    assert out[m, i, j] == one
    # a broadcast american flag only sends those elements through the tree
    flags = np.array([False, True]).reshape(2, 1)
    out = P.value(P.BSM, s[:2], k, 0.75, 0.25, 0.03, 0.01, False, flags, engine=engine)
    assert out.shape == (2, 50)
    np.testing.assert_array_equal(
        out[0], P.value(P.BSM, s[0, 0], k[0], 0.75, 0.25, 0.03, 0.01, False, engine=engine)
    )
    np.testing.assert_array_equal(
        out[1], P.american_binomial(s[1, 0], k[0], 0.75, 0.25, 0.03, 0.01, False, engine=engine)
    )


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="model code"):
        P.value(3, 100.0, 100.0, 1.0, 0.2)
    with pytest.raises(ValueError, match="engine"):
        P.value(P.BSM, 100.0, 100.0, 1.0, 0.2, engine="fortran")
    with pytest.raises(ValueError, match="steps"):
        P.value(P.BSM, 100.0, 100.0, 1.0, 0.2, american=True, steps=0)


# ---------------------------------------------------------------------------------------------
# American options on the CRR tree
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_american_put_at_least_european(engine):
    s = np.linspace(60.0, 140.0, 9)
    for model in (P.BLACK76, P.BSM):
        for r, q in ((0.08, 0.0), (0.02, 0.05), (0.0, 0.0)):
            amer = P.value(model, s, 100.0, 1.0, 0.3, r, q, False, True, steps=1000, engine=engine)
            euro = P.value(model, s, 100.0, 1.0, 0.3, r, q, False, engine=engine)
            assert (amer >= euro - 5e-3).all()
    # with r > 0 the early exercise premium is clearly positive in the money
    amer = P.value(P.BSM, 80.0, 100.0, 1.0, 0.3, 0.08, 0.0, False, True, engine=engine)
    assert amer > P.value(P.BSM, 80.0, 100.0, 1.0, 0.3, 0.08, 0.0, False, engine=engine) + 0.5


@pytest.mark.parametrize("engine", ENGINES)
def test_american_call_without_dividend_is_european(engine):
    s = np.linspace(70.0, 130.0, 7)
    amer = P.value(P.BSM, s, 100.0, 1.0, 0.25, 0.05, 0.0, True, True, steps=500, engine=engine)
    euro = P.value(P.BSM, s, 100.0, 1.0, 0.25, 0.05, 0.0, True, engine=engine)
    np.testing.assert_allclose(amer, euro, atol=1e-2)
    # on a future the call is European when rates are zero
    amer = P.value(P.BLACK76, s, 100.0, 1.0, 0.25, 0.0, 0.0, True, True, steps=500, engine=engine)
    euro = P.value(P.BLACK76, s, 100.0, 1.0, 0.25, 0.0, 0.0, True, engine=engine)
    np.testing.assert_allclose(amer, euro, atol=1e-2)


@pytest.mark.parametrize("engine", ENGINES)
def test_crr_converges_to_bsm(engine):
    # no early exercise is worth anything here: the tree must converge to the closed form
    k = np.array([80.0, 100.0, 120.0])
    euro = P.value(P.BSM, 100.0, k, 0.5, 0.3, 0.03, 0.0, True, engine=engine)
    errors = [
        np.abs(P.american_binomial(100.0, k, 0.5, 0.3, 0.03, 0.0, True, steps=n, engine=engine) - euro).max()
        for n in (50, 500)
    ]
    assert errors[1] < 1e-2
    assert errors[1] < errors[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_deep_itm_american_put_is_intrinsic(engine):
    for model in (P.BLACK76, P.BSM):
        assert P.value(model, 50.0, 100.0, 1.0, 0.2, 0.05, 0.0, False, True, engine=engine) == 50.0
        assert P.delta(model, 50.0, 100.0, 1.0, 0.2, 0.05, 0.0, False, True, engine=engine) == -1.0


@pytest.mark.parametrize("engine", ENGINES)
def test_american_delta_matches_tree_slope(engine):
    s = np.array([80.0, 95.0, 100.0, 110.0, 130.0])
    h = 0.5
    for model, call, q in ((P.BSM, False, 0.0), (P.BSM, True, 0.06), (P.BLACK76, False, 0.0)):
        d = P.delta(model, s, 100.0, 1.0, 0.3, 0.06, q, call, True, steps=800, engine=engine)
        up = P.value(model, s + h, 100.0, 1.0, 0.3, 0.06, q, call, True, steps=800, engine=engine)
        dn = P.value(model, s - h, 100.0, 1.0, 0.3, 0.06, q, call, True, steps=800, engine=engine)
        np.testing.assert_allclose(d, (up - dn) / (2 * h), atol=1e-2)


@pytest.mark.parametrize("engine", ENGINES)
def test_american_binomial_on_future_is_black76_american(engine):
    a = P.american_binomial(95.0, 100.0, 1.0, 0.3, 0.05, 0.07, False, on_future=True, engine=engine)
    b = P.value(P.BLACK76, 95.0, 100.0, 1.0, 0.3, 0.05, 0.0, False, True, engine=engine)
    assert a == b
    # q is ignored on a future: zero carry
    c = P.american_binomial(95.0, 100.0, 1.0, 0.3, 0.05, 0.05, False, engine=engine)
    assert a == c


@pytest.mark.parametrize("engine", ENGINES)
def test_tree_with_zero_vol_and_tiny_vol(engine):
    # vol 0: best discounted exercise along the forward path; deep ITM put on a spot exercises now
    assert P.american_binomial(80.0, 100.0, 1.0, 0.0, 0.05, 0.0, False, engine=engine) == 20.0
    # call on a dividend-paying spot at vol 0: exercise now (s - k) beats the discounted forward
    assert P.american_binomial(120.0, 100.0, 1.0, 0.0, 0.01, 0.10, True, engine=engine) == 20.0
    # a vol too small for the CRR probabilities: the tree recentres and stays close to vol 0
    tiny = P.american_binomial(100.0, 100.0, 1.0, 1e-5, 0.05, 0.0, True, engine=engine)
    flat = P.american_binomial(100.0, 100.0, 1.0, 0.0, 0.05, 0.0, True, engine=engine)
    assert tiny == pytest.approx(flat, abs=1e-3)
    assert flat == pytest.approx(100.0 - 100.0 * math.exp(-0.05), rel=1e-13)


# ---------------------------------------------------------------------------------------------
# implied vol
# ---------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    model=st.sampled_from([P.BLACK76, P.BSM]),
    s=spot,
    m=moneyness,
    t=expiry,
    vol=sigma,
    r=rate,
    q=dividend,
    call=st.booleans(),
)
def test_implied_vol_round_trip(model, s, m, t, vol, r, q, call):
    k = s * m
    price = P.value(model, s, k, t, vol, r, q, call)
    iv = P.implied_vol(price, model, s, k, t, r, q, call)
    assert np.isfinite(iv)
    assert P.value(model, s, k, t, iv, r, q, call) == pytest.approx(price, abs=1e-9 * max(s, k))
    f = s if model == P.BLACK76 else s * math.exp((r - q) * t)
    time_value = price - math.exp(-r * t) * max(f - k if call else k - f, 0.0)
    if time_value > 1e-6 * k:
        assert iv == pytest.approx(vol, abs=1e-8)


def test_implied_vol_array_round_trip_and_bounds():
    rng = np.random.default_rng(7)
    n = 5000
    model = rng.choice([P.BLACK76, P.BSM], n)
    s = rng.uniform(50.0, 150.0, n)
    k = rng.uniform(50.0, 150.0, n)
    t = rng.uniform(0.05, 2.0, n)
    vol = rng.uniform(0.05, 0.8, n)
    r = rng.uniform(0.0, 0.08, n)
    q = rng.uniform(0.0, 0.04, n)
    call = rng.random(n) < 0.5
    price = P.value(model, s, k, t, vol, r, q, call)
    iv = P.implied_vol(price, model, s, k, t, r, q, call)
    assert np.isfinite(iv).all()
    np.testing.assert_allclose(P.value(model, s, k, t, iv, r, q, call), price, atol=1e-9 * 150.0)
    # outside the no-arbitrage bounds: NaN
    f = np.where(model == P.BLACK76, s, s * np.exp((r - q) * t))
    df = np.exp(-r * t)
    lower = df * np.maximum(np.where(call, f - k, k - f), 0.0)
    upper = df * np.where(call, f, k)
    assert np.isnan(P.implied_vol(lower - 0.01, model, s, k, t, r, q, call)).all()
    assert np.isnan(P.implied_vol(upper, model, s, k, t, r, q, call)).all()
    assert np.isnan(P.implied_vol(upper + 1.0, model, s, k, t, r, q, call)).all()
    # on the lower bound: vol 0
    np.testing.assert_array_equal(P.implied_vol(lower, model, s, k, t, r, q, call), 0.0)


def test_implied_vol_not_an_option_is_nan():
    out = P.implied_vol(
        [5.0, 5.0, 5.0, -1.0], [P.LINEAR, P.BSM, P.BSM, P.BSM], 100.0, 100.0, [1.0, 0.0, -1.0, 1.0]
    )
    assert np.isnan(out).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_implied_vol_american_round_trip(engine):
    s = np.array([90.0, 95.0, 100.0, 105.0, 120.0, 100.0])
    model = np.array([P.BSM, P.BSM, P.BLACK76, P.BLACK76, P.BSM, P.BSM])
    call = np.array([False, False, True, False, True, True])
    vol = np.array([0.2, 0.35, 0.25, 0.3, 0.15, 0.5])
    price = P.value(model, s, 100.0, 0.75, vol, 0.06, 0.03, call, True, engine=engine)
    iv = P.implied_vol(price, model, s, 100.0, 0.75, 0.06, 0.03, call, True, engine=engine)
    np.testing.assert_allclose(iv, vol, atol=1e-8)
    # below the zero-vol (exercise now) value: NaN
    assert np.isnan(P.implied_vol(19.0, P.BSM, 80.0, 100.0, 0.75, 0.06, 0.0, False, True, engine=engine))


# ---------------------------------------------------------------------------------------------
# engines
# ---------------------------------------------------------------------------------------------


def assert_close(a: np.ndarray, b: np.ndarray, rtol: float, atol: np.ndarray) -> None:
    """|a - b| <= rtol |b| + atol elementwise (atol may be an array); NaN only where both are NaN."""
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    bad = np.flatnonzero(np.abs(a - b) > rtol * np.abs(b) + atol)
    assert bad.size == 0, f"{bad.size} elements differ, e.g. {a[bad[:3]]} vs {b[bad[:3]]}"


def random_book(n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    model = rng.integers(0, 3, n)
    s = rng.uniform(20.0, 200.0, n)
    k = s * rng.uniform(0.6, 1.6, n)
    t = rng.uniform(-0.1, 3.0, n)
    vol = rng.uniform(0.0, 1.0, n)
    vol[rng.random(n) < 0.05] = 0.0
    r = rng.uniform(-0.01, 0.1, n)
    q = rng.uniform(0.0, 0.06, n)
    call = rng.random(n) < 0.5
    return model, s, k, t, vol, r, q, call


@pytest.mark.parametrize("fn", [P.value, P.delta])
def test_engines_agree_on_a_random_mixed_book(fn):
    model, s, k, t, vol, r, q, call = random_book(200_000, seed=1)
    a = fn(model, s, k, t, vol, r, q, call, engine="numba")
    b = fn(model, s, k, t, vol, r, q, call, engine="numpy")
    assert np.isfinite(a).all()
    # 1e-12 relative, with a floor of 1e-13 of the strike where the Black formula cancels
    # (far out of the money at small vol sqrt(t): values far below the strike's rounding)
    assert_close(a, b, rtol=1e-12, atol=1e-13 * k if fn is P.value else 1e-13)


@pytest.mark.parametrize("fn", [P.value, P.delta])
def test_engines_agree_on_american_elements(fn):
    model, s, k, t, vol, r, q, call = random_book(400, seed=2)
    american = np.random.default_rng(3).random(400) < 0.5
    a = fn(model, s, k, t, vol, r, q, call, american, steps=150, engine="numba")
    b = fn(model, s, k, t, vol, r, q, call, american, steps=150, engine="numpy")
    # same arithmetic in the same order: only exp/log rounding differs (deltas cancel near 0)
    assert_close(a, b, rtol=1e-12, atol=1e-13 * k if fn is P.value else 1e-12)


def test_cody_normal_cdf_is_accurate():
    # the numba engine's N(x) (run here as plain Python) against math.erfc
    for x in np.linspace(-37.0, 9.0, 4601):
        x = float(x)
        ref = ncdf(x)
        assert P._ncdf(x, math.exp(-0.5 * x * x)) == pytest.approx(ref, rel=5e-14 * max(1.0, x * x / 8.0))


def _clear_engine_caches():
    J.numba_available.cache_clear()
    J._warn_fallback.cache_clear()


def test_auto_falls_back_to_numpy_with_one_warning(monkeypatch):
    _clear_engine_caches()
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" now raises ImportError
    try:
        with pytest.warns(RuntimeWarning, match="slower numpy engine"):
            v = P.value(P.BSM, 42.0, 40.0, 0.5, 0.2, 0.1)
        assert v == P.value(P.BSM, 42.0, 40.0, 0.5, 0.2, 0.1, engine="numpy")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            P.delta(P.BSM, 42.0, 40.0, 0.5, 0.2, 0.1)
            P.implied_vol(4.76, P.BSM, 42.0, 40.0, 0.5, 0.1)
    finally:
        _clear_engine_caches()


def test_without_numba_compile_kernel_returns_the_python_function(monkeypatch):
    _clear_engine_caches()
    monkeypatch.setitem(sys.modules, "numba", None)
    try:
        assert not J.numba_available()
        assert J.compile_kernel(P._tree_scalar, parallel=True) is P._tree_scalar
    finally:
        _clear_engine_caches()


def test_unknown_engine_names_the_allowed_values():
    with pytest.raises(ValueError, match="'auto', 'numba', 'numpy'"):
        P.value(P.BSM, 42.0, 40.0, 0.5, 0.2, 0.1, engine="fast")
    assert J.resolve_engine("numpy") == "numpy" and J.resolve_engine("numba") == "numba"


def test_import_does_not_import_numba():
    # load the kernels package alone (not the marginsim package) in a fresh interpreter
    import subprocess

    init = str(Path(P.__file__).with_name("__init__.py"))
    code = (
        "import importlib, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('kernels_alone', {init!r},"
        f" submodule_search_locations=[{str(Path(init).parent)!r}])\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "sys.modules['kernels_alone'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "importlib.import_module('kernels_alone.pricing')\n"
        "print('numba' in sys.modules, 'scipy.special' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("want_delta", [False, True])
def test_the_engines_give_the_same_bits(want_delta):
    """numpy evaluates the compiled kernel's operations in its order (Cody's normal CDF, Dekker's
    square): the same bits, edge cases included, where numpy's exp / log are the C library's (the
    tests pin numpy's SIMD dispatch to AVX2: tests/conftest.py)."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(7)
    n = 20_000
    model = rng.choice([P.BLACK76, P.BSM, P.LINEAR], n, p=[0.475, 0.475, 0.05])
    s, k = rng.uniform(0.0, 150.0, n), rng.uniform(0.0, 150.0, n)
    t, vol = rng.uniform(-0.1, 2.0, n), rng.uniform(0.0, 0.8, n)
    r, q, call = rng.uniform(0.0, 0.08, n), rng.uniform(0.0, 0.03, n), rng.random(n) < 0.5
    for a in (s, k, vol, t):
        a[rng.random(n) < 0.02] = 0.0
    vol[rng.random(n) < 0.01] = -0.1
    vol[rng.random(n) < 0.01] = 1e-9  # far out of the money at tiny vol sqrt(t)
    t[rng.random(n) < 0.01] = np.nan
    f = P.delta if want_delta else P.value
    compiled = f(model, s, k, t, vol, r, q, call, engine="numba")
    reference = f(model, s, k, t, vol, r, q, call, engine="numpy")
    np.testing.assert_array_equal(compiled, reference)


def test_auto_picks_numpy_for_small_work_only():
    assert J.resolve_engine("auto", size=64) == "numpy"
    assert J.resolve_engine("numba", size=64) == "numba"
    assert J.resolve_engine("auto", size=J.AUTO_NUMPY_BELOW) == J.resolve_engine("auto")
