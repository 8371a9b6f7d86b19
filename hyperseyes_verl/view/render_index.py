"""The index page: counts per run, the per-step summary of training runs, and the filterable episode table.

The table itself is drawn in the browser from `data/episodes.js` (`assets.INDEX_JS`), so 10,000 episodes cost
one small script, not 10,000 rows of markup; the per-step charts are inline SVG written here.
"""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Sequence

from .model import VERDICTS, Episode
from .render_episode import esc, fmt
from .steps import SERIES, series


def index_row(order: int, ep: Episode) -> dict[str, Any]:
    """What the index table filters and sorts on (one compact object per episode)."""
    errors = sorted({*ep.tool_errors, *ep.crop_failures, *(f"search:{k}" for k in ep.search_failure_kinds)})
    return {"order": order, "uid": ep.uid, "run": ep.run, "source": ep.source, "item": ep.item_id,
            "question": ep.question[:200], "prediction": (ep.prediction or "")[:100], "verdict": ep.verdict,
            "reward": ep.reward, "step": ep.step, "rounds": ep.tool_rounds, "searches": ep.searches,
            "width": round(ep.width, 3), "errors": errors}


def episodes_js(rows: list[dict[str, Any]]) -> str:
    # `<` escaped so no string can close a script element, should this ever be inlined
    return "window.HYPERSEYES_EPISODES = " + json.dumps(rows, ensure_ascii=False).replace("<", "\\u003c") + ";\n"


def run_table(episodes: Sequence[Episode]) -> str:
    by_run: dict[str, list[Episode]] = defaultdict(list)
    for ep in episodes:
        by_run[ep.run].append(ep)
    head = "<tr><th>run</th><th>source</th><th>episodes</th>" + "".join(
        f"<th>{v.replace('_', ' ')}</th>" for v in VERDICTS) + "<th>mean rounds</th><th>width</th><th>mean reward</th></tr>"
    rows = []
    for run, eps in by_run.items():
        counts = {v: sum(e.verdict == v for e in eps) for v in VERDICTS}
        rounds = sum(e.tool_rounds for e in eps)
        rewards = [e.reward for e in eps if e.reward is not None]
        cells = [run, eps[0].source, len(eps), *counts.values(), round(rounds / len(eps), 2),
                 round(sum(e.searches for e in eps) / rounds, 2) if rounds else 0,
                 round(sum(rewards) / len(rewards), 3) if rewards else ""]
        rows.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return f'<table class="kv" id="runs">{head}{"".join(rows)}</table>'


def chart(name: str, points: list[tuple[int, float]], w: int = 270, h: int = 140) -> str:
    """One small line chart of a series over steps, inline SVG."""
    pad = 30
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def px(x: float, y: float) -> tuple[float, float]:
        fx = (x - x0) / (x1 - x0) if x1 > x0 else 0.5
        return pad + fx * (w - pad - 8), h - 18 - (y - y0) / (y1 - y0) * (h - 36)

    pts = [px(x, y) for x, y in points]
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
    dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5"/>' for a, b in pts)
    return (f'<svg class="chart" data-series="{esc(name)}" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
            f'<text x="{pad}" y="12">{esc(name)} (last {esc(fmt(ys[-1]))})</text>'
            f'<text x="2" y="{h - 18}">{esc(fmt(y0))}</text><text x="2" y="26">{esc(fmt(y1))}</text>'
            f'<text x="{pad}" y="{h - 4}">step {x0}</text><text x="{w - 60}" y="{h - 4}">step {x1}</text>'
            f'<polyline points="{line}"/>{dots}</svg>')


def step_section(name: str, rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    pts = series(rows)
    charts = "".join(chart(name, pts[name]) for name in SERIES)
    main = ["step", "episodes", *SERIES]
    head = "".join(f"<th>{esc(k)}</th>" for k in main)
    by_step = {r["step"]: r for r in rows}
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in (
        s, by_step[s].get("episodes", ""),
        *[next((p[1] for p in pts[n] if p[0] == s), "") for n in SERIES])) + "</tr>" for s in sorted(by_step))
    logged = sorted({k for r in rows for k in r} - set(main))
    extra = ""
    if logged:
        lhead = "".join(f"<th>{esc(k)}</th>" for k in ["step", *logged])
        lbody = "".join("<tr>" + "".join(f"<td>{esc(fmt(r.get(k, '')))}</td>" for k in ["step", *logged]) + "</tr>"
                        for r in rows)
        extra = (f'<details><summary>all logged metrics ({len(logged)})</summary><div style="overflow:auto">'
                 f'<table class="kv">{lhead}{lbody}</table></div></details>')
    return (f'<section class="steps" data-run="{esc(name)}"><h2>Per-step summary: {esc(name)}</h2>'
            f'<div class="cols">{charts}</div><table class="kv"><tr>{head}</tr>{body}</table>{extra}</section>')


def index_page(title: str, episodes: Sequence[Episode], step_tables: dict[str, Sequence[dict[str, Any]]],
               sources: Sequence[str]) -> str:
    verdicts = "".join(f'<label><input type="checkbox" name="verdict" value="{v}" checked> {v.replace("_", " ")}'
                       f"</label>" for v in VERDICTS)
    cols = [("item", "item"), ("run", "run"), ("verdict", "outcome"), ("question", "question"), ("reward", "reward"),
            ("step", "step"), ("rounds", "rounds"), ("searches", "searches"), ("width", "width"),
            ("errors", "error kinds")]
    head = "".join(f'<th data-key="{k}">{esc(label)}</th>' for k, label in cols)
    src = "".join(f"<li>{esc(s)}</li>" for s in sources)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><link rel="stylesheet" href="assets/view.css"></head>
<body><header class="top"><b>{esc(title)}</b> · {len(episodes)} episodes</header><main>
<details><summary>sources</summary><ul>{src}</ul></details>
<h2>Runs</h2>{run_table(episodes)}
{"".join(step_section(name, rows) for name, rows in step_tables.items())}
<h2>Episodes</h2>
<div class="filters">{verdicts}
<label>run <select id="f-run"><option value="">all</option></select></label>
<label>error kind <select id="f-error"><option value="">any</option></select></label>
<label>rounds <input id="f-rmin" type="number" min="0" style="width:4em"> – <input id="f-rmax" type="number" min="0" style="width:4em"></label>
<label>width ≥ <input id="f-wmin" type="number" min="0" step="0.5" style="width:4em"></label>
<label>text <input id="f-text" type="search" placeholder="question, id, answer"></label></div>
<div class="pager"><button id="prev">◀</button><button id="next">▶</button><span id="page"></span> · <span id="count"></span></div>
<table class="eps"><thead><tr>{head}</tr></thead><tbody id="eps-body"></tbody></table>
</main>
<script src="data/episodes.js"></script><script src="assets/index.js"></script>
</body></html>
"""
