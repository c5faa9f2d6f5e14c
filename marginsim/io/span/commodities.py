"""The combined commodities of a SPAN XML file (``ccDef``) and the delta spreads (``dSpread``).

Each function reads one complete element with a :class:`~marginsim.io.span.fields.FieldReader`
(whose key path names it in errors) and returns its record; none keeps state.
"""

from __future__ import annotations

from collections.abc import Container
from xml.etree.ElementTree import Element

from .definitions import point_def
from .fields import FieldReader, first_children, join
from .records import AdjRate, CombinedCommodity, DeltaSpread, PfLink, PointDef, SpotRate, SpreadLeg, Tier

__all__ = ["CC_FIELDS", "cc_def", "d_spread", "period", "tiers"]

#: The ``ccDef`` header fields read (any other child not read is counted in ``other_elements``).
CC_FIELDS = frozenset(
    {
        "cc", "name", "currency", "riskExponent", "capAnov", "procMeth", "wfprMeth", "spotMeth",
        "somMeth", "cmbMeth",
    }
)  # fmt: skip


def d_spread(f: FieldReader, e: Element, rel: str) -> DeltaSpread:
    """A ``dSpread`` at key path ``rel`` (intra-commodity in a ``ccDef``, or inter-commodity).

    Legs must have side ``rs`` A or B and a positive delta ratio ``i``; a ``W`` (weighted futures
    price risk) spread's credit rates must be fractions in [0, 1]. Tier legs (``tLeg``) and period
    legs (``pLeg``, whose ``pe`` must name a month) are read; legs of other kinds (``rpLeg``, nested
    ``dSpread``) are counted in ``unparsed_legs``.
    """
    ch = first_children(e)
    meth = f.text(ch, "chargeMeth", rel, required=True) or ""
    rates = f.rates(e, rel)
    legs: list[SpreadLeg] = []
    unparsed = 0
    n_leg = {"tLeg": 0, "pLeg": 0}
    for c in e:
        if c.tag == "tLeg" or c.tag == "pLeg":
            n_leg[c.tag] += 1
            lrel = join(rel, f"{c.tag}[{n_leg[c.tag]}]")
            lch = first_children(c)
            side = (f.text(lch, "rs", lrel, required=True) or "").upper()
            if side not in ("A", "B"):
                raise f.error(f"<rs> must be A or B, got {side[:10]!r}", join(lrel, "rs"))
            ratio = f.num(lch, "i", lrel, required=True)
            if ratio <= 0:
                raise f.error(f"<i> (delta ratio) must be positive, got {ratio}", join(lrel, "i"))
            is_t = c.tag == "tLeg"
            legs.append(
                SpreadLeg(
                    cc=f.text(lch, "cc", lrel, required=True) or "",
                    tier=f.req_int(lch, "tn", lrel) if is_t else 0,
                    side=side,
                    ratio=ratio,
                    rates=f.rates(c, lrel),
                    period=None if is_t else period(f, lch, "pe", lrel, required=True),
                )
            )
        elif c.tag in ("rpLeg", "dSpread"):
            unparsed += 1
    if meth == "W":
        for i, r in enumerate(rates, 1):
            if not 0.0 <= r.value <= 1.0:
                raise f.error(
                    f"credit rate {r.value} of a W (weighted futures price risk) spread is not "
                    "a fraction in [0, 1]; a percent is not accepted",
                    join(rel, f"rate[{i}].val"),
                )
        for j, leg in enumerate(legs, 1):
            for i, r in enumerate(leg.rates, 1):
                if not 0.0 <= r.value <= 1.0:
                    raise f.error(
                        f"credit rate {r.value} of a leg of a W (weighted futures price risk) spread is "
                        "not a fraction in [0, 1]; a percent is not accepted",
                        join(rel, f"tLeg[{j}].rate[{i}].val"),
                    )
    return DeltaSpread(
        spread=f.req_int(ch, "spread", rel),
        charge_method=meth,
        rates=rates,
        legs=tuple(legs),
        spread_type=f.text(ch, "spreadType", rel),
        unparsed_legs=unparsed,
        key_path=f.key_path(rel),
    )


def period(
    f: FieldReader, ch: dict[str, Element], tag: str, rel: str, *, required: bool = False
) -> str | None:
    """A period code (``sPe``, ``ePe``, ``pe``) that names a month: ``YYYYMM`` first (``201606``,
    ``201606S0``, ``20160617``); None if absent."""
    t = f.text(ch, tag, rel, required=required)
    if t is not None and not (len(t) >= 6 and t[:6].isdigit() and 1 <= int(t[4:6]) <= 12):
        raise f.error(f"<{tag}> is not a period starting with its month (YYYYMM): {t[:40]!r}", join(rel, tag))
    return t


