"""Portfolio margin's result variables are declared once (methods/portfolio_margin/outputs.py):
every data variable of a result is declared, carries its units, and a money variable's currency
is the scenario's reporting currency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import marginsim
from marginsim.methods.portfolio_margin import OUTPUTS, SPEC
from marginsim.outputs import undeclared

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted((ROOT / "scenarios").glob("pm_*.yaml"))


def _eur_with_grid() -> dict:
    """A bundled book in EUR (FX for its USD underlyings) over a grid of shifts and scan scales."""
    sc = yaml.safe_load((ROOT / "scenarios" / "pm_diversified_large_cap.yaml").read_text())
    sc["currency"] = "EUR"
    sc["fx"] = {"USD": 0.9}
    sc["grid"] = {"shift": [-0.1, 0.0, 0.1], "price_scan_scale": [1.0, 1.5]}
    return sc


CASES = [pytest.param(str(p), id=p.stem) for p in BUNDLED] + [pytest.param(_eur_with_grid(), id="eur-grid")]


@pytest.mark.parametrize("scenario", CASES)
def test_every_result_variable_is_declared_with_units(scenario):
    result = marginsim.margin(scenario, methods=["portfolio_margin"])
    ds = result["portfolio_margin"]
    currency = result.inputs.scenario.currency
    assert undeclared(ds, OUTPUTS) == []
    declared = {o.name: o for o in OUTPUTS}
    for name, da in ds.data_vars.items():
        out = declared[name]
        assert da.attrs.get("description") == out.description, name
        # the declared dims come first; the grid dims may follow
        assert da.dims[: len(out.dims)] == out.dims, name
        assert set(da.dims[len(out.dims) :]) <= set(result.grid_dims), name
        if da.dtype.kind in "fiu":
            assert da.attrs.get("units"), f"{name} has no units"
        else:  # labels and flags: no units
            assert out.units == "", name
        if out.is_money:
            assert da.attrs["units"] == currency, name
            assert da.attrs["currency"] == currency, name
        else:
            assert "currency" not in da.attrs, name


def test_money_variables_are_declared_in_the_reporting_currency():
    money = {o.name for o in OUTPUTS if o.is_money}
    assert {"maintenance", "initial", "scan_loss", "group_scan", "single_name_loss", "equity"} <= money
    assert not money & {"delta_shares", "adv_multiple", "initial_ratio", "group_fx", "price_move"}


def test_the_spec_declares_the_outputs_and_the_json_keys():
    assert SPEC.outputs is OUTPUTS
    assert SPEC.output("concentration_driver").json_key == "concentration_drivers"
    ds = marginsim.margin(str(BUNDLED[0]), methods=["portfolio_margin"])["portfolio_margin"]
    obj = next(iter(SPEC.to_dict(ds, []).values()))
    keys = [o.json_key for o in OUTPUTS if o.json == "account"]
    assert [k for k in obj if k in keys] == keys
    assert list(obj["components"]) == [o.json_key for o in OUTPUTS if o.json == "account.components"]
    cg = next(iter(obj["class_groups"].values()))
    assert [k for k in cg if k in {o.json_key for o in OUTPUTS if o.json == "class_group"}] == [
        o.json_key for o in OUTPUTS if o.json == "class_group"
    ]
    assert np.isfinite(obj["maintenance"])
