"""Size limits: a request whose arrays would not fit in memory is refused before anything is allocated.

Every estimate lives here. A run needs memory for

- the **market** the data model builds (:func:`marginsim.api.build_inputs`): prices over the
  underlyings and the market grid dims, and the simulated paths of ``grid.monte_carlo`` (the random
  shocks, their running sums and the prices: about six arrays of underlyings x (steps + 1) x paths
  floats at once; :func:`market_footprint`);
- each **method**: its largest arrays are (accounts x groups, positions, or contracts x scenarios)
  x grid points floats, times the number of such arrays alive at once. Each method's spec declares
  its estimate (``MethodSpec.memory``: :func:`span_memory`, :func:`portfolio_margin_memory`,
  :func:`cfd_memory`, :func:`account_memory`; a method registered from outside without one gets
  :func:`generic_memory`), a :class:`Footprint` of the sizes in :class:`Sizes`.

A chunked run (``--chunks N``, ``chunks=N``, a stored book) needs a chunk's working memory for each
chunk in flight (one per thread of dask's local scheduler; one per worker on a cluster, whose memory
is the workers') plus the whole book's result: a large book may pass chunked where it is refused in
one piece, and the message says so ("or use --chunks N").

The limit is a setting (:func:`memory_limit`): the ``memory_limit`` keyword of
:func:`marginsim.margin` (the CLI's ``--memory-limit``), else :func:`set_options`, else the
environment variable ``MARGINSIM_MEMORY_LIMIT``, else half of this machine's physical memory (the
smaller of ``os.sysconf`` and a cgroup's ``memory.max``; 4 GB where neither is known). Values are
bytes (``8000000000``), sizes (``8GB``, ``8 GiB``, ``512M``), a share of physical memory (``75%``),
or ``off``.

This module imports nothing of marginsim but :mod:`marginsim.errors`: the data model, the methods
and the API all use it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import InputError
from .kernels.pricing import BSM

if TYPE_CHECKING:  # the types of arguments only: no import of the data model at run time
    from .model import Inputs
    from .registry import MethodSpec
    from .scenario import ScenarioFile

__all__ = [
    "ENV_VAR",
    "DEFAULT_SHARE",
    "FALLBACK_BYTES",
    "Limit",
    "Sizes",
    "Footprint",
    "parse_limit",
    "memory_limit",
    "set_options",
    "physical_memory",
    "format_bytes",
    "market_footprint",
    "check_market",
    "sizes_of",
    "check_methods",
    "estimate_methods",
    "span_memory",
    "portfolio_margin_memory",
    "cfd_memory",
    "account_memory",
    "generic_memory",
]

#: The environment variable of the memory limit.
ENV_VAR = "MARGINSIM_MEMORY_LIMIT"
#: Default limit: this share of the machine's physical memory [fraction].
DEFAULT_SHARE = 0.5
#: Default limit where the physical memory is unknown [bytes].
FALLBACK_BYTES = 4_000_000_000
#: A suggested ``--chunks`` leaves this share of the limit for chunks larger than the average.
SUGGEST_SHARE = 0.8
#: Bytes of one float64 element.
FLOAT = 8

_OPTIONS: dict[str, Any] = {"memory_limit": None}
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z%]*)\s*$", re.IGNORECASE)
_OFF = frozenset({"off", "none", "unlimited"})


# ------------------------------------------------------------------------------------------------
# the setting
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """A memory limit and where it came from.

    Attributes
    ----------
    bytes
        The limit [bytes]; ``None``: no limit (``off``).
    origin
        Where it was set, as messages name it (``"MARGINSIM_MEMORY_LIMIT"``, ``"--memory-limit"``,
        ``"memory_limit"``, ``"set_options"``, or the default's description).
    """

    bytes: int | None
    origin: str

    def describe(self) -> str:
        """``"limit 8.0 GB, from MARGINSIM_MEMORY_LIMIT"``: for messages."""
        return f"limit {format_bytes(self.bytes or 0)}, {self.origin}"


def physical_memory() -> int | None:
    """This machine's memory available to the process [bytes]: the smaller of the physical memory
    (``os.sysconf``) and a cgroup v2 / v1 limit; ``None`` when neither is known."""
    found: list[int] = []
    try:
        found.append(int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES")))
    except (AttributeError, OSError, ValueError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < 2**60:
            found.append(int(text))
    found = [b for b in found if b > 0]
    return min(found) if found else None


def parse_limit(value: int | float | str | Limit | None, *, origin: str = "memory_limit") -> Limit | None:
    """A memory limit from a setting's value.

    Parameters
    ----------
    value
        Bytes (an int, or a float such as ``8e9``), a size text (``"8GB"``, ``"8 GiB"``, ``"512M"``:
        KB/MB/GB/TB are powers of 1000, K/M/G/T and KiB/MiB/GiB/TiB powers of 1024), a share of
        physical memory (``"75%"``), or ``"off"`` (no limit). ``None``: not set.
    origin
        Where the value comes from, named by the messages.

    Returns
    -------
    Limit or None
        ``None`` when ``value`` is ``None``.

    Raises
    ------
    InputError
        The value is none of these (key path: ``origin``).
    """
    if value is None or isinstance(value, Limit):
        return value
    if isinstance(value, bool):
        raise InputError(f"a memory limit is a size such as 8GB, not {value!r}", key_path=origin)
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise InputError(f"a memory limit must be a positive size, not {value!r}", key_path=origin)
        return Limit(int(value), origin)
    text = str(value).strip()
    if text.lower() in _OFF:
        return Limit(None, origin)
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or (unit not in _UNITS and unit != "%"):
        raise InputError(
            f"{text!r} is not a memory size (bytes, or a size such as 8GB, 512MiB, 75%, or off)",
            key_path=origin,
        )
    number = float(m.group(1))
    if unit == "%":
        if not 0 < number <= 100:
            raise InputError(
                f"a share of memory is above 0 % and at most 100 %, not {text!r}", key_path=origin
            )
        phys = physical_memory()
        total = FALLBACK_BYTES / DEFAULT_SHARE if phys is None else phys
        return Limit(int(total * number / 100), f"{number:g} % of physical memory, {origin}")
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise InputError(f"a memory limit must be a positive size, not {text!r}", key_path=origin)
    return Limit(size, origin)


def memory_limit(value: int | float | str | Limit | None = None) -> Limit:
    """The memory limit in force.

    Parameters
    ----------
    value
        A caller's own value (the ``memory_limit`` keyword, see :func:`parse_limit`): it wins.

    Returns
    -------
    Limit
        ``value``, else :func:`set_options`'s, else ``MARGINSIM_MEMORY_LIMIT``'s, else
        :data:`DEFAULT_SHARE` of :func:`physical_memory` (:data:`FALLBACK_BYTES` when unknown).
    """
    for given, origin in (
        (value, "memory_limit"),
        (_OPTIONS["memory_limit"], "set_options"),
        (os.environ.get(ENV_VAR) or None, ENV_VAR),
    ):
        lim = parse_limit(given, origin=origin)
        if lim is not None:
            return lim
    phys = physical_memory()
    if phys is None:
        return Limit(FALLBACK_BYTES, "the default")
    return Limit(int(phys * DEFAULT_SHARE), f"default: {DEFAULT_SHARE:.0%} of physical memory")


class set_options:  # noqa: N801 - named like xarray.set_options, used the same way
    """Set marginsim's options, for the session or (as a context manager) for a block.

    Parameters
    ----------
    memory_limit
        The memory limit of every run (:func:`parse_limit`: ``"8GB"``, bytes, ``"75%"``, ``"off"``;
        ``None``: back to ``MARGINSIM_MEMORY_LIMIT`` / the default). The ``memory_limit`` keyword of
        :func:`marginsim.margin` overrides it.

    Examples
    --------
    >>> marginsim.set_options(memory_limit="8GB")          # doctest: +SKIP
    >>> with marginsim.set_options(memory_limit="off"):    # doctest: +SKIP
    ...     marginsim.margin("big.yaml")
    """

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r}; options: {', '.join(_OPTIONS)}")
        if "memory_limit" in options:
            parse_limit(options["memory_limit"], origin="set_options")  # refuse a bad value now
        self._old = {k: _OPTIONS[k] for k in options}
        _OPTIONS.update(options)

    def __enter__(self) -> set_options:
        return self

    def __exit__(self, *exc: object) -> None:
        _OPTIONS.update(self._old)


def format_bytes(n: float) -> str:
    """``1.2 TB``, ``8.0 GB``, ``512 MB`` (powers of 1000)."""
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            v = n / size
            return f"{v:.1f} {unit}" if v < 100 else f"{v:,.0f} {unit}"
    return f"{int(n)} bytes"


# ------------------------------------------------------------------------------------------------
# what a run holds
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """The sizes a method's memory depends on, for one piece of work (the book, or one chunk).

    Attributes
    ----------
    accounts, positions
        Accounts and positions margined at once [count].
    contracts
        Contracts held [count].
    groups
        Groups held (the contracts' ``group``: SPAN's combined commodities; portfolio margin's
        class groups are their underlyings, mostly the same) [count].
    pairs
        (account, group) pairs held [count] (at most ``min(positions, accounts x groups)``).
    scan_points
        SPAN scenarios per contract (16 unless ``span.scenario_set``).
    grid
        Size of each grid dim [points] (a chunk's along a chunked market dim).
    price_dims
        The grid dims of the market's prices (``shift``, ``step``, ``path``: the dims a path method
        such as CFD runs over; the others are method parameters).
    underlyings
        Underlyings of the market [count].
    scenario
        The scenario file (a method's parameters, e.g. portfolio margin's scan points).
    kinds
        ``{kind: (positions, contracts, groups, pairs)}`` of the contracts of each kind
        (``"future"``: futures, options on futures, physicals; ``"spot"``: stocks and options on
        them; ``"cfd"``): the part of the book a method margins (:meth:`scope`).
    """

    accounts: int
    positions: int
    contracts: int
    groups: int
    pairs: int
    scan_points: int
    grid: Mapping[str, int] = field(default_factory=dict)
    price_dims: tuple[str, ...] = ()
    underlyings: int = 1
    scenario: Any = None
    kinds: Mapping[str, tuple[int, int, int, int]] = field(default_factory=dict)

    def scope(self, kind: str) -> Sizes:
        """These sizes for the positions in contracts of ``kind`` only (every account stays)."""
        if kind not in self.kinds:
            return self if not self.kinds else replace(self, positions=0, contracts=0, groups=0, pairs=0)
        positions, contracts, groups, pairs = self.kinds[kind]
        return replace(self, positions=positions, contracts=contracts, groups=groups, pairs=pairs)

    def points(self, dims: tuple[str, ...] | None = None) -> int:
        """Grid points over ``dims`` (default: every grid dim) [count]."""
        return math.prod(n for d, n in self.grid.items() if dims is None or d in dims)

    def accounts_scaled(self, accounts: int) -> Sizes:
        """These sizes for a chunk of ``accounts`` accounts of average size (a suggestion of --chunks)."""
        f = min(accounts, self.accounts) / max(self.accounts, 1)
        return replace(
            self,
            accounts=min(accounts, self.accounts),
            positions=math.ceil(self.positions * f),
            pairs=math.ceil(self.pairs * f),
            kinds={k: (math.ceil(p * f), c, g, math.ceil(q * f)) for k, (p, c, g, q) in self.kinds.items()},
        )


@dataclass(frozen=True)
class Footprint:
    """A method's memory for one piece of work [bytes].

    Attributes
    ----------
    peak
        The most it holds at once (its result included).
    result
        Its result, which a chunked run keeps for every chunk.
    """

    peak: float
    result: float


def span_memory(s: Sizes, detail: bool) -> Footprint:
    """SPAN: per (account, group) pair and grid point about ten working arrays (scanning risk,
    active scenario, spread charges, credit, risk, deltas by month); the result's eight (account x
    group) and four (account) arrays per grid point; the risk arrays (contracts x scenarios x grid
    points, about three copies); with ``detail`` the losses per scenario (pairs x scenarios, twice,
    and accounts x groups x scenarios in the result). The positions of a clearing-house file are all
    SPAN's; otherwise those in futures and options on futures."""
    if s.scenario is None or s.scenario.span is None or s.scenario.span.source is None:
        s = s.scope("future")
    g = s.points()
    dense = s.accounts * s.groups
    result = FLOAT * g * (8 * dense + 4 * s.accounts + (s.scan_points * dense if detail else 0))
    work = FLOAT * g * (10 * s.pairs + 3 * s.contracts * s.scan_points + 2 * s.positions)
    if detail:
        work += FLOAT * g * 2 * s.pairs * s.scan_points
    return Footprint(result + work, result)


