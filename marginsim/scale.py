"""Scale: many accounts on dask, more than one machine on dask.distributed.

Every account is margined independently by every method (all reductions are within an account),
so a large book is margined **chunk by chunk of accounts**: each chunk is one dask task that runs
the ordinary numpy method on that chunk's positions, and the per-chunk results are assembled into
one lazy :class:`xarray.Dataset` concatenated along ``account`` (and ``position``). Where a method
is independent along a grid dim (SPAN and portfolio margin: every grid dim; CFD: every dim but
``step``, with its path statistics recomputed over all paths), the market can be chunked along
that dim too and the tasks are the product of account chunks and grid chunks. ``scenario`` is
never split: it lives inside each task.

How chunks stay consistent
    A method's non-account coords (SPAN's ``contract`` and ``group``, portfolio margin's class
    groups) come from the contracts the book holds. Each task gets a
    :class:`~marginsim.model.Universe` (the contracts held by the whole book and its account names)
    and the methods take those coords from it, so every chunk has the same coords and dtypes.
    The result's structure (variables, dims, dtypes, non-account coords) is the method's result on
    an empty book of the same contracts, computed once in memory at graph-building time (with
    placeholders for any dask-backed market variable: nothing of the book or market is computed).

Data-sized dims and whole-book values
    The account layer's plans have one row per movement or closed position, so their dims
    (``movement``, ``liquidation``) vary with the data: each chunk pads them to the most rows its
    accounts or positions can give, with a validity flag, and :func:`compact` keeps the valid rows
    (see :data:`Ragged`). Its liquidation step can be the whole book's (the first step at which any
    account is in forced liquidation): a first lazy pass gives the states, a dask reduction the
    step, and every task of the second pass takes it (``deps`` of :func:`lazy_margin`); the attrs
    that name it are set by :func:`compact` from the computed result (``data_attrs``).

How laziness is kept
    Building the graph reads only what is in memory anyway: the account table (names and the
    first position of each account), the held contracts, the contracts and any numpy market.
    Book chunks, dask-backed market slices, method runs and the per-variable pieces of the result
    are all dask tasks; ``tests/test_scale.py`` builds the graph under a scheduler that raises on
    any compute.

A *lazy book* (the layout :func:`chunk_book` and :func:`marginsim.io.book.open_book` return) is a
book Dataset whose position variables (``contract_index``, ``quantity``, ``account_index``, and
optionally ``open_price``, ``opened``) are dask arrays sorted by account, chunked along
``position`` at account boundaries, with the account table in memory: ``account_name`` and
``position_start`` (first position of each account) over ``account``.

The library never creates a cluster. A caller that wants more than one machine connects a
``distributed.Client`` (the CLI's ``--scheduler ADDRESS``, the notebooks' ``scheduler``
parameter); dask then runs the tasks there.
"""

from __future__ import annotations

import itertools
import math
import sys
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import xarray as xr

from .errors import InputError
from .io.book import POSITION_VARS, chunk_book
from .model import Inputs, Universe, book_from_arrays, is_dask
from .registry import REGISTRY, ChunkLayout, MethodSpec, Ragged, applicable_methods
from .scenario import Position

__all__ = [
    "is_lazy",
    "chunk",
    "chunk_book",
    "lazy_margin",
    "lazy_method",
    "is_dask",
    "compute",
    "compact",
    "current_client",
    "connect",
    "auto_accounts_per_chunk",
]

_MARGINED = "position_margined"
_VALID = "\x00valid:"  # + ragged dim: which rows of a padded dim are the method's
_ATTR = "\x00attr:"  # + attr name: an attr whose value depends on the data (set by compact)
_TEMPLATE = "\x00template"  # the template's account (no positions); never a real account name


# ------------------------------------------------------------------------------------------------
# lazy inputs
# ------------------------------------------------------------------------------------------------


def is_lazy(inputs: Inputs) -> bool:
    """Whether the book or the market of ``inputs`` is backed by dask arrays."""
    return inputs.is_lazy


