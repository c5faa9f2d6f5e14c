"""The portfolios of a SPAN XML file: contracts read one by one into columns, arrays at the portfolio's end.

A portfolio (``phyPf``, ``futPf``, or an option portfolio ``oopPf`` / ``oofPf`` / ``ooePf`` /
``oocPf`` with its ``series``) can hold thousands of contracts. :class:`PortfolioBuilder` turns
each complete contract element into one row of compact typed buffers (:class:`Columns`), so the
element can be dropped at once; when the portfolio ends, the buffers become the read-only numpy
arrays of its :mod:`~marginsim.io.span.records`, and when the exchange ends, its portfolios
become an :class:`~marginsim.io.span.records.Exchange`.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import replace
from typing import Any, TypeVar
from xml.etree.ElementTree import Element

import numpy as np

from .fields import PF_TYPES, SCAN_FIELDS, FieldReader, first_children, read_only
from .records import (
    DEFAULT_N_POINTS,
    Exchange,
    FuturesContracts,
    FuturesPortfolio,
    OptionContracts,
    OptionPortfolio,
    OptionSeries,
    PhysicalContracts,
    PhysicalPortfolio,
    ScanRates,
    UnderlyingPf,
)

__all__ = ["COMMON_COLS", "FUT_COLS", "OPT_COLS", "SERIES_COLS", "Columns", "FloatChunks", "PortfolioBuilder"]

_INT_COLS = frozenset({"ids", "und_pf", "und_c", "series_index", "setl", "is_call"})
_STR_COLS = frozenset({"period"})

#: Columns of every contract (``cd``: composite delta).
COMMON_COLS = ("ids", "period", "price", "delta", "volatility", "cvf", "value", "scale", "cd")
#: Columns of a future (``setl``: settlement date as days since 1970-01-01; ``und_*``: ``undC``).
FUT_COLS = (*COMMON_COLS, "setl", "t", "und_pf", "und_c", "und_i")
#: Columns of an option (its series-level columns are in :data:`SERIES_COLS`).
OPT_COLS = (*COMMON_COLS, "series_index", "is_call", "strike", "svf")
#: Columns of an option series (``intr``, ``div``: interest rate and dividend yield, decimal).
SERIES_COLS = (
    "period", "volatility", "setl", "t", "cvf", "svf", "scale", "und_pf", "und_c", "und_i",
    "intr", "div",
)  # fmt: skip

_P = TypeVar("_P", PhysicalPortfolio, FuturesPortfolio, OptionPortfolio)


class FloatChunks:
    """Floats appended in blocks of about :attr:`BLOCK` values (the risk arrays of a portfolio).

    One growing buffer would be copied at each reallocation and once more into its numpy array,
    holding the column twice at the peak; blocks are moved into the array one by one and freed
    as they go, so the peak is the array plus one block (1 MiB).
    """

    BLOCK = 1 << 17

    def __init__(self) -> None:
        self.blocks: list[array[float]] = []
        self.last = array("d")
        self.n = 0

    def extend(self, values: list[float]) -> None:
        """Append ``values``."""
        self.last.extend(values)
        self.n += len(values)
        if len(self.last) >= self.BLOCK:
            self.blocks.append(self.last)
            self.last = array("d")

    def __len__(self) -> int:
        return self.n

    def to_numpy(self) -> np.ndarray:
        """Every value in order as a float64 array; the blocks are emptied (freed) on the way."""
        out = np.empty(self.n, dtype=np.float64)
        pos = 0
        self.blocks.append(self.last)
        self.last = array("d")
        self.blocks.reverse()
        while self.blocks:
            block = self.blocks.pop()
            out[pos : pos + len(block)] = np.frombuffer(block, dtype=np.float64)
            pos += len(block)
            del block
        self.n = 0
        return out


class Columns:
    """Per-portfolio column accumulators.

    Numbers go into compact typed buffers (``array('d')`` / ``array('q')``: 8 bytes a value) until
    the portfolio ends and they become numpy arrays; ``setl`` holds days since 1970-01-01.

    Attributes
    ----------
    cols
        One buffer per column name (a list for the string columns).
    ra
        The risk arrays, row after row [currency per contract], in blocks (:class:`FloatChunks`).
    scan
        The scan rates, row after row (:data:`~marginsim.io.span.fields.SCAN_FIELDS` order).
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.cols: dict[str, Any] = {
            n: [] if n in _STR_COLS else array("q") if n in _INT_COLS else array("d") for n in names
        }
        self.ra = FloatChunks()
        self.scan = array("d")


