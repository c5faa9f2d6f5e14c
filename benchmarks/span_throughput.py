"""SPAN throughput on a synthetic book: 10,000 accounts x 100 positions (half options).

Prints option-scenario revaluations per second (the pricing kernel alone) and total seconds for
the full SPAN of the book, with the numba engine and the numpy engine.

Every option position is its own contract (its own strike and expiry): the worst case, where no
risk array is shared between positions. Futures positions share 4 months x 20 underlyings.

Run:  .venv/bin/python benchmarks/span_throughput.py [--accounts 10000] [--positions 100]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator

import _synthetic  # noqa: I001 - the sibling module of the benchmark scripts
import numpy as np

from marginsim import scenario_sets
from marginsim.api import build_inputs
from marginsim.kernels import pricing
from marginsim.kernels.scan import revalue_scan
from marginsim.methods.span import arrays as span_arrays
from marginsim.methods.span import span_margin
from marginsim.model import Inputs, book_from_arrays, contracts_from_arrays
from marginsim.scenario import parse_scenario

N_UNDERLYINGS = 20
MONTHS = ["2026-12-18", "2027-03-19", "2027-06-18", "2027-09-17"]


def synthetic(n_accounts: int, n_positions: int, seed: int = 7) -> Inputs:
    rng = np.random.default_rng(seed)
    unds = [f"U{i:02d}" for i in range(N_UNDERLYINGS)]
    prices = rng.uniform(50, 5000, N_UNDERLYINGS).round(2)
    sc = parse_scenario(
        {
            "name": "span-throughput",
            "as_of": "2026-11-20",
            "market": _synthetic.market(unds, prices, rng.uniform(0.15, 0.5, N_UNDERLYINGS)),
            "span": _synthetic.span_parameters(unds),
        }
    )
    market = build_inputs(sc).market
    n_fut = N_UNDERLYINGS * len(MONTHS)
    n_total = n_accounts * n_positions
    n_opt = n_total // 2
    n_fpos = n_total - n_opt
    fut_und = np.repeat(np.arange(N_UNDERLYINGS), len(MONTHS))
    opt_und = rng.integers(0, N_UNDERLYINGS, n_opt)
    und = np.concatenate([fut_und, opt_und])
    names = np.array([f"F{i}" for i in range(n_fut)] + [f"O{i}" for i in range(n_opt)], dtype=object)
    types = np.array(
        ["future"] * n_fut + list(np.where(rng.random(n_opt) < 0.5, "call", "put")), dtype=object
    )
    expiry = np.concatenate(
        [
            np.tile(np.array(MONTHS, dtype="datetime64[D]"), N_UNDERLYINGS),
            np.array(MONTHS, dtype="datetime64[D]")[rng.integers(0, 4, n_opt)],
        ]
    )
    strike = np.concatenate([np.full(n_fut, np.nan), prices[opt_und] * rng.uniform(0.7, 1.3, n_opt)])
    contracts = contracts_from_arrays(
        sc,
        market,
        names=names,
        type=types,
        underlying=np.array(unds, dtype=object)[und],
        multiplier=np.full(n_fut + n_opt, 10.0),
        expiry=expiry,
        strike=strike,
        option_on=np.array(["future"] * (n_fut + n_opt), dtype=object),
    )
    # each account: 50 futures positions (random months) and 50 option positions (own contracts)
    fut_pos = rng.integers(0, n_fut, n_fpos)
    opt_pos = n_fut + np.arange(n_opt)
    contract = np.concatenate([fut_pos, opt_pos])
    account = np.concatenate(
        [
            np.repeat(np.arange(n_accounts), n_positions - n_positions // 2),
            np.repeat(np.arange(n_accounts), n_positions // 2),
        ]
    )
    qty = rng.integers(1, 20, n_total) * np.where(rng.random(n_total) < 0.5, -1, 1)
    book = book_from_arrays(contracts, contract=contract, quantity=qty, account=account)
    return Inputs(scenario=sc, book=book, contracts=contracts, market=market)


def kernel_throughput(engine: str, n_options: int = 500_000, repeat: int = 3) -> float:
    """Option-scenario revaluations per second of the SPAN scan kernel.

    Per option: the value now, 16 scenario values after the look-ahead and 7 delta points
    (composite delta); the figure counts the 16 scenario revaluations only.
    """
    rng = np.random.default_rng(1)
    level = rng.uniform(50, 150, n_options)
    t = rng.uniform(0.02, 1.0, n_options)
    s16 = scenario_sets.span16()
    args = (
        np.full(n_options, pricing.BLACK76),
        level,
        rng.uniform(70, 130, n_options),
        0.08 * level,
        rng.uniform(0.1, 0.6, n_options),
        np.full(n_options, 0.04),
        t,
        np.maximum(t - 1 / 365, 0.0),
        np.full(n_options, 0.03),
        np.zeros(n_options),
        rng.random(n_options) < 0.5,
        np.zeros(n_options, bool),
        np.zeros(n_options, np.int64),
        s16["price_move"].values[None],
        s16["vol_move"].values[None],
        np.array(scenario_sets.COMPOSITE_DELTA_MOVES),
    )
    revalue_scan(*[a[:10] if a.shape == (n_options,) else a for a in args], engine=engine)  # compile
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        revalue_scan(*args, engine=engine)
        best = min(best, time.perf_counter() - t0)
    return n_options * s16.sizes["scenario"] / best


@contextlib.contextmanager
def scan_kernel_timer() -> Iterator[list[float]]:
    """Seconds spent in the SPAN scan kernel (:func:`revalue_scan`, as the full SPAN calls it)
    inside the block, appended to the list yielded (one item per call)."""
    calls: list[float] = []
    kernel = span_arrays.revalue_scan

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return kernel(*args, **kwargs)
        finally:
            calls.append(time.perf_counter() - t0)

    span_arrays.revalue_scan = timed
    try:
        yield calls
    finally:
        span_arrays.revalue_scan = kernel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the full SPAN per engine (best printed)")
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} cores; book: {args.accounts:,} accounts x {args.positions} positions "
        f"({args.accounts * args.positions // 2:,} option positions, each its own contract)"
    )
    rates = {}
    for engine in ("numba", "numpy"):
        rates[engine] = kernel_throughput(engine)
        print(
            f"SPAN scan kernel [{engine:5s}]: {rates[engine] / 1e6:8.1f} million option-scenario revaluations/s"
        )
    print(f"numba / numpy kernel speed-up: {rates['numba'] / rates['numpy']:.1f}x")

    t0 = time.perf_counter()
    inputs = synthetic(args.accounts, args.positions)
    print(f"build synthetic book: {time.perf_counter() - t0:.2f} s")
    n_opt = int(inputs.contracts["is_option"].sum())
    totals = {}
    for engine in ("numba", "numpy"):
        if engine == "numba":
            span_margin(synthetic(10, 10), engine=engine)  # compile outside the timing
        times = []
        for _ in range(args.repeat):  # best of: the first run also loads the large-book kernel variants
            with scan_kernel_timer() as in_kernel:
                t0 = time.perf_counter()
                ds = span_margin(inputs, engine=engine)
                total = time.perf_counter() - t0
            times.append((total, sum(in_kernel)))
        totals[engine], kernel_s = min(times)
        # revaluations inside the full SPAN: 16 scenarios + 7 delta points + 1 base + 2 for the premium
        revals = n_opt * (16 + 7 + 1 + 2)
        print(
            f"full SPAN [{engine:5s}]: {totals[engine]:6.2f} s (best of {args.repeat}) for {ds.sizes['account']:,} accounts "
            f"({revals / totals[engine] / 1e6:.1f} million option revaluations/s end to end); "
            f"total maintenance {float(ds['maintenance'].sum()):,.0f}"
        )
        rest = totals[engine] - kernel_s
        print(
            f"  end to end / kernel rate [{engine:5s}]: "
            f"{revals / totals[engine] / rates[engine]:.0%} (as the two figures above count)"
        )
        print(
            f"  time split [{engine:5s}]: scan kernel {kernel_s:5.2f} s ({kernel_s / totals[engine]:.0%}), "
            f"the rest {rest:5.2f} s ({rest / totals[engine]:.0%}: scope, plan, premium, book pass, "
            f"spreads, result)"
        )
    print(f"numba / numpy full SPAN speed-up: {totals['numpy'] / totals['numba']:.1f}x")


if __name__ == "__main__":
    main()
