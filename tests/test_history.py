"""`history:` (daily closes and implied vols per underlying) and `marginsim history export`.

The reader's checks name the date and the column of a bad value; the exported arch series read
back through `history:` give the arch package's own numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import marginsim
from marginsim import InputError
from marginsim.cli import main
from marginsim.io.history import read_history
from marginsim.params.history import HistoryParams

pytest.importorskip("pyarrow")

CSV = """date,SPX,spx_vol,OIL
2024-01-02,100,20,70
2024-01-03,101,21,71
2024-01-04,99.5,25,69
2024-01-05,102,18,72
"""


def scenario(history: dict, tmp_path: Path, name: str = "s.yaml") -> Path:
    data = {
        "name": "history",
        "as_of": "2024-01-05",
        "market": {"SPX": {"price": 102.0, "vol": 0.2}, "OIL": {"price": 72.0}},
        "contracts": {"ES": {"type": "future", "underlying": "SPX", "multiplier": 50}},
        "positions": [{"contract": "ES", "quantity": 1}],
        "history": history,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_csv_history_in_inputs_with_percent_vols(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "h.csv").write_text(CSV)
    path = scenario(
        {"file": "data/h.csv", "vol_columns": {"SPX": "spx_vol"}, "vol_unit": "percent"}, tmp_path
    )
    h = marginsim.load(path).history
    assert h is not None
    assert h["underlying"].values.tolist() == ["SPX", "OIL"]
    assert h["date"].values[0] == np.datetime64("2024-01-02")
    np.testing.assert_array_equal(h["close"].sel(underlying="SPX").values, [100, 101, 99.5, 102])
    np.testing.assert_allclose(h["vol"].sel(underlying="SPX").values, [0.20, 0.21, 0.25, 0.18])
    assert np.isnan(h["vol"].sel(underlying="OIL").values).all()
    assert h.attrs["vol_underlyings"] == "SPX"
    assert h.attrs["file"] == str(tmp_path / "data" / "h.csv")


def test_columns_map_and_formats_agree(tmp_path: Path) -> None:
    frame = pd.read_csv(pd.io.common.StringIO(CSV))
    (tmp_path / "h.csv").write_text(CSV)
    frame.to_parquet(tmp_path / "h.parquet", index=False)
    ds = frame.set_index("date").to_xarray()
    ds["date"] = pd.to_datetime(ds["date"].values)
    ds.to_netcdf(tmp_path / "h.nc")
    got = []
    for f in ("h.csv", "h.parquet", "h.nc"):
        spec = HistoryParams(file=f, columns={"S": "SPX"})
        h = read_history(spec, base_dir=tmp_path, file=None, underlyings=["S", "OIL", "NONE"])
        assert h["underlying"].values.tolist() == ["S", "OIL"]  # NONE has no column: no history
        got.append(h["close"].values)
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_array_equal(got[0], got[2])
    assert marginsim.load(scenario({"file": "h.csv"}, tmp_path)).history["close"].shape == (4, 2)


@pytest.mark.parametrize(
    "text, history, message",
    [
        (
            CSV.replace("2024-01-03,101", "2024-01-02,101"),
            {},
            "column date: duplicate date 2024-01-02 (data rows 1 and 2)",
        ),
        (
            CSV.replace("2024-01-04,99.5", "2024-01-01,99.5"),
            {},
            "dates not sorted: 2024-01-01 comes after 2024-01-03",
        ),
        (
            CSV.replace("2024-01-04,99.5", "2024-01-04,"),
            {},
            "column SPX, date 2024-01-04: missing value (price)",
        ),
        (
            CSV.replace("2024-01-04,99.5", "2024-01-04,-1"),
            {},
            "column SPX, date 2024-01-04: -1 is not a positive finite price",
        ),
        (
            CSV.replace("2024-01-04,99.5", "2024-01-04,inf"),
            {},
            "column SPX, date 2024-01-04: inf is not a positive finite price",
        ),
        (
            CSV.replace("2024-01-04,99.5", "2024-01-04,abc"),
            {},
            "column SPX, date 2024-01-04: 'abc' is not a number (price)",
        ),
        (CSV.replace("2024-01-04", "4 Jan"), {}, "column date: '4 Jan' in data row 3 is not a date"),
        (CSV.replace("2024-01-05", "2024-02-05"), {}, "a gap of 32 days between 2024-01-04 and 2024-02-05"),
        (CSV.replace("date,", "day,"), {}, "no 'date' column"),
        (
            CSV.replace(",25,", ",,"),
            {"vol_columns": {"SPX": "spx_vol"}},
            "column spx_vol, date 2024-01-04: missing value (vol)",
        ),
        ("date,X\n2024-01-02,1\n", {}, "no column matches an underlying (SPX, OIL)"),
    ],
)
def test_bad_history_files_name_date_and_column(
    tmp_path: Path, text: str, history: dict, message: str
) -> None:
    (tmp_path / "h.csv").write_text(text)
    path = scenario({"file": "h.csv", **history}, tmp_path)
    with pytest.raises(InputError) as e:
        marginsim.load(path)
    assert e.value.file == str(path)
    assert e.value.key_path == "history.file"
    assert message in e.value.problem
    assert main(["margin", str(path)]) == 2  # one line, status 2


@pytest.mark.parametrize(
    "history, key_path, message",
    [
        ({"file": "nowhere.csv"}, "history.file", "file not found"),
        ({"file": "h.xls"}, "history.file", "unknown format '.xls'"),
        ({"file": "h.csv", "columns": {"SPX": "spx"}}, "history.columns.SPX", "no column 'spx'"),
        ({"file": "h.csv", "columns": {"GOLD": "SPX"}}, "history.columns.GOLD", "unknown underlying 'GOLD'"),
        ({"file": "h.csv", "vol_columns": {"SPX": "v"}}, "history.vol_columns.SPX", "no column 'v'"),
        ({"file": "h.csv", "vol_unit": "bp"}, "history.vol_unit", "'decimal' or 'percent'"),
        ({"file": "h.csv", "colums": {}}, "history.colums", "unknown key"),
    ],
)
def test_bad_history_keys(tmp_path: Path, history: dict, key_path: str, message: str) -> None:
    (tmp_path / "h.csv").write_text(CSV)
    (tmp_path / "h.xls").write_text(CSV)
    with pytest.raises(InputError) as e:
        marginsim.load(scenario(history, tmp_path))
    assert e.value.key_path == key_path
    assert message in e.value.problem


def test_gap_limit_is_a_parameter(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text(CSV.replace("2024-01-05", "2024-01-25"))
    spec = HistoryParams(file="h.csv", max_gap_days=30)
    assert read_history(spec, base_dir=tmp_path, file=None)["date"].size == 4


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".nc"])
def test_history_export_round_trip(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture) -> None:
    from arch.data import sp500

    out = tmp_path / f"sp{suffix}"
    assert main(["history", "export", "sp500", str(out)]) == 0
    assert "5031 days, 1999-01-04 to 2018-12-31" in capsys.readouterr().out
    path = scenario({"file": out.name, "columns": {"SPX": "sp500"}}, tmp_path)
    h = marginsim.load(path).history
    want = sp500.load()["Close"]
    np.testing.assert_array_equal(h["close"].sel(underlying="SPX").values, want.to_numpy())
    np.testing.assert_array_equal(h["date"].values, want.index.values)


def test_history_export_wti_leaves_out_missing_days(tmp_path: Path) -> None:
    from arch.data import wti

    out = tmp_path / "wti.csv"
    assert main(["history", "export", "wti", str(out)]) == 0
    want = wti.load()["DCOILWTICO"].dropna()
    got = pd.read_csv(out)
    assert got.columns.tolist() == ["date", "wti"]
    np.testing.assert_array_equal(got["wti"].to_numpy(), want.to_numpy())


def test_history_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["history", "export", "sp5000", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "unknown history 'sp5000': the names are sp500, nasdaq, wti, vix" in err
    assert main(["history", "export", "sp500", str(tmp_path / "x.xlsx")]) == 2
    assert list(tmp_path.iterdir()) == []  # no partial file
