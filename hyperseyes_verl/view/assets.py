"""The site's stylesheet and the index page's script, written once per site under `assets/`.

The script renders the episode table from `data/episodes.js` (a plain `<script src>`, which browsers load from
disk where `fetch` of a local file is refused) and puts every value in with `textContent`, never as HTML.
"""

CSS = """
:root { --ok:#1a7f37; --bad:#cf222e; --warn:#9a6700; --muted:#57606a; --line:#d0d7de; --bg2:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328; }
header.top { padding: 10px 20px; border-bottom: 1px solid var(--line); background: var(--bg2); }
header.top a { color: inherit; }
main { padding: 12px 20px 40px; max-width: 1400px; }
h1 { font-size: 20px; margin: 6px 0; } h2 { font-size: 17px; margin: 22px 0 8px; } h3 { font-size: 15px; margin: 12px 0 6px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; background: var(--muted); }
.badge.correct { background: var(--ok); } .badge.wrong, .badge.error { background: var(--bad); } .badge.no_answer { background: var(--warn); }
.chips span { display: inline-block; margin: 2px 6px 2px 0; padding: 1px 8px; border: 1px solid var(--line); border-radius: 10px; font-size: 12px; }
table.kv { border-collapse: collapse; margin: 4px 0; } table.kv td, table.kv th { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; font-size: 13px; }
table.kv th { background: var(--bg2); font-weight: 600; }
.cols { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.qa div { margin: 3px 0; } .qa .lbl { color: var(--muted); display: inline-block; min-width: 90px; }
pre, code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { white-space: pre-wrap; word-break: break-word; background: var(--bg2); padding: 8px; border-radius: 6px; margin: 4px 0; }
figure.frame { margin: 0; display: inline-block; vertical-align: top; }
figure.frame figcaption { font-size: 12px; color: var(--muted); }
.pic { position: relative; background: #eee; max-width: 100%; }
.pic img { display: block; width: 100%; height: 100%; }
.pic.nopix { background: repeating-linear-gradient(45deg, #f3f3f3, #f3f3f3 8px, #e6e6e6 8px, #e6e6e6 16px); border: 1px dashed #999; }
.pic.nopix::after { content: "pixels not recorded"; position: absolute; left: 6px; bottom: 4px; font-size: 11px; color: var(--muted); }
.box { position: absolute; border: 2px solid #00b4ff; box-shadow: 0 0 0 1px rgba(0,0,0,.55); }
.box.fail { border: 2px dashed var(--bad); }
.box .tag { position: absolute; left: -2px; top: -2px; background: #00b4ff; color: #000; font: 600 11px/1.2 ui-monospace, monospace; padding: 0 3px; white-space: nowrap; }
.box.fail .tag { background: var(--bad); color: #fff; }
.turn { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; margin: 12px 0; }
.turn > h3 { margin-top: 2px; }
.reason { color: #333; }
.call { border-left: 3px solid var(--line); padding: 2px 10px; margin: 8px 0; }
.crops { display: flex; flex-wrap: wrap; gap: 10px; margin: 6px 0; }
.crop { width: 260px; border: 1px solid var(--line); border-radius: 6px; padding: 6px; font-size: 12px; }
.crop.fail { border-color: var(--bad); background: #fff5f5; }
.crop .id { font: 600 12px ui-monospace, monospace; }
ol.hits { margin: 4px 0; padding-left: 20px; font-size: 12px; } ol.hits .snip { color: var(--muted); } ol.hits .url { color: #0969da; word-break: break-all; }
.fail-line, .err { color: var(--bad); font-size: 12px; }
.hint { color: var(--warn); font-size: 12px; }
.answer { border: 2px solid var(--ok); border-radius: 6px; padding: 4px 8px; display: inline-block; }
.note { color: var(--warn); }
.filters { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: center; padding: 8px; background: var(--bg2); border: 1px solid var(--line); border-radius: 6px; }
.filters label { font-size: 13px; }
table.eps { border-collapse: collapse; width: 100%; margin-top: 8px; }
table.eps th, table.eps td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: left; font-size: 13px; }
table.eps th { cursor: pointer; user-select: none; background: var(--bg2); position: sticky; top: 0; }
table.eps td:first-child { white-space: nowrap; }
table.eps td.q { max-width: 520px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.pager { margin: 8px 0; } .pager button { margin-right: 6px; }
svg.chart { border: 1px solid var(--line); background: #fff; }
svg.chart polyline { fill: none; stroke: #0969da; stroke-width: 2; } svg.chart circle { fill: #0969da; }
svg.chart text { font: 11px system-ui, sans-serif; fill: var(--muted); }
"""

