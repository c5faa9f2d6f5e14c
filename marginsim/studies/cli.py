"""``marginsim study ...``: list, run and schedule the study notebooks.

Building the parser imports nothing heavy: :mod:`marginsim.studies.runner` (which imports the data
model and, when a study runs, papermill) is imported when a study command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from .settings import DEFAULT_OUT, DEFAULT_TIMEOUT

__all__ = ["add_study_parser", "parse_value", "RUNNER"]

#: The module that finds, runs and exports the studies, imported when a study command runs.
RUNNER = "marginsim.studies.runner"

log = logging.getLogger(__name__)


def _runner() -> ModuleType:
    return importlib.import_module(RUNNER)


def _progress(args: argparse.Namespace) -> bool:
    """A progress bar (on stderr) unless ``--no-progress`` or ``-q``, and only on a terminal."""
    return not args.no_progress and not getattr(args, "quiet", False) and sys.stderr.isatty()


def parse_value(text: str) -> Any:
    """A ``-p KEY VALUE`` value: YAML flow syntax (``3``, ``0.5``, ``null``, ``[1, 2]``,
    ``{a: 1}``), else the text itself; dates stay text."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (dt.date, dt.datetime)):
        return text
    return value


def _cmd_list(args: argparse.Namespace) -> int:
    runner = _runner()
    studies = runner.list_studies(args.notebooks)
    if not studies:
        print(f"no study notebooks in {args.notebooks or runner.notebooks_dir()}", file=sys.stderr)
        return 1
    for s in studies:
        print(f"{s.name:<24}{s.title}")
        if s.summary:
            print(f"{'':<24}{s.summary}")
        if args.verbose:
            for p, info in runner.study_parameters(s).items():
                print(f"{'':<26}-p {p} {info['default']}  {info.get('help') or ''}".rstrip())
    return 0


def _report(run: Any) -> None:
    log.info("study %s: %s in %.1f s", run.study, "ok" if run.ok else "failed", run.seconds)
    if run.ok:
        print(f"{run.study}: ok in {run.seconds:.1f} s -> {run.html}")
    else:
        print(
            f"{run.study}: FAILED after {run.seconds:.1f} s: {run.error}\n"
            f"  executed notebook kept for debugging: {run.notebook}\n"
            f"  report not replaced: {run.html}",
            file=sys.stderr,
        )


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The ``-p KEY VALUE`` pairs: YAML values, but the text itself for a parameter whose default
    is a string (``-p account 123`` is the account named ``123``). The runner checks the types."""
    pairs = args.param or []
    runner = _runner()
    defaults = runner.parameter_defaults(runner.get_study(args.name, args.notebooks)) if pairs else {}
    return {k: v if isinstance(defaults.get(k), str) else parse_value(v) for k, v in pairs}


def _cmd_run(args: argparse.Namespace) -> int:
    params = _parameters(args)
    log.info("study %s: scenario %s, parameters %s, out %s", args.name, args.scenario, params, args.out)
    run = _runner().run_study(
        args.name,
        args.scenario,
        params,
        out=args.out,
        scheduler=args.scheduler,
        timeout=args.timeout or None,
        progress=_progress(args),
        notebooks=args.notebooks,
    )
    _report(run)
    return 0 if run.ok else 1


def _cmd_run_all(args: argparse.Namespace) -> int:
    runs = _runner().run_all(
        names=args.only,
        out=args.out,
        scheduler=args.scheduler,
        timeout=args.timeout or None,
        progress=_progress(args),
        notebooks=args.notebooks,
    )
    for r in runs:
        _report(r)
    failed = [r.study for r in runs if not r.ok]
    print(
        f"{len(runs) - len(failed)} of {len(runs)} studies ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def _cmd_kernel(args: argparse.Namespace) -> int:
    print(_runner().ensure_kernel())
    return 0


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the job) ends a run like Ctrl-C: its clean-up runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            with _terminate_as_interrupt():
                return func(args)
        except _runner().StudyError as e:  # evaluated when an exception comes: the runner is imported by then
            print(f"marginsim: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # the runner has cleaned up; the executed notebook is kept
            print("marginsim: interrupted", file=sys.stderr)
            return 130

    return run


def add_study_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``study list | run | run-all | kernel`` to the ``marginsim`` command line."""
    st = sub.add_parser("study", help="parameterised study notebooks: run them, export HTML reports")
    ss = st.add_subparsers(dest="study_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default=DEFAULT_OUT, help="output folder of reports and executed notebooks")
        p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address")
        p.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            metavar="SECONDS",
            help="execution timeout per cell [s], any number (0.5 too; 0: none)",
        )
        p.add_argument(
            "--no-progress",
            action="store_true",
            help="no progress bar (shown on stderr when it is a terminal)",
        )
        p.add_argument("--notebooks", metavar="DIR", help="folder of the study notebooks")

    ls = ss.add_parser("list", help="the studies and what they show")
    ls.add_argument("-v", "--verbose", action="store_true", help="also list each study's parameters")
    ls.add_argument("--notebooks", metavar="DIR", help="folder of the study notebooks")
    ls.set_defaults(func=_guard(_cmd_list))

    r = ss.add_parser("run", help="run one study with papermill and write its HTML report")
    r.add_argument("name", help="study name (see `marginsim study list`)")
    r.add_argument("--scenario", metavar="FILE", help="scenario file (default: the study's own)")
    r.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        help="a notebook parameter (YAML value: 3, 0.5, null, '[1, 2]'), of the type of its default; repeatable",
    )
    common(r)
    r.set_defaults(func=_guard(_cmd_run))

    ra = ss.add_parser("run-all", help="run every study on its defaults (for scheduled jobs)")
    ra.add_argument("--only", nargs="+", metavar="NAME", help="run only these studies")
    common(ra)
    ra.set_defaults(func=_guard(_cmd_run_all))

    k = ss.add_parser("kernel", help="register the project kernel for JupyterLab")
    k.set_defaults(func=_guard(_cmd_kernel))
