"""The records that cross process boundaries, as frozen types (docs/CONTRACTS.md §3 and §4).

One trajectory's record goes: `SearchEnvironment.stats` -> `TrajectoryFields` (agent loop, verl's
`extra_fields`, reaching the reward as `tool_extra_fields`) -> `RewardInfo` (reward, verl's `reward_extra_info`)
-> the trainer's advantage step. Each type's field names ARE the verl-facing keys (metrics, DataProto
non_tensor_batch, saved files), so `to_dict()` / `from_mapping()` never rename. Pure: no verl, no ray.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # type only: ugs.types imports FinishReason from here
    from hyperseyes_verl.ugs.types import EpisodeStats

# Every way an episode ends, by who ends it:
#   environment: answer | no_action | turn_budget (running while it goes on)
#   verl agent loop: length (response budget) | invalid_token (a generated vision placeholder)
#   endpoint runner (PRS, eval): endpoint_error (the model endpoint failed after retries)
FinishReason = Literal["answer", "no_action", "turn_budget", "running", "length", "invalid_token", "endpoint_error"]
JudgeSource = Literal["rule", "llm", "rule_fallback"]


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} = {value!r} is not an integer (docs/CONTRACTS.md)") from e


def _counts(value: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in dict(value or {}).items()}


class _Record:
    """`contract_keys` / `to_dict` / `from_mapping`, shared by the frozen records below."""

    @classmethod
    def contract_keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values under the contract keys (lists and dicts, never tuples or Counters)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]):
        """Read the contract keys of `m`, ignoring others (verl adds its own); missing keys take the defaults,
        a missing key without one raises ValueError naming it."""
        missing = [f.name for f in fields(cls) if f.name not in m and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise ValueError(f"{cls.__name__} needs the keys {missing} (docs/CONTRACTS.md); got {sorted(m)}")
        known = set(cls.contract_keys())
        return cls(**{k: v for k, v in m.items() if k in known})


@dataclass(frozen=True)
class TrajectoryFields(_Record):
    """CONTRACTS §3: what this project's agent loop reports per trajectory (`AgentLoopOutput.extra_fields`)."""

    tool_rounds: int = 0
    tool_calls: int = 0
    searches: int = 0  # text queries + crops searched
    searches_per_round: tuple[int, ...] = ()
    crops_ok: int = 0
    crops_failed: int = 0
    search_failures: int = 0
    tool_errors: Mapping[str, int] = field(default_factory=dict)  # the model's mistakes, kind -> count
    budget_exhausted: bool = False  # every tool round spent, or the turn budget ended the episode
    answered: bool = False
    answer: str | None = None
    finish_reason: FinishReason = "running"
    truncated: bool = False  # the response length cut the episode, or crops were withheld by the image cap
    search_failure_kinds: Mapping[str, int] = field(default_factory=dict)  # backend outages, kind -> count

    def __post_init__(self):  # normalise once, so verl's object arrays hold plain ints / bools / dicts
        for name in ("tool_rounds", "tool_calls", "searches", "crops_ok", "crops_failed", "search_failures"):
            object.__setattr__(self, name, _int(getattr(self, name), f"tool_extra_fields[{name!r}]"))
        for name in ("budget_exhausted", "answered", "truncated"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        object.__setattr__(self, "searches_per_round", tuple(int(x) for x in self.searches_per_round))
        object.__setattr__(self, "tool_errors", _counts(self.tool_errors))
        object.__setattr__(self, "search_failure_kinds", _counts(self.search_failure_kinds))

    @classmethod
    def from_episode(cls, stats: EpisodeStats, *, cut_reason: FinishReason | None = None,
                     truncated: bool = False) -> TrajectoryFields:
        """The record of one finished episode. `cut_reason`: why the caller ended it early (`length`,
        `invalid_token`); an episode the environment had not ended yet counts as `turn_budget`."""
        known = set(cls.contract_keys())
        shared = {k: v for k, v in vars(stats).items() if k in known}
        finish = cut_reason or (stats.finish_reason if stats.finish_reason != "running" else "turn_budget")
        return cls(**{**shared, "tool_errors": stats.errors, "finish_reason": finish, "truncated": truncated})


@dataclass(frozen=True)
class RewardInfo(_Record):
    """CONTRACTS §4: the per-sample `reward_extra_info` of the TRACE reward (one scalar per key)."""

    acc: float  # judge verdict, 0 without an answer
    answered: int  # 0/1
    tool_rounds: int
    tool_calls: int
    searches: int
    ref_rounds: float  # -1 = no reference
    ref_searches: float
    trace_bonus: float  # 0 in official mode: the group bonus is added in the trainer's advantage step
    opd_eligible: int  # 0/1: acc <= 0
    judge_source: JudgeSource  # "rule" for rows without an answer (no judge asked)
    prompt_key: str  # data_source/index, `#<split>` appended for validation rows
    hdpo_format: int  # 0/1: the episode followed the turn format
    store_error: int = 0  # 0/1: the reference store failed for this row; the dataset's reference was used

    def __post_init__(self):  # plain Python scalars, whatever numpy / verl handed in
        for name in ("acc", "ref_rounds", "ref_searches", "trace_bonus"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("answered", "tool_rounds", "tool_calls", "searches", "opd_eligible", "hdpo_format", "store_error"):
            object.__setattr__(self, name, _int(getattr(self, name), f"reward_extra_info[{name!r}]"))
        for name in ("judge_source", "prompt_key"):
            object.__setattr__(self, name, str(getattr(self, name)))


# The RewardInfo keys the official TRACE group rule reads (the keyword names of `score_groups`).
GROUP_RULE_KEYS = ("acc", "answered", "tool_rounds", "searches", "ref_rounds", "ref_searches")