def portfolio_margin_memory(s: Sizes, detail: bool) -> Footprint:
    """Portfolio margin: the pnl of every (account, class group) under every stress (about 2.5
    arrays of accounts x groups x stresses x grid points), the contracts' revaluations (about six
    arrays of contracts x stresses x grid points) and the result (about 20 accounts x groups arrays
    per grid point). Stresses: ``6 x points_per_side + 20`` (the scan at three vol points, the
    extreme moves, concentration, single-name and large-position stresses). Stocks and options on
    them only."""
    s = s.scope("spot")
    g = s.points()
    pm = s.scenario.section("portfolio_margin") if s.scenario is not None else None
    stresses = 6 * (pm.points_per_side if pm is not None else 5) + 20
    dense = s.accounts * s.groups
    result = FLOAT * g * 20 * dense
    work = FLOAT * g * (2.5 * dense * stresses + 6 * s.contracts * stresses)
    return Footprint(result + work, result)


def cfd_memory(s: Sizes, detail: bool) -> Footprint:
    """CFD: over the market's price dims only (``step``, ``path``, ``shift``), about 20 arrays per
    account (cash, equity, margins, financing... along the path) and six per position (slots,
    realised, open prices) per grid point. CFD positions only."""
    s = s.scope("cfd")
    g = s.points(s.price_dims)
    result = FLOAT * g * (20 * s.accounts + 4 * s.positions)
    return Footprint(result + FLOAT * g * 2 * s.positions, result)


