"""Tool rounds and searches of one trajectory, from whichever agent loop produced it.

Rounds are what TRACE charges; searches (text queries + crops) only break ties.

- This project's agent loop (CONTRACTS §3) reports `tool_rounds`, `tool_calls`, `searches` directly.
- verl's own `ToolAgentLoop` reports none of them. Its `num_turns` is `user_turns + assistant_turns + 1`
  where `user_turns` is incremented once per executed tool round and every assistant turn but the last one
  is followed by a tool round, so `assistant_turns = user_turns + 1` and **tool_rounds = (num_turns - 2) // 2**.
  `tool_rewards` holds one entry per executed call, so **tool_calls = len(tool_rewards)**; that loop has no
  notion of several queries inside one call, so **searches = tool_calls** (each executed call = one search).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

CountSource = Literal["hyperseyes", "tool_agent", "release", "none"]


@dataclass(frozen=True)
class RolloutCounts:
    tool_rounds: int
    tool_calls: int
    searches: int
    source: CountSource


def _as_int(value: Any, name: str) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"tool_extra_fields[{name!r}] = {value!r} is not an integer count; "
                         "the agent loop must report counts as ints (CONTRACTS §3)") from e
    if out < 0:
        raise ValueError(f"tool_extra_fields[{name!r}] = {out} is negative")
    return out


def rollout_counts(tool_extra_fields: Mapping[str, Any] | None, num_turns: Any = None) -> RolloutCounts:
    fields = dict(tool_extra_fields or {})
    if "tool_rounds" in fields:
        rounds = _as_int(fields["tool_rounds"], "tool_rounds")
        calls = _as_int(fields.get("tool_calls", rounds), "tool_calls")
        searches = _as_int(fields.get("searches", calls), "searches")
        return RolloutCounts(rounds, calls, searches, "hyperseyes")
    if num_turns is not None or "tool_rewards" in fields:
        turns = _as_int(num_turns, "__num_turns__") if num_turns is not None else 2
        rounds = max(0, (turns - 2) // 2)
        calls = len(fields.get("tool_rewards") or [])
        return RolloutCounts(rounds, calls, calls, "tool_agent")
    return RolloutCounts(0, 0, 0, "none")


# ------------------------------------------------------------------------------------------- release counting
# The released reward reads tc and total from the decoded response: it splits it into chat segments, and in
# every assistant segment each closed <tool_call>…</tool_call> block is one call (tc += 1) whose `total`
# contribution is the number of non-empty '|'-separated parts of str(arguments["input"]) for a name containing
# "text_search", or of str(arguments["image_id"]) (else "img_id") for one containing "image_search"; anything
# else adds 0. A list of queries stringifies to one part and boxes are never looked at, so a call counts 1
# however wide it is. Unparsable JSON still counts as a call (0 searches). A `name` that is neither a string
# nor a container (e.g. null) made the release's parser raise and drop the whole parse: tc = total = 0 and no
# final answer (scored as no answer).
_SEGMENT = re.compile(r"<\|im_start\|>(assistant|user|system)\n?(.*?)(?:<\|im_end\|>|$)", re.DOTALL)
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class ReleaseCounts:
    tool_calls: int  # the release's tc
    searches: int  # the release's total
    searches_per_turn: tuple[int, ...]  # per assistant turn with calls
    parse_failed: bool = False  # the release's parser raised: its final answer is empty too


def _parts(value: Any) -> int:
    return len([p for p in str(value).strip().split("|") if p.strip()])


def _call_searches(raw: str) -> int:
    """The release's `search_count` of one <tool_call> body; TypeError where the release raised."""
    name, args = "", {}
    try:
        data = json.loads(raw.strip())
        name = data.get("name", "")
        args = data.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except (json.JSONDecodeError, TypeError):
                args = {}
        if not isinstance(args, dict):
            args = {}
    except Exception:  # bad JSON, or JSON that is not an object: a call that searches nothing
        pass
    if "text_search" in name:  # a str test on purpose: a non-container name raises TypeError, as in the release
        return _parts(args.get("input", ""))
    if "image_search" in name:
        image_id = str(args.get("image_id", args.get("img_id", ""))).strip()
        return _parts(image_id) if image_id else 0
    return 0


def release_counts(response_text: str) -> ReleaseCounts:
    """(tc, total) of one decoded response (special tokens kept), counted as the released reward counts."""
    if not response_text:
        return ReleaseCounts(0, 0, ())
    text = response_text if response_text.lstrip().startswith("<|im_start|>") else \
        f"<|im_start|>assistant\n{response_text}"
    segments = [(m.group(1), m.group(2).strip()) for m in _SEGMENT.finditer(text)] or [("assistant", text)]
    per_turn: list[int] = []
    calls = 0
    try:
        for role, content in segments:
            if role != "assistant":
                continue
            bodies = _CALL.findall(content)
            if bodies:
                per_turn.append(sum(_call_searches(b) for b in bodies))
                calls += len(bodies)
    except TypeError:
        return ReleaseCounts(0, 0, (), parse_failed=True)
    return ReleaseCounts(calls, sum(per_turn), tuple(per_turn))
