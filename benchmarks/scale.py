"""Scale: SPAN of 1k, 10k and 100k accounts of 100 positions, in memory, on dask, on a LocalCluster.

For each book size it prints the seconds of the SPAN of the whole book

- **memory**: in one piece, numpy (the book built whole in memory first, not timed);
- **threads**: chunk by chunk of accounts on dask's threaded scheduler; the book is generated
  chunk by chunk inside the graph, so it is never whole in memory;
- **cluster**: the same graph on a ``distributed.LocalCluster`` of 2 worker processes (1 thread
  each) on loopback, started by this script (the library never starts one);

after one untimed small SPAN in each process (imports, numba's cached kernels); the peak resident
memory of each run (each run is its own process; for the cluster, the peak of
the client process and the peak sum of the worker processes), and the growth exponent of time vs
book size (slope of log seconds vs log accounts; linear = 1). The dask runs compute the per-account
``maintenance`` and ``initial`` (the nightly output) and check them against the in-memory numbers.

Run:  .venv/bin/python benchmarks/scale.py [--accounts 1000 10000 100000] [--chunk 5000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time

import _synthetic  # noqa: I001 - the sibling module of the benchmark scripts
import numpy as np

N_UNDERLYINGS = 20
MONTHS = ["2026-12-18", "2027-03-19", "2027-06-18", "2027-09-17"]
STRIKES = np.linspace(0.8, 1.2, 10)
SEED = 11


def scenario():
    from marginsim.scenario import parse_scenario

    rng = np.random.default_rng(SEED)
    unds = [f"U{i:02d}" for i in range(N_UNDERLYINGS)]
    prices = rng.uniform(50, 5000, N_UNDERLYINGS).round(2)
    contracts = {}
    for u, p in zip(unds, prices):
        for m in MONTHS:
            contracts[f"{u}-F-{m}"] = {"type": "future", "underlying": u, "multiplier": 10, "expiry": m}
            for k in STRIKES:
                for kind in ("call", "put"):
                    contracts[f"{u}-{kind[0].upper()}{k * p:.0f}-{m}"] = {
                        "type": kind,
                        "underlying": u,
                        "option_on": "future",
                        "strike": float(round(k * p)),
                        "expiry": m,
                        "multiplier": 10,
                    }
    return parse_scenario(
        {
            "name": "scale-benchmark",
            "as_of": "2026-11-20",
            "methods": ["span"],
            "market": _synthetic.market(unds, prices, rng.uniform(0.15, 0.5, N_UNDERLYINGS)),
            "contracts": contracts,
            "span": _synthetic.span_parameters(unds),
        }
    )


def block(b: int, accounts: int, positions: int, n_contracts: int):
    """Positions of accounts ``b*accounts ..``: deterministic, every contract held somewhere."""
    rng = np.random.default_rng([SEED, b])
    first = b * accounts * positions
    glob = np.arange(first, first + accounts * positions, dtype=np.int64)
    contract = (glob * 7919) % n_contracts
    qty = rng.integers(1, 20, glob.size) * np.where(rng.random(glob.size) < 0.5, -1, 1)
    account = np.repeat(np.arange(b * accounts, (b + 1) * accounts, dtype=np.int64), positions)
    return contract, qty.astype(float), account


def lazy_inputs(n_accounts: int, positions: int, chunk: int):
    """Inputs whose book is generated chunk by chunk inside the dask graph (never whole)."""
    from dataclasses import replace

    import dask
    import dask.array as da
    import xarray as xr
    from xarray.indexes import RangeIndex

    from marginsim.api import build_inputs
    from marginsim.model import Universe

    inputs = build_inputs(scenario())
    n_k = inputs.contracts.sizes["contract"]
    n_blocks = math.ceil(n_accounts / chunk)
    parts = {"contract_index": [], "quantity": [], "account_index": []}
    for b in range(n_blocks):
        acc = min(chunk, n_accounts - b * chunk)
        gen = dask.delayed(block, nout=3)(b, chunk, positions, n_k) if acc == chunk else None
        if gen is None:  # a short last block: same generator, fewer accounts
            gen = dask.delayed(_short_block, nout=3)(b, chunk, acc, positions, n_k)
        n = acc * positions
        for (name, dtype), part in zip(
            (("contract_index", np.int64), ("quantity", float), ("account_index", np.int64)), gen
        ):
            parts[name].append(da.from_delayed(part, shape=(n,), dtype=dtype))
    n_p = n_accounts * positions
    book = xr.Dataset(
        {
            **{k: ("position", da.concatenate(v)) for k, v in parts.items()},
            "account_name": ("account", np.array([str(a) for a in range(n_accounts)], dtype=object)),
            "position_start": ("account", np.arange(n_accounts, dtype=np.int64) * positions),
        },
        coords=xr.Coordinates.from_xindex(RangeIndex.arange(0, n_p, 1, dim="position")),
    )
    universe = Universe(np.arange(n_k), frozenset(book["account_name"].values.tolist()))
    return replace(inputs, book=book, universe=universe)


def _short_block(b, chunk, acc, positions, n_k):
    c, q, a = block(b, chunk, positions, n_k)
    n = acc * positions
    return c[:n], q[:n], a[:n]


def memory_inputs(n_accounts: int, positions: int, chunk: int):
    from marginsim.api import build_inputs

    inputs = build_inputs(scenario())
    n_k = inputs.contracts.sizes["contract"]
    n_blocks = math.ceil(n_accounts / chunk)
    cs, qs, as_ = [], [], []
    for b in range(n_blocks):
        acc = min(chunk, n_accounts - b * chunk)
        c, q, a = _short_block(b, chunk, acc, positions, n_k)
        cs.append(c)
        qs.append(q)
        as_.append(a)
    return inputs.with_book(np.concatenate(cs), np.concatenate(qs), np.concatenate(as_))


# ------------------------------------------------------------------------------------------------
# one measurement per process
# ------------------------------------------------------------------------------------------------


def _rss_tree(pids) -> int:
    import psutil

    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total


def warm_up() -> None:
    """One small SPAN: imports, numba's compiled kernels (cache) and first-call costs, not timed."""
    from marginsim.methods.span import span_margin

    span_margin(memory_inputs(2, 10, 2))