def account_memory(s: Sizes, detail: bool) -> Footprint:
    """The account layer: about 60 arrays per account and currency group (balances, requirements,
    ratios, states, deadlines, up to three groups) and 40 per position (the exchange and SPAN
    requirements it gathers, conversion and liquidation plans) per grid point."""
    g = s.points()
    result = FLOAT * g * 150 * s.accounts
    return Footprint(FLOAT * g * (180 * s.accounts + 40 * s.positions), result)


def generic_memory(s: Sizes, detail: bool) -> Footprint:
    """A method registered without an estimate: four arrays per position and eight per account per
    grid point, and the (account x contract) table of its book."""
    g = s.points()
    result = FLOAT * g * 4 * s.accounts
    return Footprint(FLOAT * (g * (4 * s.positions + 8 * s.accounts) + s.accounts * s.contracts), result)


def market_footprint(sc: ScenarioFile, underlyings: int | None = None) -> tuple[float, int, int]:
    """The market's arrays of a scenario before they are built.

    Parameters
    ----------
    sc
        A validated scenario file.
    underlyings
        Underlyings of the market [count]; default: the file's ``market`` (at least one).

    Returns
    -------
    (bytes, points, underlyings)
        About six arrays of underlyings x price grid points with ``grid.monte_carlo`` (the shocks,
        their sums, the prices), two without [bytes]; the price grid points (``shift`` x steps x
        paths) [count]; the underlyings [count].
    """
    n_u = max(underlyings if underlyings is not None else len(sc.market), 1)
    g = sc.grid
    if g is None:
        return 0.0, 1, n_u
    points = 1
    if g.shift:
        points *= len(next(iter(g.shift.values()))) if isinstance(g.shift, dict) else len(g.shift)
    if g.path:
        points *= len(next(iter(g.path.values())))
    mc = g.monte_carlo
    if mc is not None:
        points *= (mc.steps + 1) * mc.paths
    return float(FLOAT * n_u * points * (6 if mc is not None else 2)), points, n_u


