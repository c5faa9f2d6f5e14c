"""SPAN XML files written by hand from the schema (tests/data/span/): period legs (pLeg), several
intra tiers with pro-rata delta allocation, spot-month charges with and without the outright rate,
two rate classes (isM 1 / 0) and an adjRate, and what ``marginsim span-file`` reports as not used.

Every expected margin is computed by hand in a comment. The cross-check against the peer package
``marginism`` (it reads pLeg) runs only when it is installed (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import marginsim
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.io.span import file_contract_table, read_span_xml
from marginsim.methods.span import span_margin

DATA = Path(__file__).resolve().parent / "data" / "span"
PERIOD_LEGS = DATA / "period_legs.xml"
TIERS_SPOT = DATA / "tiers_spot.xml"
RATE_CLASSES = DATA / "rate_classes.xml"


def _scenario(path: Path, positions: list[dict], currency: str) -> dict:
    return {
        "name": "hand-written",
        "as_of": "2026-01-05",
        "currency": currency,
        "span": {"source": str(path)},
        "positions": positions,
    }


def _span(path: Path, positions: list[tuple[str, float]], currency: str, account: str = "main"):
    rows = [{"contract": c, "quantity": q, "account": account} for c, q in positions]
    return marginsim.margin(_scenario(path, rows, currency))["span"].sel(account=account)


def _write(tmp_path: Path, text: str, name: str = "f.xml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# -- period legs (pLeg) ---------------------------------------------------------------------------


def test_period_legs_are_read_as_legs_on_their_period():
    sf = read_span_xml(PERIOD_LEGS)
    sp1, sp2, sp3 = sf.combined_commodities["NIFTY"].d_spreads
    assert [(sp.spread, sp.charge_method, sp.rate(), sp.unparsed_legs) for sp in (sp1, sp2, sp3)] == [
        (1, "F", 100.0, 0),
        (2, "F", 150.0, 0),
        (3, "F", 250.0, 0),
    ]
    assert [(leg.tag, leg.cc, leg.period, leg.side, leg.ratio) for leg in sp3.legs] == [
        ("pLeg", "NIFTY", "20260129", "A", 1.0),
        ("pLeg", "NIFTY", "20260326", "B", 2.0),
    ]


def test_period_leg_spreads_futures_hand_computed():
    ds = _span(
        PERIOD_LEGS,
        [("NIFTY:F:20260129", 5), ("NIFTY:F:20260226", -3), ("NIFTY:F:20260326", -4)],
        "INR",
    ).sel(group="NIFTY")
    # scanning: loss of a long future = -scan x move, so the book loses -move x (5 x 300 - 3 x 310
    # - 4 x 320) = -move x (-710): 710 at move +1 (scenario 11, first of the tie with 12); the
    # extreme (+3 x 0.32) loses 0.96 x 710 = 681.6
    assert float(ds["scan_risk"]) == pytest.approx(710.0, abs=1e-9)
    assert int(ds["active_scenario"]) == 11
    # month deltas: Jan +5, Feb -3, Mar -4
    # spread 1 (Jan A 1 : Feb B 1, 100): A long / B short: min(5, 3) = 3 spreads -> 300; Jan 2, Feb 0
    # spread 2 (Feb A 1 : Mar B 1, 150): Feb is flat -> 0
    # spread 3 (Jan A 1 : Mar B 2, 250): min(2 / 1, 4 / 2) = 2 spreads -> 500; Jan 0, Mar 0
    assert float(ds["intra_spread_charge"]) == pytest.approx(800.0, abs=1e-9)
    # CC risk 710 + 800 = 1,510; no options: no SOM, no NOV; rate class 1 is maintenance (isM 1)
    assert float(ds["risk"]) == pytest.approx(1510.0, abs=1e-9)
    assert float(ds["maintenance"]) == pytest.approx(1510.0, abs=1e-9)
    assert str(ds["rate_class"].values) == "maintenance"


def test_period_leg_spreads_options_som_and_nov_hand_computed():
    ds = _span(PERIOD_LEGS, [("NIFTY:C:20260129:24000", -2), ("NIFTY:C:20260226:24500", 1)], "INR")
    g = ds.sel(group="NIFTY")
    # loss per scenario = -2 x (Jan call) + 1 x (Feb call); scenario 11: -2 x -300 + -330 = 270, the
    # largest (scenario 15: 560 - 300 = 260; scenario 12: 560 - 310 = 250)
    assert float(g["scan_risk"]) == pytest.approx(270.0, abs=1e-9)
    assert int(g["active_scenario"]) == 11
    # deltas: Jan -2 x 0.45 = -0.9, Feb +0.5. Spread 1 (Jan A : Feb B) with A short and B long:
    # min(0.9, 0.5) = 0.5 spreads x 100 = 50; spreads 2 and 3 find Mar flat
    assert float(g["intra_spread_charge"]) == pytest.approx(50.0, abs=1e-9)
    # SOM 50 x max(2 short calls, 0 short puts) = 100; CC risk max(270 + 50, 100) = 320
    assert float(g["short_option_minimum"]) == pytest.approx(100.0, abs=1e-9)
    assert float(g["risk"]) == pytest.approx(320.0, abs=1e-9)
    # NOV = -2 x 120 + 1 x 200 = -40 (cvf 1); requirement max(0, 320 - (-40)) = 360
    assert float(ds["net_option_value"]) == pytest.approx(-40.0, abs=1e-9)
    assert float(ds["maintenance"]) == pytest.approx(360.0, abs=1e-9)


def test_period_legs_that_name_two_periods_of_one_month_are_refused(tmp_path):
    text = PERIOD_LEGS.read_text(encoding="utf-8").replace(
        "<pLeg><cc>NIFTY</cc><pe>20260226</pe><rs>A</rs>", "<pLeg><cc>NIFTY</cc><pe>20260219</pe><rs>A</rs>"
    )
    with pytest.raises(InputError, match="two periods of one month") as ei:
        marginsim.load(_scenario(_write(tmp_path, text), [], "INR"))
    assert "dSpread[2]" in str(ei.value)


def test_bad_period_leg_and_intra_charge_method_are_input_errors(tmp_path):
    text = PERIOD_LEGS.read_text(encoding="utf-8")
    bad_pe = text.replace("<pe>20260326</pe><rs>B</rs><i>2</i>", "<pe>NEXT</pe><rs>B</rs><i>2</i>")
    with pytest.raises(InputError, match="not a period") as ei:
        read_span_xml(_write(tmp_path, bad_pe, "pe.xml"))
    assert ei.value.key_path.endswith("ccDef[1].dSpread[3].pLeg[2].pe")
    meth = text.replace("<spread>2</spread><chargeMeth>F</chargeMeth>", "<spread>2</spread><chargeMeth>P</chargeMeth>")
    with pytest.raises(InputError, match="charge method 'P'") as ei:
        marginsim.load(_scenario(_write(tmp_path, meth, "meth.xml"), [], "INR"))
    assert "dSpread[2].chargeMeth" in str(ei.value)


# -- several tiers, pro-rata allocation, spot charges -------------------------------------------------


def test_several_tiers_pro_rata_and_spot_charges_hand_computed():
    book = [
        ("ABC:F:20260129", 8),
        ("ABC:F:20260226", 4),
        ("ABC:F:20260326", -3),
        ("ABC:F:20260625", -4),
        ("ABC:F:20260924", -2),
    ]
    ds = _span(TIERS_SPOT, book, "EUR")
    g = ds.sel(group="ABC")
    # scanning: scenario 13 (move -1): 8 x 300 + 4 x 310 - 3 x 320 - 4 x 350 - 2 x 380 = 520
    assert float(g["scan_risk"]) == pytest.approx(520.0, abs=1e-9)
    assert int(g["active_scenario"]) == 13
    # tier 1 (Jan-Mar): long 8 + 4 = 12, short 3; tier 2 (Apr-Dec): short 4 + 2 = 6
    # spread 1 (tier 1 A : tier 2 B, 200): min(12, 6) = 6 spreads -> 1,200; tier 1's longs give 6 pro
    #   rata: Jan 8 x 6/12 = 4 (Jan 8 -> 4), Feb 4 x 6/12 = 2 (Feb 4 -> 2); Jun and Sep are used up
    # spread 2 (tier 1 A : tier 1 B, 50): longs Jan 4 + Feb 2 = 6, shorts Mar 3: 3 spreads -> 150;
    #   pro rata Jan 4 x 3/6 = 2 (-> 2), Feb 2 x 3/6 = 1 (-> 1), Mar -> 0
    assert float(g["intra_spread_charge"]) == pytest.approx(1350.0, abs=1e-9)
    # spot 202601 (sprd 10, outr 30): Jan consumed 4 + 2 = 6, left 2: 10 x 6 + 30 x 2 = 120
    # spot 202602 (sprd 20, outr 0): Feb consumed 2 + 1 = 3, left 1: 20 x 3 + 0 x 1 = 60
    assert float(g["spot_charge"]) == pytest.approx(180.0, abs=1e-9)
    # CC risk 520 + 1,350 + 180 = 2,050
    assert float(ds["maintenance"]) == pytest.approx(2050.0, abs=1e-9)


def test_spot_charge_with_and_without_the_outright_rate():
    # Jan alone: no spread forms; its 2 deltas are outright: 30 x 2 = 60
    g = _span(TIERS_SPOT, [("ABC:F:20260129", 2)], "EUR").sel(group="ABC")
    assert float(g["spot_charge"]) == pytest.approx(60.0, abs=1e-9)
    # Feb alone: outright rate 0: no spot charge
    g = _span(TIERS_SPOT, [("ABC:F:20260226", 2)], "EUR").sel(group="ABC")
    assert float(g["spot_charge"]) == 0.0
    # Feb +4 against Jun -4: spread 1 forms 4 spreads (800); Feb's 4 deltas are spread deltas: 20 x 4
    g = _span(TIERS_SPOT, [("ABC:F:20260226", 4), ("ABC:F:20260625", -4)], "EUR").sel(group="ABC")
    assert float(g["intra_spread_charge"]) == pytest.approx(800.0, abs=1e-9)
    assert float(g["spot_charge"]) == pytest.approx(80.0, abs=1e-9)


def test_both_engines_agree_on_tiers_and_spot():
    rng = np.random.default_rng(3)
    ids = [f"ABC:F:{p}" for p in ("20260129", "20260226", "20260326", "20260625", "20260924")]
    rows = [
        {"contract": ids[int(rng.integers(0, 5))], "quantity": int(rng.integers(-9, 10)), "account": f"a{a}"}
        for a in range(60)
        for _ in range(int(rng.integers(1, 7)))
    ]
    inputs = marginsim.load(_scenario(TIERS_SPOT, rows, "EUR"))
    a, b = span_margin(inputs, engine="numba"), span_margin(inputs, engine="numpy")
    for name in ("intra_spread_charge", "spot_charge", "maintenance"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-12, atol=1e-9)
    assert float(a["spot_charge"].sum()) > 0


# -- rate classes ------------------------------------------------------------------------------------


def test_rate_classes_maintenance_file_with_adj_rate():
    ds = _span(RATE_CLASSES, [("AAA:F:202603", 2), ("BBB:F:202603", 3)], "USD")
    # scanning: AAA 2 x 300 = 600, BBB 3 x 100 = 300 (scenario 13); class 1 is maintenance (isM 1):
    # maintenance = 600 + 300 = 900; initial: AAA's adjRate (r 2 = 1.25 x r 1) gives 1.25 x 600 =
    # 750, BBB has none (span.initial_ratio 1): 300; initial = 1,050
    assert float(ds["maintenance"]) == pytest.approx(900.0, abs=1e-9)
    assert float(ds["initial"]) == pytest.approx(1050.0, abs=1e-9)
    assert ds["rate_class"].values.tolist() == ["maintenance", "maintenance"]


def test_rate_classes_initial_file_scaled_into_maintenance(tmp_path):
    # the class read (1) is initial (isM 0); class 2 is maintenance = 0.8 x class 1
    text = (
        RATE_CLASSES.read_text(encoding="utf-8")
        .replace("<r>1</r><isCust>1</isCust><acctType>S</acctType><isM>1</isM>", "<r>1</r><isCust>1</isCust><acctType>S</acctType><isM>0</isM>")
        .replace("<r>2</r><isCust>1</isCust><acctType>S</acctType><isM>0</isM>", "<r>2</r><isCust>1</isCust><acctType>S</acctType><isM>1</isM>")
        .replace("<val>1.25</val>", "<val>0.8</val>")
    )
    ds = _span(_write(tmp_path, text), [("AAA:F:202603", 2), ("BBB:F:202603", 3)], "USD")
    # initial = 600 + 300 = 900; maintenance = 0.8 x 600 + 300 / 1 = 780
    assert float(ds["initial"]) == pytest.approx(900.0, abs=1e-9)
    assert float(ds["maintenance"]) == pytest.approx(780.0, abs=1e-9)
    assert ds["rate_class"].values.tolist() == ["initial", "initial"]


def test_an_adj_rate_of_a_class_into_itself_is_not_used(tmp_path):
    # as in the Takasbank file: class 1 initial (isM 0), adjRate r 1 baseR 1 (no other class named)
    text = (
        RATE_CLASSES.read_text(encoding="utf-8")
        .replace("<isM>1</isM>", "<isM>2</isM>")
        .replace("<isM>0</isM>", "<isM>1</isM>")
        .replace("<isM>2</isM>", "<isM>0</isM>")
        .replace("<adjRate><r>2</r><baseR>1</baseR><val>1.25</val></adjRate>", "<adjRate><r>1</r><baseR>1</baseR><val>0.75</val></adjRate>")
    )
    path = _write(tmp_path, text)
    ds = _span(path, [("AAA:F:202603", 2), ("BBB:F:202603", 3)], "USD")
    # initial = 900 from the arrays; maintenance = initial / span.initial_ratio (1) = 900
    assert float(ds["initial"]) == pytest.approx(900.0, abs=1e-9)
    assert float(ds["maintenance"]) == pytest.approx(900.0, abs=1e-9)
    assert ds["rate_class"].values.tolist() == ["initial", "initial"]
    # the span section's initial_ratio scales initial into maintenance: 900 / 1.5 = 600
    rows = [{"contract": "AAA:F:202603", "quantity": 2}, {"contract": "BBB:F:202603", "quantity": 3}]
    sc = _scenario(path, rows, "USD")
    sc["span"]["initial_ratio"] = 1.5
    ds = marginsim.margin(sc)["span"].sel(account="main")
    assert float(ds["maintenance"]) == pytest.approx(600.0, abs=1e-9)
    assert float(ds["initial"]) == pytest.approx(900.0, abs=1e-9)


# -- what the file holds that the margin does not use --------------------------------------------------


def test_span_file_lists_what_is_not_used(capsys, tmp_path):
    assert main(["span-file", str(TIERS_SPOT), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["not_used"] == {"ccDef/rateTiers": 1, "ccDef/spotRate (r != 1)": 1}
    assert main(["span-file", str(PERIOD_LEGS), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["not_used"] == {}
    text = (
        PERIOD_LEGS.read_text(encoding="utf-8")
        .replace("<somMeth>GROSS</somMeth>", "<somMeth>GROSS</somMeth><concScaleUp>1</concScaleUp>")
        .replace("<i>2</i></pLeg>", "<i>2</i><rate><r>1</r><val>7</val></rate></pLeg>")
        .replace("</clearingOrg>", "<clearSpread><spread>1</spread></clearSpread></clearingOrg>")
    )
    assert main(["span-file", str(_write(tmp_path, text))]) == 0
    out = capsys.readouterr().out
    assert "not used by the margin (3 elements):" in out
    for name in ("ccDef/concScaleUp", "ccDef/dSpread/pLeg/rate", "clearingOrg/clearSpread"):
        assert name in out


# -- cross-check with the peer package marginism (it reads pLeg) ----------------------------------------


def test_period_leg_file_against_marginism():
    mm = pytest.importorskip("marginism")
    calc = mm.SpanCalculator.from_file(str(PERIOD_LEGS))
    t = file_contract_table(read_span_xml(PERIOD_LEGS))
    ids = t["names"]
    rng = np.random.default_rng(18)
    n = 400
    sizes = rng.integers(1, 7, n)
    account = np.repeat(np.arange(n), sizes)
    pick = rng.integers(0, ids.size, sizes.sum())
    qty = (rng.integers(1, 6, sizes.sum()) * np.where(rng.random(sizes.sum()) < 0.5, -1, 1)).astype(float)
    rows = [
        {"contract": str(ids[k]), "quantity": float(q), "account": f"a{a:03d}"}
        for k, q, a in zip(pick, qty, account)
    ]
    ds = marginsim.margin(_scenario(PERIOD_LEGS, rows, "INR"))["span"]
    checked = {"scan": 0, "intra": 0, "nov": 0, "som": 0, "requirement": 0}
    for a in range(n):
        sel = account == a
        # one peer position per contract (marginism counts short options position by position)
        net: dict[str, float] = {}
        for k, q in zip(pick[sel], qty[sel]):
            net[str(ids[k])] = net.get(str(ids[k]), 0.0) + q
        peer_positions = []
        if not any(net.values()):
            continue  # everything nets out: no peer position to margin
        for cid, q in net.items():
            parts = cid.split(":")
            if q == 0:
                continue
            if parts[1] == "F":
                peer_positions.append(mm.Position("NIFTY", "FUT", q, expiry=parts[2]))
            else:
                kind = "CE" if parts[1] == "C" else "PE"
                peer_positions.append(mm.Position("NIFTY", kind, q, expiry=parts[2], strike=float(parts[3])))
        peer = calc.calculate(peer_positions)
        r = peer.by_commodity["NIFTY"]
        mine = ds.sel(account=f"a{a:03d}")
        g = mine.sel(group="NIFTY")
        assert float(g["scan_risk"]) == pytest.approx(r.scan_risk, abs=1e-6)
        assert float(g["intra_spread_charge"]) == pytest.approx(r.calendar_spread_charge, abs=1e-6)
        assert float(mine["net_option_value"]) == pytest.approx(peer.net_option_value, abs=1e-6)
        checked["scan"] += 1
        checked["intra"] += 1
        checked["nov"] += 1
        # marginism's SOM counts every short option; SPAN's gross method takes the larger of short
        # calls and short puts: the same when the account is short options of one kind only
        short_calls = sum(-v for c, v in net.items() if ":C:" in c and v < 0)
        short_puts = sum(-v for c, v in net.items() if ":P:" in c and v < 0)
        if short_calls == 0 or short_puts == 0:
            assert float(g["short_option_minimum"]) == pytest.approx(r.short_option_minimum, abs=1e-6)
            assert float(mine["maintenance"]) == pytest.approx(r.span_risk, abs=1e-6)
            checked["som"] += 1
            checked["requirement"] += 1
    print(f"marginism cross-check on {n} portfolios: {checked}")
    # the sample exercises the period-leg spreads and the SOM comparison
    assert checked["som"] > 200 and float((ds["intra_spread_charge"] > 0).sum()) > 100
