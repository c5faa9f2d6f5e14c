"""Scale (issue 8): methods on dask, chunk by chunk of accounts; stored books; dask.distributed.

- A chunked run equals the in-memory run exactly (same variables, coords, attrs, numbers), for
  every method that runs chunk by chunk, with chunks holding different contracts and groups.
- Building the graph computes nothing (a scheduler that raises, as xclim's ``assert_lazy``).
- A stored (zarr) book is read chunk by chunk and gives the same JSON as the scenario's book.
- A real ``distributed.LocalCluster`` (two worker processes on loopback) gives the in-memory
  numbers to the cent for SPAN, portfolio margin and CFD path simulation.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
import yaml

from marginsim import scale
from marginsim.api import load, margin
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.io.book import open_book, read_book, write_book
from marginsim.methods import REGISTRY
from marginsim.methods.cfd import cfd_margin
from marginsim.methods.portfolio_margin import portfolio_margin
from marginsim.methods.span import span_margin
from marginsim.scenario import parse_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _raise_on_compute(dsk, keys, **kwargs):
    raise AssertionError("dask computed while the graph was being built")


def assert_lazy():
    """As xclim's ``assert_lazy``: any dask compute inside this context fails."""
    return dask.config.set(scheduler=_raise_on_compute)


def assert_same(got: xr.Dataset, want: xr.Dataset) -> None:
    """Same variables, coords and attrs; numbers equal to the cent (here: exactly)."""
    assert set(got.variables) == set(want.variables)
    for name, v in want.variables.items():
        g = got[name].transpose(*v.dims)
        if v.dtype.kind == "f":
            np.testing.assert_allclose(g.values, v.values, rtol=0, atol=0.005, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(g.values, v.values, err_msg=name)
    xr.testing.assert_identical(got, want)


def _scenario(name: str) -> dict:
    data = yaml.safe_load((SCENARIOS / name).read_text())
    return data


def _many_accounts(inputs, n_accounts: int, seed: int = 3, keep=()):
    """The same contracts held by many accounts: each holds a random subset (so chunks differ)."""
    rng = np.random.default_rng(seed)
    k = inputs.contracts.sizes["contract"]
    held = inputs.held_contracts()
    contract, account, qty = [], [], []
    names = list(keep) + [f"acct-{i:03d}" for i in range(n_accounts - len(keep))]
    for a, name in enumerate(names):
        n = int(rng.integers(1, min(4, held.size) + 1))
        pick = rng.choice(held, size=n, replace=False) if a else held  # the first holds everything
        contract += pick.tolist()
        account += [name] * len(pick)
        qty += (rng.integers(1, 9, len(pick)) * rng.choice([-1, 1], len(pick))).tolist()
    order = rng.permutation(len(contract))  # accounts interleaved in the book
    assert k >= held.size
    return inputs.with_book(
        np.asarray(contract)[order], np.asarray(qty, float)[order], np.asarray(account)[order]
    )


# ------------------------------------------------------------------------------------------------
# chunked == whole
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "method", "grid"),
    [
        ("span_seed_example.yaml", "span", None),
        ("span_takasbank.yaml", "span", None),  # a clearing-house file
        ("span_inter_commodity.yaml", "span", {"shift": 2}),  # a grid dim split too
        ("span_inter_commodity.yaml", "portfolio_margin", {"shift": 3}),
        ("pm_diversified_large_cap.yaml", "portfolio_margin", None),
        ("overview_mixed_book.yaml", "span", None),
        ("overview_mixed_book.yaml", "portfolio_margin", None),
        ("overview_mixed_book.yaml", "cfd", None),
        ("cfd_two_fills.yaml", "cfd", None),  # orders opened along the path
        ("cfd_retail_book.yaml", "cfd", {"path": 700}),  # Monte Carlo paths split, statistics over all
    ],
)
def test_chunked_run_equals_whole_run(scenario, method, grid):
    inputs = load(SCENARIOS / scenario)
    whole = REGISTRY[method].run(inputs)
    lazy = REGISTRY[method].run(scale.chunk(inputs, accounts=1, grid=grid))
    assert all(v.chunks is not None for v in lazy.data_vars.values())
    (got,) = scale.compute(lazy, scheduler="sync")
    assert_same(got, whole)


@pytest.mark.parametrize("accounts", [1, 4, 7, 100])
def test_chunks_holding_different_contracts_and_groups(accounts):
    # SPAN's groups / contracts and portfolio margin's class groups come from the whole book
    # (Inputs.universe), so chunks holding fewer combined commodities still line up
    span_in = _many_accounts(load(SCENARIOS / "span_inter_commodity.yaml"), 23)
    pm_base = load(SCENARIOS / "pm_diversified_large_cap.yaml")
    pm_in = _many_accounts(pm_base, 19, keep=list(pm_base.scenario.portfolio_margin.cash))
    lazy_span = span_margin(scale.chunk(span_in, accounts=accounts))
    lazy_pm = portfolio_margin(scale.chunk(pm_in, accounts=accounts))
    got_span, got_pm = scale.compute(lazy_span, lazy_pm, scheduler="threads")
    assert_same(got_span, span_margin(span_in))
    assert_same(got_pm, portfolio_margin(pm_in))


