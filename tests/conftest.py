"""Shared fixtures: paths to the repo, its scenarios, and ../shared (optional)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# numpy picks its exp/log/sum loops by the CPU's SIMD extensions at import: AVX-512 loops round the
# last bit differently from AVX2 ones, and the Monte Carlo paths of the golden cases (tests/golden.py,
# recorded on an AVX2 machine) would differ in the 16th digit on an AVX-512 one. The tests pin the
# dispatch to AVX2 (x86-64-v3) so that "byte for byte" means the same on every machine; subprocesses
# of the tests inherit it. Disabling a feature the CPU lacks is a no-op.
os.environ.setdefault("NPY_DISABLE_CPU_FEATURES", "X86_V4 AVX512_ICL AVX512_SPR")
if "numpy" in sys.modules and os.environ["NPY_DISABLE_CPU_FEATURES"]:
    raise RuntimeError("numpy was imported before tests/conftest.py could pin its SIMD dispatch: a pytest plugin imports it (disable it with -p no:NAME in pyproject.toml)")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
SHARED = ROOT.parent / "shared"


@pytest.fixture
def scenarios_dir() -> Path:
    return SCENARIOS


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not beside the project")
    return SHARED
