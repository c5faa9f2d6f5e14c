"""Period legs (``pLeg``) of super inter-commodity spreads, on a SPAN XML file written by hand from
the schema (``tests/data/span/super_period_legs.xml``: ``inter_spreads.xml`` with other super
spreads), and the period legs still refused (in inter spreads).

Every expected margin is computed by hand in the test (arithmetic in the comments) from the file's
numbers, whose risk arrays are those of a long future with price scan range S: losses
0, 0, -S/3, -S/3, S/3, S/3, -2S/3, -2S/3, 2S/3, 2S/3, -S, -S, S, S, -0.96 S, 0.96 S and delta 1, so
that a long future's scanning risk is S (scenario 13), a short one's S (scenario 11), its price
risk S and its weighted futures price risk (WFPR) S per delta. Super spreads of the file:
1 W 0.9 pLeg AAA 202406 A / EEE B; 2 W 0.5 BBB A / pLeg AAA 202403 B; 3 F -60 pLeg AAA 202403 A /
DDD B. AAA has an intra spread F 30 (all months against all months).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import marginsim
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.io.span import read_span_xml, span_params_from_file
from marginsim.kernels import span as K
from marginsim.kernels import span_pairs as SP

DATA = Path(__file__).resolve().parent / "data" / "span"
SUPER = DATA / "super_period_legs.xml"
INTER = DATA / "inter_spreads.xml"
ENGINES = ["numba", "numpy"]


def span_of(positions: list[tuple[str, float]], path: Path = SUPER, engine: str = "auto"):
    sc = {
        "name": "super-period-legs",
        "as_of": "2024-01-02",
        "currency": "EUR",
        "span": {"source": str(path)},
        "positions": [{"contract": c, "quantity": q} for c, q in positions],
    }
    return marginsim.margin(sc, engine=engine)["span"].sel(account="main")


def per_group(ds, name: str) -> dict[str, float]:
    return {str(g): float(ds[name].sel(group=g)) for g in ds["group"].values if bool(ds["held"].sel(group=g))}


def _edited(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "edited.xml"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return p


def test_period_legs_of_super_spreads_are_read_as_month_legs():
    params = span_params_from_file(read_span_xml(SUPER))
    legs = [
        [(leg["group"], leg["side"], leg.get("month")) for leg in sp["legs"]] for sp in params["super_spreads"]
    ]
    assert legs == [
        [("AAA", "A", 202406), ("EEE", "B", None)],
        [("BBB", "A", None), ("AAA", "B", 202403)],
        [("AAA", "A", 202403), ("DDD", "B", None)],
    ]
    assert [sp.get("credit_rate", sp.get("flat_rate")) for sp in params["super_spreads"]] == [0.9, 0.5, -60.0]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_period_leg_draws_from_its_month(engine):
    # +1 AAA June (S 330), -1 AAA March (S 300), -1 EEE (S 300)
    # AAA scan: 330 - 300 = 30 (scenario 13: the long June loses 330, the short March gains 300);
    #   net delta 0: WFPR 0. EEE: scan 300, WFPR min(300, priceScan 400) = 300
    # super spread 1 (W 0.9, pLeg AAA June A / EEE B): AAA's long June delta 1 and EEE's short delta 1:
    #   1 spread, credit EEE 1 x 300 x 0.9 = 270, AAA 1 x 0 x 0.9 = 0; June is used, so the intra
    #   spread (F 30) finds no long month: charge 0
    # risk AAA 30, EEE 300 - 270 = 30; requirement 60
    ds = span_of([("AAA:F:202406", 1), ("AAA:F:202403", -1), ("EEE:F:202403", -1)], engine=engine)
    assert per_group(ds, "scan_risk") == pytest.approx({"AAA": 30.0, "EEE": 300.0}, abs=1e-9)
    assert per_group(ds, "super_spread_credit") == pytest.approx({"AAA": 0.0, "EEE": 270.0}, abs=1e-9)
    assert per_group(ds, "intra_spread_charge") == pytest.approx({"AAA": 0.0, "EEE": 0.0}, abs=1e-9)
    assert float(ds["maintenance"]) == pytest.approx(60.0, abs=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_period_leg_does_not_draw_from_other_months(engine):
    # the same book with the months the other way round: +1 AAA March, -1 AAA June, -1 EEE
    # AAA scan 30 (scenario 11: the short June loses 330, the long March gains 300)
    # super spread 1 needs AAA long in June (or short in June against EEE long): June is short and EEE
    #   short, so no spread (a leg on all of AAA's months would have taken the long March delta: 60)
    # intra spread F 30: March long 1 against June short 1: 30
    # risk AAA 30 + 30 = 60, EEE 300; requirement 360
    ds = span_of([("AAA:F:202403", 1), ("AAA:F:202406", -1), ("EEE:F:202403", -1)], engine=engine)
    assert per_group(ds, "super_spread_credit") == pytest.approx({"AAA": 0.0, "EEE": 0.0}, abs=1e-9)
    assert per_group(ds, "intra_spread_charge") == pytest.approx({"AAA": 30.0, "EEE": 0.0}, abs=1e-9)
    assert per_group(ds, "risk") == pytest.approx({"AAA": 60.0, "EEE": 300.0}, abs=1e-9)
    assert float(ds["maintenance"]) == pytest.approx(360.0, abs=1e-9)
    # the same book on inter_spreads.xml, whose super spread 1 has a tier leg on all of AAA's months
    assert float(span_of([("AAA:F:202403", 1), ("AAA:F:202406", -1), ("EEE:F:202403", -1)], INTER)[
        "maintenance"
    ]) == pytest.approx(60.0, abs=1e-9)  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
def test_a_period_leg_on_the_b_side(engine):
    # +1 BBB (S 600), -2 AAA March
    # AAA scan 2 x 300 = 600, WFPR 600 / 2 = 300; BBB scan 600, WFPR 600
    # super spread 2 (W 0.5, BBB A / pLeg AAA March B): min(1, 2) = 1 spread:
    #   credit BBB 1 x 600 x 0.5 = 300, AAA 1 x 300 x 0.5 = 150; AAA March keeps -1, BBB 0
    # inter spread 1 (AAA A / BBB B) finds BBB with no delta left: 0
    # risk AAA 600 - 150 = 450, BBB 600 - 300 = 300; requirement 750
    ds = span_of([("BBB:F:202403", 1), ("AAA:F:202403", -2)], engine=engine)
    assert per_group(ds, "super_spread_credit") == pytest.approx({"AAA": 150.0, "BBB": 300.0}, abs=1e-9)
    assert per_group(ds, "inter_spread_credit") == pytest.approx({"AAA": 0.0, "BBB": 0.0}, abs=1e-9)
    assert float(ds["maintenance"]) == pytest.approx(750.0, abs=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_flat_super_spread_with_a_period_leg(engine):
    # +2 AAA March, +1 AAA June, -1 DDD (S 300)
    # AAA scan 2 x 300 + 330 = 930; DDD scan 300
    # super spread 3 (F -60, pLeg AAA March A / DDD B): min(2, 1) = 1 spread, a credit of 60 shared by
    #   the 2 CCs: 30 each; AAA keeps March +1 and June +1, DDD 0
    # no intra spread (AAA all long); inter spread 3 (AAA A / DDD B) finds DDD with no delta left
    # risk AAA 930 - 30 = 900, DDD 300 - 30 = 270; requirement 1,170
    ds = span_of([("AAA:F:202403", 2), ("AAA:F:202406", 1), ("DDD:F:202403", -1)], engine=engine)
    assert per_group(ds, "super_spread_credit") == pytest.approx({"AAA": 30.0, "DDD": 30.0}, abs=1e-9)
    assert per_group(ds, "inter_spread_credit") == pytest.approx({"AAA": 0.0, "DDD": 0.0}, abs=1e-9)
    assert float(ds["maintenance"]) == pytest.approx(1170.0, abs=1e-9)


def test_super_credit_kernel_with_period_legs():
    # one account, CCs 0 and 1; CC 0 has months +3 and +1, CC 1 one month -2
    # spread 1 (A pLeg CC 0 month 1 / B CC 1): min(1, 2) = 1 spread, from month 1 only
    # spread 2 (A pLeg CC 0 month 0 / B CC 1): min(3, 1 left) = 1 spread
    # spread 3 (A pLeg CC 0 on a month it lacks / B CC 1): nothing
    ledger = np.array([[3.0], [1.0], [-2.0]])
    row0 = np.array([0, 2, 3])
    pairs = SP.pairs_of(np.array([0, 0]), np.array([0, 1]), 1, 2)
    spreads = [K.Spread(0.5, [K.SpreadLeg(0, "A", 1.0), K.SpreadLeg(1, "B", 1.0)]) for _ in range(3)]
    table = dataclasses.replace(SP.inter_table(spreads), leg_month=np.array([1, -1, 0, -1, SP.NO_MONTH, -1]))
    wfpr = np.array([[10.0], [20.0]])
    credit, left = SP.super_credit(ledger, row0, pairs, table, wfpr)
    np.testing.assert_array_equal(left, [[2.0], [0.0], [0.0]])
    np.testing.assert_array_equal(credit, [[2 * 10 * 0.5], [2 * 20 * 0.5]])


# -- what stays refused ----------------------------------------------------------------------------


def test_a_period_leg_of_an_inter_spread_is_refused_with_its_path(tmp_path):
    p = _edited(
        tmp_path,
        INTER,
        "<tLeg><cc>ZZZ</cc><tn>0</tn><rs>B</rs><i>1</i></tLeg>",
        "<pLeg><cc>ZZZ</cc><pe>202403</pe><rs>B</rs><i>1</i></pLeg>",
    )
    with pytest.raises(InputError) as e:
        span_of([("AAA:F:202403", 1)], path=p)
    assert "inter spread 4 has a period leg (pLeg)" in str(e.value)
    assert "interSpreads.dSpread[4]" in str(e.value)


def test_two_periods_of_one_month_in_a_super_spread_are_refused(tmp_path):
    p = _edited(
        tmp_path,
        SUPER,
        "<tLeg><cc>BBB</cc><tn>0</tn><rs>A</rs><i>1</i></tLeg>",
        "<pLeg><cc>AAA</cc><pe>20240301</pe><rs>A</rs><i>1</i></pLeg>",
    )
    with pytest.raises(InputError) as e:
        span_of([("AAA:F:202403", 1)], path=p)
    assert "two periods of one month" in str(e.value)
    assert "superSpreads.dSpread[2]" in str(e.value)


def test_a_month_leg_in_a_scenario_inter_spread_is_refused():
    sc = {
        "name": "x",
        "as_of": "2024-01-02",
        "currency": "EUR",
        "span": {
            "source": str(SUPER),
            "inter_spreads": [
                {"priority": 1, "credit_rate": 0.5, "legs": [
                    {"group": "AAA", "side": "A", "month": 202403}, {"group": "BBB", "side": "B"}]},
            ],
        },
        "positions": [{"contract": "AAA:F:202403", "quantity": 1}],
    }  # fmt: skip
    with pytest.raises(InputError) as e:
        marginsim.margin(sc)
    assert "period legs are taken in super_spreads" in str(e.value)


def test_span_file_lists_nothing_of_the_super_spreads_as_not_used(capsys, tmp_path):
    assert main(["span-file", str(SUPER), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["not_used"] == {"definitions/acctTypeDef": 1}
    # a leg rate of a W spread is its credit rate (used); of an F spread it is not used
    p = _edited(
        tmp_path,
        SUPER,
        "<pLeg><cc>AAA</cc><pe>202403</pe><rs>A</rs><i>1</i></pLeg>",
        "<pLeg><cc>AAA</cc><pe>202403</pe><rs>A</rs><i>1</i><rate><r>1</r><val>0.5</val></rate></pLeg>",
    )
    assert main(["span-file", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["not_used"] == {
        "definitions/acctTypeDef": 1,
        "superSpreads/dSpread/pLeg/rate": 1,
    }
