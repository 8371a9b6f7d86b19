"""Parallel-Amenable data synthesis (HyperEyes §5, unreleased upstream; this is our pipeline).

Two kinds of items, both needing several independent searches that can run side by side:
- visual multi-entity: a mosaic of 2–9 same-class entity images; the question needs every entity
  identified (reverse image search per crop) and facts looked up (text search per entity);
- textual multi-constraint: the one entity of a class meeting several independent constraints.

Answers are computed from the gallery facts by the item's `program` (see questions.py); the corpus
states each fact in one sentence, so every item is answerable from the corpus by construction.
Optional, with an endpoint: an LLM rewrites templated questions, and a "needs search?" filter drops
items the model already answers right with no tools.
"""
from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hyperseyes_verl.utils.images import open_image
from hyperseyes_verl.utils.jsonl import read_jsonl

from .gallery import Gallery
from .mosaic import Layout, build_mosaic
from .questions import textual_question, visual_question


class SynthConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n_visual: int = Field(40, ge=0, description="visual multi-entity (mosaic) items")
    n_textual: int = Field(20, ge=0, description="textual multi-constraint items")
    seed: int = Field(0, description="everything (gallery, layouts, questions) is a function of this seed")
    min_entities: int = Field(2, ge=2, le=9, description="entities per mosaic, lower bound")
    max_entities: int = Field(6, ge=2, le=9, description="entities per mosaic, upper bound (<= class size)")
    layout: Layout | None = Field(None, description="every mosaic in this layout (tiles: each entity fills a grid "
                                  "cell, for models too small to place free boxes); default: drawn per mosaic")
    canvas: tuple[int, int] = Field((768, 576), description="mosaic size in pixels (width, height)")
    min_constraints: int = Field(2, ge=1, description="constraints per textual question, lower bound")
    max_tries_factor: int = Field(20, ge=1, description="draws per wanted item before giving up on a kind")

    @model_validator(mode="after")
    def _check_entities(self) -> "SynthConfig":
        if self.min_entities > self.max_entities:
            raise ValueError(f"min_entities ({self.min_entities}) is above max_entities ({self.max_entities})")
        return self


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def synthesize(gallery: Gallery, out_dir: str | Path, cfg: SynthConfig = SynthConfig()) -> list[dict[str, Any]]:
    """Write `out_dir/mosaics/*.png` and return the items (not yet written; see `write_items`)."""
    out = Path(out_dir)
    (out / "mosaics").mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    classes = sorted(c for c in gallery.classes if len(gallery.of_class(c)) >= cfg.min_entities)
    if not classes:
        raise ValueError(f"no class has {cfg.min_entities}+ entities; add entities or lower min_entities")
    items: list[dict[str, Any]] = []
    seen: set[str] = set()

    tries = 0
    while len(items) < cfg.n_visual:  # the visual items come first
        tries += 1
        if tries > cfg.n_visual * cfg.max_tries_factor:
            raise RuntimeError(f"made only {len(items)} of {cfg.n_visual} visual items: the gallery has too few "
                               f"entities or facts with distinct values (tied answers are never asked); lower "
                               f"--n-visual or add entities")
        cls = gallery.classes[rng.choice(classes)]
        pool = gallery.of_class(cls.name)
        n = rng.randint(cfg.min_entities, min(cfg.max_entities, len(pool)))
        ents = rng.sample(pool, n)
        mosaic = build_mosaic([open_image(e.image) for e in ents], rng, cfg.layout, canvas_size=tuple(cfg.canvas))
        facts = {e.name: dict(e.facts) for e in ents}
        boxes = {e.name: b for e, b in zip(ents, mosaic.boxes)}
        made = visual_question(rng, cls, facts, boxes)
        if made is None:
            continue
        q, program, answers, used = made
        key = json.dumps([q, sorted(facts)])
        if key in seen:
            continue
        seen.add(key)
        item_id = f"v-{len(items):05d}"
        path = out / "mosaics" / f"{item_id}.png"
        mosaic.image.save(path)
        items.append({
            "id": item_id, "kind": "visual", "domain": cls.name, "question": q, "template_question": q,
            "answers": answers, "images": [_rel(path, out)], "entities": [e.name for e in ents],
            "boxes": mosaic.boxes, "layout": mosaic.layout, "entity_count": n, "program": program,
            "facts_used": {e.name: {k: e.facts[k] for k in used} for e in ents},
        })

    tries = 0
    n_textual = 0
    while n_textual < cfg.n_textual:
        tries += 1
        if tries > cfg.n_textual * cfg.max_tries_factor:
            raise RuntimeError(f"made only {n_textual} of {cfg.n_textual} textual items: too few entities or facts "
                               f"to single one out by constraints; lower --n-textual or add entities")
        cls = gallery.classes[rng.choice(classes)]
        pool = gallery.of_class(cls.name)
        facts = {e.name: dict(e.facts) for e in pool}
        target = rng.choice(pool).name
        made = textual_question(rng, cls, facts, target, cfg.min_constraints)
        if made is None or made[0] in seen:
            continue
        q, program, answers, used = made
        seen.add(q)
        items.append({
            "id": f"t-{n_textual:05d}", "kind": "textual", "domain": cls.name, "question": q,
            "template_question": q, "answers": answers, "images": [], "entities": [target], "boxes": [],
            "layout": None, "entity_count": 1, "program": program,
            "facts_used": {target: {k: facts[target][k] for k in used}},
        })
        n_textual += 1
    for index, item in enumerate(items):
        item["index"] = index  # stable prompt index (RL parquet extra_info.index)
    return items


