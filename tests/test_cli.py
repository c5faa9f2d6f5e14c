"""The command line a user expects (issue 14, point 8): ``--version``, defaults in every ``--help``,
a fast start (nothing heavy imported for ``--help``; no dask.array for an in-memory margin), a
``marginsim`` logger shown with ``-v`` / ``-vv`` and silenced with ``-q``, progress bars on a
terminal only, and ``import marginsim`` lazy but whole."""

from __future__ import annotations

import importlib.metadata
import io
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import marginsim
from marginsim import cli, studies
from marginsim.cli import main
from marginsim.errors import InputError
from marginsim.scenario import parse_scenario
from marginsim.studies import runner

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "scenarios" / "span_seed_example.yaml"
HEAVY = ("numpy", "xarray", "pandas", "numba", "dask", "scipy", "pydantic")


def _modules_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; return what it prints last (JSON) and its stdout."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


_HELP = """
import contextlib, io, json, sys
import marginsim.cli
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        marginsim.cli.main({argv!r})
    except SystemExit:
        pass
print(json.dumps({{"modules": sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r}),
                   "text": buf.getvalue()}}))
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["margin", "--help"], ["study", "run", "--help"], ["span-file", "--help"]],
)
def test_help_and_version_import_nothing_heavy(argv):
    got = _modules_after(_HELP.format(argv=argv, heavy=HEAVY))
    assert got["modules"] == [], f"{argv} imported {got['modules']}"
    assert got["text"].startswith("usage: marginsim") or got["text"].startswith("marginsim ")


def test_margin_of_the_seed_example_does_not_import_dask_numba_or_scipy():
    code = f"""
import contextlib, io, json, sys
import marginsim.cli
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    status = marginsim.cli.main(["margin", {str(SEED)!r}, "--json"])
print(json.dumps({{"status": status, "dask": "dask" in sys.modules,
                   "distributed": "distributed" in sys.modules, "zarr": "zarr" in sys.modules,
                   "scipy_optimize": "scipy.optimize" in sys.modules,
                   "numba": "numba" in sys.modules, "scipy": "scipy" in sys.modules,
                   "maintenance": json.loads(buf.getvalue())["accounts"]["main"]["span"]["maintenance"]}}))
"""
    got = _modules_after(code)
    assert got["status"] == 0
    assert round(got["maintenance"], 2) == 609.40
    assert not got["dask"] and not got["distributed"] and not got["zarr"]
    assert not got["scipy_optimize"]  # only the account layer's conversion planner needs it
    # a small book runs on the numpy engine (the same numbers): no numba to load, no scipy.sparse
    assert not got["numba"] and not got["scipy"]


def test_a_span_book_imports_span_only():
    """The registry imports a built-in method's package on its first use: margining the SPAN seed
    example imports no other method, no other method's section model (but the account layer's, which
    the what-if variants use) and no SPAN-file reader."""
    code = f"""
import contextlib, io, json, sys
import marginsim.cli
from marginsim.registry import REGISTRY
with contextlib.redirect_stdout(io.StringIO()):
    status = marginsim.cli.main(["margin", {str(SEED)!r}, "--json"])
loaded = sorted(m for m in sys.modules if m.startswith(("marginsim.methods.", "marginsim.params.", "marginsim.io.span.")))
print(json.dumps({{"status": status, "loaded": loaded, "methods": list(REGISTRY)}}))
"""
    got = _modules_after(code)
    assert got["status"] == 0
    methods = {m.split(".")[2] for m in got["loaded"] if m.startswith("marginsim.methods.")}
    assert methods == {"span", "needs"}
    assert not [m for m in got["loaded"] if m.startswith("marginsim.io.span.")]
    params = {m.split(".")[2] for m in got["loaded"] if m.startswith("marginsim.params.")}
    assert not params & {"cfd", "portfolio_margin", "var", "strategy"}, params  # (what-if needs account's)
    # every built-in method is still known, in its order
    assert got["methods"][:6] == ["span", "cfd", "portfolio_margin", "account", "var", "strategy"]


def test_a_lazily_declared_method_is_the_same_spec_when_registered_again():
    from marginsim.methods import span
    from marginsim.registry import REGISTRY, register_method

    assert register_method(span.SPEC) is REGISTRY["span"] is span.SPEC


def test_a_section_of_a_method_not_imported_yet_is_validated_by_its_model():
    """The model of a file validates each section it has (its method imported for that), and
    refuses a section of a method it does not know."""
    base = {"name": "x", "as_of": "2026-03-10"}
    with pytest.raises(InputError, match="strategy.no_such_key"):
        parse_scenario({**base, "strategy": {"no_such_key": 1}})
    with pytest.raises(InputError, match="spam"):
        parse_scenario({**base, "spam": {}})
    with pytest.raises(InputError, match="var.holding_days: .*greater than or equal to 1"):
        parse_scenario({**base, "var": {"holding_days": 0}})
    assert parse_scenario({**base, "strategy": {}}).strategy is not None


def test_xarray_knows_dask_again_after_an_in_memory_run():
    """The CLI keeps xarray off dask only for the run: a chunked run in the same process works."""
    code = f"""
