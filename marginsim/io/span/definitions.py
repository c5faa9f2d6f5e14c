"""The definitions of a SPAN XML file: the header, currencies, conversion rates, rate classes, points.

Each function reads one complete element (its children already parsed) with a
:class:`~marginsim.io.span.fields.FieldReader`, whose key path names the element in errors, and
returns its record. None of them keeps state: the reader collects what they return.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from xml.etree.ElementTree import Element

import numpy as np

from .fields import FieldReader, first_children, join, parse_created, parse_yyyymmdd, read_only
from .records import ConversionRate, Currency, DeltaPoints, PbRateDef, PointDef, ScanPoints

__all__ = [
    "clearing_org",
    "conversion_rate",
    "currency_def",
    "file_header",
    "pb_rate_def",
    "point_def",
    "point_in_time",
]


def file_header(f: FieldReader, e: Element) -> tuple[str | None, datetime | None]:
    """``spanFile``'s ``fileFormat`` and ``created`` (file creation time), or None where absent."""
    ch = first_children(e)
    file_format = f.text(ch, "fileFormat")
    created = f.text(ch, "created")
    if created is None:
        return file_format, None
    try:
        return file_format, parse_created(created)
    except ValueError:
        raise f.error(f"<created> is not a date-time: {created[:40]!r}", "created") from None


def point_in_time(f: FieldReader, e: Element) -> tuple[date, bool | None, str | None]:
    """``pointInTime``'s business ``date``, settlement flag ``isSetl`` and ``setlQualifier``."""
    ch = first_children(e)
    t = f.text(ch, "date", required=True)
    assert t is not None
    try:
        business_date = parse_yyyymmdd(t)
    except ValueError:
        raise f.error(f"<date> is not a date (YYYYMMDD): {t[:40]!r}", "date") from None
    return business_date, f.bool_(ch, "isSetl"), f.text(ch, "setlQualifier")


def clearing_org(f: FieldReader, e: Element) -> tuple[str, str | None, bool | None]:
    """``clearingOrg``'s code ``ec``, ``name`` and ``isContractScale``."""
    ch = first_children(e)
    code = f.text(ch, "ec", required=True)
    assert code is not None
    return code, f.name(ch, "name"), f.bool_(ch, "isContractScale")


def currency_def(f: FieldReader, e: Element) -> Currency:
    """A ``currencyDef`` (``decimalPos`` 2 if absent)."""
    ch = first_children(e)
    code = f.text(ch, "currency", required=True)
    assert code is not None
    return Currency(
        code=code,
        symbol=f.text(ch, "symbol") or "",
        name=f.name(ch, "name") or "",
        decimal_pos=f.int_(ch, "decimalPos", default=2) or 0,
    )


def conversion_rate(f: FieldReader, e: Element) -> ConversionRate:
    """A ``curConv``: its ``factor`` [units of ``toCur`` per unit of ``fromCur``] must be positive."""
    ch = first_children(e)
    factor = f.num(ch, "factor", required=True)
    if factor <= 0:
        raise f.error(f"conversion factor must be positive, got {factor}", "factor")
    return ConversionRate(
        f.text(ch, "fromCur", required=True) or "", f.text(ch, "toCur", required=True) or "", factor
    )


def pb_rate_def(f: FieldReader, e: Element) -> PbRateDef:
    """A ``pbRateDef`` (performance-bond rate class)."""
    ch = first_children(e)
    return PbRateDef(
        rate_id=f.req_int(ch, "r"),
        is_customer=bool(f.bool_(ch, "isCust")),
        account_type=f.text(ch, "acctType") or "",
        is_maintenance=bool(f.bool_(ch, "isM")),
        pb_class=f.text(ch, "pbc") or "",
    )


def _moves(f: FieldReader, p: Element, prel: str) -> tuple[float, float]:
    """Price and vol move of a scan or delta point, as multiples of the scan ranges.

    ``numerator / denominator`` of ``priceScanDef`` / ``volScanDef``, falling back to ``mult``.
    """
    out = []
    for tag in ("priceScanDef", "volScanDef"):
        d = p.find(tag)
        if d is None:
            raise f.error(f"missing required element <{tag}>", prel)
        dch = first_children(d)
        drel = join(prel, tag)
        mult = f.num(dch, "mult", drel, required=True)
        num = f.num(dch, "numerator", drel)
        den = f.num(dch, "denominator", drel)
        out.append(num / den if math.isfinite(num) and math.isfinite(den) and den != 0 else mult)
    return out[0], out[1]


