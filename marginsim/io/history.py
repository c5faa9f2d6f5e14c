"""Market history: daily closes (and implied vols) per underlying, from a file or from ``arch``.

- :func:`read_history`: the scenario key ``history:`` (:class:`marginsim.params.history.HistoryParams`)
  read and validated into an xarray Dataset over (``date``, ``underlying``);
- :func:`scenario_history`: the same for a validated scenario and its market's underlyings (what
  :func:`marginsim.api.build_inputs` stores as :attr:`marginsim.model.Inputs.history`);
- :func:`export_history`: one of the real daily series the ``arch`` package ships, written in
  the history format (``marginsim history export NAME FILE``): no download.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError
from ..params.history import HistoryParams
from ..scenario import ScenarioFile

__all__ = [
    "read_history",
    "scenario_history",
    "export_history",
    "ARCH_SERIES",
    "available_series",
    "DATE_COLUMN",
]

#: The name of the date column of a CSV or Parquet history file (and of the netCDF dim).
DATE_COLUMN = "date"

_CSV = (".csv", ".txt")
_PARQUET = (".parquet", ".pq", ".parq")
_NETCDF = (".nc", ".nc4", ".netcdf")

#: The real daily series the ``arch`` package ships (``arch.data``), by export name: module,
#: column, what it is. The exported file has the columns ``date`` and NAME.
ARCH_SERIES: dict[str, tuple[str, str, str]] = {
    "sp500": ("arch.data.sp500", "Close", "S&P 500 index close, 1999-2018 [index points]"),
    "nasdaq": ("arch.data.nasdaq", "Close", "NASDAQ Composite index close, 1999-2018 [index points]"),
    "wti": (
        "arch.data.wti",
        "DCOILWTICO",
        "WTI crude oil spot (FRED DCOILWTICO), 1986-2019 [USD per barrel]",
    ),
    "vix": ("arch.data.vix", "vix", "CBOE VIX (S&P 500 30-day implied vol), 2014-2019 [percent]"),
}


def available_series() -> list[str]:
    """The names of :data:`ARCH_SERIES` that the installed ``arch`` package ships."""
    out = []
    for name, (module, _, _) in ARCH_SERIES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # no arch at all
            found = False
        if found:
            out.append(name)
    return out


def _resolve(source: str, base_dir: str | Path | None) -> Path:
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


def _read_frame(path: Path, fail) -> pd.DataFrame:
    """The file as a frame with a ``date`` column (text or dates) and the series columns."""
    suffix = path.suffix.lower()
    if suffix in _CSV:
        try:
            frame = pd.read_csv(
                path, keep_default_na=False, na_values=[""], skipinitialspace=True, encoding="utf-8-sig"
            )
        except pd.errors.EmptyDataError:
            raise fail("empty file: a CSV history needs a header row (date,NAME,...)") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as e:
            raise fail(f"not a readable CSV file: {str(e).strip().splitlines()[0]}") from None
    elif suffix in _PARQUET:
        try:
            import pyarrow.parquet as pq

            frame = pq.read_table(path).to_pandas()
        except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for a broken file
            raise fail(f"not a readable Parquet file: {str(e).strip().splitlines()[0]}") from None
        if DATE_COLUMN not in [str(c).lower() for c in frame.columns] and isinstance(
            frame.index, pd.DatetimeIndex
        ):
            frame = frame.rename_axis(DATE_COLUMN).reset_index()
    elif suffix in _NETCDF:
        try:
            with xr.open_dataset(path) as ds:
                ds = ds.load()
        except Exception as e:  # noqa: BLE001 - the netCDF back ends raise many kinds
            raise fail(f"not a readable netCDF file: {str(e).strip().splitlines()[0]}") from None
        if DATE_COLUMN not in ds.dims:
            raise fail(f"a netCDF history needs a dim {DATE_COLUMN!r} (dims: {', '.join(map(str, ds.dims))})")
        names = [str(n) for n, v in ds.data_vars.items() if v.dims == (DATE_COLUMN,)]
        frame = pd.DataFrame({n: ds[n].values for n in names})
        frame.insert(0, DATE_COLUMN, ds[DATE_COLUMN].values)
    else:
        raise fail(
            f"unknown format {suffix or '(no suffix)'!r}: give a CSV (.csv), Parquet (.parquet) or netCDF (.nc) file"
        )
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _dates(frame: pd.DataFrame, fail) -> tuple[pd.DatetimeIndex, str]:
    """The validated dates (strictly increasing, no gap beyond the limit is checked by the caller)."""
    by_lower = {c.lower(): c for c in frame.columns}
    col = by_lower.get(DATE_COLUMN)
    if col is None:
        raise fail(f"no {DATE_COLUMN!r} column (columns: {', '.join(frame.columns) or 'none'})")
    raw = frame[col]
    if len(raw) == 0:
        raise fail("no dates: the history is empty")
    if raw.isna().any():
        i = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise fail(f"column {col}: missing date in data row {i + 1}")
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = pd.DatetimeIndex(raw)
    else:
        parsed = pd.DatetimeIndex(pd.to_datetime(raw.astype(str), format="ISO8601", errors="coerce"))
        bad = np.flatnonzero(parsed.isna())
        if bad.size:
            i = int(bad[0])
            raise fail(f"column {col}: {raw.iloc[i]!r} in data row {i + 1} is not a date (YYYY-MM-DD)")
    if parsed.tz is not None:
        parsed = parsed.tz_localize(None)
    parsed = parsed.normalize()
    step = np.diff(parsed.values)
    back = np.flatnonzero(step <= np.timedelta64(0))
    if back.size:
        i = int(back[0])
        a, b = parsed[i].date(), parsed[i + 1].date()
        what = f"duplicate date {a}" if a == b else f"dates not sorted: {b} comes after {a}"
        raise fail(f"column {col}: {what} (data rows {i + 1} and {i + 2}); dates must increase")
    return parsed, col


def _values(frame: pd.DataFrame, column: str, dates: pd.DatetimeIndex, what: str, fail) -> np.ndarray:
    """A column as positive finite floats; a missing, non-numeric or non-positive cell is an error
    naming the date and the column."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    text = np.flatnonzero(np.isnan(values) & raw.notna().to_numpy())
    if text.size:
        i = int(text[0])
        raise fail(f"column {column}, date {dates[i].date()}: {raw.iloc[i]!r} is not a number ({what})")
    missing = np.flatnonzero(np.isnan(values))
    if missing.size:
        i = int(missing[0])
        more = f" (and {missing.size - 1} more)" if missing.size > 1 else ""
        raise fail(f"column {column}, date {dates[i].date()}: missing value{more} ({what})")
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if bad.size:
        i = int(bad[0])
        raise fail(f"column {column}, date {dates[i].date()}: {values[i]:g} is not a positive finite {what}")
    return values


