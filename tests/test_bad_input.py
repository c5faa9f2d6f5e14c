"""The bad-input corpus (issue 14): hostile scenario files through the CLI.

Every case is a bundled scenario with one mutation (a value set at a key path, or a piece of the
YAML text replaced), or a small YAML text of its own. Each must be refused the way the README
promises: ``marginsim margin FILE --json`` exits with status 2, prints nothing on stdout, and one
line on stderr naming the file, the key path and the problem. SPAN-file cases live in
``tests/test_bad_input_span.py``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import marginsim
from marginsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"

NAN, INF = math.nan, math.inf

FINITE = "must be a finite number"
TOO_LARGE = "above the largest amount"
TIME_ZONE = "time zone"

_BASES: dict[str, dict[str, Any]] = {}


def _base(name: str) -> dict[str, Any]:
    if name not in _BASES:
        _BASES[name] = yaml.safe_load((SCENARIOS / name).read_text())
    return copy.deepcopy(_BASES[name])


def put(*changes: tuple[tuple[str | int, ...], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A mutation: set each key path to its value (creating mappings on the way)."""

    def apply(data: dict[str, Any]) -> dict[str, Any]:
        for path, value in changes:
            node = data
            for k in path[:-1]:
                if isinstance(node, dict) and k not in node:
                    node[k] = {}
                node = node[k]
            node[path[-1]] = value
        return data

    return apply


def text(old: str, new: str) -> Callable[[str], str]:
    """A mutation of the YAML text: replace ``old`` (which must be there) by ``new``."""

    def apply(src: str) -> str:
        assert old in src, old
        return src.replace(old, new, 1)

    apply.is_text = True  # type: ignore[attr-defined]
    return apply


S = "span_seed_example.yaml"
P = "pm_small_cap_concentrated.yaml"
C = "cfd_two_fills.yaml"
A = "account_hk_margin_call.yaml"
MINIMAL = "name: x\nas_of: 2026-11-20\n"

