"""SPAN what-if, incremental: 10,000 one-leg trades against one 100-position account on takas.spn.

Prints the time of the incremental path (:func:`marginsim.methods.span.what_if.span_what_if_arrays`,
every trade's after-book margined from the account's state per combined commodity, only the
touched combined commodities, the inter-commodity credits and the sums recomputed) and of the
equivalent full batch margin (one pseudo-account per trade: the account's 100 positions then the
trade's leg, margined in one ``span_margin`` call), and the largest difference between them.
Median of ``--repeat`` runs after a warm-up (numba compilation, the file's plan), wall and CPU
time (the machine may be shared: CPU time is the steadier figure).

"lean" is the after figures per trade (maintenance, initial, net option value, SPAN risk); "with
groups" adds the per-trade x combined commodity components (scan risk, spreads, credit, SOM, risk).

Run:  .venv/bin/python benchmarks/what_if_span.py [--file ../shared/data/span/takas.spn]
      [--trades 10000] [--positions 100] [--repeat 15] [--seed 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import marginsim
from marginsim.methods.span import span_margin
from marginsim.methods.span.what_if import span_what_if_arrays

DEFAULT_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "span" / "takas.spn"


def _timed(fn, repeat: int):
    """Median wall and CPU time [s] of ``repeat`` runs of ``fn`` after one warm-up run, and its result."""
    out = fn()
    walls, cpus = [], []
    for _ in range(max(repeat, 1)):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus)), float(min(walls)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--trades", type=int, default=10_000)
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    base = marginsim.load(
        {"name": "what-if", "as_of": "2016-05-17", "currency": "TRY", "span": {"source": str(args.file)}}
    )
    names = base.contracts["contract"].values
    rng = np.random.default_rng(args.seed)
    held = rng.integers(0, names.size, args.positions)
    qty = (rng.integers(1, 11, args.positions) * rng.choice([-1, 1], args.positions)).astype(float)
    inputs = base.with_book(names[held], qty, np.full(args.positions, "main", dtype=object))
    # trades: half on contracts the account holds (enlarge, reduce, close, flip), half on any contract
    n = args.trades
    on_held = rng.random(n) < 0.5
    k = np.where(on_held, held[rng.integers(0, held.size, n)], rng.integers(0, names.size, n))
    tq = (rng.integers(1, 21, n) * rng.choice([-1, 1], n)).astype(float)
    trade_contract = names[k]  # contract ids, as a trades file names them
    account = np.full(n, "main", dtype=object)
    legs = np.arange(n)

    rows = []
    for groups in (False, True):
        wall, cpu, best, after = _timed(
            lambda g=groups: span_what_if_arrays(inputs, account, legs, trade_contract, tq, groups=g),
            args.repeat,
        )
        rows.append((f"incremental, {'with groups' if groups else 'lean'}", wall, cpu, best))

    # the same after-books margined in full: one pseudo-account per trade (its positions, then the leg)
    book_c = np.concatenate([np.tile(names[held], n), trade_contract])
    book_q = np.concatenate([np.tile(qty, n), tq])
    book_a = np.concatenate([np.repeat(np.arange(n), args.positions), np.arange(n)])
    order = np.argsort(book_a, kind="stable")
    full_inputs = base.with_book(book_c[order], book_q[order], book_a[order])
    wall, cpu, best, full = _timed(
        lambda: span_margin(full_inputs, scan_loss=False), max(args.repeat // 5, 1)
    )
    rows.append(("full batch margin (positions x trades)", wall, cpu, best))

    print(
        f"SPAN what-if on {args.file.name}: {n:,} one-leg trades vs one account of {args.positions} positions"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} (over 1 minute) during the runs")
    print(f"{'path':<42} {'wall median':>12} {'CPU median':>12} {'wall best':>10}")
    for label, w, c, b in rows:
        print(f"{label:<42} {w * 1e3:>9.2f} ms {c * 1e3:>9.2f} ms {b * 1e3:>7.2f} ms")
    print(f"speed-up (full / incremental lean, wall median): {rows[2][1] / rows[0][1]:.0f}x")
    for name in ("maintenance", "initial", "span_risk", "net_option_value"):
        d = np.abs(after[name].values - full[name].values)
        print(f"max |incremental - full| {name}: {d.max():.3g} (trades differing: {int((d > 0).sum())})")


if __name__ == "__main__":
    main()
