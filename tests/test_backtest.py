"""The margin backtest (`marginsim backtest`, `marginsim.backtest`) and the `date` grid dim.

Kupiec and Christoffersen against their formulas on hand cases; procyclicality on a hand series;
exceedances on a synthetic history with known breaks; a method's margin at a date equals margining
the scenario whose market is that day's; expiry drop-out; bad --from / --to.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from scipy.stats import chi2

import marginsim
from marginsim import InputError, plots
from marginsim.cli import main
from marginsim.kernels import backtest as K
from marginsim.kernels import pricing
from marginsim.model import with_dates
from marginsim.studies import backtests

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


# -- statistics kernels -------------------------------------------------------------------------


def test_kupiec_against_its_formula() -> None:
    n, x, p = 250, 5, 0.01
    by_hand = -2 * ((n - x) * math.log(1 - p) + x * math.log(p)) + 2 * (
        (n - x) * math.log(1 - x / n) + x * math.log(x / n)
    )
    lr = K.kupiec_lr(np.array([n, 250, 0]), np.array([x, 0, 0]), p)
    assert lr[0] == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(1.9568, abs=1e-4)  # the textbook value for 5 in 250 at 99 %
    assert lr[1] == pytest.approx(-2 * 250 * math.log(0.99), rel=1e-12)  # no exceedance: 0 ln 0 = 0
    assert np.isnan(lr[2])  # no day tested
    assert K.kupiec_lr(np.array([100]), np.array([1]), 0.01)[0] == pytest.approx(0.0, abs=1e-12)


def test_christoffersen_against_its_formula() -> None:
    hit = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
    counts = K.transition_counts(hit)
    # pairs: 00 01 11 10 00 00 01 10 00
    np.testing.assert_array_equal(counts, [[4, 2], [2, 1]])
    n00, n01, n10, n11 = 4, 2, 2, 1
    p01, p11, p = n01 / (n00 + n01), n11 / (n10 + n11), (n01 + n11) / 9
    by_hand = -2 * ((n00 + n10) * math.log(1 - p) + (n01 + n11) * math.log(p)) + 2 * (
        n00 * math.log(1 - p01) + n01 * math.log(p01) + n10 * math.log(1 - p11) + n11 * math.log(p11)
    )
    assert K.christoffersen_lr(counts) == pytest.approx(by_hand, rel=1e-12)
    # a date not tested breaks the pairs around it
    valid = np.ones(10, dtype=bool)
    valid[3] = False
    np.testing.assert_array_equal(K.transition_counts(hit, valid), [[4, 2], [1, 0]])  # 11 and 10 gone
    # no exceedance at all: no evidence of clustering, LR 0; nothing to count: NaN
    assert K.christoffersen_lr(K.transition_counts(np.zeros(5, dtype=bool))) == 0.0
    assert np.isnan(K.christoffersen_lr(np.zeros((2, 2))))


def test_procyclicality_on_a_hand_series() -> None:
    m = np.array([[100.0, 110.0, 90.0, 135.0, 120.0], [50.0, 40.0, 30.0, 20.0, 10.0]])
    np.testing.assert_allclose(K.peak_to_trough(m), [135 / 90, 5.0])
    np.testing.assert_allclose(K.largest_increase(m, 1), [0.5, -0.2], rtol=1e-12)  # 90 -> 135; 50 -> 40
    np.testing.assert_allclose(K.largest_increase(m, 2), [(120 - 90) / 90, -0.4], rtol=1e-12)
    assert np.isnan(K.largest_increase(m, 5)).all()  # no pair 5 dates apart
    gap = np.array([100.0, np.nan, 0.0, 50.0])  # NaN and 0 left out as the earlier margin
    assert np.isnan(K.largest_increase(gap, 1))
    assert K.largest_increase(gap, 3) == pytest.approx(-0.5)
    assert np.isnan(K.peak_to_trough(gap))  # a trough of 0


# -- synthetic history with known breaks --------------------------------------------------------

MULT = 10.0


def _history(tmp_path: Path, closes: dict[str, np.ndarray], start: str = "2024-01-02", vols=None) -> Path:
    n = len(next(iter(closes.values())))
    dates = pd.bdate_range(start, periods=n)
    frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), **closes, **(vols or {})})
    path = tmp_path / "history.csv"
    frame.to_csv(path, index=False)
    return path


def _breaks_scenario(tmp_path: Path) -> tuple[dict, np.ndarray]:
    """A long future on an underlying flat at 100, with a 20 % drop after date 49 and a 5 % drop
    after date 99, SPAN scanning 10 %: the 2-day losses ending across the big drop (dates 48 and
    49) exceed the margin, the small drop does not."""
    close = np.full(150, 100.0)
    close[50:] = 80.0
    close[100:] = 76.0
    path = _history(tmp_path, {"IDX": close})
    sc = {
        "name": "breaks",
        "as_of": "2024-01-02",
        "market": {"IDX": {"price": 100.0}},
        "contracts": {"FUT": {"type": "future", "underlying": "IDX", "multiplier": MULT}},
        "positions": [{"contract": "FUT", "quantity": 3, "account": "A"}],
        "span": {"combined_commodities": {"IDX": {"price_scan": 0.10}}},
        "methods": ["span"],
        "history": {"file": str(path)},
    }
    return sc, close


def test_exceedances_on_a_history_with_known_breaks(tmp_path: Path) -> None:
    sc, close = _breaks_scenario(tmp_path)
    r = marginsim.backtest(sc, ["span"])
    s = r.series
    assert s.sizes["date"] == 148  # the last 2 dates have no loss over the next 2
    loss = s["loss"].sel(account="A").values
    np.testing.assert_allclose(loss, 3 * MULT * (close[:148] - close[2:150]))
    margin = s["margin"].sel(account="A").isel(method=0).values
    np.testing.assert_allclose(margin, 3 * MULT * 0.10 * close[:148])  # the scan range up or down
    hits = np.flatnonzero(s["exceedance"].sel(account="A").isel(method=0).values)
    np.testing.assert_array_equal(hits, [48, 49])
    st = r.to_dict()["methods"]["span"]["A"]
    assert st["days"] == 148 and st["exceedances"] == 2
    assert st["exceedance_rate"] == pytest.approx(2 / 148)
    assert st["kupiec_pof_p"] == pytest.approx(chi2.sf(float(K.kupiec_lr(148, 2, 0.01)), 1))
    ind = K.christoffersen_lr(np.array([[144.0, 1.0], [1.0, 1.0]]))  # 147 pairs; 48 -> 49 a repeat
    assert st["christoffersen_independence_p"] == pytest.approx(chi2.sf(float(ind), 1))
    assert st["peak_to_trough"] == pytest.approx(100 / 76)
    assert st["largest_1_day_increase"] == pytest.approx(0.0)  # the margin only falls
    # --from / --to select the dates tested; holding_days is a parameter
    r5 = marginsim.backtest(sc, "span", start="2024-03-01", end="2024-04-30", holding_days=5)
    days = r5.series["date"].values.astype("datetime64[D]")
    assert days[0] == np.datetime64("2024-03-01") and days[-1] == np.datetime64("2024-04-30")
    hit5 = r5.series["date"].values[r5.series["exceedance"].sel(account="A").isel(method=0).values]
    # the 5-day losses ending across the drop (from date 49, 2024-03-11, to date 50): dates 45 to 49
    assert [str(d)[:10] for d in hit5.astype("datetime64[D]")] == [
        "2024-03-05",
        "2024-03-06",
        "2024-03-07",
        "2024-03-08",
        "2024-03-11",
    ]


def test_cli_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sc, _ = _breaks_scenario(tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    assert main(["backtest", str(path), "--method", "span", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["from"] == "2024-01-02" and out["holding_days"] == 2 and out["confidence"] == 0.99
    assert out["methods"]["span"]["A"]["exceedances"] == 2
    assert set(out["methods"]["span"]["A"]) == set(marginsim.backtesting.STATISTICS)
    assert main(["backtest", str(path), "--to", "2024-02-29"]) == 0
    table = capsys.readouterr().out
    assert "span" in table and " 2 " in table


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        (["--from", "2024-13-01"], "--from", "is not a date"),
        (["--to", "yesterday"], "--to", "is not a date"),
        (["--from", "2023-01-02"], "--from", "outside the history"),
        (["--from", "2024-05-01", "--to", "2024-04-01"], "--from", "is after --to"),
        (["--from", "2024-07-26"], "--to", "dates of history after it"),  # the history ends 07-29
    ],
)
def test_bad_from_to(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], key: str, message: str
) -> None:
    sc, _ = _breaks_scenario(tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    assert main(["backtest", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {key}: " in err and message in err and "Traceback" not in err


def test_initial_requirement_and_confidence(tmp_path: Path) -> None:
    sc, close = _breaks_scenario(tmp_path)
    sc["span"]["combined_commodities"]["IDX"]["initial_ratio"] = 2.0
    r = marginsim.backtest(sc, ["span"], requirement="initial", confidence=0.95)
    margin = r.series["margin"].sel(account="A").isel(method=0).values
    np.testing.assert_allclose(margin, 2.0 * 3 * MULT * 0.10 * close[:148])
    st = r.to_dict()["methods"]["span"]["A"]
    assert st["exceedances"] == 0  # twice the scan covers the 20 % drop
    assert st["kupiec_pof_p"] == pytest.approx(chi2.sf(-2 * 148 * math.log(0.95), 1))
    for bad in ({"confidence": 1.0}, {"requirement": "span_risk"}, {"holding_days": 0}):
        with pytest.raises(InputError):
            marginsim.backtest(sc, ["span"], **bad)


def test_no_history_and_grid_are_errors(tmp_path: Path) -> None:
    sc, _ = _breaks_scenario(tmp_path)
    bare = {k: v for k, v in sc.items() if k != "history"}
    with pytest.raises(InputError, match="history") as e:
        marginsim.backtest(bare)
    assert e.value.key_path == "history"
    with pytest.raises(InputError, match="remove the grid") as e:
        marginsim.backtest({**sc, "grid": {"shift": [0.0, 0.1]}})
    assert e.value.key_path == "grid"


# -- var in the backtest: each date's own window --------------------------------------------------


def _var_breaks(tmp_path: Path) -> tuple[dict, np.ndarray]:
    """The breaks scenario with var on the last 20 two-day returns at 95 % (k = ceil(20 x 0.05) = 1:
    the largest loss), unfiltered."""
    sc, close = _breaks_scenario(tmp_path)
    sc["var"] = {
        "lookback_days": 20,
        "holding_days": 2,
        "filter": "none",
        "measure": "var",
        "confidence": 0.95,
    }
    sc["methods"] = ["span", "var"]
    return sc, close


def test_var_exceedances_on_a_history_with_known_breaks(tmp_path: Path) -> None:
    """var sees a drop only once it is in its window: the 2-day losses across the 20 % drop (dates
    48, 49) exceed it, then it holds the drop's loss for 20 dates, then (flat history) falls to 0
    and the 5 % drop (dates 98, 99) exceeds it too. SPAN's 10 % scan covers the 5 % drop."""
    sc, close = _var_breaks(tmp_path)
    r = marginsim.backtest(sc)
    assert r.methods == ["span", "var"]
    d = np.arange(21, 148)  # the first date with 20 + 2 closes up to it is date 21
    np.testing.assert_array_equal(
        r.series["date"].values.astype("datetime64[D]"),
        pd.bdate_range("2024-01-02", periods=150).values.astype("datetime64[D]")[d],
    )
    # by hand: the largest loss of 3 long futures x 10 over the 2-day log returns ending on d-19..d
    r2 = np.log(close[2:] / close[:-2])  # r2[j - 2]: the 2-day return ending on date j
    want = np.array([max(0.0, (-3 * MULT * close[i] * np.expm1(r2[i - 21 : i - 1])).max()) for i in d])
    var_m = r.series["margin"].sel({"method": "var", "account": "A"}).values
    np.testing.assert_allclose(var_m, want, rtol=1e-12)
    assert var_m[d == 50][0] == pytest.approx(3 * MULT * 80 * 0.2)  # the drop in the window: 480
    assert var_m[d == 71][0] == 0.0  # out of it (returns ending on 52..71 are flat)
    hits = d[r.series["exceedance"].sel({"method": "var", "account": "A"}).values]
    np.testing.assert_array_equal(hits, [48, 49, 98, 99])
    np.testing.assert_array_equal(
        d[r.series["exceedance"].sel({"method": "span", "account": "A"}).values], [48, 49]
    )
    st = r.to_dict()["methods"]["var"]["A"]
    assert st["days"] == 127 and st["exceedances"] == 4
    assert st["kupiec_pof_p"] == pytest.approx(chi2.sf(float(K.kupiec_lr(127, 4, 0.01)), 1))
    assert st["peak_to_trough"] is None  # a margin of 0
    # the file without `methods`: var and span both apply and both run
    both = {k: v for k, v in sc.items() if k != "methods"}
    assert marginsim.backtest(both).methods == ["span", "var"]


