"""SPAN on a real clearing-house file (../shared/data/span/takas.spn, Takasbank 2016-05-17).

Expected values are computed here from the file's own numbers (read with the reader), so that
they check the margin engine against the file, not against itself. Skipped when ../shared is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import marginsim
from marginsim.cli import main
from marginsim.io.span import canonical_id, file_contract_table, read_span_xml
from marginsim.methods.span import span_margin
from marginsim.model import inputs_from_scenario

TAKAS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "span" / "takas.spn"
pytestmark = pytest.mark.skipif(not TAKAS.exists(), reason="../shared/data/span/takas.spn is not available")


@pytest.fixture(scope="module")
def sf():
    return read_span_xml(TAKAS)


def scenario(positions, currency="TRY", **span):
    return {
        "name": "takas",
        "as_of": "2016-05-17",
        "currency": currency,
        "span": {"source": str(TAKAS), **span},
        "positions": positions,
    }


def span_of(positions, **kw):
    return marginsim.margin(scenario(positions, **kw))["span"]


def fut(sf, code):
    return next(p for p in sf.futures_portfolios if p.pf_code == code).contracts


def test_futures_scanning_risk_is_the_price_scan(sf):
    c = fut(sf, "AKBNKE")
    assert c.scan_rates.price_scan[1] == 90.0
    ds = span_of([{"contract": "AKBNKE:F:201606S0", "quantity": 1}]).sel(account="main", group="AKBNKE")
    assert float(ds["scan_risk"]) == pytest.approx(90.0, abs=1e-9)
    assert int(ds["active_scenario"]) == 13
    assert float(ds["risk"]) == pytest.approx(90.0, abs=1e-9)
    np.testing.assert_array_equal(ds["scan_loss"].values, c.risk_arrays[1])


def test_scanning_risk_scales_and_converts_with_the_files_rate():
    ds = span_of([{"contract": "AKBNKE:F:201606S0", "quantity": 10}], currency="USD").sel(account="main")
    assert float(ds["maintenance"]) == pytest.approx(900.0 / 2.9765, rel=1e-12)


def test_calendar_spread_charged_at_the_dspread_rate(sf):
    cc = sf.combined_commodities["AKBNKE"]
    rate = cc.d_spreads[0].rate(1)
    assert rate == 90.0 and cc.d_spreads[0].charge_method == "F"
    ds = span_of(
        [{"contract": "AKBNKE:F:201606S0", "quantity": 1}, {"contract": "AKBNKE:F:201607S0", "quantity": -1}]
    ).sel(account="main", group="AKBNKE")
    assert float(ds["scan_risk"]) == 0.0  # identical arrays offset fully
    assert float(ds["intra_spread_charge"]) == pytest.approx(rate)
    assert float(ds["risk"]) == pytest.approx(rate)


def test_short_option_charged_its_som(sf):
    # an option whose short scanning loss is below its combined commodity's SOM rate
    found = None
    for op in sf.option_portfolios:
        cc = next(c for c in sf.combined_commodities.values() if any(k.pf_id == op.pf_id for k in c.pf_links))
        rate = cc.som_rate()
        short_loss = (-op.contracts.risk_arrays).max(axis=1)
        ok = np.flatnonzero(short_loss < rate)
        if rate > 0 and ok.size:
            found = (op, cc, rate, int(ok[0]), short_loss)
            break
    assert found is not None
    op, cc, som_rate, i, short_loss = found
    c = op.contracts
    kind = "C" if c.is_call[i] else "P"
    name = f"{op.pf_code}:{kind}:{c.period[i]}:{np.format_float_positional(c.strike[i], trim='-')}"
    ds = span_of([{"contract": name, "quantity": -2}]).sel(account="main")
    g = ds.sel(group=cc.code)
    assert float(g["scan_risk"]) == pytest.approx(2 * max(short_loss[i], 0.0), abs=1e-9)
    assert float(g["short_option_minimum"]) == 2 * som_rate
    assert float(g["risk"]) == 2 * som_rate
    nov = -2 * c.price[i] * c.cvf[i]
    assert float(ds["net_option_value"]) == pytest.approx(nov)
    assert float(ds["maintenance"]) == pytest.approx(2 * som_rate - nov)


def test_inter_commodity_pair_receives_its_credit(sf):
    sp = next(s for s in sf.inter_spreads if [leg.cc for leg in s.legs] == ["AKBNKE", "XU030"])
    (a, b) = sp.legs
    assert (a.side, b.side, a.ratio, b.ratio, sp.rate(1)) == ("A", "B", 12.75, 1.0, 0.6)
    ds = span_of(
        [{"contract": "AKBNKE:F:201606S0", "quantity": 51}, {"contract": "XU030:F:201606S0", "quantity": -4}]
    ).sel(account="main")

    def wfpr(ra, qty, delta):
        loss = qty * ra
        act = int(np.argmax(loss))
        pair = [2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 15, 16][act] - 1  # the file's pairs
        price_risk = max((loss[act] + loss[pair]) / 2 - (loss[0] + loss[1]) / 2, 0.0)
        return price_risk / abs(qty * delta)

    ak, xu = fut(sf, "AKBNKE"), fut(sf, "XU030")
    ia = list(ak.period).index("201606S0")
    ix = list(xu.period).index("201606S0")
    spreads = min(51 * ak.composite_delta[ia] / 12.75, 4 * xu.composite_delta[ix] / 1.0)
    assert spreads == pytest.approx(4.0)
    credit_ak = spreads * 12.75 * wfpr(ak.risk_arrays[ia], 51, ak.composite_delta[ia]) * 0.6
    credit_xu = spreads * 1.0 * wfpr(xu.risk_arrays[ix], -4, xu.composite_delta[ix]) * 0.6
    assert float(ds["inter_spread_credit"].sel(group="AKBNKE")) == pytest.approx(credit_ak, rel=1e-12)
    assert float(ds["inter_spread_credit"].sel(group="XU030")) == pytest.approx(credit_xu, rel=1e-12)
    assert credit_ak == pytest.approx(4 * 12.75 * 90 * 0.6)


def test_unknown_file_contract_is_a_clear_error(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text(json.dumps(scenario([{"contract": "AKBNKE:F:209912S0", "quantity": 1}])))
    assert main(["margin", str(p)]) == 2
    err = capsys.readouterr().err
    assert "positions[0].contract" in err and "AKBNKE:F:209912S0" in err and str(p) in err


def test_strike_spelling_is_normalised():
    a = span_of([{"contract": "AKBNKE:C:201606S0:7.5", "quantity": -1}])
    b = span_of([{"contract": "AKBNKE:C:201606S0:7.50", "quantity": -1}])
    assert float(a["maintenance"].sel(account="main")) == float(b["maintenance"].sel(account="main"))


def test_span_file_command(capsys):
    assert main(["span-file", str(TAKAS), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_combined_commodities"] == 40
    assert info["n_portfolios"] == {"physical": 40, "futures": 35, "options": 23}
    assert info["business_date"] == "2016-05-17"
    assert main(["span-file", str(TAKAS), "--contracts", "AKBNKE"]) == 0
    out = capsys.readouterr().out
    assert "AKBNKE:F:201606S0" in out and "AKBNKE:PHY" in out


def _no_nan(name: str) -> float:
    raise ValueError(f"not JSON: {name}")


def test_span_file_contracts_json(sf, capsys):
    # was an AttributeError ('str' object has no attribute 'item'): the listing's object columns
    assert main(["span-file", str(TAKAS), "--contracts", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out, parse_constant=_no_nan)  # strict JSON: no NaN
    table = file_contract_table(sf)
    assert [r["id"] for r in rows] == table["names"].tolist()
    by_id = {r["id"]: r for r in rows}
    fut_row = by_id["AKBNKE:F:201606S0"]
    assert fut_row["type"] == "future" and fut_row["group"] == "AKBNKE" and fut_row["strike"] is None
    assert fut_row["month"] == 201606 and isinstance(fut_row["multiplier"], float)
    call = by_id["AKBNKE:C:201606S0:7.5"]
    assert call["type"] == "call" and call["strike"] == 7.5
    assert main(["span-file", str(TAKAS), "--contracts", "AKBNKE", "--json"]) == 0
    only = json.loads(capsys.readouterr().out, parse_constant=_no_nan)
    assert only and {r["group"] for r in only} == {"AKBNKE"}
    assert only == [r for r in rows if r["group"] == "AKBNKE"]


def test_with_book_normalises_the_strike_spelling():
    inputs = marginsim.load(scenario([]))
    assert inputs.normalise_contract_id is canonical_id
    a = span_margin(inputs.with_book(["AKBNKE:C:201606S0:7.5"], [-1.0]))
    b = span_margin(inputs.with_book(["AKBNKE:C:201606S0:7.50"], [-1.0]))
    assert float(a["maintenance"].sel(account="main")) == float(b["maintenance"].sel(account="main"))


def test_inputs_of_a_span_file_come_from_the_api():
    sc = marginsim.parse_scenario(scenario([{"contract": "AKBNKE:F:201606S0", "quantity": 1}]))
    with pytest.raises(marginsim.InputError, match="span.source"):
        inputs_from_scenario(sc)
    inputs = marginsim.build_inputs(sc)
    assert inputs.span_file is not None and "AKBNKE:F:201606S0" in inputs.contracts["contract"].values


def test_bundled_takasbank_scenario(scenarios_dir, capsys):
    assert main(["margin", str(scenarios_dir / "span_takasbank.yaml"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["accounts"]) == {"bank-hedge", "calendar", "option-writer"}
    g = res["accounts"]["calendar"]["span"]["groups"]["AKBNKE"]
    assert g["intra_spread_charge"] == pytest.approx(90.0 * 5)
