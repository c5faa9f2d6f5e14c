"""The SPAN worked example of the seed document, every figure (spec/span.md section 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import marginsim
from marginsim.cli import main

# pnl of the seed table (gains positive) per scenario 1..16
FUTURE_PNL = [0, 0, 2000, 2000, -2000, -2000, 4000, 4000, -4000, -4000, 6000, 6000, -6000, -6000, 5760, -5760]
PUT_PNL = [20, -18, -1290, -1155, 1600, 1375, -2100, -2330, 3350, 3100, -3100, -3375, 5150, 4875, -3680, 5400]
TOTAL_PNL = [20, -18, 710, 845, -400, -625, 1900, 1670, -650, -900, 2900, 2625, -850, -1125, 2080, -360]


SEED = Path(__file__).resolve().parents[1] / "scenarios" / "span_seed_example.yaml"


@pytest.fixture(scope="module")
def seed():
    return marginsim.margin(SEED)


def test_future_risk_array_is_computed_by_the_model(seed):
    ds = seed["span"]
    assert bool(ds["risk_array"].sel(contract="ABC-FUT").notnull().all())
    # risk arrays are losses: the seed's pnl with the sign flipped, every one of the 16 values
    np.testing.assert_array_equal(
        ds["risk_array"].sel(contract="ABC-FUT").values, -np.array(FUTURE_PNL, float)
    )


def test_extreme_scenarios_are_3_times_6000_times_032(seed):
    ra = seed["span"]["risk_array"].sel(contract="ABC-FUT").values
    assert ra[14] == -5760.0 and ra[15] == 5760.0


def test_put_risk_array_is_taken_as_given(seed):
    np.testing.assert_array_equal(
        seed["span"]["risk_array"].sel(contract="ABC-P950").values, -np.array(PUT_PNL, float)
    )


def test_every_scenario_total_and_scan_risk_1125_at_14(seed):
    ds = seed["span"].sel(account="main", group="ABC")
    np.testing.assert_array_equal(ds["scan_loss"].values, -np.array(TOTAL_PNL, float))
    assert float(ds["scan_risk"]) == 1125.0
    assert int(ds["active_scenario"]) == 14


def test_cc_risk_is_scan_risk_without_spreads_or_som(seed):
    ds = seed["span"].sel(account="main", group="ABC")
    for k in ("intra_spread_charge", "spot_charge", "inter_spread_credit", "short_option_minimum"):
        assert float(ds[k]) == 0.0
    assert float(ds["risk"]) == 1125.0
    acct = seed["span"].sel(account="main")
    assert float(acct["span_risk"]) == 1125.0
    # the long put is premium-style: its value (model price from vol 0.20) is the NOV
    nov = float(acct["net_option_value"])
    assert nov > 0
    assert float(acct["maintenance"]) == pytest.approx(max(0.0, 1125.0 - nov), abs=1e-9)


def test_json_contract_through_the_cli(capsys, scenarios_dir):
    assert main(["margin", str(scenarios_dir / "span_seed_example.yaml"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (
        res["scenario"] == "span-seed-example" and res["currency"] == "USD" and res["as_of"] == "2026-11-20"
    )
    assert res["dims"] == {}
    span = res["accounts"]["main"]["span"]
    for key in ("maintenance", "initial", "net_option_value", "span_risk", "groups", "risk_arrays"):
        assert key in span
    g = span["groups"]["ABC"]
    assert set(g) >= {
        "scan_risk",
        "active_scenario",
        "intra_spread_charge",
        "spot_charge",
        "inter_spread_credit",
        "short_option_minimum",
        "risk",
    }
    assert g["scan_risk"] == 1125.0 and g["active_scenario"] == 14
    assert span["risk_arrays"]["ABC-FUT"] == [-float(x) for x in FUTURE_PNL]


def test_readable_table(capsys, scenarios_dir):
    assert main(["margin", str(scenarios_dir / "span_seed_example.yaml")]) == 0
    out = capsys.readouterr().out
    assert "1,125.00" in out and "ABC" in out


def test_seed_check_script(shared_dir, scenarios_dir):
    """The product owner's check, through the installed console script."""
    script = shared_dir / "checks" / "seed_examples.py"
    if not script.exists():
        pytest.skip("no seed check script")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=scenarios_dir.parent,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert "ok   span seed example" in out.stdout, out.stdout + out.stderr
