"""Trades input (marginsim.trades): the file format, the defaults and every bad trade."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import marginsim
from marginsim.errors import InputError
from marginsim.trades import TradeBatch, read_trades

ROOT = Path(__file__).resolve().parents[1]
TAKAS = ROOT.parent / "shared" / "data" / "span" / "takas.spn"


@pytest.fixture(scope="module")
def seed():
    """One account (main), contracts ABC-FUT and ABC-P950."""
    return marginsim.load(ROOT / "scenarios" / "span_seed_example.yaml")


@pytest.fixture(scope="module")
def takas():
    if not TAKAS.exists():
        pytest.skip("../shared/data/span/takas.spn is not available")
    return marginsim.load(ROOT / "scenarios" / "span_takasbank.yaml")


def test_defaults_and_shorthand(seed):
    batch = read_trades(
        [
            {"contract": "ABC-FUT", "quantity": -2},
            {
                "id": "hedge",
                "legs": [{"contract": "ABC-FUT", "quantity": 1}, {"contract": "ABC-P950", "quantity": 3.5}],
            },
            {"id": 7, "account": "main", "contract": "ABC-P950", "quantity": 1},
        ],
        seed,
    )
    assert batch.ids.tolist() == ["0", "hedge", "7"]
    assert batch.account.tolist() == ["main", "main", "main"]  # the only account
    assert batch.leg_trade.tolist() == [0, 1, 1, 2]
    assert batch.leg_contract.tolist() == ["ABC-FUT", "ABC-FUT", "ABC-P950", "ABC-P950"]
    assert batch.leg_quantity.tolist() == [-2.0, 1.0, 3.5, 1.0]
    assert batch.leg_trade.dtype == np.int64 and batch.leg_quantity.dtype == np.float64
    assert len(batch) == 3 and batch.n_legs == 4
    assert batch.legs_of(1) == [
        {"contract": "ABC-FUT", "quantity": 1.0},
        {"contract": "ABC-P950", "quantity": 3.5},
    ]


def test_yaml_and_json_files(seed, tmp_path):
    y = tmp_path / "t.yaml"
    y.write_text(
        "- {contract: ABC-FUT, quantity: 2}\n- id: x\n  legs:\n    - {contract: ABC-P950, quantity: -1}\n"
    )
    j = tmp_path / "t.json"
    j.write_text(
        json.dumps(
            [
                {"contract": "ABC-FUT", "quantity": 2},
                {"id": "x", "legs": [{"contract": "ABC-P950", "quantity": -1}]},
            ]
        )
    )
    a, b = read_trades(y, seed), read_trades(str(j), seed)
    for batch in (a, b):
        assert batch.ids.tolist() == ["0", "x"]
        assert batch.leg_contract.tolist() == ["ABC-FUT", "ABC-P950"]
        assert batch.leg_quantity.tolist() == [2.0, -1.0]


def test_span_file_contracts_any_strike_spelling(takas):
    # the file's id spells the strike 9; 9.0 and 9.00 name the same option
    batch = read_trades(
        [
            {"account": "option-writer", "contract": "AKBNKE:C:201606S0:9.00", "quantity": 1},
            {"account": "calendar", "contract": "XU030:F:201606S0", "quantity": -1},
        ],
        takas,
    )
    assert batch.leg_contract.tolist() == ["AKBNKE:C:201606S0:9", "XU030:F:201606S0"]


def test_from_arrays(seed):
    batch = TradeBatch.from_arrays(seed, ["ABC-FUT", "ABC-P950"], [1, -1])
    assert batch.ids.tolist() == ["0", "1"] and batch.account.tolist() == ["main", "main"]
    with pytest.raises(InputError, match=r"\[1\]\.quantity: a quantity must not be zero"):
        TradeBatch.from_arrays(seed, ["ABC-FUT", "ABC-P950"], [1, 0])


BAD = [
    ({"a": 1}, "", "must be a list of trades, not a mapping"),
    ([], "", "the list of trades is empty"),
    ([3], "[0]", "a trade must be a mapping"),
    ([{"contract": "ABC-FUT", "quantity": 1, "qty": 2}], "[0].qty", "unknown key 'qty'"),
    ([{"contract": "ABC-FUT"}], "[0]", "missing quantity"),
    ([{"quantity": 1}], "[0]", "missing contract"),
    ([{"id": "a"}], "[0]", "a trade needs `legs`"),
    ([{"legs": []}], "[0].legs", "at least one leg"),
    ([{"legs": {"contract": "ABC-FUT", "quantity": 1}}], "[0].legs", "legs must be a list"),
    ([{"legs": [{"contract": "ABC-FUT", "quantity": 1}], "contract": "ABC-FUT"}], "[0].contract", "not both"),
    (
        [{"legs": [{"contract": "ABC-FUT", "quantity": 1, "price": 3}]}],
        "[0].legs[0].price",
        "unknown key 'price'",
    ),
    ([{"legs": ["ABC-FUT"]}], "[0].legs[0]", "a leg must be a mapping"),
    (
        [
            {"contract": "ABC-FUT", "quantity": 1},
            {"legs": [{"contract": "ABC-FUT", "quantity": 1}, {"contract": "XYZ", "quantity": 1}]},
        ],
        "[1].legs[1].contract",
        "unknown contract 'XYZ'",
    ),
    ([{"legs": [{"contract": "ABC-FUT", "quantity": 0}]}], "[0].legs[0].quantity", "must not be zero"),
    ([{"legs": [{"contract": "ABC-FUT", "quantity": "2"}]}], "[0].legs[0].quantity", "must be a number"),
    ([{"legs": [{"contract": "ABC-FUT", "quantity": True}]}], "[0].legs[0].quantity", "must be a number"),
    ([{"contract": "ABC-FUT", "quantity": float("nan")}], "[0].quantity", "finite number"),
    ([{"contract": "ABC-FUT", "quantity": float("inf")}], "[0].quantity", "finite number"),
    ([{"contract": "ABC-FUT", "quantity": 1e13}], "[0].quantity", "above the largest amount accepted"),
    ([{"contract": 5, "quantity": 1}], "[0].contract", "non-empty text"),
    (
        [
            {"id": "a", "contract": "ABC-FUT", "quantity": 1},
            {"id": "a", "contract": "ABC-FUT", "quantity": 2},
        ],
        "[1].id",
        "duplicate trade id 'a'",
    ),
    ([{"id": 1.5, "contract": "ABC-FUT", "quantity": 1}], "[0].id", "trade id"),
    ([{"account": "other", "contract": "ABC-FUT", "quantity": 1}], "[0].account", "unknown account 'other'"),
]


@pytest.mark.parametrize(("data", "key_path", "problem"), BAD)
def test_bad_trades(seed, data, key_path, problem):
    with pytest.raises(InputError) as e:
        read_trades(data, seed, file="trades.yaml")
    assert e.value.file == "trades.yaml"
    assert e.value.key_path == key_path
    assert problem in e.value.problem
    assert str(e.value).startswith("trades.yaml")


def test_account_required_with_several(takas):
    with pytest.raises(
        InputError, match=r"\[0\]\.account: the scenario has 3 accounts: give the trade's account"
    ):
        read_trades([{"contract": "XU030:F:201606S0", "quantity": 1}], takas)
    with pytest.raises(
        InputError, match=r"\[0\]\.contract: unknown contract 'XU030:F:209912S0': not in .*takas.spn"
    ):
        read_trades([{"account": "calendar", "contract": "XU030:F:209912S0", "quantity": 1}], takas)


def test_bad_files(seed, tmp_path):
    with pytest.raises(InputError, match="trades file not found"):
        read_trades(tmp_path / "none.yaml", seed)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {contract: ABC-FUT, quantity: 1\n")
    with pytest.raises(InputError, match=r"bad\.yaml: not valid YAML at line"):
        read_trades(bad, seed)
    worse = tmp_path / "w.yaml"
    worse.write_text("- {contract: ABC-FUT, quantity: 0}\n")
    with pytest.raises(InputError) as e:
        read_trades(worse, seed)
    assert str(e.value) == f"{worse}: [0].quantity: a quantity must not be zero"
