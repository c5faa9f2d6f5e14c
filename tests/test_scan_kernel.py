"""The fused scan kernel: numba and numpy engines agree, and both match the pricing module."""

from __future__ import annotations

import numpy as np
import pytest

from marginsim import scenario_sets
from marginsim.kernels import pricing
from marginsim.kernels.scan import revalue_scan


def items(n=400, seed=3):
    rng = np.random.default_rng(seed)
    level = rng.uniform(20, 200, n)
    t = rng.choice([0.0, 1 / 365, 0.1, 0.5, 1.5], n)
    model = rng.choice([pricing.LINEAR, pricing.BLACK76, pricing.BSM], n)
    vol = rng.choice([0.0, 0.05, 0.3, 0.8], n)
    s16 = scenario_sets.span16()
    s2 = scenario_sets.span16(2.0, 0.35)
    return dict(
        model=model,
        level=level,
        strike=level * rng.uniform(0.5, 1.5, n),
        price_range=0.1 * level,
        vol=vol,
        vol_range=rng.choice([0.0, 0.04], n),
        t_now=t,
        t_after=np.maximum(t - 1 / 365, 0.0),
        r=rng.uniform(0, 0.08, n),
        q=rng.uniform(0, 0.04, n),
        is_call=rng.random(n) < 0.5,
        american=rng.random(n) < 0.2,
        set_index=rng.integers(0, 2, n),
        price_moves=np.stack([s16["price_move"].values, s2["price_move"].values]),
        vol_moves=np.stack([s16["vol_move"].values, s2["vol_move"].values]),
        delta_moves=np.array(scenario_sets.COMPOSITE_DELTA_MOVES),
    )


def test_engines_agree_on_mixed_models_edge_cases_and_american():
    kw = items()
    a = revalue_scan(**kw, engine="numba")
    b = revalue_scan(**kw, engine="numpy")
    for x, y in zip(a, b):
        assert np.all(np.isfinite(x))
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_matches_pricing_value_at_moved_points(engine):
    kw = items(60, seed=9)
    v_now, v_moved, deltas = revalue_scan(**kw, engine=engine)
    j = kw["set_index"]
    x = np.maximum(kw["level"][:, None] + kw["price_moves"][j] * kw["price_range"][:, None], 0.0)
    v = np.maximum(kw["vol"][:, None] + kw["vol_moves"][j] * kw["vol_range"][:, None], 0.0)
    col = {k: kw[k][:, None] for k in ("model", "strike", "t_after", "r", "q", "is_call", "american")}
    expect = pricing.value(
        col["model"],
        x,
        col["strike"],
        col["t_after"],
        v,
        col["r"],
        col["q"],
        col["is_call"],
        col["american"],
        engine="numpy",
    )
    np.testing.assert_allclose(v_moved, expect, rtol=1e-12, atol=1e-12)
    now = pricing.value(
        kw["model"],
        kw["level"],
        kw["strike"],
        kw["t_now"],
        kw["vol"],
        kw["r"],
        kw["q"],
        kw["is_call"],
        kw["american"],
        engine="numpy",
    )
    np.testing.assert_allclose(v_now, now, rtol=1e-12, atol=1e-12)
    xd = np.maximum(kw["level"][:, None] + kw["delta_moves"] * kw["price_range"][:, None], 0.0)
    d = pricing.delta(
        col["model"],
        xd,
        col["strike"],
        col["t_after"],
        kw["vol"][:, None],
        col["r"],
        col["q"],
        col["is_call"],
        col["american"],
        engine="numpy",
    )
    np.testing.assert_allclose(deltas, d, rtol=1e-12, atol=1e-12)
