"""A 20-year daily backtest of a 100-position book: seconds, wall and CPU, per method and together.

The history: the S&P 500 and NASDAQ Composite daily closes of 1999-2018 that the ``arch`` package
ships (``marginsim history export``; no download). The book: one account of 100 positions on the
two indices, half futures (4 expiries, 50 positions) and half options on them (calls and puts,
strikes 60 % to 160 % of the 1999 level, own contracts, futures-style), every expiry after the history's end so
that nothing drops out (the method then runs once, over every date). SPAN with a 10 % scan and
``var`` with its defaults (2,520 filtered 2-day returns, EWMA, ES at 97.5 %, every option fully
revalued under every scenario on every date).

``var`` needs its 2,520-return window before the first date tested: a backtest with it starts in
January 2009 (about 2,500 dates); SPAN alone starts on the history's first date (about 5,000).

``--filter garch``: ``var`` with its GARCH(1,1) filter, refitted every ``var.garch_refit_days``
(21) dates of the history from its 500th return on (about 216 refits x 2 underlyings, one ``arch``
fit each, on up to 5,000 returns), the variances then filtered forward in one pass. Each timed run
makes its fits; the run is timed again with the fits of the runs before (as a backtest's later
stretches of dates between expiries, or a chunked run's later chunks, take them).

Prints, for each method alone and (with more than one) for all together: the dates, the method
runs, the seconds of ``marginsim.backtest`` (median of ``--repeat``, wall and process CPU: the
machine is shared), for ``var`` its option revaluations per second (option contracts x
scenarios x dates / seconds), and the statistics table of the last.

Run:  .venv/bin/python benchmarks/backtest.py [--method span --method var] [--repeat 3] [--positions 100]
      [--filter none|ewma|garch]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import marginsim
from marginsim.io.history import export_history
from marginsim.methods.var.scenarios import clear_garch_fits
from marginsim.params.var import VarParams

SEED = 5
EXPIRIES = ["2019-03-15", "2019-06-21", "2019-09-20", "2019-12-20"]


def write_history(folder: Path) -> Path:
    """The S&P 500 and NASDAQ closes (arch) in one CSV, on the dates both have."""
    frames = []
    for name in ("sp500", "nasdaq"):
        path = export_history(name, folder / f"{name}.csv")
        frames.append(pd.read_csv(path).set_index("date"))
    both = frames[0].join(frames[1], how="inner").rename(columns={"sp500": "SPX", "nasdaq": "NDX"})
    out = folder / "history.csv"
    both.reset_index().to_csv(out, index=False)
    return out


def scenario(history: Path, n_positions: int, methods: list[str], var_filter: str | None = None) -> dict:
    rng = np.random.default_rng(SEED)
    first = pd.read_csv(history, nrows=1)
    level = {"SPX": float(first["SPX"].iloc[0]), "NDX": float(first["NDX"].iloc[0])}
    contracts: dict = {}
    positions = []
    n_fut = n_positions - n_positions // 2
    for i in range(n_fut):
        und = ("SPX", "NDX")[i % 2]
        name = f"{und}-F{i % 8 // 2}"
        contracts[name] = {
            "type": "future",
            "underlying": und,
            "multiplier": 50.0 if und == "SPX" else 20.0,
            "expiry": EXPIRIES[i % 8 // 2],
        }
        positions.append({"contract": name, "quantity": int(rng.integers(-20, 21)) or 1})
    for i in range(n_positions // 2):
        und = ("SPX", "NDX")[i % 2]
        kind = ("call", "put")[i // 2 % 2]
        strike = round(level[und] * rng.uniform(0.6, 1.6), 0)
        name = f"{und}-{kind[0].upper()}{strike:.0f}-{i}"
        contracts[name] = {
            "type": kind,
            "underlying": und,
            "option_on": "future",
            "premium_style": "futures",  # margined without a net option value: the margin is the risk
            "strike": strike,
            "multiplier": 50.0 if und == "SPX" else 20.0,
            "expiry": EXPIRIES[int(rng.integers(0, 4))],
        }
        positions.append({"contract": name, "quantity": int(rng.integers(-10, 11)) or -1})
    return {
        "name": "backtest-20y",
        "as_of": "1999-01-04",
        "market": {u: {"price": p, "vol": 0.25, "rate": 0.03} for u, p in level.items()},
        "contracts": contracts,
        "positions": [{**p, "account": "book"} for p in positions],
        "span": {
            "combined_commodities": {
                "SPX": {"price_scan": 0.10, "vol_scan": 0.05},
                "NDX": {"price_scan": 0.12, "vol_scan": 0.06},
            }
        },
        "methods": methods,
        "history": {"file": str(history)},
        **({"var": {"filter": var_filter}} if var_filter else {}),
    }


def timed(
    inputs: marginsim.Inputs, methods: list[str], repeat: int, refit: bool = True
) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of ``marginsim.backtest`` (after a warm-up run) and its result;
    ``refit``: each run makes its GARCH fits (else it takes those of the runs before)."""
    marginsim.backtest(inputs, methods)  # warm-up: numba compilation
    wall, cpu = [], []
    for _ in range(repeat):
        if refit:
            clear_garch_fits()
        t0, c0 = time.perf_counter(), time.process_time()
        result = marginsim.backtest(inputs, methods)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--method", action="append", help="method to backtest (repeatable; default: span and var)"
    )
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--filter", choices=["none", "ewma", "garch"], help="var.filter (default: ewma)")
    args = ap.parse_args()
    methods = args.method or ["span", "var"]
    runs = [[m] for m in methods] + ([methods] if len(methods) > 1 else [])
    with tempfile.TemporaryDirectory() as tmp:
        history = write_history(Path(tmp))
        sc = marginsim.parse_scenario(scenario(history, args.positions, methods, args.filter))
        inputs = marginsim.build_inputs(sc)  # the history read once (its reading is not the backtest)
        n_options = int(
            inputs.contracts["is_option"].values[np.unique(inputs.book["contract_index"].values)].sum()
        )
        for ms in runs:
            wall, cpu, result = timed(inputs, ms, args.repeat)
            s = result.series
            print(
                f"{', '.join(ms)}: {s.sizes['date']:,} dates ({str(s['date'].values[0])[:10]} to "
                f"{str(s['date'].values[-1])[:10]}), {inputs.book.sizes['position']} positions, "
                f"{result.runs} run(s) per method: {wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.repeat})"
            )
            if ms == ["var"] and args.filter == "garch":
                w2, c2, _ = timed(inputs, ms, args.repeat, refit=False)
                print(
                    f"  var: with the GARCH fits of an earlier run (its next stretch of dates): {w2:.2f} s wall, "
                    f"{c2:.2f} s CPU"
                )
            if ms == ["var"]:
                n_scen = (sc.section("var") or VarParams()).lookback_days
                reval = n_options * n_scen * s.sizes["date"]
                print(
                    f"  var: {n_options} option contracts x {n_scen:,} scenarios x {s.sizes['date']:,} dates = "
                    f"{reval / 1e6:,.0f} million revaluations, {reval / wall / 1e6:.1f} million per second (wall)"
                )
    print(result.table())


if __name__ == "__main__":
    main()