def tiers(f: FieldReader, e: Element, rel: str) -> list[Tier]:
    """The ``tier`` children of a tiers element (``intraTiers``...) at key path ``rel``; tier numbers
    must be unique and periods must name months."""
    out: list[Tier] = []
    first: dict[int, str] = {}
    for i, t in enumerate((c for c in e if c.tag == "tier"), 1):
        trel = join(rel, f"tier[{i}]")
        tch = first_children(t)
        tn = f.req_int(tch, "tn", trel)
        if tn in first:
            raise f.error(f"tier {tn} is defined twice (first at {first[tn]})", join(trel, "tn"))
        first[tn] = trel
        out.append(
            Tier(
                tn=tn,
                start_period=period(f, tch, "sPe", trel),
                end_period=period(f, tch, "ePe", trel),
                rates=f.rates(t, trel),
            )
        )
    return out


def cc_def(f: FieldReader, e: Element, known: Container[str] = ()) -> CombinedCommodity:
    """A ``ccDef``: its member portfolios, rate adjustments, tiers, intra spreads, spot rates and point
    definitions (``rateTiers`` and any other child are not read: counted in ``other_elements``).

    Parameters
    ----------
    f
        The field reader (its key path is the ``ccDef``'s).
    e
        The complete ``ccDef`` element.
    known
        Codes of the combined commodities read before: a code defined twice is an error.
    """
    ch = first_children(e)
    code = f.text(ch, "cc", required=True)
    assert code is not None
    by_kind: dict[str, list[Tier]] = {"intraTiers": [], "interTiers": [], "somTiers": [], "scanTiers": []}
    seen: dict[str, int] = {}
    links: list[PfLink] = []
    adj: list[AdjRate] = []
    spreads: list[DeltaSpread] = []
    spots: list[SpotRate] = []
    pdefs: list[PointDef] = []
    other: dict[str, int] = {}
    for c in e:
        tag = c.tag
        seen[tag] = seen.get(tag, 0) + 1
        rel = f"{tag}[{seen[tag]}]"
        if tag in by_kind:
            by_kind[tag].extend(tiers(f, c, rel))
        elif tag == "pfLink":
            lch = first_children(c)
            links.append(
                PfLink(
                    exchange=f.text(lch, "exch", rel, required=True) or "",
                    pf_id=f.req_int(lch, "pfId", rel),
                    pf_code=f.text(lch, "pfCode", rel),
                    pf_type=f.text(lch, "pfType", rel),
                    scale=f.num(lch, "sc", rel, required=True),
                    cmb_meth=f.text(lch, "cmbMeth", rel),
                    apply_basis_risk=f.bool_(lch, "applyBasisRisk", rel),
                    array_precision=f.int_(lch, "arrayPrecision", rel),
                    oop_delta_meth=f.text(lch, "oopDeltaMeth", rel),
                )
            )
        elif tag == "adjRate":
            ach = first_children(c)
            adj.append(
                AdjRate(
                    rate_id=f.req_int(ach, "r", rel),
                    base_rate_id=f.req_int(ach, "baseR", rel),
                    value=f.num(ach, "val", rel, required=True),
                )
            )
        elif tag == "dSpread":
            spreads.append(d_spread(f, c, rel))
        elif tag == "spotRate":
            sch = first_children(c)
            spots.append(
                SpotRate(
                    rate_id=f.req_int(sch, "r", rel),
                    period=period(f, sch, "pe", rel, required=True) or "",
                    spread_rate=f.num(sch, "sprd", rel, required=True),
                    outright_rate=f.num(sch, "outr", rel, required=True),
                )
            )
        elif tag == "pointDef":
            pdefs.append(point_def(f, c, rel))
        elif tag not in CC_FIELDS:
            other[tag] = other.get(tag, 0) + 1
    if code in known:
        raise f.error(f"combined commodity {code!r} is defined twice", "cc")
    return CombinedCommodity(
        code=code,
        name=f.name(ch, "name"),
        currency=f.text(ch, "currency", required=True) or "",
        risk_exponent=f.int_(ch, "riskExponent"),
        cap_anov=f.bool_(ch, "capAnov"),
        proc_meth=f.text(ch, "procMeth"),
        wfpr_meth=f.text(ch, "wfprMeth"),
        spot_meth=f.text(ch, "spotMeth"),
        som_meth=f.text(ch, "somMeth"),
        cmb_meth=f.text(ch, "cmbMeth"),
        pf_links=tuple(links),
        adj_rates=tuple(adj),
        intra_tiers=tuple(by_kind["intraTiers"]),
        inter_tiers=tuple(by_kind["interTiers"]),
        som_tiers=tuple(by_kind["somTiers"]),
        scan_tiers=tuple(by_kind["scanTiers"]),
        d_spreads=tuple(spreads),
        spot_rates=tuple(spots),
        point_defs=tuple(pdefs),
        other_elements=other,
        key_path=f.key_path(),
    )
