"""Every variable of a SPAN result is declared (marginsim.methods.span.OUTPUTS) and carries its
units; a money variable in the reporting currency carries the scenario's currency."""

from __future__ import annotations

import pytest
import yaml

import marginsim
from marginsim.methods.span import OUTPUTS, SPEC, span_margin
from marginsim.methods.span.outputs import OPTIONAL
from marginsim.outputs import CURRENCY, undeclared

# flags and labels: no units (the convention of marginsim.outputs.Output), named here so that a new
# variable cannot go without units unnoticed
WITHOUT_UNITS = {"held", "group_currency", "contract_currency", "rate_class"}


def _check(ds, currency):
    assert undeclared(ds, OUTPUTS) == []
    declared = {o.name: o for o in OUTPUTS}
    for name in ds.data_vars:
        out = declared[name]
        attrs = ds[name].attrs
        assert attrs["description"] == out.description
        if name in WITHOUT_UNITS:
            assert out.units == "" and "units" not in attrs, name
            continue
        assert attrs.get("units"), f"{name} has no units"
        if out.units == CURRENCY:
            assert attrs["units"] == currency and attrs["currency"] == currency, name
        elif out.is_money:  # amounts in another currency: the variable that names it is in the result
            assert attrs["currency"] == out.units.split(" per ")[0], name
            assert ("contract_currency" in out.units) <= ("contract_currency" in ds), name
        else:
            assert "currency" not in attrs, name


@pytest.mark.parametrize(
    "name", ["span_seed_example.yaml", "span_calendar_spread.yaml", "span_inter_commodity.yaml"]
)
@pytest.mark.parametrize("scan_loss", [True, False])
def test_every_variable_is_declared_with_units(scenarios_dir, name, scan_loss):
    inputs = marginsim.load(scenarios_dir / name)
    ds = span_margin(inputs, scan_loss=scan_loss)
    assert ("scan_loss" in ds) is scan_loss
    _check(ds, inputs.scenario.currency)


def test_chunked_result_keeps_the_attrs(scenarios_dir):
    """Through marginsim.margin, chunk by chunk of accounts: the same attrs."""
    result = marginsim.margin(scenarios_dir / "span_inter_commodity.yaml", methods=["span"], chunks=1)
    _check(result.methods["span"], result.inputs.scenario.currency)


def test_clearing_house_file_in_its_currency(shared_dir, scenarios_dir):
    inputs = marginsim.load(scenarios_dir / "span_takasbank.yaml")
    ds = span_margin(inputs)
    assert inputs.scenario.currency == "TRY"
    _check(ds, "TRY")


def test_every_declared_json_section_is_written(scenarios_dir):
    """The JSON keys of each section come from the declaration, in its order."""
    result = marginsim.margin(scenarios_dir / "span_inter_commodity.yaml", methods=["span"])
    obj = next(iter(result.to_dict()["accounts"].values()))["span"]
    account_keys = [o.json_key for o in OUTPUTS if o.json == "account" and o.name not in OPTIONAL]
    contract_keys = [o.json_key for o in OUTPUTS if o.json == "contract"]
    assert list(obj) == account_keys + ["groups"] + contract_keys
    group = next(iter(obj["groups"].values()))
    assert list(group) == [o.json_key for o in OUTPUTS if o.json == "group" and o.name not in OPTIONAL]


def test_optional_outputs_are_written_in_their_declared_place(scenarios_dir):
    """With super spreads and an exposure margin, their outputs join the JSON in declaration order."""
    sc = yaml.safe_load((scenarios_dir / "span_inter_commodity.yaml").read_text())
    span = sc["span"]
    span["super_spreads"], span["inter_spreads"] = span["inter_spreads"], []
    span["exposure_margin"] = {"futures": 0.01}
    result = marginsim.margin(sc, methods=["span"])
    obj = next(iter(result.to_dict()["accounts"].values()))["span"]
    account_keys = [o.json_key for o in OUTPUTS if o.json == "account"]
    assert list(obj)[: len(account_keys)] == account_keys
    group = next(iter(obj["groups"].values()))
    assert list(group) == [o.json_key for o in OUTPUTS if o.json == "group"]
    assert SPEC.outputs == OUTPUTS
