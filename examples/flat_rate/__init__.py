"""A margin method defined outside marginsim: a flat rate of each account's gross notional."""

from __future__ import annotations

import numpy as np
import xarray as xr
from pydantic import Field

import marginsim
from marginsim.outputs import CURRENCY, Output, describe
from marginsim.params import StrictModel
from marginsim.registry import MethodSpec


class FlatRateParams(StrictModel):
    """The scenario file's ``flat_rate:`` section."""

    rate: float = Field(0.10, ge=0, description="Margin per unit of gross notional [fraction].")


OUTPUTS = (
    Output("notional", ("account",), CURRENCY, "sum of |quantity| x multiplier x price x FX", json="account"),
    Output("maintenance", ("account",), CURRENCY, "rate x gross notional", json="account"),
    Output("rate", (), "fraction of notional", "the flat rate applied"),
)


def flat_rate_margin(inputs: marginsim.Inputs, engine: str = "auto") -> xr.Dataset:
    """Margin = rate x gross notional [reporting currency], per account and grid point."""
    params = inputs.scenario.section("flat_rate") or FlatRateParams()
    book, contracts = inputs.book, inputs.contracts
    # |quantity| x multiplier per (account, contract): the book in one pass, no loop over positions
    k = book["contract_index"].values
    units = np.zeros((len(inputs.accounts), contracts.sizes["contract"]))
    np.add.at(
        units,
        (book["account_index"].values, k),
        np.abs(book["quantity"].values) * contracts["multiplier"].values[k],
    )
    fx = inputs.market["fx"].isel(underlying=contracts["underlying_index"]).drop_vars("underlying")
    level = inputs.underlying_level() * fx  # (contract, grid dims) [reporting currency per unit]
    notional = xr.dot(xr.DataArray(units, dims=("account", "contract")), level, dim="contract")
    ds = xr.Dataset(
        {"notional": notional, "maintenance": params.rate * notional, "rate": params.rate},
        coords={"account": np.asarray(inputs.accounts, dtype=object)},
        attrs={"method": "flat_rate", "currency": inputs.scenario.currency},
    )
    return describe(ds, OUTPUTS)


SPEC = MethodSpec("flat_rate", flat_rate_margin, FlatRateParams, outputs=OUTPUTS)
