"""`judgekit view` at size: a 1,000-item run at k=8 as one HTML file, opened in headless Chromium.

The run is written through the real runner (`judgekit.bench.run`) by a stand-in judge whose
principles, critiques and raw text have the length a real judge writes
(`tests/support/view_runs.py`: four principles, a 70-word critique per response, the raw text
they were parsed from; two responses of 180 words and a 90-word query per item), since no model
writes 8,000 judgements on two CPU cores. The page is built by the same code as `judgekit view`
(plots included), then opened `--repeat` times in a fresh tab of one headless Chromium
(tests/support/browser.py). Printed: the file size, the time to build it, and per open:

  * load:   from the navigation request until the page says it is ready (data parsed, summary
            and the first rows of the item list drawn), as the test driver sees it;
  * in-page: the same moment by the page's own clock (performance.now(), from navigation start);
  * item:   clicking an item until its view (k samples per run) is drawn;
  * search: typing a word until the filtered list is drawn (the first search builds the index).

The budget is 3 s for load; the figure printed is the median and the ratio to the budget.
`--compare` adds a k=1 run of the same items (side by side); `--screenshots DIR` saves the
summary, an item, and the filtered list as PNGs to look at.

    python benchmarks/bench_view.py
    python benchmarks/bench_view.py --items 1000 -k 8 --compare --screenshots /tmp/view-shots
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the browser driver and the synthetic run live there

from support.browser import Browser  # noqa: E402
from support.view_runs import synthetic_run  # noqa: E402

from judgekit.bench.report import load_runs  # noqa: E402
from judgekit.view.page import write_page  # noqa: E402

READY = "window.judgekitView && window.judgekitView.ready"
BUDGET_S = 3.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("-k", "--samples", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3, help="opens of the page (default 3)")
    p.add_argument("--compare", action="store_true", help="add a k=1 run of the same items")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--screenshots", metavar="DIR", help="save PNG screenshots here")
    p.add_argument("--keep", metavar="DIR", help="write the runs and the page here (kept)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-view-") as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        dirs = [synthetic_run(root / f"grm-k{args.samples}", args.items, args.samples)]
        if args.compare:
            dirs.append(synthetic_run(root / "grm-k1", args.items, 1, judge_seed=1))
        print(f"runs written in {time.perf_counter() - t:.1f} s: {', '.join(map(str, dirs))}")
        t = time.perf_counter()
        page = write_page(load_runs(dirs), root / "view.html", plots=not args.no_plots)
        build_s = time.perf_counter() - t
        size = page.stat().st_size
        print(f"page: {page} {size / 2**20:.1f} MB ({size / args.items / 1024:.1f} KB per item), "
              f"built in {build_s:.1f} s ({len(dirs)} run(s), {args.items} items, "
              f"k={args.samples}{', plots' if not args.no_plots else ''})")

        loads: list[float] = []
        in_page: list[float] = []
        items: list[float] = []
        searches: list[float] = []
        with Browser(timeout=120) as b:
            for n in range(args.repeat):
                b.errors.clear()
                loads.append(b.open(page, ready=READY))
                in_page.append(b.evaluate("window.judgekitView.readyMs") / 1000)
                b.click("#tab-items")
                t = time.perf_counter()
                b.click('#list tr.row[data-index="7"]')
                b.wait_for("document.querySelector('#detail .item-head h2')?.textContent"
                           " === 'item-00007'")
                items.append(time.perf_counter() - t)
                t = time.perf_counter()
                b.type_text("#search", "item-0001")
                b.wait_for("document.querySelector('#controls .count').textContent"
                           f" !== '{args.items} of {args.items} items'", timeout=60)
                searches.append(time.perf_counter() - t)
                if b.errors:
                    print(f"console errors on open {n + 1}: {b.errors}")
                    return 1
                if args.screenshots and n == 0:
                    shots = Path(args.screenshots)
                    shots.mkdir(parents=True, exist_ok=True)
                    b.screenshot(shots / "big_item.png")
                    b.click("#tab-summary")
                    b.screenshot(shots / "big_summary.png")
                    print(f"screenshots in {shots}")

    def show(name: str, values: list[float]) -> None:
        print(f"{name:8s} median {statistics.median(values):.2f} s  "
              f"(all: {', '.join(f'{v:.2f}' for v in values)})")

    show("load", loads)
    show("in-page", in_page)
    show("item", items)
    show("search", searches)
    ratio = statistics.median(loads) / BUDGET_S
    print(f"load / {BUDGET_S:g} s budget = {ratio:.2f} ({'within' if ratio <= 1 else 'OVER'} "
          "budget)")
    return 0 if ratio <= 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
