"""Big books without YAML: 1,000,000 positions from Parquet and CSV (`positions_file`), margined.

A synthetic SPAN book over model-priced contracts (20 underlyings; per underlying 4 futures months
and 4 x 10 strikes of calls and puts on the future: 1,680 contracts in the scenario file), 10,000
accounts x 100 positions. Each figure comes from its own subprocess: the seconds to load the
scenario and its positions file and margin the book (``marginsim.margin(path, detail=False)``, as
the CLI does), and that process's peak resident memory (``resource.getrusage`` max RSS). For
comparison: the same scenario with 100,000 positions in YAML (``positions:``), and the YAML parse
time of those 100,000 positions with the pure-Python loader and with libyaml's C loader.

Run:  .venv/bin/python benchmarks/positions_file.py [--accounts 10000] [--positions 100] [--yaml-positions 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _synthetic  # noqa: I001 - the sibling module of the benchmark scripts
import numpy as np
import pandas as pd
import yaml

N_UNDERLYINGS = 20
MONTHS = ["2026-12-18", "2027-03-19", "2027-06-18", "2027-09-17"]
STRIKES = np.linspace(0.8, 1.2, 10)


def scenario(rng: np.random.Generator) -> dict:
    """The scenario file without its positions: market, 1,680 model-priced contracts, SPAN."""
    unds = [f"U{i:02d}" for i in range(N_UNDERLYINGS)]
    prices = rng.uniform(50, 5000, N_UNDERLYINGS).round(2)
    contracts: dict[str, dict] = {}
    for u, p in zip(unds, prices):
        for m in MONTHS:
            contracts[f"{u}-F-{m}"] = {"type": "future", "underlying": u, "multiplier": 10, "expiry": m}
            for k in STRIKES:
                strike = round(float(p * k), 2)
                for kind in ("call", "put"):
                    contracts[f"{u}-{kind[0].upper()}{strike}-{m}"] = {
                        "type": kind,
                        "underlying": u,
                        "option_on": "future",
                        "strike": strike,
                        "expiry": m,
                        "multiplier": 10,
                    }
    return {
        "name": "positions-file-benchmark",
        "as_of": "2026-11-20",
        "market": _synthetic.market(unds, prices, rng.uniform(0.15, 0.5, N_UNDERLYINGS)),
        "contracts": contracts,
        "span": _synthetic.span_parameters(unds),
    }


def book(names: list[str], n_accounts: int, n_positions: int, rng: np.random.Generator) -> pd.DataFrame:
    n = n_accounts * n_positions
    return pd.DataFrame(
        {
            "account": np.repeat([f"ACC{i:06d}" for i in range(n_accounts)], n_positions),
            "contract": np.asarray(names, dtype=object)[rng.integers(0, len(names), n)],
            "quantity": (rng.integers(1, 20, n) * np.where(rng.random(n) < 0.5, -1, 1)).astype(float),
        }
    )


def yaml_positions(df: pd.DataFrame) -> str:
    rows = zip(df["account"].tolist(), df["contract"].tolist(), df["quantity"].tolist())
    return "positions:\n" + "".join(
        f"  - {{account: {a}, contract: {c}, quantity: {q}}}\n" for a, c, q in rows
    )


def child(path: str) -> None:
    """In a subprocess: import, load and margin ``path``; print seconds and peak RSS as JSON."""
    import resource

    t0 = time.perf_counter()
    import marginsim

    t1 = time.perf_counter()
    start = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = start.ru_utime + start.ru_stime
    res = marginsim.margin(path, detail=False)
    t2 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    span = res["span"]
    out = {
        "import_s": t1 - t0,
        "margin_s": t2 - t1,
        "accounts": int(span.sizes["account"]),
        "total_maintenance": float(span["maintenance"].sum()),
        "max_rss_gb": usage.ru_maxrss * 1024 / 1e9,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu0,
    }
    print(json.dumps(out))


def run_child(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"child failed on {path}:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_seconds(text: str, loader: type) -> tuple[float, float]:
    """Seconds to parse ``text`` with ``loader``: wall clock and CPU (this process)."""
    c0, t0 = time.process_time(), time.perf_counter()
    yaml.load(text, Loader=loader)  # noqa: S506 - safe loaders
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument(
        "--yaml-positions", type=int, default=100_000, help="positions of the YAML comparison (0: skip)"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    from marginsim import scenario as scenario_module

    rng = np.random.default_rng(14)
    base = scenario(rng)
    df = book(list(base["contracts"]), args.accounts, args.positions, rng)
    n = len(df)
    print(
        f"machine: {os.cpu_count()} cores; book: {args.accounts:,} accounts x {args.positions} positions "
        f"= {n:,} positions over {len(base['contracts']):,} model-priced contracts (SPAN)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        df.to_parquet(d / "book.parquet", index=False)
        df.to_csv(d / "book.csv", index=False)
        for fmt in ("parquet", "csv"):
            path = d / f"{fmt}.yaml"
            path.write_text(yaml.safe_dump({**base, "positions_file": f"book.{fmt}"}, sort_keys=False))
            if fmt == "parquet":  # numba compiles the kernels once (cached on disk): not in the figures
                r = run_child(path)
                print(f"first run (numba kernels compiled or loaded from its cache): {r['margin_s']:.2f} s")
            r = run_child(path)
            size = (d / f"book.{fmt}").stat().st_size / 1e6
            print(
                f"positions_file {fmt:7s} ({size:5.1f} MB): load + margin {r['margin_s']:6.2f} s "
                f"({r['cpu_s']:.2f} s CPU), peak RSS {r['max_rss_gb']:.2f} GB (import marginsim {r['import_s']:.2f} s); "
                f"{r['accounts']:,} accounts, total maintenance {r['total_maintenance']:,.0f}"
            )
        if args.yaml_positions:
            small = df.iloc[: args.yaml_positions]
            text = yaml.safe_dump(base, sort_keys=False) + yaml_positions(small)
            path = d / "positions.yaml"
            path.write_text(text)
            write_table(small, d / "small.parquet")
            (d / "small.yaml").write_text(
                yaml.safe_dump({**base, "positions_file": "small.parquet"}, sort_keys=False)
            )
            r = run_child(path)
            r2 = run_child(d / "small.yaml")
            print(
                f"{len(small):,} positions in YAML ({len(text) / 1e6:.1f} MB): load + margin {r['margin_s']:6.2f} s "
                f"({r['cpu_s']:.2f} s CPU), peak RSS {r['max_rss_gb']:.2f} GB; the same from Parquet {r2['margin_s']:.2f} s "
                f"({r2['cpu_s']:.2f} s CPU), {r2['max_rss_gb']:.2f} GB (total maintenance equal: {r['total_maintenance'] == r2['total_maintenance']})"
            )
            pure, pure_cpu = parse_seconds(text, scenario_module._UniqueKeyLoader)
            print(
                f"  YAML parse of that file: pure-Python loader {pure:6.2f} s ({pure_cpu:.2f} s CPU)", end=""
            )
            if getattr(yaml, "CSafeLoader", None) is not None:
                fast, fast_cpu = parse_seconds(text, scenario_module.yaml_loader())
                print(
                    f", libyaml C loader {fast:5.2f} s ({fast_cpu:.2f} s CPU): {pure_cpu / fast_cpu:.1f}x less CPU"
                )
            else:
                print(" (PyYAML without libyaml: no C loader)")


def write_table(df: pd.DataFrame, path: Path) -> None:
    df.to_parquet(path, index=False)


if __name__ == "__main__":
    main()
