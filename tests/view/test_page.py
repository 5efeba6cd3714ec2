"""`judgekit view` without a browser: what the page holds, read back by Python's own HTML parser
(an independent reader of where each element starts and ends), and the command line."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.bench_standin import ScriptedJudgeStandIn
from support.view_runs import CRITIQUE_MARK, HOSTILE, hostile_rows

from judgekit.bench import run
from judgekit.bench.items import BenchItem, Label
from judgekit.bench.report import load_runs, render_report, report_tables
from judgekit.cli import main
from judgekit.view.data import view_data
from judgekit.view.page import build_page, script_safe_json


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>/<style> element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.bodies: list[tuple[str, dict[str, str | None], str]] = []
        self._open: tuple[str, dict[str, str | None]] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open, self._text = (tag, dict(attrs)), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None and tag == self._open[0]:
            self.bodies.append((*self._open, "".join(self._text)))
            self._open = None


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _data(page: _Page) -> dict:
    (body,) = [b for tag, attrs, b in page.bodies if attrs.get("type") == "application/json"]
    return json.loads(body)


@given(st.text(alphabet=st.sampled_from(list("<>&/!-'\"\u2028\u2029 scriptSCRIPTé\\")),
               max_size=60) | st.text(max_size=60))
def test_script_safe_json_reads_back_exactly_and_holds_no_markup(text: str) -> None:
    encoded = script_safe_json(json.dumps({"t": text}, ensure_ascii=False))
    assert json.loads(encoded) == {"t": text}
    assert not set(encoded) & set("<>&\u2028\u2029")


def test_hostile_text_stays_data_in_the_page(hostile_runs: tuple[Path, Path, Path]) -> None:
    _, forward, reverse = hostile_runs
    runs = load_runs([forward, reverse])
    html = build_page(runs, plots=False)
    page = _parse(html)
    # the HTML parser sees exactly the template's elements: nothing from a run became a tag
    assert [t for t, _ in page.tags if t in ("script", "img", "iframe", "textarea", "a")] == \
        ["script", "script"]
    assert not any(k in ("src", "href", "onerror", "srcdoc") for _, a in page.tags for k in a)
    data = _data(page)
    by_id = {it["id"]: it for it in data["items"]}
    rows = {r["id"]: r for r in hostile_rows()}
    assert set(by_id) == set(rows)
    for item_id, row in rows.items():  # the exact text, in the dataset's order
        assert by_id[item_id]["query"] == row["query"]
        assert by_id[item_id]["responses"] == row["responses"]
        assert by_id[item_id]["gold"] == [row["label"]]
    critique = by_id["x2"]["results"][0]["verdict"]["samples"][0]["critiques"][0]["analysis"]
    assert critique.startswith(f"{CRITIQUE_MARK} {rows['x2']['responses'][0]}")
    assert HOSTILE[2] in json.dumps(data)  # the breakout string survives, as data


def test_csp_allows_exactly_the_page_script_and_style_and_no_network(
        hostile_runs: tuple[Path, Path, Path]) -> None:
    _, forward, _ = hostile_runs
    page = _parse(build_page(load_runs([forward]), plots=False))
    (csp,) = [a["content"] for t, a in page.tags
              if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    rules = dict(part.strip().split(" ", 1) for part in csp.split(";") if part.strip())

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    (script,) = [b for t, a, b in page.bodies if t == "script" and "type" not in a]
    (style,) = [b for t, _, b in page.bodies if t == "style"]
    assert rules == {"default-src": "'none'", "script-src": sha(script),
                     "style-src": sha(style), "img-src": "data:", "base-uri": "'none'",
                     "form-action": "'none'"}
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script and "eval(" not in script
    assert not re.search(r"https?://", script + style)


def test_summary_is_the_report_and_items_match_the_runs(
        hostile_runs: tuple[Path, Path, Path]) -> None:
    _, forward, reverse = hostile_runs
    runs = load_runs([forward, reverse])
    data = _data(_parse(build_page(runs, plots=False)))
    tables = report_tables(runs)
    assert [(t["title"], t["header"], t["rows"]) for t in data["tables"]] == \
        [(t.title, t.header, t.rows) for t in tables]
    text = render_report(runs)
    for t in tables:  # the text report prints the same cells
        assert t.title in text
        for row in t.rows:
            assert all(cell in text for cell in row)
    # an independent count: GOOD responses score 9, others 2; x0..x3 right, `tie` ties,
    # `f` failed on the server, in both orders
    summary = next(t for t in data["tables"] if t["header"][1:] == ["forward", "reverse"])
    acc = dict((r[0], r[1:]) for r in summary["rows"])
    assert acc["accuracy"] == ["80", "80"] and acc["failed"] == ["1", "1"]
    assert acc["accuracy_items"] == ["5", "5"]
    outcome = {it["id"]: [(r["correct"], r["tie"], r["failed"]) for r in it["results"]]
               for it in data["items"]}
    assert outcome["x0"] == outcome["x1"] == [(True, False, False)] * 2
    assert outcome["tie"] == [(False, True, False)] * 2
    assert outcome["f"] == [(None, False, True)] * 2
    assert [it["id"] for it in data["items"]] == [r["id"] for r in hostile_rows()]
    # the reversed run is shown in dataset order: same scores and pick as the forward run
    for it in data["items"]:
        fwd, rev = it["results"]
        assert fwd["scores"] == rev["scores"] and fwd["pick"] == rev["pick"]
        assert not it["disagree"] and it["mismatch"] is None
    x1 = next(it for it in data["items"] if it["id"] == "x1")
    rev_sample = x1["results"][1]["verdict"]["samples"][0]
    assert [c["overall"] for c in rev_sample["critiques"]] == [2, 9]  # GOOD is response 2
    assert x1["results"][1]["order"] == [1, 0]


def test_old_runs_without_stored_text_still_open_with_a_note(
        hostile_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, forward, _ = hostile_runs
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text((forward / "run.json").read_text())
    lines = []
    for line in (forward / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for key in ("query", "responses", "reference", "rubric"):
            rec.pop(key, None)
        lines.append(json.dumps(rec))
    (old / "results.jsonl").write_text("\n".join(lines) + "\n")
    data = _data(_parse(build_page(load_runs([old]), plots=False)))
    assert data["runs"][0]["stored_text"] is False
    assert any("before runs stored what the judge saw" in n for n in data["notes"])
    assert all(it["query"] is None and it["responses"] is None for it in data["items"])
    assert all(it["results"][0]["verdict"] is not None for it in data["items"] if it["id"] != "f")


def test_cli_writes_the_page_and_plots(hostile_runs: tuple[Path, Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, forward, reverse = hostile_runs
    out = tmp_path / "view.html"
    assert main(["view", str(forward), str(reverse), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    data = _data(_parse(out.read_text(encoding="utf-8")))
    assert data["plots"] and all(p["src"].startswith("data:image/png;base64,")
                                 for p in data["plots"])
    png = base64.b64decode(data["plots"][0]["src"].split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("argv, message", [
    (["view"], "the following arguments are required"),
    (["view", "RUN"], "the following arguments are required: --output"),
    (["view", "NOT_A_RUN", "-o", "OUT/v.html"], "is not a bench run directory"),
    (["view", "FORWARD", "-o", "OUT/missing/v.html"], "does not exist"),
    (["view", "FORWARD", "-o", "OUT"], "is a directory"),
    (["view", "FORWARD", "-o", "OUT/v.html", "--aggregate", "median"], "invalid choice"),
    # The tie-break is the run's own (issue 22 item 8): there is no seed to choose.
    (["view", "FORWARD", "-o", "OUT/v.html", "--seed", "3"], "unrecognized arguments"),
])
def test_bad_arguments_exit_2_with_one_line(
        argv: list[str], message: str, hostile_runs: tuple[Path, Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, forward, _ = hostile_runs
    subs = {"RUN": str(forward), "FORWARD": str(forward), "NOT_A_RUN": str(tmp_path)}
    args = [subs.get(a, a).replace("OUT", str(tmp_path)) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "v.html").exists()


def test_runs_holding_different_items_under_one_id_are_flagged(tmp_path: Path) -> None:
    def items(second: str, best: int) -> list[BenchItem]:
        return [BenchItem(id="1", query="q", responses=["x", second], label=Label.best_of(best)),
                BenchItem(id="2", query="p", responses=["u", "v"], label=Label.best_of(0))]

    run(items("y", 0), ScriptedJudgeStandIn(), out_dir=tmp_path / "a")
    run(items("z", 1), ScriptedJudgeStandIn(), out_dir=tmp_path / "b")
    data = view_data(load_runs([tmp_path / "a", tmp_path / "b"]))
    by_id = {it.id: it for it in data.items}
    assert by_id["1"].mismatch == ("The runs hold different items under this id: the gold "
                                   "label and responses differ.")
    assert by_id["2"].mismatch is None
