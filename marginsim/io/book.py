"""A book on disk (zarr, or netCDF: scipy's netCDF-3 engine or any other of xarray's), read lazily chunk by chunk.

A book too large for memory is stored once and margined chunk by chunk of accounts
(:mod:`marginsim.scale`): only the account table and the contracts held are read when the book is
opened; the positions are read by the dask tasks, one chunk of accounts each.

The layout (format 1)
---------------------
========================  ======================  =========================================================
variable                  dims                    meaning
========================  ======================  =========================================================
``contract``              ``position``            integer index into ``contract_name``
``quantity``              ``position``            signed quantity [contracts], long positive
``account``               ``position``            integer index into ``account_name``; non-decreasing:
                                                  the positions of an account are contiguous
``open_price``            ``position``            optional (CFD orders): given open price [price units],
                                                  NaN: none
``opened``                ``position``            optional (CFD orders): opening time (UTC), NaT: held
                                                  before the path
``account_name``          ``book_account``        account names
``position_start``        ``book_account``        first position of each account (optional: without it
                                                  the ``account`` column is read once on opening)
``contract_name``         ``book_contract``       the contracts the positions hold, by the scenario's names
                                                  (or a clearing-house file's ids)
========================  ======================  =========================================================

and the attribute ``marginsim_book = 1``. :func:`write_book` writes it (from an in-memory or a
lazy book, streaming chunk by chunk), :func:`open_book` reads it lazily, :func:`read_book` gives
:class:`~marginsim.model.Inputs` whose methods return lazy results.

A *lazy book* (what :func:`open_book` and :func:`chunk_book` return; :mod:`marginsim.scale` margins
it chunk by chunk) is a book Dataset whose position variables (:data:`POSITION_VARS`) are dask
arrays sorted by account, chunked along ``position`` at account boundaries, with the account table
in memory: ``account_name`` and ``position_start`` (first position of each account) over
``account``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import InputError
from ..model import Inputs, Universe, contract_indices, is_dask

__all__ = ["BOOK_FORMAT", "POSITION_VARS", "chunk_book", "write_book", "open_book", "read_book"]

#: Position variables of a lazy book.
POSITION_VARS = ("contract_index", "quantity", "account_index", "open_price", "opened")

#: Version of the on-disk layout (attribute ``marginsim_book``).
BOOK_FORMAT = 1

_REQUIRED = ("contract", "quantity", "account", "account_name", "contract_name")


def _is_zarr(path: Path) -> bool:
    return path.suffix not in (".nc", ".nc4", ".h5", ".hdf5", ".cdf")


def _orders(inputs: Inputs, position: np.ndarray) -> dict[str, np.ndarray]:
    """CFD order fields of the book: its own ``open_price`` / ``opened``, else the scenario file's."""
    book, sc = inputs.book, inputs.scenario
    out: dict[str, np.ndarray] = {}
    if "open_price" in book or "opened" in book:
        for name in ("open_price", "opened"):
            if name in book:
                out[name] = book[name].data
        return out
    table = sc.position_table()
    if table.open_price is None and table.opened is None:
        return out
    if len(table) != book.sizes["position"]:
        return out  # not the file's book (Inputs.with_book): no order fields
    n = len(table)
    price = np.full(n, np.nan) if table.open_price is None else table.open_price
    out["open_price"] = price[position]
    times = np.full(n, None, dtype=object) if table.opened is None else table.opened
    opened = np.array(
        [np.datetime64("NaT", "ns") if t is None else _utc(t) for t in times], dtype="datetime64[ns]"
    )
    out["opened"] = opened[position]
    return out


def _strings(values: Iterable[object]) -> np.ndarray:
    """Variable-length strings (zarr v3 ``string``; fixed-width unicode has no v3 spec)."""
    return np.array([str(v) for v in values], dtype=object)


def _utc(t: dt.datetime) -> np.datetime64:
    if isinstance(t, dt.datetime) and t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return np.datetime64(t, "ns")


def chunk_book(book: xr.Dataset, accounts: int) -> xr.Dataset:
    """An in-memory book as a lazy book: sorted by account, ``accounts`` accounts per chunk.

    Parameters
    ----------
    book
        An in-memory book (:func:`marginsim.model.book_from_arrays`).
    accounts
        Accounts per chunk [count], >= 1.

    Returns
    -------
    xarray.Dataset
        Position variables as dask arrays chunked along ``position`` at account boundaries
        (positions keep their ``position`` numbers), ``account_name`` and ``position_start`` in
        memory.
    """
    if accounts < 1:
        raise InputError(f"accounts per chunk must be >= 1, not {accounts}", key_path="chunks")
    import dask.array as da

    acct = book["account_index"].values
    n_a = book.sizes["account"]
    order = np.argsort(acct, kind="stable")
    counts = np.bincount(acct, minlength=n_a).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    bounds = np.append(starts[::accounts], acct.size) if n_a else np.array([0, 0])
    sizes = tuple(int(x) for x in np.diff(bounds))
    data = {}
    for name in POSITION_VARS:
        if name in book:
            arr = book[name].values[order]
            data[name] = ("position", da.from_array(arr, chunks=(sizes,)), book[name].attrs)
    return xr.Dataset(
        {
            **data,
            "account_name": ("account", book["account_name"].values),
            "position_start": ("account", starts),
        },
        coords={"position": book["position"].values[order]},
    )