def chunk(inputs: Inputs, accounts: int, *, grid: Mapping[str, int] | None = None) -> Inputs:
    """``inputs`` with a lazy book of ``accounts`` accounts per chunk (and a chunked market).

    Parameters
    ----------
    inputs
        In-memory inputs (:func:`marginsim.api.load`).
    accounts
        Accounts per chunk [count].
    grid
        Chunk sizes along market grid dims, e.g. ``{"shift": 2}`` or ``{"path": 500}`` [points].

    Returns
    -------
    Inputs
        Every method run on them returns a lazy result (see :func:`lazy_margin`).
    """
    if is_lazy(inputs):
        raise InputError("the inputs are already chunked", key_path="chunks")
    book = chunk_book(inputs.book, accounts)
    market = inputs.market
    if grid:
        unknown = [d for d in grid if d not in market.dims]
        if unknown:
            raise InputError(
                f"cannot chunk along {unknown}: the market's grid dims are {list(inputs.grid_dims)}",
                key_path="grid",
            )
        market = market.copy()
        for name, v in inputs.market.data_vars.items():
            along = {d: int(n) for d, n in grid.items() if d in v.dims}
            if along:
                market[name] = v.chunk(along)
    universe = Universe(
        contract_index=np.unique(inputs.book["contract_index"].values),
        accounts=frozenset(inputs.accounts),
    )
    return replace(inputs, book=book, market=market, universe=universe)


