"""What a reader sees of a plotly figure or an HTML table, and the identifiers that must not be in it.

Used by ``test_report_labels.py`` (figures built by :mod:`marginsim.plots` directly) and by the slow
study tests (the figures and tables of the executed notebooks).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["IDENTIFIERS", "leaks", "visible_text", "value_axis_titles", "colorbar_titles", "table_text"]

#: Identifiers of results that a report must show by their display names.
IDENTIFIERS = (
    "span",
    "portfolio_margin",
    "cfd",
    "single_name",
    "single_name_method",
    "small_cap",
    "china_concept",
    "hk_property",
    "large_position",
    "days_to_liquidate",
    "major_fx",
    "nonmajor_fx",
    "major_index",
    "nonmajor_index",
    "individual_equity",
    "cfd_class",
    "leverage_used",
    "price_scan_scale",
    "vol_scan_scale",
    "before_base",
    "after_base",
    "movement_rule",
    "movement_currency",
    "from_group",
    "to_group",
    "to_currency",
    "to_amount",
    "currency_group",
    "margin_call",
    "forced_liquidation",
    "risk_ratio",
    "CN_",
    "HK_",
    "NonHK_",
    "exceedance_rate",
    "kupiec_pof_p",
    "christoffersen_independence_p",
    "peak_to_trough",
    "largest_1_day_increase",
    "largest_30_day_increase",
)
_WORD = re.compile(
    r"(?<![\w-])("
    + "|".join(re.escape(i) for i in sorted(IDENTIFIERS, key=len, reverse=True))
    + r")(?![\w-])"
)
#: A float shown with pandas' six default decimals (``leverage_used 0.250000``).
_SIX_DECIMALS = re.compile(r"\b\d+\.\d{6}\b")


def leaks(texts: Iterable[str], *, allow_six_decimals: bool = False) -> list[str]:
    """The texts that show an identifier (or a float with six default decimals)."""
    bad = []
    for t in texts:
        if _WORD.search(t) or (not allow_six_decimals and _SIX_DECIMALS.search(t)):
            bad.append(t)
    return bad


def _title(obj: Any) -> str:
    if obj is None:
        return ""
    if isinstance(obj, str):
        return obj
    return str(obj.get("text", "") or "")


def _layout_axes(layout: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {k: v for k, v in layout.items() if re.fullmatch(r"[xy]axis\d*", k) and v}


def visible_text(fig: Any) -> list[str]:
    """Titles, axis titles, colour-bar titles, legend names, category ticks, annotations of a figure.

    ``fig`` is a plotly Figure or its dict (the ``application/vnd.plotly.v1+json`` of a notebook).
    """
    d = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else fig
    layout, data = d.get("layout", {}) or {}, d.get("data", []) or []
    out = [_title(layout.get("title"))]
    out += [_title(ax.get("title")) for ax in _layout_axes(layout).values()]
    out += [str(a.get("text", "")) for a in layout.get("annotations", []) or []]
    for tr in data:
        if tr.get("showlegend", True) is not False and tr.get("name"):
            out.append(str(tr["name"]))
        out.append(_title((tr.get("colorbar") or {}).get("title")))
        for key in ("x", "y", "text"):
            vals = tr.get(key)
            if isinstance(vals, (list, tuple)):
                flat = [v for row in vals for v in (row if isinstance(row, (list, tuple)) else [row])]
                out += [v for v in flat if isinstance(v, str)]
    return [t for t in out if t]


def value_axis_titles(fig: Any) -> list[str]:
    """Title of the main y axis of a figure of bars, lines or a waterfall (none for heat maps)."""
    d = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else fig
    if {tr.get("type", "scatter") for tr in d.get("data", [])} <= {"heatmap"}:
        return []
    return [_title((d.get("layout", {}).get("yaxis") or {}).get("title"))]


def colorbar_titles(fig: Any) -> list[str]:
    """Titles of the colour bars shown (heat maps with a scale)."""
    d = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else fig
    return [
        _title((tr.get("colorbar") or {}).get("title"))
        for tr in d.get("data", [])
        if tr.get("type") == "heatmap" and tr.get("showscale", True) is not False
    ]


_TAGS = re.compile(r"<(th|caption)[^>]*>(.*?)</\1>", re.S)


def table_text(html: str) -> list[str]:
    """Header cells and captions of the HTML tables in ``html``."""
    html = re.sub(r"<script\b.*?</script>", "", html, flags=re.S | re.I)  # plotly.js has "<th" in it
    # the provenance section's parameter names are what a user types after -p (shown as code)
    html = re.sub(r'<section class="marginsim-provenance".*?</section>', "", html, flags=re.S)
    return [re.sub(r"<[^>]+>", "", m.group(2)).strip() for m in _TAGS.finditer(html)]
