"""``as_of`` with a time is a time, however it is written (issue 14 point 4).

Unquoted YAML, quoted YAML, JSON and Python dicts must give the same result: a date string
``2026-03-10`` stays a date; a string with a time (and maybe a zone) is a datetime. Read as the date,
a margin call raised at 00:00 would be due a day late, and a CFD order opened that morning would be
taken as held before the path (no funding check).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import marginsim
from marginsim import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def _iso(o: Any) -> str:
    return o.isoformat()


def _writings(tmp_path: Path, data: dict[str, Any], as_of: str) -> dict[str, Any]:
    """The same scenario with ``as_of`` written four ways: a Python dict (the string), unquoted
    YAML, quoted YAML, JSON."""
    d = copy.deepcopy(data)
    d["as_of"] = as_of
    text = yaml.safe_dump({k: v for k, v in d.items() if k != "as_of"}, sort_keys=False)
    quoted = tmp_path / "quoted.yaml"
    quoted.write_text(f"as_of: '{as_of}'\n" + text)
    unquoted = tmp_path / "unquoted.yaml"
    unquoted.write_text(f"as_of: {as_of}\n" + text)
    js = tmp_path / "s.json"
    js.write_text(json.dumps(d, default=_iso))
    return {"dict": d, "unquoted": unquoted, "quoted": quoted, "json": js}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2026-03-10", dt.date(2026, 3, 10)),
        ("2026-03-10T00:00:00", dt.datetime(2026, 3, 10)),
        ("2026-03-10 09:30", dt.datetime(2026, 3, 10, 9, 30)),
        ("2026-03-10T00:00:00+08:00", dt.datetime(2026, 3, 10, tzinfo=dt.timezone(dt.timedelta(hours=8)))),
    ],
)
def test_as_of_written_any_way_is_the_same_value(tmp_path, text, expected):
    base = {"name": "t", "as_of": text}
    for how, src in _writings(tmp_path, base, text).items():
        sc = marginsim.load(src).scenario if how == "dict" else load_scenario(src)
        assert sc.as_of == expected and type(sc.as_of) is type(expected), (how, sc.as_of)


def _hk_call_book() -> dict[str, Any]:
    """The bundled account scenario moved to the prices of its 14:00 step, with less HKD cash: the
    account is in a margin call at ``as_of`` (Tuesday 10 March 2026, a Hong Kong business day)."""
    d = yaml.safe_load((SCENARIOS / "account_hk_margin_call.yaml").read_text())
    d.pop("grid")
    d["account"].pop("step_minutes")
    d["market"]["HSI"]["price"] = 23500
    d["market"]["ES"]["price"] = 5920
    d["market"]["IRON"]["price"] = 785
    d["account"]["accounts"]["main"]["cash"]["HK_"]["HKD"] = 700_000
    return d


@pytest.mark.parametrize("as_of", ["2026-03-10T00:00:00", "2026-03-10T00:00:00+08:00"])
def test_margin_call_at_midnight_is_due_the_same_day(tmp_path, as_of):
    results = {
        how: marginsim.margin(src).to_dict()
        for how, src in _writings(tmp_path, _hk_call_book(), as_of).items()
    }
    first = results["dict"]
    for how, r in results.items():
        assert r == first, how
    acct = first["accounts"]["main"]["account"]
    assert acct["state"] == "margin_call"
    # 00:00 closes the 12:01-00:00 window of the day before: due 16:00 the same (business) day
    assert acct["call_time"] == "2026-03-10T00:00:00+08:00"
    assert acct["deadline"] == "2026-03-10T16:00:00+08:00"


def test_date_only_as_of_is_the_day_after_settlement(tmp_path):
    """A date stays a date: the settlement time (17:00) applies, the call is due the next day."""
    r = marginsim.margin({**_hk_call_book(), "as_of": "2026-03-10"}).to_dict()
    acct = r["accounts"]["main"]["account"]
    assert acct["call_time"] == "2026-03-10T17:00:00+08:00"
    assert acct["deadline"] == "2026-03-11T16:00:00+08:00"


def test_cfd_order_opened_that_morning_is_funded(tmp_path):
    """cfd_two_fills without step_times: steps every hour from as_of, midnight; the fills at 01:00
    and 02:00 are new orders whose initial margin is checked against the cash (read as the date,
    as_of would start the path the morning after, and both fills would be held before it)."""
    d = yaml.safe_load((SCENARIOS / "cfd_two_fills.yaml").read_text())
    d["cfd"].pop("step_times")
    d["cfd"]["step_days"] = 1 / 24
    d["positions"][0]["opened"] = dt.datetime(2026, 11, 20, 1, 0)
    d["positions"][1]["opened"] = dt.datetime(2026, 11, 20, 2, 0)
    results = {
        how: marginsim.margin(src).to_dict()
        for how, src in _writings(tmp_path, d, "2026-11-20T00:00:00").items()
    }
    first = results["dict"]
    for how, r in results.items():
        assert r == first, how
    cfd = first["accounts"]["main"]["cfd"]
    assert [p["new_order"] for p in cfd["positions"].values()] == [True, True]
    assert [p["open_step"] for p in cfd["positions"].values()] == [1, 2]
    assert cfd["available_cash"][:3] == [2000.0, 1000.0, 0.0]  # the seed's table, fill by fill
    assert cfd["initial"][:3] == [0.0, 1000.0, 2000.0]


@pytest.mark.parametrize("bad", ["2026-02-30", "2026-03-10T25:00", "yesterday", 20260310])
def test_bad_as_of_is_an_input_error(bad):
    with pytest.raises(marginsim.InputError, match="valid date") as e:
        marginsim.load({"name": "t", "as_of": bad})
    assert e.value.key_path == "as_of"
