"""The page: a fixed program (static/viewer.html, .css, .js, shipped in the wheel) with the run
data loaded into it as JSON, as inspect_ai's log viewer does it.

Why it is safe to open a page built from a model's output:

* nothing from a run is ever written into the page as HTML: the data sits in one
  ``<script type="application/json">`` block that the browser never executes, and the script
  builds every element with `textContent`, never `innerHTML`;
* in that block every ``<``, ``>`` and ``&`` (and U+2028/2029) is written as a JSON ``\\uXXXX``
  escape, so no ``</script>`` or ``<!--`` in a critique can end the block or change how the
  HTML parser reads it, and `JSON.parse` still reads back the exact text;
* a Content-Security-Policy allows only the page's own script and style, by their sha256
  hashes (a fixed file has no per-response nonce to give), images only as data: URIs, and no
  network at all, so even an injected element could neither run nor fetch anything.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from judgekit.bench.report import BenchRun
from judgekit.view.data import ViewData, ViewPlot, view_data

DATA_ELEMENT_ID = "judgekit-data"
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}
_SLOT = re.compile(r"\{\{([A-Z]+)\}\}")


def _static(name: str) -> str:
    return resources.files("judgekit.view").joinpath("static", name).read_text(encoding="utf-8")


def script_safe_json(text: str) -> str:
    """JSON text that can sit inside a <script> element: every character that HTML treats
    specially there becomes a \\uXXXX escape (valid JSON, since such characters can only occur
    inside JSON strings)."""
    return re.sub("[<>&\u2028\u2029]", lambda mt: _JSON_ESCAPES[mt.group(0)], text)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(script: str, style: str) -> str:
    return ("default-src 'none'; "
            f"script-src {_sha256(script)}; style-src {_sha256(style)}; img-src data:; "
            "base-uri 'none'; form-action 'none'")


def render_page(data: ViewData) -> str:
    """The whole HTML document for `data`."""
    script, style = _static("viewer.js"), _static("viewer.css")
    for name, text, end in (("viewer.js", script, "</script"), ("viewer.css", style, "</style")):
        if end in text.lower():  # would end its own element early
            raise AssertionError(f"{name} must not contain {end}")
    parts = {
        "CSP": content_security_policy(script, style),
        "STYLE": style,
        "SCRIPT": script,
        "DATA": script_safe_json(data.model_dump_json()),
    }
    # one pass: text put into a slot is never scanned for slots again
    return _SLOT.sub(lambda mt: parts[mt.group(1)], _static("viewer.html"))


def plot_images(runs: Sequence[BenchRun]) -> tuple[list[ViewPlot], str | None]:
    """The report's plots (`bench.plots.write_plots`, the same files `bench report --plots`
    writes) as data: URIs; with a note instead when matplotlib is not installed."""
    try:
        from judgekit.bench.plots import write_plots

        with tempfile.TemporaryDirectory(prefix="judgekit-view-") as tmp:
            paths = write_plots(list(runs), tmp)
            plots = [ViewPlot(name=p.stem, src=f"data:{_MIME[p.suffix.lower()]};base64,"
                              + base64.b64encode(p.read_bytes()).decode("ascii"))
                     for p in paths if p.suffix.lower() in _MIME]
    except ImportError as exc:
        return [], f"No plots: {exc.name or 'matplotlib'} is not installed " \
                   "(pip install 'judgekit-grm[report]')."
    return plots, None


def build_page(runs: Sequence[BenchRun], *, plots: bool = True) -> str:
    """The page for these runs (plots included unless `plots=False`)."""
    images: list[ViewPlot] = []
    notes: list[str] = []
    if plots:
        images, note = plot_images(runs)
        if note:
            notes.append(note)
    return render_page(view_data(runs, plots=images, notes=notes))


def write_page(runs: Sequence[BenchRun], path: str | os.PathLike[str], *,
               plots: bool = True) -> Path:
    out = Path(path)
    out.write_text(build_page(runs, plots=plots), encoding="utf-8")
    return out
