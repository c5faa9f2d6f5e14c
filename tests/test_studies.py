"""Studies: the notebooks run by papermill on small parameters, their HTML reports checked offline
in a real headless browser, and the runner's failure paths (atomic report, kept notebook)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from figure_text import colorbar_titles, leaks, table_text, value_axis_titles, visible_text
from headless_browser import chromium, render
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import marginsim
from marginsim import plots, studies
from marginsim.cli import main
from marginsim.labels import method_name
from marginsim.studies import runner
from marginsim.studies.cli import parse_value
from marginsim.whatif import best_hedge, what_if

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SCENARIOS = ROOT / "scenarios"

#: Small parameters per study (seconds per run) and the figures each report must show at least.
SMALL: dict[str, dict] = {
    "overview": {"n_shift": 3},
    "span_study": {"n_scan": 2, "n_shift": 3},
    "portfolio_margin_study": {"n_shift": 3},
    "cfd_study": {"n_paths": 200, "n_steps": 5, "leverage_used": [0.5, 1.0]},
    "account_study": {},  # the default path has 5 steps
    "margin_model_study": {"n_lookback": 250},  # VaR on 1 year of returns: the backtest from 2000
}
MIN_FIGURES = {
    "overview": 3,
    "span_study": 4,
    "portfolio_margin_study": 6,
    "cfd_study": 3,
    "account_study": 2,
    "margin_model_study": 3,
}
REQUIRED = ("overview", "span_study", "portfolio_margin_study", "cfd_study", "account_study")
STUDY_NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))

FIGURE_DIV = re.compile(r'class="plotly-graph-div"')


# -- the committed notebooks ----------------------------------------------------------------------


def test_required_studies_exist():
    assert set(REQUIRED) <= set(STUDY_NAMES)
    assert set(STUDY_NAMES) <= set(SMALL), "every notebook needs small test parameters in SMALL"


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_notebook_is_committed_clean(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), (
        "commit notebooks without outputs"
    )
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "plain words" in nb.cells[0].source
    assert nb.metadata["kernelspec"]["name"] == runner.KERNEL_NAME
    params = studies.study_parameters(studies.get_study(name))
    for p in ("scenario", "out_dir", "seed", "scheduler"):
        assert p in params
    assert any(p.startswith("n_") for p in params), "a grid size parameter"
    assert params["scheduler"]["default"] == "None"
    default_scenario = (NOTEBOOKS / eval(params["scenario"]["default"])).resolve()
    assert default_scenario.is_file()
    # everything else is derived: the parameters cell only assigns literals
    src = tagged[0].source
    assert "import" not in src and "marginsim" not in src


def test_study_list_cli(capsys):
    assert main(["study", "list", "-v"]) == 0
    out = capsys.readouterr().out
    for name in STUDY_NAMES:
        assert name in out
    assert "-p scenario" in out


# -- running every notebook on small parameters ------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    done = {}
    for name in STUDY_NAMES:
        done[name] = studies.run_study(name, parameters=SMALL[name], out=out, progress=False, timeout=300)
    return done


def _figures(nb) -> int:
    return sum(
        len(FIGURE_DIV.findall(o.get("data", {}).get("text/html", "")))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type in ("display_data", "execute_result")
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDY_NAMES)
def test_study_runs_and_exports(runs, name):
    run = runs[name]
    assert run.ok, f"{name} failed: {run.error}; see {run.notebook}"
    assert run.html.is_file() and run.notebook.is_file()
    leftovers = [p.name for p in run.html.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    nb = nbformat.read(run.notebook, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    n_fig = _figures(nb)
    assert n_fig >= MIN_FIGURES[name]
    html = run.html.read_text(encoding="utf-8")
    # offline: nothing from the network, plotly.js embedded exactly once, every figure in the page
    assert studies.external_resources(html) == []
    assert html.count("window.__marginsimDefine = window.define") == 1
    assert len(FIGURE_DIV.findall(html)) == n_fig
    assert not re.search(r"<script[^>]+src=", html)
    # no code (--no-input), and the page opens with the summary and its table
    assert "use_offline_renderer" not in html and "studies.connect(scheduler)" not in html
    code_cells = re.findall(r'class="jp-Cell jp-CodeCell[^"]*"', html)
    assert code_cells and all("jp-mod-noInput" in c for c in code_cells)
    summary = html.index(">Summary<")
    assert summary < html.index("<table") < html.index("plotly-graph-div")
    # the notebook wrote its outputs into the output folder
    assert list(run.html.parent.glob(f"{name}-*.json")) and list(run.html.parent.glob(f"{name}-*.csv"))
    assert ">Provenance<" in html


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDY_NAMES)
def test_report_renders_in_headless_browser(request, name, tmp_path):
    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    run = request.getfixturevalue("runs")[name]
    assert run.ok, run.error
    expected = _figures(nbformat.read(run.notebook, as_version=4))
    page = render(run.html, tmp_path)
    assert page.probe_ran, "the page's scripts did not run"
    assert page.errors == []
    assert page.plots == expected
    assert page.svgs >= 2 * expected


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDY_NAMES)
def test_report_reads_in_display_names_with_units(runs, name):
    run = runs[name]
    assert run.ok, run.error
    nb = nbformat.read(run.notebook, as_version=4)
    figures = [
        o["data"]["application/vnd.plotly.v1+json"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "application/vnd.plotly.v1+json" in o.get("data", {})
    ]
    assert len(figures) >= MIN_FIGURES[name]
    for fig in figures:
        title = fig["layout"]["title"]["text"]
        assert leaks(visible_text(fig)) == [], title
        for axis in value_axis_titles(fig) + colorbar_titles(fig):
            assert re.search(r"\[[^\]]+\]", axis), f"{title}: {axis!r} has no unit"
    html = run.html.read_text(encoding="utf-8")
    heads = table_text(html)
    assert leaks(heads) == [], name
    # the reports are one column: no text points left or right
    assert not re.search(r"\b(Left|Right):", html)
    captions = re.findall(r"<caption>(.*?)</caption>", html, re.S)
    assert captions and re.search(r"\bat\b", captions[0], re.I), "the summary names its grid point"
    if name == "account_study":  # the summary table is at the step of the margin call the text narrates
        assert "enters <strong>margin call</strong> at step 3" in html
        assert "step 3." in captions[0]


# -- the runner: failure paths, atomic report, kernel, parameters -----------------------------------


def _tiny_notebook(folder: Path, name: str = "tiny", needs: dict | None = None) -> Path:
    """A small study: optional sleep and failure, one plotly figure."""
    cells = [
        new_markdown_cell("# Tiny\n\nIn plain words: a test study."),
        new_code_cell(
            f"scenario = {str(SCENARIOS / 'span_seed_example.yaml')!r}\nout_dir = '.'\nfail = False\n"
            "sleep = 0.0\nn_points = 2\nseed = 0\nscheduler = None\nlevels = [0.5, 1.0]\n"
            "label = 'tiny'\naccount = None",
            metadata={"tags": ["parameters"]},
        ),
        new_code_cell(
            "import time\nimport plotly.graph_objects as go\nfrom marginsim import plots\nplots.use_offline_renderer()"
        ),
        new_markdown_cell("## Summary"),
        new_code_cell("time.sleep(sleep)\nif fail:\n    raise RuntimeError('boom')"),
        new_code_cell("go.Figure(go.Bar(x=list(range(n_points)), y=list(range(n_points)))).show()"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {
            "name": runner.KERNEL_NAME,
            "display_name": "Python (marginsim)",
            "language": "python",
        },
        "language_info": {"name": "python"},
        "marginsim": {"title": "Tiny", "summary": "a test study", "needs": needs or {"methods": ["span"]}},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def tiny(tmp_path):
    nbdir = tmp_path / "nbs"
    _tiny_notebook(nbdir)
    out = tmp_path / "out"
    out.mkdir()
    return nbdir, out


def test_failed_run_keeps_notebook_and_previous_report(tiny, capsys):
    nbdir, out = tiny
    report = out / "tiny-span-seed-example.html"
    report.write_text("PREVIOUS GOOD REPORT")
    before = report.stat().st_mtime_ns
    status = main(
        [
            "study",
            "run",
            "tiny",
            "--notebooks",
            str(nbdir),
            "--out",
            str(out),
            "-p",
            "fail",
            "true",
            "--no-progress",
        ]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "RuntimeError" in err and "boom" in err
    assert report.read_text() == "PREVIOUS GOOD REPORT" and report.stat().st_mtime_ns == before
    kept = out / "tiny-span-seed-example.ipynb"
    nb = nbformat.read(kept, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "RuntimeError"
    assert sorted(p.name for p in out.iterdir()) == sorted([report.name, kept.name])


def test_successful_run_replaces_report(tiny):
    nbdir, out = tiny
    report = out / "tiny-span-seed-example.html"
    report.write_text("OLD")
    run = studies.run_study(
        "tiny",
        out=out,
        notebooks=nbdir,
        progress=False,
        parameters={"n_points": 3},
        scheduler="tcp://127.0.0.1:8786",
    )
    assert run.ok, run.error
    assert run.parameters["scheduler"] == "tcp://127.0.0.1:8786"  # passed on, not connected by the runner
    html = report.read_text()
    assert html != "OLD" and "plotly-graph-div" in html
    assert run.parameters["scenario"] == str((SCENARIOS / "span_seed_example.yaml").resolve())
    assert run.parameters["out_dir"] == str(out.resolve())
    assert oct(report.stat().st_mode & 0o777) != oct(0o600)
    # the report ends with its provenance: scenario file and its sha256, version, every parameter
    scenario = SCENARIOS / "span_seed_example.yaml"
    sha = hashlib.sha256(scenario.read_bytes()).hexdigest()
    tail = html[html.index(">Provenance<") :]
    assert html.index("plotly-graph-div") < html.index(">Provenance<")
    assert sha in tail and str(scenario.resolve()) in tail
    assert f"<code>{marginsim.__version__}</code>" in tail
    assert "<th><code>n_points</code></th><td><code>3</code></td>" in tail
    assert "<th><code>levels</code></th><td><code>[0.5, 1.0]</code></td>" in tail  # a default, as run
    assert "<th><code>sleep</code></th><td><code>0.0</code></td>" in tail
    run_at = re.search(r"<th>run at \(UTC\)</th><td><code>([^<]+)</code>", tail).group(1)
    when = dt.datetime.fromisoformat(run_at.replace("Z", "+00:00"))
    assert when.tzinfo is not None and abs(dt.datetime.now(dt.timezone.utc) - when) < dt.timedelta(days=1)
    kept = nbformat.read(run.notebook, as_version=4).metadata["marginsim"]["provenance"]
    assert kept["scenario_sha256"] == sha and kept["parameters"]["n_points"] == 3


def test_timeout_in_seconds_names_the_cell_and_the_limit(tmp_path, capsys):
    # a study whose only slow cell sleeps: --timeout 0.5 (a float: nbclient's own trait takes integers)
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Sleepy\n\nIn plain words: a test study."),
            new_code_cell("sleep = 60.0\nseed = 0", metadata={"tags": ["parameters"]}),
            new_code_cell("import time\n\ntime.sleep(sleep)"),
        ]
    )
    nb.metadata = {"kernelspec": {"name": runner.KERNEL_NAME, "display_name": "x", "language": "python"}}
    nbdir, out = tmp_path / "nbs", tmp_path / "out"
    nbdir.mkdir()
    nbformat.write(nb, nbdir / "sleepy.ipynb")
    argv = ["study", "run", "sleepy", "--notebooks", str(nbdir), "--out", str(out), "--no-progress"]
    assert main([*argv, "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "sleepy: FAILED" in err and "Timeout waiting" not in err
    assert "cell 3 of 3 ('import time') did not finish within 0.5 s (--timeout)" in err
    assert not (out / "sleepy-default.html").exists() and (out / "sleepy-default.ipynb").is_file()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_export_failure_keeps_previous_report(tiny, monkeypatch):
    nbdir, out = tiny
    report = out / "tiny-span-seed-example.html"
    report.write_text("OLD")

    def broken(*a, **k):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(runner, "export_html", broken)
    run = studies.run_study("tiny", out=out, notebooks=nbdir, progress=False)
    assert not run.ok and "exporter broke" in run.error
    assert report.read_text() == "OLD" and run.notebook.is_file()


@pytest.mark.slow
def test_run_all_reports_each_and_fails_on_any(tmp_path, capsys):
    nbdir = tmp_path / "nbs"
    _tiny_notebook(nbdir, "a_ok")
    bad = _tiny_notebook(nbdir, "b_bad")
    nb = nbformat.read(bad, as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace("fail = False", "fail = True")
    nbformat.write(nb, bad)
    out = tmp_path / "out"
    assert main(["study", "run-all", "--notebooks", str(nbdir), "--out", str(out), "--no-progress"]) == 1
    text = capsys.readouterr()
    assert "1 of 2 studies ok; failed: b_bad" in text.out
    assert (out / "a_ok-span-seed-example.html").is_file()
    assert not (out / "b_bad-span-seed-example.html").exists()
    assert (out / "b_bad-span-seed-example.ipynb").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["study", "run", "no_such_study"], "no study 'no_such_study'"),
        (
            ["study", "run", "tiny", "-p", "nope", "1"],
            "study tiny: -p nope: no such parameter (parameters: scenario",
        ),
        (["study", "run", "tiny", "--scenario", "missing.yaml"], "scenario file not found"),
    ],
)
def test_bad_requests_exit_2_before_running(tiny, capsys, argv, message):
    nbdir, out = tiny
    assert main([*argv, "--notebooks", str(nbdir), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_invalid_scenario_exits_2(tiny, tmp_path, capsys):
    nbdir, out = tiny
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nas_of: 2026-11-20\nunknown_key: 1\n")
    assert (
        main(["study", "run", "tiny", "--scenario", str(bad), "--notebooks", str(nbdir), "--out", str(out)])
        == 2
    )
    assert "unknown_key" in capsys.readouterr().err


@pytest.fixture
def no_kernel(monkeypatch):
    """papermill replaced by a copy of the notebook (no kernel): the calls it got are recorded."""
    import papermill

    calls = []

    def fake(input_path, output_path, parameters=None, **kwargs):
        calls.append(dict(parameters or {}))
        shutil.copy(input_path, output_path)

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    return calls


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "n_points", "abc"], "study tiny: -p n_points: expected an integer, got 'abc'"),
        (["-p", "n_points", "[1,"], "study tiny: -p n_points: expected an integer, got '[1,'"),
        (["-p", "n_points", "2.5"], "-p n_points: expected an integer, got 2.5"),
        (["-p", "n_points", "true"], "-p n_points: expected an integer, got True"),
        (["-p", "n_points", "null"], "-p n_points: expected an integer, got None"),
        (["-p", "sleep", ".nan"], "-p sleep: expected a finite number, got nan"),
        (["-p", "sleep", "1.0e+999"], "-p sleep: expected a finite number, got inf"),
        (["-p", "fail", "1"], "-p fail: expected true or false, got 1"),
        (["-p", "levels", "3"], "-p levels: expected a list, got 3"),
        (["-p", "levels", "[0.5, a]"], "-p levels: expected a list of finite numbers, got 'a' in [0.5, 'a']"),
        (["-p", "label", "[1, 2]"], None),  # a string parameter takes the text: not an error
        (["-p", "out_dir", "elsewhere"], "study tiny: -p out_dir: set by the runner: use --out"),
        (["--timeout", "nan"], "--timeout: expected seconds, a finite number >= 0"),
        (["--timeout", "-1"], "--timeout: expected seconds, a finite number >= 0 (0: no limit), got -1.0"),
    ],
)
def test_bad_parameter_values_exit_2_before_the_kernel_starts(tiny, capsys, no_kernel, args, message):
    nbdir, out = tiny
    status = main(
        ["study", "run", "tiny", *args, "--notebooks", str(nbdir), "--out", str(out), "--no-progress"]
    )
    if message is None:
        assert status == 0 and no_kernel[0]["label"] == "[1, 2]"
        return
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("marginsim: error: ") and message in err and err.count("\n") == 1
    assert no_kernel == [] and list(out.iterdir()) == []


def test_parameter_values_of_the_right_type_pass(tiny, no_kernel):
    nbdir, out = tiny
    argv = ["study", "run", "tiny", "--notebooks", str(nbdir), "--out", str(out), "--no-progress"]
    extra = ["-p", "sleep", "1", "-p", "label", "123", "-p", "account", "[x", "-p", "levels", "[1, 0.5]"]
    assert main([*argv, *extra]) == 0
    got = no_kernel[0]
    assert (
        got["sleep"] == 1 and got["label"] == "123" and got["account"] == "[x" and got["levels"] == [1, 0.5]
    )
    # the Python API checks the same way
    with pytest.raises(studies.StudyError, match="-p n_points: expected an integer, got '3'"):
        studies.run_study("tiny", out=out, notebooks=nbdir, parameters={"n_points": "3"})
    assert studies.run_study("tiny", out=out, notebooks=nbdir, parameters={"n_points": np.int64(3)}).ok


def test_study_refuses_a_scenario_it_cannot_use(tmp_path, capsys, no_kernel):
    out = tmp_path / "out"
    cfd = SCENARIOS / "cfd_seed_example.yaml"
    assert main(["study", "run", "span_study", "--scenario", str(cfd), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"marginsim: error: study span_study: scenario {cfd}: needs the span method, "
        "which does not apply to this book (methods that apply: cfd)\n"
    )
    assert no_kernel == [] and not out.exists()


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_each_study_declares_what_it_needs_and_its_default_scenario_has_it(name):
    study = studies.get_study(name)
    assert set(study.needs) <= set(runner.NEEDS_KEYS) and study.needs.get("methods")
    default = (NOTEBOOKS / runner.parameter_defaults(study)["scenario"]).resolve()
    runner.check_needs(study, marginsim.load_scenario(default), default)  # no error


def test_needs_any_method_and_grid_keys(tmp_path):
    nbdir = tmp_path / "nbs"
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: empty\nas_of: 2026-11-20\ncurrency: USD\n")
    _tiny_notebook(nbdir, "any", needs={"methods": "any"})
    _tiny_notebook(nbdir, "path", needs={"grid": ["path"]})
    _tiny_notebook(nbdir, "typo", needs={"method": ["span"]})
    with pytest.raises(
        studies.StudyError, match=r"study any: scenario .*empty.yaml: no margin method applies"
    ):
        studies.run_study("any", empty, out=tmp_path / "out", notebooks=nbdir)
    with pytest.raises(
        studies.StudyError, match=r"span_seed_example.yaml: needs grid.path in the scenario file"
    ):
        studies.run_study("path", out=tmp_path / "out", notebooks=nbdir)
    with pytest.raises(
        studies.StudyError, match=r"typo.ipynb: metadata marginsim.needs: unknown key 'method'"
    ):
        studies.run_study("typo", out=tmp_path / "out", notebooks=nbdir)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "where, message",
    [
        ("report.html", "is a file, not a folder"),
        ("report.html/x", "is under"),
        ("report.html/x/y", "is under"),
    ],
)
def test_out_at_or_under_a_file_exits_2_before_running(tiny, capsys, no_kernel, where, message):
    nbdir, out = tiny
    existing = out / "report.html"
    existing.write_text("KEEP")
    target = out / where
    for cmd in (["run", "tiny"], ["run-all"]):
        assert main(["study", *cmd, "--notebooks", str(nbdir), "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"marginsim: error: --out {target}: ") and message in err
        assert err.count("\n") == 1
    assert (
        no_kernel == []
        and existing.read_text() == "KEEP"
        and [p.name for p in out.iterdir()] == ["report.html"]
    )


def test_scenario_given_twice_is_refused(tiny, no_kernel):
    nbdir, out = tiny
    other = SCENARIOS / "span_inter_commodity.yaml"
    with pytest.raises(studies.StudyError, match="-p scenario and --scenario both given"):
        studies.run_study(
            "tiny", SCENARIOS / "span_seed_example.yaml", {"scenario": str(other)}, out=out, notebooks=nbdir
        )
    assert no_kernel == []


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_interrupted_run_leaves_no_hidden_file(tiny, monkeypatch, capsys):
    from papermill.engines import NotebookExecutionManager

    nbdir, out = tiny
    report = out / "tiny-span-seed-example.html"
    report.write_text("OLD")
    original = NotebookExecutionManager.cell_complete

    def interrupt(self, cell, cell_index=None, **kw):  # Ctrl-C while the kernel runs the notebook
        original(self, cell, cell_index=cell_index, **kw)
        if cell_index == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(NotebookExecutionManager, "cell_complete", interrupt)
    argv = ["study", "run", "tiny", "--notebooks", str(nbdir), "--out", str(out), "--no-progress"]
    assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    assert _hidden(out) == []
    assert report.read_text() == "OLD" and (out / "tiny-span-seed-example.ipynb").is_file()


def test_interrupted_export_leaves_no_hidden_file(tiny, monkeypatch, no_kernel):
    nbdir, out = tiny
    report = out / "tiny-span-seed-example.html"
    report.write_text("OLD")

    def interrupt(path, text):  # killed mid-write: the temporary file of atomic_write_text stays
        Path(path).with_name(f".{Path(path).name}.half.tmp").write_text(text[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "atomic_write_text", interrupt)
    with pytest.raises(KeyboardInterrupt):
        studies.run_study("tiny", out=out, notebooks=nbdir, progress=False)
    assert report.read_text() == "OLD" and (out / "tiny-span-seed-example.ipynb").is_file()
    # a killed run's leftovers (this run's half-written file too) go with the next run of that study
    (out / ".tiny-span-seed-example.running.ipynb").write_text("{}")
    (out / ".tiny-span-seed-example.csv.k2j3.tmp").write_text("a,b")
    (out / ".tiny-span-seed-example.json.x9.tmp").write_text("{")
    (out / ".other-span-seed-example.html.k2j3.tmp").write_text("not ours")
    assert _hidden(out) == [
        "..tiny-span-seed-example.running.ipynb.half.tmp",
        ".other-span-seed-example.html.k2j3.tmp",
        ".tiny-span-seed-example.csv.k2j3.tmp",
        ".tiny-span-seed-example.json.x9.tmp",
        ".tiny-span-seed-example.running.ipynb",
    ]
    monkeypatch.undo()
    monkeypatch.setattr(__import__("papermill"), "execute_notebook", lambda i, o, **k: shutil.copy(i, o))
    assert studies.run_study("tiny", out=out, notebooks=nbdir, progress=False).ok
    assert _hidden(out) == [".other-span-seed-example.html.k2j3.tmp"]
    assert report.read_text() != "OLD"


@pytest.mark.slow
def test_terminated_or_killed_run_leaves_nothing_after_the_next_run(tiny):
    import signal
    import subprocess
    import time

    nbdir, out = tiny
    cmd = [sys.executable, "-m", "marginsim.cli", "study", "run", "tiny", "--notebooks", str(nbdir)]
    cmd += ["--out", str(out), "--no-progress"]
    running = out / ".tiny-span-seed-example.running.ipynb"

    def start_and_wait_for_the_kernel() -> subprocess.Popen:
        proc = subprocess.Popen([*cmd, "-p", "sleep", "600"], stderr=subprocess.PIPE, text=True)
        while not running.exists():  # papermill writes it once the kernel runs the notebook
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        return proc

    proc = start_and_wait_for_the_kernel()
    proc.send_signal(signal.SIGTERM)  # a scheduler stopping the job: cleaned up like Ctrl-C
    err = proc.communicate()[1]
    assert proc.returncode == 130 and "marginsim: interrupted" in err
    assert _hidden(out) == [] and (out / "tiny-span-seed-example.ipynb").is_file()

    proc = start_and_wait_for_the_kernel()
    proc.kill()  # no clean-up possible: the work file stays until the next run of the study
    proc.communicate()
    assert _hidden(out) == [running.name]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _hidden(out) == [] and (out / "tiny-span-seed-example.html").is_file()


def test_provenance_is_escaped(tiny, no_kernel):
    nbdir, out = tiny
    run = studies.run_study("tiny", out=out, notebooks=nbdir, parameters={"label": "<b>x</b> & y"})
    html = run.html.read_text()
    assert '<th><code>label</code></th><td><code>"&lt;b&gt;x&lt;/b&gt; &amp; y"</code></td>' in html
    assert "<b>x</b>" not in html


def test_provenance_fingerprints_the_files_the_scenario_reads(tiny, no_kernel, tmp_path):
    """A scenario's positions_file (relative to it) is in the report's provenance with its sha256."""
    nbdir, out = tiny
    data = yaml.safe_load((SCENARIOS / "span_seed_example.yaml").read_text())
    folder = tmp_path / "book"
    folder.mkdir()
    rows = "".join(f"main,{p['contract']},{p['quantity']}\n" for p in data.pop("positions"))
    (folder / "positions.csv").write_text("account,contract,quantity\n" + rows)
    data["positions_file"] = "positions.csv"
    scenario = folder / "seed_from_csv.yaml"
    scenario.write_text(yaml.safe_dump(data))
    run = studies.run_study("tiny", scenario=scenario, out=out, notebooks=nbdir, progress=False)
    html = run.html.read_text()
    tail = html[html.index(">Provenance<") :]
    sha = hashlib.sha256((folder / "positions.csv").read_bytes()).hexdigest()
    assert "<th>positions_file file</th>" in tail and str(folder / "positions.csv") in tail and sha in tail
    assert marginsim.load_scenario(scenario).referenced_files() == {"positions_file": folder / "positions.csv"}


def test_notebooks_write_their_files_atomically():
    # the CSV and JSON beside a report go through studies.atomic_write_text, as the report does
    for name in STUDY_NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        writes = re.findall(r"^.*out / f\"[^\"]+\.(?:csv|json)\".*$", code, flags=re.M)
        assert len(writes) == 2, name
        assert all(w.startswith("studies.atomic_write_text(out / ") for w in writes), writes
        assert ".to_csv(out" not in code and "to_json(out" not in code


def test_atomic_write_keeps_old_file_on_error(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old")
    studies.atomic_write_text(target, "new")
    assert target.read_text() == "new"

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        studies.atomic_write_text(target, "newer")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_project_kernel_is_this_python(tmp_path, monkeypatch):
    folder = studies.ensure_kernel()
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    # a stale 'marginsim' kernelspec earlier on the Jupyter path does not change what runs
    stale = tmp_path / "jp" / "kernels" / runner.KERNEL_NAME
    stale.mkdir(parents=True)
    (stale / "kernel.json").write_text(
        json.dumps({"argv": ["/no/such/python", "-m", "x"], "display_name": "x"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jp"))
    km = runner._kernel_manager_class()(kernel_name=runner.KERNEL_NAME)
    assert km.kernel_spec.argv[0] == sys.executable


def test_no_scheduler_no_client():
    assert studies.connect(None) is None and studies.connect("") is None


def test_parse_value():
    assert parse_value("3") == 3
    assert parse_value("0.5") == 0.5
    assert parse_value("null") is None
    assert parse_value("[0.5, 1]") == [0.5, 1]
    assert parse_value("{gold: 0.2}") == {"gold": 0.2}
    assert parse_value("main") == "main"
    assert parse_value("2026-11-20") == "2026-11-20"
    assert parse_value("[unclosed") == "[unclosed"


# -- HTML: the CDN check ----------------------------------------------------------------------------


def _small_nb():
    nb = new_notebook(cells=[new_markdown_cell("# t\n\n$x^2$"), new_code_cell("1")])
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=1)]
    return nb


def test_external_resources_finds_network_loads():
    page = (
        '<html><head><script src="https://cdn.example/x.js"></script>'
        '<link rel="stylesheet" href="//cdn.example/a.css">'
        "<style>@import url('http://fonts.example/f.css');</style>"
        '<script src="local.js"></script><script>var u = "https://in.a.string";</script>'
        '<img src="data:image/png;base64,AAAA"></head></html>'
    )
    found = studies.external_resources(page)
    assert "https://cdn.example/x.js" in found and "//cdn.example/a.css" in found
    assert any("fonts.example" in f for f in found)
    assert len(found) == 3


def test_default_lab_template_loads_from_cdn_ours_does_not():
    from nbconvert import HTMLExporter

    default, _ = HTMLExporter(template_name="lab").from_notebook_node(_small_nb())
    assert studies.external_resources(default), (
        "nbconvert's lab template loads require.js / MathJax from a CDN"
    )
    ours = studies.export_html(_small_nb(), title="t")
    assert studies.external_resources(ours) == []
    assert "<title>t</title>" in ours
    assert "require.min.js" not in ours and "mathjax" not in ours.lower()


def test_offline_renderer_figure_has_no_cdn():
    name = plots.use_offline_renderer()
    assert plots.OFFLINE_RENDERER in name
    import plotly.graph_objects as go
    import plotly.io as pio

    bundle = pio.renderers[plots.OFFLINE_RENDERER].to_mimebundle(go.Figure(go.Bar(y=[1, 2])).to_dict())
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html and "plotly-graph-div" in html
    assert studies.external_resources(html) == [] and "mathjax" not in html.lower()
    assert len(html) < 20_000, "plotly.js is embedded once per notebook, not per figure"


# -- figures and what-ifs without a kernel ----------------------------------------------------------


@pytest.fixture(scope="module")
def span_result():
    return marginsim.margin(SCENARIOS / "span_inter_commodity.yaml")


def test_span_figures(span_result):
    span = span_result["span"]
    heat = plots.risk_array_heatmap(span)
    assert heat.data[0].type == "heatmap" and np.shape(heat.data[0].z) == (3, 16)
    fall = plots.span_waterfall(span, "hedge-fund")
    wf = fall.data[0]
    assert wf.type == "waterfall"
    at = studies.base_point(span.sel(account="hedge-fund"), keep=("group",))
    totals = dict(zip(wf.x, wf.y))
    assert totals["maintenance"] == pytest.approx(float(at["maintenance"]))
    assert totals["SPAN risk"] == pytest.approx(float(at["span_risk"]))
    # relative bars add up to the totals
    rel = np.array([y for y, m in zip(wf.y, wf.measure) if m == "relative"])
    assert rel.sum() == pytest.approx(float(at["initial"]))
    lines = plots.lines_over(span[["maintenance", "initial"]], "shift", by="account", title="t")
    # every (account, variable) line is in the legend; lines with equal values are drawn once, "a = b"
    shown = [part for t in lines.data for part in t.name.split(" = ")]
    assert sorted(shown) == sorted(f"{a}: {v}" for a in span["account"].values for v in ("maintenance", "initial"))


def test_scan_range_grid_is_one_call():
    book = studies.load_book(SCENARIOS / "span_seed_example.yaml")
    res = marginsim.margin(
        studies.with_grid(book, price_scan_scale=[0.5, 1.0, 2.0], vol_scan_scale=[1.0, 2.0])
    )
    m = res["span"]["maintenance"]
    assert dict(m.sizes) == {"account": 1, "price_scan_scale": 3, "vol_scan_scale": 2}
    base = marginsim.margin(book)["span"]["maintenance"].sel(account="main")
    assert float(m.sel(account="main", price_scan_scale=1.0, vol_scan_scale=1.0)) == pytest.approx(
        float(base)
    )
    fig = plots.grid_heatmap(m.sel(account="main"), "vol_scan_scale", "price_scan_scale", title="t")
    assert np.shape(fig.data[0].z) == (3, 2)


def test_without_group_and_top_driver():
    book = studies.load_book(SCENARIOS / "pm_small_cap_concentrated.yaml")
    inputs = marginsim.load(book)
    pm = marginsim.margin(inputs, methods=["portfolio_margin"])["portfolio_margin"]
    driver = studies.pm_top_driver(pm, "main")
    assert driver == str(pm["single_name_driver"].sel(account="main").values)  # binding: single name
    quantities = inputs.book["quantity"].values.copy()
    what_if = studies.without_group(inputs, driver, "main")
    np.testing.assert_array_equal(inputs.book["quantity"].values, quantities)  # original unchanged
    moved = what_if.book["quantity"].values != inputs.book["quantity"].values
    groups = inputs.contracts["group"].values[inputs.book["contract_index"].values]
    assert set(groups[moved]) == {driver}
    after = marginsim.margin(what_if, methods=["portfolio_margin"])["portfolio_margin"]
    assert float(after["maintenance"].sel(account="main")) < float(pm["maintenance"].sel(account="main"))


def test_cfd_leverage_book_one_account_per_cell():
    book = studies.load_book(SCENARIOS / "cfd_seed_example.yaml")
    mc_book, combos = studies.cfd_leverage_book(
        book, [0.5, 1.0], {"major_fx": 0.08, "crypto": 0.7}, paths=50, steps=3, seed=1
    )
    assert len(combos) == 4 and set(combos["cap"]) == {30.0, 2.0}
    cfd = marginsim.margin(mc_book, methods=["cfd"])["cfd"]
    init = studies.base_point(cfd["initial"], keep=("account",)).to_pandas()
    # initial margin = leverage used x cash (2,000 EUR in the seed file)
    assert init.values == pytest.approx((combos.loc[init.index, "leverage_used"] * 2000.0).values)
    grid = studies.leverage_grid(cfd["close_out_probability"], combos)
    assert dict(grid.sizes) == {"cfd_class": 2, "leverage_used": 2}
    assert ((grid >= 0) & (grid <= 1)).all()


def test_overview_summary_lists_every_method_that_applies():
    book = studies.load_book(SCENARIOS / "overview_mixed_book.yaml")
    assert set(studies.applicable_methods(book)) >= {"span", "portfolio_margin", "cfd"}
    res, problems = studies.margin_by_method(book)
    assert problems == {}
    table = studies.summary_table(res, {"account": "not landed"})
    assert list(table.index.get_level_values("account").unique()) == ["main", "hedged", "(all)"]
    assert table.loc[("(all)", "account"), "note"] == "not run: not landed"
    heads = studies.headline(res)
    assert heads.loc["main", ("span", "maintenance")] == pytest.approx(
        float(res["span"]["maintenance"].sel(account="main"))
    )


def test_summary_note_names_the_grid_point_of_its_figures():
    book = studies.load_book(SCENARIOS / "span_seed_example.yaml")
    res = marginsim.margin(studies.with_grid(book, shift=[-0.1, 0.1]), methods=["span"])
    table = studies.summary_table(res)
    # no shift of 0 in the grid: the figures are at the first point, and the note says so
    assert set(table["note"]) == {"shift=-0.1"}
    first = res["span"]["maintenance"].isel(shift=0).to_pandas()
    assert table.xs("span", level="method")["maintenance"].to_dict() == first.to_dict()


def test_account_plan_replayed_on_balances():
    res = marginsim.margin(SCENARIOS / "account_forced_conversion.yaml", methods=["account"])
    acc = res["account"]
    moved = studies.balances_before_after(acc, "client-b")  # a transfer-only plan: HKD NonHK_ -> HK_
    assert moved.loc[("HK_", "HKD"), "after"] - moved.loc[("HK_", "HKD"), "before"] == pytest.approx(164000.0)
    assert moved.loc[("NonHK_", "HKD"), "after"] - moved.loc[("NonHK_", "HKD"), "before"] == pytest.approx(
        -164000.0
    )
    # a conversion keeps the base value (at the plan's rate = the FX table's cross rate)
    conv = studies.balances_before_after(acc, "client-a")
    assert conv["after_base"].sum() == pytest.approx(conv["before_base"].sum(), rel=1e-6)
    assert len(studies.movements(acc, "client-a")) == 1


def test_straight_path_and_decision_point():
    book = studies.load_book(SCENARIOS / "account_hk_margin_call.yaml")
    path = studies.straight_path(book, 3, -0.1)
    assert path["HSI"] == pytest.approx([25000.0, 23750.0, 22500.0])
    acc = marginsim.margin(studies.with_grid(book, path=path), methods=["account"])["account"]
    assert acc.sizes["step"] == 3
    full = marginsim.margin(book, methods=["account"])["account"]
    assert studies.decision_point(full) == {"step": 4}


# -- the what-if and attribution study ----------------------------------------------------------------
# (its small parameters and figure count are registered here, at the end of the file, beside its tests)

SMALL["what_if_study"] = {"n_quantity": 3}
MIN_FIGURES["what_if_study"] = 8  # 3 waterfalls, marginal vs contribution, before/after, 3 hedge maps

WHAT_IF_BOOK = SCENARIOS / "overview_mixed_book.yaml"
WHAT_IF_TRADES = SCENARIOS / "trades" / "what_if_trades.yaml"


@pytest.fixture(scope="module")
def what_if_direct():
    """The default book's attribution, trades and best hedges (quantities up to 3), computed directly."""
    attributed = marginsim.margin(WHAT_IF_BOOK, attribution=True)
    return (
        attributed,
        what_if(WHAT_IF_BOOK, WHAT_IF_TRADES),
        best_hedge(WHAT_IF_BOOK, max_quantity=3),
    )


