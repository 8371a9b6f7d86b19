"""Episodes of an evaluation run (`hyperseyes eval --out DIR`, the demo's `runs/<strategy>/`).

Reads `results.jsonl` through the eval module's own reader (one record per id, torn lines skipped). Turns need
`--keep-trajectories`; input images and references come from the benchmark file (`run.json`'s `data`, or the
one passed to the viewer); crops are re-cut from the inputs by their boxes.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from hyperseyes_verl.eval.results import ItemResult, load_run

from .items import ItemIndex, image_ref
from .model import Episode, ImageRef, verdict_of
from .transcript import Message, build_turns, question_and_inputs

log = logging.getLogger(__name__)
_SLUG_RE = re.compile(r"[^A-Za-z0-9._-]+")
ERROR_FINISH = ("error", "endpoint_error")


def slug(*parts: str) -> str:
    return "-".join(_SLUG_RE.sub("_", str(p)).strip("_") or "x" for p in parts)[:150]


def run_data_file(run_dir: Path) -> Path | None:
    """The benchmark file recorded in `run.json`, when it still exists."""
    info = run_dir / "run.json"
    if not info.exists():
        return None
    try:
        data = json.loads(info.read_text()).get("data")
    except (OSError, ValueError):
        return None
    return Path(data) if isinstance(data, str) and data and Path(data).exists() else None


def eval_episode(r: ItemResult, run: str, items: ItemIndex | None) -> Episode:
    item = items.find(r.id, question=r.question) if items is not None else None
    error = r.error is not None or r.finish_reason in ERROR_FINISH
    ep = Episode(
        uid=slug(run, r.id), source="eval", run=run, item_id=r.id, question=r.question,
        gold=list(r.answers) or (list(item.answers) if item else []), prediction=r.prediction,
        verdict=verdict_of(r.acc, r.answered, error), judge_source=r.judge_source, reward=r.acc,
        tool_rounds=r.tool_rounds, tool_calls=r.tool_calls, searches=r.searches,
        searches_per_round=list(r.searches_per_round), tool_errors=dict(r.tool_errors),
        finish_reason=r.finish_reason, generated_tokens=r.generated_tokens)
    ep.details = {"benchmark": r.benchmark, "domain": r.domain, "entity_count": r.entity_count,
                  "budget_exhausted": r.budget_exhausted, "truncated": r.truncated,
                  "search_failures": r.search_failures, "endpoint_errors": r.endpoint_errors, "error": r.error,
                  "wall_s": r.wall_s}
    ep.trace = {"rounds": r.tool_rounds, "searches": r.searches, "width": round(ep.width, 3)}
    if item is not None:
        ep.input_images = [image_ref(v) for v in item.image_refs]
        for key in ("ref_rounds", "ref_searches"):
            if key in item.meta:
                ep.trace[key] = item.meta[key]
    if r.trajectory:
        messages = [Message(m.get("role", "?"), str(m.get("content", ""))) for m in r.trajectory]
        first_user = next((m.text for m in messages if m.role == "user"), "")
        _, n_inputs = question_and_inputs(first_user)
        if len(ep.input_images) < n_inputs:
            if item is None:
                ep.notes.append("input images not found: pass the benchmark file with --data to see them")
            ep.input_images += [ImageRef() for _ in range(n_inputs - len(ep.input_images))]
        ep.turns = build_turns(messages, ep.input_images)
    else:
        ep.notes.append("no turns recorded: run `hyperseyes eval` with --keep-trajectories to keep them")
    return ep


def load_eval_run(run_dir: str | Path, name: str, items: ItemIndex | None = None) -> list[Episode]:
    run_dir = Path(run_dir)
    records = load_run(run_dir)
    if items is None and records and (data := run_data_file(run_dir)) is not None:
        try:  # the benchmark file the run recorded, read the way the run read it (same benchmark name)
            items = ItemIndex.from_file(data, name=records[0].benchmark)
        except (OSError, ValueError) as e:
            log.warning("%s: its data file %s could not be read (%s); pages show no input images", run_dir, data, e)
    return [eval_episode(r, name, items) for r in records]
