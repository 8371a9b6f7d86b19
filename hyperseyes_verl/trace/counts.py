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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

CountSource = Literal["hyperseyes", "tool_agent", "none"]


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
