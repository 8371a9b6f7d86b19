"""Episodes of a Progressive Rejection Sampling folder (`hyperseyes prs --out DIR`, the demo's `prs/`).

Solved items carry the kept trajectory with its images (inputs and every crop, `trajectory_images`), so this
source shows the crops exactly as the teacher saw them. Unsolved items and endpoint failures have only their
attempts; their input images and gold answers come from the items file when it is given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hyperseyes_verl.data.prs import read_results

from .items import ItemIndex, image_ref
from .load_eval import slug
from .model import Episode, ImageRef
from .transcript import Message, build_turns


def _message(m: dict[str, Any], images: list[ImageRef]) -> Message:
    content = m.get("content", "")
    if isinstance(content, str):
        return Message(m.get("role", "?"), content)
    text, refs = "", []
    for b in content:
        if b.get("type") == "image":
            text += "<image>"
            k = b.get("ref")
            refs.append(images[k] if isinstance(k, int) and 0 <= k < len(images) else None)
        else:
            text += str(b.get("text", ""))
    return Message(m.get("role", "?"), text, refs)


def prs_episode(row: dict[str, Any], prs_dir: Path, run: str, items: ItemIndex | None) -> Episode:
    status = row.get("status", "?")
    traj = row.get("trajectory") or {}
    item = items.find(row.get("id"), question=traj.get("question")) if items is not None else None
    attempts = row.get("attempts") or []
    last = attempts[-1] if attempts else {}
    answer = traj.get("answer", last.get("answer"))
    verdict = {"solved": "correct", "endpoint_failure": "error"}.get(status, "wrong" if answer else "no_answer")
    stats = traj.get("stats") or {}
    ep = Episode(
        uid=slug(run, row.get("id", "?")), source="prs", run=run, item_id=str(row.get("id", "")),
        question=traj.get("question") or (item.question if item else ""), gold=list(item.answers) if item else [],
        prediction=answer, verdict=verdict, reward=1.0 if status == "solved" else 0.0,
        tool_rounds=int(stats.get("tool_rounds", last.get("tool_rounds", 0))),
        tool_calls=int(stats.get("tool_calls", 0)), searches=int(stats.get("searches", last.get("searches", 0))),
        searches_per_round=[int(w) for w in stats.get("searches_per_round", [])],
        tool_errors={k: int(v) for k, v in (stats.get("errors") or {}).items()},
        search_failure_kinds={k: int(v) for k, v in (stats.get("search_failure_kinds") or {}).items()},
        finish_reason=traj.get("finish_reason", last.get("finish_reason")),
        generated_tokens=traj.get("generated_tokens", last.get("generated_tokens")))
    ep.trace = {"rounds": ep.tool_rounds, "searches": ep.searches, "width": round(ep.width, 3),
                "budget": row.get("budget"), "ref_rounds": row.get("ref_rounds"), "ref_searches": row.get("ref_searches")}
    ep.details = {"status": status, "model": traj.get("model"),
                  "attempts": [{k: a.get(k) for k in ("budget", "correct", "answer", "tool_rounds", "searches",
                                                      "finish_reason")} for a in attempts]}
    if traj:
        images = [ImageRef(path=str(prs_dir / p)) for p in row.get("trajectory_images") or []]
        messages = [_message(m, images) for m in traj.get("messages") or []]
        first_user = next((m for m in messages if m.role == "user"), None)
        ep.input_images = [r or ImageRef() for r in (first_user.images if first_user else [])]
        ep.turns = build_turns(messages, ep.input_images)
    else:
        if item is not None:
            ep.input_images = [image_ref(v) for v in item.image_refs]
        ep.notes.append(f"PRS keeps trajectories of solved items only; this item is {status}: see its attempts")
    if not ep.gold:
        ep.notes.append("gold answers are in the items file: pass it with --data to see them")
    return ep


def load_prs(prs_dir: str | Path, name: str, items: ItemIndex | None = None) -> list[Episode]:
    prs_dir = Path(prs_dir)
    return [prs_episode(row, prs_dir, name, items) for row in read_results(prs_dir / "results.jsonl").values()]
