"""The ``marginsim`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import InputError

__all__ = ["main"]


def _cmd_margin(args: argparse.Namespace) -> int:
    from .api import margin
    from .methods import REGISTRY

    result = margin(args.file, methods=args.method, engine=args.engine)
    if args.json:
        sys.stdout.write(result.to_json() + "\n")
        return 0
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
    from .scenario import scenario_json_schema

    sys.stdout.write(scenario_json_schema() + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="marginsim", description="Simulate broker and clearing-house margin.")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("margin", help="margin of the book of a scenario file")
    m.add_argument("file", help="scenario file (YAML)")
    m.add_argument("--json", action="store_true", help="print the JSON result contract")
    m.add_argument("--method", action="append", help="run this method (repeatable); default: all that apply")
    m.add_argument("--engine", choices=["auto", "numba", "numpy"], default="auto", help="pricing engine")
    m.set_defaults(func=_cmd_margin)

    s = sub.add_parser("schema", help="print the JSON Schema of the scenario file")
    s.set_defaults(func=_cmd_schema)
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