def write_book(path: str | Path, inputs: Inputs, *, chunk_positions: int = 1_000_000) -> Path:
    """Write the book of ``inputs`` in the on-disk layout (zarr; netCDF for a ``.nc`` path).

    Parameters
    ----------
    path
        A zarr store (a directory) or a ``.nc`` file; replaced if it exists.
    inputs
        Inputs with an in-memory book, or a lazy book (:func:`marginsim.scale.chunk`): a lazy book
        is written chunk by chunk and never held in memory whole.
    chunk_positions
        Positions per chunk on disk [count].

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import dask.array as da

    path = Path(path)
    book = inputs.book
    if is_dask(book):
        if inputs.universe is None or "position_start" not in book:
            raise InputError("a lazy book needs its account table and universe (marginsim.scale.chunk)")
        held = np.asarray(inputs.universe.contract_index, dtype=np.int64)
    else:
        held = np.unique(book["contract_index"].values)
        book = chunk_book(book, max(book.sizes["account"], 1))
    n_p = book.sizes["position"]
    code = book["contract_index"].data
    lookup = np.full(inputs.contracts.sizes["contract"], -1, dtype=np.int32)
    lookup[held] = np.arange(held.size, dtype=np.int32)
    code = da.map_blocks(lambda k: lookup[k], code, dtype=np.int32)
    data = {
        "contract": ("position", code),
        "quantity": ("position", book["quantity"].data),
        "account": ("position", book["account_index"].data.astype(np.int32)),
        **{k: ("position", v) for k, v in _orders(inputs, book["position"].values).items()},
    }
    positions = book["position"].values
    ds = xr.Dataset(
        {
            **data,
            "account_name": ("book_account", _strings(book["account_name"].values)),
            "position_start": ("book_account", np.asarray(book["position_start"].values, dtype=np.int64)),
            "contract_name": ("book_contract", _strings(inputs.contracts["contract"].values[held])),
        },
        attrs={
            "marginsim_book": BOOK_FORMAT,
            "description": "a marginsim book: positions sorted by account (see marginsim.io.book)",
        },
    )
    if not np.array_equal(positions, np.arange(n_p)):
        ds["position_number"] = ("position", positions)  # the book's own position numbers
    ds["quantity"].attrs.update(units="contracts", description="signed quantity, long positive")
    size = max(1, min(int(chunk_positions), max(n_p, 1)))
    for name, v in ds.data_vars.items():  # the account and contract tables stay in memory
        if v.dims == ("position",):
            ds[name] = v.chunk({"position": size})
    if _is_zarr(path):
        encoding = {k: {"chunks": (size,)} for k, v in ds.data_vars.items() if v.dims == ("position",)}
        ds.to_zarr(path, mode="w", encoding=encoding, consolidated=False)
    else:
        if path.exists():
            path.unlink()
        ds.to_netcdf(path, engine="scipy")  # netCDF-3 as before, whatever netCDF-4 engine is installed
    return path


def open_book(
    path: str | Path,
    contracts: xr.Dataset,
    *,
    accounts: int = 1000,
    normalise: Callable[[str], str] | None = None,
) -> tuple[xr.Dataset, Universe]:
    """Open a stored book lazily: ``accounts`` accounts per chunk.

    Parameters
    ----------
    path
        A zarr store or netCDF file in the layout of this module.
    contracts
        The contracts the book's ``contract_name`` refers to (``Inputs.contracts``).
    accounts
        Accounts per chunk [count].
    normalise
        Optional spelling normaliser of contract names (clearing-house ids).

    Returns
    -------
    (book, universe)
        The lazy book (see :mod:`marginsim.scale`) and the whole book's
        :class:`~marginsim.model.Universe`. Nothing of the positions is read, except the
        ``account`` column once when the file has no ``position_start``.

    Raises
    ------
    InputError
        For a path that is not a marginsim book, a contract the scenario does not define,
        positions not sorted by account, or a bad account table.
    """
    import dask.array as da

    path = Path(path)
    file = str(path)
    if accounts < 1:
        raise InputError(f"accounts per chunk must be >= 1, not {accounts}", file=file, key_path="chunks")
    if not path.exists():
        raise InputError("no such book", file=file)
    try:
        if _is_zarr(path):
            ds = xr.open_zarr(path, chunks=None, consolidated=False)
        else:
            ds = xr.open_dataset(path, chunks=None)
    except Exception as e:  # noqa: BLE001 - any reader failure is bad input
        raise InputError(f"cannot read the book: {e}", file=file) from None
    if ds.attrs.get("marginsim_book") != BOOK_FORMAT:
        raise InputError(f"not a marginsim book (attribute marginsim_book = {BOOK_FORMAT})", file=file)
    missing = [v for v in _REQUIRED if v not in ds]
    if missing:
        raise InputError(f"missing variables {missing}", file=file)
    names = np.asarray(ds["contract_name"].values, dtype=object)
    held_index = contract_indices(contracts, names, normalise=normalise, file=file)
    # positions name contracts by index into contract_name: resolve lazily through this table
    lookup = held_index.astype(np.int64)
    universe_contracts = np.unique(lookup)

    n_p = ds.sizes["position"]
    acct_names = np.asarray(ds["account_name"].values, dtype=object)
    n_a = acct_names.size
    if "position_start" in ds:
        starts = np.asarray(ds["position_start"].values, dtype=np.int64)
    else:
        col = np.asarray(ds["account"].values, dtype=np.int64)  # one pass over the account column
        down = np.flatnonzero(np.diff(col) < 0)
        if down.size:
            raise InputError(
                f"positions are not sorted by account (position {int(down[0]) + 1}): an account's "
                "positions must be contiguous and accounts in order",
                file=file,
                key_path="account",
            )
        starts = np.searchsorted(col, np.arange(n_a), side="left").astype(np.int64)
    if starts.size != n_a or (n_a and (starts[0] != 0 or np.any(np.diff(starts) < 0) or starts[-1] > n_p)):
        raise InputError(
            "position_start must give the first position of each account, from 0, never decreasing",
            file=file,
            key_path="position_start",
        )
    if n_a == 0 and n_p:
        raise InputError("positions without accounts", file=file, key_path="account_name")
    bounds = np.append(starts[::accounts], n_p) if n_a else np.array([0, n_p])
    sizes = tuple(int(x) for x in np.diff(bounds))
    if not sizes:
        sizes = (0,)
    lazy = ds[[v for v in ("contract", "quantity", "account", "open_price", "opened") if v in ds]]
    lazy = lazy.chunk({"position": sizes})

    def resolve(codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= lookup.size):
            raise InputError("a position's contract is outside contract_name", file=file, key_path="contract")
        return lookup[codes]

    data = {
        "contract_index": ("position", da.map_blocks(resolve, lazy["contract"].data, dtype=np.int64)),
        "quantity": ("position", lazy["quantity"].data.astype(float)),
        "account_index": ("position", lazy["account"].data.astype(np.int64)),
    }
    for name in ("open_price", "opened"):
        if name in lazy:
            data[name] = ("position", lazy[name].data)
    coords: xr.Coordinates | dict[str, np.ndarray]
    if "position_number" in ds:
        coords = {"position": np.asarray(ds["position_number"].values, dtype=np.int64)}
    else:
        try:
            from xarray.indexes import RangeIndex

            coords = xr.Coordinates.from_xindex(RangeIndex.arange(0, n_p, 1, dim="position"))
        except ImportError:  # pragma: no cover - older xarray
            coords = {"position": np.arange(n_p)}
    book = xr.Dataset(
        {**data, "account_name": ("account", acct_names), "position_start": ("account", starts)},
        coords=coords,
        attrs={"source": file},
    )
    book["quantity"].attrs.update(units="contracts", description="signed quantity, long positive")
    universe = Universe(contract_index=universe_contracts, accounts=frozenset(str(a) for a in acct_names))
    return book, universe


def read_book(path: str | Path, inputs: Inputs, *, accounts: int = 1000) -> Inputs:
    """``inputs`` (contracts, market, parameters) with the stored book at ``path``, lazily.

    Parameters
    ----------
    path
        A zarr store or netCDF file in the layout of this module.
    inputs
        The scenario's inputs; their book is replaced.
    accounts
        Accounts per chunk [count].

    Returns
    -------
    Inputs
        Every method run on them returns a lazy result (:func:`marginsim.scale.lazy_margin`).
    """
    book, universe = open_book(
        path, inputs.contracts, accounts=accounts, normalise=inputs.normalise_contract_id
    )
    return replace(inputs, book=book, universe=universe)
