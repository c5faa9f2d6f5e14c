"""Inter-commodity and super inter-commodity spreads, weighted futures price risk methods and the
exposure margin, on SPAN XML files written by hand from the schema (``tests/data/span/``).

Every expected margin is computed by hand in the test (arithmetic in the comments) from the file's
numbers, whose risk arrays are those of a long future with price scan range S: losses
0, 0, -S/3, -S/3, S/3, S/3, -2S/3, -2S/3, 2S/3, 2S/3, -S, -S, S, S, -0.96 S, 0.96 S and delta 1, so
that a long future's scanning risk is S (scenario 13, paired with 14), a short one's S (scenario 11,
paired with 12), its price risk S and its weighted futures price risk (WFPR) S per delta.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import marginsim
from marginsim.errors import InputError
from marginsim.io.span import read_span_xml, span_params_from_file
from marginsim.kernels import span as K
from marginsim.kernels import span_pairs as SP
from marginsim.methods.span.report import span_table

DATA = Path(__file__).resolve().parent / "data" / "span"
INTER = DATA / "inter_spreads.xml"
EXPOSURE = DATA / "exposure_nse.xml"


def scenario(path: Path, positions: list[dict], **span) -> dict:
    return {
        "name": "inter",
        "as_of": "2024-01-02",
        "currency": "EUR",
        "span": {"source": str(path), **span},
        "positions": positions,
    }


def span_of(positions: list[dict], path: Path = INTER, engine: str = "auto", **span):
    return marginsim.margin(scenario(path, positions, **span), engine=engine)["span"]


def pos(contract: str, quantity: float) -> dict:
    return {"contract": contract, "quantity": quantity}


def group_values(ds, name: str) -> dict[str, float]:
    d = ds.sel(account="main")
    return {str(g): float(d[name].sel(group=g)) for g in d["group"].values if bool(d["held"].sel(group=g))}


ENGINES = ["numba", "numpy"]


# -- the file as read ----------------------------------------------------------------------------


def test_the_file_reads_every_inter_method_and_the_super_spread():
    sf = read_span_xml(INTER)
    assert [e.code for e in sf.exchanges] == ["EXA", "EXB"]
    assert [s.charge_method for s in sf.inter_spreads] == ["W", "W", "F", "W", "W"]
    assert [s.spread for s in sf.super_spreads] == [1]
    assert sf.super_spreads[0].key_path.endswith("superSpreads.dSpread[1]")
    p = span_params_from_file(sf)
    by = {s["priority"]: s for s in p["inter_spreads"]}
    assert by[2]["legs"][0]["credit_rate"] == 0.4 and "credit_rate" not in by[2]
    assert by[3] == {
        "priority": 3,
        "method": "F",
        "flat_rate": -90.0,
        "legs": [{"group": "AAA", "side": "A", "ratio": 1.0}, {"group": "DDD", "side": "B", "ratio": 1.0}],
    }
    ccs = p["combined_commodities"]
    assert (ccs["CCC"]["wfpr_method"], ccs["CCC"]["wfpr_scan_range"]) == ("scan_range", 250.0)
    assert (ccs["DDD"]["wfpr_method"], ccs["EEE"]["wfpr_scan_range"]) == ("scan_range_cap", 400.0)
    assert "wfpr_method" not in ccs["AAA"]  # NORMAL is the default
    assert p["super_spreads"][0]["credit_rate"] == 0.9


# -- method W, per spread and per leg ------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_w_spread_credits_each_leg_its_wfpr_times_the_rate(engine):
    # +2 AAA (S 300): scan 600 (scenario 13), price risk 600, WFPR 600 / 2 = 300
    # -1 BBB (S 600): scan 600 (scenario 11), price risk 600, WFPR 600 / 1 = 600
    # spread 1 (W 0.5, AAA A 1 / BBB B 1): min(2 long AAA, 1 short BBB) = 1 spread
    # credit AAA 1 x 1 x 300 x 0.5 = 150, BBB 1 x 1 x 600 x 0.5 = 300
    # risk AAA 600 - 150 = 450, BBB 600 - 300 = 300; requirement 750
    ds = span_of([pos("AAA:F:202403", 2), pos("BBB:F:202403", -1)], engine=engine)
    assert group_values(ds, "inter_spread_credit") == pytest.approx({"AAA": 150.0, "BBB": 300.0}, abs=1e-9)
    assert group_values(ds, "risk") == pytest.approx({"AAA": 450.0, "BBB": 300.0}, abs=1e-9)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(750.0, abs=1e-9)
    # the file has a super spread (not held here): its credit is reported, 0; no exposure margin asked
    assert group_values(ds, "super_spread_credit") == {"AAA": 0.0, "BBB": 0.0}
    assert "exposure_margin" not in ds


@pytest.mark.parametrize("engine", ENGINES)
def test_w_spread_with_a_rate_on_each_leg(engine):
    # +1 BBB: scan 600, WFPR 600; -1 EEE (S 300, SCANRANGE_CAP with priceScan 400): scan 300,
    # WFPR min(300 / 1, 400) = 300
    # spread 2 (leg rates BBB 0.4, EEE 0.7): 1 spread; credit BBB 600 x 0.4 = 240, EEE 300 x 0.7 = 210
    # risk BBB 360, EEE 90; requirement 450
    ds = span_of([pos("BBB:F:202403", 1), pos("EEE:F:202403", -1)], engine=engine)
    assert group_values(ds, "inter_spread_credit") == pytest.approx({"BBB": 240.0, "EEE": 210.0}, abs=1e-9)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(450.0, abs=1e-9)


# -- method F --------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_f_spread_shares_its_flat_amount_among_its_ccs(engine):
    # +2 AAA: scan 600; -1 DDD (S 300): scan 300
    # spread 3 (F, rate -90: a credit of 90 per spread, 45 to each of its 2 CCs): min(2, 1) = 1 spread
    # risk AAA 600 - 45 = 555, DDD 300 - 45 = 255; requirement 810
    ds = span_of([pos("AAA:F:202403", 2), pos("DDD:F:202403", -1)], engine=engine)
    assert group_values(ds, "inter_spread_credit") == pytest.approx({"AAA": 45.0, "DDD": 45.0}, abs=1e-9)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(810.0, abs=1e-9)


def test_a_positive_f_rate_is_a_charge():
    # the scenario's spread replaces the file's (inter_spreads as a whole): F +60 between AAA and DDD,
    # 2 spreads (+2 AAA, -2 DDD): 120, a charge of 60 to each CC (credit -60)
    # risk AAA 600 + 60 = 660, DDD 600 + 60 = 660; requirement 1,320
    spreads = [
        {
            "priority": 1,
            "method": "F",
            "flat_rate": 60,
            "legs": [{"group": "AAA", "side": "A"}, {"group": "DDD", "side": "B"}],
        }
    ]
    ds = span_of([pos("AAA:F:202403", 2), pos("DDD:F:202403", -2)], inter_spreads=spreads)
    assert group_values(ds, "inter_spread_credit") == pytest.approx({"AAA": -60.0, "DDD": -60.0}, abs=1e-9)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(1320.0, abs=1e-9)


# -- across exchanges ------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_inter_spread_between_ccs_of_two_exchanges(engine):
    # AAA links futPf 10 of EXA, ZZZ futPf 10 of EXB (the same pfId on another exchange)
    # +1 AAA: scan 300, WFPR 300; -1 ZZZ: scan 300, WFPR 300
    # spread 4 (W 0.8): 1 spread; credit 240 each; risk 60 each; requirement 120
    ds = span_of([pos("AAA:F:202403", 1), pos("ZZZ:F:202403", -1)], engine=engine)
    assert group_values(ds, "inter_spread_credit") == pytest.approx({"AAA": 240.0, "ZZZ": 240.0}, abs=1e-9)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(120.0, abs=1e-9)


# -- WFPR methods ----------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_wfpr_scan_range_and_scan_range_cap(engine):
    # +1 CCC (array S 300, SCANRANGE, priceScan 250): WFPR = 250 (not 300 / 1)
    # -1 DDD (array S 300, SCANRANGE_CAP, priceScan 250): WFPR = min(300, 250) = 250
    # spread 5 (W 0.6): 1 spread; credit 250 x 0.6 = 150 each; risk 300 - 150 = 150 each; 300
    ds = span_of([pos("CCC:F:202403", 1), pos("DDD:F:202403", -1)], engine=engine)
    assert group_values(ds, "inter_spread_credit") == pytest.approx({"CCC": 150.0, "DDD": 150.0}, abs=1e-9)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(300.0, abs=1e-9)


def test_wfpr_scan_range_replaces_the_price_risk_even_when_larger():
    # +3 CCC, -1 DDD, CCC's scan range raised to 400 by the scenario: CCC's price risk per delta is
    # 900 / 3 = 300, SCANRANGE takes 400 all the same (a cap would keep 300)
    # 1 spread (DDD has 1 short delta); credit CCC 1 x 400 x 0.6 = 240, DDD min(300, 250) x 0.6 = 150
    # risk CCC 900 - 240 = 660, DDD 300 - 150 = 150
    ds = span_of(
        [pos("CCC:F:202403", 3), pos("DDD:F:202403", -1)],
        combined_commodities={"CCC": {"wfpr_scan_range": 400}},
    )
    assert group_values(ds, "inter_spread_credit") == pytest.approx({"CCC": 240.0, "DDD": 150.0}, abs=1e-9)
    assert group_values(ds, "risk") == pytest.approx({"CCC": 660.0, "DDD": 150.0}, abs=1e-9)


def test_wfpr_scan_range_cap_binds_only_above_the_cap():
    # -1 EEE (SCANRANGE_CAP, priceScan 400): normal WFPR 300 < 400, so 300 (test above: 210 = 300 x 0.7);
    # the same spread with EEE's cap lowered to 100 by the scenario: 100 x 0.7 = 70
    ds = span_of(
        [pos("BBB:F:202403", 1), pos("EEE:F:202403", -1)],
        combined_commodities={"EEE": {"wfpr_scan_range": 100}},
    )
    assert group_values(ds, "inter_spread_credit")["EEE"] == pytest.approx(70.0, abs=1e-9)


# -- super spreads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_super_spread_is_formed_before_the_intra_spreads(engine):
    # +1 AAA March (S 300), -1 AAA June (S 330), -1 EEE (S 300)
    # AAA scan: losses 0.1 x (300, ...) of the short June leg less the March leg: largest -0.1 x -300 = 30
    #   (scenario 11); AAA net delta 0, so its WFPR is 0
    # EEE: scan 300, WFPR min(300, 400) = 300
    # super spread 1 (W 0.9, AAA A / EEE B), before the intra spread: AAA's long March delta 1 and EEE's
    #   short delta 1 form 1 spread: credit EEE 1 x 300 x 0.9 = 270, AAA 1 x 0 x 0.9 = 0; it uses the
    #   March delta, so the intra spread (F 30, March against June) finds no long month: charge 0
    # risk AAA 30 + 0 - 0 = 30, EEE 300 - 270 = 30; requirement 60
    # (intra first would have charged AAA 30 and left no AAA delta for the spread: 60 + 300 = 360)
    ds = span_of([pos("AAA:F:202403", 1), pos("AAA:F:202406", -1), pos("EEE:F:202403", -1)], engine=engine)
    assert group_values(ds, "scan_risk") == pytest.approx({"AAA": 30.0, "EEE": 300.0}, abs=1e-9)
    assert group_values(ds, "super_spread_credit") == pytest.approx({"AAA": 0.0, "EEE": 270.0}, abs=1e-9)
    assert group_values(ds, "intra_spread_charge") == pytest.approx({"AAA": 0.0, "EEE": 0.0}, abs=1e-9)
    assert group_values(ds, "inter_spread_credit") == pytest.approx({"AAA": 0.0, "EEE": 0.0}, abs=1e-9)
    assert group_values(ds, "risk") == pytest.approx({"AAA": 30.0, "EEE": 30.0}, abs=1e-9)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(60.0, abs=1e-9)
    assert (
        "super_spread_credit"
        in marginsim.margin(scenario(INTER, [pos("AAA:F:202403", 1), pos("EEE:F:202403", -1)])).to_dict()[
            "accounts"
        ]["main"]["span"]["groups"]["EEE"]
    )


def test_super_spread_credit_uses_the_leg_ccs_wfpr_and_leaves_the_rest_to_inter_spreads():
    # +2 AAA March, -1 EEE, +0 others: super spread 1: min(2, 1) = 1 spread
    # AAA scan 600, WFPR 300: super credit 1 x 300 x 0.9 = 270; EEE 270 as above
    # AAA keeps 1 long delta; no inter spread holds AAA with EEE only: inter credit 0
    # risk AAA 600 - 270 = 330, EEE 30; requirement 360
    ds = span_of([pos("AAA:F:202403", 2), pos("EEE:F:202403", -1)])
    assert group_values(ds, "super_spread_credit") == pytest.approx({"AAA": 270.0, "EEE": 270.0}, abs=1e-9)
    assert float(ds["maintenance"].sel(account="main")) == pytest.approx(360.0, abs=1e-9)


def test_super_credit_kernel_draws_months_pro_rata():
    # one account, CCs 0 and 1; CC 0 has months +3 and +1 (long 4), CC 1 one month -2
    # spread (A CC 0 / B CC 1, ratio 1): min(4, 2) = 2 spreads; CC 0's months give 2 x 3/4 and 2 x 1/4
    ledger = np.array([[3.0], [1.0], [-2.0]])
    row0 = np.array([0, 2, 3])
    pairs = SP.pairs_of(np.array([0, 0]), np.array([0, 1]), 1, 2)
    table = SP.inter_table([K.Spread(0.5, [K.SpreadLeg(0, "A", 1.0), K.SpreadLeg(1, "B", 1.0)])])
    wfpr = np.array([[10.0], [20.0]])
    credit, left = SP.super_credit(ledger, row0, pairs, table, wfpr)
    np.testing.assert_allclose(left, [[1.5], [0.5], [0.0]])
    np.testing.assert_allclose(credit, [[2 * 10 * 0.5], [2 * 20 * 0.5]])
    np.testing.assert_array_equal(ledger, [[3.0], [1.0], [-2.0]])  # the input is left as it was


# -- what the file may not do ----------------------------------------------------------------------


def _edited(tmp_path: Path, old: str, new: str, name: str = "edited.xml") -> Path:
    text = INTER.read_text()
    assert old in text
    p = tmp_path / name
    p.write_text(text.replace(old, new, 1))
    return p


def test_method_p_is_refused_with_the_spread_path(tmp_path):
    p = _edited(
        tmp_path,
        "<spread>5</spread><chargeMeth>W</chargeMeth>",
        "<spread>5</spread><chargeMeth>P</chargeMeth>",
    )
    with pytest.raises(InputError) as e:
        span_of([pos("AAA:F:202403", 1)], path=p)
    assert "per month per spread" in str(e.value)
    assert "interSpreads.dSpread[5]" in str(e.value)


def test_a_super_spread_leg_to_an_unknown_cc_is_refused(tmp_path):
    p = _edited(tmp_path, "<tLeg><cc>EEE</cc><tn>0</tn><rs>B</rs><i>1</i></tLeg>\n        </dSpread>\n      </superSpreads>",
                "<tLeg><cc>NOPE</cc><tn>0</tn><rs>B</rs><i>1</i></tLeg>\n        </dSpread>\n      </superSpreads>")  # fmt: skip
    with pytest.raises(InputError) as e:
        read_span_xml(p)
    assert "combined commodity 'NOPE'" in str(e.value)
    assert "superSpreads.dSpread[1].tLeg[2].cc" in str(e.value)


def test_a_leg_rate_that_is_a_percent_is_refused(tmp_path):
    p = _edited(
        tmp_path,
        "<rs>A</rs><i>1</i><rate><r>1</r><val>0.4</val></rate>",
        "<rs>A</rs><i>1</i><rate><r>1</r><val>40</val></rate>",
    )
    with pytest.raises(InputError) as e:
        read_span_xml(p)
    assert "not a fraction" in str(e.value) and "interSpreads.dSpread[2].tLeg[1].rate[1].val" in str(e.value)


def test_an_unknown_wfpr_method_is_refused(tmp_path):
    p = _edited(tmp_path, "<wfprMeth>SCANRANGE</wfprMeth>", "<wfprMeth>MAGIC</wfprMeth>")
    with pytest.raises(InputError) as e:
        span_of([pos("AAA:F:202403", 1)], path=p)
    assert "<wfprMeth> 'MAGIC'" in str(e.value) and "ccDef" in str(e.value)


def test_scan_range_method_without_a_scan_range_is_refused(tmp_path):
    p = _edited(tmp_path, "<priceScan>250</priceScan></scanRate>", "</scanRate>")
    with pytest.raises(InputError) as e:
        span_of([pos("AAA:F:202403", 1)], path=p)
    assert "needs a price scan range" in str(e.value)


def test_inter_spread_params_need_the_rate_of_their_method():
    bad = [{"priority": 1, "method": "F", "credit_rate": 0.5, "legs": [{"group": "AAA", "side": "A"}, {"group": "DDD", "side": "B"}]}]  # fmt: skip
    with pytest.raises(InputError) as e:
        span_of([pos("AAA:F:202403", 1)], inter_spreads=bad)
    assert "flat_rate" in str(e.value)


# -- exposure margin (NSE) -------------------------------------------------------------------------

EXPOSURE_RATES = {"futures": 0.03, "options": 0.02}
FUT, CALL, PUT = "NIF:F:20240328", "NIF:C:20240328:20000", "NIF:P:20240328:20000"


def exposure_of(positions: list[dict], **span):
    sc = scenario(EXPOSURE, positions, **span)
    sc["currency"] = "INR"
    return marginsim.margin(sc)


def test_exposure_margin_is_a_percentage_of_notional_added_to_the_requirement():
    # +50 NIF future (price 20,100), -50 NIF call (strike 20,000, price 150), quantities in units (cvf 1)
    # SPAN: losses 50 x (future - call) per scenario; the largest is scenario 16:
    #   50 x (2,880 - 900) = 99,000; net option value -50 x 150 = -7,500; SPAN 99,000 + 7,500 = 106,500
    # exposure: future 0.03 x 50 x 20,100 = 30,150; short call at the underlying's (spot) price
    #   0.02 x 50 x 20,000 = 20,000; total 50,150
    # maintenance = initial = 106,500 + 50,150 = 156,650
    r = exposure_of([pos(FUT, 50), pos(CALL, -50)], exposure_margin=EXPOSURE_RATES)
    d = r["span"].sel(account="main")
    assert float(d["scan_risk"].sel(group="NIF")) == pytest.approx(99_000.0, abs=1e-9)
    assert float(d["exposure_margin"]) == pytest.approx(50_150.0, abs=1e-9)
    assert float(d["maintenance"]) == pytest.approx(156_650.0, abs=1e-9)
    assert float(d["initial"]) == pytest.approx(156_650.0, abs=1e-9)
    obj = r.to_dict()["accounts"]["main"]["span"]
    assert obj["exposure_margin"] == pytest.approx(50_150.0, abs=1e-9)
    assert "exposure margin" in span_table(r["span"], "main")


def test_long_options_carry_no_exposure_and_groups_override_the_rates():
    # +25 put (long): no exposure; per-group options rate 0.05 for NIF: short call 0.05 x 50 x 20,000
    # = 50,000; futures keep 0.03: 30,150; total 80,150
    rates = {**EXPOSURE_RATES, "groups": {"NIF": {"options": 0.05}}}
    r = exposure_of([pos(FUT, 50), pos(CALL, -50), pos(PUT, 25)], exposure_margin=rates)
    assert float(r["span"]["exposure_margin"].sel(account="main")) == pytest.approx(80_150.0, abs=1e-9)


def test_exposure_is_on_the_net_position_of_each_contract():
    # rows +50 and -20 of the future and -50, +10 of the call in one account: net +30 future
    # (0.03 x 30 x 20,100 = 18,090) and net -40 call (0.02 x 40 x 20,000 = 16,000): 34,090;
    # a second account short 5 futures: 0.03 x 5 x 20,100 = 3,015
    rows = [pos(FUT, 50), pos(CALL, -50), pos(FUT, -20), pos(CALL, 10)]
    rows += [{"account": "other", "contract": FUT, "quantity": -5}]
    ds = exposure_of(rows, exposure_margin=EXPOSURE_RATES)["span"]
    assert float(ds["exposure_margin"].sel(account="main")) == pytest.approx(34_090.0, abs=1e-9)
    assert float(ds["exposure_margin"].sel(account="other")) == pytest.approx(3_015.0, abs=1e-9)


def test_without_exposure_margin_nothing_changes():
    r = exposure_of([pos(FUT, 50), pos(CALL, -50)])
    assert "exposure_margin" not in r["span"]
    assert "exposure_margin" not in r.to_dict()["accounts"]["main"]["span"]
    assert float(r["span"]["maintenance"].sel(account="main")) == pytest.approx(106_500.0, abs=1e-9)


def test_exposure_rates_are_fractions():
    with pytest.raises(InputError) as e:
        exposure_of([pos(FUT, 1)], exposure_margin={"futures": 3})
    assert "exposure_margin" in str(e.value) and "futures" in str(e.value)


def test_exposure_margin_against_marginism():
    marginism = pytest.importorskip("marginism")
    positions = [pos(FUT, 30), pos(CALL, -50), pos(PUT, 25)]
    peer = marginism.SpanCalculator.from_file(
        str(EXPOSURE),
        exposure=marginism.ExposureConfig(
            stock_futures_pct=0.03, stock_options_pct=0.02, expiry_day_elm_pct=0.0
        ),
    ).calculate(
        [
            marginism.Position("NIF", "FUT", 30, expiry="20240328"),
            marginism.Position("NIF", "CE", -50, expiry="20240328", strike=20000),
            marginism.Position("NIF", "PE", 25, expiry="20240328", strike=20000),
        ]
    )
    d = exposure_of(positions, exposure_margin=EXPOSURE_RATES)["span"].sel(account="main")
    assert float(d["exposure_margin"]) == pytest.approx(peer.exposure_margin, rel=1e-12)
    assert float(d["net_option_value"]) == pytest.approx(peer.net_option_value, rel=1e-12)
    assert float(d["maintenance"]) == pytest.approx(peer.total_margin, rel=1e-12)


def test_an_option_strike_spelled_twice_is_one_contract_defined_twice(tmp_path):
    # the identifiers compare strikes as numbers: 20000 and 20000.00 name the same option
    text = EXPOSURE.read_text().replace("<o>P</o><k>20000</k>", "<o>C</o><k>20000.00</k>")
    p = tmp_path / "twice.xml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        read_span_xml(p)
    assert "contract NIF:C:20240328:20000 is defined twice (first at " in str(e.value)
    assert (
        "exchange[1].oopPf[1].series[1].opt[2]: contract NIF:C:20240328:20000 is defined twice (first at "
        in str(e.value)
    )
    assert "(first at spanFile.pointInTime.clearingOrg.exchange[1].oopPf[1].series[1].opt[1])" in str(e.value)


def test_engines_agree_on_random_books_of_the_inter_file():
    # 300 accounts of 1-6 random positions over every contract of the file: every spread method,
    # the WFPR methods and the super spread, through the compiled and the numpy kernels
    rng = np.random.default_rng(18)
    ids = ["AAA:F:202403", "AAA:F:202406", "BBB:F:202403", "CCC:F:202403", "DDD:F:202403", "EEE:F:202403"]
    ids += ["ZZZ:F:202403"]
    rows = [
        {"account": f"a{a}", "contract": str(rng.choice(ids)), "quantity": int(rng.integers(-5, 6) or 1)}
        for a in range(300)
        for _ in range(int(rng.integers(1, 7)))
    ]
    a, b = (span_of(rows, engine=e) for e in ENGINES)
    for name in ("maintenance", "super_spread_credit", "inter_spread_credit", "intra_spread_charge", "risk"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-12, atol=1e-9, err_msg=name)
    assert (
        float(np.abs(a["super_spread_credit"]).sum()) > 0
        and float(np.abs(a["inter_spread_credit"]).sum()) > 0
    )