import contextlib, io, json, sys
import marginsim, marginsim.cli
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    marginsim.cli.main(["margin", {str(SEED)!r}, "--json"])
during = "dask" in sys.modules
import dask.array as da
import xarray as xr
from xarray.namedarray.utils import is_duck_dask_array
chunked = marginsim.margin({str(SEED)!r}, chunks=1, detail=False).to_dict()
print(json.dumps({{"during": during, "chunks": xr.DataArray(da.ones(3, chunks=1)).chunks,
                   "duck": is_duck_dask_array(da.ones(2)),
                   "same": chunked["accounts"] == json.loads(buf.getvalue())["accounts"]}}))
"""
    got = _modules_after(code)
    assert got == {"during": False, "chunks": [[1, 1, 1]], "duck": True, "same": True}


def test_xarray_without_dask_when_dask_is_imported_changes_nothing():
    import dask.array as da
    from xarray.namedarray import utils

    from marginsim.commands import xarray_without_dask

    before = utils.is_dask_collection
    with xarray_without_dask():
        assert utils.is_dask_collection is before and utils.is_duck_dask_array(da.ones(2))


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert (
        out == f"marginsim {importlib.metadata.version('marginsim')}" == f"marginsim {marginsim.__version__}"
    )


@pytest.mark.parametrize(
    "argv,defaults",
    [
        (["margin", "--help"], ["(default: auto)"]),
        (["study", "run", "--help"], ["(default: reports)", "(default: 600.0)"]),
        (["study", "run-all", "--help"], ["(default: reports)", "(default: 600.0)"]),
    ],
)
def test_help_shows_defaults(capsys, argv, defaults):
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for d in defaults:
        assert d in text


def test_every_option_with_a_default_shows_it():
    """No option of any (sub-)parser hides a default that is not empty."""
    import argparse

    def parsers(p):
        yield p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sp in a.choices.values():
                    yield from parsers(sp)

    missing = []
    for p in parsers(cli.build_parser()):
        fmt = p._get_formatter()
        for a in p._actions:
            if a.option_strings and a.default not in (None, False, argparse.SUPPRESS) and a.help:
                text = fmt._get_help_string(a) or ""
                if "default" not in text:
                    missing.append(f"{p.prog} {a.option_strings[0]}")
    assert missing == []


# -- logging ----------------------------------------------------------------------------------------


def test_default_prints_no_log_lines(capsys):
    assert main(["margin", str(SEED)]) == 0
    captured = capsys.readouterr()
    assert "609.40" in captured.out
    assert captured.err == ""


def test_v_logs_the_main_steps_at_info(capsys):
    assert main(["-v", "margin", str(SEED), "--json"]) == 0
    err = capsys.readouterr().err
    assert "INFO marginsim.api: scenario 'span-seed-example' loaded in" in err
    assert "positions 2, accounts 1, contracts 2, grid none" in err
    assert "methods span, engine auto (numba)" in err
    assert "span: margined in" in err and "margin in" in err
    assert "DEBUG" not in err


def test_vv_logs_debug(capsys):
    assert main(["-vv", "schema"]) == 0
    err = capsys.readouterr().err
    assert "DEBUG marginsim: marginsim" in err and "'command': 'schema'" in err


def test_q_leaves_errors_only(capsys, tmp_path):
    assert main(["-q", "-v", "margin", str(SEED)]) == 0
    assert capsys.readouterr().err == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nas_of: 2026-01-01\ncurrency: USD\npositions: 3\n")
    assert main(["-q", "margin", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("marginsim: error:") and "bad.yaml" in err


def test_logging_is_restored_after_main(capsys):
    import logging

    logger = logging.getLogger("marginsim")
    before = (logger.level, list(logger.handlers))
    main(["-vv", "schema"])
    capsys.readouterr()
    assert (logger.level, list(logger.handlers)) == before


def test_module_loggers_sit_below_the_marginsim_logger():
    import logging

    from marginsim import api, commands

    for mod in (api, commands):
        assert mod.log.name.startswith("marginsim.") and mod.log.parent is logging.getLogger("marginsim")


# -- progress bars ----------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


MANY = ROOT / "scenarios" / "overview_mixed_book.yaml"


def test_chunked_run_shows_a_progress_bar_on_a_terminal(monkeypatch, capsys):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["margin", str(MANY), "--chunks", "1", "--json"]) == 0
    bar = term.getvalue()
    assert f"margin {MANY}" in bar and "task" in bar and "100%" in bar
    assert json.loads(capsys.readouterr().out)["accounts"]


def test_no_progress_bar_when_stderr_is_not_a_terminal_or_with_q(monkeypatch, capsys):
    assert main(["margin", str(MANY), "--chunks", "1", "--json"]) == 0
    assert capsys.readouterr().err == ""
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["-q", "margin", str(MANY), "--chunks", "1", "--json"]) == 0
    assert term.getvalue() == ""


def test_stored_book_run_shows_a_progress_bar_on_a_terminal(monkeypatch, capsys, tmp_path):
    from marginsim.io.book import write_book

    store = write_book(tmp_path / "book.zarr", marginsim.load(MANY))
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["margin", str(MANY), "--book", str(store), "--json"]) == 0
    assert "task" in term.getvalue()
    assert json.loads(capsys.readouterr().out)["accounts"]


def _tiny_study(folder: Path) -> None:
    params = f"scenario = {str(SEED)!r}\nout_dir = '.'\n"
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]})])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["marginsim"] = {"title": "Tiny", "summary": "a test study"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "tiny.ipynb")


@pytest.mark.parametrize(
    "tty,argv,shown", [(True, [], True), (False, [], False), (True, ["--no-progress"], False)]
)
def test_study_progress_bar_names_the_study_on_a_terminal_only(monkeypatch, tmp_path, tty, argv, shown):
    import papermill

    _tiny_study(tmp_path / "nbs")
    seen = {}

    def fake_execute(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("not run in this test")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setattr(runner, "ensure_kernel", lambda: "kernel")
    monkeypatch.setattr(sys, "stderr", _Terminal() if tty else io.StringIO())
    status = main(
        ["study", "run", "tiny", "--notebooks", str(tmp_path / "nbs"), "--out", str(tmp_path / "o"), *argv]
    )
    assert status == 1  # the fake run failed
    assert seen["progress_bar"] == ({"desc": "tiny"} if shown else False)


# -- import marginsim: lazy, but whole --------------------------------------------------------------


def test_import_marginsim_is_light_and_complete():
    code = """
