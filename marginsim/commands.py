"""What the ``marginsim`` commands do: ``margin``, ``span-file`` and ``schema``.

:mod:`marginsim.cli` builds the parser without importing this module (nor numpy, xarray, pandas,
numba or dask); it imports it when one of these commands runs (``cli.COMMANDS``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import xarray as xr

from .api import margin
from .io import span as span_files  # (lazy: the reader is imported by `span-file` and SPAN-file scenarios)
from .limits import parse_limit
from .outputs import attribution_table
from .registry import REGISTRY
from .scale import connect
from .scenario import scenario_json_schema

__all__ = ["margin_command", "schema_command", "span_file_command", "xarray_without_dask", "progress_bar"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def xarray_without_dask() -> Iterator[None]:
    """Within the block, xarray does not import dask to ask whether data are dask collections.

    xarray imports ``dask`` and ``dask.array`` (about 0.3 s) the first time it builds a variable,
    only to check whether the data is a dask array. No object can be a dask collection while dask
    is not imported, so within the block xarray's two checks answer that without importing it:
    its record of the ``dask`` duck-array module says "absent" (as xarray records it on a machine
    without dask) and ``is_dask_collection`` is false while ``dask`` is not in ``sys.modules``.
    Both are taken back at the end of the block. The CLI uses it for runs whose data are all numpy
    (``marginsim margin FILE`` without ``--chunks``, ``--book`` or ``--scheduler``). Nothing
    changes when dask is already imported or xarray keeps these elsewhere (dask is then imported
    as before).
    """
    if "dask" in sys.modules:
        yield
        return
    try:
        from xarray.namedarray import pycompat
        from xarray.namedarray import utils as xr_utils

        cache = pycompat._cached_duck_array_modules
        absent = object.__new__(pycompat.DuckArrayModule)  # as xarray's own record of a missing module
        absent.module, absent.version, absent.type, absent.available = None, pycompat.Version("0"), (), False
        original = xr_utils.is_dask_collection
    except (ImportError, AttributeError, TypeError):  # another xarray: dask is imported as before
        yield
        return
    if "dask" in cache:
        yield
        return

    def is_dask_collection(x: object) -> bool:
        return "dask" in sys.modules and bool(original(x))

    cache["dask"] = absent
    xr_utils.is_dask_collection = is_dask_collection  # type: ignore[assignment]
    try:
        yield
    finally:
        if cache.get("dask") is absent:
            del cache["dask"]
        if xr_utils.is_dask_collection is is_dask_collection:
            xr_utils.is_dask_collection = original


def progress_bar(args: argparse.Namespace) -> bool:
    """Whether to show progress bars: stderr is a terminal and ``-q`` was not given."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


@contextlib.contextmanager
def _dask_progress(desc: str) -> Iterator[None]:
    """A progress bar on stderr over the tasks of every dask computation in the block (local
    schedulers: threads, processes, synchronous; a ``distributed`` cluster has its own dashboard)."""
    from tqdm import tqdm
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=desc, tqdm_class=tqdm, file=sys.stderr, unit="task", leave=True):
        yield


def margin_command(args: argparse.Namespace) -> int:
    """``marginsim margin FILE``: the readable tables or (``--json``) the JSON contract on stdout."""
    lazy = args.chunks is not None or args.book is not None or bool(args.scheduler)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if not lazy:
            stack.enter_context(xarray_without_dask())
        client = connect(args.scheduler, key_path="--scheduler")
        if client is not None:
            stack.callback(client.close)
            log.info("connected to the dask scheduler at %s", args.scheduler)
        elif lazy and progress_bar(args):
            stack.enter_context(_dask_progress(f"margin {args.file}"))
        result = margin(  # the CLI prints the JSON contract or tables: no per-scenario detail
            args.file,
            methods=args.method,
            engine=args.engine,
            chunks=args.chunks,
            book=args.book,
            detail=False,
            memory_limit=parse_limit(args.memory_limit, origin="--memory-limit"),
            attribution=getattr(args, "attribution", False),
        )
        t1 = time.perf_counter()
        if args.json:
            sys.stdout.write(result.to_json() + "\n")
        else:
            _print_tables(result)
    log.info("margin in %.2f s, output in %.2f s", t1 - t0, time.perf_counter() - t1)
    return 0


