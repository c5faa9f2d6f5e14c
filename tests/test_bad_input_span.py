"""Hostile SPAN files through the CLI: exit status 2 and one line naming the file, the element path
and the problem, from ``marginsim span-file FILE`` and from ``marginsim margin SCENARIO`` whose
``span.source`` names the file (that line names the scenario file and ``span.source`` too).

Each case mutates a small well-formed SPAN XML file (``tests/data/span_small.xml``, format 4.00) or
the real Takasbank file (``../shared``, skipped when absent) in one place.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import marginsim
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.io.span import clear_span_file_cache, read_span_xml

DATA = Path(__file__).resolve().parent / "data"
SMALL = (DATA / "span_small.xml").read_text(encoding="utf-8")
CO = "spanFile.pointInTime.clearingOrg"
FUT1 = f"{CO}.exchange[1].futPf[1]"
OPT = f"{CO}.exchange[1].oopPf[1]"

#: Positions on contracts of span_small.xml (every kind: futures of two products, a put and calls).
POSITIONS = [
    {"contract": "ABC:F:202403", "quantity": 2},
    {"contract": "ABC:F:202406", "quantity": -1},
    {"contract": "ABC:P:202403:950", "quantity": -3},
    {"contract": "ABC:C:202403:1050", "quantity": 1},
    {"contract": "ABC:C:202406:1000", "quantity": 1},
    {"contract": "XYZ:F:202403", "quantity": -5},
]


def _sub(old: str, new: str) -> str:
    assert SMALL.count(old) >= 1, old
    return SMALL.replace(old, new, 1)


def _block(pattern: str) -> str:
    m = re.search(pattern, SMALL, re.S)
    assert m is not None, pattern
    return m.group(0)


POINT_DEF = _block(r"\s*<pointDef>.*?</pointDef>")
FUT102 = _block(r"\s*<fut>\s*<cId>102</cId>.*?</fut>")
OPT3002 = _block(r"\s*<opt>\s*<cId>3002</cId>.*?</opt>")
SCAN16 = "<point>16</point><priceScanDef><mult>-3</mult>"


@dataclass(frozen=True)
class Case:
    """A hostile file: its bytes, a fragment of the problem and the element path (its end)."""

    id: str
    content: bytes
    problem: str
    where: str


def _case(id: str, text: str | bytes, problem: str, where: str) -> Case:
    return Case(id, text if isinstance(text, bytes) else text.encode("utf-8"), problem, where)


def _zip(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("span_small.spn", text)
    return buf.getvalue()


CASES = [
    # 1. non-finite or overflowing numbers
    _case("ra-nan", _sub("<a>-5856</a>", "<a>NaN</a>"), "risk array value is not finite: 'NaN'", f"{FUT1}.fut[2].ra.a[15]"),
    _case("ra-inf", _sub("<a>-5856</a>", "<a>-inf</a>"), "not finite: '-inf'", f"{FUT1}.fut[2].ra.a[15]"),
    _case("ra-1e309", _sub("<a>-5856</a>", "<a>1e309</a>"), "not finite: '1e309'", f"{FUT1}.fut[2].ra.a[15]"),
    _case("ra-1e308", _sub("<a>-5856</a>", "<a>1.0e308</a>"), "out of range: '1.0e308'", f"{FUT1}.fut[2].ra.a[15]"),
    _case("option-ra-nan", _sub("<a>-20</a>", "<a>nan</a>"), "not finite", f"{OPT}.series[1].opt[1].ra.a[1]"),
    _case("composite-delta-nan", _sub("<a>5856</a><d>1</d>", "<a>5856</a><d>NaN</d>"), "<d> is not a finite number", f"{FUT1}.fut[2].ra.d"),
    _case("price-nan", _sub("<p>1010.5</p>", "<p>NaN</p>"), "<p> is not a finite number: 'NaN'", f"{FUT1}.fut[2].p"),
    _case("option-price-inf", _sub("<p>12.5</p>", "<p>inf</p>"), "<p> is not a finite number", f"{OPT}.series[1].opt[1].p"),
    _case("cvf-1e308", _sub("<cvf>100</cvf><val>101050</val>", "<cvf>1e308</cvf><val>101050</val>"), "<cvf> is out of range", f"{FUT1}.fut[2].cvf"),
    _case("series-cvf-inf", _sub("<cvf>100</cvf><svf>100</svf>", "<cvf>inf</cvf><svf>100</svf>"), "<cvf> is not a finite number", f"{OPT}.series[1].cvf"),
    _case("strike-nan", _sub("<k>1050</k>", "<k>NaN</k>"), "<k> is not a finite number", f"{OPT}.series[1].opt[2].k"),
    _case("strike-1e308", _sub("<k>1050</k>", "<k>1e308</k>"), "<k> is out of range", f"{OPT}.series[1].opt[2].k"),
    _case("vol-nan", _sub("<v>0.22</v>", "<v>nan</v>"), "<v> is not a finite number", f"{OPT}.series[1].opt[1].v"),
    _case("price-scan-inf", _sub("<priceScan>6100</priceScan><volScan>0</volScan>", "<priceScan>inf</priceScan><volScan>0</volScan>"), "<priceScan> is not a finite number", f"{FUT1}.fut[2].scanRate.priceScan"),
    _case("conversion-nan", _sub("<factor>0.9</factor>", "<factor>NaN</factor>"), "<factor> is not a finite number", f"{CO}.curConv[1].factor"),
    _case("conversion-1e308", _sub("<factor>0.9</factor>", "<factor>1e308</factor>"), "<factor> is out of range", f"{CO}.curConv[1].factor"),
    _case("spread-rate-inf", _sub("<rate><r>1</r><val>300</val></rate>", "<rate><r>1</r><val>inf</val></rate>"), "<val> is not a finite number", f"{CO}.ccDef[1].dSpread[1].rate[1].val"),
    _case("som-rate-1e308", _sub("<val>150</val>", "<val>1e308</val>"), "<val> is out of range", f"{CO}.ccDef[1].somTiers[1].tier[1].rate[1].val"),
    _case("inter-leg-ratio-1e308", _sub("<rs>B</rs><i>2.5</i>", "<rs>B</rs><i>1e308</i>"), "<i> is out of range", f"{CO}.interSpreads.dSpread[1].tLeg[2].i"),
    _case("interest-rate-nan", _sub("<intrRate><val>0.04</val>", "<intrRate><val>NaN</val>"), "<val> is not a finite number", f"{OPT}.series[1].intrRate.val"),
    _case("scan-weight-nan", _sub("<weight>0.32</weight>", "<weight>nan</weight>"), "<weight> is not a finite number", f"{CO}.pointDef[1].scanPointDef[15].weight"),
    _case("contract-id-huge", _sub("<cId>102</cId>", "<cId>99999999999999999999999</cId>"), "<cId> is out of range", f"{FUT1}.fut[2].cId"),
    # 2. structure: whole-file checks at load
    _case("no-point-def", SMALL.replace(POINT_DEF, ""), "missing required element <pointDef>", CO),
    _case("same-future-twice", _sub(FUT102, FUT102 + FUT102), "<cId> 102 is defined twice", f"{FUT1}.fut[3].cId"),
    _case(
        "same-future-twice-other-cid",
        _sub(FUT102, FUT102 + FUT102.replace("<cId>102</cId>", "<cId>109</cId>")),
        f"contract ABC:F:202406 is defined twice (first at {FUT1}.fut[2])",
        f"{FUT1}.fut[3]",
    ),
    _case(
        "same-option-twice",
        _sub(OPT3002, OPT3002 + OPT3002.replace("<cId>3002</cId>", "<cId>3009</cId>")),
        f"contract ABC:C:202403:1050 is defined twice (first at {OPT}.series[1].opt[2])",
        f"{OPT}.series[1].opt[3]",
    ),
    _case("same-portfolio-id-twice", _sub("<pfId>20</pfId>", "<pfId>10</pfId>"), "portfolio id 10 of exchange TEX is defined twice", f"{CO}.exchange[1].futPf[2].pfId"),
    _case(
        "pflink-to-nothing",
        _sub("<pfLink><exch>TEX</exch><pfId>20</pfId>", "<pfLink><exch>TEX</exch><pfId>99</pfId>"),
        "links portfolio 99 of exchange TEX, which the file does not define",
        f"{CO}.ccDef[2].pfLink[1]",
    ),
    _case(
        "portfolio-linked-twice",
        _sub("<pfLink><exch>TEX</exch><pfId>20</pfId>", "<pfLink><exch>TEX</exch><pfId>10</pfId>"),
        "portfolio 10 of exchange TEX is linked twice",
        f"{CO}.ccDef[2].pfLink[1]",
    ),
    _case(
        "inter-leg-to-nothing",
        _sub("<tLeg><cc>XYZ</cc><tn>0</tn><rs>B</rs><i>2.5</i></tLeg>", "<tLeg><cc>NOPE</cc><tn>0</tn><rs>B</rs><i>2.5</i></tLeg>"),
        "names combined commodity 'NOPE', which the file does not define",
        f"{CO}.interSpreads.dSpread[1].tLeg[2].cc",
    ),
    _case(
        "intra-leg-to-no-tier",
        _sub("<tLeg><cc>ABC</cc><tn>2</tn>", "<tLeg><cc>ABC</cc><tn>7</tn>"),
        "names tier 7, which <intraTiers> of ABC does not define",
        f"{CO}.ccDef[1].dSpread[1].tLeg[2].tn",
    ),
    _case("tier-twice", _sub("<tier><tn>2</tn><sPe>202404</sPe>", "<tier><tn>1</tn><sPe>202404</sPe>"), "tier 1 is defined twice", f"{CO}.ccDef[1].intraTiers[1].tier[2].tn"),
    _case("tier-period-not-a-month", _sub("<sPe>202404</sPe>", "<sPe>ABCDEF</sPe>"), "<sPe> is not a period", f"{CO}.ccDef[1].intraTiers[1].tier[2].sPe"),
    _case("spot-period-not-a-month", _sub("<pe>202401</pe><sprd>", "<pe>JAN24</pe><sprd>"), "<pe> is not a period", f"{CO}.ccDef[1].spotRate[1].pe"),
    _case("paired-point-unknown", _sub("<weight>0.32</weight><pairedPoint>16</pairedPoint>", "<weight>0.32</weight><pairedPoint>42</pairedPoint>"), "paired point 42 is not a scan point (1..16)", f"{CO}.pointDef[1].scanPointDef[15].pairedPoint"),
    _case("scan-point-17-of-16", _sub(SCAN16, SCAN16.replace("16", "17", 1)), "scan point number 17 is not in 1..16", f"{CO}.pointDef[1].scanPointDef[16].point"),
    _case("scan-point-0", _sub("<point>1</point><priceScanDef><mult>0</mult>", "<point>0</point><priceScanDef><mult>0</mult>"), "scan point number 0 is not in 1..16", f"{CO}.pointDef[1].scanPointDef[1].point"),
    _case("scan-point-twice", _sub(SCAN16, SCAN16.replace("16", "15", 1)), "scan point number 15 is defined twice", f"{CO}.pointDef[1].scanPointDef[16].point"),
    _case("scan-weight-zero", _sub("<weight>0.32</weight>", "<weight>0</weight>"), "scan point weight must be positive", f"{CO}.pointDef[1].scanPointDef[15].weight"),
    # 3. not SPAN XML
    _case("pa2", b"0 TESTCH 20240102 1700 F\n1 TEX  TEST EXCHANGE\nB TEX ABC FUT 202403\n81TEX ABC FUT 202403\n", "pa2 is not supported yet, use the XML (.spn) file", "line 1"),
    _case("pa2-crlf-risk-records", b"81TEX ABC       F 202403  0000000000\r\n82TEX ABC       F 202403\r\n", "pa2 is not supported yet", "line 1"),
    _case("gzip", gzip.compress(SMALL.encode()), "a gzip-compressed file: decompress it first (gunzip)", "line 1"),
    _case("zip", _zip(SMALL), "a zip-compressed file: decompress it first (unzip)", "line 1"),
]  # fmt: skip


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    clear_span_file_cache()
    rc = main(argv)
    return rc, capsys.readouterr().err


def _scenario(tmp_path: Path, spn: Path) -> Path:
    s = tmp_path / "scenario.yaml"
    s.write_text(
        json.dumps(
            {
                "name": "hostile",
                "as_of": "2024-01-02",
                "currency": "EUR",
                "span": {"source": spn.name},
                "positions": POSITIONS,
            }
        )
    )
    return s


def _one_line(err: str) -> str:
    assert err.startswith("marginsim: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_the_unmutated_file_margins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spn = tmp_path / "small.spn"
    spn.write_text(SMALL, encoding="utf-8")
    assert _run(["span-file", str(spn)], capsys)[0] == 0
    assert main(["margin", str(_scenario(tmp_path, spn)), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    maintenance = res["accounts"]["main"]["span"]["maintenance"]
    assert math.isfinite(maintenance) and maintenance > 0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_span_file_command_refuses(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spn = tmp_path / "hostile.spn"
    spn.write_bytes(case.content)
    rc, err = _run(["span-file", str(spn)], capsys)
    assert rc == 2, err
    _one_line(err)
    assert f"marginsim: error: {spn}: {case.where}: " in err, err
    assert case.problem in err, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_margin_with_span_source_refuses(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spn = tmp_path / "hostile.spn"
    spn.write_bytes(case.content)
    scenario = _scenario(tmp_path, spn)
    rc, err = _run(["margin", str(scenario)], capsys)
    assert rc == 2, err
    _one_line(err)
    # the scenario file and its key, then the SPAN file and the element path
    assert f"marginsim: error: {scenario}: span.source: {spn}: {case.where}: " in err, err
    assert case.problem in err, err


def test_an_error_of_the_scenario_still_names_the_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the SPAN file is fine: an unknown contract is the scenario's error, at its own key path
    spn = tmp_path / "small.spn"
    spn.write_text(SMALL, encoding="utf-8")
    scenario = _scenario(tmp_path, spn)
    scenario.write_text(scenario.read_text().replace("XYZ:F:202403", "XYZ:F:209912"))
    rc, err = _run(["margin", str(scenario)], capsys)
    assert rc == 2
    assert _one_line(err).startswith(f"marginsim: error: {scenario}: positions[5].contract: unknown contract")


def test_a_missing_span_file_names_the_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = _scenario(tmp_path, tmp_path / "nope.spn")
    rc, err = _run(["margin", str(scenario)], capsys)
    assert rc == 2
    assert _one_line(err) == (
        f"marginsim: error: {scenario}: span.source: clearing-house file not found: {tmp_path / 'nope.spn'}\n"
    )


def test_malformed_xml_names_the_scenario_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spn = tmp_path / "broken.spn"
    spn.write_text(SMALL.replace("</futPf>", "</futPF>", 1), encoding="utf-8")
    scenario = _scenario(tmp_path, spn)
    rc, err = _run(["margin", str(scenario)], capsys)
    assert rc == 2
    assert f"{scenario}: span.source: {spn}: " in _one_line(err) and "malformed XML: mismatched tag" in err


def test_intra_spread_legs_of_another_commodity_name_the_spread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a valid file that this version cannot margin: the element path of the spread, not a made-up one
    spn = tmp_path / "other.spn"
    spn.write_text(_sub("<tLeg><cc>ABC</cc><tn>2</tn>", "<tLeg><cc>XYZ</cc><tn>0</tn>"), encoding="utf-8")
    assert _run(["span-file", str(spn)], capsys)[0] == 0
    scenario = _scenario(tmp_path, spn)
    rc, err = _run(["margin", str(scenario)], capsys)
    assert rc == 2
    assert f"{scenario}: span.source: {spn}: {CO}.ccDef[1].dSpread[1]: intra spread 1 of ABC" in _one_line(
        err
    )


# ---- the bound on numbers, and the scan points ------------------------------------------------


def test_the_bound_on_numbers_is_a_parameter(tmp_path: Path) -> None:
    spn = tmp_path / "big.spn"
    spn.write_text(
        _sub("<cvf>100</cvf><val>101050</val>", "<cvf>1e14</cvf><val>101050</val>"), encoding="utf-8"
    )
    sf = read_span_xml(spn)  # 1e14 is below the default bound of 1e15
    assert sf.futures_portfolios[0].contracts.cvf[1] == 1e14
    with pytest.raises(InputError, match=r"<cvf> is out of range: '1e14' \(magnitude above 1e\+13") as ei:
        read_span_xml(spn, max_abs=1e13)
    assert ei.value.key_path == f"{FUT1}.fut[2].cvf"


def test_scan_points_in_any_order_margin_the_same(tmp_path: Path) -> None:
    # risk-array value i is the loss at scan point i: the points are sorted by number when read
    rows = re.findall(r"<scanPointDef>.*?</scanPointDef>", POINT_DEF, re.S)
    shuffled = POINT_DEF
    for old, new in zip(rows, rows[::-1], strict=True):
        shuffled = shuffled.replace(old, "\0" + new.replace("<", "\1"), 1)
    shuffled = shuffled.replace("\0", "").replace("\1", "<")
    assert shuffled != POINT_DEF
    out = tmp_path / "shuffled.spn"
    out.write_text(SMALL.replace(POINT_DEF, shuffled), encoding="utf-8")
    a, b = read_span_xml(DATA / "span_small.xml").point_def(), read_span_xml(out).point_def()
    assert a is not None and b is not None
    np.testing.assert_array_equal(b.scan.point, np.arange(1, 17))
    np.testing.assert_array_equal(b.scan.price_move, a.scan.price_move)
    np.testing.assert_array_equal(b.scan.paired_point, a.scan.paired_point)

    def maintenance(path: Path) -> float:
        clear_span_file_cache()
        sc = {
            "name": "o",
            "as_of": "2024-01-02",
            "currency": "EUR",
            "span": {"source": str(path)},
            "positions": POSITIONS,
        }
        return float(marginsim.margin(sc)["span"]["maintenance"].sel(account="main"))

    assert maintenance(out) == maintenance(DATA / "span_small.xml")


# ---- any one change to a good file: data or a clear error, never a traceback or a NaN ----------

_LEAVES = [(m.start(2), m.end(2)) for m in re.finditer(r"<(\w+)>([^<]*)</\1>", SMALL)]
_ELEMENTS = [(m.start(), m.end()) for m in re.finditer(r"<(\w+)>[^<]*(?:<(?!/\1>)[^<]*)*</\1>", SMALL)]
_TOKENS = ["", "0", "-1", "2", "17", "1e15", "-1e16", "nan", "abc", "C", "W", "XYZ", "20240101", "000000"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    what=st.sampled_from(["value", "drop", "repeat"]),
    leaf=st.sampled_from(_LEAVES),
    element=st.sampled_from(_ELEMENTS),
    token=st.sampled_from(_TOKENS),
)
def test_any_one_change_is_data_or_a_clear_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    what: str,
    leaf: tuple[int, int],
    element: tuple[int, int],
    token: str,
) -> None:
    if what == "value":
        text = SMALL[: leaf[0]] + token + SMALL[leaf[1] :]
    elif what == "drop":
        text = SMALL[: element[0]] + SMALL[element[1] :]
    else:
        text = SMALL[: element[1]] + SMALL[element[0] : element[1]] + SMALL[element[1] :]
    spn = tmp_path / "changed.spn"
    spn.write_text(text, encoding="utf-8")
    capsys.readouterr()
    rc, err = _run(["span-file", str(spn)], capsys)
    assert rc in (0, 2)
    if rc == 2:
        assert f"{spn}: " in _one_line(err)
    scenario = _scenario(tmp_path, spn)
    clear_span_file_cache()
    rc = main(["margin", str(scenario), "--json"])
    captured = capsys.readouterr()
    assert rc in (0, 2), captured.err
    if rc == 2:
        assert f"{scenario}: " in _one_line(captured.err)
    else:
        res = json.loads(captured.out, parse_constant=lambda name: pytest.fail(f"{name} in the result"))
        maintenance = res["accounts"]["main"]["span"]["maintenance"]
        assert isinstance(maintenance, float) and math.isfinite(maintenance)


# ---- the real file (../shared), mutated --------------------------------------------------------


@pytest.fixture(scope="module")
def takas_text() -> str:
    p = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "span" / "takas.spn"
    if not p.is_file():
        pytest.skip("../shared/data/span/takas.spn is not available")
    return p.read_text(encoding="latin-1")


def _takas_cases(text: str) -> list[tuple[str, str, str, str]]:
    fut = re.search(r"<fut>\s*<cId>.*?</fut>\s*", text, re.S)
    assert fut is not None
    a = re.search(r"<ra>\s*<r>1</r>\s*<a>([^<]*)</a>", text)
    assert a is not None
    point_def = re.search(r"<pointDef>.*?</pointDef>\s*", text, re.S)
    assert point_def is not None
    return [
        (
            "ra-nan",
            text[: a.start(1)] + "NaN" + text[a.end(1) :],
            "risk array value is not finite: 'NaN'",
            ".ra.a[1]",
        ),
        (
            "same-future-twice",
            text[: fut.end()] + fut.group(0) + text[fut.end() :],
            "is defined twice",
            ".cId",
        ),
        (
            "no-point-def",
            text[: point_def.start()] + text[point_def.end() :],
            "missing required element <pointDef>",
            "",
        ),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["ra-nan", "same-future-twice", "no-point-def"])
def test_the_real_file_mutated(
    takas_text: str, index: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], shared_dir: Path
) -> None:
    _, text, problem, where = _takas_cases(takas_text)[index]
    spn = tmp_path / "takas.spn"
    spn.write_text(text, encoding="latin-1")
    rc, err = _run(["span-file", str(spn)], capsys)
    assert rc == 2 and problem in _one_line(err)
    assert re.search(rf"{re.escape(str(spn))}: {CO}[^ ]*{re.escape(where)}: ", err), err
    scenario = tmp_path / "takas.yaml"
    scenario.write_text(
        json.dumps(
            {
                "name": "takas",
                "as_of": "2016-05-17",
                "currency": "TRY",
                "span": {"source": "takas.spn"},
                "positions": [{"contract": "AKBNKE:F:201606S0", "quantity": 1}],
            }
        )
    )
    rc, err = _run(["margin", str(scenario)], capsys)
    assert rc == 2 and problem in _one_line(err)
    assert f"{scenario}: span.source: {spn}: {CO}" in err
