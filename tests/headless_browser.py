"""Open an HTML report in a real headless browser (Debian's ``chromium``), offline.

The page is loaded from a copy with a first ``<script>`` that records every script error, failed
resource load, unhandled promise rejection and ``console.error`` into an element of the page;
all host names resolve to nothing (``--host-resolver-rules``), so anything the page tried to
fetch from the network fails and is recorded. ``--dump-dom`` then gives the DOM after the
scripts ran (``--virtual-time-budget`` lets timers and promises settle).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["chromium", "Rendered", "render"]

_PROBE_ID = "marginsim-probe-errors"
_PROBE = (
    "<script>(function(){var errs=[];"
    "function show(){var d=document.getElementById('" + _PROBE_ID + "');"
    "if(!d&&document.body){d=document.createElement('pre');d.id='" + _PROBE_ID + "';"
    "document.body.appendChild(d);}if(d){d.textContent=JSON.stringify(errs);}}"
    "window.addEventListener('error',function(e){var t=e.target;"
    "if(t&&t!==window&&(t.src||t.href)){errs.push('failed to load '+(t.src||t.href));}"
    "else{errs.push(String(e.message)+' at '+(e.filename||'')+':'+(e.lineno||''));}show();},true);"
    "window.addEventListener('unhandledrejection',function(e){errs.push('unhandled rejection: '+e.reason);show();});"
    "var ce=console.error;console.error=function(){errs.push('console.error: '+"
    "Array.prototype.map.call(arguments,String).join(' '));show();return ce.apply(console,arguments);};"
    "window.addEventListener('load',function(){setTimeout(show,0);});})();</script>"
)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def chromium() -> str | None:
    """Path of the chromium executable, or ``None``."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Rendered:
    """What the browser made of a page.

    Attributes
    ----------
    dom
        The serialised DOM after scripts ran.
    errors
        Script errors, failed loads, unhandled rejections and ``console.error`` calls.
    plots
        Rendered plotly figures (``<div class="plot-container plotly">``).
    svgs
        ``<svg class="main-svg">`` elements (plotly draws two or three per figure).
    probe_ran
        Whether the error probe wrote its report (the page's scripts ran at all).
    """

    dom: str
    errors: list[str]
    plots: int
    svgs: int
    probe_ran: bool


def render(html: Path, workdir: Path, *, budget_ms: int = 20_000, timeout: float = 180.0) -> Rendered:
    """Load ``html`` in headless chromium with a fresh profile and return the DOM after scripts ran.

    Parameters
    ----------
    html
        The page.
    workdir
        A fresh folder for the probed copy and the browser profile.
    budget_ms
        Virtual time for scripts, timers and promises [ms].
    timeout
        Wall-clock limit of the browser process [s].
    """
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    page = workdir / "page.html"
    text = html.read_text(encoding="utf-8")
    text, n = re.subn(r"<head[^>]*>", lambda m: m.group(0) + _PROBE, text, count=1)
    if n == 0:
        text = _PROBE + text
    page.write_text(text, encoding="utf-8")
    profile = workdir / "profile"
    env = {**os.environ, "HOME": str(workdir)}  # nothing read from or written to the real home
    proc = subprocess.run(
        [
            exe,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    dom = proc.stdout
    if proc.returncode != 0 or not dom.strip():
        raise RuntimeError(f"chromium failed (status {proc.returncode}): {proc.stderr[-2000:]}")
    m = re.search(r'<pre id="' + _PROBE_ID + r'">(.*?)</pre>', dom, re.S)
    errors: list[str] = []
    if m:
        import html as _html

        errors = json.loads(_html.unescape(m.group(1)) or "[]")
    return Rendered(
        dom=dom,
        errors=errors,
        plots=len(re.findall(r'class="plot-container plotly"', dom)),
        svgs=len(re.findall(r'class="main-svg"', dom)),
        probe_ran=m is not None,
    )
