"""Every result variable of the account layer is declared (marginsim.methods.account.OUTPUTS) and
carries its units: money its currency, ratios and counts their unit; labels, flags, codes and
local times are declared with units "" and are never floats."""

from __future__ import annotations

import pytest
import xarray as xr
import yaml
from test_account import CALL, CONV, GOOD, LIQUIDATION_BOOK, _stock_sc, mixed

import marginsim
from marginsim.methods.account import OUTPUTS, account_margin
from marginsim.model import GRID_DIMS
from marginsim.outputs import BASE_CURRENCY, CURRENCY, undeclared
from marginsim.registry import REGISTRY

DECLARED = {o.name: o for o in OUTPUTS}


def _results() -> dict[str, xr.Dataset]:
    liq = mixed(LIQUIDATION_BOOK, cash={"a0": 1_000.0, "a2": 1_000.0})
    return {
        "margin call": account_margin(marginsim.load(CALL)),
        "forced conversion": account_margin(marginsim.load(CONV)),
        "foreign stock": account_margin(marginsim.load(_stock_sc({**GOOD, "failing_since": "2026-03-03"}))),
        "forced liquidation": marginsim.margin(liq, methods=["account"])["account"],
    }


RESULTS = _results()


def test_outputs_are_declared_once():
    assert len(DECLARED) == len(OUTPUTS)


@pytest.mark.parametrize("case", list(RESULTS))
def test_every_variable_is_declared_with_its_dims(case):
    ds = RESULTS[case]
    assert undeclared(ds, OUTPUTS) == []
    for name, v in ds.data_vars.items():
        out = DECLARED[str(name)]
        assert set(out.dims) <= set(v.dims), (name, out.dims, v.dims)
        assert set(v.dims) - set(out.dims) <= set(GRID_DIMS), (name, v.dims)


@pytest.mark.parametrize("case", list(RESULTS))
def test_every_variable_has_units_and_a_description(case):
    ds = RESULTS[case]
    for name, v in ds.data_vars.items():
        out = DECLARED[str(name)]
        assert v.attrs.get("description"), name
        if out.units:
            assert "{" not in v.attrs["units"], (name, v.attrs["units"])
        else:  # a label, a flag, a code or a local time: never a float amount
            assert "units" not in v.attrs, name
            assert v.dtype.kind in "biuOMU", (name, v.dtype)


@pytest.mark.parametrize("case", list(RESULTS))
def test_money_has_its_currency(case):
    ds = RESULTS[case]
    for name, v in ds.data_vars.items():
        out = DECLARED[str(name)]
        if out.units == CURRENCY:
            assert v.attrs["units"] == v.attrs["currency"] == ds.attrs["currency"], name
        elif out.units == BASE_CURRENCY:
            assert v.attrs["units"] == v.attrs["currency"] == ds.attrs["base_currency"], name
        elif out.is_money:  # amounts per currency coordinate, or in a currency fixed by the rules (USD)
            assert v.attrs["currency"] == out.units.split(" per ")[0].format(**ds.attrs), name
        else:
            assert "currency" not in v.attrs, name
        if v.dtype.kind == "f" and not out.is_money:  # ratios, counts, prices and FX rates
            assert out.units in (
                "1", "contracts", "price units", "days per year", "target units per source unit", "{base_currency} per unit"
            ), name


def test_every_declared_output_is_made():
    made = set().union(*(set(map(str, ds.data_vars)) for ds in RESULTS.values()))
    assert set(DECLARED) - made == set()


def test_amounts_in_the_reporting_currency_when_the_base_differs():
    # available funds after liquidation are in the reporting currency whether or not a plan is made
    sc = yaml.safe_load(CALL.read_text())
    sc["account"]["base_currency"] = "HKD"
    ds = account_margin(marginsim.load(sc))
    assert ds.attrs["base_currency"] == "HKD" and ds.attrs["currency"] == "USD"
    point = {k: int(v) for k, v in (p.split("=") for p in ds.attrs["liquidation_point"].split(", "))}
    assert not bool(ds["liquidation_needed"].item())
    want = (ds["equity"] - ds["initial"]).isel(point).item()
    assert ds["available_after_liquidation"].item() == pytest.approx(want)
    assert ds["total_base"].isel(point).item() == pytest.approx(ds["equity"].isel(point).item() / 0.1282)


def test_json_keys_follow_the_declaration():
    ds = RESULTS["forced liquidation"]
    obj = next(iter(REGISTRY["account"].to_dict(ds, []).values()))

    def keys(section):
        return [o.json_key for o in OUTPUTS if o.json == section]

    nested = {"currency_groups", "forced_conversions", "base_currency", "initial_by_source", "conversion_plan"}
    nested |= {"liquidation", "interest", "eligibility"}
    assert [k for k in obj if k not in nested] == keys("account")
    assert list(obj["initial_by_source"]) == keys("initial_by_source")
    assert list(obj["conversion_plan"]) == ["point", *keys("conversion_plan")]
    assert list(obj["liquidation"]) == ["point", *keys("liquidation"), "positions"]
    assert obj["liquidation"]["positions"]
    assert all(list(row) == keys("liquidation.positions") for row in obj["liquidation"]["positions"])
    assert list(obj["interest"]) == [*keys("interest"), "currencies"]
    assert list(obj["eligibility"])[:-1] == keys("eligibility")
    for group in obj["currency_groups"].values():
        assert list(group) == [*keys("currency_group"), "currencies"]
        assert all(list(c) == keys("currency") for c in group["currencies"].values())
