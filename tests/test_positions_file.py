"""`positions_file:` (CSV or Parquet) in place of `positions:`: the same margin, clear errors by row.

Rows in messages are counted as a user sees them: in a CSV file the header is row 1 (the first
position is row 2, as in a spreadsheet); in a Parquet file the first position is row 1.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import marginsim
from marginsim import InputError, load_scenario
from marginsim import scenario as scenario_module
from marginsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
TAKAS = ROOT.parent / "shared" / "data" / "span" / "takas.spn"

pytest.importorskip("pyarrow")


def positions_frame(positions: list[dict]) -> pd.DataFrame:
    """The `positions:` of a scenario as a table (account defaults to "main", as in the file)."""
    rows = [{"account": p.get("account", "main"), **p} for p in positions]
    df = pd.DataFrame(rows)
    cols = ["account", "contract", "quantity"] + [c for c in ("open_price", "opened") if c in df]
    return df[cols]


def write_table(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def as_file_scenario(name: str, tmp_path: Path, fmt: str) -> tuple[Path, Path]:
    """Scenario ``name`` twice in ``tmp_path``: as given (YAML positions) and with its positions
    in a ``fmt`` file beside it. ``span.source`` is made absolute in both."""
    data = yaml.safe_load((SCENARIOS / name).read_text())
    span = data.get("span") or {}
    if "source" in span:
        span["source"] = str((SCENARIOS / span["source"]).resolve())
    yaml_path = tmp_path / "yaml.yaml"
    yaml_path.write_text(yaml.safe_dump(data))
    df = positions_frame(data.pop("positions"))
    if "opened" in df:  # YAML times to ISO 8601 text as a user's file has them
        df["opened"] = [None if t is None or t != t else _iso(t) for t in df["opened"]]
    (tmp_path / "books").mkdir()
    write_table(df, tmp_path / "books" / f"book.{fmt}")
    data["positions_file"] = f"books/book.{fmt}"
    file_path = tmp_path / "file.yaml"
    file_path.write_text(yaml.safe_dump(data))
    return yaml_path, file_path


def _iso(t) -> str:
    return t.isoformat() if hasattr(t, "isoformat") else str(t)


def result_json(path: Path) -> dict:
    out = marginsim.margin(path).to_dict()
    out.pop("scenario_file", None)
    return out


SAME = [
    "span_seed_example.yaml",  # SPAN, model-priced options
    "span_inter_commodity.yaml",
    "pm_hk_property.yaml",  # portfolio margin
    "pm_diversified_large_cap.yaml",
    "cfd_two_fills.yaml",  # CFD orders: open_price and opened
    "account_hk_margin_call.yaml",  # the account layer (parts of the book per method)
    "overview_mixed_book.yaml",
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("name", SAME)
def test_a_positions_file_gives_the_margin_of_the_same_positions_in_yaml(name, fmt, tmp_path):
    yaml_path, file_path = as_file_scenario(name, tmp_path, fmt)
    expected, got = result_json(yaml_path), result_json(file_path)
    assert got == expected
    assert got["accounts"]  # a margin to compare, not two empty results


@pytest.mark.skipif(not TAKAS.exists(), reason="../shared/data/span/takas.spn is not available")
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_positions_file_on_a_clearing_house_file_gives_the_same_margin(fmt, tmp_path):
    yaml_path, file_path = as_file_scenario("span_takasbank.yaml", tmp_path, fmt)
    expected = result_json(yaml_path)
    assert result_json(file_path) == expected
    assert expected["accounts"]["calendar"]["span"]["maintenance"] > 0


@pytest.mark.skipif(not TAKAS.exists(), reason="../shared/data/span/takas.spn is not available")
def test_an_id_not_in_the_clearing_house_file_names_the_row(tmp_path):
    _, file_path = as_file_scenario("span_takasbank.yaml", tmp_path, "csv")
    book = tmp_path / "books" / "book.csv"
    df = pd.read_csv(book)
    df.loc[3, "contract"] = "AKBNKE:F:209912S0"
    df.to_csv(book, index=False)
    with pytest.raises(InputError) as e:
        marginsim.margin(file_path)
    msg = str(e.value)
    assert msg.startswith(f"{file_path}: positions_file: books/book.csv row 5 (the header is row 1)")
    assert "unknown contract 'AKBNKE:F:209912S0'" in msg and "takas.spn" in msg


def test_the_seed_margin_from_a_csv_file_is_the_worked_example(tmp_path):
    _, file_path = as_file_scenario("span_seed_example.yaml", tmp_path, "csv")
    res = marginsim.margin(file_path)["span"].sel(account="main")
    assert float(res["maintenance"]) == pytest.approx(609.40, abs=0.005)  # spec worked example


# -- a file built for the tests -------------------------------------------------------------

BASE = {
    "name": "positions-file",
    "as_of": "2026-11-20",
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
    "span": {"combined_commodities": {"ABC": {"price_scan": 0.06, "vol_scan": 0.04}}},
}
GOOD_CSV = "account,contract,quantity\nA1,ABC-FUT,2\nA1,ABC-P950,-1\nA2,ABC-FUT,-3\n"


def scenario_with(tmp_path: Path, book_text: str | None, name: str = "book.csv", **extra) -> Path:
    if book_text is not None:
        (tmp_path / name).write_text(book_text)
    data = {**BASE, "positions_file": name, **extra}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_small_csv_book_is_margined_per_account(tmp_path):
    res = marginsim.margin(scenario_with(tmp_path, GOOD_CSV))["span"]
    assert res["account"].values.tolist() == ["A1", "A2"]
    by_yaml = marginsim.margin(
        {
            **BASE,
            "positions": [
                {"account": "A1", "contract": "ABC-FUT", "quantity": 2},
                {"account": "A1", "contract": "ABC-P950", "quantity": -1},
                {"account": "A2", "contract": "ABC-FUT", "quantity": -3},
            ],
        }
    )["span"]
    np.testing.assert_array_equal(res["maintenance"].values, by_yaml["maintenance"].values)
    assert float(res["maintenance"].sel(account="A2")) == pytest.approx(3 * 0.06 * 1000 * 100)


def test_the_path_is_relative_to_the_scenario_file_not_the_working_directory(tmp_path, monkeypatch):
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    (sub / "data").mkdir()
    (sub / "data" / "b.csv").write_text(GOOD_CSV)
    path = sub / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, "positions_file": "data/b.csv"}))
    monkeypatch.chdir(tmp_path)
    sc = load_scenario(path)
    assert len(sc.position_table()) == 3
    assert sc.position_table().account.tolist() == ["A1", "A1", "A2"]


def test_account_numbers_stay_text_as_written(tmp_path):
    path = scenario_with(tmp_path, "account,contract,quantity\n0012,ABC-FUT,1\n12,ABC-FUT,1\n")
    assert marginsim.margin(path)["span"]["account"].values.tolist() == ["0012", "12"]


def test_parquet_integer_accounts_become_their_decimal_names(tmp_path):
    df = pd.DataFrame({"account": [7, 7, 9], "contract": ["ABC-FUT"] * 3, "quantity": [1, 2, -1]})
    df.to_parquet(tmp_path / "b.parquet", index=False)
    res = marginsim.margin(scenario_with(tmp_path, None, name="b.parquet"))["span"]
    assert res["account"].values.tolist() == ["7", "9"]
    assert float(res["maintenance"].sel(account="7")) == pytest.approx(3 * 0.06 * 1000 * 100)


def _error(path: Path) -> str:
    with pytest.raises(InputError) as e:
        load_scenario(path)
    return str(e.value)


CSV_ERRORS = [
    # (file text, message after "<scenario>: positions_file: book.csv ")
    (GOOD_CSV + "A3,NOPE,1\n", "row 5 (the header is row 1), column contract: unknown contract 'NOPE'"),
    (GOOD_CSV + "A3,ABC-FUT,\n", "row 5 (the header is row 1), column quantity: missing quantity"),
    (
        GOOD_CSV + "A3,ABC-FUT,abc\n",
        "row 5 (the header is row 1), column quantity: quantity must be a number, not 'abc'",
    ),
    (
        GOOD_CSV + "A3,ABC-FUT,inf\n",
        "row 5 (the header is row 1), column quantity: quantity must be a finite number, not inf",
    ),
    (
        "account,contract,quantity\nA1,ABC-FUT,nan\n",
        "row 2 (the header is row 1), column quantity: quantity must be a finite number, not 'nan'",
    ),
    (
        "account,contract,quantity\nA1,ABC-FUT,1\n,ABC-FUT,1\n",
        "row 3 (the header is row 1), column account: missing account",
    ),
    ("account,contract,quantity\nA1,,1\n", "row 2 (the header is row 1), column contract: missing contract"),
    ("account,contract\nA1,ABC-FUT\n", "missing column 'quantity' (required: account, contract, quantity)"),
    ("account,contract,quantity,colour\nA1,ABC-FUT,1,red\n", "unknown column 'colour'"),
    (
        "account,contract,quantity,open_price\nA1,ABC-FUT,1,-5\n",
        "row 2 (the header is row 1), column open_price: open price must be > 0",
    ),
    (
        "account,contract,quantity,opened\nA1,ABC-FUT,1,yesterday\n",
        "row 2 (the header is row 1), column opened: not a time",
    ),
    (
        GOOD_CSV + "A3,ABC-FUT,1e13\n",
        "row 5 (the header is row 1), column quantity: the position's notional (|quantity| x multiplier x "
        "price x FX) is 1e+18 USD, above the largest amount accepted (max_amount: 1e+15)",
    ),
    ("", "empty file"),
    ("account;contract;quantity\nA1;ABC-FUT;1\n", "columns are separated by commas"),
]


def test_a_spreadsheet_export_with_a_byte_order_mark_and_spaces_reads(tmp_path):
    path = scenario_with(tmp_path, "\ufeffaccount, contract, quantity\r\nA1, ABC-FUT, 2\r\n")
    table = load_scenario(path).position_table()
    assert table.account.tolist() == ["A1"] and table.contract.tolist() == ["ABC-FUT"]
    assert table.quantity.tolist() == [2.0]


@pytest.mark.parametrize(("text", "problem"), CSV_ERRORS, ids=[p[:40] for _, p in CSV_ERRORS])
def test_each_bad_csv_row_is_named_with_its_row_and_column(tmp_path, text, problem):
    path = scenario_with(tmp_path, text)
    msg = _error(path)
    assert msg.startswith(f"{path}: positions_file: book.csv")
    assert problem in msg
    assert "\n" not in msg


PARQUET_ERRORS = [
    (
        {"account": ["A1", "A2"], "contract": ["ABC-FUT", "NOPE"], "quantity": [1.0, 2.0]},
        "row 2 (the first position is row 1), column contract: unknown contract 'NOPE'",
    ),
    (
        {"account": ["A1", "A2"], "contract": ["ABC-FUT"] * 2, "quantity": [1.0, np.nan]},
        "row 2 (the first position is row 1), column quantity: missing quantity",
    ),
    (
        {"account": ["A1", "A2"], "contract": ["ABC-FUT"] * 2, "quantity": [np.inf, 1.0]},
        "row 1 (the first position is row 1), column quantity: quantity must be a finite number",
    ),
    (
        {"account": ["A1", None], "contract": ["ABC-FUT"] * 2, "quantity": [1.0, 1.0]},
        "row 2 (the first position is row 1), column account: missing account",
    ),
    (
        {"account": ["A1", "A2"], "contract": ["ABC-FUT"] * 2, "quantity": ["1", "x"]},
        "row 2 (the first position is row 1), column quantity: quantity must be a number, not 'x'",
    ),
    (
        {"account": ["A1", "A2"], "contract": ["ABC-FUT"] * 2, "quantity": [True, False]},
        "column quantity holds true/false values: need numbers",
    ),
    (
        {"account": [1.5, 2.5], "contract": ["ABC-FUT"] * 2, "quantity": [1.0, 1.0]},
        "column account holds float64 values: need text (or integer) names",
    ),
    ({"account": ["A1"], "contract": ["ABC-FUT"]}, "missing column 'quantity'"),
]


@pytest.mark.parametrize(("columns", "problem"), PARQUET_ERRORS, ids=[p[:40] for _, p in PARQUET_ERRORS])
def test_each_bad_parquet_row_is_named_with_its_row_and_column(tmp_path, columns, problem):
    pd.DataFrame(columns).to_parquet(tmp_path / "b.parquet", index=False)
    path = scenario_with(tmp_path, None, name="b.parquet")
    msg = _error(path)
    assert msg.startswith(f"{path}: positions_file: b.parquet")
    assert problem in msg


def test_a_missing_file_a_folder_and_an_unknown_format_are_named(tmp_path):
    path = scenario_with(tmp_path, None, name="nope.csv")
    assert _error(path).startswith(f"{path}: positions_file: nope.csv: file not found")
    (tmp_path / "dir.csv").mkdir()
    assert "is a folder" in _error(scenario_with(tmp_path, None, name="dir.csv"))
    (tmp_path / "b.xlsx").write_text("x")
    assert "unknown format '.xlsx': give a CSV (.csv) or Parquet (.parquet) file" in _error(
        scenario_with(tmp_path, None, name="b.xlsx")
    )
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert "not a readable Parquet file" in _error(scenario_with(tmp_path, None, name="broken.parquet"))


def test_positions_and_positions_file_together_are_refused(tmp_path):
    path = scenario_with(tmp_path, GOOD_CSV, positions=[{"contract": "ABC-FUT", "quantity": 1}])
    assert _error(path) == f"{path}: positions_file: give `positions` or `positions_file`, not both"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_cli_exits_2_with_one_line_for_a_bad_row(tmp_path, capsys, fmt):
    df = pd.DataFrame(
        {"account": ["A1", "A1"], "contract": ["ABC-FUT", "ABC-FUT"], "quantity": [1.0, np.inf]}
    )
    write_table(df, tmp_path / f"b.{fmt}")
    path = scenario_with(tmp_path, None, name=f"b.{fmt}")
    assert main(["margin", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"positions_file: b.{fmt} row" in err and "quantity must be a finite number" in err


def test_a_scenario_with_a_positions_file_pickles_with_its_table(tmp_path):
    sc = load_scenario(scenario_with(tmp_path, GOOD_CSV))
    (tmp_path / "book.csv").unlink()  # a worker need not read the file again
    back = pickle.loads(pickle.dumps(sc))
    assert back.position_table().quantity.tolist() == [2.0, -1.0, -3.0]
    assert back.file == sc.file


def test_the_schema_documents_the_key():
    schema = json.loads(marginsim.scenario.scenario_json_schema())
    text = schema["properties"]["positions_file"]["description"]
    assert "CSV or Parquet" in text and "not both" in text


# -- YAML: libyaml's C loader where available, the same duplicate-key check ------------------


@pytest.mark.skipif(getattr(yaml, "CSafeLoader", None) is None, reason="PyYAML built without libyaml")
def test_the_c_loader_is_used_and_still_refuses_a_duplicate_key(tmp_path):
    loader = scenario_module.yaml_loader()
    assert issubclass(loader, yaml.CSafeLoader)
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nas_of: 2026-11-20\nname: b\n")
    with pytest.raises(InputError, match=r"not valid YAML at line 3, column 1: duplicate key 'name'"):
        load_scenario(path)


def test_without_libyaml_the_pure_loader_is_used_and_refuses_a_duplicate_key(tmp_path, monkeypatch):
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    loader = scenario_module.yaml_loader()
    assert issubclass(loader, yaml.SafeLoader)
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nas_of: 2026-11-20\nname: b\n")
    with pytest.raises(InputError, match=r"not valid YAML at line 3, column 1: duplicate key 'name'"):
        load_scenario(path)
    good = load_scenario(SCENARIOS / "span_seed_example.yaml")
    assert good.name == "span-seed-example"


def test_both_loaders_read_a_scenario_alike(monkeypatch):
    text = (SCENARIOS / "overview_mixed_book.yaml").read_text()
    fast = yaml.load(text, Loader=scenario_module.yaml_loader())  # noqa: S506
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    pure = yaml.load(text, Loader=scenario_module.yaml_loader())  # noqa: S506
    assert fast == pure
