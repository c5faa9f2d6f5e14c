"""Portfolio margin of a 1,000-account book and its ``--json`` output: seconds of each stage.

The book: the stocks and index options of ``scenarios/pm_diversified_large_cap.yaml`` with more
strikes, 1,000 accounts of 3-12 random positions, cash for every other account. The script writes
the scenario file, then prints the seconds of ``marginsim margin FILE --json`` (one process, the
median of ``--repeat`` runs) and, in this process, of the margin run, of the method's JSON writer
(``to_dict``) and of the whole JSON text (``MarginResult.to_json``).

Run:  .venv/bin/python benchmarks/pm_json.py [--accounts 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SEED = 13


def scenario(n_accounts: int) -> dict:
    """The scenario file (as a dict) of a random ``n_accounts`` portfolio-margin book."""
    base = yaml.safe_load((ROOT / "scenarios" / "pm_diversified_large_cap.yaml").read_text())
    rng = np.random.default_rng(SEED)
    contracts = {k: v for k, v in base["contracts"].items() if v["type"] == "stock"}
    for und, m in base["market"].items():
        price = m["price"]
        for kind in ("call", "put"):
            for k in np.linspace(0.8, 1.2, 5):
                strike = float(round(k * price))
                contracts[f"{und}-{kind[0].upper()}{strike:.0f}"] = {
                    "type": kind,
                    "underlying": und,
                    "option_on": "spot",
                    "exercise": "american" if m.get("product_class") == "equity" else "european",
                    "strike": strike,
                    "expiry": "2027-03-19",
                    "multiplier": 100,
                }
    names = list(contracts)
    positions = []
    cash = {}
    for a in range(n_accounts):
        acct = f"A{a:05d}"
        held = rng.choice(len(names), size=int(rng.integers(3, 13)), replace=False)
        for k in held:
            c = names[k]
            qty = int(rng.integers(1, 40)) * (100 if contracts[c]["type"] == "stock" else 1)
            positions.append({"contract": c, "quantity": qty * int(rng.choice([-1, 1])), "account": acct})
        if a % 2 == 0:
            cash[acct] = float(rng.integers(-500_000, 2_000_000))
    return {
        "name": "pm-json-benchmark",
        "as_of": str(base["as_of"]),
        "currency": "USD",
        "methods": ["portfolio_margin"],
        "market": base["market"],
        "contracts": contracts,
        "positions": positions,
        "portfolio_margin": {"cash": cash},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import marginsim
    from marginsim.registry import REGISTRY

    sc = scenario(args.accounts)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pm_book.yaml"
        path.write_text(yaml.safe_dump(sc, sort_keys=False))
        n_pos = len(sc["positions"])
        print(f"{args.accounts:,} accounts, {n_pos:,} positions, {len(sc['contracts'])} contracts")
        cli = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run(
                [str(Path(sys.executable).parent / "marginsim"), "margin", str(path), "--json"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            cli.append(time.perf_counter() - t0)
        marginsim.margin(str(path), detail=False)  # warm-up: numba kernels, caches
        run, writer, text = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = marginsim.margin(str(path), detail=False)
            t1 = time.perf_counter()
            REGISTRY["portfolio_margin"].to_dict(res["portfolio_margin"], list(res.grid_dims))
            t2 = time.perf_counter()
            res.to_json()
            t3 = time.perf_counter()
            run.append(t1 - t0)
            writer.append(t2 - t1)
            text.append(t3 - t2)
    med = statistics.median
    print(f"marginsim margin FILE --json (process)   {med(cli):8.3f} s")
    print(f"  margin run (in process)                {med(run):8.3f} s")
    print(f"  portfolio_margin to_dict               {med(writer):8.3f} s")
    print(f"  MarginResult.to_json (whole JSON)      {med(text):8.3f} s")


if __name__ == "__main__":
    main()
