"""VaR method throughput: 2,520 scenarios on the book of span_throughput.py (full revaluation).

1. The 10,000-account x 100-position book of ``span_throughput.py`` (half options, every option
   position its own contract): option-scenario revaluations per second, end to end (history read,
   scenarios, revaluation, account P&L, tail measure, result).
2. The same accounts holding futures only (100 positions each on 80 futures): position-scenario
   P&L per second of the account P&L (the sparse product), end to end.

History: 2,522 synthetic daily closes of the 20 underlyings (a t(4) random walk), written as a
CSV and read by ``history:``'s reader; ES at 0.975 of 2-day EWMA-filtered returns (the defaults),
so 2,520 scenarios. Wall and CPU seconds are printed (the machine may be shared).

Run:  .venv/bin/python benchmarks/var.py [--accounts 10000] [--positions 100] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import span_throughput  # noqa: I001 - the sibling benchmark (its synthetic book)

from marginsim.io.history import read_history
from marginsim.methods.var import var_margin
from marginsim.model import Inputs, book_from_arrays
from marginsim.params.history import HistoryParams
from marginsim.params.var import VarParams

SCENARIOS = 2520


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def with_history(inputs: Inputs, folder: Path, seed: int = 5) -> Inputs:
    """The inputs with a synthetic history of every underlying (SCENARIOS + 2 closes, read from CSV)."""
    rng = np.random.default_rng(seed)
    unds = inputs.market["underlying"].values.tolist()
    days = SCENARIOS + 2
    dates = pd.bdate_range(end="2026-11-20", periods=days)
    r = rng.standard_t(4, size=(days, len(unds))) * 0.01
    close = 100 * np.exp(np.cumsum(r, axis=0))
    path = folder / "history.csv"
    pd.DataFrame(close, columns=unds).assign(date=dates.strftime("%Y-%m-%d")).to_csv(path, index=False)
    history = read_history(HistoryParams(file=str(path)), base_dir=None, file=None, underlyings=unds)
    return replace(inputs, history=history)


def futures_only(inputs: Inputs, n_accounts: int, n_positions: int, seed: int = 9) -> Inputs:
    """The same contracts; each account holds ``n_positions`` futures positions (80 futures)."""
    rng = np.random.default_rng(seed)
    fut = np.flatnonzero(~inputs.contracts["is_option"].values)
    n = n_accounts * n_positions
    contract = fut[rng.integers(0, fut.size, n)]
    qty = rng.integers(1, 20, n) * np.where(rng.random(n) < 0.5, -1, 1)
    account = np.repeat(np.arange(n_accounts), n_positions)
    book = book_from_arrays(inputs.contracts, contract=contract, quantity=qty, account=account)
    return replace(inputs, book=book)


def timed(inputs: Inputs, params: VarParams, repeat: int) -> tuple[float, float, float]:
    """Best wall seconds of ``repeat`` runs, its CPU seconds, and the total maintenance."""
    best = (np.inf, np.inf)
    total = 0.0
    for _ in range(repeat):
        c0, t0 = cpu_seconds(), time.perf_counter()
        ds = var_margin(inputs, params, engine="numba")
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        best = min(best, (wall, cpu))
        total = float(ds["maintenance"].sum())
    return best[0], best[1], total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2, help="runs per book (best printed)")
    args = ap.parse_args()
    params = VarParams()  # ES 0.975, 2-day returns, EWMA, lookback 2520
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        inputs = with_history(span_throughput.synthetic(args.accounts, args.positions), Path(tmp))
        print(
            f"machine: {os.cpu_count()} cores; build book and history: {time.perf_counter() - t0:.1f} s; "
            f"{SCENARIOS:,} scenarios"
        )
        small = with_history(span_throughput.synthetic(10, 10), Path(tmp))
        var_margin(small, params, engine="numba")  # compile outside the timing
        n_opt = int(inputs.contracts["is_option"].sum())
        n_pos = inputs.book.sizes["position"]
        wall, cpu, total = timed(inputs, params, args.repeat)
        revals = n_opt * SCENARIOS
        print(
            f"options book: {args.accounts:,} accounts x {args.positions} positions ({n_opt:,} option contracts): "
            f"{wall:.1f} s wall, {cpu:.1f} s CPU; {revals / wall / 1e6:.1f} million option-scenario "
            f"revaluations/s end to end ({revals / cpu / 1e6:.1f} million per CPU second); total maintenance "
            f"{total:,.0f}"
        )
        fut = futures_only(inputs, args.accounts, args.positions)
        var_margin(futures_only(small, 10, 10), params, engine="numba")
        wall, cpu, total = timed(fut, params, args.repeat)
        n_pos = fut.book.sizes["position"]
        print(
            f"futures-only book: {n_pos:,} positions: {wall:.2f} s wall, {cpu:.2f} s CPU; "
            f"{n_pos * SCENARIOS / wall / 1e9:.2f} billion position-scenario P&L/s end to end "
            f"({n_pos * SCENARIOS / cpu / 1e9:.2f} per CPU second); total maintenance {total:,.0f}"
        )


if __name__ == "__main__":
    main()
