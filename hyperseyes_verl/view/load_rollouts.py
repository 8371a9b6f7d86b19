"""Episodes of verl rollout dumps: `trainer.rollout_data_dir` / `trainer.validation_data_dir`, one `<step>.jsonl`
per training step.

verl 0.9.1 writes one line per trajectory (`RayPPOTrainer._write_generations`): `input` and `output` (the
decoded prompt and response; the observations are inside the response as `<tool_response>` blocks), `gts`,
`score` (summed token-level score), `step`, then every per-sample key of the batch's `reward_extra_info` (for
TRACE: CONTRACTS §4 — acc, answered, tool_rounds, searches, ref_rounds, ref_searches, trace_bonus, opd_eligible,
judge_source, prompt_key, hdpo_format) and `request_id` or `uid`. Keys of the agent loop's `extra_fields`
(CONTRACTS §3: tool_errors, searches_per_round, finish_reason, ...) and the gated teacher's
(`opd_teacher_status`) are read when a trainer writes them, flat or nested under `extra_fields`,
`tool_extra_fields` or `reward_extra_info`. HDPO advantages are shown for any `hdpo_*` / `*adv*` key.

verl's V1 trainer (`trainer.v1`, e.g. `hyperseyes_sync`) dumps only `input`, `output`, `gts`, `score`, `step` and
`uid`: the answer is then judged here with the rule judge the reward uses, and rounds and searches are counted
from the text. The TRACE category and bonus of the official group rule are recomputed per group (`uid`, else step and
prompt key) with `hyperseyes_verl.trace.official` when the row has its components and no bonus of its own.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from hyperseyes_verl.contracts import GROUP_RULE_KEYS
from hyperseyes_verl.judge import RuleJudge
from hyperseyes_verl.trace.official import score_groups
from hyperseyes_verl.ugs.parser import parse_turn
from hyperseyes_verl.utils.jsonl import AppendOnlyJsonl

from .items import ItemIndex, image_ref
from .load_eval import slug
from .model import Episode, ImageRef, verdict_of
from .transcript import build_turns, question_and_inputs, split_rollout

STEP_FILE_RE = re.compile(r"^(\d+)\.jsonl$")
NESTED = ("extra_fields", "tool_extra_fields", "reward_extra_info")
_BASE = {"input", "output", "gts", "score", "step"}
_RULE_JUDGE = RuleJudge()
_TRAINING_KEYS = ("opd_eligible", "opd_teacher_status", "opd_teacher_tokens", "hdpo_format", "store_error")


def is_rollout_row(row: Any) -> bool:
    return isinstance(row, dict) and "input" in row and "output" in row


def dump_files(path: str | Path) -> list[Path]:
    """The `<step>.jsonl` files of a dump folder in step order, or the one file given."""
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted((f for f in p.iterdir() if STEP_FILE_RE.match(f.name)), key=lambda f: int(f.stem))


def flat_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A dump line's fields with the nested extra-field dicts folded in (top-level keys win)."""
    out: dict[str, Any] = {}
    for key in NESTED:
        if isinstance(row.get(key), dict):
            out.update(flat_fields(row[key]) if key != "reward_extra_info" else row[key])
    out.update({k: v for k, v in row.items() if k not in NESTED})
    return out


def _num(v: Any) -> float | None:
    try:
        return None if v is None or isinstance(v, (dict, list, str)) else float(v)
    except (TypeError, ValueError):
        return None


def _group_key(f: dict[str, Any]) -> tuple:
    uid = f.get("uid")
    if isinstance(uid, str) and uid:
        parts = uid.rsplit("_", 2)  # `{uid}_{session}_{index}` in verl's V1 dumps
        return ("uid", parts[0] if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() else uid)
    return ("prompt", f.get("step"), f.get("prompt_key") or f.get("input"))


def add_official_trace(fields_N: list[dict[str, Any]], episodes_N: list[Episode]) -> None:
    """Category and bonus of the released group rule, per group, for rows that carry all its components."""
    rows = [i for i, f in enumerate(fields_N)
            # paper mode: the row's own bonus is the one that was paid
            if not _num(f.get("trace_bonus")) and all(_num(f.get(k)) is not None for k in GROUP_RULE_KEYS)]
    keys = [_group_key(fields_N[i]) for i in rows]
    cols = {k: [_num(fields_N[i][k]) for i in rows] for k in GROUP_RULE_KEYS}
    scores = score_groups(keys, acc=cols["acc"], answered=[bool(a) for a in cols["answered"]],
                          tool_rounds=[int(t) for t in cols["tool_rounds"]],
                          searches=[int(s) for s in cols["searches"]], ref_rounds=cols["ref_rounds"],
                          ref_searches=cols["ref_searches"])
    sizes = Counter(keys)
    for i, key, s in zip(rows, keys, scores):
        t = episodes_N[i].trace
        t["category"] = s.category
        t["official_bonus"] = s.bonus
        t["official_score"] = s.score
        t["group_size"] = sizes[key]


