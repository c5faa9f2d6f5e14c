"""What-if throughput: many candidate trades against one account, all after-books in one batch.

Case 1 (SPAN, the issue's figure): 10,000 random one-leg trades (futures and options of the file,
quantities -10..10 but 0) against one account of 100 random positions on takas.spn. Timed:

- "what_if": :func:`marginsim.what_if` end to end (trades validated, the book margined before,
  every after-book margined, before / after / change per trade);
- "after-books": the after-books alone, :func:`marginsim.variants.margin_variants` (the generic
  path: every after-book is an account of one variant book of 10,000 x ~101 positions, margined
  in one SPAN call). A method with its own incremental what-if (``MethodSpec.what_if``) is timed
  on the same trades when it has one.

Case 2 (portfolio margin): 2,000 one-leg trades against the main account of
``scenarios/pm_diversified_large_cap.yaml`` (stocks and options of the file).

Wall and CPU times (process CPU: both cores count) of the best and median of ``--repeat`` runs,
after one warm-up run (numba kernels loaded, the SPAN file's plan built).

Run:  .venv/bin/python benchmarks/what_if.py [--trades 10000] [--positions 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import marginsim
from marginsim.io.span import file_contract_table
from marginsim.registry import REGISTRY
from marginsim.trades import TradeBatch
from marginsim.variants import margin_variants

ROOT = Path(__file__).resolve().parents[1]
TAKAS = ROOT.parent / "shared" / "data" / "span" / "takas.spn"


def timed(fn, repeat: int):
    """Run ``fn`` once (warm-up), then ``repeat`` times: wall and CPU times [s], last result."""
    out = fn()
    wall, cpu = [], []
    for _ in range(max(repeat, 1)):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return np.array(wall), np.array(cpu), out


def show(label: str, wall: np.ndarray, cpu: np.ndarray, n: int) -> None:
    print(
        f"  {label:<34} best {wall.min() * 1e3:9.1f} ms  median {np.median(wall) * 1e3:9.1f} ms wall; "
        f"CPU best {cpu.min() * 1e3:9.1f} ms;  {n / np.median(wall):12,.0f} trades/s"
    )


def span_case(n_trades: int, n_positions: int, repeat: int) -> None:
    if not TAKAS.exists():
        print(f"SPAN case skipped: no SPAN file at {TAKAS}")
        return
    rng = np.random.default_rng(5)
    base = {"name": "bench", "as_of": "2016-05-17", "currency": "TRY", "span": {"source": str(TAKAS)}}
    inputs0 = marginsim.load(base)
    t = file_contract_table(inputs0.span_file)
    ids = t["names"][np.isin(t["type"], ["future", "call", "put"])]
    held = ids[rng.choice(ids.size, n_positions, replace=False)]
    qty = rng.integers(1, 11, n_positions) * np.where(rng.random(n_positions) < 0.5, -1, 1)
    inputs = inputs0.with_book(held, qty.astype(float), np.full(n_positions, "acct", dtype=object))
    tq = rng.integers(1, 11, n_trades) * np.where(rng.random(n_trades) < 0.5, -1, 1)
    tc = ids[rng.integers(0, ids.size, n_trades)]
    batch = TradeBatch.from_arrays(inputs, tc, tq.astype(float))
    print(
        f"SPAN, {TAKAS.name}: {n_trades:,} one-leg trades against one account of {n_positions} positions "
        f"({ids.size:,} contracts in the file)"
    )
    w, c, res = timed(lambda: marginsim.what_if(inputs, batch, methods=["span"]), repeat)
    show("what_if (end to end)", w, c, n_trades)
    acct = np.full(n_trades, "acct", dtype=object)
    w, c, var = timed(
        lambda: margin_variants(
            inputs,
            acct,
            leg_variant=batch.leg_trade,
            leg_contract=batch.leg_contract,
            leg_quantity=batch.leg_quantity,
            methods=["span"],
        ),
        repeat,
    )
    show("after-books (margin_variants)", w, c, n_trades)
    same = np.array_equal(res["span"]["maintenance_after"].values, var["span"]["maintenance"].values)
    print(f"  what_if after == margin_variants after: {same}")
    spec = REGISTRY["span"]
    if spec.what_if is not None:
        before = marginsim.margin(inputs, methods=["span"], detail=False)["span"]
        w, c, inc = timed(lambda: spec.what_if(inputs, batch, before), repeat)
        show("after-books (SPAN incremental)", w, c, n_trades)
        diff = np.abs(inc["maintenance"].values - var["span"]["maintenance"].values).max()
        print(f"  incremental vs batched re-margin: largest difference {diff:.2e}")
    ch = res["span"]["maintenance_change"].values
    print(
        f"  maintenance change: {np.mean(ch < 0):.0%} of the trades lower it; median {np.median(ch):,.2f} TRY"
    )


def pm_case(n_trades: int, repeat: int) -> None:
    path = ROOT / "scenarios" / "pm_diversified_large_cap.yaml"
    inputs = marginsim.load(path)
    rng = np.random.default_rng(6)
    contracts = np.asarray(inputs.contracts["contract"].values, dtype=object)
    acct = "main"
    n_pos = int((inputs.book["account_name"].values[inputs.book["account_index"].values] == acct).sum())
    tc = contracts[rng.integers(0, contracts.size, n_trades)]
    tq = rng.integers(1, 11, n_trades) * np.where(rng.random(n_trades) < 0.5, -1, 1)
    batch = TradeBatch.from_arrays(
        inputs, tc, tq.astype(float), account=np.full(n_trades, acct, dtype=object)
    )
    print(
        f"portfolio margin, {path.name}: {n_trades:,} one-leg trades against account {acct!r} of "
        f"{n_pos} positions ({contracts.size} contracts)"
    )
    w, c, _ = timed(lambda: marginsim.what_if(inputs, batch, methods=["portfolio_margin"]), repeat)
    show("what_if (end to end)", w, c, n_trades)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=10_000)
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--pm-trades", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    span_case(args.trades, args.positions, args.repeat)
    pm_case(args.pm_trades, args.repeat)


if __name__ == "__main__":
    main()