#: (id, base scenario or None for a text of its own, mutation or text, key path, problem phrase)
CASES: list[tuple[str, str | None, Any, str | None, str]] = [
    # --- 1. non-finite numbers, wherever a float is read
    ("rate-nan", S, put((("market", "ABC", "rate"), NAN)), "market.ABC.rate", FINITE),
    ("rate-inf", S, put((("market", "ABC", "rate"), INF)), "market.ABC.rate", FINITE),
    ("price-inf", S, put((("market", "ABC", "price"), INF)), "market.ABC.price", FINITE),
    ("price-nan", S, put((("market", "ABC", "price"), NAN)), "market.ABC.price", FINITE),
    ("vol-inf", S, put((("market", "ABC", "vol"), INF)), "market.ABC.vol", FINITE),
    ("vol-nan", S, put((("market", "ABC", "vol"), NAN)), "market.ABC.vol", FINITE),
    ("dividend-yield-minus-inf", S, put((("market", "ABC", "dividend_yield"), -INF)), "market.ABC.dividend_yield", FINITE),
    ("multiplier-inf", S, put((("contracts", "ABC-FUT", "multiplier"), INF)), "contracts.ABC-FUT.multiplier", FINITE),
    ("multiplier-nan", S, put((("contracts", "ABC-FUT", "multiplier"), NAN)), "contracts.ABC-FUT.multiplier", FINITE),
    ("strike-inf", S, put((("contracts", "ABC-P950", "strike"), INF)), "contracts.ABC-P950.strike", FINITE),
    ("strike-nan", S, put((("contracts", "ABC-P950", "strike"), NAN)), "contracts.ABC-P950.strike", FINITE),
    ("option-price-nan", S, put((("contracts", "ABC-P950", "price"), NAN)), "contracts.ABC-P950.price", FINITE),
    ("option-vol-inf", S, put((("contracts", "ABC-P950", "vol"), INF)), "contracts.ABC-P950.vol", FINITE),
    ("risk-array-nan", S, put((("contracts", "ABC-P950", "risk_array", 3), NAN)), "contracts.ABC-P950.risk_array[3]", FINITE),
    ("risk-array-inf", S, put((("contracts", "ABC-P950", "risk_array", 0), INF)), "contracts.ABC-P950.risk_array[0]", FINITE),
    ("composite-delta-nan", S, put((("contracts", "ABC-P950", "composite_delta"), NAN)), "contracts.ABC-P950.composite_delta", FINITE),
    ("quantity-nan", S, put((("positions", 0, "quantity"), NAN)), "positions[0].quantity", FINITE),
    ("quantity-inf", S, put((("positions", 1, "quantity"), -INF)), "positions[1].quantity", FINITE),
    ("price-scan-inf", S, put((("span", "combined_commodities", "ABC", "price_scan"), INF)), "span.combined_commodities.ABC.price_scan", FINITE),
    ("vol-scan-nan", S, put((("span", "combined_commodities", "ABC", "vol_scan"), NAN)), "span.combined_commodities.ABC.vol_scan", FINITE),
    ("cover-fraction-nan", S, put((("span", "combined_commodities", "ABC", "extreme", "cover_fraction"), NAN)), "span.combined_commodities.ABC.extreme.cover_fraction", FINITE),
    ("lookahead-inf", S, put((("span", "combined_commodities", "ABC", "lookahead_days"), INF)), "span.combined_commodities.ABC.lookahead_days", FINITE),
    ("span-initial-ratio-inf", S, put((("span", "initial_ratio"), INF)), "span.initial_ratio", FINITE),
    ("scenario-set-nan", S, put((("span", "scenario_set"), [{"price": NAN}])), "span.scenario_set[0].price", FINITE),
    ("grid-shift-nan", S, put((("grid", "shift"), [0.0, NAN])), "grid.shift[1]", FINITE),
    ("grid-shift-per-underlying-inf", S, put((("grid", "shift"), {"ABC": [0.0, INF]})), "grid.shift.ABC[1]", FINITE),
    ("grid-vol-shift-inf", S, put((("grid", "vol_shift"), [INF])), "grid.vol_shift[0]", FINITE),
    ("grid-price-scan-scale-inf", S, put((("grid", "price_scan_scale"), [1.0, INF])), "grid.price_scan_scale[1]", FINITE),
    ("grid-vol-scan-scale-nan", S, put((("grid", "vol_scan_scale"), [NAN])), "grid.vol_scan_scale[0]", FINITE),
    ("fx-nan", S, put((("fx",), {"EUR": NAN})), "fx.EUR", FINITE),
    ("pm-price-inf", P, put((("market", "TINY", "price"), INF)), "market.TINY.price", FINITE),
    ("pm-market-cap-nan", P, put((("market", "TINY", "market_cap"), NAN)), "market.TINY.market_cap", FINITE),
    ("pm-shares-outstanding-inf", P, put((("market", "MICRO", "shares_outstanding"), INF)), "market.MICRO.shares_outstanding", FINITE),
    ("pm-adv-nan", P, put((("market", "SMOL", "adv"), NAN)), "market.SMOL.adv", FINITE),
    ("pm-cash-nan", P, put((("portfolio_margin", "cash", "main"), NAN)), "portfolio_margin.cash.main", FINITE),
    ("pm-option-minimum-inf", P, put((("portfolio_margin", "option_minimum"), INF)), "portfolio_margin.option_minimum", FINITE),
    ("pm-extreme-multiple-nan", P, put((("portfolio_margin", "extreme", "multiple"), NAN)), "portfolio_margin.extreme.multiple", FINITE),
    ("pm-small-cap-inf", P, put((("portfolio_margin", "single_name", "small_cap", "max_market_cap"), INF)), "portfolio_margin.single_name.small_cap.max_market_cap", FINITE),
    ("pm-dynamic-scan-nan", P, put((("portfolio_margin", "dynamic_house_scan"), {"US": NAN})), "portfolio_margin.dynamic_house_scan.US", FINITE),
    ("pm-minimum-equity-inf", P, put((("portfolio_margin", "minimum_equity"), {"amount": INF})), "portfolio_margin.minimum_equity.amount", FINITE),
    ("pm-option-premium-inf", P, put((("contracts", "SMOL-C40-JAN", "price"), INF)), "contracts.SMOL-C40-JAN.price", FINITE),
    ("cfd-cash-nan", C, put((("cfd", "accounts", "main", "cash", "EUR"), NAN)), "cfd.accounts.main.cash.EUR", FINITE),
    ("cfd-cash-inf", C, put((("cfd", "accounts", "main", "cash"), INF)), "cfd.accounts.main.cash", FINITE),
    ("cfd-benchmark-nan", C, put((("cfd", "financing", "benchmark"), {"EUR": NAN})), "cfd.financing.benchmark.EUR", FINITE),
    ("cfd-leverage-inf", C, put((("cfd", "leverage"), {"crypto": INF})), "cfd.leverage.crypto", FINITE),
    ("cfd-vol-rule-nan", C, put((("cfd", "broker_vol_rule"), {"z": NAN})), "cfd.broker_vol_rule.z", FINITE),
    ("cfd-historical-vol-inf", C, put((("cfd", "underlyings"), {"XYZ": {"historical_vol": INF}})), "cfd.underlyings.XYZ.historical_vol", FINITE),
    ("cfd-path-inf", C, put((("grid", "path", "XYZ", 3), INF)), "grid.path.XYZ[3]", FINITE),
    ("cfd-path-nan", C, put((("grid", "path", "XYZ", 2), NAN)), "grid.path.XYZ[2]", FINITE),
    ("cfd-open-price-inf", C, put((("positions", 0, "open_price"), INF)), "positions[0].open_price", FINITE),
    ("mc-drift-nan", C, put((("grid",), {"monte_carlo": {"paths": 2, "steps": 2, "drift": NAN}})), "grid.monte_carlo.drift", FINITE),
    ("mc-vol-inf", C, put((("grid",), {"monte_carlo": {"paths": 2, "steps": 2, "vol": {"XYZ": INF}}})), "grid.monte_carlo.vol.XYZ", FINITE),
    ("account-fx-nan", A, put((("fx", "HKD"), NAN)), "fx.HKD", FINITE),
    ("account-cash-nan", A, put((("account", "accounts", "main", "cash", "HK_", "HKD"), NAN)), "account.accounts.main.cash.HK_.HKD", FINITE),
    ("account-fixed-margin-inf", A, put((("account", "products", "HSI-2602", "margin", "initial"), INF)), "account.products.HSI-2602.margin.initial", FINITE),
    ("account-benchmark-nan", A, put((("account", "interest"), {"benchmark": {"USD": NAN}})), "account.interest.benchmark.USD", FINITE),
    ("account-step-minutes-inf", A, put((("account", "step_minutes"), INF)), "account.step_minutes", FINITE),
    ("account-withdrawal-buffer-nan", A, put((("account", "withdrawal_buffer"), NAN)), "account.withdrawal_buffer", FINITE),
    ("account-tier-spread-nan", A, put((("account", "interest"), {"credit_tiers": [{"above_usd": 0, "rate": 0.0}, {"above_usd": 10000, "spread": NAN}]})), "account.interest.credit_tiers[1].spread", FINITE),
    ("account-deposit-inf", A, put((("account", "accounts", "main", "deposits", 0, "amount"), INF)), "account.accounts.main.deposits[0].amount", FINITE),
    ("account-lme-profit-nan", A, put((("account", "accounts", "main", "lme_profits"), [{"amount": NAN, "prompt_date": dt.date(2026, 3, 2)}])), "account.accounts.main.lme_profits[0].amount", FINITE),
    ("quoted-nan-string", S, put((("positions", 0, "quantity"), "nan")), "positions[0].quantity", FINITE),
    ("quoted-inf-string", S, put((("market", "ABC", "price"), "Infinity")), "market.ABC.price", FINITE),
    ("float-literal-overflow", S, text("price: 1000", "price: 1.0e400"), "market.ABC.price", FINITE),
    # --- 2. values whose products overflow
    ("underlying-price-1e308", S, put((("market", "ABC", "price"), 1.0e308)), "contracts.ABC-FUT", TOO_LARGE),
    ("multiplier-1e308", S, put((("contracts", "ABC-FUT", "multiplier"), 1.0e308)), "contracts.ABC-FUT", TOO_LARGE),
    ("quantity-1e300", S, put((("positions", 0, "quantity"), 1.0e300)), "positions[0]", TOO_LARGE),
    ("grid-shift-1e308", S, put((("grid", "shift"), [0.0, 1.0e308])), "grid.shift", TOO_LARGE),
    ("pm-quantity-1e300", P, put((("positions", 0, "quantity"), -1.0e300)), "positions[0]", TOO_LARGE),
    ("pm-cash-1e308", P, put((("portfolio_margin", "cash", "main"), 1.0e308)), "portfolio_margin.cash.main", TOO_LARGE),
    ("cfd-price-1e308", C, put((("market", "XYZ", "price"), 1.0e308)), "contracts.XYZ-CFD", TOO_LARGE),
    ("cfd-cash-1e308", C, put((("cfd", "accounts", "main", "cash", "EUR"), 1.0e308)), "cfd.accounts.main.cash.EUR", TOO_LARGE),
    ("cfd-path-1e308", C, put((("grid", "path", "XYZ", 3), 1.0e308)), "grid.path.XYZ", TOO_LARGE),
    ("account-fx-1e308", A, put((("fx", "HKD"), 1.0e308)), "contracts.HSI-2602", TOO_LARGE),
    ("account-cash-1e308", A, put((("account", "accounts", "main", "cash", "NonHK_", "USD"), 1.0e308)), "account.accounts.main.cash.NonHK_.USD", TOO_LARGE),
    ("cfd-step-days-1e300", C, put((("cfd", "step_days"), 1.0e300)), "cfd.step_days", "less than or equal to 3660"),
    ("account-step-minutes-1e300", A, put((("account", "step_minutes"), 1.0e300)), "account.step_minutes", "less than or equal to 5270400"),
    ("pm-market-cap-1e-300", P, text("market_cap: 4.0e8", "market_cap: 1.0e-300"), "market.", "greater than or equal to 1"),
    # --- 3. no traceback on input: calendar dates, nesting, keys, time zones, YAML tags
    ("expiry-a-number", S, text("expiry: 2026-12-18", "expiry: 20261218"), "contracts.ABC-FUT.expiry", "YYYY-MM-DD, not as a number"),
    ("as-of-feb-30", S, text("as_of: 2026-11-20", "as_of: 2026-02-30"), "as_of", "valid date"),
    ("expiry-month-13", S, text("expiry: 2026-12-18", "expiry: 2026-13-01"), "contracts.ABC-FUT.expiry", "valid date"),
    ("opened-hour-25", C, text("opened: 2026-11-20T10:00:00", "opened: 2026-11-20T25:00:00"), "positions[0].opened", "valid datetime"),
    ("step-time-feb-30", C, text("- 2026-11-20T12:00:00", "- 2026-02-30T12:00:00"), "cfd.step_times[3]", "valid datetime"),
    ("timestamp-tag-garbage", S, text("as_of: 2026-11-20", "as_of: !!timestamp garbage"), "as_of", "valid date"),
    ("nested-50000", None, MINIMAL + "description: " + "[" * 50_000 + "\n", None, "nested too deeply"),
    ("list-as-mapping-key", None, MINIMAL + "market:\n  ? [a, b]\n  : {price: 1}\n", "line 4", "mapping key"),
    ("mapping-as-mapping-key", None, MINIMAL + "market:\n  ? {a: 1}\n  : {price: 1}\n", "line 4", "mapping key"),
    ("int-tag-garbage", S, text("quantity: 1}", "quantity: !!int abc}"), "line", "not valid YAML"),
    ("float-tag-garbage", S, text("price: 1000", "price: !!float abc"), "line", "not valid YAML"),
    ("bool-tag-garbage", A, text("controlled_approved: true", "controlled_approved: !!bool maybe"), "line", "not valid YAML"),
    ("python-tag", None, MINIMAL + "description: !!python/object/apply:os.system ['true']\n", "line", "not valid YAML"),
    ("cfd-step-times-mixed-zones", C, text("- 2026-11-20T12:00:00", "- 2026-11-20T12:00:00+01:00"), "cfd.step_times", TIME_ZONE),
    ("account-step-times-mixed-zones", A, put((("account", "step_times"), [dt.datetime(2026, 2, 16, 9, 30), dt.datetime(2026, 2, 16, 11, 0), dt.datetime(2026, 2, 16, 12, 30, tzinfo=dt.timezone.utc), dt.datetime(2026, 2, 16, 14, 0), dt.datetime(2026, 2, 16, 15, 30)]), (("account", "step_minutes"), None)), "account.step_times", TIME_ZONE),
    ("cfd-opened-aware-step-times-naive", C, text("opened: 2026-11-20T10:00:00}", "opened: 2026-11-20T10:00:00+01:00}"), "positions[0].opened", TIME_ZONE),
    # --- more of our own
    ("top-level-list", None, "- a\n- b\n", None, "must be a mapping"),
    ("empty-file", None, "", None, "must be a mapping"),
    ("unclosed-bracket", None, MINIMAL + "market: [\n", "line", "not valid YAML"),
    ("duplicate-key", None, MINIMAL + "name: y\n", "line", "duplicate key"),
    ("int-market-key", S, put((("market", 12), {"price": 1.0})), "market.12", "valid string"),
    ("quantity-string", S, put((("positions", 0, "quantity"), "lots")), "positions[0].quantity", "valid number"),
    ("price-bool-list", S, put((("market", "ABC", "price"), [1, 2])), "market.ABC.price", "valid number"),
    ("risk-array-short", S, put((("contracts", "ABC-P950", "risk_array"), [1.0])), "contracts.ABC-P950.risk_array", "has 1 value"),
    ("negative-multiplier", S, put((("contracts", "ABC-FUT", "multiplier"), -1)), "contracts.ABC-FUT.multiplier", "greater than 0"),
    ("as-of-number", S, put((("as_of",), 20261120)), "as_of", "date"),
]


