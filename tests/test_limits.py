"""Size limits before allocation (issue 14, point 3): a run whose arrays would not fit is refused
with the estimated memory and the parameter to lower, before anything is allocated; the limit is a
setting (keyword, --memory-limit, set_options, MARGINSIM_MEMORY_LIMIT, half the physical memory)."""

from __future__ import annotations

import copy
import os
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml

import marginsim
from marginsim import limits
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
GB = 10**9


@pytest.fixture(autouse=True)
def _no_env_limit(monkeypatch):
    """The tests set the limit themselves: a limit in the caller's environment does not leak in."""
    monkeypatch.delenv(limits.ENV_VAR, raising=False)


def _yaml(name: str) -> dict:
    return yaml.safe_load((SCENARIOS / name).read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _grid_1e9() -> dict:
    d = _yaml("span_seed_example.yaml")
    d["grid"] = {
        "shift": [round(-0.5 + i / 1000, 4) for i in range(1000)],
        "vol_shift": [round(i / 10000, 5) for i in range(1000)],
        "price_scan_scale": [round(0.5 + i / 1000, 4) for i in range(1000)],
    }
    return d


def _monte_carlo(paths: int, steps: int) -> dict:
    d = _yaml("cfd_seed_example.yaml")
    d["market"]["XYZ"]["vol"] = 0.3
    d["grid"] = {"monte_carlo": {"paths": paths, "steps": steps}}
    return d


def _many_accounts(n: int, grid: dict | None) -> dict:
    """The overview's mixed book (SPAN, portfolio margin, CFD) copied into ``n`` accounts."""
    base = _yaml("overview_mixed_book.yaml")
    d = copy.deepcopy(base)
    d["positions"] = [dict(p, account=f"a{a}") for a in range(n) for p in base["positions"]]
    d["portfolio_margin"] = {"cash": {f"a{a}": 1e5 for a in range(n)}}
    d["cfd"]["accounts"] = {f"a{a}": {"cash": 1e4} for a in range(n)}
    if grid is not None:
        d["grid"] = grid
    return d


def _peak(fn) -> tuple[int, object]:
    """Peak of numpy's (and Python's) allocations while ``fn()`` runs [bytes]; numpy reports its
    allocations to tracemalloc."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        try:
            out = fn()
        except InputError as e:
            out = e
        return tracemalloc.get_traced_memory()[1] - base, out
    finally:
        tracemalloc.stop()


def _number(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, (pattern, text)
    return float(m.group(1).replace(",", ""))


# ------------------------------------------------------------------------------------------------
# refused before allocation
# ------------------------------------------------------------------------------------------------


def test_a_billion_point_grid_is_refused_before_allocation_with_the_estimate_and_the_keys(tmp_path):
    path = _write(tmp_path, _grid_1e9())
    peak, err = _peak(lambda: marginsim.margin(path, memory_limit="8GB"))
    assert isinstance(err, InputError)
    assert err.file == str(path) and err.key_path == "grid"
    assert "the what-if grid has 1,000,000,000 points" in err.problem
    # the estimate: 1e9 points x (at least one float per contract x scenario) is above 100 GB
    assert _number(err.problem, r"needs about ([\d.,]+) (?:GB|TB)") > 0
    assert re.search(r"needs about [\d.,]+ (TB|[\d,]{3,} GB)", err.problem), err.problem
    assert "(limit 8.0 GB, memory_limit)" in err.problem
    assert "lower grid.shift or grid.vol_shift" in err.problem
    assert "MARGINSIM_MEMORY_LIMIT" in err.problem
    assert peak < 200e6  # nothing of the grid's size was allocated (1e9 floats: 8 GB)


def test_the_cli_refuses_the_billion_point_grid_with_exit_2_and_one_line(tmp_path, capsys):
    path = _write(tmp_path, _grid_1e9())
    assert main(["margin", str(path), "--memory-limit", "8GB"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith(f"marginsim: error: {path}: grid: the what-if grid has 1,000,000,000 points")
    assert "lower grid.shift or grid.vol_shift" in err


def test_a_monte_carlo_of_100000_paths_x_10000_steps_is_refused_before_simulating(tmp_path, capsys):
    path = _write(tmp_path, _monte_carlo(100_000, 10_000))
    peak, err = _peak(lambda: marginsim.load(path, memory_limit="8GB"))
    assert isinstance(err, InputError) and err.key_path == "grid.monte_carlo"
    assert "100,000 paths x 10,001 steps x 1 underlying" in err.problem
    # six arrays of 1,000,100,000 floats: 48.0 GB
    assert _number(err.problem, r"needs about ([\d.]+) GB") == pytest.approx(48.0, rel=0.01)
    assert "lower grid.monte_carlo.paths or grid.monte_carlo.steps" in err.problem
    assert peak < 200e6
    assert main(["margin", str(path), "--memory-limit", "8GB"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "grid.monte_carlo: 100,000 paths" in out.err


def test_the_default_limit_refuses_both_requests_on_any_machine_below_a_terabyte(tmp_path):
    phys = limits.physical_memory()
    if phys is not None and phys * limits.DEFAULT_SHARE > 40 * GB:
        pytest.skip("this machine's default limit would let the Monte Carlo case through")
    with pytest.raises(InputError, match="of physical memory|the default"):
        marginsim.margin(_write(tmp_path, _monte_carlo(100_000, 10_000)))
    with pytest.raises(InputError, match="1,000,000,000 points"):
        marginsim.margin(_write(tmp_path, _grid_1e9(), "g.yaml"))


# ------------------------------------------------------------------------------------------------
# just under the limit passes
# ------------------------------------------------------------------------------------------------


def _estimate(data: dict, methods: list[str], **kw) -> float:
    inputs = marginsim.load(data, memory_limit="off")
    return limits.estimate_methods(inputs, [REGISTRY[m] for m in methods], **kw)


def test_a_run_just_under_the_limit_passes_and_just_over_is_refused():
    data = _many_accounts(20, {"shift": [-0.1, 0.0, 0.1], "vol_shift": [0.0, 0.02]})
    need = _estimate(data, ["span"], detail=False)
    assert need > 0
    res = marginsim.margin(data, methods=["span"], detail=False, memory_limit=int(need) + 1)
    assert np.isfinite(res["span"]["maintenance"].values).all()
    with pytest.raises(InputError, match=r"margining it \(span, in one piece\) needs about"):
        marginsim.margin(data, methods=["span"], detail=False, memory_limit=int(need) - 1)


def test_a_market_just_under_the_limit_is_built_and_just_over_is_refused():
    data = _monte_carlo(200, 50)
    need, points, n_u = limits.market_footprint(marginsim.parse_scenario(data))
    assert (points, n_u) == (51 * 200, 1) and need == 6 * 8 * 51 * 200
    inputs = marginsim.load(data, memory_limit=int(need))
    assert inputs.market["price"].sizes["path"] == 200
    with pytest.raises(InputError, match="grid.monte_carlo: 200 paths x 51 steps"):
        marginsim.load(data, memory_limit=int(need) - 1)


def test_a_book_refused_in_one_piece_is_told_the_chunks_that_fit_and_passes_with_them():
    data = _many_accounts(60, {"shift": list(np.linspace(-0.2, 0.2, 20)), "vol_shift": [0.0, 0.02]})
    whole = _estimate(data, ["portfolio_margin"], detail=False)
    limit = int(whole * 0.6)
    with pytest.raises(InputError) as e:
        marginsim.margin(data, methods=["portfolio_margin"], detail=False, memory_limit=limit)
    assert e.value.key_path == "grid" and "in one piece" in e.value.problem
    n = int(_number(e.value.problem, r"use --chunks (\d+)"))
    assert 1 <= n < 60
    res = marginsim.margin(data, methods=["portfolio_margin"], detail=False, chunks=n, memory_limit=limit)
    one = marginsim.margin(data, methods=["portfolio_margin"], detail=False, memory_limit="off")
    np.testing.assert_allclose(
        res["portfolio_margin"]["maintenance"].values, one["portfolio_margin"]["maintenance"].values
    )


def test_a_book_without_a_grid_names_the_positions_and_the_chunks():
    data = _many_accounts(40, None)
    need = _estimate(data, ["cfd"])
    with pytest.raises(InputError) as e:
        marginsim.margin(data, methods=["cfd"], memory_limit=int(need) - 1)
    assert e.value.key_path == "positions"
    assert "the book has 440 positions in 40 accounts" in e.value.problem
    assert "grid." not in e.value.problem


# ------------------------------------------------------------------------------------------------
# the setting
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8GB", 8 * GB),
        ("8 gb", 8 * GB),
        ("1.5TB", 1_500 * GB),
        ("512MB", 512 * 10**6),
        ("8GiB", 8 * 2**30),
        ("8G", 8 * 2**30),
        ("512M", 512 * 2**20),
        ("4000000000", 4 * GB),
        (4_000_000_000, 4 * GB),
        (8e9, 8 * GB),
    ],
)
def test_limit_values(text, size):
    assert limits.parse_limit(text).bytes == size


def test_limit_off_and_share_of_memory():
    assert limits.parse_limit("off").bytes is None
    assert limits.parse_limit("unlimited").bytes is None
    half = limits.parse_limit("50%")
    phys = limits.physical_memory()
    expected = (limits.FALLBACK_BYTES / limits.DEFAULT_SHARE if phys is None else phys) * 0.5
    assert half.bytes == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("bad", ["8XB", "lots", "-1GB", "0", 0, -5, "150%", "0%", float("nan"), True])
def test_bad_limit_values_are_input_errors_naming_the_setting(bad):
    with pytest.raises(InputError) as e:
        limits.parse_limit(bad, origin="--memory-limit")
    assert e.value.key_path == "--memory-limit"


def test_the_default_is_half_the_physical_memory():
    lim = limits.memory_limit()
    phys = limits.physical_memory()
    if phys is None:
        assert lim.bytes == limits.FALLBACK_BYTES
    else:
        assert lim.bytes == int(phys * 0.5) and "50% of physical memory" in lim.origin


def test_keyword_over_set_options_over_environment_over_default(monkeypatch):
    monkeypatch.setenv(limits.ENV_VAR, "3GB")
    assert limits.memory_limit() == limits.Limit(3 * GB, "MARGINSIM_MEMORY_LIMIT")
    with marginsim.set_options(memory_limit="2GB"):
        assert limits.memory_limit() == limits.Limit(2 * GB, "set_options")
        assert limits.memory_limit("1GB") == limits.Limit(1 * GB, "memory_limit")
        with marginsim.set_options(memory_limit=None):  # back to the environment inside the block
            assert limits.memory_limit().bytes == 3 * GB
        assert limits.memory_limit().bytes == 2 * GB
    assert limits.memory_limit().bytes == 3 * GB  # the block's value is gone
    monkeypatch.setenv(limits.ENV_VAR, "")
    assert limits.memory_limit() == limits.memory_limit(None)  # an empty variable is unset
    assert "physical memory" in limits.memory_limit().origin or limits.memory_limit().origin == "the default"


def test_set_options_without_a_block_sets_it_for_the_session():
    try:
        marginsim.set_options(memory_limit="5GB")
        assert limits.memory_limit().bytes == 5 * GB
    finally:
        marginsim.set_options(memory_limit=None)
    assert limits.memory_limit().origin != "set_options"
    with pytest.raises(ValueError, match="unknown option 'memory'"):
        marginsim.set_options(memory="5GB")
    with pytest.raises(InputError):
        marginsim.set_options(memory_limit="5 elephants")


def test_the_environment_variable_is_read_by_the_cli(tmp_path, monkeypatch, capsys):
    path = _write(tmp_path, _many_accounts(5, {"shift": [-0.1, 0.0, 0.1]}))
    monkeypatch.setenv(limits.ENV_VAR, "1kB")
    assert main(["margin", str(path)]) == 2
    err = capsys.readouterr().err
    assert "(limit 1.0 kB, MARGINSIM_MEMORY_LIMIT)" in err
    assert main(["margin", str(path), "--memory-limit", "off"]) == 0  # the option wins
    capsys.readouterr()
    monkeypatch.setenv(limits.ENV_VAR, "a lot")
    assert main(["margin", str(path)]) == 2
    assert "MARGINSIM_MEMORY_LIMIT: 'a lot' is not a memory size" in capsys.readouterr().err
    assert main(["margin", str(path), "--memory-limit", "8XB"]) == 2
    assert "--memory-limit: '8XB' is not a memory size" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# the estimate against the measured peak
# ------------------------------------------------------------------------------------------------

_GRID = {"shift": list(np.linspace(-0.2, 0.2, 20)), "vol_shift": list(np.linspace(-0.05, 0.05, 10))}


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("span", _many_accounts(40, _GRID)),
        ("portfolio_margin", _many_accounts(40, _GRID)),
        ("cfd", _many_accounts(40, {"monte_carlo": {"paths": 100, "steps": 20}})),
        ("account", None),
    ],
)
def test_the_estimate_is_within_a_factor_of_the_measured_peak(method, data):
    if data is None:  # the account layer on its Hong Kong example, 40 accounts, 100 paths
        data = _yaml("account_hk_margin_call.yaml")
        base = data["positions"]
        data["positions"] = [dict(p, account=f"a{a}") for a in range(40) for p in base]
        main_account = data["account"]["accounts"]["main"]
        data["account"]["accounts"] = {f"a{a}": main_account for a in range(40)}
        del data["grid"]["path"]
        data["grid"]["monte_carlo"] = {"paths": 100, "steps": 10}
    inputs = marginsim.load(data, memory_limit="off")
    marginsim.margin(inputs, methods=[method], detail=False)  # compiled kernels and caches first
    inputs = marginsim.load(data, memory_limit="off")
    peak, res = _peak(lambda: marginsim.margin(inputs, methods=[method], detail=False, memory_limit="off"))
    assert not isinstance(res, InputError)
    estimate = _estimate(data, [method], detail=False)
    assert peak > 1e6  # a mid-size case: megabytes of arrays, not the fixed overheads
    assert estimate / 3 < peak < estimate * 3, (estimate, peak)


def test_a_chunked_run_counts_a_chunk_per_thread_and_the_whole_result():
    data = _many_accounts(40, _GRID)
    inputs = marginsim.load(data, memory_limit="off")
    spec = [REGISTRY["portfolio_margin"]]  # its working arrays (per stress) dwarf its result
    one_piece = limits.estimate_methods(inputs, spec, detail=False)
    chunked = marginsim.scale.chunk(inputs, accounts=5)
    whole, piece, pieces = limits.sizes_of(chunked)
    assert (whole.accounts, piece.accounts, pieces) == (40, 5, 8)
    assert piece.positions == 5 * 11 and whole.positions == 440
    lazy = limits.estimate_methods(chunked, spec, detail=False)
    assert lazy < one_piece
    # the whole result stays: twice (the chunks' and the concatenated) on top of the chunks in flight
    result = limits.portfolio_margin_memory(whole, False).result
    chunk = limits.portfolio_margin_memory(piece, False).peak
    assert lazy == pytest.approx(min(os.cpu_count() or 1, 8) * chunk + 2 * result)
    # one chunk at a time on a cluster (the others are in the workers' memory)
    on_cluster = limits.estimate_methods(chunked, spec, detail=False, distributed=True)
    assert on_cluster <= lazy
    # a market chunked along a grid dim: a task holds one chunk of it
    split = marginsim.scale.chunk(inputs, accounts=5, grid={"shift": 5})
    whole_s, piece_s, pieces_s = limits.sizes_of(split)
    assert (whole_s.grid["shift"], piece_s.grid["shift"], pieces_s) == (20, 5, 8 * 4)
    assert piece_s.grid["vol_shift"] == whole_s.grid["vol_shift"] == 10
    # with the limit in force: the bound of an in-memory book's pairs, then the exact pairs
    with pytest.raises(InputError, match=r"in chunks of 5 accounts"):
        limits.check_methods(chunked, spec, detail=False, limit=limits.Limit(int(lazy) - 1, "t"))
    assert limits.check_methods(chunked, spec, detail=False, limit=limits.Limit(int(lazy), "t")) == lazy
    assert (
        limits.check_methods(inputs, spec, detail=False, limit=limits.Limit(int(one_piece), "t")) >= one_piece
    )