def point_def(f: FieldReader, e: Element, rel: str = "") -> PointDef:
    """A ``pointDef`` (the clearing org's, or one inside a ``ccDef`` at key path ``rel``).

    Its ``scanPointDef`` rows become :class:`~marginsim.io.span.records.ScanPoints` (at least
    one is required), sorted by point number; the ``n`` scan point numbers must be 1..n, each once
    (risk-array value ``a[i]`` is the loss at point ``i``), every ``pairedPoint`` one of them and
    every weight positive. Its ``deltaPointDef`` rows become
    :class:`~marginsim.io.span.records.DeltaPoints` (point numbers unique, weights not negative).
    """
    ch = first_children(e)
    rate_id = f.req_int(ch, "r", rel)
    rows: dict[str, list[list[float]]] = {"scanPointDef": [], "deltaPointDef": []}
    paths: dict[str, list[str]] = {"scanPointDef": [], "deltaPointDef": []}
    for p in e:
        if p.tag not in rows:
            continue
        prel = join(rel, f"{p.tag}[{len(rows[p.tag]) + 1}]")
        pch = first_children(p)
        pm, vm = _moves(f, p, prel)
        row = [f.req_int(pch, "point", prel), pm, vm, f.num(pch, "weight", prel, required=True)]
        if p.tag == "scanPointDef":
            row.append(f.req_int(pch, "pairedPoint", prel))
        rows[p.tag].append(row)
        paths[p.tag].append(prel)
    if not rows["scanPointDef"]:
        raise f.error("missing required element <scanPointDef>", rel)
    s = np.array(rows["scanPointDef"], dtype=np.float64).reshape(-1, 5)
    d = np.array(rows["deltaPointDef"], dtype=np.float64).reshape(-1, 4)
    _check_points(f, s, paths["scanPointDef"], scan=True)
    _check_points(f, d, paths["deltaPointDef"], scan=False)
    s = s[np.argsort(s[:, 0], kind="stable")]
    return PointDef(
        rate_id=rate_id,
        scan=ScanPoints(
            point=read_only(s[:, 0].astype(np.int64)),
            price_move=read_only(s[:, 1].copy()),
            vol_move=read_only(s[:, 2].copy()),
            weight=read_only(s[:, 3].copy()),
            paired_point=read_only(s[:, 4].astype(np.int64)),
        ),
        delta=DeltaPoints(
            point=read_only(d[:, 0].astype(np.int64)),
            price_move=read_only(d[:, 1].copy()),
            vol_move=read_only(d[:, 2].copy()),
            weight=read_only(d[:, 3].copy()),
        ),
    )


def _check_points(f: FieldReader, rows: np.ndarray, paths: list[str], *, scan: bool) -> None:
    """Check the point numbers (columns: point, price move, vol move, weight[, paired point]) of the
    ``scanPointDef`` (``scan``) or ``deltaPointDef`` rows at key paths ``paths``."""
    n = rows.shape[0]
    point = rows[:, 0]
    order = np.argsort(point, kind="stable")
    again = order[1:][point[order][1:] == point[order][:-1]]
    if again.size:
        i = int(again.min())
        first = paths[int(order[np.searchsorted(point[order], point[i])])]
        what = "scan" if scan else "delta"
        raise f.error(
            f"{what} point number {int(point[i])} is defined twice (first at {first})",
            join(paths[i], "point"),
        )
    if scan:
        bad = np.flatnonzero((point < 1) | (point > n))
        if bad.size:
            i = int(bad[0])
            raise f.error(
                f"scan point number {int(point[i])} is not in 1..{n} (the {n} scan points number "
                "the risk-array values)",
                join(paths[i], "point"),
            )
        pair = rows[:, 4]
        bad = np.flatnonzero((pair < 1) | (pair > n))
        if bad.size:
            i = int(bad[0])
            raise f.error(
                f"paired point {int(pair[i])} is not a scan point (1..{n})", join(paths[i], "pairedPoint")
            )
        bad = np.flatnonzero(~(rows[:, 3] > 0))
        if bad.size:
            i = int(bad[0])
            raise f.error(f"scan point weight must be positive, got {rows[i, 3]:g}", join(paths[i], "weight"))
    else:
        bad = np.flatnonzero(rows[:, 3] < 0)
        if bad.size:
            i = int(bad[0])
            raise f.error(
                f"delta point weight must not be negative, got {rows[i, 3]:g}", join(paths[i], "weight")
            )
