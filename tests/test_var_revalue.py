"""The var method's fused option revaluation (:func:`marginsim.kernels.var.revalue_options`) against
the pricing kernel at the scenario levels and vols, position by position.

The reference materialises every scenario level ``level x factor`` and vol ``vol x vol_factor``,
prices them with :func:`marginsim.kernels.pricing.value` (which takes ``ln(F / K)`` as the log of
the scenario's ``F / K``, where the fused kernel adds the log move to ``ln(F / K)`` now) and adds
``weight x value`` per position with :func:`numpy.add.at`: the two agree to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from marginsim.kernels import pricing
from marginsim.kernels.var import revalue_options


def _book(rng: np.random.Generator, n_o: int, n_g: int, n_d: int, n_s: int, n_u: int = 2):
    model = rng.choice([pricing.BLACK76, pricing.BSM], n_o)
    strike = rng.uniform(70.0, 140.0, n_o)
    is_call = rng.random(n_o) < 0.5
    und = rng.integers(0, n_u, n_o)
    level = 100.0 * np.exp(rng.normal(0.0, 0.1, (n_o, n_g)))
    vol = rng.uniform(0.1, 0.5, (n_o, n_g))
    t = rng.uniform(0.02, 2.0, (n_o, n_g))
    rate = rng.uniform(0.0, 0.06, (n_o, n_g))
    q = rng.uniform(0.0, 0.03, (n_o, n_g))
    # edge cases of pricing.value: expired (intrinsic at the scenario level), zero vol (discounted
    # forward intrinsic), zero strike
    t[0, 0] = 0.0
    vol[1 % n_o, -1] = 0.0
    strike[2 % n_o] = 0.0 if n_o > 2 else strike[2 % n_o]
    log_factor = rng.normal(0.0, 0.05, (n_u, n_s, n_d))
    log_factor[:, 0, :] = 0.0  # an unchanged scenario: the value now
    log_factor[0, 1, :] = np.log(0.7)  # a given move (an explicit stress scenario's 1 + m)
    factor = np.exp(log_factor)
    factor[0, 1, :] = 0.7
    date = rng.integers(0, n_d, n_g)
    return model, strike, is_call, und, level, vol, t, rate, q, factor, log_factor, date


def _reference(
    model, strike, is_call, und, level, vol, t, rate, q, factor, vol_factor, date, acc, row, w, n_a
):
    n_o, n_g = level.shape
    n_s = factor.shape[1]
    fac = factor[und][:, :, date]  # (O, S, G)
    vf = 1.0 if vol_factor is None else vol_factor[und][:, :, date]
    v = pricing.value(
        model[:, None, None],
        level[:, None, :] * fac,
        strike[:, None, None],
        t[:, None, :],
        vol[:, None, :] * vf,
        rate[:, None, :],
        q[:, None, :],
        is_call[:, None, None],
        False,
        engine="numpy",
    ).reshape(n_o, n_s * n_g)
    out = np.zeros((n_a, n_s * n_g))
    np.add.at(out, acc, w[:, None] * v[row])
    return out, v


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("vols_move", [False, True])
@pytest.mark.parametrize("n_g, n_d", [(1, 1), (7, 5)])
def test_fused_revaluation_equals_the_pricing_kernel_per_position(engine, vols_move, n_g, n_d):
    rng = np.random.default_rng(11 + n_g + vols_move)
    n_o, n_s, n_a = 9, 300, 4
    model, strike, is_call, und, level, vol, t, rate, q, factor, log_factor, date = _book(
        rng, n_o, n_g, n_d, n_s
    )
    vol_factor = np.exp(rng.normal(0.0, 0.1, factor.shape)) if vols_move else None
    # several positions per contract, in several accounts, of either sign
    row = np.concatenate([np.arange(n_o), rng.integers(0, n_o, 12)])
    acc = rng.integers(0, n_a, row.size)
    w = rng.choice([-1.0, 1.0], row.size) * rng.integers(1, 20, row.size) * 50.0
    want, values = _reference(
        model, strike, is_call, und, level, vol, t, rate, q, factor, vol_factor, date, acc, row, w, n_a
    )
    out = np.zeros((n_a, n_s * n_g))
    revalue_options(
        model, strike, is_call, und, level, vol, t, rate, q, factor, log_factor, vol_factor, date,
        acc, row, w, out, block_elements=1000, engine=engine,
    )  # fmt: skip
    scale = np.abs(w).sum() * 200.0  # currency of a price point's rounding
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-13 * scale)
    # the expired contract (row 0 at grid point 0) is worth its intrinsic value at the scenario level
    one = np.zeros((1, n_s * n_g))
    revalue_options(
        model, strike, is_call, und, level, vol, t, rate, q, factor, log_factor, vol_factor, date,
        np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.ones(1), one, engine=engine,
    )  # fmt: skip
    lvl = level[0, 0] * factor[und[0], :, date[0]]
    intrinsic = np.maximum(lvl - strike[0], 0.0) if is_call[0] else np.maximum(strike[0] - lvl, 0.0)
    np.testing.assert_array_equal(one.reshape(n_s, n_g)[:, 0], intrinsic)


def test_engines_agree_and_empty_inputs_add_nothing():
    rng = np.random.default_rng(5)
    model, strike, is_call, und, level, vol, t, rate, q, factor, log_factor, date = _book(rng, 6, 3, 2, 120)
    row = np.arange(6)
    acc = np.array([0, 1, 0, 2, 1, 0])
    w = np.array([3.0, -2.0, 5.0, 1.0, -7.0, 4.0])
    got = {}
    for engine in ("numba", "numpy"):
        out = np.zeros((3, 120 * 3))
        revalue_options(
            model, strike, is_call, und, level, vol, t, rate, q, factor, log_factor, None, date,
            acc, row, w, out, engine=engine,
        )  # fmt: skip
        got[engine] = out
    np.testing.assert_allclose(got["numba"], got["numpy"], rtol=1e-13, atol=1e-12)
    out = np.ones((3, 360))
    empty = np.zeros(0, dtype=np.int64)
    revalue_options(
        model, strike, is_call, und, level, vol, t, rate, q, factor, log_factor, None, date,
        empty, empty, np.zeros(0), out,
    )  # fmt: skip
    assert (out == 1.0).all()


def test_american_or_linear_models_are_refused():
    rng = np.random.default_rng(2)
    model, strike, is_call, und, level, vol, t, rate, q, factor, log_factor, date = _book(rng, 3, 1, 1, 10)
    model[1] = pricing.LINEAR
    with pytest.raises(ValueError, match="BLACK76 or BSM"):
        revalue_options(
            model, strike, is_call, und, level, vol, t, rate, q, factor, log_factor, None, date,
            np.zeros(3, dtype=np.int64), np.arange(3), np.ones(3), np.zeros((1, 10)),
        )  # fmt: skip


def test_var_of_american_and_european_options_by_hand(tmp_path):
    """The method end to end on a book of an American put on a stock (the tree, block by block) and
    a European call on a future (the fused pass): VaR equal to the k-th largest loss of the
    options revalued by pricing.value at price now x exp(2-day return)."""
    import math

    import pandas as pd

    import marginsim

    rng = np.random.default_rng(8)
    dates = pd.bdate_range(end="2024-06-28", periods=120)
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(rng.normal(0.0, 0.015, 119))]))
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "X": close}).to_csv(tmp_path / "h.csv", index=False)
    sc = {
        "name": "american",
        "as_of": "2024-06-28",
        "market": {"X": {"price": 100.0, "vol": 0.3, "rate": 0.04, "dividend_yield": 0.01}},
        "contracts": {
            "XA": {
                "type": "put",
                "underlying": "X",
                "option_on": "spot",
                "strike": 105,
                "expiry": "2024-12-20",
                "exercise": "american",
            },
            "XC": {
                "type": "call",
                "underlying": "X",
                "option_on": "future",
                "strike": 98,
                "expiry": "2024-09-20",
            },
        },
        "positions": [{"contract": "XA", "quantity": -4}, {"contract": "XC", "quantity": -3}],
        "history": {"file": str(tmp_path / "h.csv")},
        "var": {"filter": "none", "measure": "var", "confidence": 0.95, "lookback_days": 100},
    }
    inputs = marginsim.load(sc)
    assert inputs.contracts["american"].values.tolist() == [True, False]
    got = marginsim.margin(inputs, methods="var", engine="numba")["var"]
    r = np.log(close[2:] / close[:-2])[-100:]  # the 2-day returns
    moved = 100.0 * np.exp(r)
    t_a = (pd.Timestamp("2024-12-20") - pd.Timestamp("2024-06-28")).days / 365.0
    t_c = (pd.Timestamp("2024-09-20") - pd.Timestamp("2024-06-28")).days / 365.0

    def put(s):
        return pricing.value(pricing.BSM, s, 105.0, t_a, 0.3, 0.04, 0.01, False, True)

    def call(s):
        return pricing.value(pricing.BLACK76, s, 98.0, t_c, 0.3, 0.04, 0.0, True, False)

    loss = 4 * (put(moved) - put(100.0)) + 3 * (call(moved) - call(100.0))
    want = np.sort(loss)[-math.ceil(round(100 * 0.05, 9))]
    assert float(got["hvar"].item()) == pytest.approx(want, rel=1e-12)
    slow = marginsim.margin(inputs, methods="var", engine="numpy")["var"]
    assert float(slow["hvar"].item()) == pytest.approx(want, rel=1e-12)
