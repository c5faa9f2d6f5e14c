"""Field access of the SPAN XML reader: values of child elements, with errors that name the key path.

:class:`FieldReader` holds the key path of the element being read (the tags and sibling indices of
the open elements, pushed by :class:`marginsim.io.span.walk.TreeWalker`) and reads the values of
its children: text, numbers, integers, booleans, dates, and the repeated sub-structures that
records share (risk arrays, scan rates, rates, underlying contracts). Every problem is raised as
:class:`marginsim.errors.InputError` naming the file and an XML key path such as
``spanFile.pointInTime.clearingOrg.exchange[1].futPf[5].fut[1].ra.a[3]``. Indices count from 1
among siblings with the same tag, as in XPath; the index is shown for elements that may repeat.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from operator import attrgetter
from xml.etree.ElementTree import Element

import numpy as np

from marginsim.errors import InputError

from .records import DEFAULT_N_POINTS, Rate

__all__ = [
    "MAX_ABS_VALUE",
    "NAN_SCAN",
    "NAT_DAYS",
    "OPTION_PF",
    "OTHER_PF",
    "PF_TYPES",
    "SCAN_FIELDS",
    "FieldReader",
    "first_children",
    "join",
    "parse_created",
    "parse_yyyymmdd",
    "read_only",
    "repair_text",
]

#: Option portfolio tags and their pfType.
OPTION_PF = {"oopPf": "OOP", "oofPf": "OOF", "ooePf": "OOE", "oocPf": "OOC"}
#: All portfolio tags read, and their pfType.
PF_TYPES = {"phyPf": "PHY", "futPf": "FUT", **OPTION_PF}
#: Portfolio tags of the schema not modelled here (counted in ``SpanFile.ignored_portfolios``).
OTHER_PF = frozenset({"debtPf", "equityPf", "fwdPf", "IRSwapPf", "CDSwapPf", "eDebtPf", "cmbPf"})
#: Tags that may repeat among siblings: their key-path component always shows an index.
REPEATING = frozenset(
    {
        "currencyDef", "curConv", "pbRateDef", "pointDef",
        "scanPointDef", "deltaPointDef", "exchange", "ccDef", "dSpread", "tLeg", "pLeg", "pfLink",
        "tier", "rate", "adjRate", "spotRate", "series", "fut", "opt", "phy", "a",
        *PF_TYPES, *OTHER_PF,
    }
)  # fmt: skip
#: ``scanRate`` children and the :class:`~marginsim.io.span.records.ScanRates` fields they fill.
SCAN_FIELDS = (
    ("priceScan", "price_scan"),
    ("priceScanPct", "price_scan_pct"),
    ("volScan", "vol_scan"),
    ("volScanPct", "vol_scan_pct"),
    ("priceScanDown", "price_scan_down"),
    ("priceScanDownPct", "price_scan_down_pct"),
    ("volScanDown", "vol_scan_down"),
    ("volScanDownPct", "vol_scan_down_pct"),
)
#: The scan rates of a contract or series without ``scanRate``.
NAN_SCAN = (math.nan,) * len(SCAN_FIELDS)
#: The int64 behind ``datetime64`` NaT (a ``setlDate`` that is absent).
NAT_DAYS = int(np.iinfo(np.int64).min)
#: Default bound on the magnitude of every number of a SPAN file (prices, strikes, contract value
#: factors, risk-array entries [currency per contract], scan ranges, rates, conversion factors...).
#: A number above it is refused as an input error: no clearing house publishes a price or a loss of
#: 10^15 currency units per contract, and bounded inputs keep every product the margin makes of them
#: (price x cvf x quantity x FX rate, sums over a book) finite. ``read_span_xml(max_abs=...)`` sets it.
MAX_ABS_VALUE = 1e15
#: Integers (ids, tier and point numbers, rate classes) must fit the int64 columns they go to.
_INT_MIN, _INT_MAX = int(np.iinfo(np.int64).min) + 1, int(np.iinfo(np.int64).max)

_EPOCH = date(1970, 1, 1)
_TEXT = attrgetter("text")


def read_only(a: np.ndarray) -> np.ndarray:
    """Mark an array read-only (the records are frozen; so are their arrays)."""
    a.flags.writeable = False
    return a


def first_children(elem: Element) -> dict[str, Element]:
    """Map each child tag to its first child element with that tag."""
    return {ch.tag: ch for ch in reversed(elem)}  # in reverse: the first one is written last


def repair_text(s: str) -> str:
    """Undo UTF-8 read as Latin-1 (the Takasbank file declares ISO-8859-1 but holds UTF-8)."""
    if s.isascii():
        return s
    try:
        return s.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return s


def parse_yyyymmdd(s: str) -> date:
    """A date written ``YYYYMMDD`` (or ISO ``YYYY-MM-DD``); ``ValueError`` if it is neither."""
    s = s.strip()
    if len(s) == 8 and s.isdigit():
        return date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    return date.fromisoformat(s)


def parse_created(s: str) -> datetime:
    """A date-time written ``YYYYMMDDhhmm[ss]``, ``YYYYMMDD`` or ISO; ``ValueError`` otherwise."""
    s = s.strip()
    for n, fmt in ((12, "%Y%m%d%H%M"), (14, "%Y%m%d%H%M%S"), (8, "%Y%m%d")):
        if len(s) == n and s.isdigit():
            return datetime.strptime(s, fmt)
    return datetime.fromisoformat(s)


def join(rel: str, tag: str) -> str:
    """The key path ``rel.tag`` (``tag`` if ``rel`` is empty)."""
    return f"{rel}.{tag}" if rel else tag


class FieldReader:
    """Reads the fields of the elements of one file, naming the key path in every error.

    Parameters
    ----------
    file
        The file read (for errors).
    rate_id
        Rate class (``r``) whose risk arrays and scan rates to take.
    max_abs
        Largest magnitude a number may have (:data:`MAX_ABS_VALUE`); NaN, infinities and larger
        numbers are errors.

    Attributes
    ----------
    tags, idx
        Tag and sibling index (from 1) of each open element, outermost first: the key path.
    n_points
        Scan points per risk array (from the ``pointDef`` of ``rate_id``; None until one is read:
        :data:`~marginsim.io.span.records.DEFAULT_N_POINTS`).
    """

    def __init__(self, file: str, rate_id: int, max_abs: float = MAX_ABS_VALUE) -> None:
        self.file = file
        self.rate_id = rate_id
        self.max_abs = float(max_abs)
        self.tags: list[str] = []
        self.idx: list[int] = []
        self.n_points: int | None = None
        self.date_cache: dict[str, int] = {}

    def key_path(self, rel: str = "") -> str:
        """The key path of the open element, plus ``rel`` (a path relative to it)."""
        parts = []
        for tag, i in zip(self.tags, self.idx, strict=True):
            parts.append(f"{tag}[{i}]" if (i > 1 or tag in REPEATING) else tag)
        out = ".".join(parts)
        if rel:
            out = f"{out}.{rel}" if out else rel
        return out

    def error(self, problem: str, rel: str = "") -> InputError:
        """The :class:`~marginsim.errors.InputError` for ``problem`` at :meth:`key_path` ``(rel)``."""
        return InputError(problem, file=self.file, key_path=self.key_path(rel))

    # ---- value access --------------------------------------------------------------------

    def text(self, ch: dict[str, Element], tag: str, rel: str = "", *, required: bool = False) -> str | None:
        """The stripped text of child ``tag`` of ``ch``; None if absent or empty.

        Parameters
        ----------
        ch
            The children of the element read, by tag (:func:`first_children`).
        tag
            The child's tag.
        rel
            Key path of the element read, relative to the open element (for errors).
        required
            Raise if the child is absent or empty.
        """
        el = ch.get(tag)
        t = None if el is None or el.text is None else el.text.strip()
        if not t:
            if required:
                what = "missing required element" if el is None else "empty required element"
                raise self.error(f"{what} <{tag}>", join(rel, tag) if el is not None else rel)
            return None
        return t

    def name(self, ch: dict[str, Element], tag: str, rel: str = "") -> str | None:
        """A name (:meth:`text` with UTF-8 read as Latin-1 repaired: :func:`repair_text`)."""
        t = self.text(ch, tag, rel)
        return None if t is None else repair_text(t)

    def num(
        self,
        ch: dict[str, Element],
        tag: str,
        rel: str = "",
        *,
        required: bool = False,
        default: float = math.nan,
    ) -> float:
        """A finite number of magnitude at most :attr:`max_abs`; ``default`` if absent (an error if
        ``required``); never NaN, inf or a number whose products would overflow."""
        el = ch.get(tag)
        if el is None:
            if not required:
                return default
        else:
            # fast path: float() ignores the surrounding whitespace that the careful path strips;
            # the bound test is False for NaN too
            try:
                v = float(el.text)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                pass
            else:
                lim = self.max_abs
                if -lim <= v <= lim:
                    return v
        return self._num(ch, tag, rel, required, default)

    def _num(self, ch: dict[str, Element], tag: str, rel: str, required: bool, default: float) -> float:
        """:meth:`num` for the absent, empty, non-numeric or out-of-range value: the error if any."""
        t = self.text(ch, tag, rel, required=required)
        if t is None:
            return default
        try:
            v = float(t)
        except ValueError:
            raise self.error(f"<{tag}> is not a number: {t[:40]!r}", join(rel, tag)) from None
        raise self.error(self.range_problem(f"<{tag}>", v, t), join(rel, tag))

    def range_problem(self, what: str, v: float, t: str | None, finite: str = "a finite number") -> str:
        """The problem with ``v`` (read from text ``t``): not finite, or above :attr:`max_abs`."""
        shown = repr((t or "").strip()[:40])
        if not math.isfinite(v):
            return f"{what} is not {finite}: {shown}"
        return f"{what} is out of range: {shown} (magnitude above {self.max_abs:g}, the limit on a SPAN file's numbers)"

    def int_(
        self,
        ch: dict[str, Element],
        tag: str,
        rel: str = "",
        *,
        required: bool = False,
        default: int | None = None,
    ) -> int | None:
        """An integer (``1.000000`` is accepted); ``default`` if absent (an error if ``required``)."""
        el = ch.get(tag)
        if el is None:
            if not required:
                return default
        else:
            try:  # fast path, as in :meth:`num`
                i = int(el.text)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                pass
            else:
                if _INT_MIN <= i <= _INT_MAX:
                    return i
        t = self.text(ch, tag, rel, required=required)
        if t is None:
            return default
        try:
            i = int(t)
        except ValueError:
            try:  # tolerate "1.000000"
                v = float(t)
            except ValueError:
                v = math.nan
            if not (math.isfinite(v) and v == int(v)):
                raise self.error(f"<{tag}> is not an integer: {t[:40]!r}", join(rel, tag)) from None
            i = int(v)
        if not _INT_MIN <= i <= _INT_MAX:
            raise self.error(f"<{tag}> is out of range: {t[:40]!r} (not a 64-bit integer)", join(rel, tag))
        return i

    def req_int(self, ch: dict[str, Element], tag: str, rel: str = "") -> int:
        """A required integer."""
        v = self.int_(ch, tag, rel, required=True)
        assert v is not None
        return v

    def bool_(self, ch: dict[str, Element], tag: str, rel: str = "") -> bool | None:
        """A boolean (``1/true/y/yes``, ``0/false/n/no``, any case); None if absent."""
        t = self.text(ch, tag, rel)
        if t is None:
            return None
        low = t.lower()
        if low in ("1", "true", "y", "yes"):
            return True
        if low in ("0", "false", "n", "no"):
            return False
        raise self.error(f"<{tag}> is not a boolean: {t[:40]!r}", join(rel, tag))

    def setl_date(self, ch: dict[str, Element], rel: str = "") -> int:
        """``setlDate`` as days since 1970-01-01 (the int64 of ``datetime64[D]``; NaT if absent)."""
        t = self.text(ch, "setlDate", rel)
        if t is None:
            return NAT_DAYS
        d = self.date_cache.get(t)
        if d is None:
            try:
                d = (parse_yyyymmdd(t) - _EPOCH).days
            except ValueError:
                raise self.error(
                    f"<setlDate> is not a date (YYYYMMDD): {t[:40]!r}", join(rel, "setlDate")
                ) from None
            self.date_cache[t] = d
        return d

    # ---- repeated sub-structures -------------------------------------------------------------

    def pick_by_rate(self, elem: Element, tag: str, rel: str) -> tuple[Element | None, str]:
        """The child ``tag`` (``ra``, ``scanRate``) whose ``r`` is ``self.rate_id``.

        A single child without ``r`` is taken as is. Children for other rate classes are
        ignored; if there are children but none for ``self.rate_id``, that is an error (the
        reader does not mix rate classes).
        """
        found = elem.findall(tag)
        if not found:
            return None, rel
        many = len(found) > 1
        for i, c in enumerate(found, 1):
            r = c.find("r")
            rtext = None if r is None or r.text is None else r.text.strip()
            if rtext is None and not many:
                return c, join(rel, tag)
            try:
                ok = rtext is not None and int(rtext) == self.rate_id
            except ValueError:
                raise self.error(
                    f"<r> is not an integer: {(rtext or '')[:40]!r}",
                    join(rel, f"{tag}[{i}].r" if many else f"{tag}.r"),
                ) from None
            if ok:
                return c, join(rel, f"{tag}[{i}]" if many else tag)
        raise self.error(
            f"no <{tag}> for rate id {self.rate_id} (found {len(found)} for other rate ids)", rel
        )

    def scan_rate(self, elem: Element, rel: str = "") -> tuple[float, ...]:
        """The ``scanRate`` of ``rate_id`` of ``elem`` in :data:`SCAN_FIELDS` order (NaN: absent).

        Units: ``priceScan`` currency per contract, ``priceScanPct`` a fraction of the price,
        ``volScan`` decimal vol, ``volScanPct`` a fraction of the vol.
        """
        sr, srel = self.pick_by_rate(elem, "scanRate", rel)
        if sr is None:
            return NAN_SCAN
        ch = first_children(sr)
        return tuple(self.num(ch, tag, srel) for tag, _ in SCAN_FIELDS)

    def risk_array(self, elem: Element, rel: str = "") -> tuple[list[float], float]:
        """The risk array ``ra`` of ``rate_id`` of a contract: its values and its composite delta.

        Returns
        -------
        (values, composite_delta)
            :attr:`n_points` losses of one long contract (positive = loss) [currency per contract]
            (NaN if the contract has no ``ra``) and the composite delta ``d`` [per contract].
        """
        n = self.n_points if self.n_points is not None else DEFAULT_N_POINTS
        ra, rrel = self.pick_by_rate(elem, "ra", rel)
        if ra is None:
            return [math.nan] * n, math.nan
        # the values in bulk: the ``a`` children in C, converted by map() in C
        texts: list[str | None] = list(map(_TEXT, ra.findall("a")))
        try:
            vals = list(map(float, texts))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            for i, t in enumerate(texts, 1):
                try:
                    float(t)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise self.error(
                        f"risk array value is not a number: {(t or '').strip()[:40]!r}",
                        join(rrel, f"a[{i}]"),
                    ) from None
            raise  # pragma: no cover
        # one C-level pass: the sum of magnitudes is NaN, inf or large only if some entry may be
        if not sum(map(abs, vals)) <= self.max_abs:
            lim = self.max_abs
            for i, v in enumerate(vals, 1):
                if not -lim <= v <= lim:
                    raise self.error(
                        self.range_problem("risk array value", v, texts[i - 1], "finite"),
                        join(rrel, f"a[{i}]"),
                    )
        if len(vals) != n:
            raise self.error(f"risk array has {len(vals)} values, expected {n} (one per scan point)", rrel)
        ds = ra.findall("d")
        if not ds:
            raise self.error("missing required element <d> (composite delta)", rrel)
        d_el = ds[-1]
        cd = self.num({"d": d_el}, "d", rrel, required=True)
        return vals, cd

    def rates(self, elem: Element, rel: str, tag: str = "rate") -> tuple[Rate, ...]:
        """The ``rate`` children (``r``, ``val``) of ``elem``, in file order."""
        out = []
        for i, r in enumerate((c for c in elem if c.tag == tag), 1):
            ch = first_children(r)
            rrel = join(rel, f"{tag}[{i}]")
            out.append(Rate(self.req_int(ch, "r", rrel), self.num(ch, "val", rrel, required=True)))
        return tuple(out)

    def und(self, el: Element | None, rel: str) -> tuple[int, int, float]:
        """An underlying contract ``undC``: (portfolio id, contract id, ratio ``i``); (-1, -1, NaN) if none."""
        if el is None:
            return -1, -1, math.nan
        ch = first_children(el)
        return (
            self.req_int(ch, "pfId", rel),
            self.req_int(ch, "cId", rel),
            self.num(ch, "i", rel, default=1.0),
        )
