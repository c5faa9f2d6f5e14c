"""Run a study notebook with papermill and export its HTML report.

``marginsim study run NAME --scenario FILE`` executes ``notebooks/NAME.ipynb`` on the project's
own Python (a kernel that always starts :data:`sys.executable`, whatever kernelspecs are
installed elsewhere), with a progress bar and a per-cell timeout, then exports HTML without
the code (``--no-input``) through a template that loads nothing from a CDN.

Files (``OUT/<study>-<scenario name>.*``):

- ``.html``: the report. Written to a temporary file in the same folder, then renamed, and only
  after a successful run: a failed run never replaces the previous good report.
- ``.ipynb``: the executed notebook, kept after every run (after a failed one, for debugging).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..scenario import load_scenario
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
    "ensure_kernel",
    "run_study",
    "run_all",
    "export_html",
    "external_resources",
    "atomic_write_text",
]

#: Name of the project kernel (kernelspec ``Python (marginsim)``).
KERNEL_NAME = "marginsim"

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
    """

    name: str
    path: Path
    title: str
    summary: str


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
        out.append(Study(p.stem, p, meta.get("title", p.stem), meta.get("summary", "")))
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


# -- running --------------------------------------------------------------------------------------


def _file_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "report"


def _coerce(params: Mapping[str, Any], known: Mapping[str, Any], study: Study) -> dict[str, Any]:
    unknown = [k for k in params if k not in known]
    if unknown:
        raise StudyError(
            f"study {study.name!r} has no parameter {', '.join(map(repr, unknown))} "
            f"(parameters: {', '.join(known)})"
        )
    return dict(params)


def _error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    if ename is not None:
        cell = getattr(exc, "exec_count", None)
        evalue = str(getattr(exc, "evalue", "")).strip()
        return f"cell [{cell}] raised {ename}: {evalue}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


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
        Other parameters of the notebook's ``parameters`` cell; unknown names are errors.
    out
        Output folder (parameter ``out_dir``) of the report, the executed notebook and whatever
        the notebook writes.
    scheduler
        Address of a dask.distributed scheduler (parameter ``scheduler``); ``None``: in-process.
    timeout
        Execution timeout of each cell [s]; ``None``: no limit.
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
        Unknown study or parameter, missing scenario file.
    marginsim.InputError
        The scenario file is invalid (checked before the kernel starts).
    """
    import nbformat
    import papermill

    study = get_study(name, notebooks)
    known = study_parameters(study)
    params = _coerce(parameters or {}, known, study)
    if scenario is not None:
        params["scenario"] = scenario
    if "scenario" in params:
        sc_path = Path(params["scenario"]).expanduser()
        if not sc_path.is_file():
            raise StudyError(f"scenario file not found: {sc_path}")
        params["scenario"] = str(sc_path.resolve())
    elif "scenario" in known:
        default = known["scenario"]["default"]
        sc_path = (study.path.parent / Path(_literal(default))).resolve()
        params["scenario"] = str(sc_path)  # the executed notebook names the file it ran on
    else:
        sc_path = None
    scenario_name = load_scenario(sc_path).name if sc_path is not None else "default"
    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if "out_dir" in known:
        params["out_dir"] = str(out_dir)
    if scheduler is not None:
        if "scheduler" not in known:
            raise StudyError(f"study {study.name!r} has no 'scheduler' parameter")
        params["scheduler"] = scheduler

    stem = f"{study.name}-{_file_stem(scenario_name)}"
    html_path = out_dir / f"{stem}.html"
    nb_path = out_dir / f"{stem}.ipynb"
    running = out_dir / f".{stem}.running.ipynb"
    ensure_kernel()
    t0 = time.perf_counter()
    error: str | None = None
    try:
        papermill.execute_notebook(
            str(study.path),
            str(running),
            parameters=params,
            kernel_name=KERNEL_NAME,
            kernel_manager_class=_kernel_manager_class(),
            progress_bar={"desc": study.name} if progress else False,  # the bar names the study
            execution_timeout=timeout,
            cwd=str(study.path.parent),
            log_output=False,
        )
    except Exception as e:  # a failed cell, a timeout, a dead kernel: keep the notebook
        error = _error_text(e)
    if error is None:
        try:
            nb = nbformat.read(running, as_version=4)
            html = export_html(nb, title=f"{study.title}: {scenario_name}")
            atomic_write_text(html_path, html)
        except Exception as e:
            error = f"HTML export failed: {_error_text(e)}"
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
    """
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
