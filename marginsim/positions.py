"""The book of a scenario file in columnar form: one array per column, however it was given.

A scenario gives its positions either in YAML (``positions:``, a list of mappings) or in a file
(``positions_file:``, CSV or Parquet with columns ``account``, ``contract``, ``quantity`` and
optionally ``open_price`` and ``opened``). Both become a :class:`PositionTable` (arrays of
account, contract and quantity), which is all the data model and the methods read: a book of a
million rows never becomes a million pydantic objects.

A positions file is read in vectorised form (pandas, pyarrow for Parquet) and validated by column;
a problem is an :class:`~marginsim.errors.InputError` naming the scenario file, the key
``positions_file``, the positions file, the row and the column. Rows are counted as a user sees
them: in a CSV file as in a spreadsheet, the header being row 1 (so the first position is row 2);
in a Parquet file, which has no header row, the first position is row 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "REQUIRED_COLUMNS", "PositionTable", "read_positions_file"]

#: Columns a positions file may have (those of a position in ``positions:``).
COLUMNS = ("account", "contract", "quantity", "open_price", "opened")
#: Columns a positions file must have.
REQUIRED_COLUMNS = ("account", "contract", "quantity")

_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_CSV_SUFFIXES = (".csv", ".txt")


@dataclass(frozen=True, eq=False)
class PositionTable:
    """The positions of a scenario as columns (one element per position, in the file's order).

    Attributes
    ----------
    contract
        Contract names (object array of ``str``).
    quantity
        Signed quantities [contracts], long positive (float64, finite).
    account
        Account names (object array of ``str``).
    open_price
        Given open prices [price units] (float64, NaN: none), or ``None`` when no position has one.
    opened
        Opening times (object array of ``datetime`` or ``None``: held before the path), or
        ``None`` when no position has one.
    file
        The scenario file (for errors).
    source
        The positions file as the scenario names it; ``None``: the scenario's ``positions:``.
    row
        Index of each position in the source (0-based; a part of a book keeps its rows' indices).
    """

    contract: np.ndarray
    quantity: np.ndarray
    account: np.ndarray
    open_price: np.ndarray | None = None
    opened: np.ndarray | None = None
    file: str | None = None
    source: str | None = None
    row: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.quantity.shape[0])

    @classmethod
    def from_positions(cls, positions: Sequence[Any], *, file: str | None = None) -> PositionTable:
        """The table of a scenario's ``positions:`` (validated :class:`~marginsim.scenario.Position` objects)."""
        n = len(positions)
        prices = [p.open_price for p in positions]
        times = [p.opened for p in positions]
        has_price = any(x is not None for x in prices)
        has_time = any(x is not None for x in times)
        return cls(
            contract=np.array([p.contract for p in positions], dtype=object).reshape(n),
            quantity=np.array([p.quantity for p in positions], dtype=float).reshape(n),
            account=np.array([p.account for p in positions], dtype=object).reshape(n),
            open_price=(
                np.array([np.nan if x is None else x for x in prices], dtype=float) if has_price else None
            ),
            opened=np.array(times + [None], dtype=object)[:n] if has_time else None,
            file=file,
        )

    def take(self, rows: np.ndarray) -> PositionTable:
        """The positions ``rows`` (indices into this table), keeping their row numbers for errors."""
        rows = np.asarray(rows, dtype=np.int64)

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        base = np.arange(len(self)) if self.row is None else self.row
        return PositionTable(
            contract=self.contract[rows],
            quantity=self.quantity[rows],
            account=self.account[rows],
            open_price=pick(self.open_price),
            opened=pick(self.opened),
            file=self.file,
            source=self.source,
            row=base[rows],
        )

    @cached_property
    def held(self) -> frozenset[str]:
        """The names of the contracts held (computed once)."""
        return frozenset(self.contract.tolist())

    def where(self, i: int, column: str = "contract") -> tuple[tuple[str | int, ...] | str, str]:
        """Key path and row label of position ``i`` (its column ``column``) for a message."""
        n = int(i if self.row is None else self.row[i])
        if self.source is None:
            return ("positions", n, column), ""
        return "positions_file", f"{self.source} {row_label(self.source, n)}, column {column}: "

    def error(self, i: int, problem: str, column: str = "contract") -> InputError:
        """The error for position ``i``: names the scenario file, where the position is, and ``problem``."""
        key_path, label = self.where(i, column)
        return InputError(label + problem, file=self.file, key_path=key_path)


def row_label(source: str, i: int) -> str:
    """How a user finds data row ``i`` (0-based) of positions file ``source``.

    CSV: as in a spreadsheet, the header is row 1 (the first position is row 2). Parquet: the first
    position is row 1.
    """
    if _is_parquet(source):
        return f"row {i + 1} (the first position is row 1)"
    return f"row {i + 2} (the header is row 1)"


def _is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() in _PARQUET_SUFFIXES


def read_positions_file(
    source: str, *, scenario_file: str | Path | None, known_contracts: Any = None
) -> PositionTable:
    """Read and validate a positions file (CSV or Parquet) into a :class:`PositionTable`.

    Parameters
    ----------
    source
        The file as the scenario names it (``positions_file``): relative to the scenario file's
        folder (to the working directory for a scenario built in Python).
    scenario_file
        The scenario file, for messages and to resolve ``source``.
    known_contracts
        The contract names a position may hold (a container), or ``None``: any (they are checked
        later against a clearing-house file).

    Returns
    -------
    PositionTable
        One element per data row, in the file's order.

    Raises
    ------
    InputError
        The file is missing or unreadable, a required column is missing, a column is unknown or of
        the wrong type, or a row has a missing account or contract, a missing or non-finite
        quantity, an unknown contract, a bad open price or opening time: the message names the
        scenario file, ``positions_file``, the positions file, the row and the column.
    """
    sfile = None if scenario_file is None else str(scenario_file)
    path = Path(source).expanduser()
    if not path.is_absolute() and scenario_file is not None:
        path = Path(scenario_file).parent / path

    def fail(problem: str) -> InputError:
        return InputError(f"{source}: {problem}", file=sfile, key_path="positions_file")

    if not path.is_file():
        raise fail(f"is a folder ({path})" if path.is_dir() else f"file not found ({path})")
    suffix = path.suffix.lower()
    if suffix not in _PARQUET_SUFFIXES + _CSV_SUFFIXES:
        raise fail(
            f"unknown format {suffix or '(no suffix)'!r}: give a CSV (.csv) or Parquet (.parquet) file"
        )
    frame = _read_parquet(path, fail) if _is_parquet(source) else _read_csv(path, fail)
    columns = [str(c) for c in frame.columns]
    for c in columns:
        if c not in COLUMNS:
            hint = "; columns are separated by commas" if (";" in c or "\t" in c) else ""
            raise fail(f"unknown column {c!r} (the columns are {', '.join(COLUMNS)}{hint})")
    for c in REQUIRED_COLUMNS:
        if c not in columns:
            raise fail(f"missing column {c!r} (required: {', '.join(REQUIRED_COLUMNS)})")
    table = PositionTable(
        contract=np.empty(0, dtype=object), quantity=np.empty(0), account=np.empty(0, dtype=object),
        file=sfile, source=source,
    )  # fmt: skip

    def bad(i: int, column: str, problem: str) -> InputError:
        return table.error(i, problem, column)

    account = _names(frame["account"], "account", bad, fail)
    contract = _names(frame["contract"], "contract", bad, fail)
    quantity = _numbers(frame["quantity"], "quantity", bad, fail)
    open_price = None
    if "open_price" in columns:
        open_price = _numbers(frame["open_price"], "open_price", bad, fail, optional=True)
        wrong = np.flatnonzero(open_price <= 0)
        if wrong.size:
            i = int(wrong[0])
            raise bad(i, "open_price", f"open price must be > 0, not {_shown(open_price[i])}")
    opened = _times(frame["opened"], bad, fail) if "opened" in columns else None
    table = PositionTable(
        contract=contract,
        quantity=quantity,
        account=account,
        open_price=open_price,
        opened=opened,
        file=sfile,
        source=source,
    )
    if known_contracts is not None:
        unknown = table.held - frozenset(known_contracts)
        if unknown:
            import pandas as pd

            i = int(np.flatnonzero(pd.Series(contract).isin(unknown).to_numpy())[0])
            raise table.error(i, f"unknown contract {contract[i]!r} (not in `contracts`)")
    return table


def _read_csv(path: Path, fail) -> pd.DataFrame:
    import pandas as pd

    try:
        # names as text (an account number stays "0012"); only an empty cell is missing, so that a
        # "nan" or "inf" is seen as written; quantity is read as numbers where it is all numbers
        return pd.read_csv(
            path,
            dtype={"account": str, "contract": str, "opened": str},
            keep_default_na=False,
            na_values=[""],
            skipinitialspace=True,
            encoding="utf-8-sig",  # a spreadsheet's UTF-8 export starts with a byte-order mark
        )
    except pd.errors.EmptyDataError:
        raise fail("empty file: a CSV file needs a header row (account,contract,quantity)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as e:
        raise fail(f"not a readable CSV file: {str(e).strip().splitlines()[0]}") from None


def _read_parquet(path: Path, fail) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise fail("reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
        return table.to_pandas()
    except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for a broken file
        raise fail(f"not a readable Parquet file: {str(e).strip().splitlines()[0]}") from None


def _shown(value: Any) -> str:
    """A cell's value as the message shows it: numbers plain (``inf``), text quoted."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value))
    return repr(value)


def _names(col: pd.Series, name: str, bad, fail) -> np.ndarray:
    """A name column as an object array of ``str`` (integers become their decimal strings)."""
    import pandas as pd

    kind = col.dtype.kind
    if kind in "iu":
        return np.fromiter(map(str, col.to_numpy().tolist()), dtype=object, count=len(col))
    if not (pd.api.types.is_string_dtype(col.dtype) or kind == "O"):
        raise fail(f"column {name} holds {col.dtype} values: need text (or integer) names")
    missing = col.isna().to_numpy()
    if missing.any():
        raise bad(int(np.flatnonzero(missing)[0]), name, f"missing {name}")
    if kind == "O" and pd.api.types.infer_dtype(col, skipna=True) not in ("string", "empty"):
        raise fail(
            f"column {name} holds {pd.api.types.infer_dtype(col, skipna=True)} values: need text names"
        )
    blank = (col == "").to_numpy()
    if blank.any():
        raise bad(int(np.flatnonzero(blank)[0]), name, f"empty {name}")
    values = col.to_numpy(dtype=object)
    return values


def _numbers(col: pd.Series, name: str, bad, fail, optional: bool = False) -> np.ndarray:
    """A number column as float64: missing (unless ``optional``: NaN), text and non-finite values
    are errors naming the first row."""
    import pandas as pd

    kind = col.dtype.kind
    missing = col.isna().to_numpy()
    if kind == "b":
        raise fail(f"column {name} holds true/false values: need numbers")
    if kind in "iuf":
        values = col.to_numpy(dtype=float, na_value=np.nan)
    elif pd.api.types.is_string_dtype(col.dtype) or kind == "O":
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        text = np.isnan(values) & ~missing
        if text.any():
            low = col.astype(str).str.strip().str.lower().to_numpy()
            text &= low != "nan"  # "nan" is a number, but not a finite one: reported below
            if text.any():
                i = int(np.flatnonzero(text)[0])
                raise bad(i, name, f"{name} must be a number, not {col.iloc[i]!r}")
    else:
        raise fail(f"column {name} holds {col.dtype} values: need numbers")
    if not optional and missing.any():
        raise bad(int(np.flatnonzero(missing)[0]), name, f"missing {name}")
    wrong = ~np.isfinite(values) & ~missing
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise bad(i, name, f"{name} must be a finite number, not {_shown(col.iloc[i])}")
    return values


def _times(col: pd.Series, bad, fail) -> np.ndarray:
    """The ``opened`` column: object array of ``datetime`` (with its offset where one is given) or
    ``None`` (an empty cell: held before the path)."""
    import pandas as pd

    missing = col.isna().to_numpy()
    if col.dtype.kind == "M":
        stamps = col
    else:
        try:
            stamps = pd.to_datetime(col, errors="coerce", format="ISO8601")
        except (ValueError, TypeError) as e:
            raise fail(f"column opened: times must all have a UTC offset or all have none ({e})") from None
        wrong = stamps.isna().to_numpy() & ~missing
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise bad(i, "opened", f"not a time (ISO 8601, e.g. 2026-03-10T09:30:00+08:00): {col.iloc[i]!r}")
    out = np.empty(len(col), dtype=object)
    some = ~missing
    if some.any():
        out[some] = pd.DatetimeIndex(stamps[some]).to_pydatetime()
    return out
