"""Streaming, hardened reader of SPAN XML risk-parameter files (CME SPAN XML format 4.00, ``.spn``).

Clearing houses publish their SPAN parameters and risk arrays daily as one XML file (tens of
megabytes for a large exchange). :func:`read_span_xml` reads such a file **streaming**: it feeds
the file in 64 KiB blocks to the C-accelerated :class:`xml.etree.ElementTree.XMLParser`, and
after each block walks the partial tree, turns every complete contract, portfolio and combined
commodity into plain data and removes its element, so memory stays bounded by the largest single
portfolio (plus one block), not by the file. Only record- and portfolio-level elements are
handled one by one in Python; the bulk (risk-array values, contract fields) is read per record.

Every problem with the file (malformed or truncated XML, a missing required element, a
non-numeric value, a forbidden DTD, an undecodable encoding) is raised as
:class:`marginsim.errors.InputError` naming the file and an XML key path such as
``spanFile.pointInTime.clearingOrg.exchange[1].futPf[5].fut[1].ra.a[3]``. Indices count from
1 among siblings with the same tag, as in XPath; the index is shown for elements that may
repeat.

Hardening
---------
Document type declarations (DTDs) are refused outright, so entity expansion ("billion laughs",
quadratic blow-up) and external entities or DTDs (XXE, network or file access) cannot happen:

* **Prolog guard.** Every block is first given to defusedxml's parser
  (:class:`defusedxml.ElementTree.XMLParser` with ``forbid_dtd``, ``forbid_entities`` and
  ``forbid_external``: its expat handlers for the DOCTYPE start, entity declarations, unparsed
  entities and external entity references raise), and only then to the C parser, until the
  guard reaches the start tag of the root element. A DOCTYPE may only appear in the prolog,
  before the root element (XML 1.0, production ``prolog``). The guard is the same expat library
  with the same settings (no forced encoding, namespace separator ``}``) reading the same
  bytes, so it decodes the prolog exactly as the C parser will (BOMs, UTF-16, declared
  encodings), and it has read every byte before the C parser receives it: a DOCTYPE is refused
  at its ``[`` or closing ``>``, before any declaration in it is read, while the C parser has
  at most seen the part before that (a DOCTYPE that straddles two blocks) and has expanded
  nothing. The guard stops at the root start tag, so its cost does not grow with the file.
* **After the root start tag** expat rejects a DOCTYPE or an entity declaration as
  not well-formed, so no entity other than the five predefined ones and character references
  can exist, and a reference to any other entity is an "undefined entity" error. The C parser
  installs no external-entity handler (expat itself never opens files or URLs), and expat
  >= 2.4 (2.5.0 here) also limits entity amplification: defence in depth for what the guard
  already refuses.

The records are those of :mod:`marginsim.io.span.records` (units there); the fields are read by
:mod:`~marginsim.io.span.fields`, the definitions, portfolios and combined commodities by
:mod:`~marginsim.io.span.definitions`, :mod:`~marginsim.io.span.portfolios` and
:mod:`~marginsim.io.span.commodities`, and the partial tree is walked by :mod:`~marginsim.io.span.walk`.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from os import PathLike
from pathlib import Path
from typing import IO, Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder, XMLParser

import defusedxml.ElementTree as _DET  # type: ignore[import-untyped, unused-ignore]
from defusedxml import DefusedXmlException  # type: ignore[import-untyped, unused-ignore]

from marginsim.errors import InputError

from . import definitions
from .checks import check_span_file
from .commodities import cc_def, d_spread
from .fields import MAX_ABS_VALUE, OPTION_PF, OTHER_PF, PF_TYPES
from .portfolios import PortfolioBuilder
from .records import (
    DEFAULT_N_POINTS,
    CombinedCommodity,
    ConversionRate,
    Currency,
    DeltaSpread,
    Exchange,
    PbRateDef,
    PointDef,
    SpanFile,
)
from .walk import HOLDER, TreeWalker

__all__ = ["SpanReader", "not_span_xml", "read_span_xml"]

#: Bytes read and parsed per step (the partial tree is walked after each).
_BLOCK_SIZE = 1 << 16

#: Header children kept until their container ends (everything else unknown is dropped).
HEADERS: dict[str, frozenset[str]] = {
    "spanFile": frozenset({"fileFormat", "created", "spanVersion"}),
    "definitions": frozenset(),
    "pointInTime": frozenset({"date", "isSetl", "setlQualifier"}),
    "clearingOrg": frozenset({"ec", "name", "isContractScale", "isNetMargin", "finalizeMeth"}),
    "exchange": frozenset({"exch", "name"}),
    "pf": frozenset(
        {
            "pfId", "pfCode", "name", "currency", "cvf", "priceDl", "priceFmt", "valueMeth",
            "priceMeth", "setlMeth", "undPf", "exercise", "strikeDl", "strikeFmt", "cab",
            "priceModel",
        }
    ),
    "series": frozenset(
        {"pe", "v", "setlDate", "t", "cvf", "svf", "sc", "undC", "intrRate", "divRate", "scanRate"}
    ),
    "interSpreads": frozenset(),
    "superSpreads": frozenset(),
}  # fmt: skip


#: Bytes looked at to tell a SPAN XML file from a compressed or a fixed-width (pa2) one.
_SNIFF_BYTES = 512
#: Leading bytes of compressed files, and the command that decompresses them.
_COMPRESSED = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"PK\x03\x04", "zip", "unzip"),
    (b"BZh", "bzip2", "bunzip2"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
)
#: A line of PC-SPAN's fixed-width formats (pa2, pa5...): a record type code (``0 ``, ``1 ``, ``B ``,
#: ``81``...: a digit and a digit or space, or a capital and a space) in columns 1-2, then printable ASCII.
_PA2_LINE = re.compile(rb"(?:[0-9][0-9 ]|[A-Z] )[ -~]*\r?")


def not_span_xml(head: bytes) -> str | None:
    """What the first bytes ``head`` of a file say it is when it cannot be SPAN XML; None otherwise.

    A compressed file (gzip, zip, bzip2, xz, zstd) is not read: decompress it first (a SPAN file
    compresses tens of times, and reading it here would lose the bound that the file's size puts on
    what is parsed). A file in PC-SPAN's fixed-width text formats (pa2, pa5...: lines starting with
    a two-character record type code) is not supported yet. Anything else is left to the XML
    parser (its errors name the line and column).
    """
    for magic, kind, tool in _COMPRESSED:
        if head.startswith(magic):
            return (
                f"a {kind}-compressed file: decompress it first ({tool}) and give the SPAN XML "
                "(.spn) file it holds"
            )
    if head.lstrip(b" \t\r\n").startswith(b"<") or head.startswith(
        (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
    ):
        return None
    lines = head.split(b"\n", 2)[:2]
    records = [ln for ln in lines if len(ln) >= 4 and _PA2_LINE.fullmatch(ln)]
    # the exchange complex header ("0 ") is the first record of a pa2 file; else two record lines
    if records and (lines[0].startswith(b"0 ") or len(records) == 2) and records[0] is lines[0]:
        return (
            f"a fixed-width PC-SPAN file (pa2 / pa5 text, record type {lines[0][:2].decode('ascii')!r}): "
            "pa2 is not supported yet, use the XML (.spn) file"
        )
    return None


class _RootElementReached(Exception):
    """Raised by the prolog guard at the root element's start tag: the prolog is over."""


