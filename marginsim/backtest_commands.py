"""What ``marginsim backtest FILE`` does (imported only when the command runs).

:mod:`marginsim.cli` names :func:`backtest_command` in ``cli.COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys

from .backtesting import backtest

__all__ = ["backtest_command"]


def backtest_command(args: argparse.Namespace) -> int:
    """``marginsim backtest FILE [--method M ...] [--from D] [--to D] [--json]``: the statistics
    per method and account as a table or (``--json``) as JSON (:meth:`BacktestResult.to_dict
    <marginsim.backtesting.BacktestResult.to_dict>`) on stdout. Bad input: status 2."""
    result = backtest(args.file, methods=args.method, start=args.start, end=args.end, engine=args.engine)
    sys.stdout.write((result.to_json() if args.json else result.table()) + "\n")
    return 0
