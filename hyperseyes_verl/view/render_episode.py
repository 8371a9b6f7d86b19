"""One episode as one HTML page: question and inputs with every box drawn, then turn by turn what the agent
reasoned, called and got back.

Boxes are CSS rectangles over the thumbnail, placed in percent of the image (boxes are fractions of it), so they
stay exact at any zoom. Every value that came from a model, a search backend or a data file goes through `esc`
(text) or `safe_url` (links): trajectories are untrusted input.
"""
from __future__ import annotations

import html
import json
from typing import Any, Iterable

from .model import CallView, CropView, Episode, ImageRef, SearchView, Turn
from .thumbs import CROP_SIDE, INPUT_SIDE, ThumbStore


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def safe_url(url: str) -> str | None:
    """Only http(s) links are made clickable (a `javascript:` URL in a hit would run on click)."""
    return url if url.lower().startswith(("http://", "https://")) else None


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return str(v)


def kv_table(rows: dict[str, Any], cls: str = "kv") -> str:
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in rows.items()
                    if v is not None and v != {} and v != [])
    return f'<table class="{cls}">{cells}</table>' if cells else ""


def rows_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    head = "".join(f"<th>{esc(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(r.get(k)))}</td>" for k in keys) + "</tr>" for r in rows)
    return f'<table class="kv"><tr>{head}</tr>{body}</table>'


def box_div(crop: CropView) -> str:
    if crop.box is None:
        return ""
    x1, y1, x2, y2 = crop.box
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    w, h = max(x2 - x1, 0.006), max(y2 - y1, 0.006)  # an empty (inverted) box still shows where it was
    tag = crop.image_id if crop.ok else f"{crop.image_id} ✗ {crop.error_kind}"
    box = "[" + ", ".join(f"{v:.3f}" for v in crop.box) + "]"
    return (f'<div class="box {"ok" if crop.ok else "fail"}" data-box-id="{esc(crop.image_id)}" '
            f'style="left:{100 * x1:.2f}%;top:{100 * y1:.2f}%;width:{100 * w:.2f}%;height:{100 * h:.2f}%" '
            f'title="{esc(tag)} {esc(box)}"><span class="tag">{esc(tag)}</span></div>')


