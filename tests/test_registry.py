"""The registry: a method defined outside the package, registered with one call, runs through
``marginsim.margin``, the JSON contract, the CLI and chunked (dask) runs like the built-in ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import marginsim
from marginsim import scale
from marginsim.cli import main
from marginsim.params import StrictModel
from marginsim.registry import REGISTRY, MethodSpec, register_method, unregister_method

RATE = 0.10


class FlatParams(StrictModel):
    rate: float = RATE


def flat_margin(inputs: marginsim.Inputs, engine: str = "auto") -> xr.Dataset:
    """10 % of each account's gross notional (|quantity| x multiplier x underlying price x FX)."""
    book, contracts, market = inputs.book, inputs.contracts, inputs.market
    k = book["contract_index"].values
    und = contracts["underlying_index"].values[k]
    price = market["price"].values[und] * market["fx"].values[und]
    notional = np.abs(book["quantity"].values) * contracts["multiplier"].values[k] * price
    accounts = inputs.accounts
    req = np.bincount(book["account_index"].values, weights=notional, minlength=len(accounts))
    ccy = inputs.scenario.currency
    return xr.Dataset(
        {
            "notional": ("account", req, {"units": ccy, "description": "gross notional"}),
            "maintenance": ("account", RATE * req, {"units": ccy, "description": "10 % of notional"}),
        },
        coords={"account": np.asarray(accounts, dtype=object)},
    )


def flat_to_dict(ds: xr.Dataset, grid_dims: list[str]) -> dict:
    return {str(a): {"maintenance": float(ds["maintenance"].sel(account=a))} for a in ds["account"].values}


def flat_table(ds: xr.Dataset, account: str) -> str:
    return f"flat [{account}]: maintenance {float(ds['maintenance'].sel(account=account)):,.2f}"


@pytest.fixture
def flat():
    spec = register_method(
        MethodSpec("flat", flat_margin, FlatParams, flat_to_dict, flat_table, lambda sc: False)
    )
    yield spec
    unregister_method("flat")


SCENARIO = "scenarios/pm_diversified_large_cap.yaml"


def _expected(inputs):
    sc = inputs.scenario
    out = {}
    for p in sc.positions:
        c = sc.contracts[p.contract]
        u = sc.market[c.underlying]
        fx = sc.fx_rate(u.currency or sc.currency)
        out[p.account] = out.get(p.account, 0.0) + RATE * abs(p.quantity) * c.multiplier * u.price * fx
    return out


def test_registered_method_runs_through_margin_and_json(flat, scenarios_dir):
    inputs = marginsim.load(scenarios_dir.parent / SCENARIO)
    res = marginsim.margin(inputs, methods=["flat"])
    want = _expected(inputs)
    got = res.to_dict()["accounts"]
    assert set(got) == set(want)
    for a, v in want.items():
        assert got[a]["flat"]["maintenance"] == pytest.approx(v, rel=1e-12)


def test_registered_method_runs_chunk_by_chunk(flat, scenarios_dir):
    inputs = marginsim.load(scenarios_dir.parent / SCENARIO)
    whole = marginsim.margin(inputs, methods=["flat"])["flat"]
    lazy = marginsim.margin(scale.chunk(inputs, accounts=1), methods=["flat"], compute=False)["flat"]
    assert lazy["maintenance"].chunks is not None
    xr.testing.assert_allclose(whole["maintenance"], lazy["maintenance"].compute())


def test_registered_method_on_the_cli(flat, scenarios_dir, capsys):
    path = str(scenarios_dir.parent / SCENARIO)
    assert main(["margin", path, "--method", "flat", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["accounts"]
    want = _expected(marginsim.load(path))
    assert {a: v["flat"]["maintenance"] for a, v in got.items()} == pytest.approx(want, rel=1e-12)
    assert main(["margin", path, "--method", "flat"]) == 0
    assert "flat [" in capsys.readouterr().out


def test_a_second_method_of_the_same_name_is_refused(flat):
    other = MethodSpec("flat", flat_margin, FlatParams, flat_to_dict, flat_table, lambda sc: False)
    with pytest.raises(ValueError, match="already registered"):
        register_method(other)
    assert register_method(other, replace=True) is other
    assert REGISTRY["flat"] is other


def test_unknown_method_is_an_input_error(scenarios_dir):
    with pytest.raises(marginsim.InputError, match="not available .*span"):
        marginsim.margin(scenarios_dir / "span_seed_example.yaml", methods=["nope"])


def test_a_registered_method_has_its_scenario_section(flat, scenarios_dir):
    data = {"name": "s", "as_of": "2026-01-05", "flat": {"rate": 0.2}, "methods": ["flat", "span"]}
    sc = marginsim.parse_scenario(data)
    assert sc.flat.rate == 0.2 and sc.methods == ["flat", "span"]
    with pytest.raises(marginsim.InputError) as err:
        marginsim.parse_scenario({**data, "flat": {"rat": 0.2}})
    assert err.value.key_path == "flat.rat" and "unknown key" in str(err.value)
    schema = json.loads(marginsim.scenario.scenario_json_schema())
    assert "flat" in schema["properties"]
    assert "flat" in schema["properties"]["methods"]["anyOf"][0]["items"]["enum"]


def test_an_unregistered_method_section_is_an_unknown_key():
    data = {"name": "s", "as_of": "2026-01-05", "flat": {"rate": 0.2}}
    with pytest.raises(marginsim.InputError) as err:
        marginsim.parse_scenario(data)
    assert err.value.key_path == "flat" and "unknown key" in str(err.value)
    with pytest.raises(marginsim.InputError) as err:
        marginsim.parse_scenario({"name": "s", "as_of": "2026-01-05", "methods": ["flat"]})
    assert err.value.key_path == "methods[0]"


def test_a_scenario_pickles_by_value_with_its_sections(scenarios_dir):
    import pickle

    sc = marginsim.load_scenario(scenarios_dir / "span_seed_example.yaml")
    back = pickle.loads(pickle.dumps(sc))
    assert back == sc and back.file == sc.file and back.span == sc.span
