"""`judgekit view` in a real headless Chromium (tests/support/browser.py says why this driver):
the page loads with no console error, nothing that the runs carry ever runs as script, an item
opens on its critique, and the filters, search and sort pick the items an independent count
says they should.

These tests never skip in CI: with CI set, a missing Chromium is a failure. Elsewhere they skip
when no Chromium is installed (`apt-get install chromium`; `bash install.sh test` does it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.browser import Browser, find_chromium
from support.view_runs import CRITIQUE_MARK, hostile_rows

from judgekit.bench.report import load_runs
from judgekit.view.page import build_page, script_safe_json

READY = "window.judgekitView && window.judgekitView.ready"
ROWS = {r["id"]: r for r in hostile_rows()}


def _why_no_browser() -> str | None:
    if find_chromium() is None:
        return "no Chromium on PATH (apt-get install chromium)"
    if importlib.util.find_spec("websockets") is None:
        return "the websockets package is missing (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    missing = _why_no_browser()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {missing}")
        pytest.skip(missing)
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def page(hostile_runs: tuple[Path, Path, Path], biased_run: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The forward run, its --reverse twin and a position-biased reversed run, with plots."""
    _, forward, reverse = hostile_runs
    out = tmp_path_factory.mktemp("view") / "view.html"
    out.write_text(build_page(load_runs([forward, reverse, biased_run])), encoding="utf-8")
    return out


def _open(browser: Browser, path: Path) -> None:
    browser.errors.clear()
    browser.open(path, ready=READY)


def _visible_ids(browser: Browser) -> list[str]:
    return list(browser.evaluate(
        "[...document.querySelectorAll('#list tr.row .item-id')].map(e => e.textContent)"))


def _nothing_ran(browser: Browser) -> None:
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.scripts.length") == 2
    assert browser.evaluate("document.querySelectorAll('iframe, textarea, a[href]').length") == 0


def test_the_page_loads_without_errors_and_runs_nothing_from_the_data(
        browser: Browser, page: Path) -> None:
    _open(browser, page)
    browser.pump(0.3)  # late console messages
    assert browser.errors == []
    _nothing_ran(browser)
    assert browser.evaluate("document.title").startswith("judgekit view: forward, reverse")
    n_plots = browser.evaluate("document.querySelectorAll('img.plot').length")
    assert n_plots >= 1
    assert browser.evaluate(  # the data: URI plots decoded and drew under the CSP
        "[...document.querySelectorAll('img.plot')].every(i => i.complete && i.naturalWidth > 0)")
    summary = browser.evaluate("document.querySelector('#view-summary').innerText")
    assert "accuracy_items" in summary
    # the headline, strict rule, `f` failed: the fair runs get x0..x3 right and tie on `tie`
    # (4 of 5); the biased one always prefers response 2, right on x1 and x3 only (2 of 5)
    cards = browser.evaluate("[...document.querySelectorAll('.headline .card')].map(c =>"
                             " [c.querySelector('.run-chip').textContent,"
                             " c.querySelector('.figure .value').textContent])")
    assert cards == [["forward", "80%"], ["reverse", "80%"], ["biased", "40%"]]


def test_open_an_item_and_find_its_critique(browser: Browser, page: Path,
                                            hostile_runs: tuple[Path, Path, Path]) -> None:
    _, forward, _ = hostile_runs
    records = {json.loads(line)["item_id"]: json.loads(line)
               for line in (forward / "results.jsonl").read_text().splitlines()}
    expected = records["x2"]["verdict"]["samples"][0]["critiques"][0]["analysis"]
    assert expected.startswith(f"{CRITIQUE_MARK} {ROWS['x2']['responses'][0]}")
    _open(browser, page)
    browser.click("#tab-items")
    index = [r["id"] for r in hostile_rows()].index("x2")
    browser.click(f'#list tr.row[data-index="{index}"]')
    browser.wait_for("document.querySelector('#detail .item-head h2')?.textContent === 'x2'")
    # the critique, as literal text, visible in the first run's column
    found = browser.evaluate(
        "(() => { const col = document.querySelectorAll('#detail .run-col')[0];"
        " const a = [...col.querySelectorAll('.critique .analysis')][0];"
        " const r = a.getBoundingClientRect();"
        " return {text: a.textContent, visible: r.width > 0 && r.height > 0}; })()")
    assert found == {"text": expected, "visible": True}
    # the query and both responses, as text; the three runs side by side
    detail = browser.evaluate("document.querySelector('#detail').textContent")
    assert ROWS["x2"]["query"] in detail
    assert all(r in detail for r in ROWS["x2"]["responses"])
    assert browser.evaluate("document.querySelectorAll('#detail .run-col').length") == 3
    assert browser.evaluate("location.hash") == "#item=x2"
    _nothing_ran(browser)
    assert browser.errors == []


