"""Tests of the streaming SPAN XML reader (marginsim.io.span)."""

from __future__ import annotations

import gc
import json
import re
import tracemalloc
from datetime import date, datetime
from pathlib import Path
from unittest import mock

import defusedxml.ElementTree as DET
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginsim.errors import InputError
from marginsim.io.span import (
    DeltaSpread,
    FuturesPortfolio,
    OptionPortfolio,
    SpanFile,
    read_span_xml,
    summarize,
)
from marginsim.io.span import reader as span_reader

DATA = Path(__file__).resolve().parent / "data"
SMALL = DATA / "span_small.xml"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "span" / "takas.spn"

# The worked example of the SPAN spec: a long future and a long put on index ABC (losses).
FUT_LOSS = [0, 0, -2000, -2000, 2000, 2000, -4000, -4000, 4000, 4000, -6000, -6000, 6000, 6000, -5760, 5760]
PUT_LOSS = [
    -20,
    18,
    1290,
    1155,
    -1600,
    -1375,
    2100,
    2330,
    -3350,
    -3100,
    3100,
    3375,
    -5150,
    -4875,
    3680,
    -5400,
]


def _write(tmp_path: Path, text: str, name: str = "f.xml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _small_text() -> str:
    return SMALL.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def small() -> SpanFile:
    return read_span_xml(SMALL)


@pytest.fixture(scope="module")
def real() -> SpanFile:
    if not REAL.is_file():
        pytest.skip(f"real SPAN file not available at {REAL}")
    return read_span_xml(REAL)


# ---------------------------------------------------------------------------------------------
# Synthetic minimal file: parsed fully
# ---------------------------------------------------------------------------------------------


def test_small_header(small: SpanFile) -> None:
    assert small.path == SMALL
    assert small.file_format == "4.00"
    assert small.created == datetime(2024, 1, 2, 17, 0)
    assert small.business_date == date(2024, 1, 2)
    assert small.is_settlement is True
    assert small.settlement_qualifier == "final"
    assert small.clearing_org == "TESTCH"
    assert small.clearing_org_name == "Test Clearing House"
    assert small.is_contract_scale is False
    assert set(small.currencies) == {"EUR", "USD"}
    assert small.currencies["USD"].name == "US dollar"
    assert small.currencies["EUR"].decimal_pos == 2
    (cv,) = small.conversion_rates
    assert (cv.from_currency, cv.to_currency, cv.factor) == ("USD", "EUR", 0.9)
    assert [(d.rate_id, d.is_maintenance) for d in small.pb_rate_defs] == [(1, False), (2, True)]
    assert small.ignored_portfolios == {"equityPf": 1}


def test_small_point_defs(small: SpanFile) -> None:
    pd = small.point_def()
    assert pd is not None and pd.rate_id == 1 and pd.n_points == 16
    # numerator / denominator wins over the rounded mult
    np.testing.assert_allclose(pd.scan.price_move[:14:2], [0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1, -1])
    np.testing.assert_allclose(pd.scan.price_move[14:], [3, -3])
    np.testing.assert_allclose(pd.scan.vol_move, [1, -1] * 7 + [0, 0])
    np.testing.assert_allclose(pd.scan.weight, [1] * 14 + [0.32, 0.32])
    np.testing.assert_array_equal(
        pd.scan.paired_point, [2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    )
    np.testing.assert_allclose(pd.delta.price_move, [-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(pd.delta.weight.sum(), 1.0)


def test_small_portfolios(small: SpanFile) -> None:
    (ex,) = small.exchanges
    assert ex.code == "TEX" and ex.name == "Test Exchange"
    assert [p.pf_code for p in ex.physical_portfolios] == ["ABC"]
    assert [(p.pf_id, p.pf_code) for p in ex.futures_portfolios] == [(10, "ABC"), (20, "XYZ")]
    (opf,) = ex.option_portfolios

    phy = ex.physical_portfolios[0]
    assert phy.pf_type == "PHY" and phy.currency == "EUR" and phy.setl_meth == "CASH"
    assert phy.contracts.risk_arrays.shape == (1, 16)
    assert phy.contracts.cvf[0] == 100 and phy.contracts.period[0] == "00000S"

    fpf = small.portfolio("FUT", "ABC")
    assert isinstance(fpf, FuturesPortfolio)
    assert fpf.name == "ABC futures" and fpf.value_meth == "FUT"
    assert fpf.underlying is not None and (fpf.underlying.pf_id, fpf.underlying.pf_type) == (1, "PHY")
    f = fpf.contracts
    assert len(f) == 2
    np.testing.assert_array_equal(f.ids, [101, 102])
    np.testing.assert_array_equal(f.period, ["202403", "202406"])
    np.testing.assert_allclose(f.price, [1000, 1010.5])
    np.testing.assert_allclose(f.cvf, [100, 100])
    np.testing.assert_allclose(f.scan_rates.price_scan, [6000, 6100])
    np.testing.assert_allclose(f.scan_rates.vol_scan, [0, 0])
    assert np.isnan(f.scan_rates.vol_scan_pct).all()
    np.testing.assert_allclose(f.risk_arrays[0], FUT_LOSS)
    np.testing.assert_allclose(f.composite_delta, [1, 1])
    np.testing.assert_array_equal(
        f.settlement_date, np.array(["2024-03-15", "2024-06-21"], dtype="datetime64[D]")
    )
    np.testing.assert_allclose(f.time_to_expiry, [0.2, 0.468493])
    np.testing.assert_array_equal(f.underlying_pf_id, [1, 1])
    np.testing.assert_array_equal(f.underlying_contract_id, [1, 1])
    # absent optional values: NaN / defaults
    assert np.isnan(f.volatility[1]) and f.scale[1] == 1.0

    assert isinstance(opf, OptionPortfolio)
    assert (opf.pf_type, opf.exercise, opf.cab, opf.strike_dl) == ("OOP", "EURO", 0.01, 2)
    s = opf.series
    assert len(s) == 2
    np.testing.assert_array_equal(s.period, ["202403", "202406"])
    np.testing.assert_allclose(s.interest_rate, [0.04, np.nan])
    np.testing.assert_allclose(s.dividend_yield, [0.02, np.nan])
    np.testing.assert_allclose(s.svf, [100, 100])  # second series: svf falls back to cvf
    np.testing.assert_allclose(s.scan_rates.vol_scan_pct, [0.25, 0.2])
    o = opf.contracts
    assert len(o) == 3
    np.testing.assert_array_equal(o.ids, [3001, 3002, 3003])
    np.testing.assert_array_equal(o.series_index, [0, 0, 1])
    np.testing.assert_array_equal(o.is_call, [False, True, True])
    np.testing.assert_allclose(o.strike, [950, 1050, 1000])
    np.testing.assert_allclose(o.price, [12.5, 8.25, 40])
    np.testing.assert_allclose(o.volatility, [0.22, 0.2, 0.21])
    np.testing.assert_allclose(o.cvf, [100, 100, 100])
    np.testing.assert_array_equal(o.period, ["202403", "202403", "202406"])
    np.testing.assert_allclose(o.time_to_expiry, [0.2, 0.2, 0.468493])
    np.testing.assert_allclose(o.scan_rates.price_scan, [6000, 6000, 6100])
    np.testing.assert_allclose(o.scan_rates.vol_scan_pct, [0.25, 0.25, 0.2])
    np.testing.assert_allclose(o.risk_arrays[0], PUT_LOSS)
    np.testing.assert_allclose(o.composite_delta, [-0.35, 0.3, 0.55])
    # the spec's worked example: scanning risk 1,125 in scenario 14
    total = f.risk_arrays[0] + o.risk_arrays[0]
    assert total.max() == 1125 and int(total.argmax()) + 1 == 14


def test_small_combined_commodities(small: SpanFile) -> None:
    assert list(small.combined_commodities) == ["ABC", "XYZ"]
    abc = small.combined_commodities["ABC"]
    assert (abc.name, abc.currency, abc.som_meth, abc.wfpr_meth) == (
        "ABC index complex",
        "EUR",
        "GROSS",
        "NORMAL",
    )
    assert [(lk.pf_id, lk.pf_type, lk.scale) for lk in abc.pf_links] == [
        (1, "PHY", 1),
        (10, "FUT", 1),
        (30, "OOP", 1),
    ]
    assert abc.pf_links[2].oop_delta_meth == "PERIOD"
    assert abc.pf_links[1].array_precision == 6 and abc.pf_links[1].apply_basis_risk is False
    assert [(a.rate_id, a.base_rate_id, a.value) for a in abc.adj_rates] == [(2, 1, 0.8)]
    assert [(t.tn, t.start_period, t.end_period) for t in abc.intra_tiers] == [
        (1, "202401", "202403"),
        (2, "202404", "202412"),
    ]
    assert [t.tn for t in abc.inter_tiers] == [0]
    assert abc.som_rate() == 150
    (sp,) = abc.d_spreads
    assert (sp.spread, sp.charge_method, sp.rate()) == (1, "F", 300)
    assert [(lg.cc, lg.tier, lg.side, lg.ratio) for lg in sp.legs] == [("ABC", 1, "A", 1), ("ABC", 2, "B", 1)]
    (spot,) = abc.spot_rates
    assert (spot.period, spot.spread_rate, spot.outright_rate) == ("202401", 100, 250)
    xyz = small.combined_commodities["XYZ"]  # children out of schema order
    assert xyz.currency == "EUR" and xyz.name is None and xyz.som_rate() == 0
    assert xyz.d_spreads[0].rate() == 40


def test_small_inter_spreads(small: SpanFile) -> None:
    s1, s2 = small.inter_spreads
    assert isinstance(s1, DeltaSpread)
    assert (s1.spread, s1.charge_method, s1.rate()) == (1, "W", 0.6)
    assert [(lg.cc, lg.tier, lg.side, lg.ratio) for lg in s1.legs] == [
        ("ABC", 0, "A", 1.0),
        ("XYZ", 0, "B", 2.5),
    ]
    assert s2.rate() == 0.35 and s2.unparsed_legs == 0
    assert np.isnan(s2.rate(rate_id=7))


def test_small_summary_is_plain_json(small: SpanFile) -> None:
    s = summarize(small)
    json.dumps(s)  # serialisable
    assert s["exchanges"] == ["TEX"]
    assert s["business_date"] == "2024-01-02"
    assert s["n_combined_commodities"] == 2
    assert s["n_portfolios"] == {"physical": 1, "futures": 2, "options": 1}
    assert s["n_contracts"] == {"physical": 1, "futures": 3, "options": 3}
    assert s["n_option_series"] == 2
    assert s["n_inter_spreads"] == 2 and s["n_intra_spreads"] == 2
    assert s["currencies"] == ["EUR"]
    assert s["conversion_rates"] == {"USD/EUR": 0.9}
    assert s["ignored_portfolios"] == {"equityPf": 1}


def test_arrays_are_read_only_and_dataclasses_frozen(small: SpanFile) -> None:
    f = small.futures_portfolios[0]
    with pytest.raises(ValueError):
        f.contracts.risk_arrays[0, 0] = 1.0
    with pytest.raises(AttributeError):
        f.pf_code = "X"  # type: ignore[misc]


def test_lookup_helpers(small: SpanFile) -> None:
    assert small.portfolio_by_id("TEX", 30).pf_type == "OOP"
    with pytest.raises(KeyError):
        small.portfolio("FUT", "NOPE")
    with pytest.raises(KeyError):
        small.portfolio_by_id("TEX", 999)


def test_unknown_elements_and_order_do_not_matter(tmp_path: Path) -> None:
    text = _small_text()
    # unknown elements at several depths, a comment, and header children moved after contracts
    text = text.replace(
        "<exch>TEX</exch>\n        <name>", "<exch>TEX</exch><newThing a='1'><x/></newThing>\n        <name>"
    )
    text = text.replace(
        "<cId>101</cId>", "<cId>101</cId><alias><aType>T</aType><aVal>V</aVal></alias><!-- c -->"
    )
    text = text.replace(
        "<pfId>20</pfId><pfCode>XYZ</pfCode><name>XYZ futures</name><currency>EUR</currency><valueMeth>FUT</valueMeth>",
        "<pfId>20</pfId><valueMeth>FUT</valueMeth>",
    )
    text = text.replace(
        "</fut>\n        </futPf>\n        <oopPf>",
        "</fut>\n<currency>EUR</currency><pfCode>XYZ</pfCode>\n        </futPf>\n        <oopPf>",
    )
    sf = read_span_xml(_write(tmp_path, text))
    ref = read_span_xml(SMALL)
    assert summarize(sf)["n_contracts"] == summarize(ref)["n_contracts"]
    # the exchange code after its portfolios
    text2 = text.replace("<exch>TEX</exch><newThing", "<newThing").replace(
        "</oopPf>\n      </exchange>", "</oopPf>\n<exch>TEX</exch>      </exchange>"
    )
    sf2 = read_span_xml(_write(tmp_path, text2, "g.xml"))
    assert {p.exchange for p in (*sf2.futures_portfolios, *sf2.option_portfolios)} == {"TEX"}
    xyz = sf.portfolio("FUT", "XYZ")
    assert xyz.currency == "EUR" and xyz.name is None
    np.testing.assert_array_equal(
        sf.futures_portfolios[0].contracts.risk_arrays, ref.futures_portfolios[0].contracts.risk_arrays
    )


def test_rate_id_selects_risk_array(tmp_path: Path) -> None:
    ra2 = f"<ra><r>2</r>{'<a>7</a>' * 16}<d>0.5</d></ra>"
    sr2 = "<scanRate><r>2</r><priceScan>7000</priceScan></scanRate>"
    text = _small_text()
    # every contract (and option series) also gets arrays and scan rates for rate class 2
    text_all = re.sub(r"</(fut|phy|opt)>", lambda m: ra2 + ("" if m[1] == "opt" else sr2) + m[0], text)
    text_all = text_all.replace("</series>", sr2 + "</series>")
    p_all = _write(tmp_path, text_all, "all.xml")
    f1 = read_span_xml(p_all).portfolio("FUT", "ABC").contracts
    np.testing.assert_allclose(f1.risk_arrays[0], FUT_LOSS)
    np.testing.assert_allclose(f1.scan_rates.price_scan, [6000, 6100])
    sf2 = read_span_xml(p_all, rate_id=2)
    f2 = sf2.portfolio("FUT", "ABC").contracts
    np.testing.assert_allclose(f2.risk_arrays, 7.0)
    np.testing.assert_allclose(f2.composite_delta, [0.5, 0.5])
    np.testing.assert_allclose(f2.scan_rates.price_scan, [7000, 7000])
    np.testing.assert_allclose(sf2.option_portfolios[0].contracts.scan_rates.price_scan, 7000)
    # only the first two futures have rate-2 data: an error, never a silent mix of rate classes
    text_some = text.replace("</fut>", ra2 + sr2 + "</fut>", 2)
    with pytest.raises(InputError, match="no <ra> for rate id 2") as ei:
        read_span_xml(_write(tmp_path, text_some, "some.xml"), rate_id=2)
    assert ei.value.key_path.endswith("phyPf[1].phy[1]")


def test_latin1_declared_file(tmp_path: Path) -> None:
    text = (
        _small_text().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').replace("US dollar", "D\u00f6lar")
    )
    p = tmp_path / "latin1.xml"
    p.write_bytes(text.encode("latin-1"))
    assert read_span_xml(p).currencies["USD"].name == "D\u00f6lar"
    # a file that declares ISO-8859-1 but holds UTF-8 bytes (as the Takasbank file does) is repaired
    p.write_bytes(text.encode("utf-8"))
    assert read_span_xml(p).currencies["USD"].name == "D\u00f6lar"


# ---------------------------------------------------------------------------------------------
# Bad files: every problem is an InputError naming the file and where
# ---------------------------------------------------------------------------------------------


def test_malformed_xml() -> None:
    p = DATA / "span_malformed.xml"
    with pytest.raises(InputError) as ei:
        read_span_xml(p)
    e = ei.value
    assert e.file == str(p)
    assert "malformed XML" in e.problem and "mismatched tag" in e.problem
    assert "line 15" in e.problem
    assert e.key_path.endswith("exchange[1].futPf[1].fut[1]")  # the record; the line gives the spot
    assert str(p) in str(e)


def test_truncated_file() -> None:
    p = DATA / "span_truncated.xml"
    with pytest.raises(InputError, match="truncated") as ei:
        read_span_xml(p)
    assert ei.value.file == str(p)
    assert ei.value.key_path.endswith("futPf[1].fut[1]")
    assert "line 18" in ei.value.problem


def test_truncated_small_file(tmp_path: Path) -> None:
    raw = SMALL.read_bytes()
    p = tmp_path / "cut.xml"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_span_xml(p)


def test_non_numeric_risk_array_value() -> None:
    p = DATA / "span_bad_ra.xml"
    with pytest.raises(InputError, match="not a number: '2000,5'") as ei:
        read_span_xml(p)
    assert ei.value.key_path == "spanFile.pointInTime.clearingOrg.exchange[1].futPf[1].fut[2].ra.a[5]"


@pytest.mark.parametrize(
    ("old", "new", "message", "where"),
    [
        ("<p>1010.5</p>", "<p>abc</p>", "<p> is not a number", "futPf[1].fut[2].p"),
        ("<p>1010.5</p>", "<p>nan</p>", "not a finite number", "futPf[1].fut[2].p"),
        ("<a>-5856</a>", "<a>inf</a>", "not finite", "futPf[1].fut[2].ra.a[15]"),
        ("<cId>102</cId>", "", "missing required element <cId>", "futPf[1].fut[2]"),
        ("<pe>202406</pe><p>1010.5</p>", "<p>1010.5</p>", "missing required element <pe>", "futPf[1].fut[2]"),
        ("<a>-5856</a><a>5856</a><d>1</d>", "<a>-5856</a><d>1</d>", "15 values, expected 16", "fut[2].ra"),
        ("<a>-5856</a><a>5856</a><d>1</d>", "<a>-5856</a><a>5856</a>", "composite delta", "fut[2].ra"),
        ("<o>C</o><k>1050</k>", "<o>X</o><k>1050</k>", "<o> must be C or P", "series[1].opt[2].o"),
        ("<k>1050</k>", "", "missing required element <k>", "series[1].opt[2]"),
        (
            "<setlDate>20240621</setlDate><t>0.468493</t>\n            <undC>",
            "<setlDate>2024-13-45</setlDate><t>0.468493</t>\n            <undC>",
            "setlDate",
            "fut[2].setlDate",
        ),
        ("<val>0.6</val>", "<val>60</val>", "not a fraction", "interSpreads.dSpread[1].rate[1].val"),
        ("<rs>B</rs><i>2.5</i>", "<rs>Q</rs><i>2.5</i>", "<rs> must be A or B", "dSpread[1].tLeg[2].rs"),
        ("<sc>1</sc></pfLink>", "</pfLink>", "missing required element <sc>", "ccDef[1].pfLink[1]"),
        ("<date>20240102</date>", "<date>yesterday</date>", "<date> is not a date", "pointInTime.date"),
        ("<date>20240102</date>", "", "missing required element <date>", "spanFile.pointInTime"),
        ("<ec>TESTCH</ec>", "", "missing required element <ec>", "spanFile.pointInTime.clearingOrg"),
        ("<exch>TEX</exch>\n        <name>", "<name>", "missing required element <exch>", "exchange[1]"),
        ("<pfId>20</pfId>", "", "missing required element <pfId>", "exchange[1].futPf[2]"),
        ("<factor>0.9</factor>", "<factor>-1</factor>", "must be positive", "curConv[1].factor"),
        (
            "<currency>EUR</currency><cc>XYZ</cc>",
            "<currency>EUR</currency><cc>ABC</cc>",
            "defined twice",
            "ccDef[2].cc",
        ),
    ],
)
def test_bad_values_name_the_spot(tmp_path: Path, old: str, new: str, message: str, where: str) -> None:
    text = _small_text()
    assert old in text
    p = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(InputError) as ei:
        read_span_xml(p)
    assert message in ei.value.problem
    assert ei.value.file == str(p)
    assert ei.value.key_path.endswith(where), ei.value.key_path


def test_entity_bomb_is_refused() -> None:
    p = DATA / "span_entity_bomb.xml"
    with pytest.raises(InputError, match="nothing was expanded") as ei:
        read_span_xml(p)
    assert ei.value.file == str(p)
    assert "lol" not in ei.value.problem


def test_external_entity_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="DTD|document type"):
        read_span_xml(DATA / "span_external_entity.xml")
    # and a local secret is never read into the data or the message
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-TOKEN", encoding="utf-8")
    text = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE spanFile [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n'
        "<spanFile><definitions/><pointInTime><date>20240102</date><isSetl>1</isSetl>"
        "<clearingOrg><ec>&xxe;</ec><finalizeMeth>BY</finalizeMeth></clearingOrg></pointInTime></spanFile>"
    )
    with pytest.raises(InputError) as ei:
        read_span_xml(_write(tmp_path, text))
    assert "TOP-SECRET" not in str(ei.value)


_BOMB_DTD = '<!DOCTYPE spanFile [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'


def _with_prolog(prolog: str) -> str:
    """The small file with ``prolog`` between its XML declaration and its root element."""
    text = _small_text()
    i = text.index("<spanFile")
    return text[:i] + prolog + text[i:].replace("<ec>TESTCH</ec>", "<ec>&b;</ec>", 1)


@pytest.mark.parametrize(
    ("prolog", "encoding"),
    [
        (_BOMB_DTD, "utf-8"),
        ("<!-- a comment first -->\n" + _BOMB_DTD, "utf-8"),
        ('<?some-pi data="1"?>\n<!-- and a comment -->' + _BOMB_DTD, "utf-8"),
        ('<!DOCTYPE spanFile SYSTEM "http://127.0.0.1:9/span.dtd">\n', "utf-8"),
        ('<!DOCTYPE spanFile PUBLIC "-//x//y" "file:///etc/passwd">\n', "utf-8"),
        ('<!DOCTYPE spanFile [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>\n', "utf-8"),
        ("<!DOCTYPE spanFile []>\n", "utf-8"),
        ("<!-- c -->" + _BOMB_DTD, "utf-8-sig"),
        ("<!-- c -->" + _BOMB_DTD, "utf-16"),  # with a BOM, little-endian here
        (_BOMB_DTD, "utf-16-be-bom"),
        (_BOMB_DTD, "utf-16-le"),  # no BOM: detected from the '<' byte pattern
    ],
)
def test_any_doctype_in_the_prolog_is_refused(tmp_path: Path, prolog: str, encoding: str) -> None:
    text = _with_prolog(prolog)
    if encoding.startswith("utf-16"):
        text = text.replace('encoding="UTF-8"', 'encoding="UTF-16"')
    if encoding == "utf-16-be-bom":
        raw = b"\xfe\xff" + text.encode("utf-16-be")
    else:
        raw = text.encode(encoding)
    p = tmp_path / "dtd.xml"
    p.write_bytes(raw)
    with pytest.raises(InputError, match="DTDForbidden.*nothing was expanded") as ei:
        read_span_xml(p)
    assert ei.value.key_path == "prolog" and ei.value.file == str(p)


class _RecordingParser(span_reader.XMLParser):  # type: ignore[misc]
    """The C parser, recording every byte it is given."""

    fed: list[bytes] = []

    def feed(self, data: bytes) -> None:
        _RecordingParser.fed.append(data)
        super().feed(data)


@pytest.mark.parametrize("block_size", [1, 5, 64, 1 << 16])
@pytest.mark.parametrize("offset", [-11, -6, -1, 0, 2])
def test_a_dtd_never_reaches_the_c_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_size: int, offset: int
) -> None:
    # the DOCTYPE starts ``offset`` bytes from a block boundary, so it may straddle two blocks
    decl = '<?xml version="1.0" encoding="UTF-8"?>'
    rest = _with_prolog(_BOMB_DTD)[len(decl) :]
    head = decl + "\n<!--"
    start = len(head) + len("-->") + rest.index("<!DOCTYPE")  # without padding
    boundary = -(-(start + 16) // block_size) * block_size
    text = head + "x" * (boundary + offset - start) + "-->" + rest
    assert text.index("<!DOCTYPE") == boundary + offset
    p = _write(tmp_path, text)
    monkeypatch.setattr(span_reader, "_BLOCK_SIZE", block_size)
    monkeypatch.setattr(span_reader, "XMLParser", _RecordingParser)
    _RecordingParser.fed = []
    with pytest.raises(InputError, match="DTDForbidden"):
        read_span_xml(p)
    seen = b"".join(_RecordingParser.fed)
    # the guard refuses the DOCTYPE at its '[', before the C parser gets the block holding it:
    # the C parser has had exactly the blocks before that one (with offset < 0 and large
    # blocks, the start of the DOCTYPE), never a declaration
    raw = text.encode()
    bracket = raw.index(b"<!DOCTYPE spanFile [") + len("<!DOCTYPE spanFile ")
    assert raw.startswith(seen)
    assert len(seen) == bracket // block_size * block_size
    assert b"ENTITY" not in seen


@pytest.mark.parametrize(
    "snippet",
    ["<!DOCTYPE spanFile>", '<!ENTITY x SYSTEM "file:///etc/passwd">', '<!ENTITY x "y">'],
)
def test_a_declaration_after_the_root_start_is_malformed(tmp_path: Path, snippet: str) -> None:
    p = _write(tmp_path, _small_text().replace("<definitions>", snippet + "<definitions>", 1))
    with pytest.raises(InputError, match="malformed XML: not well-formed") as ei:
        read_span_xml(p)
    assert ei.value.key_path == "spanFile"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig"])
def test_utf16_and_bom_files_read_like_utf8(tmp_path: Path, encoding: str) -> None:
    text = _small_text()
    if encoding != "utf-8-sig":
        text = text.replace('encoding="UTF-8"', 'encoding="UTF-16"')
    p = tmp_path / "u.xml"
    p.write_bytes(text.encode(encoding))
    sf, ref = read_span_xml(p), read_span_xml(SMALL)
    assert summarize(sf) == {**summarize(ref), "file": str(p)}
    assert sf.currencies == ref.currencies
    np.testing.assert_array_equal(
        sf.option_portfolios[0].contracts.risk_arrays, ref.option_portfolios[0].contracts.risk_arrays
    )


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("x-no-such-encoding", "unknown encoding"),
        ("shift_jis", "multi-byte encodings are not supported"),  # was a bare ValueError
    ],
)
def test_undecodable_declared_encoding(tmp_path: Path, encoding: str, message: str) -> None:
    p = _write(tmp_path, _small_text().replace('encoding="UTF-8"', f'encoding="{encoding}"'))
    with pytest.raises(InputError, match=f"cannot decode the XML: {message}") as ei:
        read_span_xml(p)
    assert ei.value.file == str(p)


def test_internal_entity_without_dtd_is_an_error(tmp_path: Path) -> None:
    p = _write(tmp_path, _small_text().replace("<ec>TESTCH</ec>", "<ec>&undefined;</ec>"))
    with pytest.raises(InputError, match="undefined entity") as ei:
        read_span_xml(p)
    assert ei.value.key_path.endswith("clearingOrg.ec")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "truncated"),
        (b"   \n", "truncated"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "malformed XML"),
        (b'<?xml version="1.0"?><html><body/></html>', "not a SPAN XML file"),
        (b"<spanFile><definitions/></spanFile>", "missing required element <pointInTime>"),
        (b"<spanFile><pointInTime><date>20240102</date></pointInTime></spanFile>", "<clearingOrg>"),
    ],
)
def test_not_a_span_file(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "x.spn"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message) as ei:
        read_span_xml(p)
    assert ei.value.file == str(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot open file") as ei:
        read_span_xml(tmp_path / "nope.spn")
    assert ei.value.file == str(tmp_path / "nope.spn")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(SMALL.read_bytes())))