import json, sys
import marginsim
light = sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "xarray", "pandas", "numba", "dask"))
names = sorted(dir(marginsim))
ok = all(getattr(marginsim, n) is not None for n in marginsim.__all__)
print(json.dumps({"light": light, "names": names, "ok": ok, "margin": marginsim.margin.__module__}))
"""
    got = _modules_after(code)
    assert got["light"] == []
    assert set(marginsim.__all__) <= set(got["names"]) and got["ok"] and got["margin"] == "marginsim.api"


def test_every_lazy_name_resolves():
    for pkg in (marginsim, studies):
        assert set(pkg._LAZY) == set(pkg.__all__) - {"__version__"}
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None
        with pytest.raises(AttributeError):
            pkg.no_such_name  # noqa: B018


def test_builtin_methods_are_registered_whatever_is_imported_first():
    """``from marginsim.scenario import load_scenario`` alone knows the methods' sections."""
    code = f"""
import json
from marginsim.scenario import load_scenario
from marginsim.registry import REGISTRY
sc = load_scenario({str(SEED)!r})
print(json.dumps({{"span": sc.span is not None, "methods": list(REGISTRY)}}))
"""
    got = _modules_after(code)
    assert got["span"] and got["methods"][:4] == ["span", "cfd", "portfolio_margin", "account"]


def test_a_method_registered_before_the_first_look_comes_after_the_builtins():
    code = """
import json
from marginsim.registry import REGISTRY, MethodSpec, register_method
from marginsim.params import StrictModel
register_method(MethodSpec("zz_first", lambda inputs, engine="auto": None, StrictModel))
print(json.dumps(list(REGISTRY)))
"""
    got = _modules_after(code)
    assert got[:4] == ["span", "cfd", "portfolio_margin", "account"] and got[-1] == "zz_first"