def _print_tables(result: Any) -> None:
    result.check_finite()  # no NaN or inf in a table where a figure is due
    sc = result.inputs.scenario
    print(f"{sc.name}  as of {sc.as_of}  currency {sc.currency}")
    if sc.description:
        print(sc.description.strip())
    for name, ds in result.methods.items():
        for acct in result.inputs.accounts:
            print()
            print(REGISTRY[name].table(ds, acct))
            if "marginal" in ds.data_vars:  # --attribution: the positions, largest contribution first
                print(attribution_table(ds, acct))


def schema_command(args: argparse.Namespace) -> int:
    """``marginsim schema``: the JSON Schema of scenario files on stdout."""
    sys.stdout.write(scenario_json_schema() + "\n")
    return 0


def span_file_command(args: argparse.Namespace) -> int:
    """``marginsim span-file FILE``: what a clearing-house SPAN file holds (or its contract ids)."""
    with xarray_without_dask():
        return _span_file(args)


def _span_file(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    sf = span_files.load_span_file(args.file)
    log.info("SPAN file %s read in %.2f s", args.file, time.perf_counter() - t0)
    if args.contracts is not None:
        listing = span_files.file_contract_ids(sf, args.contracts or None)
        if args.json:
            sys.stdout.write(json.dumps(_contract_rows(listing), indent=2) + "\n")
            return 0
        print(f"{'id':<32}{'type':<8}{'combined commodity':<20}{'price':>12}{'strike':>10}{'multiplier':>12}")
        for i, c in enumerate(listing["contract"].values):
            k = listing["strike"].values[i]
            print(
                f"{str(c):<32}{listing['type'].values[i]:<8}{listing['group'].values[i]:<20}"
                f"{listing['price'].values[i]:>12g}{'' if k != k else f'{k:g}':>10}"
                f"{listing['multiplier'].values[i]:>12g}"
            )
        return 0
    info = span_files.summarize(sf)
    if args.json:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return 0
    print(f"{info['file']}")
    print(
        f"  SPAN XML format {info['file_format']}, clearing org {info['clearing_org']}, "
        f"business date {info['business_date']} (created {info['created']})"
    )
    print(f"  exchanges: {', '.join(info['exchanges'])}; currencies used: {', '.join(info['currencies'])}")
    if info.get("conversion_rates"):
        print("  conversion rates: " + ", ".join(f"{k} {v}" for k, v in info["conversion_rates"].items()))
    print(f"  combined commodities: {info['n_combined_commodities']}")
    pf = info["n_portfolios"]
    ct = info["n_contracts"]
    print(f"  portfolios: {pf['futures']} futures, {pf['options']} options, {pf['physical']} physical")
    print(
        f"  contracts: {ct['futures']} futures, {ct['options']} options "
        f"({info['n_option_series']} series), {ct['physical']} physical"
    )
    print(
        f"  spreads: {info['n_intra_spreads']} intra-commodity, {info['n_inter_spreads']} inter-commodity; "
        f"{info['n_scan_points']} scan points"
    )
    print("  combined commodities: " + ", ".join(sf.combined_commodities))
    unused = info["not_used"]
    if unused:
        print(f"  not used by the margin ({sum(unused.values())} elements):")
        for name, n in unused.items():
            print(f"    {name:<50}{n:>10}")
    else:
        print("  not used by the margin: nothing")
    return 0


def _contract_rows(listing: xr.Dataset) -> list[dict[str, Any]]:
    """The rows of ``marginsim span-file FILE --contracts --json``: plain JSON values.

    ``id``, ``type``, ``group`` (combined commodity), ``price`` [price units], ``strike`` [price
    units; null for a future or a physical], ``multiplier`` [currency per price point per
    contract] and ``month`` (YYYYMM).
    """
    cols = {
        k: listing[k].values.tolist() for k in ("type", "group", "price", "strike", "multiplier", "month")
    }
    ids = [str(c) for c in listing["contract"].values.tolist()]

    def plain(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    return [{"id": c, **{k: plain(v[i]) for k, v in cols.items()}} for i, c in enumerate(ids)]