def write_items(items: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path


def read_items(path: str | Path) -> list[dict[str, Any]]:
    """Items JSONL; image paths are made absolute relative to the file's folder."""
    path = Path(path)
    items = read_jsonl(path, required=("id", "question", "answers"), what="item")
    for item in items:
        item["images"] = [str((path.parent / p).resolve()) for p in item.get("images", [])]
    return items


REWRITE_PROMPT = (
    "Rewrite the following question so it reads naturally, as a curious person would ask it. Keep every "
    "condition, number and unit exactly; do not add facts, do not answer it, do not name any entity that the "
    "question does not name. Reply with the rewritten question only.\n\nQuestion: {question}"
)


async def rewrite_and_filter(items: list[dict[str, Any]], root: str | Path, client, model: str, *,
                             rewrite: bool = True, filter_no_search: bool = True, concurrency: int = 8,
                             judge=None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """LLM pass over synthesized items. Endpoint failures keep the templated item (counted, never fatal).

    Returns (kept items, counts). `judge(prediction, answers) -> bool` decides the no-tool check.
    """
    from ..utils.openai_chat import EndpointError
    from .prs import is_correct

    judge = judge or is_correct
    counts = {"synth/rewritten": 0, "synth/rewrite_failed": 0, "synth/dropped_no_search": 0,
              "synth/filter_failed": 0}
    sem = asyncio.Semaphore(concurrency)
    root = Path(root)

    async def one(item: dict[str, Any]) -> dict[str, Any] | None:
        async with sem:
            if rewrite:
                try:
                    reply = await client.chat(model, [{"role": "user", "content": REWRITE_PROMPT.format(
                        question=item["question"])}], temperature=0.7, max_tokens=256)
                    text = reply.text.strip().strip('"')
                    # Numbers must survive the rewrite (thresholds, units); else keep the template.
                    nums = re.findall(r"\d+", item["question"])
                    if text and len(text) < 4 * len(item["question"]) and all(
                            re.search(rf"(?<!\d){n}(?!\d)", text) for n in nums):
                        item = {**item, "question": text, "rewritten": True}
                        counts["synth/rewritten"] += 1
                    else:
                        counts["synth/rewrite_failed"] += 1
                except EndpointError:
                    counts["synth/rewrite_failed"] += 1
            if filter_no_search:
                content: list[dict[str, Any]] = [{"type": "image", "image": open_image(root / p)}
                                                 for p in item["images"]]
                content.append({"type": "text", "text": item["question"] + "\nAnswer directly, without tools, "
                                                                          "in <answer></answer>."})
                try:
                    reply = await client.chat(model, [{"role": "user", "content": content}], temperature=0.0,
                                              max_tokens=256)
                except EndpointError:
                    counts["synth/filter_failed"] += 1
                    return item  # unknown: keep it
                if judge(reply.text, item["answers"]):
                    counts["synth/dropped_no_search"] += 1
                    return None
            return item

    results = await asyncio.gather(*(one(i) for i in items))
    return [r for r in results if r is not None], counts
