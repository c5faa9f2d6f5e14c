"""The ``marginsim`` command line.

The parser is built without importing numpy, xarray, pandas, numba or dask: each command names the
function that runs it as ``"module:function"`` (:data:`COMMANDS`), imported only when the command
runs, so that ``marginsim --help`` and ``marginsim --version`` answer at once.

Logging: the ``marginsim`` logger (:mod:`logging`) prints to stderr at WARNING; ``-v`` shows INFO
(the main steps and their timings), ``-vv`` DEBUG, ``-q`` only errors (and no progress bars).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from . import __version__
from .errors import InputError
from .studies.cli import add_study_parser

__all__ = ["main", "build_parser", "COMMANDS", "HelpFormatter", "Parser"]

#: Command -> ``"module:function"`` that runs it (``function(args) -> exit status``), imported when run.
COMMANDS = {
    "margin": "marginsim.commands:margin_command",
    "span-file": "marginsim.commands:span_file_command",
    "schema": "marginsim.commands:schema_command",
    "what-if": "marginsim.whatif:what_if_command",
    "history export": "marginsim.history_commands:history_export_command",
    "backtest": "marginsim.backtest_commands:backtest_command",
}

#: Log format of the command line's messages on stderr.
LOG_FORMAT = "marginsim %(levelname)s %(name)s: %(message)s"


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default: ``(default: X)`` after its help, unless the default
    is empty (``None``, ``False``) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default:" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return action.help
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` with :class:`HelpFormatter`; its sub-commands' parsers too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def resolve(target: str | Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The function a command names: ``"module:function"`` imported now, or a callable as it is."""
    if callable(target):
        return target
    module, _, name = target.partition(":")
    func: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
    return func


def build_parser() -> argparse.ArgumentParser:
    """The ``marginsim`` parser (its sub-commands' ``func`` are :data:`COMMANDS` entries)."""
    p = Parser(prog="marginsim", description="Simulate broker and clearing-house margin.")
    p.add_argument("--version", action="version", version=f"marginsim {__version__}")
    p.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help="log the main steps and their timings on stderr (-v INFO, -vv DEBUG; default: warnings)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="log only errors; no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("margin", help="margin of the book of a scenario file")
    m.add_argument("file", help="scenario file (YAML)")
    m.add_argument("--json", action="store_true", help="print the JSON result contract")
    m.add_argument("--method", action="append", help="run this method (repeatable; default: all that apply)")
    m.add_argument(
        "--engine",
        choices=["auto", "numba", "numpy"],
        default="auto",
        help="pricing engine (auto: numba when installed)",
    )
    m.add_argument(
        "--chunks",
        type=int,
        metavar="N",
        help="margin N accounts per chunk on dask (same numbers as in one piece; a progress bar on a terminal)",
    )
    m.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the chunks on the dask.distributed scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786)",
    )
    m.add_argument(
        "--book",
        metavar="PATH",
        help="a stored book (zarr or netCDF) instead of the file's positions (a progress bar on a terminal)",
    )
    m.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="refuse a run needing more memory (8GB, 512MiB, 75%%, off; default: $MARGINSIM_MEMORY_LIMIT, "
        "else half the physical memory)",
    )
    m.add_argument(
        "--attribution",
        action="store_true",
        help="add per position its contribution to the maintenance and its marginal (leave-one-out) "
        "figure (with --chunks / --book: chunk by chunk)",
    )
    m.set_defaults(func=COMMANDS["margin"])

    f = sub.add_parser("span-file", help="what a clearing-house SPAN XML file holds")
    f.add_argument("file", help="SPAN XML file (format 4.00)")
    f.add_argument(
        "--contracts",
        nargs="*",
        metavar="CC",
        help="list contract ids (of these combined commodities; all without one)",
    )
    f.add_argument("--json", action="store_true", help="print JSON")
    f.set_defaults(func=COMMANDS["span-file"])

    add_what_if_parser(sub)

    s = sub.add_parser("schema", help="print the JSON Schema of the scenario file")
    s.set_defaults(func=COMMANDS["schema"])

    h = sub.add_parser("history", help="market histories (the scenario key `history:`)")
    hsub = h.add_subparsers(dest="history_command", required=True, metavar="COMMAND")
    he = hsub.add_parser(
        "export",
        help="write a real daily series shipped by the arch package in the history format (no download)",
    )
    he.add_argument("name", metavar="NAME", help="sp500, nasdaq, wti or vix")
    he.add_argument("file", metavar="FILE", help="the file to write: .csv, .parquet or .nc")
    he.set_defaults(func=COMMANDS["history export"])

    b = sub.add_parser(
        "backtest", help="margin per day over the scenario's history vs the loss realised after it"
    )
    b.add_argument("file", help="scenario file (YAML) with a history:")
    b.add_argument("--method", action="append", help="backtest this method (repeatable; default: all that apply)")
    b.add_argument("--from", dest="start", metavar="D", help="first date tested, YYYY-MM-DD (default: the history's first)")
    b.add_argument("--to", dest="end", metavar="D", help="last date tested, YYYY-MM-DD (default: the history's last with a known loss)")
    b.add_argument("--json", action="store_true", help="print the statistics as JSON")
    b.add_argument(
        "--engine",
        choices=["auto", "numba", "numpy"],
        default="auto",
        help="pricing engine (auto: numba when installed)",
    )
    b.set_defaults(func=COMMANDS["backtest"])

    add_study_parser(sub)
    return p