def _prefers(row: dict, biased: bool) -> object:
    """An independent account of each fake judge's preference (dataset order): the fair one
    prefers the GOOD response (a tie when there is none); the biased one, shown the responses
    reversed, always prefers the last."""
    if biased:
        return len(row["responses"]) - 1
    good = [i for i, r in enumerate(row["responses"]) if "GOOD" in r]
    return good[0] if len(good) == 1 else "tie"


def test_filters_search_and_sort_pick_the_right_items(browser: Browser, page: Path) -> None:
    _open(browser, page)
    browser.click("#tab-items")
    order = [r["id"] for r in hostile_rows()]
    assert _visible_ids(browser) == order

    def shown_with(selector: str, value: str) -> list[str]:
        browser.choose(selector, value)
        return _visible_ids(browser)

    judged = [r for r in hostile_rows() if r["id"] != "f"]
    fair_right = [r["id"] for r in judged if _prefers(r, False) == r["label"]]
    assert shown_with("#filter-outcome", "right") == fair_right
    assert shown_with("#filter-outcome", "tie") == [r["id"] for r in judged
                                                    if _prefers(r, False) == "tie"]
    assert shown_with("#filter-outcome", "failed") == ["f"]
    browser.choose("#filter-run", "2")  # the biased run
    assert shown_with("#filter-outcome", "wrong") == [r["id"] for r in judged
                                                      if _prefers(r, True) != r["label"]]
    assert shown_with("#filter-outcome", "disagree") == [
        r["id"] for r in judged if _prefers(r, False) != _prefers(r, True)]
    assert browser.evaluate("document.querySelector('#controls .count').textContent") \
        .startswith(f"{len(_visible_ids(browser))} of {len(order)}")
    browser.choose("#filter-outcome", "all")
    assert shown_with("#filter-subset", "plain") == [r["id"] for r in hostile_rows()
                                                     if r["subset"] == "plain"]
    browser.choose("#filter-subset", "")
    browser.type_text("#search", "IFRAME")  # case-insensitive, over queries and responses
    expected = [r["id"] for r in hostile_rows()
                if "iframe" in (r["query"] + " ".join(r["responses"]))]
    browser.wait_for(f"document.querySelectorAll('#list tr.row').length === {len(expected)}")
    assert _visible_ids(browser) == expected
    browser.evaluate("(() => { const s = document.querySelector('#search'); s.value = '';"
                     " s.dispatchEvent(new Event('input')); })()")
    ids = shown_with("#filter-sort", "id")
    assert ids == sorted(order, key=lambda s: [int(t) if t.isdigit() else t
                                               for t in re.split(r"(\d+)", s)])
    assert browser.errors == []


def test_a_link_opens_its_item_and_the_arrow_keys_move_through_the_list(
        browser: Browser, page: Path) -> None:
    browser.errors.clear()
    browser.open(page, ready=READY, fragment="item=tie")
    assert browser.evaluate("document.querySelector('#detail .item-head h2').textContent") == "tie"
    assert browser.evaluate("document.querySelector('#list tr.row.selected .item-id')"
                            ".textContent") == "tie"
    browser.evaluate("document.querySelector('#list').focus()")
    browser.press("ArrowDown")
    order = [r["id"] for r in hostile_rows()]
    following = order[order.index("tie") + 1]
    browser.wait_for("document.querySelector('#detail .item-head h2').textContent === "
                     f"{json.dumps(following)}")
    browser.press("ArrowUp")
    browser.press("ArrowUp")
    browser.wait_for("document.querySelector('#detail .item-head h2').textContent === "
                     f"{json.dumps(order[order.index('tie') - 1])}")
    assert browser.errors == []


# --------------------------------------------------------------------------------------------
# Adversaries: the checks above can fail
# --------------------------------------------------------------------------------------------
def test_unescaped_data_would_break_out_and_the_policy_and_checks_catch_it(
        browser: Browser, hostile_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Without the JSON escaping, a `</script>` in a query ends the data block: the browser
    reports it (the CSP refuses the injected script, and the data no longer parses). Without the
    CSP as well, the injected script runs, and `window.__pwned` shows it."""
    _, forward, _ = hostile_runs
    runs = load_runs([forward])
    good = build_page(runs, plots=False)
    raw_json = re.search(r'id="judgekit-data">(.*?)</script>', good, re.DOTALL)
    assert raw_json is not None
    unescaped = json.loads(raw_json.group(1))
    naive = good.replace(raw_json.group(1), json.dumps(unescaped, ensure_ascii=False))
    assert script_safe_json(json.dumps(unescaped, ensure_ascii=False)) != \
        json.dumps(unescaped, ensure_ascii=False)
    path = tmp_path / "naive.html"
    path.write_text(naive, encoding="utf-8")
    browser.errors.clear()
    browser.open(path)
    browser.pump(0.5)
    assert any("Content Security Policy" in e for e in browser.errors), browser.errors
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert not browser.evaluate("window.judgekitView && window.judgekitView.ready")

    no_csp = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", naive)
    path.write_text(no_csp, encoding="utf-8")
    browser.errors.clear()
    browser.open(path)
    browser.pump(0.5)
    assert browser.evaluate("typeof window.__pwned") == "string"