def _scan_rates(rows: array[float], n: int) -> ScanRates:
    arr = np.array(rows, dtype=np.float64).reshape(n, len(SCAN_FIELDS))
    return ScanRates(**{name: read_only(arr[:, j].copy()) for j, (_, name) in enumerate(SCAN_FIELDS)})


def _with_exchange(pfs: list[_P], code: str) -> tuple[_P, ...]:
    """The portfolios with exchange ``code`` (read before the exchange code, they have ``""``)."""
    return tuple(p if p.exchange == code else replace(p, exchange=code) for p in pfs)


class PortfolioBuilder:
    """Builds the portfolios of the open exchange from its complete contract elements.

    Parameters
    ----------
    f
        The field reader of the file (key paths, values, risk arrays; its ``n_points``).

    Attributes
    ----------
    tag
        Tag of the open portfolio (``""`` before the first).
    n_contracts
        Contracts read so far in the file (risk arrays read with the current ``n_points``).
    """

    def __init__(self, f: FieldReader) -> None:
        self.f = f
        self.tag = ""
        self.n_contracts = 0
        self.cols: Columns | None = None
        self.series_cols: Columns | None = None
        self.n_series = 0
        self.physical: list[PhysicalPortfolio] = []
        self.futures: list[FuturesPortfolio] = []
        self.options: list[OptionPortfolio] = []

    # ---- contracts -----------------------------------------------------------------------------

    def contract_common(
        self, e: Element, cols: Columns, *, price_required: bool = False
    ) -> dict[str, Element]:
        """Read the columns every contract has (and its risk array); return its children by tag."""
        f = self.f
        ch = first_children(e)
        c = cols.cols
        c["ids"].append(f.req_int(ch, "cId"))
        c["price"].append(f.num(ch, "p", required=price_required))
        c["delta"].append(f.num(ch, "d"))
        c["volatility"].append(f.num(ch, "v"))
        c["cvf"].append(f.num(ch, "cvf"))
        c["value"].append(f.num(ch, "val"))
        c["scale"].append(f.num(ch, "sc", default=1.0))
        vals, cd = f.risk_array(e)
        self.n_contracts += 1
        cols.ra.extend(vals)
        c["cd"].append(cd)
        return ch

    def phy(self, e: Element) -> None:
        """A complete ``phy`` (physical contract) of the open ``phyPf``."""
        cols = self.cols
        assert cols is not None
        ch = self.contract_common(e, cols)
        cols.cols["period"].append(self.f.text(ch, "pe") or "")
        cols.scan.extend(self.f.scan_rate(e))

    def fut(self, e: Element) -> None:
        """A complete ``fut`` (future) of the open ``futPf``."""
        f = self.f
        cols = self.cols
        assert cols is not None
        ch = self.contract_common(e, cols)
        c = cols.cols
        c["period"].append(f.text(ch, "pe", required=True))
        c["setl"].append(f.setl_date(ch))
        c["t"].append(f.num(ch, "t"))
        pf, cid, i = f.und(ch.get("undC"), "undC")
        c["und_pf"].append(pf)
        c["und_c"].append(cid)
        c["und_i"].append(i)
        cols.scan.extend(f.scan_rate(e))

    def opt(self, e: Element) -> None:
        """A complete ``opt`` (option) of the open ``series``."""
        f = self.f
        cols = self.cols
        assert cols is not None
        ch = self.contract_common(e, cols, price_required=True)
        c = cols.cols
        o = (f.text(ch, "o", required=True) or "").upper()
        if o not in ("C", "P"):
            raise f.error(f"<o> must be C or P, got {o[:10]!r}", "o")
        c["is_call"].append(o == "C")
        c["strike"].append(f.num(ch, "k", required=True))
        c["svf"].append(f.num(ch, "svf"))
        c["series_index"].append(self.n_series)

    def series(self, e: Element) -> None:
        """A complete ``series`` (its options have been read one by one: :meth:`opt`)."""
        f = self.f
        s = self.series_cols
        assert s is not None
        ch = first_children(e)
        c = s.cols
        c["period"].append(f.text(ch, "pe", required=True))
        c["volatility"].append(f.num(ch, "v"))
        c["setl"].append(f.setl_date(ch))
        c["t"].append(f.num(ch, "t"))
        c["cvf"].append(f.num(ch, "cvf"))
        c["svf"].append(f.num(ch, "svf"))
        c["scale"].append(f.num(ch, "sc", default=1.0))
        pf, cid, i = f.und(ch.get("undC"), "undC")
        c["und_pf"].append(pf)
        c["und_c"].append(cid)
        c["und_i"].append(i)
        ir = ch.get("intrRate")
        c["intr"].append(math.nan if ir is None else f.num(first_children(ir), "val", "intrRate"))
        dv = ch.get("divRate")
        c["div"].append(math.nan if dv is None else f.num(first_children(dv), "val", "divRate"))
        s.scan.extend(f.scan_rate(e))
        self.n_series += 1

    # ---- portfolios and exchanges ----------------------------------------------------------------

    def start_exchange(self) -> None:
        """An ``exchange`` starts: no portfolio yet."""
        self.physical, self.futures, self.options = [], [], []

    def start(self, tag: str) -> None:
        """A portfolio with tag ``tag`` (``phyPf``, ``futPf``, an option portfolio tag) starts."""
        self.tag = tag
        if tag == "phyPf":
            self.cols = Columns(COMMON_COLS)
        elif tag == "futPf":
            self.cols = Columns(FUT_COLS)
        else:
            self.cols = Columns(OPT_COLS)
            self.series_cols = Columns(SERIES_COLS)
            self.n_series = 0

    def _common_arrays(self, cols: Columns, pf_cvf: float) -> dict[str, Any]:
        c = cols.cols
        n = len(c["ids"])
        npts = self.f.n_points if self.f.n_points is not None else DEFAULT_N_POINTS
        cvf = np.array(c["cvf"], dtype=np.float64)
        cvf[np.isnan(cvf)] = pf_cvf
        return {
            "ids": read_only(np.array(c["ids"], dtype=np.int64)),
            "period": read_only(np.array(c["period"], dtype=np.str_)),
            "price": read_only(np.array(c["price"], dtype=np.float64)),
            "delta": read_only(np.array(c["delta"], dtype=np.float64)),
            "volatility": read_only(np.array(c["volatility"], dtype=np.float64)),
            "cvf": read_only(cvf),
            "value": read_only(np.array(c["value"], dtype=np.float64)),
            "scale": read_only(np.array(c["scale"], dtype=np.float64)),
            "risk_arrays": read_only(cols.ra.to_numpy().reshape(n, npts)),
            "composite_delta": read_only(np.array(c["cd"], dtype=np.float64)),
        }

    def end(self, e: Element, exchange: str) -> None:
        """The open portfolio ``e`` is complete: build it (on exchange ``exchange``, ``""`` if not yet known)."""
        f = self.f
        ch = first_children(e)
        tag = self.tag
        cols = self.cols
        assert cols is not None
        und_el = ch.get("undPf")
        underlying = None
        if und_el is not None:
            uch = first_children(und_el)
            underlying = UnderlyingPf(
                exchange=f.text(uch, "exch", "undPf", required=True) or "",
                pf_id=f.req_int(uch, "pfId", "undPf"),
                pf_code=f.text(uch, "pfCode", "undPf"),
                pf_type=f.text(uch, "pfType", "undPf"),
                ratio=f.num(uch, "i", "undPf", default=1.0),
            )
        pf_cvf = f.num(ch, "cvf", default=math.nan)
        head: dict[str, Any] = {
            "exchange": exchange,
            "pf_id": f.req_int(ch, "pfId"),
            "pf_code": f.text(ch, "pfCode", required=True),
            "pf_type": PF_TYPES[tag],
            "name": f.name(ch, "name"),
            "currency": f.text(ch, "currency", required=True),
            "cvf": pf_cvf,
            "price_dl": f.int_(ch, "priceDl"),
            "price_fmt": f.text(ch, "priceFmt"),
            "value_meth": f.text(ch, "valueMeth"),
            "price_meth": f.text(ch, "priceMeth"),
            "setl_meth": f.text(ch, "setlMeth"),
            "underlying": underlying,
            "key_path": f.key_path(),
        }
        # A portfolio-level cvf of 0 means "not given here": do not let it fill contracts.
        fill_cvf = pf_cvf if pf_cvf else math.nan
        n = len(cols.cols["ids"])
        arrays = self._common_arrays(cols, fill_cvf)
        c = cols.cols
        if tag == "phyPf":
            self.physical.append(
                PhysicalPortfolio(
                    **head, contracts=PhysicalContracts(**arrays, scan_rates=_scan_rates(cols.scan, n))
                )
            )
        elif tag == "futPf":
            contracts = FuturesContracts(
                **arrays,
                scan_rates=_scan_rates(cols.scan, n),
                settlement_date=read_only(np.array(c["setl"], dtype=np.int64).view("datetime64[D]")),
                time_to_expiry=read_only(np.array(c["t"], dtype=np.float64)),
                underlying_pf_id=read_only(np.array(c["und_pf"], dtype=np.int64)),
                underlying_contract_id=read_only(np.array(c["und_c"], dtype=np.int64)),
                underlying_ratio=read_only(np.array(c["und_i"], dtype=np.float64)),
            )
            self.futures.append(FuturesPortfolio(**head, contracts=contracts))
        else:
            self.options.append(self._option_pf(ch, head, cols, arrays, fill_cvf))
        self.cols = None
        self.series_cols = None

    def _option_pf(
        self,
        ch: dict[str, Element],
        head: dict[str, Any],
        cols: Columns,
        arrays: dict[str, Any],
        fill_cvf: float,
    ) -> OptionPortfolio:
        f = self.f
        s = self.series_cols
        assert s is not None
        sc = s.cols
        ns = len(sc["period"])
        s_cvf = np.array(sc["cvf"], dtype=np.float64)
        s_cvf[np.isnan(s_cvf)] = fill_cvf
        s_svf = np.array(sc["svf"], dtype=np.float64)
        s_svf[np.isnan(s_svf)] = s_cvf[np.isnan(s_svf)]
        s_scan = _scan_rates(s.scan, ns)
        series = OptionSeries(
            period=read_only(np.array(sc["period"], dtype=np.str_)),
            volatility=read_only(np.array(sc["volatility"], dtype=np.float64)),
            settlement_date=read_only(np.array(sc["setl"], dtype=np.int64).view("datetime64[D]")),
            time_to_expiry=read_only(np.array(sc["t"], dtype=np.float64)),
            cvf=read_only(s_cvf),
            svf=read_only(s_svf),
            scale=read_only(np.array(sc["scale"], dtype=np.float64)),
            underlying_pf_id=read_only(np.array(sc["und_pf"], dtype=np.int64)),
            underlying_contract_id=read_only(np.array(sc["und_c"], dtype=np.int64)),
            underlying_ratio=read_only(np.array(sc["und_i"], dtype=np.float64)),
            interest_rate=read_only(np.array(sc["intr"], dtype=np.float64)),
            dividend_yield=read_only(np.array(sc["div"], dtype=np.float64)),
            scan_rates=s_scan,
        )
        c = cols.cols
        si = np.array(c["series_index"], dtype=np.int64)
        # broadcast series columns to options; option-level cvf/svf override the series'
        opt_cvf = np.array(c["cvf"], dtype=np.float64)
        miss = np.isnan(opt_cvf)
        opt_cvf[miss] = series.cvf[si[miss]]
        opt_svf = np.array(c["svf"], dtype=np.float64)
        miss = np.isnan(opt_svf)
        opt_svf[miss] = series.svf[si[miss]]
        arrays = {**arrays, "period": read_only(series.period[si]), "cvf": read_only(opt_cvf)}
        contracts = OptionContracts(
            **arrays,
            scan_rates=ScanRates(**{name: read_only(getattr(s_scan, name)[si]) for _, name in SCAN_FIELDS}),
            series_index=read_only(si),
            is_call=read_only(np.array(c["is_call"], dtype=bool)),
            strike=read_only(np.array(c["strike"], dtype=np.float64)),
            svf=read_only(opt_svf),
            settlement_date=read_only(series.settlement_date[si]),
            time_to_expiry=read_only(series.time_to_expiry[si]),
            underlying_pf_id=read_only(series.underlying_pf_id[si]),
            underlying_contract_id=read_only(series.underlying_contract_id[si]),
        )
        return OptionPortfolio(
            **head,
            exercise=f.text(ch, "exercise"),
            strike_dl=f.int_(ch, "strikeDl"),
            strike_fmt=f.text(ch, "strikeFmt"),
            cab=f.num(ch, "cab", default=0.0),
            price_model=f.text(ch, "priceModel"),
            series=series,
            contracts=contracts,
        )

    def end_exchange(self, e: Element) -> Exchange:
        """The open ``exchange`` ``e`` is complete: it and its portfolios, in file order."""
        f = self.f
        ch = first_children(e)
        code = f.text(ch, "exch", required=True)
        assert code is not None
        return Exchange(
            code=code,
            name=f.name(ch, "name"),
            physical_portfolios=_with_exchange(self.physical, code),
            futures_portfolios=_with_exchange(self.futures, code),
            option_portfolios=_with_exchange(self.options, code),
        )