def run_one(mode: str, n_accounts: int, positions: int, chunk: int) -> dict:
    import marginsim
    from marginsim import scale
    from marginsim.methods.span import span_margin

    out: dict = {"mode": mode, "accounts": n_accounts}
    warm_up()
    if mode == "memory":
        t = time.perf_counter()
        inputs = memory_inputs(n_accounts, positions, chunk)
        out["book_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        ds = span_margin(inputs)
        out["seconds"] = time.perf_counter() - t
        values = ds[["maintenance", "initial"]]
    elif mode == "threads":
        inputs = lazy_inputs(n_accounts, positions, chunk)
        t = time.perf_counter()
        lazy = marginsim.margin(inputs, "span", compute=False)["span"]  # the graph, chunk by chunk
        out["graph_seconds"] = time.perf_counter() - t
        (values,) = scale.compute(lazy[["maintenance", "initial"]], scheduler="threads")
        out["seconds"] = time.perf_counter() - t
    else:
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
            ) as cluster,
            Client(cluster) as client,
        ):
            pids = list(client.run(os.getpid).values())
            peak = [0]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], _rss_tree(pids))
                    time.sleep(0.1)

            th = threading.Thread(target=sample, daemon=True)
            th.start()
            client.run(warm_up)
            inputs = lazy_inputs(n_accounts, positions, chunk)
            t = time.perf_counter()
            lazy = marginsim.margin(inputs, "span", compute=False)["span"]  # the graph, chunk by chunk
            out["graph_seconds"] = time.perf_counter() - t
            (values,) = scale.compute(lazy[["maintenance", "initial"]])
            out["seconds"] = time.perf_counter() - t
            stop.set()
            th.join()
            out["worker_peak_mb"] = peak[0] / 2**20
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["sum_maintenance"] = float(values["maintenance"].sum())
    out["checksum"] = float((values["maintenance"] * np.arange(1, n_accounts + 1)).sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=5000, help="accounts per chunk")
    ap.add_argument("--modes", nargs="+", default=["memory", "threads", "cluster"])
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run before giving up")
    ap.add_argument("--one", nargs=2, metavar=("MODE", "ACCOUNTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        res = run_one(args.one[0], int(args.one[1]), args.positions, args.chunk)
        print(json.dumps(res))
        return

    print(
        f"SPAN, {args.positions} positions per account, {args.chunk} accounts per chunk, "
        f"{os.cpu_count()} cores; each run in its own process"
    )
    print("seconds: the SPAN (dask runs: including generating the book chunk by chunk in the graph);")
    print("book s: generating the whole book in memory (memory run, not in its seconds);")
    print(
        "graph s: building the graph (part of seconds); peak MB: the run's process; workers MB: both workers"
    )
    head = (
        f"{'accounts':>9} {'positions':>11} {'mode':>8} {'seconds':>9} {'book s':>7} {'graph s':>8} "
        f"{'peak MB':>9} {'workers MB':>11}  check"
    )
    print(head)
    print("-" * len(head))
    times: dict[str, list[tuple[int, float]]] = {m: [] for m in args.modes}
    for n in args.accounts:
        ref = None
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--one", mode, str(n), "--positions", str(args.positions)]
            cmd += ["--chunk", str(args.chunk)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{n:>9,} {n * args.positions:>11,} {mode:>8}  did not finish in {args.timeout:.0f} s")
                continue
            if proc.returncode != 0:
                print(f"{n:>9,} {n * args.positions:>11,} {mode:>8}  failed: {proc.stderr.strip()[-300:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if ref is None:
                ref = r
            same = math.isclose(r["checksum"], ref["checksum"], rel_tol=1e-12, abs_tol=0.005)
            times[mode].append((n, r["seconds"]))
            graph = f"{r['graph_seconds']:.2f}" if "graph_seconds" in r else "-"
            book = f"{r['book_seconds']:.2f}" if "book_seconds" in r else "-"
            workers = f"{r['worker_peak_mb']:.0f}" if "worker_peak_mb" in r else "-"
            print(
                f"{n:>9,} {n * args.positions:>11,} {mode:>8} {r['seconds']:>9.2f} {book:>7} {graph:>8} "
                f"{r['peak_mb']:>9.0f} {workers:>11}  {'same as ' + ref['mode'] if same else 'DIFFERS'}",
                flush=True,
            )
    print()
    print("growth exponent of time vs accounts (slope of log seconds vs log accounts; linear = 1):")
    for mode, pts in times.items():
        if len(pts) >= 2:
            x = np.log([p[0] for p in pts])
            y = np.log([p[1] for p in pts])
            slope = np.polyfit(x, y, 1)[0]
            last = np.log(pts[-1][1] / pts[-2][1]) / np.log(pts[-1][0] / pts[-2][0])
            print(
                f"  {mode:>8}: {slope:.2f} over {', '.join(f'{p[0]:,}' for p in pts)} (last step {last:.2f})"
            )


if __name__ == "__main__":
    main()