def read_history(
    spec: HistoryParams,
    *,
    base_dir: str | Path | None,
    file: str | Path | None,
    underlyings: Sequence[str] | None = None,
) -> xr.Dataset:
    """Read and validate a history file (the scenario key ``history:``).

    Parameters
    ----------
    spec
        The ``history:`` section.
    base_dir
        Folder a relative ``spec.file`` is relative to (the scenario file's); ``None``: the
        working directory.
    file
        The scenario file, named by errors.
    underlyings
        The underlyings to look up (the market's): each takes the column ``spec.columns[u]``, else
        the column named ``u``; one without a column has no history (it is left out), unless
        ``spec.columns`` names it (then the column must exist). ``None``: the keys of
        ``spec.columns``, else every column but ``date`` and the vol columns.

    Returns
    -------
    xarray.Dataset
        Dims ``date`` (strictly increasing days) and ``underlying``: ``close`` [price units];
        ``vol`` [decimal per sqrt(year)] where ``vol_columns`` are given (NaN for the
        underlyings without one; absent without ``vol_columns``). Attrs: ``file`` (the resolved
        path), ``source`` (as written), ``columns`` (``"U=column, ..."``), ``vol_underlyings``
        (names with a vol column, comma separated; empty: vols stay as they are).

    Raises
    ------
    InputError
        A missing or unreadable file, an unknown format, no ``date`` column, an unparseable,
        duplicate or unsorted date, a gap longer than ``max_gap_days``, a missing, non-numeric
        or non-positive price or vol (named with its date and column), a column ``columns`` or
        ``vol_columns`` names that the file lacks, an underlying of ``columns`` not in
        ``underlyings``; key path ``history.file`` (``history.columns.U``, ``history.vol_columns.U``).
    """
    sfile = None if file is None else str(file)
    path = _resolve(spec.file, base_dir)

    def fail(problem: str, key_path: Sequence[str | int] = ("history", "file")) -> InputError:
        return InputError(f"{spec.file}: {problem}", file=sfile, key_path=key_path)

    if not path.is_file():
        raise fail(f"is a folder ({path})" if path.is_dir() else f"file not found ({path})")
    frame = _read_frame(path, fail)
    dates, date_col = _dates(frame, fail)
    gaps = np.flatnonzero(np.diff(dates.values) > np.timedelta64(spec.max_gap_days, "D"))
    if gaps.size:
        i = int(gaps[0])
        days = int((dates[i + 1] - dates[i]).days)
        raise fail(
            f"column {date_col}: a gap of {days} days between {dates[i].date()} and {dates[i + 1].date()} "
            f"(more than history.max_gap_days: {spec.max_gap_days})"
        )
    columns = dict(spec.columns or {})
    vol_columns = dict(spec.vol_columns or {})
    present = set(frame.columns) - {date_col}
    if underlyings is None:
        names = (
            list(columns)
            if columns
            else [c for c in frame.columns if c in present and c not in vol_columns.values()]
        )
    else:
        names = [str(u) for u in underlyings]
        for u in columns:
            if u not in names:
                raise fail(
                    f"unknown underlying {u!r} (the market's: {', '.join(names)})", ("history", "columns", u)
                )
    chosen: list[tuple[str, str]] = []
    for u in names:
        col = columns.get(u, u)
        if col in present:
            chosen.append((u, col))
        elif u in columns:
            raise fail(
                f"no column {col!r} (columns: {', '.join(sorted(present))})", ("history", "columns", u)
            )
    if not chosen:
        raise fail(
            f"no column matches an underlying ({', '.join(names) or 'none'}); map them with history.columns "
            f"(columns: {', '.join(sorted(present)) or 'none'})"
        )
    close = np.column_stack([_values(frame, col, dates, "price", fail) for _, col in chosen])
    und = [u for u, _ in chosen]
    data: dict[str, tuple[tuple[str, ...], np.ndarray]] = {"close": (("date", "underlying"), close)}
    for u, col in vol_columns.items():
        if u not in und:
            raise fail(
                f"underlying {u!r} has a vol column but no price column", ("history", "vol_columns", u)
            )
        if col not in present:
            raise fail(
                f"no column {col!r} (columns: {', '.join(sorted(present))})", ("history", "vol_columns", u)
            )
    if vol_columns:
        scale = 0.01 if spec.vol_unit == "percent" else 1.0
        vol = np.full(close.shape, np.nan)
        for j, u in enumerate(und):
            if u in vol_columns:
                vol[:, j] = _values(frame, vol_columns[u], dates, "vol", fail) * scale
        data["vol"] = (("date", "underlying"), vol)
    ds = xr.Dataset(
        data,
        coords={"date": dates.values.astype("datetime64[ns]"), "underlying": np.asarray(und, dtype=object)},
        attrs={
            "file": str(path),
            "source": spec.file,
            "columns": ", ".join(f"{u}={c}" for u, c in chosen),
            "vol_underlyings": ", ".join(u for u in und if u in vol_columns),
        },
    )
    ds["close"].attrs.update(units="price units", description="daily close")
    if "vol" in ds:
        ds["vol"].attrs.update(units="1/sqrt(year)", description="implied volatility (decimal)")
    return ds


