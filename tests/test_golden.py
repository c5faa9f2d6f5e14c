"""Nothing changes for users: every recorded output is reproduced byte for byte (issue 13).

The cases and how to regenerate them are in ``tests/golden.py``: the ``--json`` output and the
tables of every bundled scenario, random variants of each, and random SPAN books on the real
clearing-house file (skipped when ``../shared`` is absent).
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import json

import pytest
from golden import GOLDEN, TAKAS, cases, run_case

RECORDED = json.loads(gzip.open(GOLDEN, "rt", encoding="utf-8").read())
CASES = list(cases())


def test_every_recorded_case_is_still_made():
    made = {f"{cid}:{key}" for cid, sc in CASES for key in (("json", "table") if cid.startswith("file:") else ("json",))}
    missing = set(RECORDED) - made
    if not TAKAS.exists():
        missing = {m for m in missing if not m.startswith("takas:")}
    assert not missing, f"recorded cases no longer generated: {sorted(missing)[:5]}"
    assert len(RECORDED) >= 300


@pytest.mark.parametrize("cid,scenario", CASES, ids=[c for c, _ in CASES])
def test_output_is_byte_identical(cid, scenario):
    for key, text in run_case(scenario).items():
        want = RECORDED[f"{cid}:{key}"]
        got_hash = hashlib.sha256(text.encode()).hexdigest()
        if got_hash != want["sha256"]:
            if "text" in want:
                diff = "\n".join(
                    list(difflib.unified_diff(want["text"].splitlines(), text.splitlines(), lineterm=""))[:40]
                )
            else:
                diff = f"size {len(text)} vs {want['size']}"
            pytest.fail(f"{cid}:{key} changed:\n{diff}")
