"""Scale (issue 8): methods on dask, chunk by chunk of accounts; stored books; dask.distributed.

- A chunked run equals the in-memory run exactly (same variables, coords, attrs, numbers), for
  every method that runs chunk by chunk, with chunks holding different contracts and groups.
- Building the graph computes nothing (a scheduler that raises, as xclim's ``assert_lazy``).
- A stored (zarr) book is read chunk by chunk and gives the same JSON as the scenario's book.
- A real ``distributed.LocalCluster`` (two worker processes on loopback) gives the in-memory
  numbers to the cent for SPAN, portfolio margin and CFD path simulation.
- The account layer too: its plans' rows (padded per chunk, compacted after computing), funded
  accounts without positions (once) and the whole book's liquidation step.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
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
from marginsim.methods.account import account_margin
from marginsim.methods.cfd import cfd_margin
from marginsim.methods.portfolio_margin import portfolio_margin
from marginsim.methods.span import span_margin
from marginsim.scenario import parse_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def run_lazy(method: str, inputs, **kwargs) -> xr.Dataset:
    """The registered ``method`` on lazy inputs, chunk by chunk (nothing computed)."""
    spec = REGISTRY[method]
    return scale.lazy_method(inputs, spec, partial(spec.run, **kwargs))


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


def _account_book() -> dict:
    """Four accounts (one funded without positions) in HKD, USD and CNH, positions interleaved, a
    path along which the third account falls into forced liquidation first (the plan's step is the
    whole book's), currency shortfalls (conversion plans) and a client instruction."""
    spread = {"priority": 1, "rate": 500, "legs": [{"tier": 0, "side": "A"}, {"tier": 0, "side": "B"}]}
    iron = {"margin": {"type": "percentage", "initial": 0.12, "maintenance": 0.10}}
    hsi = {"type": "fixed", "initial": 100_000, "maintenance": 80_000, "currency": "HKD"}
    return {
        "name": "account book",
        "as_of": "2026-03-10T17:00:00",
        "currency": "USD",
        "fx": {"HKD": 0.125, "CNH": 0.14, "EUR": 1.1},
        "methods": ["account"],
        "market": {
            "HSI": {"price": 20000, "vol": 0.2, "currency": "HKD"},
            "ES": {"price": 5000, "vol": 0.2, "currency": "USD"},
            "IRON": {"price": 800, "vol": 0.3, "currency": "CNH"},
        },
        "contracts": {
            "HSI-F": {"type": "future", "underlying": "HSI", "multiplier": 50, "expiry": "2026-03-30"},
            "ES-M": {"type": "future", "underlying": "ES", "multiplier": 50, "expiry": "2026-06-19"},
            "ES-U": {"type": "future", "underlying": "ES", "multiplier": 50, "expiry": "2026-09-18"},
            "IRON-F": {"type": "future", "underlying": "IRON", "multiplier": 100, "expiry": "2026-05-15"},
        },
        "positions": [
            {"contract": "ES-M", "quantity": 1, "account": "plain"},
            {"contract": "HSI-F", "quantity": 2, "account": "hk"},
            {"contract": "ES-M", "quantity": 5, "account": "spread"},
            {"contract": "IRON-F", "quantity": 25, "account": "hk"},
            {"contract": "ES-U", "quantity": -5, "account": "spread"},
            {"contract": "IRON-F", "quantity": 30, "account": "spread"},
            {"contract": "HSI-F", "quantity": -1, "account": "hk"},
        ],
        "grid": {"path": {"IRON": [800, 700, 650]}},
        "span": {
            "combined_commodities": {"ES": {"price_scan": 0.06, "vol_scan": 0.04, "intra_spreads": [spread]}}
        },
        "account": {
            "products": {
                "HSI-F": {"currency_group": "HK_", "margin": hsi, "fee_per_contract": 40},
                "IRON-F": iron,
            },
            "liquidation": {"fee_per_contract_usd": 2.0},
            "accounts": {
                "spread": {"cash": {"NonHK_": {"USD": 20_000}, "CN_": {"CNH": 330_000}}},
                "hk": {
                    "cash": {"NonHK_": {"USD": 60_000}, "HK_": {"HKD": 10_000}},
                    "instructions": [
                        {
                            "kind": "transfer",
                            "amount": 5_000,
                            "currency": "USD",
                            "from_group": "NonHK_",
                            "to_group": "CN_",
                        }
                    ],
                },
                "plain": {"cash": {"NonHK_": {"USD": 100_000}}},
                "spare": {"cash": {"HK_": {"HKD": 40_000}}},
            },
        },
    }


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
    lazy = run_lazy(method, scale.chunk(inputs, accounts=1, grid=grid))
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
    lazy_span = run_lazy("span", scale.chunk(span_in, accounts=accounts))
    lazy_pm = run_lazy("portfolio_margin", scale.chunk(pm_in, accounts=accounts))
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
    (got,) = scale.compute(run_lazy("cfd", scale.chunk(inputs, accounts=1)), scheduler="sync")
    assert_same(got, whole)


# ------------------------------------------------------------------------------------------------
# the account layer
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accounts", [1, 2, 3, 10])
def test_account_layer_chunked_equals_whole(accounts):
    inputs = load(_account_book())
    whole = account_margin(inputs)
    # what the book exercises: plans of several accounts, liquidation rows of two accounts
    # interleaved in the book, a funded account without positions, and a liquidation step that is
    # the whole book's (the first account alone is never in forced liquidation)
    assert whole["account"].values.tolist() == ["plain", "hk", "spread", "spare"]
    assert whole["liquidation_account"].values.tolist() == ["hk", "hk", "spread", "hk"]
    assert set(whole["movement_account"].values.tolist()) == {"hk", "spread"}
    assert whole.attrs["liquidation_point"] == "step=1"
    lazy = run_lazy("account", scale.chunk(inputs, accounts=accounts))
    assert all(v.chunks is not None for v in lazy.data_vars.values())
    (got,) = scale.compute(lazy, scheduler="sync")
    assert_same(got, whole)


def test_account_layer_chunked_with_injected_requirements():
    # requirements of some accounts (and a currency the book does not use): each chunk takes its own
    inputs = load(_account_book())
    shape = (2, 1, 1, 3)
    req = xr.Dataset(
        {
            "initial": (("account", "currency_group", "currency", "step"), np.full(shape, 1000.0)),
            "maintenance": (("account", "currency_group", "currency", "step"), np.full(shape, 800.0)),
        },
        coords={"account": ["hk", "spare"], "currency_group": ["NonHK_"], "currency": ["EUR"]},
    )
    whole = account_margin(inputs, requirements=req)
    lazy = run_lazy("account", scale.chunk(inputs, accounts=1), requirements=req)
    (got,) = scale.compute(lazy, scheduler="sync")
    assert_same(got, whole)
    bad = req.assign_coords(account=["hk", "nobody"])
    with pytest.raises(InputError, match="unknown accounts"):
        scale.compute(run_lazy("account", scale.chunk(inputs, accounts=1), requirements=bad), scheduler="sync")


@pytest.mark.parametrize("name", ["account_hk_margin_call.yaml", "account_forced_conversion.yaml"])
def test_account_scenarios_chunked_equal_whole(name):
    inputs = load(SCENARIOS / name)
    whole = account_margin(inputs)
    (got,) = scale.compute(run_lazy("account", scale.chunk(inputs, accounts=1)), scheduler="threads")
    assert_same(got, whole)


def test_account_layer_many_accounts():
    # chunks that hold different contracts and currencies
    base = load(_account_book())
    inputs = _many_accounts(base, 17, keep=["spread", "hk"])
    whole = account_margin(inputs)
    for accounts in (1, 4, 7):
        (got,) = scale.compute(run_lazy("account", scale.chunk(inputs, accounts=accounts)), scheduler="threads")
        assert_same(got, whole)


def test_account_json_is_identical_with_and_without_chunks(tmp_path, capsys):
    for name in ("account_hk_margin_call.yaml", "account_forced_conversion.yaml"):
        path = str(SCENARIOS / name)
        assert main(["margin", path, "--json"]) == 0
        plain = capsys.readouterr().out
        assert main(["margin", path, "--json", "--chunks", "1"]) == 0
        assert capsys.readouterr().out == plain
        stored = write_book(tmp_path / f"{name}.zarr", load(path))
        assert main(["margin", path, "--json", "--book", str(stored), "--chunks", "1"]) == 0
        assert capsys.readouterr().out == plain


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
    account = load(_account_book())
    account_stored = write_book(tmp_path / "account.zarr", account)
    with assert_lazy():
        for inputs in (scale.chunk(mixed, accounts=1), read_book(stored, mixed, accounts=1)):
            for method in ("span", "portfolio_margin", "cfd"):
                ds = run_lazy(method, inputs)
                assert all(v.chunks is not None for v in ds.data_vars.values())
        run_lazy("cfd", scale.chunk(paths, accounts=1, grid={"path": 500}))
        # the account layer, with a liquidation step reduced over the whole book
        for inputs in (scale.chunk(account, accounts=1), read_book(account_stored, account, accounts=2)):
            ds = run_lazy("account", inputs)
            assert all(v.chunks is not None for v in ds.data_vars.values())
        run_lazy("span", scale.chunk(grid, accounts=1, grid={"shift": 2}))
        run_lazy("portfolio_margin", scale.chunk(grid, accounts=1, grid={"shift": 2}))
    with pytest.raises(AssertionError, match="computed"), assert_lazy():
        run_lazy("span", scale.chunk(mixed, accounts=1))["maintenance"].values  # noqa: B018 - computes


def test_method_functions_refuse_lazy_inputs():
    # a method function runs in memory; marginsim.margin runs it chunk by chunk
    lazy_inputs = scale.chunk(load(SCENARIOS / "overview_mixed_book.yaml"), accounts=1)
    for run in (span_margin, portfolio_margin, cfd_margin, account_margin):
        with pytest.raises(InputError, match=r"marginsim\.margin"):
            run(lazy_inputs)


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


def test_netcdf_book_gives_the_same_json(tmp_path, capsys):
    # a .nc path is written and read as netCDF (scipy's netCDF-3 engine: no extra dependency)
    scenario = SCENARIOS / "overview_mixed_book.yaml"
    inputs = load(scenario)
    path = write_book(tmp_path / "book.nc", inputs, chunk_positions=4)
    assert path.is_file() and path.read_bytes()[:3] == b"CDF"
    book, universe = open_book(path, inputs.contracts, accounts=1)
    assert book["quantity"].chunks == ((7, 4),)
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
    lazy = run_lazy("span", read_book(tmp_path / "table.zarr", inputs, accounts=1))
    with pytest.raises(InputError, match="account table"):
        scale.compute(lazy, scheduler="sync")


def test_dask_book_without_account_table_is_an_input_error():
    inputs = load(SCENARIOS / "overview_mixed_book.yaml")
    chunked = replace(inputs, book=inputs.book.chunk(position=3))
    with pytest.raises(InputError, match="account table"):
        run_lazy("span", chunked)


def test_account_straddling_two_chunks_is_an_input_error():
    inputs = load(SCENARIOS / "overview_mixed_book.yaml")
    lazy = scale.chunk(inputs, accounts=1)
    book = lazy.book.copy()
    for name in ("contract_index", "quantity", "account_index"):
        book[name] = book[name].chunk(position=(5, 6))  # account main has 7 positions
    with pytest.raises(InputError, match="straddles"):
        run_lazy("span", replace(lazy, book=book))


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


@pytest.mark.slow
def test_local_cluster_equals_in_memory_to_the_cent(client):
    from distributed import get_task_stream

    span_in = _many_accounts(load(SCENARIOS / "span_inter_commodity.yaml"), 12)
    pm_in = load(SCENARIOS / "pm_diversified_large_cap.yaml")
    cfd_in = load(SCENARIOS / "cfd_retail_book.yaml")  # Monte Carlo: 2000 paths x 21 steps
    acct_in = load(_account_book())
    lazy = (
        run_lazy("span", scale.chunk(span_in, accounts=5, grid={"shift": 2})),
        run_lazy("portfolio_margin", scale.chunk(pm_in, accounts=1)),
        run_lazy("cfd", scale.chunk(cfd_in, accounts=1, grid={"path": 1000})),
        run_lazy("account", scale.chunk(acct_in, accounts=1)),
    )
    with get_task_stream(client) as ts:
        got = scale.compute(*lazy)  # the connected client is dask's scheduler
    workers = {t["worker"] for t in ts.data}
    assert len(workers) == 2  # both workers ran tasks
    wants = (span_margin(span_in), portfolio_margin(pm_in), cfd_margin(cfd_in), account_margin(acct_in))
    for g, want in zip(got, wants, strict=True):
        assert_same(g, want)


@pytest.mark.slow
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
