"""A plain summary of a SPAN XML file (what ``marginsim span-file FILE`` prints)."""

from __future__ import annotations

from typing import Any

from .records import DEFAULT_N_POINTS, SpanFile

__all__ = ["not_used", "summarize"]


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
        ``n_inter_spreads``, ``n_scan_points``, ``ignored_portfolios`` and ``not_used`` (what the
        file holds that margining it does not use: element name -> count, :func:`not_used`).
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
        "not_used": not_used(span_file),
    }


def not_used(span_file: SpanFile, rate_id: int = 1) -> dict[str, int]:
    """What the file holds that margining it does not use: element name -> count.

    Names are ``parent/tag`` paths of the schema, with a note in parentheses where only some
    occurrences are not used. Three sources: elements the reader skips unread (unknown elements,
    portfolio kinds it does not model, definitions such as ``acctTypeDef``); children of ``ccDef``
    it does not read (``rateTiers``, ``concAdjRate``, ``liqRate``...); and elements it reads that the
    margin does not use for rate class ``rate_id`` (scan tiers, SOM tiers after the first, an
    ``adjRate`` whose ``r`` is its own ``baseR``, the rates of spread legs (but those of a ``W``
    inter or super spread), ``rpLeg`` and nested ``dSpread``, spot rates of other rate classes,
    point definitions of other rate classes and those of a ``ccDef``).

    Parameters
    ----------
    span_file
        The file read by :func:`read_span_xml`.
    rate_id
        The rate class margined (the risk arrays read).

    Returns
    -------
    dict
        Element name -> count, sorted by name; empty when everything is used.
    """
    out: dict[str, int] = {}

    def add(name: str, n: int = 1) -> None:
        if n:
            out[name] = out.get(name, 0) + n

    for name, n in span_file.skipped_elements.items():
        add(name, n)
    for cc in span_file.combined_commodities.values():
        for tag, n in cc.other_elements.items():
            add(f"ccDef/{tag}", n)
        add("ccDef/scanTiers/tier", len(cc.scan_tiers))
        add("ccDef/somTiers/tier (after the first)", max(len(cc.som_tiers) - 1, 0))
        add("ccDef/adjRate (r = baseR)", sum(a.rate_id == a.base_rate_id for a in cc.adj_rates))
        add(f"ccDef/spotRate (r != {rate_id})", sum(s.rate_id != rate_id for s in cc.spot_rates))
        add("ccDef/pointDef", len(cc.point_defs))  # the clearing org's point definitions are used
    spreads = (
        [(sp, "ccDef/dSpread") for cc in span_file.combined_commodities.values() for sp in cc.d_spreads]
        + [(sp, "interSpreads/dSpread") for sp in span_file.inter_spreads]
        + [(sp, "superSpreads/dSpread") for sp in span_file.super_spreads]
    )
    for sp, where in spreads:
        add(f"{where}/rpLeg or dSpread", sp.unparsed_legs)
        if where != "ccDef/dSpread" and sp.charge_method.upper() == "W":
            continue  # a W inter or super spread credits a leg at its own rate
        for leg in sp.legs:
            add(f"{where}/{leg.tag}/rate", len(leg.rates))
    used_pd = span_file.point_def(rate_id)
    add("clearingOrg/pointDef (other rate classes)", sum(p is not used_pd for p in span_file.point_defs))
    return dict(sorted(out.items()))