def rollout_episode(row: dict[str, Any], run: str, line_no: int, items: ItemIndex | None) -> Episode:
    f = flat_fields(row)
    user_text = str(f.get("input", ""))
    question, n_inputs = question_and_inputs(user_text)
    messages = split_rollout(str(f.get("output", "")))
    turns_answer = next((parse_turn(m.text).answer for m in reversed(messages) if m.role == "assistant"), None)
    answer = f.get("answer") if isinstance(f.get("answer"), str) else turns_answer
    answered = bool(f["answered"]) if _num(f.get("answered")) is not None else answer is not None
    step = int(f["step"]) if _num(f.get("step")) is not None else None
    item = items.find(f.get("prompt_key"), question=question) if items is not None else None
    gts = f.get("gts")
    gold = list(item.answers) if item else ([str(g) for g in gts] if isinstance(gts, list) else
                                            [str(gts)] if gts not in (None, "") else [])
    acc, judge_source = _num(f.get("acc")), f.get("judge_source")
    if acc is None and answer is not None and gold:  # V1 dumps carry no verdict: judge as the reward does
        acc, judge_source = float(_RULE_JUDGE.judge(answer, gold).correct), "rule (by the viewer)"
    rounds = int(_num(f.get("tool_rounds")) or 0)
    ep = Episode(
        uid=slug(run, f"s{step}", f"{line_no}"), source="rollout", run=run,
        item_id=str(f.get("prompt_key") or f.get("uid") or f.get("request_id") or f"line {line_no}"),
        question=question or (item.question if item else ""), gold=gold, prediction=answer,
        verdict=verdict_of(acc, answered), judge_source=judge_source,
        reward=_num(f.get("score")), step=step, tool_rounds=rounds, tool_calls=int(_num(f.get("tool_calls")) or 0),
        searches=int(_num(f.get("searches")) or 0),
        searches_per_round=[int(w) for w in f.get("searches_per_round") or []],
        tool_errors={k: int(v) for k, v in (f.get("tool_errors") or {}).items()},
        search_failure_kinds={k: int(v) for k, v in (f.get("search_failure_kinds") or {}).items()},
        finish_reason=f.get("finish_reason"))
    ep.trace = {"rounds": rounds, "searches": ep.searches, "width": round(ep.width, 3)}
    for key in ("ref_rounds", "ref_searches", "trace_bonus"):
        if key in f:
            ep.trace[key] = f[key]
    ep.training = {k: f[k] for k in f if k in _TRAINING_KEYS or k.startswith("hdpo_") or "adv" in k.lower()}
    shown = _BASE | set(ep.training) | {"ref_rounds", "ref_searches", "trace_bonus", "tool_errors",
                                        "search_failure_kinds", "searches_per_round", "answer"}
    ep.details = {k: v for k, v in f.items() if k not in shown and not isinstance(v, (dict, list)) or k == "gts"}
    if item is not None:
        ep.input_images = [image_ref(v) for v in item.image_refs]
    if len(ep.input_images) < n_inputs:
        ep.notes.append("input images are not in verl's dump: pass the RL parquet with --data to see them")
        ep.input_images += [ImageRef() for _ in range(n_inputs - len(ep.input_images))]
    ep.turns = build_turns(messages, ep.input_images)
    if not rounds and ep.turns:  # a dump without the agent loop's counts: count what the text shows
        ep.tool_rounds = sum(1 for t in ep.turns if t.calls)
        ep.searches = sum(len(c.queries) + sum(cr.ok for cr in c.crops) + len(c.whole_images)
                          for t in ep.turns for c in t.calls)
        ep.trace.update(rounds=ep.tool_rounds, searches=ep.searches, width=round(ep.width, 3), counted_from="text")
    return ep


def load_rollouts(path: str | Path, name: str, items: ItemIndex | None = None) -> list[Episode]:
    episodes: list[Episode] = []
    fields: list[dict[str, Any]] = []
    for file in dump_files(path):
        for n, row in enumerate(AppendOnlyJsonl(file).records(), 1):
            if not is_rollout_row(row):
                continue
            row.setdefault("step", int(file.stem) if STEP_FILE_RE.match(file.name) else None)
            ep = rollout_episode(row, name, n, items)
            ep.uid = slug(name, file.stem, str(n))
            episodes.append(ep)
            fields.append(flat_fields(row))
    add_official_trace(fields, episodes)
    return episodes


def first_row(path: Path) -> dict[str, Any] | None:
    """The first JSON object of a JSONL file (cheap sniffing of what a file is)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else None
    except (OSError, ValueError):
        return None
    return None
