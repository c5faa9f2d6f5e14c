"""Bad input: one clear error naming the file, the key path and the problem; CLI exit status 2."""

from __future__ import annotations

import json

import pytest
import yaml

from marginsim import InputError, load_scenario
from marginsim.cli import main

GOOD = {
    "name": "bad-input",
    "as_of": "2026-11-20",
    "currency": "USD",
    "market": {"ABC": {"price": 1000.0, "vol": 0.2}},
    "contracts": {
        "ABC-FUT": {"type": "future", "underlying": "ABC", "multiplier": 100, "expiry": "2026-12-18"},
        "ABC-P950": {
            "type": "put",
            "underlying": "ABC",
            "option_on": "future",
            "strike": 950,
            "expiry": "2026-12-18",
            "multiplier": 100,
        },
    },
    "positions": [{"contract": "ABC-FUT", "quantity": 1}, {"contract": "ABC-P950", "quantity": -1}],
    "span": {"combined_commodities": {"ABC": {"price_scan": 0.06, "vol_scan": 0.04}}},
}


def write(tmp_path, data, name="s.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def mutate(path, value, delete=False):
    data = json.loads(json.dumps(GOOD))
    node = data
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


CASES = [
    (mutate(("market", "ABC", "colour"), "red"), "market.ABC.colour", "unknown key"),
    (mutate(("name",), None, delete=True), "name", "missing"),
    (mutate(("market", "ABC", "price"), -5.0), "market.ABC.price", "greater than 0"),
    (mutate(("market", "ABC", "vol"), -0.1), "market.ABC.vol", "greater than or equal to 0"),
    (mutate(("positions", 1, "contract"), "NOPE"), "positions[1].contract", "unknown contract 'NOPE'"),
    (
        mutate(("contracts", "ABC-FUT", "underlying"), "XYZ"),
        "contracts.ABC-FUT.underlying",
        "unknown underlying",
    ),
    (mutate(("market", "ABC", "currency"), "EUR"), "market.ABC.currency", "no FX rate for EUR"),
    (mutate(("contracts", "ABC-P950", "expiry"), "2026-11-01"), "contracts.ABC-P950.expiry", "before as_of"),
    (
        mutate(("contracts", "ABC-P950", "risk_array"), [1.0, 2.0]),
        "contracts.ABC-P950.risk_array",
        "has 2 values",
    ),
    (
        mutate(("span", "combined_commodities", "ABC", "price_scan"), None, delete=True),
        "span.combined_commodities.ABC",
        "needs a price scan range",
    ),
]


@pytest.mark.parametrize("data,key_path,problem", CASES)
def test_cli_exit_2_with_file_key_path_and_problem(tmp_path, capsys, data, key_path, problem):
    p = write(tmp_path, data)
    assert main(["margin", str(p), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing half-written
    err = captured.err.strip()
    assert err.count("\n") == 0, err
    assert str(p) in err and key_path in err and problem in err, err


def test_good_file_runs(tmp_path, capsys):
    assert main(["margin", str(write(tmp_path, GOOD)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accounts"]["main"]["span"]["maintenance"] >= 0


def test_invalid_yaml_names_line(tmp_path):
    p = write(tmp_path, "name: x\nas_of: [unclosed\n")
    with pytest.raises(InputError, match=r"not valid YAML at line \d+"):
        load_scenario(p)


def test_duplicate_key_is_an_error(tmp_path):
    p = write(tmp_path, "name: a\nname: b\nas_of: 2026-11-20\n")
    with pytest.raises(InputError, match="duplicate key 'name'"):
        load_scenario(p)


def test_missing_file(tmp_path, capsys):
    assert main(["margin", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_option_without_vol_or_premium(tmp_path):
    data = mutate(("market", "ABC", "vol"), None, delete=True)
    with pytest.raises(InputError, match="needs a vol") as e:
        from marginsim import margin

        margin(load_scenario(write(tmp_path, data)))
    assert e.value.key_path == "contracts.ABC-P950"


def test_schema_command_prints_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "marginsim scenario file"
    assert "positions" in schema["properties"] and schema["additionalProperties"] is False


def test_every_bundled_scenario_validates(scenarios_dir):
    for p in sorted(scenarios_dir.glob("*.yaml")):
        load_scenario(p)
