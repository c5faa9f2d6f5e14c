"""Run a study notebook with papermill and export its HTML report.

``marginsim study run NAME --scenario FILE`` executes ``notebooks/NAME.ipynb`` on the project's
own Python (a kernel that always starts :data:`sys.executable`, whatever kernelspecs are
installed elsewhere), with a progress bar and a per-cell timeout, then exports HTML without
the code (``--no-input``) through a template that loads nothing from a CDN.

Files (``OUT/<study>-<scenario name>.*``):

- ``.html``: the report. Written to a temporary file in the same folder, then renamed, and only
  after a successful run: a failed run never replaces the previous good report.
- ``.ipynb``: the executed notebook, kept after every run (after a failed or interrupted one,
  for debugging).

A request is checked before the kernel starts (:class:`StudyError`, exit status 2 on the command
line): each ``-p`` value against the type of the notebook's default, ``--out`` (a folder, not a
file), ``--timeout``, and what the study needs of its scenario (notebook metadata
``marginsim.needs``: the methods that must apply to the book, the ``grid:`` keys the file must
set). Hidden work files of a run (``.<stem>.running.ipynb``, ``.<stem>.*.tmp``) are moved or
removed when it ends, however it ends; those left by a killed run are removed by the next run of
the same study and scenario. Every report ends with its provenance (run time, marginsim version,
scenario file and its sha256, every parameter).
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import html as html_lib
import json
import logging
import math
import numbers
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError
from ..registry import REGISTRY, applicable_methods
from ..scenario import ScenarioFile, load_scenario
from .settings import DEFAULT_OUT, DEFAULT_TIMEOUT

__all__ = [
    "KERNEL_NAME",
    "StudyError",
    "StudyRun",
    "Study",
    "notebooks_dir",
    "list_studies",
    "get_study",
    "study_parameters",
    "parameter_defaults",
    "check_parameters",
    "check_needs",
    "check_out_dir",
    "provenance_cell",
    "ensure_kernel",
    "run_study",
    "run_all",
    "export_html",
    "external_resources",
    "atomic_write_text",
]

#: Name of the project kernel (kernelspec ``Python (marginsim)``).
KERNEL_NAME = "marginsim"
#: Parameters the runner sets itself (from ``--out``): refused as ``-p``.
RUNNER_PARAMETERS = ("out_dir",)
#: Keys of a study's ``marginsim.needs`` notebook metadata.
NEEDS_KEYS = ("methods", "grid")

# nbconvert's lab template with every block that loads from a CDN emptied: require.js, MathJax,
# mermaid.js and the widget manager. Plotly figures carry their own (embedded) plotly.js.
_REPORT_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
_REPORT_TEMPLATE_NAME = "marginsim_report.html.j2"


class StudyError(Exception):
    """A study cannot be run as asked (unknown study or parameter, missing file...)."""


@dataclass(frozen=True)
class Study:
    """A study notebook.

    Attributes
    ----------
    name
        File stem of the notebook (``marginsim study run NAME``).
    path
        The notebook file.
    title
        Report title (notebook metadata ``marginsim.title``).
    summary
        One line on what it shows (notebook metadata ``marginsim.summary``).
    needs
        What it needs of its scenario (notebook metadata ``marginsim.needs``): ``methods``, the
        methods that must apply to the book (a list, or ``"any"``: at least one), and ``grid``,
        the ``grid:`` keys the scenario file must set. Checked before the kernel starts.
    files
        Parameters (besides ``scenario``) that name an input file (notebook metadata
        ``marginsim.files``, e.g. ``["trades"]``): the runner makes a ``-p`` value absolute from
        the current folder (a default from the notebook's folder), checks that the file exists
        before the kernel starts, and records its sha256 in the provenance; ``""`` or ``None``:
        no file.
    """

    name: str
    path: Path
    title: str
    summary: str
    needs: Mapping[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()


@dataclass
class StudyRun:
    """The outcome of one study run.

    Attributes
    ----------
    study
        Study name.
    ok
        Whether the notebook ran and its report was written.
    html
        The report (written only when ``ok``; a previous good report stays otherwise).
    notebook
        The executed notebook (kept after every run).
    seconds
        Wall time of the run [s].
    error
        What went wrong, when not ``ok``.
    parameters
        The parameters the notebook ran with.
    """

    study: str
    ok: bool
    html: Path
    notebook: Path
    seconds: float
    error: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


# -- finding notebooks ----------------------------------------------------------------------------


def notebooks_dir() -> Path:
    """The folder of the study notebooks.

    ``$MARGINSIM_NOTEBOOKS`` if set, else ``notebooks/`` beside the package (a source checkout or
    an editable install), else ``./notebooks``.
    """
    env = os.environ.get("MARGINSIM_NOTEBOOKS")
    if env:
        return Path(env).resolve()
    beside = Path(__file__).resolve().parents[2] / "notebooks"
    if beside.is_dir():
        return beside
    return Path("notebooks").resolve()


def _read_nb(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def list_studies(folder: str | Path | None = None) -> list[Study]:
    """The study notebooks of ``folder`` (default :func:`notebooks_dir`), sorted by name."""
    base = Path(folder) if folder is not None else notebooks_dir()
    out = []
    for p in sorted(base.glob("*.ipynb")):
        if p.name.startswith((".", "_")) or ".ipynb_checkpoints" in p.parts:
            continue
        meta = _read_nb(p).metadata.get("marginsim", {})
        out.append(
            Study(
                p.stem,
                p,
                meta.get("title", p.stem),
                meta.get("summary", ""),
                meta.get("needs", {}),
                tuple(meta.get("files", ())),
            )
        )
    return out


def get_study(name: str, folder: str | Path | None = None) -> Study:
    """The study called ``name``; :class:`StudyError` naming the available ones otherwise."""
    studies = {s.name: s for s in list_studies(folder)}
    if name not in studies:
        where = Path(folder) if folder is not None else notebooks_dir()
        raise StudyError(f"no study {name!r} in {where} (available: {', '.join(studies) or 'none'})")
    return studies[name]


def study_parameters(study: Study) -> dict[str, dict[str, Any]]:
    """The parameters of a study (its ``parameters`` cell): name -> papermill's description."""
    import papermill

    cells = [c for c in _read_nb(study.path).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise StudyError(f"{study.path}: needs exactly one cell tagged 'parameters', found {len(cells)}")
    return papermill.inspect_notebook(str(study.path))


# -- the project kernel --------------------------------------------------------------------------


def _kernel_spec_dict() -> dict[str, Any]:
    return {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (marginsim)",
        "language": "python",
        "metadata": {"debugger": True},
    }


def ensure_kernel() -> Path:
    """Register the project kernel (``marginsim``: this Python) for JupyterLab, if needed.

    Written into ``<sys.prefix>/share/jupyter/kernels/marginsim`` (the virtualenv), else into
    the user's Jupyter data folder when the prefix is not writable; rewritten when it points to
    another Python. Study runs do not depend on it (they start :data:`sys.executable` directly).

    Returns
    -------
    pathlib.Path
        The kernelspec folder.
    """
    from jupyter_core.paths import jupyter_data_dir

    spec = _kernel_spec_dict()
    text = json.dumps(spec, indent=1) + "\n"
    last: OSError | None = None
    for base in (Path(sys.prefix) / "share" / "jupyter" / "kernels", Path(jupyter_data_dir()) / "kernels"):
        folder = base / KERNEL_NAME
        target = folder / "kernel.json"
        try:
            if target.is_file() and target.read_text() == text:
                return folder
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, text)
            return folder
        except OSError as e:
            last = e
    raise StudyError(f"cannot register the kernel {KERNEL_NAME!r}: {last}")


def _kernel_manager_class():
    """An ``AsyncKernelManager`` whose ``marginsim`` kernel is always this Python."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from traitlets import default

    class ProjectKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            if kernel_name == KERNEL_NAME:
                spec = _kernel_spec_dict()
                # the kernel's own log (TCP warning, shutdown interrupt) is noise in a batch run;
                # failing cells are reported from the notebook
                spec["argv"] = [*spec["argv"], "--IPKernelApp.log_level=CRITICAL"]
                return KernelSpec(resource_dir=str(Path(sys.prefix)), **spec)
            return super().get_kernel_spec(kernel_name)

    class ProjectKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _ksm_default(self) -> KernelSpecManager:
            return ProjectKernelSpecManager(data_dir=self.data_dir)

    return ProjectKernelManager


# -- HTML -----------------------------------------------------------------------------------------


def export_html(nb, *, title: str | None = None) -> str:
    """The ``--no-input`` HTML report of an executed notebook, loading nothing from the network.

    Parameters
    ----------
    nb
        An executed notebook (``nbformat.NotebookNode``).
    title
        The page title (default: the notebook's).

    Returns
    -------
    str
        A self-contained HTML page: code cells and prompts hidden, stderr streams dropped,
        no script or stylesheet from a CDN.
    """
    import copy

    import jinja2
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    if title:
        nb.metadata["title"] = title
    for cell in nb.cells:  # warnings belong in the executed notebook, not in the report
        if cell.get("cell_type") == "code":
            cell.outputs = [
                o for o in cell.get("outputs", []) if not (o.output_type == "stream" and o.name == "stderr")
            ]
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({_REPORT_TEMPLATE_NAME: _REPORT_TEMPLATE})],
        template_file=_REPORT_TEMPLATE_NAME,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    bad = external_resources(body)
    if bad:
        raise StudyError("the report would load from the network: " + ", ".join(bad[:5]))
    return body


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.found.append(a["src"] or "")
        elif tag == "link" and a.get("href"):
            self.found.append(a["href"] or "")
        elif tag in ("img", "iframe", "embed", "source") and a.get("src"):
            self.found.append(a["src"] or "")


_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.I)
_CSS_REMOTE = re.compile(r"@import\s+(?:url\()?\s*['\"]?\s*((?:https?:)?//[^'\")\s;]+)", re.I)


def external_resources(html: str) -> list[str]:
    """Scripts, stylesheets, images and CSS imports of a page that come from the network.

    Parameters
    ----------
    html
        A page.

    Returns
    -------
    list of str
        Every ``src`` / ``href`` of ``script``, ``link``, ``img``, ``iframe``, ``embed`` and
        ``source`` tags that is an ``http(s)://`` or protocol-relative URL, and every CSS
        ``@import`` of one. Empty for a page that works offline.
    """
    p = _Sources()
    p.feed(html)
    found = [s for s in p.found if _REMOTE.match(s)]
    found += [m.group(1) for m in _CSS_REMOTE.finditer(html)]
    return found


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    Readers see the old file or the new one, never a partial one; on an error the old file stays.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600: give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- checking a request before the kernel starts --------------------------------------------------

_KIND_NAMES: dict[type, tuple[str, str]] = {  # kind -> (a value, many values)
    bool: ("true or false", "true/false values"),
    int: ("an integer", "integers"),
    float: ("a finite number", "finite numbers"),
    str: ("a string", "strings"),
    list: ("a list", "lists"),
    dict: ("a mapping", "mappings"),
}


def _kind(default: Any) -> type | None:
    """The kind of a parameter from its default value; ``None``: any value."""
    if isinstance(default, tuple):
        return list
    for kind in _KIND_NAMES:  # bool before int: True is an int too
        if isinstance(default, kind):
            return kind
    return None


def _fits(value: Any, kind: type | None) -> bool:
    if kind is None:
        return True
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real) and math.isfinite(float(value))
    if kind is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, kind)


def _item_kind(default: Any) -> type | None:
    """The kind shared by every item of a non-empty list (values of a mapping) default."""
    items = list(default.values()) if isinstance(default, dict) else list(default)
    kinds = {_kind(v) for v in items}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    return kind if kind in (bool, int, float, str) else None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parameter_defaults(study: Study) -> dict[str, Any]:
    """Every parameter of a study and its default value (the ``parameters`` cell's literal).

    A default that is not a Python literal (an expression) is its source text.
    """
    return {name: _literal(info["default"]) for name, info in study_parameters(study).items()}


def check_parameters(study: Study, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a run, checked against the notebook's defaults before the kernel starts.

    Parameters
    ----------
    study
        The study.
    params
        Parameter name -> value (e.g. the ``-p KEY VALUE`` pairs, parsed).

    Returns
    -------
    dict
        ``params``, numpy scalars as Python numbers.

    Raises
    ------
    StudyError
        An unknown name; a parameter the runner sets itself (``out_dir``: use ``--out``); a value
        whose type differs from the default's: an integer default takes integers, a float one any
        finite number, a bool one ``true``/``false``, a string one text, a list one a list (of
        the items' type when the default's items share one), a mapping one a mapping; a ``None``
        default takes anything.
    """
    defaults = parameter_defaults(study)
    checked = {k: _plain(v) for k, v in params.items()}
    for key, value in checked.items():
        where = f"study {study.name}: -p {key}"
        if key not in defaults:
            raise StudyError(f"{where}: no such parameter (parameters: {', '.join(defaults)})")
        if key in RUNNER_PARAMETERS:
            raise StudyError(f"{where}: set by the runner: use --out")
        default = defaults[key]
        kind = _kind(default)
        if kind is None:
            continue
        if not _fits(value, kind):
            raise StudyError(f"{where}: expected {_KIND_NAMES[kind][0]}, got {_shown(value)}")
        if kind in (list, dict) and default:
            item = _item_kind(default)
            items = list(value.values()) if kind is dict else list(value)
            bad = [v for v in items if not _fits(v, item)]
            if item is not None and bad:
                raise StudyError(
                    f"{where}: expected {_KIND_NAMES[kind][0]} of {_KIND_NAMES[item][1]}, "
                    f"got {_shown(bad[0])} in {_shown(value)}"
                )
    return checked


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number papermill writes into the notebook (others as given)."""
    if isinstance(value, (bool, int, float)) or not isinstance(value, numbers.Number):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value) if isinstance(value, numbers.Real) else value


def check_needs(study: Study, sc: ScenarioFile, shown: str | Path) -> None:
    """Refuse a scenario the study cannot use, before the kernel starts.

    Parameters
    ----------
    study
        The study; its ``needs`` (notebook metadata ``marginsim.needs``) say what it needs.
    sc
        The validated scenario.
    shown
        The scenario file as the user named it (for the message).

    Raises
    ------
    StudyError
        A method the study needs does not apply to the book (``applies`` of the registry), or a
        ``grid:`` key it needs is not set; or the declaration itself is malformed.
    """
    needs = study.needs or {}
    where = f"study {study.name}: scenario {shown}"
    unknown = [k for k in needs if k not in NEEDS_KEYS]
    if unknown:
        raise StudyError(
            f"{study.path}: metadata marginsim.needs: unknown key {unknown[0]!r} (keys: {', '.join(NEEDS_KEYS)})"
        )
    methods = needs.get("methods") or []
    applying = applicable_methods(sc)
    listed = ", ".join(applying) or "none"
    if methods == "any":
        if not applying:
            raise StudyError(f"{where}: no margin method applies to its book (it needs at least one)")
    else:
        for m in methods:
            if m not in REGISTRY:
                raise StudyError(f"{study.path}: metadata marginsim.needs.methods: no method {m!r}")
            if m not in applying:
                raise StudyError(
                    f"{where}: needs the {m} method, which does not apply to this book "
                    f"(methods that apply: {listed})"
                )
    for key in needs.get("grid") or []:
        if sc.grid is None or getattr(sc.grid, key, None) is None:
            raise StudyError(f"{where}: needs grid.{key} in the scenario file")


def check_out_dir(out: str | Path) -> Path:
    """The output folder of a run, resolved, checked before anything is written (not created).

    Raises
    ------
    StudyError
        ``out`` is an existing file, or lies under one, or its nearest existing folder cannot be
        written.
    """
    try:
        path = Path(out).expanduser().resolve()
    except (OSError, RuntimeError) as e:
        raise StudyError(f"--out {out}: {e}") from None
    for p in (path, *path.parents):  # the nearest existing ancestor must be a writable folder
        if not p.exists():
            continue
        if not p.is_dir():
            what = "is a file" if p == path else f"is under {p}, a file"
            raise StudyError(f"--out {out}: {what}, not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise StudyError(f"--out {out}: cannot write in {p}")
        break
    return path


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, numbers.Real)
        or not math.isfinite(timeout)
        or timeout < 0
    ):
        raise StudyError(f"--timeout: expected seconds, a finite number >= 0 (0: no limit), got {timeout!r}")
    return float(timeout) or None


# -- running --------------------------------------------------------------------------------------


def _file_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "report"


def _error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    if ename is not None:
        cell = getattr(exc, "exec_count", None)
        evalue = str(getattr(exc, "evalue", "")).strip()
        return f"cell [{cell}] raised {ename}: {evalue}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


class _CellClock:
    """nbclient's ``timeout_func``: the limit of every cell [s] (a float, which nbclient's
    integer ``timeout`` trait refuses), and the cell that is running."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.cell: Any = None

    def __call__(self, cell: Any) -> float | None:
        self.cell = cell
        return self.limit


class _QuietTimeout(logging.Filter):
    """Drops nbclient's "Timeout waiting for execute reply (0s)" (its ``%i`` of a 0.5 s limit):
    the run's error names the cell and the limit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout waiting for execute reply")


def _timeout_text(clock: _CellClock, study_cells: list[Any]) -> str:
    cell = clock.cell
    where = "a cell"
    if cell is not None:
        cid = cell.get("id")
        index = next((i for i, c in enumerate(study_cells) if cid and c.get("id") == cid), None)
        if index is None:
            index = next((i for i, c in enumerate(study_cells) if c.source == cell.source), None)
        lines = [ln.strip() for ln in cell.source.splitlines() if ln.strip()]
        first = lines[0] if lines else ""
        first = first if len(first) <= 40 else first[:37] + "..."
        number = f"cell {index + 1} of {len(study_cells)}" if index is not None else "a cell"
        where = f"{number} ({first!r})"
    return f"{where} did not finish within {clock.limit:g} s (--timeout)"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _provenance(
    study: Study,
    scenario: Path | None,
    params: Mapping[str, Any],
    started: dt.datetime,
    referenced: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """What a report was made from: the last section of every report (the files the scenario
    reads, ``referenced``, fingerprinted with the study's file parameters)."""
    files = {
        name: {"path": str(params[name]), "sha256": _sha256(Path(params[name]))}
        for name in study.files
        if params.get(name)
    }
    for key, path in (referenced or {}).items():
        files[key] = {"path": str(path), "sha256": _sha256(path)}
    return {
        "study": study.name,
        "notebook": str(study.path),
        "notebook_sha256": _sha256(study.path),
        "run_at_utc": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "marginsim_version": __version__,
        "scenario": str(scenario) if scenario is not None else None,
        "scenario_sha256": _sha256(scenario) if scenario is not None else None,
        "parameters": json.loads(json.dumps(dict(params), default=str)),  # stored in the notebook
        "files": files,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def provenance_cell(info: Mapping[str, Any]):
    """A notebook cell showing ``info`` (:func:`run_study`'s provenance) as the report's last section.

    A code cell with one HTML output (its empty code is hidden by the export): two tables, the run
    and its parameters; every value is escaped, none is read as Markdown.
    """
    from nbformat.v4 import new_code_cell, new_output

    e = html_lib.escape
    run = [
        ("study", info["study"]),
        ("run at (UTC)", info["run_at_utc"]),
        ("marginsim version", info["marginsim_version"]),
        ("scenario file", info["scenario"] or "none"),
        ("scenario sha256", info["scenario_sha256"] or "none"),
        ("notebook", info["notebook"]),
        ("notebook sha256", info["notebook_sha256"]),
        *(
            row
            for name, f in (info.get("files") or {}).items()
            for row in ((f"{name} file", f["path"]), (f"{name} sha256", f["sha256"]))
        ),
        ("Python", info["python"]),
        ("platform", info["platform"]),
    ]
    params = [(k, _json_text(v)) for k, v in info["parameters"].items()]

    def rows(pairs: list[tuple[str, Any]], code_key: bool) -> str:
        key = "<code>{}</code>" if code_key else "{}"
        return "".join(
            f"<tr><th>{key.format(e(str(k)))}</th><td><code>{e(str(v))}</code></td></tr>" for k, v in pairs
        )

    page = (
        '<section class="marginsim-provenance" id="provenance">'
        "<style>.marginsim-provenance th, .marginsim-provenance td"
        " {text-align: left; vertical-align: top; overflow-wrap: anywhere}</style>"
        "<h2>Provenance</h2>"
        "<p>What this report was made from.</p>"
        f"<table>{rows(run, False)}</table>"
        "<p>Parameters of the run (after the study's defaults; values in JSON).</p>"
        f"<table><tr><th>parameter</th><th>value</th></tr>{rows(params, True)}</table></section>"
    )
    text = "Provenance\n" + "\n".join(f"{k}: {v}" for k, v in run + params)
    out = new_output("display_data", {"text/html": page, "text/plain": text})
    cell = new_code_cell("", outputs=[out], metadata={"tags": ["marginsim-provenance"]})
    return cell


def _stale_files(out_dir: Path, stems: Sequence[str]) -> list[Path]:
    """Hidden work files of earlier runs of these stems (a killed run's)."""
    found: list[Path] = []
    for stem in stems:
        esc = glob.escape(stem)
        found += [out_dir / f".{stem}.running.ipynb"]
        found += out_dir.glob(f"..{esc}.running.ipynb.*.tmp")  # atomic_write_text of the one above
        for ext in ("html", "csv", "json", "ipynb"):
            found += out_dir.glob(f".{esc}.{ext}.*.tmp")
    return [p for p in found if p.is_file()]


def run_study(
    name: str,
    scenario: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    out: str | Path = DEFAULT_OUT,
    scheduler: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    progress: bool = True,
    notebooks: str | Path | None = None,
) -> StudyRun:
    """Execute a study notebook with papermill and write its HTML report.

    Parameters
    ----------
    name
        The study (a notebook of :func:`notebooks_dir`, without ``.ipynb``).
    scenario
        Scenario file (parameter ``scenario``); default: the notebook's own default.
    parameters
        Other parameters of the notebook's ``parameters`` cell, checked by
        :func:`check_parameters` (unknown names and values of the wrong type are errors).
    out
        Output folder (parameter ``out_dir``) of the report, the executed notebook and whatever
        the notebook writes; created if needed.
    scheduler
        Address of a dask.distributed scheduler (parameter ``scheduler``); ``None``: in-process.
    timeout
        Execution timeout of each cell [s], any finite number >= 0; ``None`` or 0: no limit.
    progress
        Show papermill's progress bar (on stderr), named after the study.
    notebooks
        Folder of the notebooks (default :func:`notebooks_dir`).

    Returns
    -------
    StudyRun
        ``ok`` is false when a cell failed, timed out or the export failed: the executed notebook
        is kept, the previous report is left as it was.

    Raises
    ------
    StudyError
        Unknown study or parameter, a value of the wrong type, a missing scenario file, a scenario
        the study cannot use (:func:`check_needs`), ``out`` a file, a bad timeout: all before
        anything is written.
    marginsim.InputError
        The scenario file is invalid (checked before the kernel starts).
    KeyboardInterrupt
        The run was interrupted: its hidden work files are gone, the executed notebook is kept.
    """
    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError

    study = get_study(name, notebooks)
    known = study_parameters(study)
    limit = _check_timeout(timeout)
    out_dir = check_out_dir(out)
    params = check_parameters(study, parameters or {})
    if scenario is not None:
        if "scenario" in params and Path(params["scenario"]) != Path(scenario):
            raise StudyError(f"study {study.name}: -p scenario and --scenario both given: give one")
        params["scenario"] = scenario
    if "scenario" in params:
        shown = Path(params["scenario"]).expanduser()
        if not shown.is_file():
            raise StudyError(f"scenario file not found: {shown}")
        sc_path: Path | None = shown.resolve()
        params["scenario"] = str(sc_path)
    elif "scenario" in known:
        default = known["scenario"]["default"]
        sc_path = (study.path.parent / Path(_literal(default))).resolve()
        shown = sc_path
        params["scenario"] = str(sc_path)  # the executed notebook names the file it ran on
    else:
        sc_path = None
    for name in study.files:  # the input files besides the scenario (notebook metadata marginsim.files)
        if name not in known:
            raise StudyError(f"{study.path}: metadata marginsim.files: no parameter {name!r}")
        given = name in params
        value = params[name] if given else _literal(known[name]["default"])
        if value in ("", None):
            continue
        if not isinstance(value, (str, os.PathLike)):
            raise StudyError(f"study {study.name}: -p {name}: expected a file name, got {value!r}")
        file = Path(value).expanduser()
        if not given:
            file = study.path.parent / file  # a default is relative to the notebook's folder
        if not file.is_file():
            raise StudyError(f"study {study.name}: -p {name}: file not found: {file}")
        params[name] = str(file.resolve())
    scenario_name = "default"
    referenced: dict[str, Path] = {}
    if sc_path is not None:
        sc = load_scenario(sc_path)
        check_needs(study, sc, shown)
        scenario_name = sc.name
        referenced = sc.referenced_files()
    if "out_dir" in known:
        params["out_dir"] = str(out_dir)
    if scheduler is not None:
        if "scheduler" not in known:
            raise StudyError(f"study {study.name!r} has no 'scheduler' parameter")
        if params.get("scheduler") not in (None, scheduler):
            raise StudyError(f"study {study.name}: -p scheduler and --scheduler both given: give one")
        params["scheduler"] = scheduler
    started = dt.datetime.now(dt.timezone.utc)
    defaults = {k: _literal(info["default"]) for k, info in known.items()}
    provenance = _provenance(study, sc_path, {**defaults, **params}, started, referenced)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudyError(f"--out {out}: cannot create the folder: {e.strerror or e}") from None
    stem = f"{study.name}-{_file_stem(scenario_name)}"
    html_path = out_dir / f"{stem}.html"
    nb_path = out_dir / f"{stem}.ipynb"
    running = out_dir / f".{stem}.running.ipynb"
    for stale in _stale_files(out_dir, sorted({stem, f"{study.name}-{scenario_name}"})):
        stale.unlink(missing_ok=True)
    ensure_kernel()
    study_cells = _read_nb(study.path).cells
    clock = _CellClock(limit)
    t0 = time.perf_counter()
    error: str | None = None
    quiet = _QuietTimeout()
    logging.getLogger("papermill").addFilter(quiet)
    try:
        try:
            papermill.execute_notebook(
                str(study.path),
                str(running),
                parameters=params,
                kernel_name=KERNEL_NAME,
                kernel_manager_class=_kernel_manager_class(),
                progress_bar={"desc": study.name} if progress else False,  # the bar names the study
                execution_timeout=None,
                timeout_func=clock,
                cwd=str(study.path.parent),
                log_output=False,
            )
        except CellTimeoutError:
            error = _timeout_text(clock, study_cells)
        except Exception as e:  # a failed cell, a dead kernel: keep the notebook
            error = _error_text(e)
        if error is None:
            try:
                nb = nbformat.read(running, as_version=4)
                nb.metadata.setdefault("marginsim", {})["provenance"] = provenance
                nb.cells.append(provenance_cell(provenance))
                html = export_html(nb, title=f"{study.title}: {scenario_name}")
                atomic_write_text(running, nbformat.writes(nb) + "\n")
                atomic_write_text(html_path, html)
            except Exception as e:
                error = f"HTML export failed: {_error_text(e)}"
    finally:  # however the run ends (an interrupt too), no hidden work file stays
        logging.getLogger("papermill").removeFilter(quiet)
        if running.exists():
            os.replace(running, nb_path)
    return StudyRun(
        study=study.name,
        ok=error is None,
        html=html_path,
        notebook=nb_path,
        seconds=time.perf_counter() - t0,
        error=error,
        parameters=params,
    )


def _literal(text: Any) -> Any:
    """A parameter default as papermill reports it (source text) -> its value."""
    import ast

    try:
        return ast.literal_eval(text) if isinstance(text, str) else text
    except (ValueError, SyntaxError):
        return text


def run_all(
    *,
    names: Sequence[str] | None = None,
    out: str | Path = DEFAULT_OUT,
    scheduler: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    progress: bool = True,
    notebooks: str | Path | None = None,
) -> list[StudyRun]:
    """Run every study (or ``names``) on its default parameters, one after the other.

    A failure does not stop the others; each report is written (atomically) only on success.

    Returns
    -------
    list of StudyRun
        One per study, in order.

    Raises
    ------
    StudyError
        ``out`` is a file or under one, or a bad ``timeout`` (before any study runs).
    """
    check_out_dir(out)
    _check_timeout(timeout)
    chosen = names or [s.name for s in list_studies(notebooks)]
    runs = []
    for n in chosen:  # one notebook after another: each run is a whole kernel
        try:
            runs.append(
                run_study(
                    n, out=out, scheduler=scheduler, timeout=timeout, progress=progress, notebooks=notebooks
                )
            )
        except (StudyError, InputError) as e:
            runs.append(StudyRun(n, False, Path(out) / "", Path(out) / "", 0.0, error=str(e)))
    return runs