def add_what_if_parser(sub: Any) -> None:
    """The ``what-if`` command: margin before and after candidate trades, or the best hedges."""
    w = sub.add_parser(
        "what-if",
        help="margin before and after candidate trades (or the best one-contract hedge per account)",
        description="Margin of each trade's account before and after the trade, per method "
        "(--trades FILE or --trade CONTRACT QUANTITY), or per account the one-contract trade that "
        "lowers the maintenance most (--best-hedge).",
    )
    w.add_argument("file", help="scenario file (YAML)")
    w.add_argument(
        "--trades",
        metavar="FILE",
        help="trades file: a YAML/JSON list of {id, account, legs: [{contract, quantity}]}",
    )
    w.add_argument(
        "--trade",
        nargs=2,
        action="append",
        metavar=("CONTRACT", "QUANTITY"),
        help="one trade of one leg (repeatable)",
    )
    w.add_argument(
        "--account",
        action="append",
        metavar="NAME",
        help="account of the --trade options (once for all, or once per --trade; default: the book's "
        "only account); with --best-hedge: the accounts to hedge (repeatable; default: all)",
    )
    w.add_argument(
        "--best-hedge",
        action="store_true",
        help="per account, the trade of one contract and quantity in -N..N that lowers the maintenance most",
    )
    w.add_argument(
        "--contracts",
        action="append",
        metavar="PATTERN",
        help="best hedge: glob over contract ids (repeatable; default: * = every contract the book holds "
        "or the scenario defines; a pattern without wildcards may name any contract of the SPAN file)",
    )
    w.add_argument(
        "--max-quantity", type=int, metavar="N", help="best hedge: quantities -N..N but 0 (default: 10)"
    )
    w.add_argument("--json", action="store_true", help="print JSON")
    w.add_argument("--method", action="append", help="run this method (repeatable; default: all that apply)")
    w.add_argument(
        "--engine",
        choices=["auto", "numba", "numpy"],
        default="auto",
        help="pricing engine (auto: numba when installed)",
    )
    w.set_defaults(func=COMMANDS["what-if"])


@contextmanager
def logging_to_stderr(verbosity: int = 0, quiet: bool = False) -> Iterator[logging.Logger]:
    """Print the ``marginsim`` logger's records on stderr within the block, at the level the
    options ask for: ERROR (``quiet``), WARNING (``verbosity`` 0), INFO (1) or DEBUG (2 or more).
    The logger's level and handlers are as before after the block."""
    logger = logging.getLogger("marginsim")
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    old_level = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with logging_to_stderr(args.verbosity, args.quiet) as log:
        log.debug("marginsim %s on Python %s: %s", __version__, sys.version.split()[0], vars(args))
        try:
            return resolve(args.func)(args)
        except InputError as e:
            print(f"marginsim: error: {e}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            return 0


if __name__ == "__main__":
    sys.exit(main())
