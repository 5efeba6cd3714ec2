/* judgekit view: a fixed program over the run data in the JSON block #judgekit-data.
   Every string that comes from a run (queries, responses, critiques, raw text, names) reaches
   the page only as a text node (el() and add() below); nothing is ever parsed as HTML, and no
   link or URL is built from data. */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("judgekit-data").textContent);
  var RUNS = DATA.runs;
  var ITEMS = DATA.items;
  var PAGE = 300;
  var IMAGE_URI = /^data:image\/(png|svg\+xml);base64,[A-Za-z0-9+\/=]+$/;

  var state = {
    tab: "summary", subset: "", outcome: "all", run: 0, q: "", sort: "order",
    shown: PAGE, selected: -1, visible: []
  };

  // ------------------------------------------------------------------------------------------
  // DOM helpers: text only
  // ------------------------------------------------------------------------------------------
  function add(node, kids) {
    if (kids === undefined || kids === null || kids === false) return node;
    if (!Array.isArray(kids)) kids = [kids];
    for (var i = 0; i < kids.length; i++) {
      var k = kids[i];
      if (k === undefined || k === null || k === false) continue;
      node.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return node;
  }
  function el(tag, cls, kids) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    return add(node, kids);
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }
  function num(x, digits) {
    if (x === null || x === undefined) return "\u2013";
    var d = digits === undefined ? 2 : digits;
    var p = Math.pow(10, d);
    return String(Math.round(x * p) / p);
  }
  function pct(x) { return x === null || x === undefined ? "\u2013" : num(100 * x, 1) + "%"; }
  function runChip(r) { return el("span", "run-chip run-" + (r % 6), RUNS[r].label); }
  function badge(cls, text, title) {
    var b = el("span", "badge " + cls, text);
    if (title) b.title = title;
    return b;
  }
  function textBlock(text, cls) { return el("pre", "text" + (cls ? " " + cls : ""), text); }
  function section(title, kids, cls) {
    return el("section", "block" + (cls ? " " + cls : ""), [el("h3", null, title)].concat(kids));
  }
  function kv(pairs) {
    var dl = el("dl", "kv");
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") return;
      add(dl, [el("dt", null, p[0]), el("dd", null, p[1])]);
    });
    return dl;
  }

  // ------------------------------------------------------------------------------------------
  // Outcomes (computed by judgekit in Python; here only shown)
  // ------------------------------------------------------------------------------------------
  function outcome(res) {
    if (!res) return {cls: "absent", text: "not run", title: "this run has no record of the item"};
    if (res.failed) return {cls: "failed", text: "failed", title: res.error || "no judgement"};
    if (res.tie) return {cls: "tie", text: "tie", title: "the judge's top score is shared (strict rule: wrong)"};
    if (res.correct === true) return {cls: "right", text: "right", title: "picked the gold response"};
    if (res.correct === false) return {cls: "wrong", text: "wrong", title: "picked another response"};
    if (res.pick !== null) return {cls: "na", text: "picked " + (res.pick + 1), title: "no single gold best"};
    return {cls: "na", text: "no pick", title: "no valid sample"};
  }
  function outcomeBadge(res) {
    var o = outcome(res);
    return badge(o.cls, o.text, o.title);
  }
  function scoresText(res) {
    if (!res) return "";
    return res.scores.map(function (s) { return num(s, 1); }).join(" / ");
  }

  // ------------------------------------------------------------------------------------------
  // Tabs
  // ------------------------------------------------------------------------------------------
  var tabs = {};
  function buildTabs() {
    var nav = document.getElementById("tabs");
    [["summary", "Summary"], ["items", "Items (" + ITEMS.length + ")"]].forEach(function (t) {
      var b = el("button", "tab", t[1]);
      b.type = "button";
      b.id = "tab-" + t[0];
      b.addEventListener("click", function () { showTab(t[0]); });
      tabs[t[0]] = b;
      nav.appendChild(b);
    });
    document.getElementById("generated").textContent =
      "judgekit " + DATA.judgekit_version + " \u00b7 " + DATA.generated_at;
  }
  function showTab(name) {
    state.tab = name;
    Object.keys(tabs).forEach(function (k) {
      tabs[k].classList.toggle("active", k === name);
      document.getElementById("view-" + k).hidden = k !== name;
    });
  }

  // ------------------------------------------------------------------------------------------
  // Summary: runs, the report's tables (the cells `bench report` prints), plots
  // ------------------------------------------------------------------------------------------
  function table(header, rows, cls) {
    var t = el("table", cls || "grid");
    var tr = el("tr");
    header.forEach(function (h) { tr.appendChild(el("th", null, h)); });
    t.appendChild(el("thead", null, tr));
    var body = el("tbody");
    rows.forEach(function (row) {
      var r = el("tr");
      row.forEach(function (c, i) { r.appendChild(el(i === 0 ? "th" : "td", null, c)); });
      body.appendChild(r);
    });
    t.appendChild(body);
    return t;
  }
  // the headline figures of each run: cells of the report's own summary table, not recomputed
  var HEADLINE = [["accuracy", "accuracy (the run's own rules)", "%"], ["accuracy_items", "items scored", ""],
                  ["tie_rate", "judge ties", "%"], ["failed", "failed items", ""], ["tokens_per_item", "tokens per item", ""]];
  function headline() {
    var summary = DATA.tables.filter(function (t) { return t.section === "summary"; })[0];
    if (!summary) return null;
    var rows = {};
    summary.rows.forEach(function (r) { rows[r[0]] = r.slice(1); });
    var cards = el("div", "headline");
    summary.header.slice(1).forEach(function (label, i) {
      var run = RUNS.map(function (r) { return r.label; }).indexOf(label);
      var figures = HEADLINE.filter(function (h) { return rows[h[0]] && rows[h[0]][i] !== ""; }).map(function (h) {
        return el("div", "figure", [el("div", "value", rows[h[0]][i] + h[2]), el("div", "what", h[1])]);
      });
      cards.appendChild(el("div", "card", [run >= 0 ? runChip(run) : el("strong", null, label),
                                           el("div", "figures", figures)]));
    });
    return cards;
  }
  function buildSummary() {
    var root = document.getElementById("view-summary");
    add(root, headline());
    root.appendChild(el("h2", null, "Runs"));
    root.appendChild(table(
      ["", "run", "dataset", "model", "judge", "k", "order", "items", "text stored"],
      RUNS.map(function (r, i) {
        return ["R" + (i + 1), r.label, r.dataset + (r.subset ? " / " + r.subset : ""), r.model,
                r.judge + (r.meta ? " + meta" : ""), String(r.k), r.reverse ? "reversed" : "as given",
                String(r.n_items), r.stored_text ? "yes" : "no"];
      }), "grid runs"));
    if (DATA.notes.length) {
      var ul = el("ul", "notes");
      DATA.notes.forEach(function (n) { ul.appendChild(el("li", null, n)); });
      root.appendChild(ul);
    }
    DATA.tables.forEach(function (t) {
      root.appendChild(el("h2", "table-title", t.title));
      root.appendChild(el("div", "table-wrap", table(t.header, t.rows)));
    });
    root.appendChild(el("p", "caveat", DATA.caveat));
    if (DATA.plots.length) {
      root.appendChild(el("h2", null, "Plots"));
      DATA.plots.forEach(function (p) {
        if (!IMAGE_URI.test(p.src)) return;
        var img = el("img", "plot");
        img.alt = p.name;
        img.src = p.src;
        root.appendChild(el("figure", null, [img, el("figcaption", null, p.name)]));
      });
    }
  }

  // ------------------------------------------------------------------------------------------
  // Item list: filters, search, sorting
  // ------------------------------------------------------------------------------------------
  var hay = [];
  function queryText(q) {
    if (q === null || q === undefined) return "";
    if (typeof q === "string") return q;
    return q.map(function (m) { return m.role + ": " + m.content; }).join("\n");
  }
  function haystack(i) {
    if (hay[i] !== undefined) return hay[i];
    var it = ITEMS[i];
    var parts = [it.id, it.subset, it.label, queryText(it.query), it.reference || ""];
    (it.responses || []).forEach(function (r) { parts.push(r); });
    it.results.forEach(function (res) {
      if (!res) return;
      if (res.error) parts.push(res.error);
      if (!res.verdict) return;
      res.verdict.samples.forEach(function (s) {
        s.principles.forEach(function (p) { parts.push(p.name, p.description); });
        s.critiques.forEach(function (c) { parts.push(c.analysis); });
        parts.push(s.raw_text, s.error || "");
      });
    });
    hay[i] = parts.join("\n").toLowerCase();
    return hay[i];
  }
  function matches(i) {
    var it = ITEMS[i];
    if (state.subset && it.subset !== state.subset) return false;
    var res = it.results[state.run];
    switch (state.outcome) {
      case "right": if (!res || res.correct !== true) return false; break;
      case "wrong": if (!res || res.correct !== false) return false; break;
      case "tie": if (!res || !res.tie) return false; break;
      case "failed": if (!res || !res.failed) return false; break;
      case "disagree": if (!it.disagree) return false; break;
      case "gold-tie": if (it.gold.length < 2) return false; break;
      default: break;
    }
    return !state.q || haystack(i).indexOf(state.q) >= 0;
  }
  function margin(i) {
    var res = ITEMS[i].results[state.run];
    if (!res || res.failed) return Infinity;
    var s = res.scores.filter(function (x) { return x !== null; }).sort(function (a, b) { return b - a; });
    return s.length < 2 ? Infinity : s[0] - s[1];
  }
  function tokens(i) {
    var res = ITEMS[i].results[state.run];
    if (!res || !res.verdict) return -1;
    var u = res.verdict.usage;
    return u.prompt_tokens + u.completion_tokens;
  }
  var SORTS = {
    order: null,
    id: function (a, b) { return ITEMS[a].id.localeCompare(ITEMS[b].id, undefined, {numeric: true}); },
    subset: function (a, b) { return ITEMS[a].subset.localeCompare(ITEMS[b].subset) || a - b; },
    margin: function (a, b) { return margin(a) - margin(b) || a - b; },
    tokens: function (a, b) { return tokens(b) - tokens(a) || a - b; }
  };
  function select(options, value, onChange, label) {
    var s = el("select");
    s.id = "filter-" + label;
    s.setAttribute("aria-label", label);
    options.forEach(function (o) {
      var opt = el("option", null, o[1]);
      opt.value = o[0];
      s.appendChild(opt);
    });
    s.value = value;
    s.addEventListener("change", function () { onChange(s.value); });
    return s;
  }
  function buildControls() {
    var root = document.getElementById("controls");
    var search = el("input");
    search.type = "search";
    search.id = "search";
    search.placeholder = "search ids, text, principles, critiques";
    search.setAttribute("aria-label", "search");
    search.addEventListener("input", function () {
      state.q = search.value.trim().toLowerCase();
      refreshList();
    });
    var counts = {};
    ITEMS.forEach(function (it) { counts[it.subset] = (counts[it.subset] || 0) + 1; });
    var subsets = Object.keys(counts).sort();
    var subsetOpts = [["", "all subsets"]].concat(subsets.map(function (s) {
      return [s, (s || "(none)") + " (" + counts[s] + ")"];
    }));
    var outcomes = [["all", "all items"], ["right", "right"], ["wrong", "wrong"], ["tie", "judge tied"],
                    ["failed", "failed"]];
    if (RUNS.length > 1) outcomes.push(["disagree", "runs disagree"]);
    if (ITEMS.some(function (it) { return it.gold.length > 1; })) outcomes.push(["gold-tie", "gold is a tie"]);
    var parts = [
      search,
      label("subset", select(subsetOpts, "", function (v) { state.subset = v; refreshList(); }, "subset")),
      label("show", select(outcomes, "all", function (v) { state.outcome = v; refreshList(); }, "outcome"))
    ];
    if (RUNS.length > 1) {
      parts.push(label("in run", select(RUNS.map(function (r, i) { return [String(i), "R" + (i + 1) + " " + r.label]; }),
        "0", function (v) { state.run = Number(v); refreshList(); }, "run")));
    }
    parts.push(label("sort", select([["order", "dataset order"], ["id", "item id"], ["subset", "subset"],
      ["margin", "closest call first"], ["tokens", "most tokens first"]], "order",
      function (v) { state.sort = v; refreshList(); }, "sort")));
    parts.push(el("span", "count", ""));
    add(root, parts);
  }
  function label(text, control) { return el("label", "control", [el("span", null, text), control]); }

  function refreshList() {
    var idx = [];
    for (var i = 0; i < ITEMS.length; i++) if (matches(i)) idx.push(i);
    if (SORTS[state.sort]) idx.sort(SORTS[state.sort]);
    state.visible = idx;
    state.shown = PAGE;
    document.querySelector("#controls .count").textContent = idx.length + " of " + ITEMS.length + " items";
    renderList();
  }
  function renderList() {
    var root = clear(document.getElementById("list"));
    var head = el("tr", null, [el("th", null, "#"), el("th", null, "item"), el("th", null, "gold")]);
    RUNS.forEach(function (r, i) { head.appendChild(el("th", null, runChip(i))); });
    var body = el("tbody");
    var end = Math.min(state.shown, state.visible.length);
    for (var n = 0; n < end; n++) {
      var i = state.visible[n];
      var it = ITEMS[i];
      var tr = el("tr", "row" + (i === state.selected ? " selected" : ""), [
        el("td", "num", String(i + 1)),
        el("td", "item-cell", [el("div", "item-id", it.id), it.subset ? el("div", "subset", it.subset) : null,
                               it.disagree ? badge("disagree", "runs disagree") : null]),
        el("td", "gold", it.label)
      ]);
      tr.dataset.index = String(i);
      it.results.forEach(function (res) {
        tr.appendChild(el("td", "res", [outcomeBadge(res), el("div", "scores", scoresText(res))]));
      });
      body.appendChild(tr);
    }
    var t = el("table", "list", [el("thead", null, head), body]);
    root.appendChild(t);
    if (!state.visible.length) root.appendChild(el("p", "empty", "No item matches."));
    if (end < state.visible.length) {
      var more = el("button", "more", "show " + Math.min(PAGE, state.visible.length - end) + " more of " +
                    (state.visible.length - end));
      more.type = "button";
      more.addEventListener("click", function () { state.shown += PAGE; renderList(); });
      root.appendChild(more);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Item view: the query, the reference, the rubric, the responses; each run's judgement
  // ------------------------------------------------------------------------------------------
  function queryBlock(q) {
    if (q === null || q === undefined) return el("p", "note", "Not stored in this run.");
    if (typeof q === "string") return textBlock(q);
    return el("div", "messages", q.map(function (m) {
      return el("div", "message", [el("div", "role", m.role), textBlock(m.content)]);
    }));
  }
  function rubricBlock(rubric) {
    return [el("p", "muted", "mode: " + rubric.mode),
            table(["criterion", "weight", "description"], rubric.principles.map(function (p) {
              return [p.name, pct(p.weight), p.description];
            }), "grid principles")];
  }
  function responsesBlock(it) {
    var n = it.responses ? it.responses.length : (it.results.filter(Boolean)[0] || {scores: []}).scores.length;
    var cards = [];
    for (var i = 0; i < n; i++) {
      var head = el("div", "response-head", [el("strong", null, "Response " + (i + 1)),
        it.gold.indexOf(i) >= 0 ? badge("gold", "gold") : null]);
      var runScores = el("div", "response-scores");
      it.results.forEach(function (res, r) {
        if (!res) return;
        var s = el("span", "run-score" + (res.pick === i ? " picked" : ""), [runChip(r), " " + num(res.scores[i], 1)]);
        if (res.pick === i) s.title = RUNS[r].label + " prefers this response";
        runScores.appendChild(s);
      });
      cards.push(el("div", "response", [head, runScores,
        it.responses ? textBlock(it.responses[i]) : el("p", "note", "Response text not stored in this run.")]));
    }
    return el("div", "responses", cards);
  }
  function usageText(u) {
    var parts = [u.prompt_tokens + " prompt + " + u.completion_tokens + " completion tokens"];
    if (u.cached_prompt_tokens) parts.push(u.cached_prompt_tokens + " cached");
    parts.push(u.calls + " call" + (u.calls === 1 ? "" : "s"));
    if (u.cached_calls) parts.push(u.cached_calls + " from cache");
    if (u.retries) parts.push(u.retries + " retries");
    if (u.cost_usd !== null && u.cost_usd !== undefined) parts.push("$" + num(u.cost_usd, 6));
    return parts.join(", ");
  }
  function critiqueBlock(c, i, s) {
    var score = c.overall === null ? "no score" : "score " + num(c.overall, 2);
    if (c.weighted !== null) score += " (weighted " + num(c.weighted, 2) + ")";
    var kids = [el("div", "critique-head", [el("strong", null, "Response " + (i + 1)), " \u00b7 " + score,
      s.scores ? " \u00b7 counted " + num(s.scores[i], 2) : null])];
    if (c.analysis) kids.push(el("div", "analysis", c.analysis));
    var names = Object.keys(c.principle_scores || {});
    if (names.length) {
      kids.push(el("div", "muted", names.map(function (k) { return k + ": " + num(c.principle_scores[k], 1); }).join(" \u00b7 ")));
    }
    if (c.fixes && c.fixes.length) {
      kids.push(el("ul", "fixes", c.fixes.map(function (f) { return el("li", null, f); })));
    }
    return el("div", "critique", kids);
  }
  function sampleBlock(s, open) {
    var status = s.status;
    var head = [el("strong", null, "Sample " + (s.sample_index + 1)), " ",
      badge("status-" + status, status.replace("_", " ")),
      s.scores ? " " + s.scores.map(function (x) { return num(x, 1); }).join(" / ") : null];
    if (s.meta_score !== null) head.push(" \u00b7 meta " + num(s.meta_score, 3));
    head.push(" ", badge(s.kept ? "kept" : "discarded", s.kept ? "kept" : "discarded"));
    if (s.permutation && s.permutation.length > 1) {
      head.push(el("span", "muted", " \u00b7 shown order " + s.permutation.map(function (p) { return p + 1; }).join(",")));
    }
    var body = [];
    if (s.principles.length) {
      body.push(el("h4", null, "Principles"));
      body.push(table(["principle", "weight", "description"], s.principles.map(function (p) {
        return [p.name, pct(p.weight), p.description];
      }), "grid principles"));
    }
    if (s.critiques.length) {
      body.push(el("h4", null, "Critiques"));
      s.critiques.forEach(function (c, i) { body.push(critiqueBlock(c, i, s)); });
    }
    var flags = [];
    if (s.truncated) flags.push("hit the token limit");
    if (s.hinted) flags.push("re-asked with a hint");
    if (s.structured) flags.push("structured output");
    if (s.structured_fallback) flags.push(s.structured_fallback);
    body.push(kv([["usage", usageText(s.usage)], ["attempts", String(s.attempts)],
                  ["notes", flags.join("; ")], ["error", s.error]]));
    var raw = el("details", "raw", [el("summary", null, "raw text (" + s.raw_text.length + " chars)"),
                                     textBlock(s.raw_text)]);
    body.push(raw);
    var d = el("details", "sample status-" + status, [el("summary", null, head), el("div", "sample-body", body)]);
    d.open = open;
    return d;
  }
  function runColumn(res, r) {
    var run = RUNS[r];
    var kids = [el("div", "col-head", [runChip(r), " ", el("span", "muted", run.judge + ", k=" + run.k +
      (run.reverse ? ", reversed" : "") + (run.meta ? ", meta" : ""))])];
    if (!res) return el("div", "run-col", kids.concat([el("p", "note", "This run has no record of the item.")]));
    var v = res.verdict;
    kids.push(el("div", "verdict", [outcomeBadge(res), " scores " + scoresText(res),
      res.pick !== null ? " \u00b7 prefers response " + (res.pick + 1) : ""]));
    if (v) {
      kids.push(kv([
        ["voting", v.voting + " over " + v.valid_samples + " valid of " + v.k + " samples" +
          (v.k_meta ? " (meta keeps " + v.k_meta + ")" : "") + ", " + v.aggregate + " scores"],
        ["usage", usageText(v.usage)], ["time", num(v.wall_time_s, 2) + " s"], ["model", v.model],
        ["meta model", v.meta_model], ["error", res.error]]));
      var openAll = v.samples.length <= 2;
      v.samples.forEach(function (s, j) { kids.push(sampleBlock(s, openAll || j === 0)); });
    } else {
      kids.push(kv([["error", res.error || "no verdict"]]));
    }
    return el("div", "run-col", kids);
  }
  function renderDetail() {
    var root = clear(document.getElementById("detail"));
    if (state.selected < 0) {
      root.appendChild(el("p", "empty", "Pick an item on the left (\u2191 \u2193 move through the list)."));
      return;
    }
    var it = ITEMS[state.selected];
    root.appendChild(el("div", "item-head", [el("h2", null, it.id),
      it.subset ? badge("subset-chip", it.subset) : null, badge("gold", "gold: " + it.label),
      it.disagree ? badge("disagree", "runs disagree") : null]));
    var meta = Object.keys(it.metadata || {});
    if (meta.length) {
      root.appendChild(el("details", "metadata", [el("summary", null, "metadata (" + meta.length + ")"),
        kv(meta.map(function (k) { var v = it.metadata[k]; return [k, typeof v === "string" ? v : JSON.stringify(v)]; }))]));
    }
    if (it.mismatch) root.appendChild(el("p", "note", it.mismatch));
    if (!it.responses) {
      root.appendChild(el("p", "note", "These runs did not store the query and responses (made before " +
        "judgekit kept them); the judgements are shown below."));
    }
    root.appendChild(section("Query", [queryBlock(it.query)]));
    if (it.reference !== null && it.reference !== undefined) root.appendChild(section("Reference", [textBlock(it.reference)]));
    if (it.rubric) root.appendChild(section("Rubric", rubricBlock(it.rubric)));
    root.appendChild(section("Responses", [responsesBlock(it)]));
    var cols = el("div", "run-cols cols-" + Math.min(RUNS.length, 4));
    it.results.forEach(function (res, r) { cols.appendChild(runColumn(res, r)); });
    root.appendChild(section(RUNS.length > 1 ? "Judgements, side by side" : "Judgement", [cols]));
    root.scrollTop = 0;
  }
  function selectItem(i, fromList) {
    state.selected = i;
    var rows = document.querySelectorAll("#list tr.row");
    for (var n = 0; n < rows.length; n++) rows[n].classList.toggle("selected", Number(rows[n].dataset.index) === i);
    renderDetail();
    if (i >= 0) {
      try { history.replaceState(null, "", "#item=" + encodeURIComponent(ITEMS[i].id)); } catch (e) { /* file: may refuse */ }
      if (!fromList) {
        var row = document.querySelector("#list tr.row.selected");
        if (row) row.scrollIntoView({block: "nearest"});
      }
    }
  }
  function buildItems() {
    buildControls();
    var list = document.getElementById("list");
    list.addEventListener("click", function (e) {
      var tr = e.target.closest ? e.target.closest("tr.row") : null;
      if (tr) selectItem(Number(tr.dataset.index), true);
    });
    list.addEventListener("keydown", function (e) {
      if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
      var pos = state.visible.indexOf(state.selected);
      var next = e.key === "ArrowDown" ? pos + 1 : pos - 1;
      if (next >= 0 && next < Math.min(state.shown, state.visible.length)) {
        selectItem(state.visible[next], false);
        e.preventDefault();
      }
    });
    refreshList();
    renderDetail();
  }

  function start() {
    buildTabs();
    buildSummary();
    buildItems();
    showTab("summary");
    var hash = location.hash;
    if (hash.indexOf("#item=") === 0) {
      var id = decodeURIComponent(hash.slice(6));
      for (var i = 0; i < ITEMS.length; i++) {
        if (ITEMS[i].id === id) { showTab("items"); selectItem(i, false); break; }
      }
    }
    document.title = "judgekit view: " + RUNS.map(function (r) { return r.label; }).join(", ");
    window.judgekitView = {ready: true, readyMs: performance.now(), items: ITEMS.length};
    document.documentElement.setAttribute("data-ready", "1");
  }
  start();
})();
