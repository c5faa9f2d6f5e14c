"""Golden outputs: the ``--json`` result (and the readable tables) of every bundled scenario and of
a few hundred random books, recorded before the method layer was redesigned (issue 13).

``tests/test_golden.py`` recomputes every case and compares it byte for byte with
``tests/data/golden.json.gz``. The cases are made here, deterministically (fixed seeds):

- every bundled scenario: ``marginsim margin FILE --json`` and the tables of ``marginsim margin FILE``;
- random variants of every bundled scenario: positions resampled from the file's own rows (with
  their accounts, open prices and order times), quantities scaled by random integers of either
  sign, Monte Carlo grids cut to a few paths;
- random SPAN books on the real clearing-house file ``../shared/data/span/takas.spn`` (when present).

A case that is an input error records the error's message: errors must not change either.

Regenerate (only when a change of output is intended, and say so in the commit)::

    python tests/golden.py --write
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import sys
import zlib
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
TAKAS = ROOT.parent / "shared" / "data" / "span" / "takas.spn"
GOLDEN = ROOT / "tests" / "data" / "golden.json.gz"

VARIANTS_PER_SCENARIO = 14
TAKAS_BOOKS = 120
#: outputs up to this size are stored whole (to show a diff); larger ones by their hash only
KEEP_TEXT = 60_000


def _variant(data: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    d = copy.deepcopy(data)
    rows = d.get("positions") or []
    if rows:
        n = int(rng.integers(1, 2 * len(rows) + 1))
        picks = rng.integers(0, len(rows), size=n)
        new = []
        for i in picks:
            row = copy.deepcopy(rows[int(i)])
            factor = int(rng.choice([-3, -2, -1, 1, 1, 2, 3, 5]))
            row["quantity"] = row["quantity"] * factor
            new.append(row)
        d["positions"] = new
    mc = (d.get("grid") or {}).get("monte_carlo")
    if mc is not None:
        mc["paths"] = min(int(mc["paths"]), 12)
        mc["seed"] = int(rng.integers(0, 1000))
    d["name"] = d["name"] + "-variant"
    return d


def _takas_book(rng: np.random.Generator, ids: list[str]) -> dict[str, Any]:
    n_acc = int(rng.integers(1, 4))
    positions = []
    for a in range(n_acc):
        for _ in range(int(rng.integers(1, 12))):
            positions.append(
                {
                    "contract": ids[int(rng.integers(0, len(ids)))],
                    "quantity": int(rng.choice([-1, 1]) * rng.integers(1, 40)),
                    "account": f"acct{a}",
                }
            )
    return {
        "name": "takas-random",
        "as_of": "2016-05-17",
        "currency": "TRY",
        "span": {"source": str(TAKAS)},
        "positions": positions,
    }


def cases() -> Iterator[tuple[str, Any]]:
    """``(case id, scenario)``: a path (bundled file) or a mapping (a variant)."""
    for f in sorted(SCENARIOS.glob("*.yaml")):
        yield f"file:{f.name}", f
    for f in sorted(SCENARIOS.glob("*.yaml")):
        data = yaml.safe_load(f.read_text())
        span = data.get("span") or {}
        if span.get("source"):
            span["source"] = str((f.parent / span["source"]).resolve())
            if not Path(span["source"]).exists():
                continue
        # seeded by the file's name: a new scenario file adds its cases and changes no other's
        rng = np.random.default_rng(1000 + zlib.crc32(f.name.encode()))
        for i in range(VARIANTS_PER_SCENARIO):
            yield f"variant:{f.name}:{i}", _variant(data, rng)
    if TAKAS.exists():
        from marginsim.cli import main

        buf = io.StringIO()
        with redirect_stdout(buf):
            main(["span-file", str(TAKAS), "--contracts"])
        ids = sorted(line.split()[0] for line in buf.getvalue().splitlines()[1:] if line.strip())
        rng = np.random.default_rng(7)
        for i in range(TAKAS_BOOKS):
            yield f"takas:{i}", _takas_book(rng, ids)


def run_case(scenario: Any) -> dict[str, str]:
    """The JSON contract (and, for a bundled file, the tables) of one case, or its input error."""
    import marginsim
    from marginsim.cli import main

    out: dict[str, str] = {}
    if isinstance(scenario, Path):
        for key, argv in (("json", [str(scenario), "--json"]), ("table", [str(scenario)])):
            buf = io.StringIO()
            with redirect_stdout(buf):
                code = main(["margin", *argv])
            out[key] = f"exit {code}\n" + buf.getvalue()
        return out
    try:
        out["json"] = marginsim.margin(scenario, detail=False).to_json()
    except marginsim.InputError as e:
        out["json"] = f"input error: {e}"
    return out


def record() -> dict[str, dict[str, str]]:
    got: dict[str, dict[str, str]] = {}
    for cid, sc in cases():
        for key, text in run_case(sc).items():
            entry = {"sha256": hashlib.sha256(text.encode()).hexdigest(), "size": str(len(text))}
            if len(text) <= KEEP_TEXT:
                entry["text"] = text
            got[f"{cid}:{key}"] = entry
    return got


if __name__ == "__main__":
    if "--write" not in sys.argv[1:]:
        sys.exit("usage: python tests/golden.py --write")
    sys.path.insert(0, str(ROOT))
    rec = record()
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(GOLDEN, "wt", encoding="utf-8") as fh:
        json.dump(rec, fh, indent=0, sort_keys=True)
    errors = sum(1 for v in rec.values() if v.get("text", "").startswith("input error"))
    print(f"{len(rec)} outputs written to {GOLDEN} ({errors} input errors)")