def check_market(sc: ScenarioFile, limit: Limit | None = None) -> None:
    """Refuse a scenario whose market (prices over the grid, simulated paths) would not fit.

    Raises
    ------
    InputError
        Naming the grid's size, the memory it needs, the limit and the parameters to lower.
    """
    limit = limit or memory_limit()
    need, points, n_u = market_footprint(sc)
    if limit.bytes is None or need <= limit.bytes:
        return
    mc = sc.grid.monte_carlo if sc.grid is not None else None
    if mc is not None:
        what = (
            f"{mc.paths:,} paths x {mc.steps + 1:,} steps x {n_u:,} underlying{'s' * (n_u > 1)} "
            f"({points * n_u:,} prices)"
        )
        lower = "lower grid.monte_carlo.paths or grid.monte_carlo.steps"
        key, doing = "grid.monte_carlo", "simulating"
    else:
        what = f"{points:,} price grid points x {n_u:,} underlying{'s' * (n_u > 1)}"
        lower = "lower grid.shift or grid.path"
        key, doing = "grid", "building"
    raise InputError(
        f"{what}: {doing} the market needs about {format_bytes(need)} ({limit.describe()}): "
        f"{lower}, or raise the limit ({ENV_VAR} or --memory-limit)",
        file=sc.file,
        key_path=key,
    )