def test_bundled_trades_file_works_with_the_what_if_command(capsys):
    assert main(["what-if", str(WHAT_IF_BOOK), "--trades", str(WHAT_IF_TRADES), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in out["trades"]][:2] == ["sell 2 Dec futures", "roll Dec into Mar"]
    roll = out["trades"][1]
    assert roll["account"] == "hedged" and roll["legs"] == [
        {"contract": "IDX-DEC26", "quantity": -3.0},
        {"contract": "IDX-MAR27", "quantity": 3.0},
    ]
    # the CFD order of 1,000,000 EUR is more than the account's 20,000 USD of cash can fund
    assert out["trades"][-1]["methods"]["cfd"]["accepted"] is False
    assert out["trades"][-2]["methods"]["cfd"]["accepted"] is True


def test_what_if_study_tables_without_a_kernel(what_if_direct):
    attributed, wi, hedge = what_if_direct
    table = studies.attribution_table(attributed)
    # contributions add up to each account's maintenance, per method (the waterfalls' last bar)
    sums = table.groupby(["method", "account"])["contribution"].sum()
    for (m, acct), total in sums.items():
        assert total == pytest.approx(float(attributed[m]["maintenance"].sel(account=acct)), rel=1e-9)
    main_span = table.loc["span"][table.loc["span"]["account"] == "main"]
    assert list(main_span["contract"]) == ["IDX-DEC26", "IDX-MAR27-P5700"]  # largest contribution first
    assert studies.largest_account(attributed) == "main"

    trades = studies.what_if_table(wi)
    assert list(trades.index.get_level_values("trade").unique()) == list(wi.trades.ids)
    roll = trades.loc[("roll Dec into Mar", "span")]
    assert roll["legs"] == "-3 IDX-DEC26, +3 IDX-MAR27" and roll["account"] == "hedged"
    assert roll["maintenance after"] == float(wi["span"]["maintenance_after"].sel(trade="roll Dec into Mar"))
    # the CFD verdict only on the CFD rows of trades with a CFD leg
    verdict = trades.xs("cfd", level="method")["CFD order"]
    assert verdict["buy 1,000,000 EUR by CFD"].startswith("rejected: initial margin above the available cash")
    assert verdict["buy 2 index CFDs"] == "accepted" and verdict["sell 2 Dec futures"] == ""
    assert set(trades.xs("span", level="method")["CFD order"]) == {""}

    best = studies.best_hedge_table(hedge)
    row = best.loc[("main", "span")]
    b = hedge.best["main"]["span"]
    assert row["trade"] == f"{b['quantity']:+g} {b['contract']}"
    assert row["maintenance change"] == b["maintenance"]["change"] < 0
    grid = studies.hedge_grid(hedge, "portfolio_margin", "main")
    assert grid.sizes["quantity"] == 6 and 0.0 not in grid["quantity"].values
    # a cell of the grid = the what-if of that one trade on its own
    alone = what_if(WHAT_IF_BOOK, [{"account": "main", "contract": "MEGA-P230", "quantity": 3}])
    assert float(grid.sel(contract="MEGA-P230", quantity=3.0)) == pytest.approx(
        float(alone["portfolio_margin"]["maintenance_change"][0]), abs=1e-6
    )


def test_position_labels_tell_two_equal_positions_apart():
    assert plots.position_labels(["A", "B", "A", "A"], [2.0, -1.5, 2.0, 1e6], [0, 1, 7, 9]) == [
        "A +2 (position 0)",
        "B -1.5",
        "A +2 (position 7)",
        "A +1,000,000",
    ]


def _plotly_figures(nb) -> dict[str, dict]:
    return {
        o["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]["text"]: o["data"][
            "application/vnd.plotly.v1+json"
        ]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "application/vnd.plotly.v1+json" in o.get("data", {})
    }


def _array(values) -> np.ndarray:
    """A trace's numbers as the notebook stored them: a list, or plotly's typed array (base64)."""
    if isinstance(values, dict) and "bdata" in values:
        import base64

        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return flat.reshape(values["shape"]) if "shape" in values else flat
    return np.asarray(values, dtype=float)


def _html_outputs(nb) -> list[str]:
    return [
        o["data"]["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/html" in o.get("data", {})
    ]


@pytest.mark.slow
def test_what_if_study_shows_what_if_and_attribution_computed_directly(runs, what_if_direct):
    attributed, wi, hedge = what_if_direct
    run = runs["what_if_study"]
    assert run.ok, run.error
    nb = nbformat.read(run.notebook, as_version=4)
    figures = _plotly_figures(nb)
    methods = ["span", "cfd", "portfolio_margin"]
    # the waterfalls: each position's contribution, largest first, ending in the requirement
    for m in methods:
        fig = figures[f"{method_name(m)} maintenance margin of main by position [USD]"]
        bars = fig["data"][0]
        ds = attributed[m]
        mine = ds["attribution_account"].values == "main"
        contribution = ds["contribution"].values[mine]
        order = np.argsort(-contribution, kind="stable")
        labels = plots.position_labels(
            ds["attribution_contract"].values[mine],
            ds["attribution_quantity"].values[mine],
            ds["position"].values[mine],
        )
        assert list(bars["x"]) == [labels[i] for i in order] + ["maintenance"]
        y = _array(bars["y"])
        np.testing.assert_allclose(y[:-1], contribution[order], rtol=1e-12)
        maintenance = float(ds["maintenance"].sel(account="main"))
        assert y[-1] == pytest.approx(maintenance, rel=1e-12)
        assert y[:-1].sum() == pytest.approx(maintenance, rel=1e-9)
    # marginal against contribution: one trace per method, in the book's position order
    scatter = {t["name"]: t for t in figures["Marginal against contribution, account main [USD]"]["data"]}
    for m in methods:
        ds = attributed[m]
        mine = ds["attribution_account"].values == "main"
        points = scatter[method_name(m)]
        np.testing.assert_allclose(_array(points["x"]), ds["contribution"].values[mine], rtol=1e-12)
        np.testing.assert_allclose(_array(points["y"]), ds["marginal"].values[mine], rtol=1e-12)
    # before / after per method for each trade: one panel per method, in the run's order
    bars = figures["Maintenance margin before and after each trade [USD]"]
    panels = [a["text"] for a in bars["layout"]["annotations"]]
    assert panels == [method_name(m) for m in methods]
    for i, m in enumerate(methods):
        before, after = bars["data"][2 * i], bars["data"][2 * i + 1]
        assert list(before["x"]) == [f"{t} ({a})" for t, a in zip(wi.trades.ids, wi.trades.account)]
        np.testing.assert_allclose(_array(before["y"]), wi[m]["maintenance_before"].values, rtol=1e-12)
        np.testing.assert_allclose(_array(after["y"]), wi[m]["maintenance_after"].values, rtol=1e-12)
    # the best hedges table: each account's and method's trade and its change, as best_hedge finds them
    (table,) = [h for h in _html_outputs(nb) if "Best one-contract hedge" in h]
    for per in hedge.best.values():
        for b in per.values():
            if b is None:
                continue
            assert f"{b['quantity']:+g} {b['contract']}" in table
            assert f"{b['maintenance']['change']:,.2f}" in table
    assert "none lowers it" in table  # CFD: every order adds margin
    # the files beside the report: the attribution CSV and the JSON of all three answers
    csv = pd.read_csv(run.html.parent / "what_if_study-overview-mixed-book.csv")
    got = csv.set_index(["method", "position"])
    for m in methods:
        ds = attributed[m]
        np.testing.assert_allclose(
            got.loc[m].loc[ds["position"].values, "marginal"], ds["marginal"].values, rtol=1e-12
        )
    saved = json.loads((run.html.parent / "what_if_study-overview-mixed-book.json").read_text())
    assert saved["what_if"] == json.loads(wi.to_json())
    assert saved["best_hedge"] == json.loads(json.dumps(hedge.to_dict()))


def test_input_file_parameters_are_resolved_checked_and_recorded(tmp_path, monkeypatch, no_kernel, capsys):
    # a study whose metadata marginsim.files names its parameter "trades" (as what_if_study does)
    nbdir, out = tmp_path / "nbs", tmp_path / "out"
    path = _tiny_notebook(nbdir, "files")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source += "\ntrades = 'default_trades.yaml'"
    nb.metadata["marginsim"]["files"] = ["trades"]
    nbformat.write(nb, path)
    (nbdir / "default_trades.yaml").write_text("- {contract: A, quantity: 1}\n")
    mine = tmp_path / "work" / "mine.yaml"
    mine.parent.mkdir()
    mine.write_text("- {contract: B, quantity: 2}\n")
    monkeypatch.chdir(mine.parent)
    # the default: from the notebook's folder
    run = studies.run_study("files", out=out, notebooks=nbdir, progress=False)
    assert run.ok and no_kernel[-1]["trades"] == str((nbdir / "default_trades.yaml").resolve())
    # a -p value: from the current folder, made absolute, its sha256 in the provenance
    argv = ["study", "run", "files", "--notebooks", str(nbdir), "--out", str(out), "--no-progress"]
    assert main([*argv, "-p", "trades", "mine.yaml"]) == 0
    assert no_kernel[-1]["trades"] == str(mine.resolve())
    html = (out / "files-span-seed-example.html").read_text()
    sha = hashlib.sha256(mine.read_bytes()).hexdigest()
    assert f"<th>trades sha256</th><td><code>{sha}</code></td>" in html
    # a missing file: exit 2 before the kernel starts; "" means no file
    calls = len(no_kernel)
    assert main([*argv, "-p", "trades", "missing.yaml"]) == 2
    err = capsys.readouterr().err
    assert "study files: -p trades: file not found: missing.yaml" in err and len(no_kernel) == calls
    assert main([*argv, "-p", "trades", ""]) == 0 and no_kernel[-1]["trades"] == ""


def test_what_if_study_declares_its_trades_file():
    study = studies.get_study("what_if_study")
    assert study.files == ("trades",)
    default = (NOTEBOOKS / runner.parameter_defaults(study)["trades"]).resolve()
    assert default == WHAT_IF_TRADES.resolve()