def _write(tmp_path: Path, base: str | None, change: Any, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    if base is None:
        p.write_text(change)
    elif getattr(change, "is_text", False):
        p.write_text(change((SCENARIOS / base).read_text()))
    else:
        p.write_text(yaml.safe_dump(change(_base(base)), sort_keys=False))
    return p


@pytest.mark.parametrize(
    "base,change,key_path,problem", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_exit_2_one_line(tmp_path, capsys, base, change, key_path, problem):
    p = _write(tmp_path, base, change)
    status = main(["margin", str(p), "--json"])
    captured = capsys.readouterr()
    assert status == 2, captured.err or captured.out[:300]
    assert captured.out == ""  # nothing half-written
    err = captured.err.strip()
    assert err.count("\n") == 0, err
    assert "Traceback" not in err
    assert str(p) in err and problem in err, err
    if key_path is not None:
        assert f"{p}: {key_path}" in err or key_path in err, err


def test_json_file_with_nan_string(tmp_path, capsys):
    """JSON has no NaN literal: a "NaN" string is read as a float by pydantic, and refused."""
    data = _base(S)
    data["as_of"] = "2026-11-20"
    data["contracts"]["ABC-FUT"]["expiry"] = data["contracts"]["ABC-P950"]["expiry"] = "2026-12-18"
    data["market"]["ABC"]["rate"] = "NaN"
    p = tmp_path / "s.json"
    p.write_text(json.dumps(data))
    assert main(["margin", str(p), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{p}: market.ABC.rate: {FINITE} (got NaN)" in err, err


def test_corpus_is_large_enough():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "base,change,key_path",
    [
        (S, put((("market", "ABC", "vol"), 1e300)), "market.ABC.vol"),
        (S, put((("market", "ABC", "rate"), 1e300)), "market.ABC.rate"),
        (C, put((("grid",), {"monte_carlo": {"paths": 2, "steps": 2, "drift": 1e300}})), "grid.monte_carlo.drift"),
    ],
    ids=["vol-1e300", "rate-1e300", "mc-drift-1e300"],
)
def test_rates_and_vols_beyond_the_kernels_range(tmp_path, capsys, base, change, key_path):
    """A vol of 1e300 priced every option at 0, a rate of 1e300 dropped the net option value."""
    p = _write(tmp_path, base, change)
    assert main(["margin", str(p), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{p}: {key_path}: Input should be less than or equal to 10" in err, err


def test_known_wrong_answers_are_refused():
    """The wrong figures of issue 14: each input is now an error, not a plausible number."""
    seed = _base(S)
    seed["market"]["ABC"]["rate"] = NAN  # gave 1,125.0 instead of 609.40 (net option value dropped)
    with pytest.raises(marginsim.InputError, match="market.ABC.rate: must be a finite number"):
        marginsim.margin(seed)
    assert marginsim.margin(_base(S)).to_dict()["accounts"]["main"]["span"]["maintenance"] == pytest.approx(609.40, abs=0.005)
    pm = _base(P)
    pm["market"]["TINY"]["price"] = INF  # dropped TINY's charge from the total
    with pytest.raises(marginsim.InputError, match="market.TINY.price: must be a finite number"):
        marginsim.margin(pm)
    ra = _base(S)
    ra["contracts"]["ABC-P950"]["risk_array"][5] = NAN  # was replaced by a model value
    with pytest.raises(marginsim.InputError, match=r"risk_array\[5\]: must be a finite number"):
        marginsim.margin(ra)


def test_safety_net_names_method_variable_and_account(tmp_path, capsys):
    """Any NaN or inf left in a money figure due (an input no check caught) is an error, never a
    null or a NaN in the JSON."""
    res = marginsim.margin(SCENARIOS / S)
    res.check_finite()  # a good result passes
    res.methods["span"]["maintenance"].values[...] = INF
    with pytest.raises(marginsim.InputError, match="span: maintenance of account 'main' is not a finite number"):
        res.to_dict()
    res.methods["span"]["maintenance"].values[...] = NAN
    with pytest.raises(marginsim.InputError, match=str(SCENARIOS / S)):
        res.to_json()