def test_any_truncation_is_an_input_error(tmp_path: Path, cut: int) -> None:
    raw = SMALL.read_bytes()
    p = tmp_path / "cut.xml"
    p.write_bytes(raw[:cut])
    if not raw[cut:].strip():  # only trailing whitespace removed: still a complete file
        assert isinstance(read_span_xml(p), SpanFile)
        return
    with pytest.raises(InputError):
        read_span_xml(p)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pos=st.integers(min_value=0, max_value=len(SMALL.read_bytes()) - 1),
    byte=st.sampled_from(list(b"<>/&;'\"=!?x0.-9 \x00\xff\xc3")),
)
def test_any_corruption_is_an_input_error_or_parses(tmp_path: Path, pos: int, byte: int) -> None:
    raw = bytearray(SMALL.read_bytes())
    raw[pos] = byte
    p = tmp_path / "bad.xml"
    p.write_bytes(bytes(raw))
    try:
        read_span_xml(p)
    except InputError:
        pass


def _outcome(p: Path) -> tuple[str, object]:
    try:
        sf = read_span_xml(p)
    except InputError as e:
        return "error", (e.problem, e.key_path)
    return "ok", (
        summarize(sf),
        [(pf.contracts.ids.tolist(), pf.contracts.risk_arrays.tobytes()) for pf in sf.option_portfolios],
        [(pf.contracts.ids.tolist(), pf.contracts.risk_arrays.tobytes()) for pf in sf.futures_portfolios],
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    block_size=st.integers(min_value=1, max_value=700),
    pos=st.integers(min_value=0, max_value=len(SMALL.read_bytes())),
    byte=st.sampled_from([None, *b"<>/&;=!x0.- \x00"]),
)
def test_block_boundaries_do_not_matter(tmp_path: Path, block_size: int, pos: int, byte: int | None) -> None:
    # the partial tree is walked after every block: whatever the blocks, the outcome (data or
    # error message and key path) is the one of a single-block read
    raw = SMALL.read_bytes()
    data = raw[:pos] if byte is None else raw[:pos] + bytes([byte]) + raw[pos + 1 :]
    p = tmp_path / "b.xml"
    p.write_bytes(data)
    expected = _outcome(p)
    with mock.patch.object(span_reader, "_BLOCK_SIZE", block_size):
        assert _outcome(p) == expected


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_state_is_restored(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        read_span_xml(SMALL)
        assert gc.isenabled() is enabled
        with pytest.raises(InputError):
            read_span_xml(DATA / "span_malformed.xml")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_a_long_prolog_is_streamed_too(tmp_path: Path) -> None:
    # the prolog guard reads block by block as well: it holds no copy of the prolog
    text = _with_prolog("".join(f"<!-- comment {i:06d} {'x' * 80} -->\n" for i in range(30_000)))
    p = _write(tmp_path, text.replace("<ec>&b;</ec>", "<ec>TESTCH</ec>"))
    assert p.stat().st_size > 2_500_000
    peak, sf = _peak_bytes(read_span_xml, p)
    assert sf.clearing_org == "TESTCH"
    assert peak < 1_000_000, peak


# ---------------------------------------------------------------------------------------------
# Memory: elements are freed as soon as they are turned into data
# ---------------------------------------------------------------------------------------------


def _peak_bytes(fn, *args):  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        result = fn(*args)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def _big_file(tmp_path: Path, n_fut: int = 4000) -> Path:
    """A synthetic file with many futures (one period each), written by the test."""
    ra = "".join(f"<a>{v}</a>" for v in FUT_LOSS)
    point_def = re.search(r"<pointDef>.*?</pointDef>", _small_text(), re.S)
    assert point_def is not None
    futs = "".join(
        f"<fut><cId>{i}</cId><pe>{2024 + i // 12}{1 + i % 12:02d}</pe><p>{1000 + i % 50}</p><d>1</d><cvf>100</cvf>"
        f"<setlDate>20240315</setlDate><t>0.2</t>"
        f"<undC><exch>TEX</exch><pfId>1</pfId><cId>1</cId><s>B</s><i>1</i></undC>"
        f"<scanRate><r>1</r><priceScan>6000</priceScan></scanRate><ra><r>1</r>{ra}<d>1</d></ra></fut>\n"
        for i in range(n_fut)
    )
    text = (
        "<spanFile><definitions/><pointInTime><date>20240102</date><isSetl>1</isSetl>"
        f"<clearingOrg><ec>T</ec><finalizeMeth>BY</finalizeMeth>{point_def.group(0)}<exchange><exch>TEX</exch>"
        f"<futPf><pfId>10</pfId><pfCode>ABC</pfCode><currency>EUR</currency><valueMeth>FUT</valueMeth>{futs}</futPf>"
        "</exchange></clearingOrg></pointInTime></spanFile>"
    )
    return _write(tmp_path, text, "big.xml")


def test_streaming_memory_synthetic(tmp_path: Path) -> None:
    p = _big_file(tmp_path)
    peak_stream, sf = _peak_bytes(read_span_xml, p)
    assert len(sf.futures_portfolios[0].contracts) == 4000
    peak_tree, _ = _peak_bytes(DET.parse, str(p))
    # a full tree holds every element; the streaming reader holds the data it made
    assert peak_stream < 0.4 * peak_tree, (peak_stream, peak_tree)


def test_streaming_memory_real_file(real: SpanFile) -> None:
    peak_stream, sf = _peak_bytes(read_span_xml, REAL)
    assert summarize(sf) == summarize(real)
    peak_tree, _ = _peak_bytes(DET.parse, str(REAL))
    assert peak_stream < 0.4 * peak_tree, (peak_stream, peak_tree)
    assert peak_stream < 8e6


# ---------------------------------------------------------------------------------------------
# The real Takasbank file (2016-05-17), skipped when absent
# ---------------------------------------------------------------------------------------------


def test_real_acceptance_counts(real: SpanFile) -> None:
    assert real.business_date == date(2016, 5, 17)
    assert real.file_format == "4.00"
    assert real.created == datetime(2016, 5, 17, 18, 30)
    assert real.clearing_org == "TAKASBANK"
    assert len(real.combined_commodities) == 40
    assert len(real.futures_portfolios) == 35
    assert len(real.option_portfolios) == 23
    assert len(real.physical_portfolios) == 40
    s = summarize(real)
    assert s["exchanges"] == ["BIST"]
    assert s["n_contracts"] == {"physical": 37, "futures": 146, "options": 2628}
    assert s["n_option_series"] == 90
    assert s["n_inter_spreads"] == 56
    assert s["currencies"] == ["TRY"]
    assert s["n_currency_definitions"] == 50
    assert s["conversion_rates"] == {"USD/TRY": 2.9765}
    assert s["ignored_portfolios"] == {}


def test_real_point_defs(real: SpanFile) -> None:
    pd = real.point_def(1)
    assert pd is not None and pd.n_points == 16
    np.testing.assert_allclose(pd.scan.weight[14:], [0.32, 0.32])
    np.testing.assert_allclose(pd.scan.price_move[[2, 10, 14, 15]], [1 / 3, 1, 3, -3])
    np.testing.assert_allclose(pd.delta.weight, [0.037, 0.111, 0.217, 0.270, 0.217, 0.111, 0.037])
    assert [(d.rate_id, d.is_maintenance) for d in real.pb_rate_defs] == [(2, True), (1, False)]


def test_real_akbnke_futures(real: SpanFile) -> None:
    pf = real.portfolio("FUT", "AKBNKE")
    assert isinstance(pf, FuturesPortfolio)
    assert (pf.pf_id, pf.currency, pf.setl_meth, pf.cvf) == (100002, "TRY", "DELIV", 0.0)
    c = pf.contracts
    assert c.ids[0] == 10651 and c.period[0] == "201605S0" and c.price[0] == 7.58
    np.testing.assert_allclose(c.cvf, 100.0)  # the contract-level factor, not the portfolio's 0
    np.testing.assert_allclose(c.scan_rates.price_scan, 90.0)  # TRY per contract
    np.testing.assert_allclose(c.risk_arrays[0, [10, 12, 14, 15]], [-90, 90, -86.400002, 86.400002])
    assert c.settlement_date[0] == np.datetime64("2016-05-31")
    np.testing.assert_allclose(c.time_to_expiry[0], 14 / 365, atol=1e-6)
    # every future: the risk array at -3/3 is the price scan range (per contract)
    for fp in real.futures_portfolios:
        np.testing.assert_allclose(
            fp.contracts.risk_arrays[:, 12], fp.contracts.scan_rates.price_scan, rtol=1e-5
        )


def test_real_akbnke_combined_commodity(real: SpanFile) -> None:
    cc = real.combined_commodities["AKBNKE"]
    assert cc.currency == "TRY" and cc.som_meth == "GROSS"
    assert [(lk.pf_type, lk.pf_id) for lk in cc.pf_links] == [("PHY", 3), ("FUT", 100002), ("OOP", 108303)]
    assert cc.som_rate() == 15.0
    (sp,) = cc.d_spreads
    assert sp.charge_method == "F" and sp.rate() == 90.0
    assert sorted((lg.side, lg.tier, lg.ratio) for lg in sp.legs) == [("A", 0, 1.0), ("B", 0, 1.0)]
    assert [(a.rate_id, a.base_rate_id, a.value) for a in cc.adj_rates] == [(1, 1, 0.75)]
    assert [t.tn for t in cc.intra_tiers] == [0] and cc.intra_tiers[0].start_period is None


def test_real_akbnke_option(real: SpanFile) -> None:
    pf = real.portfolio("OOP", "AKBNKE")
    assert isinstance(pf, OptionPortfolio)
    assert (pf.pf_id, pf.exercise, pf.cab) == (108303, "EURO", 0.01)
    c = pf.contracts
    (row,) = np.flatnonzero(c.ids == 10809)
    assert c.is_call[row] and c.strike[row] == 6.0 and c.price[row] == 1.63 and c.volatility[row] == 0.2
    assert c.period[row] == "201605S0" and c.cvf[row] == 100.0
    np.testing.assert_allclose(
        c.risk_arrays[row],
        [0.239129, 0.239129, -29.760841, -29.760841, 30.239065, 30.2391, -59.760902, -59.760902,
         60.237347, 60.239159, -89.760872, -89.760872, 90.186111, 90.239021, -86.323479, 52.255028],
    )  # fmt: skip
    assert c.composite_delta[row] == pytest.approx(0.999967)
    assert c.scan_rates.price_scan[row] == 90.0 and c.scan_rates.vol_scan_pct[row] == 0.23
    (prow,) = np.flatnonzero(c.ids == 10820)
    assert not c.is_call[prow] and c.strike[prow] == 6.0
    assert c.composite_delta[prow] == pytest.approx(-0.000033)
    assert len(pf.series) == 4 and pf.series.interest_rate[0] == 0.1


def test_real_inter_spread(real: SpanFile) -> None:
    sp = real.inter_spreads[2]
    assert (sp.spread, sp.charge_method, sp.rate()) == (3, "W", 0.6)
    assert [(lg.cc, lg.tier, lg.side, lg.ratio) for lg in sp.legs] == [
        ("AKBNKE", 0, "A", 12.75),
        ("XU030", 0, "B", 1.0),
    ]
    assert [s.spread for s in real.inter_spreads] == list(range(1, 57))
    assert {s.rate() for s in real.inter_spreads} == {0.5, 0.6, 1.0}


def test_real_text_repair(real: SpanFile) -> None:
    # the file declares ISO-8859-1 but holds UTF-8 bytes; names come out as written
    assert real.currencies["BGN"].name.endswith("Levas\u00fd")