def current_client() -> Any:
    """The ``distributed.Client`` the caller has connected, else ``None`` (never creates one)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def connect(address: str | None, *, key_path: str | None = None) -> Any:
    """A ``distributed.Client`` connected to the running scheduler at ``address``; ``None``/empty: none.

    The library never creates a cluster: the caller gives the address of a running scheduler.
    The connection timeout is dask's config ``distributed.comm.timeouts.connect`` (30 s).

    Parameters
    ----------
    address
        Scheduler address (e.g. ``tcp://host:8786``); ``None`` or empty: no client.
    key_path
        Where the address came from (e.g. ``--scheduler``), named by the errors.

    Returns
    -------
    distributed.Client or None

    Raises
    ------
    InputError
        dask.distributed is not installed, or the scheduler cannot be reached or the address is bad.
    """
    if not address:
        return None
    try:
        from distributed import Client
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InputError(
            f"scheduler {address!r} given but dask.distributed is not installed "
            "(pip install 'dask[distributed]')",
            key_path=key_path,
        ) from e
    try:
        return Client(address)
    except (OSError, TimeoutError, ValueError) as e:
        raise InputError(
            f"cannot connect to the dask scheduler {address!r}: {e}", key_path=key_path
        ) from None


def auto_accounts_per_chunk(n_accounts: int, client: Any = None) -> int:
    """Accounts per chunk that give each worker thread of ``client`` about two chunks.

    Parameters
    ----------
    n_accounts
        Accounts in the book [count].
    client
        A connected ``distributed.Client``; ``None``: this machine's cores.
    """
    import os

    slots = os.cpu_count() or 1
    if client is not None:
        try:
            slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or 1
        except Exception:  # noqa: BLE001 - an unusual client: keep the local guess
            pass
    return max(1, math.ceil(n_accounts / (2 * slots)))


# ------------------------------------------------------------------------------------------------
# the graph
# ------------------------------------------------------------------------------------------------


def _account_chunks(book: xr.Dataset, file: str | None) -> list[tuple[int, int, int, int]]:
    """``(first account, end account, first position, end position)`` of each position chunk."""
    if "position_start" not in book or "account_name" not in book:
        raise InputError(
            "a dask-backed book needs its account table (account_name, position_start over account, "
            "positions sorted by account): build it with marginsim.scale.chunk_book or read it with "
            "marginsim.io.book.open_book",
            file=file,
            key_path="book",
        )
    starts = np.asarray(book["position_start"].values, dtype=np.int64)
    n_a = starts.size
    n_p = book.sizes["position"]
    chunks = book["account_index"].chunks
    sizes = chunks[0] if chunks is not None else (n_p,)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if n_a and (starts[0] != 0 or np.any(np.diff(starts) < 0) or starts[-1] > n_p):
        raise InputError(
            "position_start must start at 0 and never decrease (positions sorted by account)",
            file=file,
            key_path="book.position_start",
        )
    out = []
    for p0, p1 in itertools.pairwise(bounds):
        a0 = int(np.searchsorted(starts, p0, side="left"))
        a1 = int(np.searchsorted(starts, p1, side="left")) if p1 < n_p else n_a
        if (a0 < n_a and starts[a0] != p0 and p0 < n_p) or (p1 < n_p and (a1 >= n_a or starts[a1] != p1)):
            name = str(book["account_name"].values[max(a0 - 1, 0)])
            raise InputError(
                f"account {name!r} straddles two chunks of positions (at position {int(p0)}): "
                "chunk the book at account boundaries",
                file=file,
                key_path="book",
            )
        out.append((a0, a1, int(p0), int(p1)))
    return out


def _grid_chunks(inputs: Inputs, method: str) -> dict[str, tuple[int, ...]]:
    """Chunk sizes of the market along the grid dims the method can be split along."""
    fixed = REGISTRY[method].unsplit_dims
    out: dict[str, tuple[int, ...]] = {}
    for d in inputs.grid_dims:
        if d not in inputs.market.dims or d in fixed:
            continue
        seen = {
            v.chunks[v.dims.index(d)] for v in inputs.market.variables.values() if v.chunks and d in v.dims
        }
        if len(seen) > 1:
            raise InputError(
                f"the market's variables are chunked differently along {d!r}", key_path=("market", d)
            )
        if seen:
            sizes = seen.pop()
            if len(sizes) > 1:
                out[d] = tuple(int(s) for s in sizes)
    return out


def _placeholder(v: xr.Variable) -> xr.Variable:
    """Numpy stand-in of a dask-backed variable (structure only: the template never sees data)."""
    kind = v.dtype.kind
    if kind == "b":
        arr = np.zeros(v.shape, dtype=bool)
    elif kind in "iuf":
        arr = np.ones(v.shape, dtype=v.dtype)
    elif kind == "M":
        arr = np.full(v.shape, np.datetime64("1970-01-01", "ns"))
    else:
        arr = np.full(v.shape, "", dtype=object)
    return xr.Variable(v.dims, arr, v.attrs)


def _template_inputs(inputs: Inputs, grid: Mapping[str, tuple[int, ...]]) -> Inputs:
    market = inputs.market.isel({d: slice(0, 1) for d in grid})
    market = market.copy(
        data={k: _placeholder(v).data if v.chunks else v.data for k, v in market.data_vars.items()}
    )
    for k, v in market.coords.items():
        if v.variable.chunks:
            market = market.assign_coords({k: _placeholder(v.variable)})
    # one account without positions (not zero accounts: no method need handle empty arrays here)
    empty = _empty_book(inputs.contracts).assign(
        account_name=("account", np.array([_TEMPLATE], dtype=object))
    )
    assert inputs.universe is not None  # set by lazy_margin before the template runs
    return replace(inputs, book=empty, market=market, universe=replace(inputs.universe, extra_accounts=True))


def _empty_book(contracts: xr.Dataset) -> xr.Dataset:
    return book_from_arrays(
        contracts, contract=np.zeros(0, np.int64), quantity=np.zeros(0), account=np.zeros(0, object)
    )


def _local_book(
    part: xr.Dataset,
    a0: int,
    starts: np.ndarray,
    names: np.ndarray,
    contracts: xr.Dataset,
    held_mask: np.ndarray,
    file: str | None,
) -> xr.Dataset:
    """The in-memory book of one chunk (accounts ``a0 ..``), checked against the account table."""
    n_a = names.size
    acct = np.asarray(part["account_index"].values, dtype=np.int64) - a0
    counts = np.diff(starts)
    if acct.size and (acct.min() < 0 or acct.max() >= n_a or np.any(np.diff(acct) < 0)):
        raise InputError(
            f"positions {int(part['position'].values[0])}.. are not sorted by account as the account table "
            "(position_start) says: an account's positions must be contiguous",
            file=file,
            key_path="book.account",
        )
    if not np.array_equal(np.bincount(acct, minlength=n_a), counts):
        raise InputError(
            f"the account table (position_start) does not match the positions' accounts near position "
            f"{int(part['position'].values[0]) if acct.size else 0}",
            file=file,
            key_path="book.position_start",
        )
    k = np.asarray(part["contract_index"].values, dtype=np.int64)
    if k.size and ((k < 0).any() or (k >= held_mask.size).any() or not held_mask[k].all()):
        bad = int(
            np.flatnonzero((k < 0) | (k >= held_mask.size) | ~held_mask[np.clip(k, 0, held_mask.size - 1)])[0]
        )
        raise InputError(
            f"position {int(part['position'].values[bad])} holds a contract that is not in the book's "
            "held contracts",
            file=file,
            key_path="book.contract",
        )
    data: dict[str, Any] = {
        "contract": ("position", contracts["contract"].values[k]),
        "contract_index": ("position", k),
        "quantity": ("position", np.asarray(part["quantity"].values, dtype=float)),
        "account_index": ("position", acct),
        "account_name": ("account", np.asarray(names, dtype=object)),
    }
    for name in ("open_price", "opened"):
        if name in part:
            data[name] = ("position", part[name].values)
    book = xr.Dataset(data, coords={"position": part["position"].values})
    book["quantity"].attrs.update(units="contracts", description="signed quantity, long positive")
    return book


def _fill(dtype: np.dtype) -> Any:
    kind = dtype.kind
    return {
        "f": np.nan,
        "c": np.nan,
        "i": -1,
        "u": 0,
        "b": False,
        "M": np.datetime64("NaT"),
        "m": np.timedelta64("NaT"),
    }.get(kind, "")


def _run_chunk(
    func: Callable[[Inputs], xr.Dataset],
    base: Inputs,
    part: Mapping[str, np.ndarray] | None,
    market: xr.Dataset,
    a0: int,
    starts: np.ndarray,
    names: np.ndarray,
    extra: bool,
    source: str | None = None,
    deps: Mapping[str, Any] | None = None,
    ragged: Mapping[str, tuple[int, str | None]] | None = None,
    data_attrs: Sequence[str] = (),
) -> xr.Dataset:
    """One task: the method on one chunk of accounts and one chunk of the grid.

    ``deps``: keyword arguments of the method computed by other tasks (whole-book values);
    ``ragged``: ``{dim: (rows, sort by)}`` to pad data-sized dims to; ``data_attrs``: attrs passed
    on as variables (see :data:`Ragged`, :func:`compact`).
    """
    assert base.universe is not None  # lazy_margin gives every task the whole book's universe
    if part is None:  # the accounts a method adds that hold no position (CFD's funded accounts)
        book = _empty_book(base.contracts)
        positions = np.zeros(0, dtype=np.int64)
    else:  # the chunk's position arrays (read or generated by the tasks before this one)
        rows = xr.Dataset(
            {k: ("position", np.asarray(v)) for k, v in part.items() if k != "position"},
            coords={"position": part["position"]},
        )
        held = np.zeros(base.contracts.sizes["contract"], dtype=bool)
        held[base.universe.contract_index] = True
        book = _local_book(rows, a0, starts, names, base.contracts, held, source or base.scenario.file)
        positions = book["position"].values
    inputs = replace(base, book=book, market=market, universe=replace(base.universe, extra_accounts=extra))
    ds = func(inputs, **dict(deps or {}))
    for dim, (n_rows, _) in (ragged or {}).items():
        ds = _pad(ds, dim, n_rows)
    for attr in data_attrs:
        ds[_ATTR + attr] = ((), np.asarray(str(ds.attrs[attr]), dtype=object))
    if "position" in ds.dims:
        if "position_account" in ds and ds["position_account"].dtype.kind in "iu":
            ds["position_account"] = ds["position_account"] + a0  # SPAN: index into account
        ds[_MARGINED] = ("position", np.ones(ds.sizes["position"], dtype=bool))
        if "position" not in ds.coords:
            ds = ds.assign_coords(position=positions[: ds.sizes["position"]])
        fills = {k: _fill(v.dtype) for k, v in ds.data_vars.items() if "position" in v.dims}
        ds = ds.reindex(position=positions, fill_value=fills)
    return ds


def _pad(ds: xr.Dataset, dim: str, rows: int) -> xr.Dataset:
    """``ds`` with ``dim`` padded to ``rows`` rows and its validity flag."""
    n = ds.sizes.get(dim, 0)
    if n > rows:
        raise RuntimeError(f"a chunk gave {n} rows of {dim!r}, more than the {rows} the method declared")
    valid = np.zeros(rows, dtype=bool)
    valid[:n] = True
    out = {}
    for name, v in ds.data_vars.items():
        if dim in v.dims:
            width = [(0, rows - n) if d == dim else (0, 0) for d in v.dims]
            arr = np.asarray(v.values)
            out[name] = (v.dims, np.pad(arr, width, constant_values=_fill(arr.dtype)), v.attrs)
    ds = ds.drop_vars(list(out)).assign(out) if out else ds
    return ds.assign({_VALID + dim: (dim, valid)})


def _get(ds: xr.Dataset, name: str, dims: tuple[str, ...], dtype: np.dtype) -> np.ndarray:
    arr = ds[name].transpose(*dims).values
    return arr.astype(dtype, copy=False) if arr.dtype != dtype else arr


def lazy_margin(
    inputs: Inputs,
    method: str,
    func: Callable[..., xr.Dataset],
    *,
    deps: Mapping[str, Any] | None = None,
    ragged: Ragged | None = None,
    data_attrs: Sequence[str] = (),
) -> xr.Dataset:
    """The result of ``method`` on lazy ``inputs``, as a lazy Dataset (nothing is computed).

    Parameters
    ----------
    inputs
        Inputs whose book is a lazy book (:func:`chunk`, :func:`marginsim.io.book.open_book`) or in
        memory, and whose market may be dask-backed along grid dims.
    method
        The method's registry name (:data:`marginsim.registry.REGISTRY`); its spec's chunking facts
        (``chunked``, ``unsplit_dims``, ``finalize_chunked``) drive the split.
    func
        ``func(inputs) -> Dataset``: the method on in-memory inputs (e.g.
        ``functools.partial(span_margin, params=..., engine=...)``).
    deps
        Keyword arguments of ``func`` that are dask collections (whole-book values computed by
        other tasks, e.g. the account layer's decision step); every task gets their values, the
        structure run (on an empty book) goes without them.
    ragged
        The result's dims whose length depends on the data (see :data:`Ragged`).
    data_attrs
        Attrs of the result whose value depends on the data: :func:`compact` sets them from the
        computed result (the lazy result does not have them).

    Returns
    -------
    xarray.Dataset
        The method's result with every variable a dask array: along ``account`` one block per
        chunk of accounts; along ``position`` one block per chunk of positions, where every
        position of the book has a row (``position_margined`` False for the rows the method does
        not margin; :func:`compact` drops them after computing); along a chunked grid dim one
        block per chunk. Compute with :func:`compute` (one pass for many results).

    Raises
    ------
    InputError
        For a method that cannot run chunk by chunk, a book without its account table, or an
        account that straddles two chunks.
    """
    import dask
    import dask.array as da

    sc = inputs.scenario
    chunked = [n for n, s in REGISTRY.items() if s.chunked]
    if method not in chunked:
        raise InputError(
            f"method {method!r} does not run on a chunked book (chunked methods: {', '.join(chunked)})",
            file=sc.file,
            key_path="methods",
        )
    if is_dask(inputs.contracts) or is_dask(inputs.grid):
        raise InputError(
            "contracts and grid parameters must be in memory", file=sc.file, key_path="contracts"
        )
    book = inputs.book
    if not is_dask(book):
        book = chunk_book(book, max(book.sizes["account"], 1))
    source = book.attrs.get("source", sc.file)  # a stored book's path, for errors found in a chunk
    chunks = _account_chunks(book, source)
    universe = inputs.universe
    if universe is None:
        if not is_dask(inputs.book):
            held = np.unique(inputs.book["contract_index"].values)
        else:
            raise InputError(
                "a dask-backed book needs inputs.universe (the contracts it holds): build the inputs "
                "with marginsim.scale.chunk or marginsim.io.book.read_book",
                file=sc.file,
                key_path="book",
            )
        universe = Universe(held, frozenset(str(a) for a in book["account_name"].values))
    grid = _grid_chunks(inputs, method)
    # a market chunked along a dim the method cannot split: one chunk along it inside each task
    market = inputs.market

    # -- structure: the method on an empty book (in memory, placeholders for dask market data) --------
    tmpl_inputs = _template_inputs(replace(inputs, universe=universe), grid)
    template = func(tmpl_inputs)
    extra_names = template["account"].values[1:] if "account" in template.dims else np.zeros(0, object)
    n_extra = extra_names.size
    if "position" in template.dims:
        template[_MARGINED] = ("position", np.ones(template.sizes["position"], dtype=bool))
    per_unit: dict[str, tuple[str, int, str | None]] = {}
    for dim, (unit, per, sort_by) in (ragged or {}).items():
        if unit not in ("account", "position"):
            raise ValueError(f"ragged dim {dim!r}: unit must be 'account' or 'position', not {unit!r}")
        per_unit[dim] = (unit, int(per(template) if callable(per) else per), sort_by)
        template = _pad(template, dim, template.sizes.get(dim, 0))
        if sort_by is not None:
            template[_VALID + dim].attrs["sort_by"] = sort_by
    for attr in data_attrs:
        template[_ATTR + attr] = ((), np.asarray(str(template.attrs[attr]), dtype=object))

    # -- tasks ------------------------------------------------------------------------------------------
    token = uuid.uuid4().hex[:12]
    base = replace(
        inputs,
        book=_empty_book(inputs.contracts),
        market=xr.Dataset(),
        universe=replace(universe, extra_accounts=False),
    )
    base_d = dask.delayed(base, name=f"marginsim-inputs-{token}", traverse=False)
    func_d = dask.delayed(func, name=f"marginsim-func-{token}", traverse=False)
    grid_dims = list(grid)
    grid_index = list(itertools.product(*(range(len(grid[d])) for d in grid_dims)))
    offsets = {d: np.concatenate([[0], np.cumsum(grid[d])]) for d in grid_dims}
    markets = {}
    for gi in grid_index:
        sl = {d: slice(int(offsets[d][j]), int(offsets[d][j + 1])) for d, j in zip(grid_dims, gi)}
        m = market.isel(sl) if sl else market
        key = f"marginsim-market-{token}-{'-'.join(map(str, gi))}"
        markets[gi] = dask.delayed(m) if is_dask(m) else dask.delayed(m, name=key, traverse=False)
    starts_all = np.asarray(book["position_start"].values, dtype=np.int64)
    names_all = np.asarray(book["account_name"].values, dtype=object)
    n_p = book.sizes["position"]
    ends_all = np.append(starts_all[1:], n_p)
    pos_vars = [v for v in POSITION_VARS if v in book]
    # one delayed block per chunk and variable: no per-chunk copy of the book's whole graph
    along = book["account_index"].chunks or ((n_p,),)
    blocks = {
        v: (book[v].data if book[v].chunks else da.from_array(book[v].values, chunks=along))
        .rechunk(along)
        .to_delayed(optimize_graph=False)
        .ravel()
        for v in pos_vars
    }
    run = dask.delayed(_run_chunk, pure=False)
    deps_d = dict(deps or {})
    rows: list[dict[tuple, Any]] = []
    row_accounts: list[int] = []
    row_positions: list[int] = []

    def padding(n_accounts: int, n_positions: int) -> dict[str, tuple[int, str | None]]:
        size = {"account": n_accounts, "position": n_positions}
        return {d: (size[unit] * k, sort_by) for d, (unit, k, sort_by) in per_unit.items()}

    for i, (a0, a1, p0, p1) in enumerate(chunks):
        if a1 == a0 and p1 == p0:
            continue
        part_d = {v: blocks[v][i] for v in pos_vars}
        part_d["position"] = book["position"].isel(position=slice(p0, p1)).values
        starts = np.append(starts_all[a0:a1], ends_all[a1 - 1] if a1 > a0 else p0) - p0
        pad = padding(a1 - a0, p1 - p0)
        rows.append(
            {
                gi: run(
                    func_d,
                    base_d,
                    part_d,
                    markets[gi],
                    a0,
                    starts,
                    names_all[a0:a1],
                    False,
                    source,
                    deps_d,
                    pad,
                    data_attrs,
                )
                for gi in grid_index
            }
        )
        row_accounts.append(a1 - a0)
        row_positions.append(p1 - p0)
    n_book_rows = len(rows)
    if not rows and not n_extra:
        raise InputError("the book has no accounts", file=source, key_path="book")
    if n_extra:
        pad = padding(n_extra, 0)
        rows.append(
            {
                gi: run(func_d, base_d, None, markets[gi], 0, None, None, True, None, deps_d, pad, data_attrs)
                for gi in grid_index
            }
        )
        row_accounts.append(n_extra)
        row_positions.append(0)

    # -- assemble: one dask array per variable ---------------------------------------------------------
    variables: dict[Hashable, xr.Variable] = {}
    for name, var in template.variables.items():
        if name in template.indexes and name in ("account", "position", *grid_dims):
            continue
        dims = var.dims
        if "account" in dims and "position" in dims:
            raise InputError(f"variable {name!r} has both account and position dims", key_path=method)
        row_dims = [d for d in ("account", "position", *per_unit) if d in dims]
        if len(row_dims) > 1:
            raise InputError(f"variable {name!r} has more than one of the dims {row_dims}", key_path=method)
        row_dim = row_dims[0] if row_dims else None
        kind_str = var.dtype.kind == "U"
        dtype = np.dtype(object) if kind_str else var.dtype
        if row_dim is None and not (set(dims) & set(grid_dims)):
            if name in template.indexes or name in template.coords:
                variables[name] = var  # a coordinate that no chunk changes (group, contract, scenario...)
                continue
        if row_dim in per_unit:
            unit, k, _ = per_unit[row_dim]
            n_rows = [k * n for n in (row_accounts if unit == "account" else row_positions)]
        else:
            n_rows = row_accounts if row_dim == "account" else row_positions
        row_ids = [r for r in range(len(rows)) if row_dim != "position" or r < n_book_rows]
        if row_dim in per_unit:
            row_ids = [r for r in row_ids if n_rows[r]]
        if row_dim is None:
            row_ids = [0]
        if not row_ids:  # no chunk can give a row
            v = xr.Variable(dims, da.from_array(var.values.astype(dtype)[:0]), var.attrs)
            if kind_str:
                v.encoding["marginsim_str"] = True
            variables[name] = v
            continue

        def block(key: tuple, name=name, var=var, dims=dims, row_dim=row_dim, dtype=dtype, n_rows=n_rows):
            r = 0
            gi = [0] * len(grid_dims)
            shape = []
            for d, k in zip(dims, key):
                if d == row_dim:
                    r = k
                    shape.append(n_rows[k])
                elif d in grid:
                    gi[grid_dims.index(d)] = k
                    shape.append(grid[d][k])
                else:
                    shape.append(var.sizes[d])
            task = rows[r][tuple(gi)]
            piece = dask.delayed(_get, pure=True)(task, name, dims, dtype)
            return da.from_delayed(piece, shape=tuple(shape), dtype=dtype)

        axes = []
        for d in dims:
            if d == row_dim:
                axes.append(row_ids)
            elif d in grid:
                axes.append(list(range(len(grid[d]))))
            else:
                axes.append([0])

        def build(level: int, key: tuple, axes=axes, block=block, dims=dims):
            if level == len(dims):
                return block(key)
            return [build(level + 1, key + (b,), axes, block, dims) for b in axes[level]]

        arr = build(0, ()) if dims else block(())
        data = da.block(arr) if dims else arr
        v = xr.Variable(dims, data, var.attrs)
        if kind_str:
            v.encoding["marginsim_str"] = True
        variables[name] = v

    coords: dict[Hashable, Any] = {}
    for name in template.coords:
        if name == "account":
            coords["account"] = np.concatenate([names_all, np.asarray(extra_names, dtype=object)])
        elif name == "position":
            coords["position"] = book["position"].values
        elif name in grid_dims:
            coords[name] = market[name].values
        else:
            coords[name] = variables.pop(name)
    data_vars = {k: v for k, v in variables.items() if k not in coords}
    attrs = {k: v for k, v in template.attrs.items() if k not in data_attrs}
    out = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    finalize = REGISTRY[method].finalize_chunked
    if finalize is not None and grid:
        out = finalize(out, frozenset(grid))
    return out


# ------------------------------------------------------------------------------------------------
# computing
# ------------------------------------------------------------------------------------------------


def lazy_method(inputs: Inputs, spec: MethodSpec, run: Callable[..., xr.Dataset]) -> xr.Dataset:
    """The method ``spec`` on lazy ``inputs``, chunk by chunk, as its spec's chunking facts say.

    Parameters
    ----------
    inputs
        Lazy inputs (:func:`chunk`, :func:`marginsim.io.book.read_book`).
    spec
        The method's registry entry: ``chunk_layout`` gives the data-sized dims, the attrs set
        from the data and an optional whole-book first pass whose lazy result gives values every
        chunk of the main pass takes.
    run
        ``run(inputs, **kwargs) -> Dataset`` on in-memory inputs (the spec's ``run`` with the
        engine and options bound).

    Returns
    -------
    xarray.Dataset
        A lazy result (see :func:`lazy_margin`); nothing is computed.
    """
    layout = spec.chunk_layout(inputs) if spec.chunk_layout is not None else ChunkLayout()
    deps: dict[str, Any] = {}
    if layout.first_pass is not None:
        first = lazy_margin(inputs, spec.name, partial(run, **layout.first_pass))
        if layout.deps is None:
            raise ValueError(f"method {spec.name!r}: a chunk layout with a first pass needs `deps`")
        deps = dict(layout.deps(first))
    return lazy_margin(
        inputs, spec.name, run, deps=deps, ragged=layout.ragged, data_attrs=layout.data_attrs
    )


def compact(ds: xr.Dataset) -> xr.Dataset:
    """A computed chunked result in the in-memory form: only the positions the method margins, in
    book order; only the valid rows of padded dims (:data:`Ragged`); the attrs that depend on the
    data; strings back to numpy strings."""
    if _MARGINED in ds:
        keep = np.asarray(ds[_MARGINED].values, dtype=bool)
        ds = ds.isel(position=np.flatnonzero(keep)).drop_vars(_MARGINED)
        ds = ds.isel(position=np.argsort(ds["position"].values, kind="stable"))
    for name in [n for n in ds.variables if str(n).startswith(_VALID)]:
        dim = str(name)[len(_VALID) :]
        keep = np.flatnonzero(np.asarray(ds[name].values, dtype=bool))
        sort_by = ds[name].attrs.get("sort_by")
        ds = ds.isel({dim: keep}).drop_vars(name)
        if sort_by is not None:
            ds = ds.isel({dim: np.argsort(ds[sort_by].values, kind="stable")})
    for name in [n for n in ds.variables if str(n).startswith(_ATTR)]:
        ds.attrs[str(name)[len(_ATTR) :]] = str(ds[name].values[()])
        ds = ds.drop_vars([name])
    for name, v in ds.variables.items():
        if v.encoding.get("marginsim_str") and v.dtype == object:
            ds[name] = v.copy(data=v.values.astype(str))
    return ds


def compute(*datasets: xr.Dataset, scheduler: Any = None) -> tuple[xr.Dataset, ...]:
    """Compute lazy results in one pass (shared chunks run once) and :func:`compact` them.

    Parameters
    ----------
    datasets
        Results of :func:`lazy_margin` (or any Dataset).
    scheduler
        Passed to :func:`dask.compute` (``"threads"``, ``"synchronous"``, a ``distributed.Client``);
        ``None``: dask's default, which is the caller's connected ``distributed.Client`` if any.
    """
    import dask

    kwargs = {} if scheduler is None else {"scheduler": scheduler}
    done = dask.compute(*datasets, **kwargs)
    return tuple(compact(ds) for ds in done)


def stored_book_methods(inputs: Inputs, held_names: Sequence[str]) -> list[str]:
    """The methods a stored book needs (the scenario file's ``methods``, else by the contracts held).

    Parameters
    ----------
    inputs
        The scenario's inputs.
    held_names
        Names of the contracts the stored book holds.
    """
    sc = inputs.scenario
    if sc.methods is not None:
        return list(sc.methods)
    stand_in = sc.model_copy(
        update={
            "positions": [Position(contract=str(n), quantity=1.0) for n in held_names],
            "positions_file": None,  # the stored book replaces the file's
        }
    )
    return applicable_methods(stand_in)
