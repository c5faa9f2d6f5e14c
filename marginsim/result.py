"""Results: xarray Datasets per method, and the JSON contract of ``spec/scenario-format.md``.

A :class:`MarginResult` is a mapping of method name -> :class:`xarray.Dataset` (``"span" in res``,
``for name in res``, ``res.items()``), with the JSON contract (:meth:`~MarginResult.to_dict`), a
long table per method (:meth:`~MarginResult.to_dataframe`), files with one group per method
(:meth:`~MarginResult.to_netcdf`, :meth:`~MarginResult.to_zarr`; read back with
:func:`open_result_group`), a short ``repr`` and an HTML table for Jupyter.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError
from .model import GRID_DIMS, Inputs, is_dask
from .outputs import attribution_json, base_grid_point, first_nonfinite_money, to_plain
from .registry import REGISTRY

__all__ = ["MarginResult", "to_plain", "base_point", "netcdf_safe", "open_result_group", "HEADLINE"]

#: The variables the ``repr`` and the HTML table show per method and account (when the method has them).
HEADLINE = ("maintenance", "initial")
#: Accounts listed by the HTML table before it says how many more there are.
HTML_MAX_ACCOUNTS = 20


def base_point(da: xr.DataArray | xr.Dataset, keep: Sequence[str] = ()) -> Any:
    """``da`` at the base point of its what-if grid dims (those of :data:`marginsim.model.GRID_DIMS`
    not in ``keep``); other dims (account, group, movement...) are left whole.

    The base point is ``shift = 0`` where the shift grid has it, else the first coordinate
    (``step`` 0: the start of a path; ``path`` 0: the first simulated path).

    Parameters
    ----------
    da
        A result variable or Dataset.
    keep
        Grid dims to keep whole.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
    """
    sel: dict[str, int] = {}
    for d in da.dims:
        if d in keep or d not in GRID_DIMS:
            continue
        if d == "shift" and "shift" in da.coords and (da["shift"].values == 0.0).any():
            sel[d] = int(np.flatnonzero(da["shift"].values == 0.0)[0])
        else:
            sel[d] = 0
    return da.isel(sel)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    return x


@dataclass(repr=False, eq=False)
class MarginResult(Mapping[str, xr.Dataset]):
    """The result of running one or more methods on a scenario: a mapping of method name ->
    result Dataset, in the order the methods ran.

    ``"span" in res``, ``for name in res``, ``res.keys()``, ``res.values()``, ``res.items()``,
    ``len(res)`` and ``res["span"]`` work as on a dict of the :attr:`methods`.

    Attributes
    ----------
    inputs
        The data model the methods ran on.
    methods
        Method name -> result Dataset (dims ``account``, ``group``, grid dims, ...).
    """

    inputs: Inputs
    methods: dict[str, xr.Dataset] = field(default_factory=dict)

    def __getitem__(self, name: str) -> xr.Dataset:
        return self.methods[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.methods)

    def __len__(self) -> int:
        return len(self.methods)

    @property
    def grid_dims(self) -> tuple[str, ...]:
        return self.inputs.grid_dims

    def dims(self) -> dict[str, list]:
        """Each grid dim and its coordinate values."""
        out: dict[str, list] = {}
        for d in self.grid_dims:
            for ds in self.methods.values():
                if d in ds.coords:
                    out[d] = ds[d].values.tolist()
                    break
        return out

    def check_finite(self) -> None:
        """Refuse a result with a NaN or infinite amount where a number is due (the last guard
        against inputs no check caught: a value a method cannot handle, an overflow).

        Raises
        ------
        InputError
            Naming the method, the variable and the account.
        """
        for name, ds in self.methods.items():
            bad = first_nonfinite_money(ds, REGISTRY[name].outputs)
            if bad is not None:
                variable, account = bad
                raise InputError(
                    f"{name}: {variable} of account {account!r} is not a finite number: an input is "
                    "too large or out of the range this method can compute",
                    file=self.inputs.scenario.file,
                )

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``marginsim margin FILE --json`` (after :meth:`check_finite`)."""
        self.check_finite()
        sc = self.inputs.scenario
        gd = list(self.grid_dims)
        accounts: dict[str, dict[str, Any]] = {a: {} for a in self.inputs.accounts}
        for name, ds in self.methods.items():
            per_account = REGISTRY[name].to_dict(ds, gd)
            attribution = attribution_json(ds, gd) if "marginal" in ds.data_vars else None
            for acct, obj in per_account.items():
                if attribution is not None:  # margin(..., attribution=True)
                    obj = {**obj, "attribution": attribution.get(str(acct), [])}
                accounts.setdefault(acct, {})[name] = obj
        return _clean(
            {
                "scenario": sc.name,
                "currency": sc.currency,
                "as_of": sc.as_of.isoformat(),
                "dims": self.dims(),
                "accounts": accounts,
            }
        )

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a JSON string."""
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    def to_dataframe(self, method: str, dims: Sequence[str] = ("account",)) -> pd.DataFrame:
        """A long table of one method's results: one row per account and grid point.

        The columns are ``dims`` (``account``), then the grid dims of the result (``shift``,
        ``step``, ``path``...), then every variable whose dims are ``dims`` plus grid dims (in the
        Dataset's order). A variable that does not vary along a grid dim is repeated along it.
        Variables over other dims (per combined commodity or class group, position, contract,
        scenario, plan row...) are left out: ``dims=("account", "group")`` gives the per-group
        variables (one row per account, group and grid point), ``res[method][name].to_dataframe()``
        any single variable. The variables' units are in ``DataFrame.attrs["units"]``.

        Parameters
        ----------
        method
            A method of the result (``"span"``...).
        dims
            The dims besides the grid dims that every row is one of (default: ``("account",)``).

        Returns
        -------
        pandas.DataFrame
            Lazy (chunked) results are computed.
        """
        ds = self[method]
        grid = [d for d in GRID_DIMS if d in ds.dims]
        row_dims = [*dims, *grid]
        names = [str(k) for k, v in ds.data_vars.items() if set(dims) <= set(v.dims) <= set(row_dims)]
        sub = ds[names].drop_vars([c for c in ds[names].coords if c not in row_dims])
        frame = sub.to_dataframe(dim_order=[d for d in row_dims if d in sub.dims]).reset_index()
        frame.attrs["units"] = {k: ds[k].attrs.get("units", "") for k in names}
        frame.attrs["method"] = method
        return frame

    def to_netcdf(self, path: str | Path) -> Path:
        """Write the result to a netCDF-4 file: one group per method (its Dataset, attrs made
        netCDF-safe by :func:`netcdf_safe`), the scenario's name, as-of date, currency and the
        methods as attrs of the root group. The file is written to a temporary file beside
        ``path`` and renamed only when complete (never a partial file).

        Read a method back with :func:`open_result_group` (or ``xarray.open_dataset(path,
        group="span")``).

        Parameters
        ----------
        path
            The file to write (replaced if it exists).

        Returns
        -------
        pathlib.Path
        """
        path = Path(path)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        os.close(fd)
        tmp = Path(name)
        try:
            xr.Dataset(attrs=self._file_attrs()).to_netcdf(tmp, mode="w", format="NETCDF4")
            for method, ds in self.methods.items():
                netcdf_safe(ds).to_netcdf(tmp, mode="a", group=method, format="NETCDF4")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def to_zarr(self, path: str | Path) -> Path:
        """Write the result to a zarr store: one group per method, as :meth:`to_netcdf` (attrs
        made netCDF-safe as well). The store is written to a temporary folder beside ``path``
        and moved into place only when complete; an existing store at ``path`` is replaced.

        Parameters
        ----------
        path
            The store (a folder) to write.

        Returns
        -------
        pathlib.Path
        """
        path = Path(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or "."))
        old = None
        try:
            xr.Dataset(attrs=self._file_attrs()).to_zarr(tmp, mode="w", consolidated=False)
            for method, ds in self.methods.items():
                netcdf_safe(ds).to_zarr(tmp, mode="w", group=method, consolidated=False)
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def _file_attrs(self) -> dict[str, Any]:
        sc = self.inputs.scenario
        return netcdf_attrs(
            {
                "scenario": sc.name,
                "as_of": sc.as_of,
                "currency": sc.currency,
                "methods": list(self.methods),
                "created_by": "marginsim",
            }
        )

    def _headline(self) -> dict[str, dict[str, np.ndarray]]:
        """Method -> headline variable -> its values per account at the base grid point
        (in memory results only)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for method, ds in self.methods.items():
            if is_dask(ds):
                continue
            grid = [d for d in GRID_DIMS if d in ds.dims]
            at = ds.isel(base_grid_point(ds, grid)) if grid else ds
            out[method] = {
                k: np.asarray(at[k].transpose("account").values, dtype=float)
                for k in HEADLINE
                if k in at.data_vars and set(at[k].dims) == {"account"} and at[k].dtype.kind in "biuf"
            }
        return out

    def _grid_text(self, ds: xr.Dataset) -> tuple[str, str]:
        """(``"shift=5 x step=21"``, ``"shift=0, step=0"``): the grid dims' sizes and the base point."""
        grid = [d for d in GRID_DIMS if d in ds.dims]
        if not grid:
            return "", ""
        point = base_grid_point(ds, grid)
        sizes = " x ".join(f"{d}={ds.sizes[d]}" for d in grid)
        at = ", ".join(f"{d}={_fmt_coord(ds[d].values[i])}" for d, i in point.items())
        return sizes, at

    def __repr__(self) -> str:
        sc = self.inputs.scenario
        n_acc = len(self.inputs.accounts)
        head = f"<MarginResult {sc.name!r} as of {_fmt_date(sc.as_of)} [{sc.currency}]: {_plural(n_acc, 'account')}"
        if not self.methods:
            return head + ", no method>"
        lines = [head]
        values = self._headline()
        for method, ds in self.methods.items():
            sizes, at = self._grid_text(ds)
            where = f" (grid {sizes}; at {at})" if sizes else ""
            if method not in values:
                lines.append(f"  {method}{where}: lazy, not computed")
                continue
            total = (
                "; ".join(f"{k} {_fmt_money(v.sum())}" for k, v in values[method].items() if v.size)
                or "no headline figure"
            )
            of = f" (sum of {n_acc} accounts)" if n_acc > 1 else ""
            lines.append(f"  {method}{where}: {total}{of}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        """A small HTML table for Jupyter: per account, each method's headline figures at the
        base grid point (the first :data:`HTML_MAX_ACCOUNTS` accounts, then a count of the rest)."""
        sc = self.inputs.scenario
        esc = html.escape
        values = self._headline()
        cols = [(m, k) for m, vs in values.items() for k in vs]
        accounts = list(self.inputs.accounts)
        notes = []
        for method, ds in self.methods.items():
            sizes, at = self._grid_text(ds)
            if method not in values:
                notes.append(f"{method}: lazy, not computed")
            elif sizes:
                notes.append(f"{method}: grid {sizes}, shown at {at}")
        rows = []
        for i, acct in enumerate(accounts[:HTML_MAX_ACCOUNTS]):
            cells = "".join(
                f"<td style='text-align:right'>{esc(_fmt_money(values[m][k][i]))}</td>" for m, k in cols
            )
            rows.append(f"<tr><th style='text-align:left'>{esc(str(acct))}</th>{cells}</tr>")
        if len(accounts) > HTML_MAX_ACCOUNTS:
            rows.append(
                f"<tr><td colspan='{len(cols) + 1}'>... and {len(accounts) - HTML_MAX_ACCOUNTS} more accounts</td></tr>"
            )
        if len(accounts) > 1 and cols:
            cells = "".join(
                f"<td style='text-align:right'>{esc(_fmt_money(values[m][k].sum()))}</td>" for m, k in cols
            )
            rows.append(f"<tr><th style='text-align:left'>all accounts</th>{cells}</tr>")
        header = "".join(f"<th>{esc(m)}<br>{esc(k)} [{esc(sc.currency)}]</th>" for m, k in cols)
        caption = (
            f"MarginResult {esc(sc.name)}: as of {esc(_fmt_date(sc.as_of))}, "
            f"{esc(_plural(len(accounts), 'account'))}, currency {esc(sc.currency)}"
        )
        note = "".join(f"<br><small>{esc(n)}</small>" for n in notes)
        return (
            f"<div><strong>{caption}</strong>{note}"
            f"<table><thead><tr><th>account</th>{header}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _fmt_money(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:,.2f}"


def _fmt_date(d: Any) -> str:
    return d.isoformat() if isinstance(d, (dt.date, dt.datetime)) else str(d)


def _fmt_coord(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def netcdf_attrs(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    """Attrs that netCDF (and zarr) can store: text, numbers and arrays of numbers as they are;
    booleans as the integers 1 / 0; ``None`` as ``""``; dates as ISO text; lists of text as
    arrays of text; anything else (dicts, mixed lists) as its JSON text.

    Parameters
    ----------
    attrs
        A Dataset's or variable's attrs.

    Returns
    -------
    dict
    """
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        k = str(key)
        if isinstance(value, (bool, np.bool_)):
            out[k] = np.int8(bool(value))
        elif value is None:
            out[k] = ""
        elif isinstance(value, (str, int, float, np.integer, np.floating)):
            out[k] = value
        elif isinstance(value, (dt.date, dt.datetime)):
            out[k] = value.isoformat()
        elif isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
            out[k] = value
        elif (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            out[k] = np.asarray(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            out[k] = list(value)
        else:
            out[k] = json.dumps(value, default=str)
    return out


def netcdf_safe(ds: xr.Dataset) -> xr.Dataset:
    """A copy of a result Dataset that netCDF-4 and zarr store as it is: every attr (of the
    Dataset and of each variable) through :func:`netcdf_attrs`; text variables of Python objects as
    variable-length text (Python ``str`` objects; an empty one reads back as an empty float array).

    Parameters
    ----------
    ds
        A method's result.

    Returns
    -------
    xarray.Dataset
    """
    out = ds.copy(deep=False)
    out.attrs = netcdf_attrs(ds.attrs)
    for name, v in ds.variables.items():
        attrs = netcdf_attrs(v.attrs)
        if v.dtype.kind in "OU":  # variable-length text: no fixed width for zarr v3 to warn about
            text = np.asarray(v.values).astype(str).astype(object)
            new = xr.Variable(v.dims, text, attrs=attrs)
            if name in out.indexes:
                out = out.assign_coords({name: new})
            else:
                out[name] = new
        else:
            out[name].attrs = attrs
    return out


def open_result_group(path: str | Path, method: str) -> xr.Dataset:
    """One method's Dataset from a file written by :meth:`MarginResult.to_netcdf` or
    :meth:`~MarginResult.to_zarr` (a folder is read as zarr), loaded into memory; text variables
    as numpy unicode or Python ``str`` objects (zarr's numpy ``StringDType`` converted), times as
    ``datetime64[ns]``.

    Parameters
    ----------
    path
        The file or store.
    method
        The method (the group's name).

    Returns
    -------
    xarray.Dataset
    """
    path = Path(path)
    if path.is_dir():
        with xr.open_zarr(path, group=method, consolidated=False) as ds:
            out = ds.load()
    else:
        with xr.open_dataset(path, group=method) as ds:
            out = ds.load()
    text = {k: v for k, v in out.variables.items() if v.dtype.kind == "T"}  # zarr's text: numpy StringDType
    for name, v in text.items():  # Python str objects, as in the result
        new = xr.Variable(v.dims, v.values.astype(object), attrs=v.attrs)
        out = out.assign_coords({name: new}) if name in out.indexes else out.assign({name: new})
    return out
