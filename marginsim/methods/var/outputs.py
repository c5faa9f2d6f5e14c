"""The VaR method's result variables, declared once (attrs, JSON and the table come from them)."""

from __future__ import annotations

from ...outputs import CURRENCY, Output

__all__ = ["OUTPUTS", "COMPONENTS"]

#: The components of the maintenance requirement, in the order they add up.
COMPONENTS = ("hvar", "stress", "apc", "liquidity", "concentration")

OUTPUTS = (
    Output(
        "maintenance",
        ("account",),
        CURRENCY,
        "x hvar + (1 - x) stress + apc + liquidity + concentration",
        json="account",
    ),
    Output("initial", ("account",), CURRENCY, "initial_ratio x maintenance", json="account"),
    Output(
        "hvar",
        ("account",),
        CURRENCY,
        "historical VaR or ES of the losses over the lookback scenarios (filtered), floored at 0",
        json="account",
    ),
    Output(
        "stress",
        ("account",),
        CURRENCY,
        "largest loss of the stress scenarios (historical windows, explicit moves), floored at 0",
        json="account",
    ),
    Output(
        "apc",
        ("account",),
        CURRENCY,
        "anti-procyclicality add-on (EMIR RTS 153/2013 Art. 28(1)): buffer, stressed weight or floor",
        json="account",
    ),
    Output(
        "liquidity",
        ("account",),
        CURRENCY,
        "sum over underlyings of half spread x |net delta equivalent| x price",
        json="account",
    ),
    Output(
        "concentration",
        ("account",),
        CURRENCY,
        "sum over underlyings of rate x (|net delta equivalent| - threshold x adv)+ x price",
        json="account",
    ),
    Output(
        "var_date",
        ("account",),
        "",
        "end date of the scenario that set hvar (VaR: the k-th largest loss; ES: the largest); '' when hvar is 0",
        json="account",
    ),
    Output(
        "stress_scenario",
        ("account",),
        "",
        "the stress scenario that set stress (window return's end date or explicit name); '' when stress is 0",
        json="account",
    ),
)
