"""What ``marginsim history export NAME FILE`` does (imported only when the command runs).

:mod:`marginsim.cli` names :func:`history_export_command` in ``cli.COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys

from .io.history import ARCH_SERIES, export_history, read_history
from .params.history import HistoryParams

__all__ = ["history_export_command"]


def history_export_command(args: argparse.Namespace) -> int:
    """Write the ``arch`` package's series ``args.name`` to ``args.file`` (CSV, Parquet or netCDF
    by suffix), read it back through the history reader (the checks of ``history:``) and print
    what was written. Exit status 0; a bad name or suffix is an :class:`InputError` (status 2)."""
    path = export_history(args.name, args.file)
    ds = read_history(HistoryParams(file=str(path)), base_dir=None, file=None)
    dates = ds["date"].values
    print(
        f"{path}: {args.name} ({ARCH_SERIES[args.name][2]}): {dates.size} days, "
        f"{str(dates[0])[:10]} to {str(dates[-1])[:10]}; column {args.name!r}",
        file=sys.stdout,
    )
    return 0