def test_cfd_funded_accounts_without_positions_come_once():
    data = _scenario("overview_mixed_book.yaml")
    data["cfd"]["accounts"]["spare"] = {"cash": 500}
    data["cfd"]["accounts"]["reserve"] = {"cash": 700}
    inputs = load(data)
    whole = cfd_margin(inputs)
    assert whole["account"].values.tolist() == ["main", "hedged", "spare", "reserve"]
    (got,) = scale.compute(cfd_margin(scale.chunk(inputs, accounts=1)), scheduler="sync")
    assert_same(got, whole)


def test_json_is_identical_with_and_without_chunks(capsys):
    for name in ("overview_mixed_book.yaml", "span_inter_commodity.yaml", "cfd_seed_example.yaml"):
        path = str(SCENARIOS / name)
        assert main(["margin", path, "--json"]) == 0
        plain = capsys.readouterr().out
        assert main(["margin", path, "--json", "--chunks", "1"]) == 0
        assert capsys.readouterr().out == plain


def test_margin_api_lazy_then_computed():
    inputs = load(SCENARIOS / "overview_mixed_book.yaml")
    lazy = margin(inputs, chunks=1, compute=False)
    assert set(lazy.methods) == {"span", "cfd", "portfolio_margin"}
    assert all(ds["maintenance"].chunks is not None for ds in lazy.methods.values())
    done = dict(zip(lazy.methods, scale.compute(*lazy.methods.values())))
    plain = margin(inputs)
    for name, ds in plain.methods.items():
        assert_same(done[name], ds)


# ------------------------------------------------------------------------------------------------
# laziness
# ------------------------------------------------------------------------------------------------


def test_building_the_graph_computes_nothing(tmp_path):
    mixed = load(SCENARIOS / "overview_mixed_book.yaml")
    paths = load(SCENARIOS / "cfd_retail_book.yaml")
    grid = load(SCENARIOS / "span_inter_commodity.yaml")
    stored = write_book(tmp_path / "book.zarr", mixed)
    with assert_lazy():
        for inputs in (scale.chunk(mixed, accounts=1), read_book(stored, mixed, accounts=1)):
            for run in (span_margin, portfolio_margin, cfd_margin):
                ds = run(inputs)
                assert all(v.chunks is not None for v in ds.data_vars.values())
        cfd_margin(scale.chunk(paths, accounts=1, grid={"path": 500}))
        span_margin(scale.chunk(grid, accounts=1, grid={"shift": 2}))
        portfolio_margin(scale.chunk(grid, accounts=1, grid={"shift": 2}))
    with pytest.raises(AssertionError, match="computed"), assert_lazy():
        span_margin(scale.chunk(mixed, accounts=1))["maintenance"].values  # noqa: B018 - computes


# ------------------------------------------------------------------------------------------------
# stored books
# ------------------------------------------------------------------------------------------------


def test_stored_book_gives_the_same_json(tmp_path, capsys):
    scenario = SCENARIOS / "overview_mixed_book.yaml"
    inputs = load(scenario)
    path = write_book(tmp_path / "book.zarr", inputs, chunk_positions=4)
    book, universe = open_book(path, inputs.contracts, accounts=1)
    assert book["quantity"].chunks == ((7, 4),)  # one chunk per account
    assert sorted(universe.accounts) == ["hedged", "main"]
    assert main(["margin", str(scenario), "--json"]) == 0
    plain = capsys.readouterr().out
    assert main(["margin", str(scenario), "--json", "--book", str(path), "--chunks", "1"]) == 0
    assert capsys.readouterr().out == plain


def test_stored_lazy_book_is_written_chunk_by_chunk(tmp_path):
    inputs = _many_accounts(load(SCENARIOS / "span_inter_commodity.yaml"), 30)
    chunked = scale.chunk(inputs, accounts=4)
    path = write_book(tmp_path / "lazy.zarr", chunked, chunk_positions=10)
    got = margin(inputs, book=path, chunks=3, methods=["span"])
    assert got.to_dict() == margin(inputs, methods=["span"]).to_dict()


