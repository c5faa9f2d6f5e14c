"""The result variables of portfolio margin, declared once: attrs, JSON keys and units come from here.

``json`` is the variable's place in the account's ``portfolio_margin`` object of the JSON contract,
a dotted path of sections: ``"account"`` (a key of the object), ``"account.components"``,
``"class_group"`` (a key of each held class group's object under ``class_groups``),
``"class_group.scan_range"``, ``"class_group.concentration"``, ``"class_group.single_name"``,
``"class_group.loss_grid"``, and ``"single_name_method"`` (the object of each applicable
single-name method). Within a section, keys are in declaration order (:mod:`.report`).

Every variable may also carry the grid dims of the inputs after the dims declared here.
"""

from __future__ import annotations

from ...outputs import CURRENCY, Output

__all__ = ["OUTPUTS", "COMPONENTS"]

_A = ("account",)
_AC = ("account", "group")
_C = ("group",)
_CM = ("group", "single_name_method")

#: The result variables, in the order of the JSON contract.
OUTPUTS: tuple[Output, ...] = (
    # -- per account -------------------------------------------------------------------------------
    Output(
        "maintenance",
        _A,
        CURRENCY,
        "max(base, extreme, concentration, single_name) + large_position",
        json="account",
    ),
    Output(
        "initial",
        _A,
        CURRENCY,
        "sum over class groups of ratio x (part of the binding component + large position) + days to liquidate",
        json="account",
    ),
    Output(
        "binding", _A, "", "binding component of maintenance ('' when the requirement is 0)", json="account"
    ),
    Output(
        "scan",
        _A,
        CURRENCY,
        "sum over class groups of the largest loss of the theoretical-value scan",
        json="account.components",
    ),
    Output(
        "extreme",
        _A,
        CURRENCY,
        "sum over class groups of cover fraction x largest extreme-scan loss",
        json="account.components",
    ),
    Output(
        "minimum",
        _A,
        CURRENCY,
        "sum over class groups of the option minimum (0.375 USD x multiplier per contract)",
        json="account.components",
    ),
    Output(
        "concentration",
        _A,
        CURRENCY,
        "riskiest class groups at the hard stress, the others at the mild stress",
        json="account.components",
    ),
    Output(
        "single_name",
        _A,
        CURRENCY,
        "largest single-name stress loss of one stock with its derivatives",
        json="account.components",
    ),
    Output(
        "large_position",
        _A,
        CURRENCY,
        "loss under the large-position stress of class groups at or above the share threshold",
        json="account.components",
    ),
    Output(
        "days_to_liquidate",
        _A,
        CURRENCY,
        "initial-margin add-on for positions large against average daily volume",
        json="account.components",
    ),
    Output("single_name_driver", _A, "", "class group setting single_name ('' = none)", json="account"),
    Output(
        "concentration_driver",
        ("account", "driver_rank"),
        "",
        "riskiest class groups with a hard-stress loss, largest first ('' = none)",
        json="account",
        key="concentration_drivers",
    ),
    Output("base", _A, CURRENCY, "sum over class groups of max(scan loss, option minimum)", json="account"),
    Output(
        "market_value",
        _A,
        CURRENCY,
        "value of the stocks and options of the method, long positive",
        json="account",
    ),
    Output("equity", _A, CURRENCY, "cash + market value (NaN without cash)", json="account"),
    Output("available_funds", _A, CURRENCY, "equity - initial", json="account"),
    Output("excess_liquidity", _A, CURRENCY, "equity - maintenance", json="account"),
    Output(
        "opening_equity_met",
        _A,
        "1",
        "1.0 if equity >= the opening minimum, 0.0 if not, NaN if unknown",
        json="account",
    ),
    Output(
        "minimum_equity_met",
        _A,
        "1",
        "1.0 if equity >= the minimum equity, 0.0 if not, NaN if unknown",
        json="account",
    ),
    # -- per class group, and per account and class group --------------------------------------------
    Output(
        "product_class", _C, "", "product class of the class group (sets its scan range)", json="class_group"
    ),
    Output(
        "us_security", _C, "", "whether the class group is a US security (initial ratio)", json="class_group"
    ),
    Output("initial_ratio", _C, "1", "initial / maintenance ratio of the class group", json="class_group"),
    Output(
        "group_currency",
        _C,
        "",
        "margin currency of the class group",
        json="class_group",
        key="margin_currency",
    ),
    Output(
        "group_fx",
        _C,
        "1",
        "reporting currency per unit of the class group's margin currency (FX rate)",
        json="class_group",
        key="fx_rate",
    ),
    Output(
        "scan_range_up", _C, "fraction of price", "scan range up", json="class_group.scan_range", key="up"
    ),
    Output(
        "scan_range_down",
        _C,
        "fraction of price",
        "scan range down",
        json="class_group.scan_range",
        key="down",
    ),
    Output(
        "group_scan",
        _AC,
        CURRENCY,
        "largest loss of the theoretical-value scan",
        json="class_group",
        key="scan",
    ),
    Output(
        "group_minimum",
        _AC,
        CURRENCY,
        "option minimum: option_minimum USD x multiplier per option contract",
        json="class_group",
        key="minimum",
    ),
    Output(
        "option_contracts", _AC, "contracts", "option contracts held (sum of |quantity|)", json="class_group"
    ),
    Output("group_base", _AC, CURRENCY, "max(scan, minimum)", json="class_group", key="base"),
    Output(
        "group_extreme",
        _AC,
        CURRENCY,
        "cover fraction x largest extreme-scan loss",
        json="class_group",
        key="extreme",
    ),
    Output(
        "concentration_loss_top",
        _AC,
        CURRENCY,
        "loss at the hard concentration stress",
        json="class_group.concentration",
        key="loss_top",
    ),
    Output(
        "concentration_loss_rest",
        _AC,
        CURRENCY,
        "loss at the mild concentration stress",
        json="class_group.concentration",
        key="loss_rest",
    ),
    Output(
        "concentration_top",
        _AC,
        "",
        "whether the class group is among the riskiest (hard stress)",
        json="class_group.concentration",
        key="riskiest",
    ),
    Output(
        "concentration_contribution",
        _AC,
        CURRENCY,
        "the class group's part of the concentration component",
        json="class_group.concentration",
        key="contribution",
    ),
    Output(
        "group_single_name",
        _AC,
        CURRENCY,
        "largest loss of the single-name methods that apply",
        json="class_group.single_name",
        key="loss",
    ),
    Output(
        "single_name_move_up",
        _CM,
        "fraction of price",
        "up move of the single-name method",
        json="single_name_method",
        key="up",
    ),
    Output(
        "single_name_move_down",
        _CM,
        "fraction of price",
        "down move of the single-name method (positive)",
        json="single_name_method",
        key="down",
    ),
    Output(
        "single_name_loss",
        ("account", "group", "single_name_method"),
        CURRENCY,
        "loss of the single-name method (NaN where it does not apply)",
        json="single_name_method",
        key="loss",
    ),
    Output("single_name_applies", _CM, "", "whether the single-name method applies to the class group"),
    Output("delta_shares", _AC, "shares", "delta-equivalent shares of the class group", json="class_group"),
    Output(
        "shares_outstanding_fraction",
        _AC,
        "1",
        "|delta shares| / shares outstanding (NaN if unknown)",
        json="class_group",
    ),
    Output(
        "large_position_charge",
        _AC,
        CURRENCY,
        "large-position stress loss at or above the share threshold",
        json="class_group",
        key="large_position",
    ),
    Output(
        "adv_multiple",
        _AC,
        "days of average daily volume",
        "|delta shares| / average daily volume (NaN if unknown)",
        json="class_group",
    ),
    Output(
        "days_to_liquidate_charge",
        _AC,
        CURRENCY,
        "days-to-liquidate add-on of the class group (initial only)",
        json="class_group",
        key="days_to_liquidate",
    ),
    Output(
        "price_move",
        ("group", "price_point"),
        "fraction of price",
        "scan move of each price point",
        json="class_group.loss_grid",
        key="price_moves",
    ),
    Output(
        "scan_loss",
        ("account", "group", "price_point", "vol_point"),
        CURRENCY,
        "loss of the class group per scan point (losses positive)",
        json="class_group.loss_grid",
        key="loss",
    ),
    Output("held", _AC, "", "whether the account holds a position of the class group"),
    # -- coordinates ---------------------------------------------------------------------------------
    Output("price_point", ("price_point",), "fraction of the scan range", "scan price point, down then up"),
    Output("vol_point", ("vol_point",), "multiples of the vol shift", "scan implied vol point"),
)

#: Components of the JSON contract, in report order.
COMPONENTS: tuple[str, ...] = tuple(o.name for o in OUTPUTS if o.json == "account.components")