INDEX_JS = r"""
(function () {
  "use strict";
  var EPS = window.HYPERSEYES_EPISODES || [];
  var PAGE = 100;
  var state = { key: "order", dir: 1, page: 0 };
  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) { var e = document.createElement(tag); if (text !== undefined && text !== null) e.textContent = String(text); if (cls) e.className = cls; return e; }
  function fmt(v, d) { return (v === null || v === undefined) ? "" : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(d === undefined ? 2 : d)) : String(v)); }
  function fillSelect(id, values) {
    var s = $(id); if (!s) return;
    values.sort().forEach(function (v) { var o = el("option", v); o.value = v; s.appendChild(o); });
  }
  var runs = {}, kinds = {};
  EPS.forEach(function (e) { runs[e.run] = 1; (e.errors || []).forEach(function (k) { kinds[k] = 1; }); });
  fillSelect("f-run", Object.keys(runs));
  fillSelect("f-error", Object.keys(kinds));
  function num(id) { var v = $(id).value; return v === "" ? null : Number(v); }
  function filtered() {
    var verdicts = {};
    document.querySelectorAll("input[name=verdict]").forEach(function (c) { verdicts[c.value] = c.checked; });
    var run = $("f-run").value, kind = $("f-error").value, text = $("f-text").value.toLowerCase();
    var rmin = num("f-rmin"), rmax = num("f-rmax"), wmin = num("f-wmin");
    var out = EPS.filter(function (e) {
      if (!verdicts[e.verdict]) return false;
      if (run && e.run !== run) return false;
      if (kind && (e.errors || []).indexOf(kind) < 0) return false;
      if (rmin !== null && e.rounds < rmin) return false;
      if (rmax !== null && e.rounds > rmax) return false;
      if (wmin !== null && e.width < wmin) return false;
      if (text && (e.question + " " + e.item + " " + (e.prediction || "")).toLowerCase().indexOf(text) < 0) return false;
      return true;
    });
    var k = state.key, d = state.dir;
    out.sort(function (a, b) {
      var x = a[k], y = b[k];
      if (x === null || x === undefined) return 1; if (y === null || y === undefined) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * d || (a.order - b.order);
    });
    return out;
  }
  function render() {
    var rows = filtered(), body = $("eps-body");
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    if (state.page >= pages) state.page = pages - 1;
    body.textContent = "";
    rows.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (e) {
      var tr = document.createElement("tr");
      var a = el("a", e.item); a.href = "e/" + encodeURIComponent(e.uid) + ".html";
      var td = document.createElement("td"); td.appendChild(a); tr.appendChild(td);
      tr.appendChild(el("td", e.run));
      var v = el("td"); v.appendChild(el("span", e.verdict.replace("_", " "), "badge " + e.verdict)); tr.appendChild(v);
      var q = el("td", e.question, "q"); q.title = e.question; tr.appendChild(q);
      tr.appendChild(el("td", fmt(e.reward, 3)));
      tr.appendChild(el("td", fmt(e.step)));
      tr.appendChild(el("td", fmt(e.rounds)));
      tr.appendChild(el("td", fmt(e.searches)));
      tr.appendChild(el("td", fmt(e.width)));
      tr.appendChild(el("td", (e.errors || []).join(", ")));
      body.appendChild(tr);
    });
    $("count").textContent = rows.length + " of " + EPS.length + " episodes";
    $("page").textContent = "page " + (state.page + 1) + " / " + pages;
  }
  document.querySelectorAll("table.eps th[data-key]").forEach(function (th) {
    th.addEventListener("click", function () {
      var k = th.getAttribute("data-key");
      state.dir = (state.key === k) ? -state.dir : 1; state.key = k; state.page = 0; render();
    });
  });
  document.querySelectorAll(".filters input, .filters select").forEach(function (i) {
    i.addEventListener("input", function () { state.page = 0; render(); });
  });
  $("prev").addEventListener("click", function () { if (state.page > 0) { state.page--; render(); } });
  $("next").addEventListener("click", function () { state.page++; render(); });
  render();
})();
"""