class _PrologGuardTarget:
    """Parser target of the prolog guard: stops it at the start tag of the root element."""

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        raise _RootElementReached

    def close(self) -> None:
        return None


class SpanReader(TreeWalker):
    """One pass over one SPAN XML file: the schema of the walk, the records it collects, the parse.

    Parameters
    ----------
    path
        The file to read.
    rate_id
        Rate class (``r``) whose risk arrays and scan rates to take.
    max_abs
        Largest magnitude of a number of the file (:data:`~marginsim.io.span.fields.MAX_ABS_VALUE`).
    """

    def __init__(self, path: Path, rate_id: int, max_abs: float = MAX_ABS_VALUE) -> None:
        super().__init__(str(path), rate_id, max_abs)
        self.path = path
        self.file_format: str | None = None
        self.created: datetime | None = None
        self.business_date: date | None = None
        self.is_settlement: bool | None = None
        self.setl_qualifier: str | None = None
        self.clearing_org: str | None = None
        self.clearing_org_name: str | None = None
        self.is_contract_scale: bool | None = None
        self.currencies: dict[str, Currency] = {}
        self.conversion_rates: list[ConversionRate] = []
        self.pb_rate_defs: list[PbRateDef] = []
        self.point_defs: list[PointDef] = []
        self.exchanges: list[Exchange] = []
        self.ccs: dict[str, CombinedCommodity] = {}
        self.inter_spreads: list[DeltaSpread] = []
        self.super_spreads: list[DeltaSpread] = []
        self.ignored: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.seen_pit = False
        self.seen_co = False
        self.portfolios = PortfolioBuilder(self)

    # ---- the schema -------------------------------------------------------------------------------

    def kind_of(self, tag: str) -> str:
        """What to do with a new child ``tag`` of the element on top of the stack (no side effects)."""
        parent = self.kinds[-1] if self.kinds else ""
        if parent == "":
            return "spanFile"  # :meth:`on_start` refuses another root
        if parent == "spanFile":
            if tag == "definitions" or tag == "pointInTime":
                return tag
        elif parent == "definitions":
            if tag == "currencyDef":
                return "record"
        elif parent == "pointInTime":
            if tag == "clearingOrg":
                return "clearingOrg"
        elif parent == "clearingOrg":
            if tag == "exchange":
                return "exchange"
            if tag in ("ccDef", "curConv", "pbRateDef", "pointDef"):
                return "record"
            if tag == "interSpreads" or tag == "superSpreads":
                return tag
        elif parent == "exchange":
            if tag in PF_TYPES:
                return "pf"
            if tag in OTHER_PF:
                return "skip"
        elif parent == "pf":
            pf_tag = self.portfolios.tag
            if (tag == "phy" and pf_tag == "phyPf") or (tag == "fut" and pf_tag == "futPf"):
                return "record"
            if tag == "series" and pf_tag in OPTION_PF:
                return "series"
        elif parent == "series":
            if tag == "opt":
                return "record"
        elif parent == "interSpreads" or parent == "superSpreads":
            if tag == "dSpread":
                return "record"
        return "leaf" if tag in HEADERS.get(parent, ()) else "skip"

    def on_start(self, tag: str, kind: str) -> None:
        """Check a start tag (one root ``spanFile``, one ``pointInTime`` and ``clearingOrg``) and
        open the exchange or portfolio it starts."""
        if not self.kinds and tag != "spanFile":
            raise self.error(f"not a SPAN XML file: the root element is <{tag}>, expected <spanFile>")
        if kind == "pointInTime":
            if self.seen_pit:
                raise self.error("more than one <pointInTime> is not supported")
            self.seen_pit = True
        elif kind == "clearingOrg":
            if self.seen_co:
                raise self.error("more than one <clearingOrg> is not supported")
            self.seen_co = True
        elif kind == "exchange":
            self.portfolios.start_exchange()
        elif kind == "pf":
            self.portfolios.start(tag)
        elif kind == "skip":
            if tag in OTHER_PF and self.kinds[-1] == "exchange":
                self.ignored[tag] = self.ignored.get(tag, 0) + 1
            key = f"{self.tags[-2] if len(self.tags) > 1 else ''}/{tag}"
            self.skipped[key] = self.skipped.get(key, 0) + 1

    def on_end(self, elem: Element, kind: str) -> None:
        """Turn a complete record or container (on top of the stack) into data."""
        tag = elem.tag
        if kind == "record":
            parent = self.kinds[-2]
            if tag == "fut":
                self.portfolios.fut(elem)
            elif tag == "opt":
                self.portfolios.opt(elem)
            elif tag == "phy":
                self.portfolios.phy(elem)
            elif tag == "ccDef":
                cc = cc_def(self, elem, self.ccs)
                self.ccs[cc.code] = cc
            elif tag == "dSpread" and parent == "interSpreads":
                self.inter_spreads.append(d_spread(self, elem, ""))
            elif tag == "dSpread" and parent == "superSpreads":
                self.super_spreads.append(d_spread(self, elem, ""))
            elif tag == "currencyDef":
                c = definitions.currency_def(self, elem)
                self.currencies[c.code] = c
            elif tag == "curConv":
                self.conversion_rates.append(definitions.conversion_rate(self, elem))
            elif tag == "pbRateDef":
                self.pb_rate_defs.append(definitions.pb_rate_def(self, elem))
            elif tag == "pointDef":
                self.on_point_def(elem)
        elif kind == "series":
            self.portfolios.series(elem)
        elif kind == "pf":
            # the exchange code precedes its portfolios in the schema; if it comes later, it is
            # filled in when the exchange ends
            exch_el = self.elems[-2].find("exch")
            self.portfolios.end(elem, "" if exch_el is None or exch_el.text is None else exch_el.text.strip())
        elif kind == "exchange":
            self.exchanges.append(self.portfolios.end_exchange(elem))
        elif kind == "clearingOrg":
            self.clearing_org, self.clearing_org_name, self.is_contract_scale = definitions.clearing_org(
                self, elem
            )
        elif kind == "pointInTime":
            self.business_date, self.is_settlement, self.setl_qualifier = definitions.point_in_time(
                self, elem
            )
        elif kind == "spanFile":
            self.file_format, self.created = definitions.file_header(self, elem)

    def on_point_def(self, e: Element) -> None:
        """A clearing-org ``pointDef``: that of :attr:`rate_id` (else the first) sets :attr:`n_points`,
        which may not change once risk arrays have been read."""
        pd = definitions.point_def(self, e)
        self.point_defs.append(pd)
        if self.n_points is None or pd.rate_id == self.rate_id:
            n_before = self.n_points if self.n_points is not None else DEFAULT_N_POINTS
            if self.portfolios.n_contracts and pd.n_points != n_before:
                raise self.error(
                    f"<pointDef> with {pd.n_points} scan points comes after contracts whose risk "
                    f"arrays were read with {n_before} points"
                )
            self.n_points = pd.n_points

    # ---- the parse ----------------------------------------------------------------------------------

    def run(self) -> SpanFile:
        """Read the file: its :class:`~marginsim.io.span.records.SpanFile`."""
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"cannot open file: {exc.strerror or exc}", file=self.file) from None
        with fh:
            problem = not_span_xml(fh.peek(_SNIFF_BYTES)[:_SNIFF_BYTES])
            if problem is not None:
                raise InputError(problem, file=self.file, key_path="line 1")
            self._parse(fh)
        return self.result()

    def _parse(self, fh: IO[bytes]) -> None:
        # The prolog guard: defusedxml's parser, fed every block before the C parser gets it,
        # until it reaches the root element's start tag (see the module docstring).
        guard: Any = _DET.XMLParser(
            target=_PrologGuardTarget(), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        builder = TreeBuilder()
        # a holder above the document root: a handle on the partial tree while it is built
        self.doc = builder.start(HOLDER, {})
        parser = XMLParser(target=builder)
        try:
            while True:
                block = fh.read(_BLOCK_SIZE)
                if guard is not None:
                    try:
                        if block:
                            guard.feed(block)
                        else:
                            guard.close()  # raises: the document ended before its root element
                    except _RootElementReached:
                        guard = None
                    except DefusedXmlException as exc:  # a ValueError: caught before those below
                        raise InputError(
                            f"forbidden XML construct ({type(exc).__name__}): SPAN files must not "
                            "contain a document type declaration or entities; nothing was expanded",
                            file=self.file,
                            key_path=self.key_path() or "prolog",
                        ) from None
                    except (ValueError, LookupError) as exc:
                        raise self._decode_error(exc) from None
                if not block:
                    break
                try:
                    parser.feed(block)
                except (ValueError, LookupError) as exc:  # ParseError is not a ValueError
                    raise self._decode_error(exc) from None
                self.walk(0, False)
            try:
                parser.close()
            except (ValueError, LookupError) as exc:
                raise self._decode_error(exc) from None
        except ParseError as exc:
            self._parse_error(exc, builder)
        self.walk(0, True)

    def _decode_error(self, exc: Exception) -> InputError:
        """The error for bytes the parser cannot decode: an unknown or multi-byte declared
        encoding (``LookupError``, ``ValueError``) or undecodable text (``UnicodeError``)."""
        return InputError(f"cannot decode the XML: {exc}", file=self.file, key_path=self.key_path())

    def _parse_error(self, exc: ParseError, builder: TreeBuilder) -> None:
        """Raise the :class:`InputError` for a parse error, with the key path of where it stopped.

        The parser is dead; its tree builder still holds the elements left open, innermost
        first: closing them one by one names them. The elements read before the error are then
        turned into data as usual (a bad value there is reported first, as it comes first in
        the file), which leaves the stack at the open record or container.
        """
        open_ids = set()
        # the C builder closes its current element whatever the tag; the holder is the last
        while (el := builder.end(HOLDER)) is not self.doc:
            open_ids.add(id(el))
        self.walk(0, False, frozenset(open_ids))
        line, col = getattr(exc, "position", (0, 0))
        msg = str(exc)
        if "no element found" in msg or ("unclosed token" in msg and self.kinds):
            problem = f"the XML ends early (truncated file?): {msg}"
        else:
            problem = f"malformed XML: {msg}"
        where = self.key_path()
        raise InputError(problem, file=self.file, key_path=where or f"line {line}, column {col}") from None

    def result(self) -> SpanFile:
        """The records read, checked for the required ``pointInTime`` and ``clearingOrg`` and as a
        whole (:func:`~marginsim.io.span.checks.check_span_file`)."""
        if not self.seen_pit or self.business_date is None:
            raise InputError("missing required element <pointInTime>", file=self.file, key_path="spanFile")
        if not self.seen_co or self.clearing_org is None:
            raise InputError(
                "missing required element <clearingOrg>", file=self.file, key_path="spanFile.pointInTime"
            )
        sf = SpanFile(
            path=self.path,
            file_format=self.file_format,
            created=self.created,
            business_date=self.business_date,
            is_settlement=self.is_settlement,
            settlement_qualifier=self.setl_qualifier,
            clearing_org=self.clearing_org,
            clearing_org_name=self.clearing_org_name,
            is_contract_scale=self.is_contract_scale,
            currencies=self.currencies,
            conversion_rates=tuple(self.conversion_rates),
            pb_rate_defs=tuple(self.pb_rate_defs),
            point_defs=tuple(self.point_defs),
            exchanges=tuple(self.exchanges),
            combined_commodities=self.ccs,
            inter_spreads=tuple(self.inter_spreads),
            ignored_portfolios=self.ignored,
            skipped_elements=self.skipped,
            super_spreads=tuple(self.super_spreads),
        )
        check_span_file(sf)
        return sf


def read_span_xml(path: str | PathLike[str], *, rate_id: int = 1, max_abs: float = MAX_ABS_VALUE) -> SpanFile:
    """Read a SPAN XML risk-parameter file (format 4.00) streaming.

    Parameters
    ----------
    path
        The ``.spn`` / ``.xml`` file (uncompressed).
    rate_id
        Rate class (``r``) whose risk arrays and scan rates to take when a contract has several
        (Takasbank writes one, ``r = 1``).
    max_abs
        Largest magnitude a number of the file may have (default
        :data:`~marginsim.io.span.fields.MAX_ABS_VALUE`, 1e15: prices [price units], contract value
        factors, risk-array entries [currency per contract], rates...); a larger one, NaN or an
        infinity is an :class:`InputError`, so that no product of them overflows.

    Returns
    -------
    SpanFile
        Currencies, point definitions, exchanges with their portfolios and contract arrays,
        combined commodities and inter-commodity spreads. Risk arrays are losses of one long
        contract (positive = loss) in the portfolio currency per contract.

    Raises
    ------
    InputError
        For any problem with the file: cannot be opened, malformed or truncated XML, a DTD or
        entity (refused before anything is expanded), a missing required element (``pointDef``
        included), a value that is not a number, not finite or above ``max_abs``, a risk array
        with the wrong number of points, scan points that are not numbered 1..n, something
        defined twice (a contract, a portfolio id, a tier) or a reference to nothing (a
        ``pfLink``, a spread leg: :mod:`~marginsim.io.span.checks`). The error names the file and
        the XML key path.

    Notes
    -----
    The cyclic garbage collector is paused while the file is read and then restored to its
    previous state (see :func:`_cyclic_gc_paused`): the reader makes no reference cycles, and
    the collections that its many short-lived elements would trigger cost more than the parse.
    """
    reader = SpanReader(Path(path), rate_id, max_abs)
    with _cyclic_gc_paused():
        return reader.run()


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (restoring its previous state).

    The reader creates tens of thousands of short-lived elements, each of which counts towards
    the collector's thresholds, so it would traverse the caller's whole heap again and again
    (a full read of the Takasbank file triggers ~120 young and one full collection, which cost
    more than the parse itself when numpy and the rest of the package are loaded). The reader
    makes no reference cycles -- elements, lists, arrays and frozen dataclasses are freed by
    reference counting as soon as they are dropped -- so pausing the collector changes no
    memory bound; it only skips those traversals.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