def test_var_backtest_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sc, _ = _var_breaks(tmp_path)
    del sc["methods"]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    assert main(["backtest", str(path), "--method", "span", "--method", "var", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["from"] == "2024-01-31" and out["to"] == "2024-07-25"  # dates 21 and 147
    assert list(out["methods"]) == ["span", "var"]
    assert out["methods"]["span"]["A"]["exceedances"] == 2 and out["methods"]["var"]["A"]["exceedances"] == 4
    assert out["methods"]["var"]["A"]["days"] == 127
    assert set(out["methods"]["var"]["A"]) == set(marginsim.backtesting.STATISTICS)
    # span alone starts on the history's first date
    assert main(["backtest", str(path), "--method", "span", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["from"] == "2024-01-02"


@pytest.mark.parametrize(
    ("args", "var", "key", "message"),
    [
        (
            ["--from", "2024-01-30"],
            {},
            "--from",
            "--from 2024-01-30 has 21 closes of history up to it: var needs 22",
        ),
        (
            ["--from", "2024-01-30"],
            {},
            "--from",
            "(lookback_days 20 + holding_days 2); the first date with enough is 2024-01-31",
        ),
        (["--to", "2024-01-25"], {}, "--to", "before the first date with the history var needs (2024-01-31"),
        ([], {"lookback_days": 147}, "var.lookback_days", "var needs 149 closes up to the first date tested"),
        (["--from", "2024-06-03"], {"lookback_days": 147}, "--from", "lower var.lookback_days"),
    ],
)
def test_too_little_history_for_var_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], var: dict, key: str, message: str
) -> None:
    sc, _ = _var_breaks(tmp_path)
    sc["var"].update(var)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    assert main(["backtest", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {key}: " in err and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("var", "need", "first"),
    [
        ({"apc": "floor", "apc_floor_days": 40}, 42, "2024-02-28"),  # the floor's 40 returns + 2
        ({"filter": "ewma", "ewma_seed_days": 30}, 31, "2024-02-13"),  # the EWMA seed's 30 returns
    ],
)
def test_var_default_start_leaves_its_whole_window(tmp_path: Path, var: dict, need: int, first: str) -> None:
    sc, _ = _var_breaks(tmp_path)
    sc["var"].update(var)
    r = marginsim.backtest(sc)
    assert str(r.series["date"].values[0])[:10] == first  # date need - 1
    assert pd.bdate_range("2024-01-02", periods=need)[-1] == pd.Timestamp(first)
    with pytest.raises(InputError, match=f"has 22 closes of history up to it: var needs {need}") as e:
        marginsim.backtest(sc, start="2024-01-31")
    assert e.value.key_path == "--from"


def _cut_history(frame: pd.DataFrame, upto: int, path: Path) -> Path:
    frame.iloc[: upto + 1].to_csv(path, index=False)
    return path


@pytest.mark.parametrize("filter_", ["ewma", "none"])
def test_var_at_a_date_is_var_on_the_history_cut_there(tmp_path: Path, filter_: str) -> None:
    """var's margin on each date of the backtest equals var on the scenario valued on that date
    (its closes, option vols moved by the history's vol change, times to expiry from it) with the
    history cut at it: no later return is used. A near future expires inside the dates tested
    (two method runs); both runs take the full lookback."""
    n, lookback = 160, 60
    rng = np.random.default_rng(11)
    dates = pd.bdate_range("2025-01-02", periods=n)
    frame = pd.DataFrame(
        {
            "date": dates.strftime("%Y-%m-%d"),
            "IDX": 100 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.012)),
            "OIL": 60 * np.exp(np.cumsum(rng.normal(0, 0.02, n))),
            "IDX_VOL": 20 * np.exp(np.cumsum(rng.normal(0, 0.04, n))),
        }
    )
    path = tmp_path / "history.csv"
    frame.to_csv(path, index=False)
    near = str(dates[110].date())
    sc = {
        "name": "var cut",
        "as_of": frame["date"].iloc[0],
        "market": {
            "IDX": {"price": float(frame["IDX"].iloc[0]), "vol": 0.22, "rate": 0.03},
            "OIL": {"price": float(frame["OIL"].iloc[0]), "vol": 0.35},
        },
        "contracts": {
            "IF": {"type": "future", "underlying": "IDX", "multiplier": MULT, "expiry": "2026-06-19"},
            "IP": {
                "type": "put",
                "underlying": "IDX",
                "option_on": "future",
                "strike": 95.0,
                "multiplier": MULT,
                "expiry": "2025-12-19",
            },
            "O1": {"type": "future", "underlying": "OIL", "multiplier": 100.0, "expiry": near},
            "O2": {
                "type": "future",
                "underlying": "OIL",
                "multiplier": 100.0,
                "expiry": "2026-03-20",
                "price": 1.05 * float(frame["OIL"].iloc[0]),  # contango: the spread is not flat
            },
        },
        "positions": [
            {"contract": "IF", "quantity": 2, "account": "A"},
            {"contract": "IP", "quantity": -5, "account": "A"},
            {"contract": "O1", "quantity": 3, "account": "B"},
            {"contract": "O2", "quantity": -2, "account": "B"},
        ],
        "var": {"lookback_days": lookback, "filter": filter_, "measure": "es", "confidence": 0.95},
        "methods": ["var"],
        "history": {"file": str(path), "vol_columns": {"IDX": "IDX_VOL"}, "vol_unit": "percent"},
    }
    r = marginsim.backtest(sc)
    assert r.runs == 2 and r.dropped_out == {"O1": near}
    got = r.series["margin"].sel({"method": "var"})
    assert str(got["date"].values[0])[:10] == frame["date"].iloc[lookback + 1]  # 62 closes up to it
    vol = frame["IDX_VOL"].to_numpy()
    for i in (lookback + 1, 100, 109, 110, 140, n - 3):
        one = _one_day(
            {k: v for k, v in sc.items() if k != "history"},
            frame["date"].iloc[i],
            {"IDX": float(frame["IDX"].iloc[i]), "OIL": float(frame["OIL"].iloc[i])},
            {"IDX": (vol[i] - vol[0]) / 100},
        )
        one["history"] = {**sc["history"], "file": str(_cut_history(frame, i, tmp_path / f"cut{i}.csv"))}
        one["contracts"]["O2"]["price"] = 1.05 * float(frame["OIL"].iloc[i])  # moves with its underlying
        if i >= 110:  # O1 has expired: it dropped out of the backtest's book
            one["positions"] = [p for p in one["positions"] if p["contract"] != "O1"]
        ref = marginsim.margin(one, ["var"])["var"]
        assert ref.attrs["scenarios"] == lookback and (ref["maintenance"].values > 0).all()
        day = np.datetime64(frame["date"].iloc[i], "ns")
        for acct in ("A", "B"):
            assert float(got.sel(account=acct, date=day)) == pytest.approx(
                float(ref["maintenance"].sel(account=acct)), rel=1e-9
            ), (acct, frame["date"].iloc[i])


def test_history_vols_move_option_vols_from_the_valuation_date(tmp_path: Path) -> None:
    """With vol_columns, option vols move by the history's vol change since as_of: on as_of the
    margin is the scenario's own; on another date that of the scenario with vols moved."""
    close = np.array([100.0, 104.0, 97.0, 101.0, 99.0, 103.0])
    vols = np.array([18.0, 22.0, 20.0, 30.0, 25.0, 21.0])  # percent
    path = _history(tmp_path, {"IDX": close}, start="2025-06-02", vols={"IDX_VOL": vols})
    days = [str(d.date()) for d in pd.bdate_range("2025-06-02", periods=6)]
    sc = {
        "name": "vols",
        "as_of": days[2],
        "market": {"IDX": {"price": 97.0, "vol": 0.2}},
        "contracts": {
            "P95": {
                "type": "put",
                "underlying": "IDX",
                "option_on": "future",
                "strike": 95.0,
                "multiplier": MULT,
                "expiry": "2025-12-19",
            },
        },
        "positions": [{"contract": "P95", "quantity": -4}],
        "span": {"combined_commodities": {"IDX": {"price_scan": 0.08, "vol_scan": 0.04}}},
        "history": {"file": str(path), "vol_columns": {"IDX": "IDX_VOL"}, "vol_unit": "percent"},
    }
    r = marginsim.backtest(sc, ["span"], holding_days=1)
    m = r.series["margin"].isel(method=0).sel(account="main").values
    for k in (0, 2, 3):
        one = _one_day(
            {k2: v for k2, v in sc.items() if k2 != "history"},
            days[k],
            {"IDX": close[k]},
            {"IDX": (vols[k] - vols[2]) / 100},
        )
        ref = marginsim.margin(one, ["span"])["span"]["maintenance"].sel(account="main").item()
        assert m[k] == pytest.approx(ref, rel=1e-10), days[k]
    assert m[3] > m[2]  # the vol rose by 10 points


def test_given_risk_arrays_are_refused(tmp_path: Path) -> None:
    """A given risk array is one day's: it would not follow the history."""
    sc, _ = _breaks_scenario(tmp_path)
    sc["contracts"]["FUT"]["risk_array"] = [float(i) for i in range(16)]
    with pytest.raises(InputError, match="given SPAN risk array") as e:
        marginsim.backtest(sc, ["span"])
    assert e.value.key_path == "contracts.FUT.risk_array"


def test_held_underlying_without_history_is_an_error(tmp_path: Path) -> None:
    sc, _ = _breaks_scenario(tmp_path)
    sc["market"]["OTHER"] = {"price": 50.0}
    sc["contracts"]["OF"] = {"type": "future", "underlying": "OTHER", "multiplier": 1}
    sc["positions"].append({"contract": "OF", "quantity": 1, "account": "A"})
    sc["span"]["combined_commodities"]["OTHER"] = {"price_scan": 0.1}
    with pytest.raises(InputError, match="'OTHER' of a held contract has no history") as e:
        marginsim.backtest(sc, ["span"])
    assert e.value.key_path == "history.columns"


# -- the date grid dim: the market of each day ----------------------------------------------------


def _one_day(sc: dict, day: str, closes: dict[str, float], vol_shift: dict[str, float]) -> dict:
    """The scenario as of ``day`` with that day's closes as its market (and vols shifted)."""
    out = copy.deepcopy(sc)
    out["as_of"] = day
    out.pop("grid", None)
    for u, px in closes.items():
        out["market"][u]["price"] = px
    for u, dv in vol_shift.items():
        if out["market"][u].get("vol") is not None:
            out["market"][u]["vol"] += dv
        for c in out["contracts"].values():
            if c["underlying"] == u and c.get("vol") is not None:
                c["vol"] += dv
    return out


@pytest.mark.parametrize(
    ("name", "method", "days", "closes", "vols"),
    [
        (
            "span_inter_commodity.yaml",
            "span",
            ["2026-11-20", "2026-11-27", "2026-12-10"],
            {"BANK": [12.4, 13.1, 11.2], "BKX": [158.0, 149.0, 171.0]},
            {"BANK": [0.32, 0.36, 0.30]},
        ),
        (
            "pm_diversified_large_cap.yaml",
            "portfolio_margin",
            ["2026-11-20", "2026-12-01", "2027-01-08"],
            {
                "SPX": [5900.0, 5500.0, 6100.0],
                "AAPL": [230.0, 200.0, 250.0],
                "NDX": [20800.0, 19000.0, 21500.0],
            },
            {"SPX": [0.16, 0.25, 0.14]},
        ),
    ],
)
def test_margin_at_a_date_is_that_days_market(
    name: str, method: str, days: list, closes: dict, vols: dict
) -> None:
    sc = yaml.safe_load((SCENARIOS / name).read_text())
    sc.pop("grid", None)
    inputs = marginsim.load(sc)
    dates = np.array(days, dtype="datetime64[ns]")
    und = list(closes)
    close = xr.DataArray(
        np.array([closes[u] for u in und]).T,
        dims=("date", "underlying"),
        coords={"date": dates, "underlying": und},
    )
    vu = list(vols)
    v = np.array([vols[u] for u in vu]).T
    shift = xr.DataArray(v - v[0], dims=("date", "underlying"), coords={"date": dates, "underlying": vu})
    dated = with_dates(inputs, close, shift)
    assert dated.grid_dims == ("date",)
    got = marginsim.margin(dated, [method])[method]
    for k, day in enumerate(days):
        ref = marginsim.margin(
            _one_day(
                sc,
                day,
                {u: closes[u][k] for u in und},
                {u: float(shift.values[k, j]) for j, u in enumerate(vu)},
            ),
            [method],
        )[method]
        for var in ("maintenance", "initial"):
            np.testing.assert_allclose(
                got[var].isel(date=k).transpose("account").values,
                ref[var].transpose("account").values,
                rtol=1e-10,
                err_msg=f"{var} at {day}",
            )


def test_expired_contracts_drop_out(tmp_path: Path) -> None:
    """A future and a call expiring within the history drop out on expiry; a far future stays.
    The margin after expiry is the far future's alone (one run per stretch between expiries);
    the loss across expiry values the call at its intrinsic value."""
    n = 40
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    path = _history(tmp_path, {"IDX": close}, start="2025-03-03")
    dates = pd.bdate_range("2025-03-03", periods=n)
    expiry = str(dates[20].date())
    sc = {
        "name": "expiry",
        "as_of": "2025-03-03",
        "market": {"IDX": {"price": 100.0, "vol": 0.2}},
        "contracts": {
            "NEAR": {"type": "future", "underlying": "IDX", "multiplier": MULT, "expiry": expiry},
            "C100": {
                "type": "call",
                "underlying": "IDX",
                "option_on": "future",
                "strike": 100.0,
                "multiplier": MULT,
                "expiry": expiry,
            },
            "FAR": {"type": "future", "underlying": "IDX", "multiplier": MULT, "expiry": "2030-12-20"},
        },
        "positions": [
            {"contract": "NEAR", "quantity": 2, "account": "A"},
            {"contract": "C100", "quantity": -1, "account": "A"},
            {"contract": "FAR", "quantity": 1, "account": "A"},
            {"contract": "NEAR", "quantity": 1, "account": "B"},
        ],
        "span": {"combined_commodities": {"IDX": {"price_scan": 0.08, "vol_scan": 0.04}}},
        "history": {"file": str(path)},
    }
    r = marginsim.backtest(sc, ["span"])
    assert r.runs == 2
    assert r.dropped_out == {"NEAR": expiry, "C100": expiry}
    far = copy.deepcopy(sc)
    far["positions"] = [{"contract": "FAR", "quantity": 1, "account": "A"}]
    r_far = marginsim.backtest(far, ["span"])
    after = r.series["date"].values >= np.datetime64(expiry)
    m = r.series["margin"].sel(account="A").isel(method=0).values
    np.testing.assert_allclose(m[after], r_far.series["margin"].sel(account="A").isel(method=0).values[after])
    np.testing.assert_allclose(
        r.series["loss"].sel(account="A").values[after], r_far.series["loss"].sel(account="A").values[after]
    )
    # account B holds only the near future: no margin, no loss, no date tested after expiry
    assert np.isnan(r.series["margin"].sel(account="B").values[0, after]).all()
    assert r.to_dict()["methods"]["span"]["B"]["days"] == int((~after).sum())
    # the loss over the 2 dates ending after expiry: the call at its intrinsic value then
    i = int(np.flatnonzero(after)[0]) - 1  # the last date before expiry
    fut = 3 * (close[i + 2] - close[i]) * MULT  # NEAR x2 and FAR x1 (futures at the underlying)
    t = (dates[20] - dates[i]).days / 365.0
    call_then = pricing.value(
        np.array([pricing.BLACK76]),
        np.array([close[i]]),
        np.array([100.0]),
        np.array([t]),
        np.array([0.2]),
        np.array([0.0]),
        np.array([0.0]),
        np.array([True]),
        np.array([False]),
    )[0]
    call_gain = -(max(close[i + 2] - 100.0, 0.0) - call_then) * MULT
    assert r.series["loss"].sel(account="A").values[i] == pytest.approx(-(fut + call_gain), rel=1e-9)


# -- the margin model study's helpers (marginsim.studies.backtests, plots.margin_history_figure) ----


def test_backtest_models_puts_the_models_on_the_same_dates(tmp_path: Path) -> None:
    """Each model is its own backtest; SPAN takes var's first date (the latest default start)."""
    sc, close = _var_breaks(tmp_path)
    models = {"SPAN": None, "VaR 20 days": dict(sc["var"]), "VaR 10 days": {**sc["var"], "lookback_days": 10}}
    series, stats, results = backtests.backtest_models(sc, models)
    assert list(series["model"].values) == list(models)
    d = np.arange(21, 148)  # var on 20 days needs 22 closes: from date 21, for every model
    assert series.sizes["date"] == d.size
    np.testing.assert_allclose(series["margin"].sel(model="SPAN", account="A"), 3 * MULT * 0.10 * close[d])
    alone = marginsim.backtest(sc, ["var"])
    np.testing.assert_array_equal(
        series["margin"].sel(model="VaR 20 days", account="A"),
        alone.series["margin"].isel(method=0).sel(account="A"),
    )
    np.testing.assert_allclose(series["loss"].sel(account="A"), 3 * MULT * (close[d] - close[d + 2]))
    table = backtests.statistics_table(stats)
    assert table.loc[("A", "VaR 20 days"), "exceedances"] == 4 and table["days"].dtype == np.int64
    assert table.loc[("A", "SPAN"), "exceedances"] == 2
    assert list(table.columns) == list(marginsim.backtesting.STATISTICS)
    # the figure: the loss, and per model its margin and its exceedances on the loss line
    fig = plots.margin_history_figure(
        series, "A", {"in": ("2024-03-01", "2024-03-31"), "before": ("2020-01-01", "2020-12-31")}, title="t"
    )
    names = [t.name for t in fig.data]
    assert names[0] == "realised loss" and names[1:3] == ["SPAN", "SPAN: exceeded"]
    hits = fig.data[names.index("VaR 20 days: exceeded")]
    np.testing.assert_allclose(hits.y, 3 * MULT * (close[[48, 49, 98, 99]] - close[[50, 51, 100, 101]]))
    assert [s["x0"] for s in fig.layout.shapes] == ["2024-03-01"]  # the period outside is not drawn


def test_study_history_joins_the_arch_series_on_their_common_dates(tmp_path: Path) -> None:
    pytest.importorskip("arch")
    from arch.data import sp500, wti

    path = backtests.study_history({"SPX": "sp500", "CL": "wti"}, tmp_path / "h.csv")
    frame = pd.read_csv(path, index_col="date")
    assert list(frame.columns) == ["SPX", "CL"]
    spx, cl = sp500.load()["Adj Close"], wti.load()["DCOILWTICO"].dropna()
    both = spx.index.normalize().intersection(cl.index.normalize())
    assert frame.index.tolist() == [str(d.date()) for d in both]
    assert frame.loc["2008-10-10", "CL"] == pytest.approx(float(cl.loc["2008-10-10"]))
    assert frame.loc["2008-10-10", "SPX"] == pytest.approx(float(spx.loc["2008-10-10"]))


# -- var with filter: garch: refitted on the past only ------------------------------------------

GARCH_MIN, GARCH_REFIT = 120, 21


def _garch_history(tmp_path: Path, n: int = 240, seed: int = 23) -> pd.DataFrame:
    """Two underlyings with volatility clusters (GARCH(1,1) returns)."""
    rng = np.random.default_rng(seed)
    r = np.empty((n - 1, 2))
    s2 = np.array([1.5e-4, 4e-4])
    for t in range(n - 1):  # a simulated GARCH(1,1) path (the test's data, not the method)
        r[t] = np.sqrt(s2) * rng.standard_normal(2)
        s2 = 0.05 * s2 / 0.85 * 0.1 + 0.1 * r[t] ** 2 + 0.85 * s2
    close = np.vstack([[100.0, 60.0], [100.0, 60.0] * np.exp(np.cumsum(r, axis=0))])
    dates = pd.bdate_range("2024-01-02", periods=n)
    return pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "IDX": close[:, 0], "OIL": close[:, 1]})


