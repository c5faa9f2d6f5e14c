"""A plain summary of a SPAN XML file (what ``marginsim span-file FILE`` prints)."""

from __future__ import annotations

from typing import Any

from .records import DEFAULT_N_POINTS, SpanFile

__all__ = ["summarize"]


def summarize(span_file: SpanFile) -> dict[str, Any]:
    """Summarize a :class:`SpanFile` as plain JSON-serialisable data (for ``marginsim span-file``).

    Parameters
    ----------
    span_file
        The file read by :func:`read_span_xml`.

    Returns
    -------
    dict
        ``file``, ``file_format``, ``created`` (ISO), ``business_date`` (ISO), ``clearing_org``,
        ``exchanges`` (codes), ``currencies`` (codes used by portfolios and combined
        commodities), ``n_currency_definitions``, ``conversion_rates`` (``"USD/TRY"`` -> factor),
        ``n_combined_commodities``, ``n_portfolios`` and ``n_contracts`` by kind (``physical``,
        ``futures``, ``options``), ``n_option_series``, ``n_intra_spreads``,
        ``n_inter_spreads``, ``n_scan_points`` and ``ignored_portfolios``.
    """
    phy, fut, opt = span_file.physical_portfolios, span_file.futures_portfolios, span_file.option_portfolios
    used = {p.currency for p in (*phy, *fut, *opt)} | {
        c.currency for c in span_file.combined_commodities.values()
    }
    pd = span_file.point_def()
    return {
        "file": str(span_file.path),
        "file_format": span_file.file_format,
        "created": None if span_file.created is None else span_file.created.isoformat(),
        "business_date": span_file.business_date.isoformat(),
        "clearing_org": span_file.clearing_org,
        "exchanges": [e.code for e in span_file.exchanges],
        "currencies": sorted(used),
        "n_currency_definitions": len(span_file.currencies),
        "conversion_rates": {
            f"{r.from_currency}/{r.to_currency}": r.factor for r in span_file.conversion_rates
        },
        "n_combined_commodities": len(span_file.combined_commodities),
        "n_portfolios": {"physical": len(phy), "futures": len(fut), "options": len(opt)},
        "n_contracts": {
            "physical": sum(len(p.contracts) for p in phy),
            "futures": sum(len(p.contracts) for p in fut),
            "options": sum(len(p.contracts) for p in opt),
        },
        "n_option_series": sum(len(p.series) for p in opt),
        "n_intra_spreads": sum(len(c.d_spreads) for c in span_file.combined_commodities.values()),
        "n_inter_spreads": len(span_file.inter_spreads),
        "n_scan_points": DEFAULT_N_POINTS if pd is None else pd.n_points,
        "ignored_portfolios": dict(span_file.ignored_portfolios),
    }