def figure(ref: ImageRef | None, label: str, store: ThumbStore, max_side: int, boxes: Iterable[CropView] = (),
           caption: str | None = None, thumb_side: int | None = None) -> str:
    """An image with its boxes drawn over it, its long side shown at `max_side` px or less; small images are
    shown at least half that (scaled up by the browser) so boxes and labels stay readable. `thumb_side`: the
    thumbnail to use (one file per image serves several display sizes)."""
    thumb = store.thumb(ref, thumb_side or max_side)
    drawn = "".join(box_div(c) for c in boxes)
    if thumb is None:
        side = max_side // 2
        pic = f'<div class="pic nopix" style="width:{side}px;aspect-ratio:1/1">{drawn}</div>'
    else:
        rel, w, h = thumb
        fit = min(1.0, max_side / max(w, h))
        shown = max(round(w * fit), min(max_side // 2, round(w * max_side / max(w, h))))
        pic = (f'<div class="pic" style="width:{shown}px;aspect-ratio:{w}/{h}"><img src="../{esc(rel)}" width="{w}" '
               f'height="{h}" loading="lazy" decoding="async" alt="{esc(label)}">{drawn}</div>')
    cap = caption if caption is not None else label
    return (f'<figure class="frame" data-image-id="{esc(label)}">{pic}'
            + (f"<figcaption>{esc(cap)}</figcaption>" if cap else "") + "</figure>")


def hits_html(s: SearchView | None) -> str:
    if s is None:
        return ""
    if s.failure_kind:
        return f'<div class="fail-line">search failed ({esc(s.failure_kind)}): {esc(s.failure_message)}</div>'
    if not s.hits:
        return '<div class="fail-line">no results</div>'
    items = []
    for hit in s.hits:
        rel = f" <span class=\"rel\">({hit.score:.2f})</span>" if hit.score is not None else ""
        url = ""
        if hit.url:
            link = safe_url(hit.url)
            url = (f'<div class="url"><a href="{esc(link)}" rel="noopener noreferrer nofollow">{esc(hit.url)}</a></div>'
                   if link else f'<div class="url">{esc(hit.url)}</div>')
        snip = f'<div class="snip">{esc(hit.snippet)}</div>' if hit.snippet else ""
        items.append(f"<li><b>{esc(hit.title or '(untitled)')}</b>{rel}{snip}{url}</li>")
    return f'<ol class="hits">{"".join(items)}</ol>'


def crop_card(crop: CropView, store: ThumbStore) -> str:
    box = "[" + ", ".join(f"{v:.3f}" for v in crop.box) + "]" if crop.box else "(not a box)"
    head = f'<div class="id">{esc(crop.image_id)}</div><div>{esc(box)} of {esc(crop.source_id or "?")}</div>'
    if not crop.ok:
        return (f'<div class="crop fail" data-crop-id="{esc(crop.image_id)}">{head}'
                f'<div class="err">✗ {esc(crop.error_kind)}: {esc(crop.reason)}</div></div>')
    return (f'<div class="crop" data-crop-id="{esc(crop.image_id)}">{head}'
            f'{figure(crop.image, crop.image_id, store, CROP_SIDE, caption="")}{hits_html(crop.search)}</div>')


def call_html(call: CallView, images: dict[str, ImageRef | None], input_ids: set[str], store: ThumbStore) -> str:
    # no arguments: the call tags were dropped by the dump's decoding, only its results remain
    args = json.dumps(call.arguments, ensure_ascii=False) if call.arguments else ""
    parts = [f'<div class="call"><div><b>{esc(call.name)}</b> <code>{esc(args)}</code></div>']
    if call.crops:
        by_source: dict[str, list[CropView]] = {}
        for c in call.crops:
            by_source.setdefault(c.source_id or "?", []).append(c)
        for source_id, crops in by_source.items():
            # the thumbnail the page already has for that image: an input's, or a crop's
            thumb_side = INPUT_SIDE if source_id in input_ids else CROP_SIDE
            parts.append(figure(images.get(source_id), source_id, store, INPUT_SIDE // 2, crops,
                                f"{source_id}: the boxes of this call", thumb_side=thumb_side))
        parts.append('<div class="crops">' + "".join(crop_card(c, store) for c in call.crops) + "</div>")
    for image_id, s in call.whole_images:
        parts.append(f"<div><b>{esc(image_id)}</b> (whole image){hits_html(s)}</div>")
    for q in call.queries:
        parts.append(f"<div>query <b>{esc(q.query)}</b>{hits_html(q.search)}</div>")
    parts += [f'<div class="err">error ({esc(k)}): {esc(m)}</div>' for k, m in call.errors]
    return "".join(parts) + "</div>"


def turn_html(turn: Turn, images: dict[str, ImageRef | None], input_ids: set[str], store: ThumbStore) -> str:
    parts = [f'<section class="turn" id="turn-{turn.index}"><h3>Turn {turn.index}</h3>']
    if turn.reason:
        parts.append(f'<div class="reason"><b>reason</b><pre>{esc(turn.reason)}</pre></div>')
    parts += [call_html(c, images, input_ids, store) for c in turn.calls]
    parts += [f'<div class="err">error ({esc(k)}): {esc(m)}</div>' for k, m in turn.turn_errors]
    parts += [f'<div class="hint">{esc(h)}</div>' for h in turn.hints]
    if turn.answer is not None:
        parts.append(f'<div>answer: <span class="answer">{esc(turn.answer)}</span></div>')
    raw = f"<h4>assistant</h4><pre>{esc(turn.text)}</pre>"
    if turn.observation_text is not None:
        raw += f"<h4>observation</h4><pre>{esc(turn.observation_text)}</pre>"
    parts.append(f"<details><summary>raw text</summary>{raw}</details></section>")
    return "".join(parts)


def image_registry(ep: Episode) -> dict[str, ImageRef | None]:
    images: dict[str, ImageRef | None] = {f"img_{k}": ref for k, ref in enumerate(ep.input_images)}
    for t in ep.turns:
        for c in t.calls:
            for crop in c.crops:
                images[crop.image_id] = crop.image
    return images


def episode_page(ep: Episode, store: ThumbStore) -> str:
    images = image_registry(ep)
    on_source: dict[str, list[CropView]] = {}
    for t in ep.turns:
        for c in t.calls:
            for crop in c.crops:
                on_source.setdefault(crop.source_id or "?", []).append(crop)
    chips = {"reward": ep.reward, "step": ep.step, "rounds": ep.tool_rounds, "searches": ep.searches,
             "width": round(ep.width, 2), "finish": ep.finish_reason, "tokens": ep.generated_tokens}
    chip_html = "".join(f"<span>{esc(k)} {esc(fmt(v))}</span>" for k, v in chips.items() if v is not None)
    gold = " | ".join(ep.gold) if ep.gold else "(unknown)"
    errors = {**{f"tool: {k}": v for k, v in ep.tool_errors.items()},
              **{f"search: {k}": v for k, v in ep.search_failure_kinds.items()}}
    inputs = "".join(figure(ref, f"img_{k}", store, INPUT_SIDE, on_source.get(f"img_{k}", []))
                     for k, ref in enumerate(ep.input_images)) or "<p>(no input images recorded)</p>"
    details = {k: v for k, v in ep.details.items() if k != "attempts"}
    tables = [("TRACE", kv_table(ep.trace)), ("Training signals", kv_table(ep.training)),
              ("Errors by kind", kv_table(errors)), ("Details", kv_table(details)),
              ("PRS attempts (budget = tool rounds allowed)", rows_table(ep.details.get("attempts") or []))]
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in ep.notes)
    input_ids = {f"img_{k}" for k in range(len(ep.input_images))}
    turns = "".join(turn_html(t, images, input_ids, store) for t in ep.turns)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(ep.run)} · {esc(ep.item_id)}</title><link rel="stylesheet" href="../assets/view.css"></head>
<body><header class="top"><a href="../index.html">← all episodes</a> · {esc(ep.source)} · {esc(ep.run)}</header>
<main data-verdict="{esc(ep.verdict)}">
<h1>{esc(ep.item_id)} <span class="badge {esc(ep.verdict)}" id="verdict">{esc(ep.verdict.replace("_", " "))}</span></h1>
<div class="chips">{chip_html}</div>
<div class="qa"><div><span class="lbl">question</span> {esc(ep.question)}</div>
<div><span class="lbl">answer</span> <b>{esc(ep.prediction if ep.prediction is not None else "(none)")}</b></div>
<div><span class="lbl">gold</span> {esc(gold)}</div>
<div><span class="lbl">judge</span> {esc(ep.judge_source or "")}</div></div>
{notes}
<div class="cols"><div><h2>Input images and every box requested on them</h2><div class="cols">{inputs}</div></div>
<div class="cols">{"".join(f"<div><h3>{esc(name)}</h3>{t}</div>" for name, t in tables if t)}</div></div>
<h2>Turns</h2>{turns or "<p>(no turns recorded)</p>"}
</main></body></html>
"""