def scenario_history(sc: ScenarioFile, underlyings: Sequence[str] | None = None) -> xr.Dataset | None:
    """The history of a validated scenario's ``history:`` for ``underlyings`` (default: its
    ``market``'s), a relative file resolved against the scenario file's folder; ``None`` when
    the scenario has no ``history:``."""
    spec = sc.section("history")
    if spec is None:
        return None
    base = None if sc.file is None else Path(sc.file).parent
    return read_history(
        spec, base_dir=base, file=sc.file, underlyings=list(sc.market) if underlyings is None else underlyings
    )


def export_history(name: str, path: str | Path) -> Path:
    """Write one of the real daily series the ``arch`` package ships in the history format.

    Parameters
    ----------
    name
        A name of :data:`ARCH_SERIES` (``sp500``, ``nasdaq``, ``wti``, ``vix``).
    path
        The file to write: CSV (``.csv``), Parquet (``.parquet``) or netCDF (``.nc``), by suffix.
        Columns ``date`` (YYYY-MM-DD) and ``name``; the days the source has no value for
        (holidays in FRED's WTI series) are left out. Written whole or not at all.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    InputError
        An unknown name (the message lists the names), an unknown suffix, ``arch`` not installed.
    """
    path = Path(path).expanduser()
    if name not in ARCH_SERIES:
        raise InputError(f"unknown history {name!r}: the names are {', '.join(ARCH_SERIES)}", key_path="NAME")
    module, column, _ = ARCH_SERIES[name]
    try:
        source = importlib.import_module(module).load()
    except ModuleNotFoundError:
        raise InputError(
            f"history {name!r} comes from the arch package ({module}), which is not installed: pip install arch",
            key_path="NAME",
        ) from None
    suffix = path.suffix.lower()
    if suffix not in _CSV + _PARQUET + _NETCDF:
        raise InputError(
            f"unknown format {suffix or '(no suffix)'!r}: give a .csv, .parquet or .nc file", file=path
        )
    series = source[column].astype(float).dropna()
    series = series[series > 0]
    dates = pd.DatetimeIndex(series.index).normalize()
    frame = pd.DataFrame({DATE_COLUMN: dates.strftime("%Y-%m-%d"), name: series.to_numpy()})
    if not path.parent.is_dir():
        raise InputError(f"no folder {path.parent}", file=path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        if suffix in _CSV:
            frame.to_csv(tmp, index=False)
        elif suffix in _PARQUET:
            frame.to_parquet(tmp, index=False)
        else:
            ds = xr.Dataset({name: (DATE_COLUMN, series.to_numpy())}, coords={DATE_COLUMN: dates.values})
            ds[name].attrs["description"] = ARCH_SERIES[name][2]
            ds.to_netcdf(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
