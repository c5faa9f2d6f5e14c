"""Attribution of the SPAN throughput book (10,000 accounts x 100 positions) vs its margin.

Issue 15's target: the attribution in at most 2x the time of the margin. Prints, wall and CPU
seconds (best of ``--repeat``): the SPAN margin of the book (``marginsim.margin``, in one piece);
SPAN's attribution hook (the contributions and SPAN's own exact leave-one-out, which re-margins
each position's own combined commodity and redoes the inter-commodity credits of its linked
set); ``margin(..., attribution=True)`` end to end (best of ``--repeat`` too: the machine may
be shared);
and, for reference, the generic exact leave-one-out (every account less one position, margined
as variants in batches: about (positions - 1) x positions rows), timed on ``--loo-accounts``
accounts and scaled to the whole book (it is linear in the accounts).

Run:  .venv/bin/python benchmarks/attribution.py [--accounts 10000] [--positions 100] [--loo-accounts 100]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from span_throughput import synthetic

from marginsim.api import margin
from marginsim.attribution import leave_one_out
from marginsim.methods.span import span_attribution


def timed(fn, repeat: int):
    """(result, best wall seconds, CPU seconds of that run)."""
    best = (np.inf, np.inf)
    out = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        best = min(best, (wall, cpu))
    return out, best[0], best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--loo-accounts", type=int, default=100, help="accounts whose leave-one-out is timed")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; book: {args.accounts:,} accounts x {args.positions} positions")
    inputs = synthetic(args.accounts, args.positions)
    margin(synthetic(10, 10), methods=["span"], detail=False)  # compile outside the timing

    res, m_wall, m_cpu = timed(lambda: margin(inputs, methods=["span"], detail=False), args.repeat)
    ds = res["span"]
    print(f"margin (SPAN, in one piece):      {m_wall:7.2f} s wall {m_cpu:7.2f} s CPU")
    att, c_wall, c_cpu = timed(lambda: span_attribution(inputs, ds), args.repeat)
    total = np.zeros(ds.sizes["account"])
    np.add.at(total, inputs.book["account_index"].values, att["contribution"].values)
    err = float(np.max(np.abs(total - ds["maintenance"].values)))
    print(
        f"SPAN hook (contributions + own leave-one-out): {c_wall:7.2f} s wall {c_cpu:7.2f} s CPU "
        f"({c_wall / m_wall:.2f}x wall, {c_cpu / m_cpu:.2f}x CPU the margin; largest |sum - maintenance| {err:.1e})"
    )
    _, e_wall, e_cpu = timed(
        lambda: margin(inputs, methods=["span"], detail=False, attribution=True), args.repeat
    )
    print(
        f"margin(..., attribution=True):    {e_wall:7.2f} s wall {e_cpu:7.2f} s CPU "
        f"({e_wall / m_wall:.2f}x wall, {e_cpu / m_cpu:.2f}x CPU the margin alone; target: at most 2x)"
    )

    n_loo = min(args.loo_accounts, args.accounts)
    sub = synthetic(n_loo, args.positions)  # the same generator: accounts of the same make-up
    sub_ds = margin(sub, methods=["span"], detail=False)["span"]
    rows = np.arange(sub.book.sizes["position"])
    _, l_wall, l_cpu = timed(lambda: leave_one_out(sub, "span", sub_ds, rows), 1)
    scale = args.accounts / n_loo
    print(
        f"reference: generic leave-one-out, {n_loo:,} accounts: {l_wall:7.2f} s wall {l_cpu:7.2f} s CPU; "
        f"scaled to {args.accounts:,} accounts: {l_wall * scale:,.0f} s wall {l_cpu * scale:,.0f} s CPU"
    )


if __name__ == "__main__":
    main()