#: The kinds of contract of :attr:`Sizes.kinds`, by code.
KINDS = ("future", "spot", "cfd")


def _contract_codes(inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
    """Kind (index into :data:`KINDS`) and group code of every contract of ``inputs``, kept in
    ``inputs.derived`` for as long as the contracts Dataset is the same object (books margined
    against one clearing-house file share it)."""
    contracts = inputs.contracts
    cached = inputs.derived.get("limits.contract_codes")
    if cached is not None and cached[0] is contracts:
        return cached[1], cached[2]
    type_code, types = pd.factorize(contracts["type"].values)
    kind_of_type = np.array([2 if t == "cfd" else 1 if t == "stock" else 0 for t in types], dtype=np.int64)
    kind = kind_of_type[type_code] if type_code.size else np.zeros(0, dtype=np.int64)
    kind[contracts["is_option"].values & (contracts["model"].values == BSM)] = 1  # options on spot
    group = pd.factorize(contracts["group"].values)[0].astype(np.int64)
    inputs.derived["limits.contract_codes"] = (contracts, kind, group)
    return kind, group


def sizes_of(inputs: Inputs, *, exact: bool = True) -> tuple[Sizes, Sizes, int]:
    """The sizes of the whole book and of its largest piece of work, and the number of pieces.

    ``exact=False`` takes the (account, group) pairs of an in-memory book at their bound
    ``min(positions, accounts x groups)`` per kind, without a pass over the positions (an estimate
    that fits with the bound fits). An in-memory book is one piece. A lazy book (chunked, stored)
    is one piece per chunk of accounts (times the chunks of a market chunked along grid dims); the largest chunk counts, and
    every position of it is taken to be of each kind. Nothing of a lazy book is computed: its chunk
    lengths and account table are in memory.
    """
    book, market, contracts = inputs.book, inputs.market, inputs.contracts
    n_a, n_p = int(book.sizes["account"]), int(book.sizes["position"])
    held = inputs.held_contracts()
    kind, all_groups = _contract_codes(inputs)
    group_of_held, group_ids = pd.factorize(all_groups[held])  # groups numbered among those held
    n_c = max(int(group_ids.size), 1)
    group = np.zeros(contracts.sizes["contract"], dtype=np.int64)
    group[held] = group_of_held
    held_kind = kind[held]
    k_contracts = np.bincount(held_kind, minlength=len(KINDS))
    k_groups = [
        int(np.count_nonzero(np.bincount(group_of_held[held_kind == k], minlength=n_c)))
        for k in range(len(KINDS))
    ]
    grid: dict[str, int] = {}
    whole_grid: dict[str, int] = {}
    for d in inputs.grid_dims:
        src = market if d in market.dims else inputs.grid
        # a chunked market dim: its largest chunk (of any variable along it) is a task's share
        chunks = [max(v.chunksizes[d]) for v in src.data_vars.values() if d in v.chunksizes]
        whole_grid[d] = int(src.sizes[d])
        grid[d] = int(max(chunks)) if chunks else whole_grid[d]
    grid_pieces = math.prod(math.ceil(whole_grid[d] / grid[d]) for d in grid)
    base: dict[str, Any] = dict(
        contracts=int(held.size),
        groups=int(group_ids.size),
        scan_points=int(contracts.sizes.get("scenario", 16)),
        price_dims=tuple(d for d in inputs.grid_dims if d in market["price"].dims),
        underlyings=int(market.sizes.get("underlying", 1)),
        scenario=inputs.scenario,
    )
    if inputs.is_lazy and "position_start" in book:
        position_chunks = book["contract_index"].chunks
        lengths = np.asarray(position_chunks[0] if position_chunks else (n_p,), dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(lengths)])  # chunk i: positions bounds[i]:bounds[i+1]
        per_chunk = np.diff(np.searchsorted(book["position_start"].values, bounds))
        per_chunk[-1:] += n_a - int(per_chunk.sum())  # accounts without positions: the last chunk's
        a_max, p_max = int(per_chunk.max(initial=0)), int(lengths.max(initial=0))

        def kinds(a: int, p: int) -> dict[str, tuple[int, int, int, int]]:
            return {
                name: (p, int(k_contracts[k]), k_groups[k], min(p, a * k_groups[k]))
                for k, name in enumerate(KINDS)
                if k_contracts[k]
            }

        piece = Sizes(
            accounts=a_max,
            positions=p_max,
            pairs=min(p_max, a_max * n_c),
            grid=grid,
            kinds=kinds(a_max, p_max),
            **base,
        )
        whole = replace(
            piece,
            accounts=n_a,
            positions=n_p,
            pairs=min(n_p, n_a * n_c),
            grid=whole_grid,
            kinds=kinds(n_a, n_p),
        )
        return whole, piece, int(per_chunk.size) * grid_pieces
    ci = book["contract_index"].values
    pos_kind = kind[ci]
    k_positions = np.bincount(pos_kind, minlength=len(KINDS))
    if not exact:
        whole = Sizes(
            accounts=n_a,
            positions=n_p,
            pairs=min(n_p, n_a * int(group_ids.size)),
            grid=whole_grid,
            kinds={
                name: (
                    int(k_positions[k]),
                    int(k_contracts[k]),
                    k_groups[k],
                    min(int(k_positions[k]), n_a * k_groups[k]),
                )
                for k, name in enumerate(KINDS)
                if k_contracts[k]
            },
            **base,
        )
        return whole, replace(whole, grid=grid), grid_pieces
    # (kind, account, group) of every position as one code: distinct codes are the pairs held
    codes = (pos_kind * n_a + book["account_index"].values) * n_c + group[ci]
    distinct = np.unique(codes)
    k_pairs = np.bincount(distinct // (n_a * n_c), minlength=len(KINDS)) if n_a else np.zeros(len(KINDS), int)
    whole = Sizes(
        accounts=n_a,
        positions=n_p,
        pairs=int(np.unique(distinct % (n_a * n_c)).size) if n_a else 0,
        grid=whole_grid,
        kinds={
            name: (int(k_positions[k]), int(k_contracts[k]), k_groups[k], int(k_pairs[k]))
            for k, name in enumerate(KINDS)
            if k_contracts[k]
        },
        **base,
    )
    return whole, replace(whole, grid=grid), grid_pieces


def _threads() -> int:
    """Pieces of work in flight at once: one per worker thread of dask's local scheduler."""
    return max(os.cpu_count() or 1, 1)


def _total(
    specs: list[MethodSpec], piece: Sizes, whole: Sizes, pieces: int, detail: bool, in_flight: int
) -> tuple[float, MethodSpec]:
    """Bytes of running ``specs`` one after the other (each keeps its result), and the method that
    needs the most."""
    results = 0.0
    worst, worst_spec = 0.0, specs[0]
    for spec in specs:
        fn: Callable[[Sizes, bool], Footprint] = getattr(spec, "memory", None) or generic_memory
        if pieces > 1:
            one = fn(piece, detail)
            need = min(in_flight, pieces) * one.peak + 2 * fn(whole, detail).result
            kept = fn(whole, detail).result
        else:
            one = fn(piece, detail)
            need, kept = one.peak, one.result
        if need - kept > worst:
            worst, worst_spec = need - kept, spec
        results += kept
    return results + worst, worst_spec


def estimate_methods(
    inputs: Inputs, specs: list[MethodSpec], *, detail: bool = True, distributed: bool = False
) -> float:
    """The memory a run of ``specs`` on ``inputs`` needs [bytes] (see :func:`check_methods`)."""
    if not specs:
        return 0.0
    whole, piece, pieces = sizes_of(inputs)
    return _total(specs, piece, whole, pieces, detail, 1 if distributed else _threads())[0]


def check_methods(
    inputs: Inputs,
    specs: list[MethodSpec],
    *,
    detail: bool = True,
    limit: Limit | None = None,
    distributed: bool = False,
) -> float:
    """Refuse a run whose methods' arrays would not fit, before any of them is allocated.

    Parameters
    ----------
    inputs
        The data model, in memory or lazy (chunked, a stored book).
    specs
        The methods to run.
    detail
        Whether the run keeps the per-scenario detail (``margin(..., detail=...)``).
    limit
        The memory limit (default: :func:`memory_limit`).
    distributed
        The chunks run on a dask.distributed cluster: one chunk at a time counts against this
        machine's limit (the others are in the workers' memory).

    Returns
    -------
    float
        The estimate [bytes] (an upper bound when it is below the limit; 0 without a limit).

    Raises
    ------
    InputError
        Naming the grid or the book, the memory it needs, the limit and what to lower (the grid
        dims, ``--chunks N`` when a chunked run would fit, the limit).
    """
    limit = limit or memory_limit()
    if not specs or limit.bytes is None:
        return 0.0
    in_flight = 1 if distributed else _threads()
    whole, piece, pieces = sizes_of(inputs, exact=False)  # the pairs at their bound: no pass over the book
    need, spec = _total(specs, piece, whole, pieces, detail, in_flight)
    if need > limit.bytes and not inputs.is_lazy:  # the exact pairs held
        whole, piece, pieces = sizes_of(inputs)
        need, spec = _total(specs, piece, whole, pieces, detail, in_flight)
    if need <= limit.bytes:
        return need
    advice = []
    g = whole.points()
    if g > 1:
        big = sorted((d for d in whole.grid if whole.grid[d] > 1), key=lambda d: -whole.grid[d])
        advice.append("lower " + " or ".join(_GRID_KEYS.get(d, f"grid.{d}") for d in big[:2]))
    chunk = _chunks_that_fit(specs, whole, detail, in_flight, limit.bytes)
    if chunk is not None:
        advice.append(f"use --chunks {chunk}")
    elif pieces > 1 and piece.accounts > 1:
        advice.append("use smaller --chunks")
    advice.append(f"raise the limit ({ENV_VAR} or --memory-limit)")
    sc = inputs.scenario
    book = f"{whole.positions:,} positions in {whole.accounts:,} account{'s' * (whole.accounts != 1)}"
    if g > 1:
        dims = " x ".join(f"{whole.grid[d]:,} {d}" for d in whole.grid)
        what = f"the what-if grid has {g:,} points ({dims}) for {book}"
        key = "grid"
    else:
        what = f"the book has {book}"
        key = "positions"
    how = f"in chunks of {piece.accounts:,} accounts" if pieces > 1 else "in one piece"
    raise InputError(
        f"{what}; margining it ({spec.name}, {how}) needs about {format_bytes(need)} "
        f"({limit.describe()}): {', or '.join(advice)}",
        file=sc.file,
        key_path=key,
    )


#: The scenario key of each grid dim, as messages name it.
_GRID_KEYS = {
    "shift": "grid.shift",
    "vol_shift": "grid.vol_shift",
    "price_scan_scale": "grid.price_scan_scale",
    "vol_scan_scale": "grid.vol_scan_scale",
    "step": "grid.path / grid.monte_carlo.steps",
    "path": "grid.monte_carlo.paths",
    "date": "the backtest's dates (--from / --to)",
}


def _chunks_that_fit(
    specs: list[MethodSpec], whole: Sizes, detail: bool, in_flight: int, limit: int
) -> int | None:
    """The largest accounts per chunk (1, 2 or 5 times a power of ten) with which a chunked run of
    ``specs`` fits in :data:`SUGGEST_SHARE` of ``limit``, its chunks sized as a chunked run's check
    sizes them (every position of a chunk taken to be of each kind); ``None`` when none does (the
    result alone does not fit, a method cannot be chunked, or the book has one account)."""
    if whole.accounts < 2 or not all(getattr(s, "chunked", True) for s in specs):
        return None
    candidates = sorted(
        {c for e in range(int(math.log10(whole.accounts)) + 1) for c in (10**e, 2 * 10**e, 5 * 10**e)},
        reverse=True,
    )
    for n in candidates:
        if n >= whole.accounts:
            continue
        avg = whole.accounts_scaled(n)
        p = avg.positions
        piece = replace(
            avg,
            kinds={k: (p, c, g, min(p, n * g)) for k, (_, c, g, _) in whole.kinds.items()},
            pairs=min(p, n * max(whole.groups, 1)),
        )
        need, _ = _total(specs, piece, whole, math.ceil(whole.accounts / n), detail, in_flight)
        if need <= SUGGEST_SHARE * limit:
            return n
    return None
