"""The `var` method (historical-simulation VaR / ES margin) against hand and numpy computations.

Every expected number is computed here from the history's closes, independently of the method:
the overlapping returns, the tail rule k = ceil(n (1 - c)), the EWMA recursion written as a loop,
the option values from the pricing kernel's formulas at each scenario.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import marginsim
from marginsim import InputError
from marginsim.cli import main
from marginsim.kernels import pricing
from marginsim.kernels.var import ewma_variance, tail_count, tail_measure
from marginsim.methods.var.scenarios import build_scenarios
from marginsim.params.var import VarParams
from marginsim.testing import check_method

AS_OF = "2024-06-28"


def write_history(path: Path, days: int = 300, seed: int = 3, vols: bool = False) -> pd.DataFrame:
    """A synthetic daily history (business days up to AS_OF) of X, Y (and X's implied vol in percent)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(end=AS_OF, periods=days)
    r = rng.standard_t(4, size=(days - 1, 2)) * [0.012, 0.02]
    close = np.vstack([[100.0, 40.0], [100.0, 40.0] * np.exp(np.cumsum(r, axis=0))])
    frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "X": close[:, 0], "Y": close[:, 1]})
    if vols:
        frame["X_vol"] = 20 * np.exp(np.cumsum(rng.normal(0, 0.05, days)))
    frame.to_csv(path, index=False)
    return frame


def scenario(history: Path, positions: list[dict], var: dict | None = None, **extra) -> dict:
    return {
        "name": "var test",
        "as_of": AS_OF,
        "market": {
            "X": {"price": 110.0, "vol": 0.25, "rate": 0.03, "adv": 1000.0},
            "Y": {"price": 45.0, "vol": 0.4},
        },
        "contracts": {
            "XF": {"type": "future", "underlying": "X", "multiplier": 50, "expiry": "2024-12-20"},
            "YS": {"type": "stock", "underlying": "Y", "multiplier": 10},
            "XP": {
                "type": "put",
                "underlying": "X",
                "option_on": "future",
                "strike": 105,
                "expiry": "2024-09-20",
                "multiplier": 50,
            },
        },
        "positions": positions,
        "history": {"file": str(history)},
        "var": var or {},
        **extra,
    }