def test_stored_book_bad_input(tmp_path):
    inputs = load(SCENARIOS / "overview_mixed_book.yaml")
    with pytest.raises(InputError, match="no such book"):
        open_book(tmp_path / "missing.zarr", inputs.contracts)
    xr.Dataset({"x": ("y", [1])}).to_zarr(tmp_path / "other.zarr", consolidated=False)
    with pytest.raises(InputError, match="not a marginsim book"):
        open_book(tmp_path / "other.zarr", inputs.contracts)
    # a contract the scenario does not define
    path = write_book(tmp_path / "book.zarr", inputs)
    ds = xr.open_zarr(path, consolidated=False).load()
    ds["contract_name"] = ds["contract_name"].copy(
        data=np.array(["NOPE"] + ds["contract_name"].values.tolist()[1:], object)
    )
    ds.to_zarr(tmp_path / "unknown.zarr", mode="w", consolidated=False)
    with pytest.raises(InputError, match="unknown contract 'NOPE'"):
        open_book(tmp_path / "unknown.zarr", inputs.contracts)
    # positions not sorted by account, without an account table
    ds = xr.open_zarr(path, consolidated=False).load().drop_vars("position_start")
    ds["account"] = ds["account"].copy(data=ds["account"].values[::-1].copy())
    ds.to_zarr(tmp_path / "unsorted.zarr", mode="w", consolidated=False)
    with pytest.raises(InputError, match="not sorted by account"):
        open_book(tmp_path / "unsorted.zarr", inputs.contracts)
    # an account table that does not match the positions: found when the chunk is read
    ds = xr.open_zarr(path, consolidated=False).load()
    ds["position_start"] = ds["position_start"].copy(data=np.array([0, 5]))
    ds.to_zarr(tmp_path / "table.zarr", mode="w", consolidated=False)
    lazy = span_margin(read_book(tmp_path / "table.zarr", inputs, accounts=1))
    with pytest.raises(InputError, match="account table"):
        scale.compute(lazy, scheduler="sync")


def test_dask_book_without_account_table_is_an_input_error():
    inputs = load(SCENARIOS / "overview_mixed_book.yaml")
    chunked = replace(inputs, book=inputs.book.chunk(position=3))
    with pytest.raises(InputError, match="account table"):
        span_margin(chunked)


def test_account_straddling_two_chunks_is_an_input_error():
    inputs = load(SCENARIOS / "overview_mixed_book.yaml")
    lazy = scale.chunk(inputs, accounts=1)
    book = lazy.book.copy()
    for name in ("contract_index", "quantity", "account_index"):
        book[name] = book[name].chunk(position=(5, 6))  # account main has 7 positions
    with pytest.raises(InputError, match="straddles"):
        span_margin(replace(lazy, book=book))


def test_bad_chunks_exit_2(capsys):
    assert main(["margin", str(SCENARIOS / "span_seed_example.yaml"), "--chunks", "0"]) == 2
    assert "accounts per chunk" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# dask.distributed: a real LocalCluster on loopback
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    ) as lc:
        yield lc


@pytest.fixture
def client(cluster):
    from distributed import Client

    with Client(cluster) as c:
        yield c


def test_local_cluster_equals_in_memory_to_the_cent(client):
    from distributed import get_task_stream

    span_in = _many_accounts(load(SCENARIOS / "span_inter_commodity.yaml"), 12)
    pm_in = load(SCENARIOS / "pm_diversified_large_cap.yaml")
    cfd_in = load(SCENARIOS / "cfd_retail_book.yaml")  # Monte Carlo: 2000 paths x 21 steps
    lazy = (
        span_margin(scale.chunk(span_in, accounts=5, grid={"shift": 2})),
        portfolio_margin(scale.chunk(pm_in, accounts=1)),
        cfd_margin(scale.chunk(cfd_in, accounts=1, grid={"path": 1000})),
    )
    with get_task_stream(client) as ts:
        got = scale.compute(*lazy)  # the connected client is dask's scheduler
    workers = {t["worker"] for t in ts.data}
    assert len(workers) == 2  # both workers ran tasks
    for g, want in zip(got, (span_margin(span_in), portfolio_margin(pm_in), cfd_margin(cfd_in))):
        assert_same(g, want)


def test_connected_client_gets_the_work_and_the_same_json(client, capsys):
    from distributed import get_task_stream

    scenario = SCENARIOS / "overview_mixed_book.yaml"
    plain = margin(load(scenario)).to_json()
    with get_task_stream(client) as ts:
        routed = margin(scenario).to_json()  # no chunks given: a connected client gets chunks
    assert ts.data
    assert routed == plain
    assert main(["margin", str(scenario), "--json", "--scheduler", client.scheduler.address]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(plain)


def test_unreachable_scheduler_exits_2(capsys):
    pytest.importorskip("distributed")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["margin", str(SCENARIOS / "span_seed_example.yaml"), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert "cannot connect" in capsys.readouterr().err


def test_methods_of_a_stored_book_follow_its_contracts():
    # the stand-in used to pick methods for a stored book never changes the scenario itself
    data = _scenario("overview_mixed_book.yaml")
    inputs = load(data)
    names = inputs.contracts["contract"].values[inputs.held_contracts()]
    assert scale.stored_book_methods(inputs, names) == ["span", "cfd", "portfolio_margin"]
    assert scale.stored_book_methods(inputs, ["MEGA"]) == ["span", "cfd", "portfolio_margin"]  # sections
    assert len(inputs.scenario.positions) == 11
    data["positions"] = [p for p in data["positions"] if p["contract"] == "MEGA"]
    data.pop("span")
    data.pop("cfd")
    only_stock = load(parse_scenario(data))
    assert scale.stored_book_methods(only_stock, ["MEGA"]) == ["portfolio_margin"]
    assert scale.stored_book_methods(only_stock, ["IDX-DEC26"]) == ["span", "portfolio_margin"]
