"""Every variable of a CFD result, declared once (:class:`~marginsim.outputs.Output`).

Their ``units``, ``currency`` and ``description`` attrs, the keys of the JSON contract and the
order of those keys come from :data:`OUTPUTS`. ``json`` sections: ``"account"`` (a key of the
account's ``cfd`` object; ``close_step`` and ``rejected`` go there as the lists of positions
closed and rejected at each grid point), ``"position"`` (a key of each entry of its
``positions``), ``"concentration"`` and ``"paths"`` (its sub-objects).

Amounts are in the reporting currency (:data:`~marginsim.outputs.CURRENCY`); units ``""`` mark a
label or a flag.
"""

from __future__ import annotations

import xarray as xr

from ...outputs import CURRENCY, Output, describe

__all__ = ["OUTPUTS", "PATH_STATISTICS", "describe_result"]

_A = ("account",)
_P = ("position",)
_RATE = "fraction of notional"

OUTPUTS: tuple[Output, ...] = (
    # per account and grid point, on arrival at the step (before its close-out)
    Output(
        "initial", _A, CURRENCY, "initial margin of the open CFD positions, fixed at opening", json="account"
    ),
    Output(
        "maintenance",
        _A,
        CURRENCY,
        "maintenance margin of the open CFD positions, fixed at opening (close-out level)",
        json="account",
    ),
    Output(
        "cash",
        _A,
        CURRENCY,
        "CFD cash on arrival at the step (after financing), before its close-out",
        json="account",
    ),
    Output(
        "equity",
        _A,
        CURRENCY,
        "cash + unrealised CFD pnl (both signs), before the step's close-out",
        json="account",
    ),
    Output("unrealised", _A, CURRENCY, "unrealised pnl of the open CFD positions", json="account"),
    Output(
        "available_cash",
        _A,
        CURRENCY,
        "cash available to open CFD positions: max(min(cash, equity) - initial, 0)",
        json="account",
    ),
    Output("deficiency", _A, "", "equity below maintenance with positions open: close-out", json="account"),
    Output(
        "close_step",
        _P,
        "step",
        "step of the close-out (-1: not closed); JSON: the positions closed at each grid point",
        json="account",
        key="close_out",
    ),
    Output(
        "written_off",
        _A,
        CURRENCY,
        "loss written off by negative balance protection at the step",
        json="account",
    ),
    Output("value", _A, CURRENCY, "signed value of the CFD positions open on arrival", json="account"),
    Output(
        "financing",
        _A,
        CURRENCY,
        "overnight financing charged on arrival at the step (negative: received)",
        json="account",
    ),
    Output("realised", _A, CURRENCY, "pnl realised by the step's close-out (cash at once)", json="account"),
    Output("cash_after", _A, CURRENCY, "cash after the step's close-out and write-off", json="account"),
    Output("equity_after", _A, CURRENCY, "equity after the step's close-out and write-off", json="account"),
    Output("open_positions", _A, "positions", "open CFD positions on arrival", json="account"),
    Output("closed_positions", _A, "positions", "CFD positions closed out so far", json="account"),
    Output(
        "rejected",
        _P,
        "",
        "new order rejected: initial margin above available cash; JSON: the orders rejected at each grid point",
        json="account",
    ),
    Output("client", _A, "", "client category: retail or professional", json="account"),
    Output(
        "negative_balance_protection",
        _A,
        "",
        "losses beyond the account's cash are written off (retail clients)",
        json="account",
    ),
    Output("cfd_cash_start", _A, CURRENCY, "cash less other products' initial margin, >= 0", json="account"),
    # per CFD position (the JSON's positions, keyed by position number)
    Output("position_account", _P, "", "account holding the position"),
    Output("position_contract", _P, "", "contract of the position", json="position", key="contract"),
    Output("position_underlying", _P, "", "underlying of the position", json="position", key="underlying"),
    Output("cfd_class", _P, "", "leverage class of the underlying (a key of cfd.leverage)", json="position"),
    Output("quantity", _P, "contracts", "signed quantity (long positive)", json="position"),
    Output(
        "opened", _P, "", "time the order was placed (ISO 8601; empty: held before the path)", json="position"
    ),
    Output(
        "new_order",
        _P,
        "",
        "a new order placed along the path (opened at or after the first step)",
        json="position",
    ),
    Output("open_step", _P, "step", "step the position opens at (0: held at the start)", json="position"),
    Output(
        "regulatory_initial_rate",
        _P,
        _RATE,
        "1 / retail leverage cap of the class (0: professional client)",
        json="position",
    ),
    Output("broker_initial_rate", _P, _RATE, "the broker's own initial rate", json="position"),
    Output("broker_maintenance_rate", _P, _RATE, "the broker's own maintenance rate", json="position"),
    Output("initial_rate", _P, _RATE, "applied initial rate", json="position"),
    Output("maintenance_rate", _P, _RATE, "applied maintenance rate (close-out level)", json="position"),
    Output(
        "financing_rate",
        _P,
        "decimal per year",
        "overnight financing rate charged on the notional (benchmark signed by side + spreads)",
        json="position",
    ),
    Output(
        "open_price", _P, "price units", "price the position opened at (NaN: not opened)", json="position"
    ),
    Output(
        "position_initial",
        _P,
        CURRENCY,
        "initial margin of the position, fixed at opening",
        json="position",
        key="initial",
    ),
    Output(
        "position_maintenance",
        _P,
        CURRENCY,
        "maintenance margin of the position, fixed at opening",
        json="position",
        key="maintenance",
    ),
    Output("position_realised", _P, CURRENCY, "pnl realised by the position's close-out"),
    Output(
        "value_factor",
        _P,
        CURRENCY + " per price unit per contract",
        "multiplier x FX: value of one point of price of one contract",
        money=True,
    ),
    Output("order_price", _P, "price units", "limit price of the order (NaN: at the market)"),
    Output("price", ("underlying",), "price units", "underlying price"),
    # concentration margin of CFD and stock positions together
    Output("concentration_applies", _A, "", "CFD and stock positions are margined together"),
    Output(
        "concentration_loss",
        _A,
        CURRENCY,
        "stress loss of the largest positions (net per underlying, CFD + stock) and of the rest",
        json="concentration",
        key="loss",
    ),
    Output(
        "standard_requirement",
        _A,
        CURRENCY,
        "CFD maintenance + stock maintenance (standard requirement)",
        json="concentration",
    ),
    Output(
        "combined_maintenance",
        _A,
        CURRENCY,
        "maintenance of CFD and stock positions together: max(stress loss, standard)",
        json="concentration",
        key="maintenance",
    ),
    Output(
        "concentration_binding",
        _A,
        "",
        "the stress loss exceeds the standard requirement",
        json="concentration",
        key="binding",
    ),
    # over paths (with a path dim)
    Output("close_out_probability", _A, "1", "share of paths with a close-out", json="paths"),
    Output(
        "written_off_mean",
        _A,
        CURRENCY,
        "mean over paths of the written-off loss summed along step",
        json="paths",
    ),
    Output(
        "written_off_q99",
        _A,
        CURRENCY,
        "99 % quantile over paths of the written-off loss summed along step",
        json="paths",
    ),
    Output(
        "written_off_max",
        _A,
        CURRENCY,
        "maximum over paths of the written-off loss summed along step",
        json="paths",
    ),
)

#: The variables recomputed over every path after a run split along ``path``.
PATH_STATISTICS = tuple(o.name for o in OUTPUTS if o.json == "paths")


def describe_result(ds: xr.Dataset, concentration_description: str | None = None) -> xr.Dataset:
    """Write the declared attrs onto a CFD result (in place) and return it.

    Parameters
    ----------
    ds
        A CFD result (``attrs["currency"]``: the reporting currency).
    concentration_description
        The ``concentration_loss`` description with the file's stress parameters, if given.

    Returns
    -------
    xarray.Dataset
        ``ds``; a money variable's ``currency`` attr is the reporting currency.
    """
    describe(ds, OUTPUTS)
    if concentration_description is not None and "concentration_loss" in ds:
        ds["concentration_loss"].attrs["description"] = concentration_description
    return ds
