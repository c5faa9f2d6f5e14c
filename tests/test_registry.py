"""The registry: a method defined outside the package (``examples/flat_rate``, the README's "Writing a
method"), registered with one call or through the ``marginsim.methods`` entry-point group, runs through
``marginsim.margin``, the JSON contract, the CLI and chunked (dask) runs like the built-in ones."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import xarray as xr
import yaml

import marginsim
from marginsim import scale
from marginsim.cli import main
from marginsim.registry import REGISTRY, MethodSpec, register_method, unregister_method
from marginsim.testing import check_method

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))  # the README's "Writing a method" example: a package outside marginsim

import flat_rate  # noqa: E402

RATE = 0.10


@pytest.fixture
def flat():
    spec = register_method(flat_rate.SPEC)
    yield spec
    unregister_method("flat_rate")


SCENARIO = "scenarios/pm_diversified_large_cap.yaml"


def _expected(inputs, rate=RATE):
    """rate x sum of |quantity| x multiplier x price x FX, computed position by position."""
    sc = inputs.scenario
    out = {}
    for p in sc.positions:
        c = sc.contracts[p.contract]
        u = sc.market[c.underlying]
        fx = sc.fx_rate(u.currency or sc.currency)
        price = c.price if c.type == "future" and c.price is not None else u.price  # a futures settlement
        out[p.account] = out.get(p.account, 0.0) + rate * abs(p.quantity) * c.multiplier * price * fx
    return out


def test_registered_method_runs_through_margin_and_json(flat, scenarios_dir):
    inputs = marginsim.load(scenarios_dir.parent / SCENARIO)
    res = marginsim.margin(inputs, methods=["flat_rate"])
    want = _expected(inputs)
    got = res.to_dict()["accounts"]
    assert set(got) == set(want)
    for a, v in want.items():
        assert got[a]["flat_rate"]["maintenance"] == pytest.approx(v, rel=1e-12)


def test_registered_method_runs_chunk_by_chunk(flat, scenarios_dir):
    inputs = marginsim.load(scenarios_dir.parent / SCENARIO)
    whole = marginsim.margin(inputs, methods=["flat_rate"])["flat_rate"]
    lazy = marginsim.margin(scale.chunk(inputs, accounts=1), methods=["flat_rate"], compute=False)[
        "flat_rate"
    ]
    assert lazy["maintenance"].chunks is not None
    xr.testing.assert_allclose(whole["maintenance"], lazy["maintenance"].compute())


def test_registered_method_on_the_cli(flat, scenarios_dir, capsys):
    path = str(scenarios_dir.parent / SCENARIO)
    assert main(["margin", path, "--method", "flat_rate", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["accounts"]
    want = _expected(marginsim.load(path))
    assert {a: v["flat_rate"]["maintenance"] for a, v in got.items()} == pytest.approx(want, rel=1e-12)
    assert main(["margin", path, "--method", "flat_rate"]) == 0
    out = capsys.readouterr().out
    account = next(iter(want))
    assert f"FLAT RATE  account {account}  [USD]" in out
    assert f"maintenance{want[account]:>39,.2f}" in out


def test_a_second_method_of_the_same_name_is_refused(flat):
    other = MethodSpec("flat_rate", flat_rate.flat_rate_margin, flat_rate.FlatRateParams)
    with pytest.raises(ValueError, match="already registered"):
        register_method(other)
    assert register_method(other, replace=True) is other
    assert REGISTRY["flat_rate"] is other


def test_unknown_method_is_an_input_error(scenarios_dir):
    with pytest.raises(marginsim.InputError, match="not available .*span"):
        marginsim.margin(scenarios_dir / "span_seed_example.yaml", methods=["nope"])


def test_a_registered_method_has_its_scenario_section(flat, scenarios_dir):
    data = {"name": "s", "as_of": "2026-01-05", "flat_rate": {"rate": 0.2}, "methods": ["flat_rate", "span"]}
    sc = marginsim.parse_scenario(data)
    assert sc.flat_rate.rate == 0.2 and sc.methods == ["flat_rate", "span"]
    with pytest.raises(marginsim.InputError) as err:
        marginsim.parse_scenario({**data, "flat_rate": {"rat": 0.2}})
    assert err.value.key_path == "flat_rate.rat" and "unknown key" in str(err.value)
    with pytest.raises(marginsim.InputError) as err:
        marginsim.parse_scenario({**data, "flat_rate": {"rate": -1}})
    assert err.value.key_path == "flat_rate.rate"
    schema = json.loads(marginsim.scenario.scenario_json_schema())
    assert "flat_rate" in schema["properties"]
    assert "flat_rate" in schema["properties"]["methods"]["anyOf"][0]["items"]["enum"]


def test_the_section_sets_the_rate_and_the_grid_broadcasts(flat, scenarios_dir):
    data = yaml.safe_load((scenarios_dir / "span_inter_commodity.yaml").read_text())
    data.update(flat_rate={"rate": 0.2}, grid={"shift": [-0.1, 0.0, 0.1]})
    ds = marginsim.margin(data, methods=["flat_rate"])["flat_rate"]
    base = _expected(marginsim.load({**data, "grid": None}), rate=0.2)
    for a, v in base.items():
        got = ds["maintenance"].sel(account=a)
        assert got.sel(shift=0.0).item() == pytest.approx(v, rel=1e-12)
        # every price moves by the shift: so does the notional of futures without a given price
        assert got.sel(shift=0.1).item() > v > got.sel(shift=-0.1).item()
    assert ds["maintenance"].attrs["units"] == ds["maintenance"].attrs["currency"] == "USD"


def test_the_example_keeps_the_method_contract(flat, scenarios_dir):
    data = yaml.safe_load((scenarios_dir / "overview_mixed_book.yaml").read_text())
    check_method("flat_rate", data)


def test_an_installed_package_registers_through_the_entry_point_group(tmp_path, scenarios_dir):
    # a distribution on sys.path whose entry point names examples/flat_rate's spec
    dist = tmp_path / "flat_rate_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flat-rate-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[marginsim.methods]\nflat_rate = flat_rate:SPEC\n")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(EXAMPLES)!r}]
        from marginsim.cli import main
        sys.exit(main(["margin", {str(scenarios_dir / "overview_mixed_book.yaml")!r}, "--method", "flat_rate", "--json"]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["accounts"]
    want = _expected(marginsim.load(scenarios_dir / "overview_mixed_book.yaml"))
    assert {a: v["flat_rate"]["maintenance"] for a, v in got.items()} == pytest.approx(want, rel=1e-12)


def test_an_unregistered_method_section_is_an_unknown_key():
    data = {"name": "s", "as_of": "2026-01-05", "flat": {"rate": 0.2}}
    with pytest.raises(marginsim.InputError) as err:
        marginsim.parse_scenario(data)
    assert err.value.key_path == "flat" and "unknown key" in str(err.value)
    with pytest.raises(marginsim.InputError) as err:
        marginsim.parse_scenario({"name": "s", "as_of": "2026-01-05", "methods": ["flat_rate"]})
    assert err.value.key_path == "methods[0]"


def test_a_scenario_pickles_by_value_with_its_sections(scenarios_dir):
    import pickle

    sc = marginsim.load_scenario(scenarios_dir / "span_seed_example.yaml")
    back = pickle.loads(pickle.dumps(sc))
    assert back == sc and back.file == sc.file and back.span == sc.span
