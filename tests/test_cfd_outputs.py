"""Every variable of a CFD result is declared (methods/cfd/variables.py) and carries its units.

On the bundled retail book (a retail and a professional account, CFD and stock positions, Monte
Carlo paths, a new order along the path), in its currency and in another, in one piece and
chunked along accounts (the attrs survive a chunked run).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import marginsim
from marginsim.methods.cfd import OUTPUTS, SPEC, cfd_margin
from marginsim.outputs import CURRENCY, undeclared

ROOT = Path(__file__).resolve().parents[1]


def _book(currency: str) -> dict:
    data = yaml.safe_load((ROOT / "scenarios" / "cfd_retail_book.yaml").read_text())
    data["grid"]["monte_carlo"]["paths"] = 6
    if currency == "USD":  # report in USD: EUR and GBP get rates against it
        data["currency"] = "USD"
        data["fx"] = {"EUR": 1.08, "GBP": 1.26}
    return data


def test_the_spec_declares_each_output_once():
    assert SPEC.outputs == OUTPUTS
    names = [o.name for o in OUTPUTS]
    assert len(names) == len(set(names))
    assert all(o.description for o in OUTPUTS)


@pytest.mark.parametrize("chunks", [None, 1], ids=["whole", "chunked"])
@pytest.mark.parametrize("currency", ["EUR", "USD"])
def test_every_variable_is_declared_and_has_units(currency, chunks):
    ds = marginsim.margin(_book(currency), "cfd", chunks=chunks)["cfd"]
    assert set(ds["client"].values.tolist()) == {"retail", "professional"}
    assert "path" in ds.dims and "close_out_probability" in ds
    assert ds.attrs["currency"] == currency
    assert not undeclared(ds, OUTPUTS), "result variables missing from methods/cfd/variables.py"
    for out in OUTPUTS:
        assert out.name in ds, f"{out.name} declared but not in the result"
        attrs = ds[out.name].attrs
        assert attrs.get("description"), out.name
        if out.units:  # "" marks a label or a flag
            assert attrs.get("units"), out.name
        else:
            assert ds[out.name].dtype.kind in "bO", f"{out.name}: a number without units"
        if out.is_money:
            assert attrs["currency"] == currency, out.name
        if out.units == CURRENCY:
            assert attrs["units"] == currency, out.name
    for name in ("cash", "position_initial", "cfd_cash_start", "concentration_loss", "written_off_q99"):
        assert ds[name].attrs["currency"] == currency


def test_the_method_function_describes_its_result():
    inputs = marginsim.margin(_book("EUR"), "cfd").inputs
    ds = cfd_margin(inputs)
    assert not undeclared(ds, OUTPUTS)
    assert ds["equity"].attrs == {
        "units": "EUR",
        "currency": "EUR",
        "description": SPEC.output("equity").description,
    }
    assert "30%" in ds["concentration_loss"].attrs["description"]  # the file's stress, spelled out