def _garch_scenario(path: Path, frame: pd.DataFrame) -> dict:
    """An index future and put (account A), an oil calendar spread whose near leg expires on row
    200 (account B: two method runs); var with filter: garch over 60 scenarios."""
    return {
        "name": "garch backtest",
        "as_of": frame["date"].iloc[0],
        "market": {
            "IDX": {"price": float(frame["IDX"].iloc[0]), "vol": 0.2, "rate": 0.03},
            "OIL": {"price": float(frame["OIL"].iloc[0]), "vol": 0.35},
        },
        "contracts": {
            "IF": {"type": "future", "underlying": "IDX", "multiplier": MULT, "expiry": "2026-06-19"},
            "IP": {
                "type": "put",
                "underlying": "IDX",
                "option_on": "future",
                "strike": 95.0,
                "multiplier": MULT,
                "expiry": "2025-12-19",
            },
            "O1": {
                "type": "future",
                "underlying": "OIL",
                "multiplier": 100.0,
                "expiry": frame["date"].iloc[200],
            },
            "O2": {"type": "future", "underlying": "OIL", "multiplier": 100.0, "expiry": "2026-03-20"},
        },
        "positions": [
            {"contract": "IF", "quantity": 2, "account": "A"},
            {"contract": "IP", "quantity": -5, "account": "A"},
            {"contract": "O1", "quantity": 3, "account": "B"},
            {"contract": "O2", "quantity": -2, "account": "B"},
        ],
        "var": {
            "filter": "garch",
            "garch_min_days": GARCH_MIN,
            "garch_refit_days": GARCH_REFIT,
            "lookback_days": 60,
            "measure": "es",
            "confidence": 0.95,
        },
        "methods": ["var"],
        "history": {"file": str(path)},
    }