def h_day_returns(frame: pd.DataFrame, col: str, h: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The last n overlapping h-day log returns of a column and their end dates (by hand)."""
    close = frame[col].to_numpy()
    r = np.log(close[h:] / close[:-h])
    return r[-n:], frame["date"].to_numpy()[h:][-n:]


LINEAR_BOOK = [
    {"contract": "XF", "quantity": 3, "account": "a"},
    {"contract": "YS", "quantity": -2, "account": "a"},
    {"contract": "YS", "quantity": 5, "account": "b"},
]


def linear_loss(frame: pd.DataFrame, h: int, n: int, xq: float, yq: float) -> tuple[np.ndarray, np.ndarray]:
    rx, dates = h_day_returns(frame, "X", h, n)
    ry, _ = h_day_returns(frame, "Y", h, n)
    pnl = xq * 50 * 110.0 * np.expm1(rx) + yq * 10 * 45.0 * np.expm1(ry)
    return -pnl, dates


# ------------------------------------------------------------------------------------------------
# the tail rules
# ------------------------------------------------------------------------------------------------


def test_tail_count_is_ceil_n_times_one_minus_c():
    assert tail_count(100, 0.99) == 1  # 100 x 0.01 is 1 (not 1.0000000000000009 -> 2)
    assert tail_count(2520, 0.975) == 63
    assert tail_count(10, 0.75) == 3  # ceil(2.5)
    assert tail_count(250, 0.99) == 3  # ceil(2.5)
    assert tail_count(5, 0.999) == 1  # at least one


def test_var_is_the_kth_largest_loss_and_es_the_mean_of_the_k_largest():
    loss = np.array([[3.0, -1.0, 10.0, 7.0, 8.0, 2.0, 9.0, 0.0, 1.0, 4.0]])
    value, at = tail_measure(loss, 3, "var")
    assert value[0] == 8.0 and at[0] == 4  # 10, 9, 8: the third largest
    value, at = tail_measure(loss, 3, "es")
    assert value[0] == pytest.approx(9.0) and at[0] == 2  # (10 + 9 + 8) / 3; set by the largest
    tied = np.array([[5.0, 1.0, 5.0, 0.0]])
    assert tail_measure(tied, 1, "var")[1][0] == 2  # a tie goes to the later scenario


# ------------------------------------------------------------------------------------------------
# linear book against numpy
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("measure, confidence, h", [("var", 0.99, 2), ("es", 0.975, 2), ("var", 0.95, 5)])
def test_linear_book_equals_a_direct_numpy_computation(tmp_path, measure, confidence, h):
    frame = write_history(tmp_path / "h.csv")
    n = 200
    var = {
        "filter": "none",
        "lookback_days": n,
        "holding_days": h,
        "measure": measure,
        "confidence": confidence,
    }
    ds = marginsim.margin(scenario(tmp_path / "h.csv", LINEAR_BOOK, var), methods="var")["var"]
    k = math.ceil(round(n * (1 - confidence), 9))
    for acct, xq, yq in (("a", 3, -2), ("b", 0, 5)):
        loss, dates = linear_loss(frame, h, n, xq, yq)
        order = np.argsort(loss)
        want = loss[order[-k]] if measure == "var" else loss[order[-k:]].mean()
        got = ds.sel(account=acct)
        assert float(got["hvar"]) == pytest.approx(want, rel=1e-10)
        assert float(got["maintenance"]) == pytest.approx(want, rel=1e-10)
        assert float(got["initial"]) == pytest.approx(want, rel=1e-10)
        assert got["var_date"].item() == dates[order[-k] if measure == "var" else order[-1]]
    assert ds.attrs["scenarios"] == n and ds.attrs["tail_count"] == k
    assert ds.attrs["last_scenario_date"] == AS_OF and ds.attrs["vol_moves"] == "none: vols unchanged"


def test_lookback_longer_than_the_history_takes_every_return(tmp_path):
    frame = write_history(tmp_path / "h.csv", days=120)
    ds = marginsim.margin(scenario(tmp_path / "h.csv", LINEAR_BOOK, {"filter": "none"}), methods="var")["var"]
    assert ds.attrs["scenarios"] == 118  # 120 closes: 118 two-day returns (default lookback 2520)
    loss, _ = linear_loss(frame, 2, 118, 0, 5)
    k = math.ceil(round(118 * 0.025, 9))
    assert float(ds["hvar"].sel(account="b")) == pytest.approx(np.sort(loss)[-k:].mean(), rel=1e-10)


def test_grid_shift_moves_the_price_now(tmp_path):
    write_history(tmp_path / "h.csv")
    sc = scenario(tmp_path / "h.csv", LINEAR_BOOK[2:], {"filter": "none"}, grid={"shift": [-0.1, 0.0, 0.2]})
    ds = marginsim.margin(sc, methods="var")["var"]
    hv = ds["hvar"].sel(account="b").values
    np.testing.assert_allclose(hv, hv[1] * np.array([0.9, 1.0, 1.2]), rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# filters
# ------------------------------------------------------------------------------------------------


def test_ewma_filtered_scenarios_against_a_hand_recursion(tmp_path):
    frame = write_history(tmp_path / "h.csv", days=40)
    lam, seed_days, h = 0.9, 5, 2
    r = np.diff(np.log(frame[["X", "Y"]].to_numpy()), axis=0)
    want = np.empty_like(r)
    for j in range(2):  # the recursion as written in the RiskMetrics document, one day at a time
        s2 = [np.mean(r[:seed_days, j] ** 2)]
        for t in range(1, len(r) + 1):
            s2.append(lam * s2[-1] + (1 - lam) * r[t - 1, j] ** 2)
        for t in range(len(r)):
            want[t, j] = r[t, j] * math.sqrt(s2[-1] / s2[t])
    want_h = want[1:] + want[:-1]  # two-day sums, ending on dates[2:]
    sc = marginsim.load(scenario(tmp_path / "h.csv", LINEAR_BOOK))
    params = VarParams(filter="ewma", ewma_lambda=lam, ewma_seed_days=seed_days, holding_days=h)
    scen = build_scenarios(sc.history, params, None)
    np.testing.assert_allclose(np.log(scen.price[:, :, 0]), want_h.T, rtol=1e-12, atol=1e-15)
    labels = scen.label_text[scen.label_index[:, 0]]
    assert labels[-1] == AS_OF and labels[0] == frame["date"].iloc[2]
    at_date, now = ewma_variance(r, lam, seed_days)
    assert now[0] == pytest.approx(lam * at_date[-1, 0] + (1 - lam) * r[-1, 0] ** 2)


def test_garch_filter_uses_the_arch_fit(tmp_path):
    from arch import arch_model

    frame = write_history(tmp_path / "h.csv", days=400)
    sc = scenario(
        tmp_path / "h.csv", LINEAR_BOOK[2:], {"filter": "garch", "holding_days": 1, "measure": "var"}
    )
    ds = marginsim.margin(sc, methods="var")["var"]
    r = np.diff(np.log(frame["Y"].to_numpy()))
    res = arch_model(r * 100, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off")
    sigma = np.asarray(res.conditional_volatility)
    now = math.sqrt(float(res.forecast(horizon=1, reindex=False).variance.values[-1, 0]))
    scaled = r * now / sigma
    loss = -5 * 10 * 45.0 * np.expm1(scaled)
    k = math.ceil(round(len(r) * 0.025, 9))
    assert float(ds["hvar"].sel(account="b")) == pytest.approx(np.sort(loss)[-k], rel=1e-6)
    assert ds.attrs["filter"] == "garch"


# ------------------------------------------------------------------------------------------------
# options: full revaluation, vols moved by the history's vol returns
# ------------------------------------------------------------------------------------------------


def test_option_fully_revalued_with_history_vol_moves(tmp_path):
    frame = write_history(tmp_path / "h.csv", vols=True)
    n, h = 150, 2
    sc = scenario(
        tmp_path / "h.csv",
        [{"contract": "XP", "quantity": -4, "account": "a"}],
        {"filter": "none", "lookback_days": n, "measure": "var", "confidence": 0.98},
    )
    sc["history"].update(vol_columns={"X": "X_vol"}, vol_unit="percent")
    ds = marginsim.margin(sc, methods="var")["var"]
    rx, dates = h_day_returns(frame, "X", h, n)
    rv, _ = h_day_returns(frame, "X_vol", h, n)
    t = (pd.Timestamp("2024-09-20") - pd.Timestamp(AS_OF)).days / 365.0

    def put(f, vol):  # Black-76 by its formula
        from scipy.stats import norm

        d1 = (np.log(f / 105) + 0.5 * vol**2 * t) / (vol * np.sqrt(t))
        d2 = d1 - vol * np.sqrt(t)
        return np.exp(-0.03 * t) * (105 * norm.cdf(-d2) - f * norm.cdf(-d1))

    loss = 4 * 50 * (put(110 * np.exp(rx), 0.25 * np.exp(rv)) - put(110.0, 0.25))
    k = math.ceil(round(n * 0.02, 9))
    order = np.argsort(loss)
    assert float(ds["hvar"].item()) == pytest.approx(loss[order[-k]], rel=1e-9)
    assert ds["var_date"].item() == dates[order[-k]]
    assert ds.attrs["vol_moves"] == "history vol returns: X"
    # without vol columns the vol stays: a different number, said in the attrs
    del sc["history"]["vol_columns"]
    flat = marginsim.margin(sc, methods="var")["var"]
    loss_flat = 4 * 50 * (put(110 * np.exp(rx), 0.25) - put(110.0, 0.25))
    assert float(flat["hvar"].item()) == pytest.approx(np.sort(loss_flat)[-k], rel=1e-9)
    assert flat.attrs["vol_moves"] == "none: vols unchanged"
    assert pricing.BLACK76 == int(marginsim.load(sc).contracts["model"].sel(contract="XP"))


# ------------------------------------------------------------------------------------------------
# stress, weight_x, add-ons, APC
# ------------------------------------------------------------------------------------------------


def test_stress_windows_explicit_scenarios_and_weight_x(tmp_path):
    frame = write_history(tmp_path / "h.csv")
    n = 100
    window = {"from": frame["date"].iloc[50], "to": frame["date"].iloc[80]}
    var = {
        "filter": "none",
        "lookback_days": n,
        "weight_x": 0.6,
        "stress": {"windows": [window], "scenarios": [{"name": "down 15", "moves": {"X": -0.15}}]},
    }
    book = [{"contract": "XF", "quantity": 2, "account": "a"}]
    ds = marginsim.margin(scenario(tmp_path / "h.csv", book, var), methods="var")["var"]
    close = frame["X"].to_numpy()
    r2 = np.log(close[2:] / close[:-2])  # ending on dates[2:]
    inside = (frame["date"].to_numpy()[2:] >= window["from"]) & (frame["date"].to_numpy()[2:] <= window["to"])
    window_loss = -2 * 50 * 110.0 * np.expm1(r2[inside])
    stress = max(window_loss.max(), 2 * 50 * 110.0 * 0.15)
    loss, _ = linear_loss(frame, 2, n, 2, 0)
    hvar = np.sort(loss)[-math.ceil(round(n * 0.025, 9)) :].mean()
    got = ds.sel(account="a")
    assert float(got["stress"]) == pytest.approx(stress, rel=1e-10)
    assert float(got["hvar"]) == pytest.approx(hvar, rel=1e-10)
    assert float(got["maintenance"]) == pytest.approx(0.6 * hvar + 0.4 * stress, rel=1e-10)
    which = (
        "down 15"
        if stress == 2 * 50 * 110.0 * 0.15
        else frame["date"].to_numpy()[2:][inside][window_loss.argmax()]
    )
    assert got["stress_scenario"].item() == which


def test_liquidity_and_concentration_add_ons_on_the_net_delta(tmp_path):
    write_history(tmp_path / "h.csv")
    book = [
        {"contract": "XF", "quantity": 3, "account": "a"},
        {"contract": "XF", "quantity": -1, "account": "a"},  # nets to 2 contracts = 100 units of X
        {"contract": "YS", "quantity": -20, "account": "a"},  # 200 units of Y
    ]
    var = {
        "filter": "none",
        "liquidity": {"X": 0.002, "Y": 0.01},
        "concentration": {"threshold": 0.05, "rate": 0.1, "adv": {"Y": 1000.0}},
    }
    ds = marginsim.margin(scenario(tmp_path / "h.csv", book, var), methods="var")["var"].sel(account="a")
    assert float(ds["liquidity"]) == pytest.approx(0.002 * 100 * 110 + 0.01 * 200 * 45)
    # X: adv 1000 from the market, 50 free, 50 charged; Y: adv 1000 given, 50 free, 150 charged
    assert float(ds["concentration"]) == pytest.approx(0.1 * (50 * 110 + 150 * 45))
    parts = sum(float(ds[c]) for c in ("hvar", "liquidity", "concentration"))
    assert float(ds["maintenance"]) == pytest.approx(parts)
    off = marginsim.margin(scenario(tmp_path / "h.csv", book, {"filter": "none"}), methods="var")["var"]
    assert float(off["liquidity"].sum()) == 0.0 and float(off["concentration"].sum()) == 0.0


def test_add_ons_use_the_option_delta(tmp_path):
    write_history(tmp_path / "h.csv")
    book = [{"contract": "XP", "quantity": 10, "account": "a"}]
    ds = marginsim.margin(scenario(tmp_path / "h.csv", book, {"liquidity": {"X": 0.01}}), methods="var")[
        "var"
    ]
    t = (pd.Timestamp("2024-09-20") - pd.Timestamp(AS_OF)).days / 365.0
    d = pricing.delta(pricing.BLACK76, 110.0, 105.0, t, 0.25, 0.03, 0.0, False)
    assert float(ds["liquidity"].item()) == pytest.approx(0.01 * abs(10 * 50 * d) * 110)


@pytest.mark.parametrize("apc", ["buffer", "stressed_weight", "floor"])
def test_apc_modes_on_hand_cases(tmp_path, apc):
    frame = write_history(tmp_path / "h.csv")
    n = 60
    window = {"from": frame["date"].iloc[20], "to": frame["date"].iloc[120]}
    var = {"filter": "none", "lookback_days": n, "measure": "var", "confidence": 0.95, "apc": apc}
    var["weight_x"] = 0.8
    var["stress"] = {"windows": [window]}
    var["apc_floor_days"] = 250
    book = [{"contract": "YS", "quantity": 7, "account": "a"}]
    ds = marginsim.margin(scenario(tmp_path / "h.csv", book, var), methods="var")["var"].sel(account="a")
    close = frame["Y"].to_numpy()
    dates = frame["date"].to_numpy()[2:]
    loss_all = -7 * 10 * 45.0 * np.expm1(np.log(close[2:] / close[:-2]))

    def q(x):
        return np.sort(x)[-math.ceil(round(x.size * 0.05, 9))]

    hvar = max(q(loss_all[-n:]), 0.0)
    inside = (dates >= window["from"]) & (dates <= window["to"])
    stress = max(loss_all[inside].max(), 0.0)
    core = 0.8 * hvar + 0.2 * stress
    if apc == "buffer":
        want = 0.25 * core
    elif apc == "stressed_weight":
        want = 0.8 * 0.25 * (max(q(loss_all[inside]), 0.0) - hvar)
    else:
        want = 0.8 * max(q(loss_all[-250:]) - hvar, 0.0)
    assert float(ds["hvar"]) == pytest.approx(hvar, rel=1e-10)
    assert float(ds["apc"]) == pytest.approx(want, rel=1e-10, abs=1e-9)
    assert float(ds["maintenance"]) == pytest.approx(core + want, rel=1e-10)


def test_initial_ratio(tmp_path):
    write_history(tmp_path / "h.csv")
    ds = marginsim.margin(scenario(tmp_path / "h.csv", LINEAR_BOOK, {"initial_ratio": 1.25}), methods="var")[
        "var"
    ]
    np.testing.assert_allclose(ds["initial"].values, 1.25 * ds["maintenance"].values)


# ------------------------------------------------------------------------------------------------
# the method contract: chunked equals in memory, row order, JSON
# ------------------------------------------------------------------------------------------------


def test_chunked_equals_in_memory_with_options_and_grid(tmp_path):
    write_history(tmp_path / "h.csv", vols=True)
    book = [
        {"contract": "XF", "quantity": 3, "account": "a"},
        {"contract": "XP", "quantity": -5, "account": "a"},
        {"contract": "YS", "quantity": 8, "account": "b"},
        {"contract": "XP", "quantity": 2, "account": "c"},
        {"contract": "XF", "quantity": -1, "account": "c"},
    ]
    var = {"stress": {"scenarios": [{"name": "crash", "moves": {"X": -0.2}, "vol_moves": {"X": 0.5}}]}}
    var["liquidity"] = {"X": 0.001}
    sc = scenario(tmp_path / "h.csv", book, var, grid={"shift": [-0.05, 0.0], "vol_shift": [0.0, 0.05]})
    sc["history"].update(vol_columns={"X": "X_vol"}, vol_unit="percent")
    ds = check_method("var", sc, accounts_per_chunk=1)
    assert set(ds["maintenance"].dims) == {"account", "shift", "vol_shift"}
    assert (ds["stress_scenario"].sel(account="a").values == "crash").all()


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, key_path, message",
    [
        (lambda s: s.pop("history"), "var", "the var method needs `history:`"),
        (lambda s: s["var"].update(weight_x=0.5), "var.weight_x", "add var.stress"),
        (lambda s: s["var"].update(apc="stressed_weight"), "var.apc", "needs var.stress.windows"),
        (lambda s: s["var"].update(liquidity={"Z": 0.1}), "var.liquidity.Z", "unknown underlying 'Z'"),
        (
            lambda s: s["var"].update(stress={"scenarios": [{"name": "x", "moves": {"Z": -0.1}}]}),
            "var.stress.scenarios[0].moves.Z",
            "unknown underlying 'Z'",
        ),
        (
            lambda s: s["var"].update(stress={"windows": [{"from": "2001-01-01", "to": "2001-06-01"}]}),
            "var.stress.windows[0]",
            "no 2-day return of the history ends from 2001-01-01 to 2001-06-01",
        ),
        (
            lambda s: s["var"].update(stress={"windows": [{"from": "2024-02-01", "to": "2024-01-01"}]}),
            "var.stress.windows[0]",
            "is before `from`",
        ),
        (lambda s: s["var"].update(holding_days=400), "var.holding_days", "less than or equal to 250"),
        (lambda s: s["var"].update(confidence=1.0), "var.confidence", "less than 1"),
        (lambda s: s["var"].update(filter="hybrid"), "var.filter", "'none', 'ewma' or 'garch'"),
        (lambda s: s["var"].update(garch_min_days=50), "var.garch_min_days", "greater than or equal to 100"),
        (lambda s: s["var"].update(garch_refit_days=0), "var.garch_refit_days", "greater than or equal to 1"),
        (
            lambda s: (
                s["market"].update(Z={"price": 1.0})
                or s["contracts"].update(ZF={"type": "future", "underlying": "Z"})
                or s["positions"].append({"contract": "ZF", "quantity": 1})
            ),
            "history.columns",
            "underlying 'Z' has no history",
        ),
    ],
)
def test_bad_var_input(tmp_path, change, key_path, message):
    write_history(tmp_path / "h.csv")
    sc = scenario(tmp_path / "h.csv", list(LINEAR_BOOK), {})
    change(sc)
    with pytest.raises(InputError) as e:
        marginsim.margin(sc, methods="var")
    assert e.value.key_path == key_path
    assert message in e.value.problem


def test_history_too_short_and_cli_exit_status(tmp_path):
    write_history(tmp_path / "h.csv", days=3)
    sc = scenario(tmp_path / "h.csv", LINEAR_BOOK, {"holding_days": 5})
    with pytest.raises(InputError, match="the history has 3 dates: 5-day returns need at least 6"):
        marginsim.margin(sc, methods="var")
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    assert main(["margin", str(path), "--method", "var"]) == 2


def test_exported_real_history_margins_an_index_book(tmp_path, capsys):
    assert main(["history", "export", "sp500", str(tmp_path / "sp.parquet")]) == 0
    sc = {
        "name": "index book",
        "as_of": "2019-01-02",
        "market": {"SPX": {"price": 2500.0, "vol": 0.2}},
        "contracts": {"ES": {"type": "future", "underlying": "SPX", "multiplier": 50}},
        "positions": [{"contract": "ES", "quantity": 1}],
        "history": {"file": str(tmp_path / "sp.parquet"), "columns": {"SPX": "sp500"}},
        "var": {"filter": "none", "measure": "var", "confidence": 0.99, "holding_days": 1},
    }
    ds = marginsim.margin(sc, methods="var")["var"]
    from arch.data import sp500

    series = sp500.load()["Close"]
    close = series.to_numpy()
    r = np.log(close[1:] / close[:-1])[-2520:]
    loss = -50 * 2500.0 * np.expm1(r)
    assert float(ds["hvar"].item()) == pytest.approx(np.sort(loss)[-26], rel=1e-10)  # ceil(25.2)
    assert ds.attrs["first_scenario_date"] == str(series.index[-2520].date())  # the last 2520 dates
    assert ds.attrs["last_scenario_date"] == "2018-12-31"


def test_numpy_engine_gives_the_numba_numbers(tmp_path):
    write_history(tmp_path / "h.csv", vols=True)
    book = [
        {"contract": "XF", "quantity": 3, "account": "a"},
        {"contract": "XP", "quantity": -5, "account": "a"},
        {"contract": "YS", "quantity": 8, "account": "b"},
    ]
    sc = scenario(tmp_path / "h.csv", book, {"liquidity": {"X": 0.001}}, grid={"shift": [-0.05, 0.0, 0.1]})
    sc["history"].update(vol_columns={"X": "X_vol"}, vol_unit="percent")
    inputs = marginsim.load(sc)
    fast = marginsim.margin(inputs, methods="var", engine="numba")["var"]
    slow = marginsim.margin(inputs, methods="var", engine="numpy")["var"]
    for name in ("maintenance", "hvar", "stress", "liquidity"):
        np.testing.assert_allclose(slow[name].values, fast[name].values, rtol=1e-12, err_msg=name)
    assert (slow["var_date"].values == fast["var_date"].values).all()


def test_memory_estimate_counts_the_pnl_matrix(tmp_path):
    from marginsim import limits
    from marginsim.registry import REGISTRY

    write_history(tmp_path / "h.csv")
    sc = scenario(tmp_path / "h.csv", LINEAR_BOOK, {"lookback_days": 200})
    inputs = marginsim.load(sc)
    need = limits.estimate_methods(inputs, [REGISTRY["var"]], detail=True)
    assert need >= 3 * 8 * 2 * 200  # losses of 2 accounts x 200 scenarios, about three copies
    ok = marginsim.margin(inputs, methods="var", memory_limit=int(need) + 1)["var"]
    assert ok.sizes["account"] == 2
    with pytest.raises(InputError, match="memory"):
        marginsim.margin(inputs, methods="var", memory_limit=int(need) - 1)


def dated(inputs, frame: pd.DataFrame, days: int):
    """The inputs with a `date` dim over the history's last ``days`` dates (the market rolled by the
    closes, as a backtest's)."""
    last = frame.iloc[-days:]
    close = xr.DataArray(
        last[["X", "Y"]].to_numpy().T,
        dims=("underlying", "date"),
        coords={"underlying": ["X", "Y"], "date": pd.to_datetime(last["date"]).values},
    )
    market = inputs.market.copy()
    market["price"] = close
    return dataclasses.replace(inputs, market=market)


@pytest.mark.parametrize("filter_", ["none", "ewma"])
def test_over_a_date_dim_each_date_uses_the_history_up_to_it(tmp_path, filter_):
    frame = write_history(tmp_path / "h.csv")
    n, days = 100, 5
    var = {"filter": filter_, "lookback_days": n, "measure": "var", "confidence": 0.97, "ewma_lambda": 0.9}
    book = [
        {"contract": "XF", "quantity": 2, "account": "a"},
        {"contract": "XP", "quantity": -3, "account": "a"},
    ]
    inputs = dated(marginsim.load(scenario(tmp_path / "h.csv", book, var)), frame, days)
    ds = marginsim.margin(inputs, methods="var")["var"]
    assert ds["hvar"].dims == ("account", "date")
    close = frame["X"].to_numpy()
    r = np.diff(np.log(close))
    s2 = [np.mean(r[:30] ** 2)]  # the EWMA recursion by hand (seed: first 30 returns)
    for x in r:
        s2.append(0.9 * s2[-1] + 0.1 * x**2)
    k = math.ceil(round(n * 0.03, 9))
    expiry = pd.Timestamp("2024-09-20")
    from scipy.stats import norm

    for i, e in enumerate(range(len(close) - days, len(close))):  # history index of each date
        scaled = r[:e] * (np.sqrt(s2[e] / np.array(s2[:e])) if filter_ == "ewma" else 1.0)
        r_h = (scaled[1:] + scaled[:-1])[-n:]  # two-day returns ending on dates up to e
        f = close[e]
        t = (expiry - pd.Timestamp(frame["date"].iloc[e])).days / 365.0

        def put(x, t=t):
            d1 = (np.log(x / 105) + 0.5 * 0.25**2 * t) / (0.25 * np.sqrt(t))
            return np.exp(-0.03 * t) * (105 * norm.cdf(-(d1 - 0.25 * np.sqrt(t))) - x * norm.cdf(-d1))

        moved = f * np.exp(r_h)
        loss = -(2 * 50 * (moved - f)) + 3 * 50 * (put(moved) - put(f))
        order = np.argsort(loss)
        got = ds.isel(date=i).sel(account="a")
        assert float(got["hvar"]) == pytest.approx(loss[order[-k]], rel=1e-9)
        assert got["var_date"].item() == frame["date"].iloc[e - n + 1 + order[-k]]


def test_over_a_date_dim_later_information_is_refused(tmp_path):
    frame = write_history(tmp_path / "h.csv")
    window = {"from": frame["date"].iloc[-10], "to": frame["date"].iloc[-1]}
    sc = scenario(tmp_path / "h.csv", LINEAR_BOOK, {"stress": {"windows": [window]}})
    with pytest.raises(InputError, match="the window ends after the first valuation date") as e:
        marginsim.margin(dated(marginsim.load(sc), frame, 3), methods="var")
    assert e.value.key_path == "var.stress.windows[0]"


# ------------------------------------------------------------------------------------------------
# filter: garch over a date dim: refitted on the past only
# ------------------------------------------------------------------------------------------------


def test_garch_over_dates_filters_with_the_latest_refit_of_arch(tmp_path):
    """The variance path equals arch's own conditional volatility for the first fit's parameters
    up to the second refit, then the GARCH(1,1) recursion by hand with each refit's parameters
    (arch fits on the returns up to each refit date); each date's scenarios are the returns
    over their own vol times the vol after the date."""
    from arch import arch_model

    from marginsim.kernels.var import garch_variance_path
    from marginsim.methods.var.scenarios import garch_refit_dates, garch_refit_variance

    frame = write_history(tmp_path / "h.csv", days=400)
    r = np.diff(np.log(frame[["X", "Y"]].to_numpy()), axis=0)  # r[t] ends on row t + 1
    params = VarParams(filter="garch", garch_min_days=200, garch_refit_days=60, lookback_days=100)
    upto = 399
    refits = [200, 260, 320, 380]
    np.testing.assert_array_equal(garch_refit_dates(upto, params), refits)
    path = garch_refit_variance(r, upto, params, None)
    assert path.shape == (400, 2)
    for j in range(2):
        fits = [
            arch_model(r[:i, j] * 100, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off")
            for i in refits
        ]
        theta = [f.params[["omega", "alpha[1]", "beta[1]"]].to_numpy() for f in fits]
        # up to the second refit: arch's own variances with the first fit's parameters
        fixed = arch_model(r[:260, j] * 100, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fix(theta[0])
        np.testing.assert_allclose(
            path[:260, j], np.asarray(fixed.conditional_volatility) ** 2 / 1e4, rtol=1e-10
        )
        np.testing.assert_allclose(
            path[:200, j], np.asarray(fits[0].conditional_volatility) ** 2 / 1e4, rtol=1e-10
        )
        s2 = [path[259, j]]  # then each refit's parameters from its date on, one day at a time
        for t in range(260, upto + 1):
            w, a, b = theta[(t - 200) // 60]
            s2.append(w / 1e4 + a * r[t - 1, j] ** 2 + b * s2[-1])
        np.testing.assert_allclose(path[259:, j], s2, rtol=1e-10)
        assert not np.allclose(theta[0], theta[-1])  # the refits do move the parameters
    # the compiled and the numpy engines agree, bit for bit (same operations in the same order)
    rng = np.random.default_rng(1)
    om, al, be = (
        rng.uniform(1e-6, 1e-5, (3, 2)),
        rng.uniform(0.02, 0.1, (3, 2)),
        rng.uniform(0.8, 0.9, (3, 2)),
    )
    fit = np.repeat([0, 1, 2], [40, 30, 31])
    ways = [garch_variance_path(r[:100], om, al, be, fit, path[0], engine=e) for e in ("numba", "numpy")]
    np.testing.assert_array_equal(ways[0], ways[1])
    # each valuation date's 2-day scenarios: sums of r / its vol, times the vol after the date
    inputs = dated(marginsim.load(scenario(tmp_path / "h.csv", LINEAR_BOOK)), frame, 3)
    scen = build_scenarios(inputs.history, params, None, inputs.market["date"].values)
    z = r[:upto] / np.sqrt(path[:upto])
    z2 = z[1:] + z[:-1]  # z2[j]: the 2-day return ending on row j + 2
    for d, a in enumerate((397, 398, 399)):
        want = z2[a - 2 - 99 : a - 1] * np.sqrt(path[a])
        np.testing.assert_allclose(np.log(scen.price[:, :, d]), want.T, rtol=1e-12, atol=1e-15)


def test_garch_over_dates_needs_garch_min_days_of_history(tmp_path):
    frame = write_history(tmp_path / "h.csv", days=300)
    sc = scenario(tmp_path / "h.csv", LINEAR_BOOK, {"filter": "garch", "lookback_days": 100})
    with pytest.raises(
        InputError, match=r"has 297 daily returns of history up to it: .*needs garch_min_days \(500\)"
    ) as e:
        marginsim.margin(dated(marginsim.load(sc), frame, 3), methods="var")
    assert e.value.key_path == "var.garch_min_days"
    sc["var"]["garch_min_days"] = 297  # the first date has just enough
    ds = marginsim.margin(dated(marginsim.load(sc), frame, 3), methods="var")["var"]
    assert ds["hvar"].dims == ("account", "date") and (ds["hvar"].values > 0).all()
