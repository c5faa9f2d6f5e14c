"""The SPAN result's variables, declared once: their attrs, JSON keys and units come from here.

JSON sections (``spec/scenario-format.md``): ``"account"`` (keys of the account's ``span``
object), ``"group"`` (keys of each held combined commodity's object under ``groups``) and
``"contract"`` (one object per kind under the account, keyed by the contracts it holds).
"""

from __future__ import annotations

from ...outputs import CURRENCY, Output

__all__ = ["OPTIONAL", "OUTPUTS"]

_AG = ("account", "group")

#: Every variable of a SPAN result, in result order. Amounts per account and combined commodity
#: are in the reporting currency; risk arrays in each contract's own currency.
OUTPUTS = (
    Output(
        "maintenance",
        ("account",),
        CURRENCY,
        "SPAN maintenance requirement: max(0, sum of maintenance CC risks - net option value); a CC "
        "whose rate class is initial counts its risk divided by its initial/maintenance ratio",
        json="account",
    ),
    Output(
        "initial",
        ("account",),
        CURRENCY,
        "SPAN initial requirement: max(0, sum of initial CC risks - net option value); a CC whose "
        "rate class is maintenance counts its risk scaled by its initial/maintenance ratio",
        json="account",
    ),
    Output(
        "net_option_value",
        ("account",),
        CURRENCY,
        "value of premium-style options, long positive",
        json="account",
    ),
    Output("span_risk", ("account",), CURRENCY, "sum of combined commodity risks", json="account"),
    Output(
        "exposure_margin",
        ("account",),
        CURRENCY,
        "exposure margin (span.exposure_margin: a fraction of notional), included in maintenance and "
        "initial; present only with span.exposure_margin",
        json="account",
    ),
    Output("scan_risk", _AG, CURRENCY, "scanning risk: the largest loss over the scenarios", json="group"),
    Output("active_scenario", _AG, "1", "1-based scenario of the scanning risk", json="group"),
    Output("intra_spread_charge", _AG, CURRENCY, "intra-commodity (calendar) spread charge", json="group"),
    Output("spot_charge", _AG, CURRENCY, "spot-month charge", json="group"),
    Output(
        "super_spread_credit",
        _AG,
        CURRENCY,
        "super inter-commodity spread credit (formed before the intra spreads); present only with super spreads",
        json="group",
    ),
    Output("inter_spread_credit", _AG, CURRENCY, "inter-commodity spread credit", json="group"),
    Output("short_option_minimum", _AG, CURRENCY, "short option minimum", json="group"),
    Output(
        "risk",
        _AG,
        CURRENCY,
        "max(scan + intra + spot - super credit - inter credit, short option minimum)",
        json="group",
    ),
    Output("held", _AG, "", "the account holds a position in the combined commodity"),
    Output("position_account", ("position",), "1", "index of the position's account on the account dim"),
    Output(
        "position_contract",
        ("position",),
        "1",
        "index of the position's contract on the contract dim",
    ),
    Output(
        "risk_array",
        ("contract", "scenario"),
        "contract_currency per long contract",
        "SPAN risk array, losses positive",
        json="contract",
        money=True,
        key="risk_arrays",
    ),
    Output(
        "composite_delta",
        ("contract",),
        "delta per contract",
        "SPAN composite delta",
        json="contract",
        key="composite_deltas",
    ),
    Output(
        "group_currency",
        ("group",),
        "",
        "margin currency of the combined commodity",
        json="group",
        key="margin_currency",
    ),
    Output(
        "group_fx",
        ("group",),
        CURRENCY + " per unit of group_currency",
        "FX rate of the margin currency into the reporting currency",
        json="group",
        key="fx_rate",
    ),
    Output(
        "rate_class",
        ("group",),
        "",
        "requirement the combined commodity's risk arrays and rates give: maintenance or initial "
        "(a clearing-house file: the isM flag of the pbRateDef of the rate class read)",
        json="group",
    ),
    Output(
        "contract_currency",
        ("contract",),
        "",
        "currency of the contract's risk array",
        json="contract",
        key="risk_array_currency",
    ),
    Output(
        "scan_loss",
        ("account", "group", "scenario"),
        CURRENCY,
        "loss per scenario (SPAN convention: losses positive)",
    ),
)

#: Outputs a result has only when asked for: ``exposure_margin`` with ``span.exposure_margin``,
#: ``super_spread_credit`` with super spreads (results without them keep their variables and JSON).
OPTIONAL = frozenset({"exposure_margin", "super_spread_credit"})