def test_var_garch_backtest_has_no_look_ahead(tmp_path: Path) -> None:
    """Changing the history after a date leaves every margin at or before it unchanged, bit for
    bit (the date is a refit date: its fit takes the returns up to it, not the next); later
    margins do change. A later --from gives the same margins (the refit calendar is the history's)."""
    frame = _garch_history(tmp_path)
    path = tmp_path / "history.csv"
    frame.to_csv(path, index=False)
    sc = _garch_scenario(path, frame)
    r1 = marginsim.backtest(sc)
    assert r1.runs == 2
    m1 = r1.series["margin"].sel({"method": "var"}).transpose("account", "date")
    dates = m1["date"].values
    assert str(dates[0])[:10] == frame["date"].iloc[GARCH_MIN]  # 121 closes (120 returns) up to it
    assert np.isfinite(m1.values).all() and (m1.values > 0).all()
    cut = GARCH_MIN + 3 * GARCH_REFIT  # row 183: a refit date
    changed = frame.copy()
    rng = np.random.default_rng(99)
    shock = np.exp(np.cumsum(rng.normal(0.0, 0.03, (len(frame) - cut - 1, 2)), axis=0))
    changed.loc[cut + 1 :, ["IDX", "OIL"]] = frame[["IDX", "OIL"]].to_numpy()[cut + 1 :] * shock
    path2 = tmp_path / "changed.csv"
    changed.to_csv(path2, index=False)
    r2 = marginsim.backtest(_garch_scenario(path2, changed))
    m2 = r2.series["margin"].sel({"method": "var"}).transpose("account", "date")
    upto = dates <= np.datetime64(frame["date"].iloc[cut])
    assert upto.sum() == cut - GARCH_MIN + 1
    np.testing.assert_array_equal(m2.values[:, upto], m1.values[:, upto])  # bit for bit
    assert (m2.values[:, ~upto] != m1.values[:, ~upto]).all(axis=1).any()
    r3 = marginsim.backtest(sc, start=frame["date"].iloc[150])
    later = r3.series["margin"].sel({"method": "var"}).transpose("account", "date")
    np.testing.assert_array_equal(later.values, m1.sel(date=later["date"]).values)


def test_var_garch_backtest_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frame = _garch_history(tmp_path)
    frame.to_csv(tmp_path / "history.csv", index=False)
    sc = _garch_scenario(tmp_path / "history.csv", frame)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    assert main(["backtest", str(path), "--method", "var", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["from"] == frame["date"].iloc[GARCH_MIN] and out["to"] == frame["date"].iloc[-3]
    for acct in ("A", "B"):
        st = out["methods"]["var"][acct]
        assert set(st) == set(marginsim.backtesting.STATISTICS)
        assert st["days"] == len(frame) - 2 - GARCH_MIN and 0 <= st["exceedances"] <= st["days"]
    # too short a history before the first date: refused, naming the key
    assert main(["backtest", str(path), "--from", frame["date"].iloc[GARCH_MIN - 1]]) == 2
    err = capsys.readouterr().err
    assert f"{path}: --from: " in err and "var needs 121 (garch_min_days 120 + 1)" in err
    assert "or lower var.garch_min_days" in err and "Traceback" not in err
    sc["var"]["garch_min_days"] = 300
    path.write_text(yaml.safe_dump(sc))
    assert main(["backtest", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: var.garch_min_days: " in err and "var needs 301 closes up to the first date" in err
