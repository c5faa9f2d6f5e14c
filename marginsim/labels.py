"""Display names of the identifiers a result carries, for reports a reader can follow.

Results name things by identifiers (``portfolio_margin``, ``single_name``, ``CN_``,
``movement_rule``); reports, figures and tables show these display names instead. This is the one
place they are kept: :mod:`marginsim.plots` and :mod:`marginsim.studies` read it. An identifier
without an entry is shown as it is (account, contract and class-group names are the user's own);
a method without an entry (a plug-in) is shown with spaces for underscores.

This module imports nothing of marginsim: every layer may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DISPLAY_NAMES", "display_name", "display_names", "method_name", "with_unit"]

#: Margin methods (the registry's names).
_METHODS = {
    "span": "SPAN",
    "portfolio_margin": "portfolio margin",
    "cfd": "CFD",
    "account": "account layer",
    "strategy": "strategy-based margin",
    "var": "VaR",
}

#: Portfolio-margin components (``binding`` values and component variables).
_PM_COMPONENTS = {
    "base": "base (scan or option minimum)",
    "scan": "scan",
    "extreme": "extreme scan",
    "minimum": "option minimum",
    "concentration": "concentration stress",
    "single_name": "single-name stress",
    "large_position": "large-position charge",
    "days_to_liquidate": "days-to-liquidate add-on",
}

#: Portfolio-margin single-name methods.
_SINGLE_NAME_METHODS = {
    "small_cap": "small cap",
    "china_concept": "China concept",
    "default": "default",
    "hk_property": "Hong Kong property",
}

#: CFD leverage classes (ESMA / CBI retail caps).
_CFD_CLASSES = {
    "major_fx": "major currency pairs",
    "nonmajor_fx": "other currency pairs",
    "gold": "gold",
    "major_index": "major indices",
    "commodity": "commodities (not gold)",
    "nonmajor_index": "other indices",
    "individual_equity": "individual equities",
    "crypto": "crypto-assets",
}

#: The account layer's currency groups, states and movement rules.
_ACCOUNT = {
    "HK_": "Hong Kong products",
    "NonHK_": "other products",
    "CN_": "mainland China products",
    "normal": "normal",
    "margin_call": "margin call",
    "forced_liquidation": "forced liquidation",
    "client": "the client's instruction",
    "transfers": "transfers only",
    "conversions": "conversions only",
    "transfers_and_conversions": "transfers and conversions",
}

#: Variable, column and dim names.
_NAMES = {
    "maintenance": "maintenance",
    "initial": "initial",
    "set by": "set by",
    "note": "note",
    "method": "method",
    "account": "account",
    "component": "component",
    "group": "class group",
    "cfd_class": "leverage class",
    "leverage_used": "leverage used (fraction of the retail cap)",
    "shift": "move of every price",
    "step": "step",
    "path": "path",
    "price_scan_scale": "price scan range (multiple)",
    "vol_scan_scale": "volatility scan range (multiple)",
    "single_name_method": "single-name method",
    "currency_group": "currency group",
    "currency": "currency",
    "movement_rule": "rule",
    "kind": "kind",
    "amount": "amount out",
    "movement_currency": "currency out",
    "from_group": "from group",
    "to_group": "to group",
    "to_currency": "currency in",
    "to_amount": "amount in",
    "rate": "rate (in per out)",
    "before": "before (in its currency)",
    "after": "after (in its currency)",
    "before_base": "before",
    "after_base": "after",
    "equity": "equity",
    "cash": "cash",
    "risk_ratio": "general risk ratio",
    "maintenance_risk_ratio": "maintenance risk ratio",
    "model": "model",
    "days": "days tested",
    "exceedances": "exceedances",
    "exceedance_rate": "exceedance rate",
    "kupiec_pof_p": "Kupiec p-value",
    "christoffersen_independence_p": "Christoffersen p-value",
    "peak_to_trough": "peak / trough",
    "largest_1_day_increase": "largest 1-day increase",
    "largest_30_day_increase": "largest 30-day increase",
}

#: Every identifier but the method names (``account`` is also a dim: see :func:`method_name`) ->
#: its display name.
DISPLAY_NAMES: dict[str, str] = {
    **{k: v for k, v in _METHODS.items() if k not in _NAMES},
    **_NAMES,
    **_PM_COMPONENTS,
    **_SINGLE_NAME_METHODS,
    **_CFD_CLASSES,
    **_ACCOUNT,
}


def display_name(name: object) -> str:
    """The display name of an identifier; any other value as text, unchanged.

    Parameters
    ----------
    name
        An identifier of a result (method, component, class, column name) or a data value.

    Returns
    -------
    str
    """
    text = str(name)
    return DISPLAY_NAMES.get(text, text)


def display_names(names: Iterable[object]) -> list[str]:
    """:func:`display_name` of each of ``names``."""
    return [display_name(n) for n in names]


def method_name(name: str) -> str:
    """The display name of a margin method (a plug-in's name with spaces for underscores)."""
    return _METHODS.get(name, name.replace("_", " "))


def with_unit(label: str, unit: str | None) -> str:
    """``"label [unit]"``, or ``label`` when there is no unit.

    Parameters
    ----------
    label
        The text of an axis, colour bar or column.
    unit
        Its unit (a currency, ``%``, ...); empty or ``None``: none.

    Returns
    -------
    str
    """
    return f"{label} [{unit}]" if unit else label
