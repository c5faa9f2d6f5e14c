"""The ``marginsim`` command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .api import margin
from .errors import InputError
from .io.span import file_contract_ids, load_span_file, summarize
from .limits import parse_limit
from .registry import REGISTRY
from .scale import connect
from .scenario import scenario_json_schema
from .studies.cli import add_study_parser

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["main"]


def _cmd_margin(args: argparse.Namespace) -> int:
    client = connect(args.scheduler, key_path="--scheduler")
    try:
        result = margin(  # the CLI prints the JSON contract or tables: no per-scenario detail
            args.file,
            methods=args.method,
            engine=args.engine,
            chunks=args.chunks,
            book=args.book,
            detail=False,
            memory_limit=parse_limit(args.memory_limit, origin="--memory-limit"),
        )
    finally:
        if client is not None:
            client.close()
    if args.json:
        sys.stdout.write(result.to_json() + "\n")
        return 0
    result.check_finite()  # no NaN or inf in a table where a figure is due
    sc = result.inputs.scenario
    print(f"{sc.name}  as of {sc.as_of}  currency {sc.currency}")
    if sc.description:
        print(sc.description.strip())
    for name, ds in result.methods.items():
        for acct in result.inputs.accounts:
            print()
            print(REGISTRY[name].table(ds, acct))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(scenario_json_schema() + "\n")
    return 0


def _cmd_span_file(args: argparse.Namespace) -> int:
    sf = load_span_file(args.file)
    if args.contracts is not None:
        listing = file_contract_ids(sf, args.contracts or None)
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
    info = summarize(sf)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="marginsim", description="Simulate broker and clearing-house margin.")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("margin", help="margin of the book of a scenario file")
    m.add_argument("file", help="scenario file (YAML)")
    m.add_argument("--json", action="store_true", help="print the JSON result contract")
    m.add_argument("--method", action="append", help="run this method (repeatable); default: all that apply")
    m.add_argument("--engine", choices=["auto", "numba", "numpy"], default="auto", help="pricing engine")
    m.add_argument(
        "--chunks",
        type=int,
        metavar="N",
        help="margin N accounts per chunk on dask (same numbers as in one piece)",
    )
    m.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the chunks on the dask.distributed scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786)",
    )
    m.add_argument(
        "--book", metavar="PATH", help="a stored book (zarr or netCDF) instead of the file's positions"
    )
    m.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="refuse a run needing more memory (8GB, 512MiB, 75%%, off; default: $MARGINSIM_MEMORY_LIMIT, "
        "else half the physical memory)",
    )
    m.set_defaults(func=_cmd_margin)

    f = sub.add_parser("span-file", help="what a clearing-house SPAN XML file holds")
    f.add_argument("file", help="SPAN XML file (format 4.00)")
    f.add_argument(
        "--contracts",
        nargs="*",
        metavar="CC",
        help="list contract ids (of these combined commodities; all without one)",
    )
    f.add_argument("--json", action="store_true", help="print JSON")
    f.set_defaults(func=_cmd_span_file)

    s = sub.add_parser("schema", help="print the JSON Schema of the scenario file")
    s.set_defaults(func=_cmd_schema)

    add_study_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print(f"marginsim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
