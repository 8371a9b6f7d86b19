"""TRACE as released by HyperEyes (group rule), reproduced exactly.

Over the n rollouts of one prompt, with the prompt's reference `ref_tc` tool rounds and `ref_total`
searches (-1 or None = no reference; the release's -1 arithmetic is kept on purpose):

- no parsable `<answer>`           -> score -0.5, bonus 0
- wrong                            -> bonus -0.1 if tc < ref_tc or tc > int(1.5 * ref_tc), else 0
- correct, tc = 0                  -> bonus 0 (a guess is not rewarded extra)
- correct, tc > 0                  -> "good" if tc <= ref_tc and total <= ref_total, else "bad";
  in each set the distinct keys (tc, total) are ranked ascending and the bonus falls linearly from
  `hi` (best key) to `lo` (worst key); a set with one distinct key gets `hi`.
- score = acc + bonus, bonuses rounded to 4 decimals.

With no reference (-1) every wrong rollout gets -0.1 (tc > int(-1.5) = -1) and every correct
rollout with tools is "bad". The group is needed as a whole, so in verl this runs in the trainer's
advantage step on the per-sample components of `reward_extra_info`; `score_groups` scores a flat batch of
groups, and is what the trainer, the study and the demo call.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Category = Literal["no_answer", "wrong", "wrong_penalized", "correct_no_tool", "good", "bad"]


class OfficialTraceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    no_answer_score: float = Field(-0.5, allow_inf_nan=False, description="score without a parsable <answer>")
    wrong_penalty: float = Field(-0.1, allow_inf_nan=False, description="bonus of a wrong rollout whose rounds "
                                 "fall outside [ref_tc, int(1.5 * ref_tc)]")
    wrong_upper_factor: float = Field(1.5, gt=0, allow_inf_nan=False, description="upper bound factor of that window")
    good_range: tuple[float, float] = Field((0.05, 0.20), description="(lo, hi) bonus of correct rollouts within "
                                            "the reference")
    bad_range: tuple[float, float] = Field((-0.10, -0.02), description="(lo, hi) bonus of correct rollouts over it")
    decimals: int = Field(4, ge=0, le=12, description="rounding of the bonus")
    counting: Literal["release", "searches"] = Field(
        "release", description="what `tc` and `total` are. release (parity, the default): tc = <tool_call> "
        "blocks of the response, total = one per call (a list of queries or several boxes count 1; a legacy "
        "'a|b' string counts its parts), read from the response text as the release reads it "
        "(hyperseyes_verl.trace.counts.release_counts). searches (ours): tc = tool rounds, total = queries + "
        "crops actually searched, from the agent loop; it charges parallel width, which the method encourages")

    @model_validator(mode="after")
    def _ranges_ordered(self) -> "OfficialTraceConfig":
        for name in ("good_range", "bad_range"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name}={(lo, hi)} must be finite (lo, hi) with lo <= hi")
        if self.bad_range[1] >= self.good_range[0]:
            raise ValueError(f"bad_range {self.bad_range} must lie below good_range {self.good_range}")
        return self


@dataclass(frozen=True)
class OfficialScore:
    score: float
    bonus: float
    category: Category


def _ref(value: float | int | None) -> int:
    return -1 if value is None else int(value)


def _linear_bonus(keys: list[tuple[int, int]], lo: float, hi: float, decimals: int) -> dict[tuple[int, int], float]:
    distinct = sorted(set(keys))
    if len(distinct) == 1:
        return {distinct[0]: round(hi, decimals)}
    step = (hi - lo) / (len(distinct) - 1)
    return {k: round(hi - i * step, decimals) for i, k in enumerate(distinct)}


def _check_lengths(where: str, n: int, columns: dict[str, Sequence]) -> None:
    for name, col in columns.items():
        if len(col) != n:
            raise ValueError(f"{where}: {name} has {len(col)} entries for {n} rollouts; pass one entry per rollout")


def official_group_scores(
    acc: Sequence[float],
    answered: Sequence[bool | float],
    tool_rounds: Sequence[int],
    searches: Sequence[int],
    ref_rounds: Sequence[float | int | None],
    ref_searches: Sequence[float | int | None],
    cfg: OfficialTraceConfig = OfficialTraceConfig(),
) -> list[OfficialScore]:
    """Scores of one group (all sequences indexed by rollout, equal length)."""
    n = len(acc)
    _check_lengths("official_group_scores", n, {"answered": answered, "tool_rounds": tool_rounds,
                                                "searches": searches, "ref_rounds": ref_rounds,
                                                "ref_searches": ref_searches})
    keys = [(int(tc), int(total)) for tc, total in zip(tool_rounds, searches)]
    category: list[Category] = []
    bonus = [0.0] * n
    for i, (tc, total) in enumerate(keys):
        ref_tc, ref_total = _ref(ref_rounds[i]), _ref(ref_searches[i])
        if not bool(answered[i]):
            category.append("no_answer")
        elif float(acc[i]) <= 0.5:
            outside = tc < ref_tc or tc > int(cfg.wrong_upper_factor * ref_tc)
            category.append("wrong_penalized" if outside else "wrong")
            bonus[i] = round(cfg.wrong_penalty, cfg.decimals) if outside else 0.0
        elif tc == 0:
            category.append("correct_no_tool")
        else:
            category.append("good" if (tc <= ref_tc and total <= ref_total) else "bad")
    for cat, (lo, hi) in (("good", cfg.good_range), ("bad", cfg.bad_range)):
        members = [i for i in range(n) if category[i] == cat]
        if members:
            table = _linear_bonus([keys[i] for i in members], lo, hi, cfg.decimals)
            for i in members:
                bonus[i] = table[keys[i]]
    out = []
    for i in range(n):
        if category[i] == "no_answer":
            out.append(OfficialScore(cfg.no_answer_score, 0.0, "no_answer"))
        else:
            a = 1.0 if float(acc[i]) > 0.5 else 0.0
            out.append(OfficialScore(round(a + bonus[i], cfg.decimals), bonus[i], category[i]))
    return out


def score_groups(
    groups: Sequence[Hashable],
    *,
    acc: Sequence[float],
    answered: Sequence[bool | float],
    tool_rounds: Sequence[int],
    searches: Sequence[int],
    ref_rounds: Sequence[float | int | None],
    ref_searches: Sequence[float | int | None],
    cfg: OfficialTraceConfig = OfficialTraceConfig(),
) -> list[OfficialScore]:
    """Scores of a flat batch, in row order: rows with equal `groups[i]` (verl's uid) form one group.
    The keywords are `hyperseyes_verl.contracts.GROUP_RULE_KEYS`, the `reward_extra_info` keys they come from."""
    columns = {"acc": acc, "answered": answered, "tool_rounds": tool_rounds, "searches": searches,
               "ref_rounds": ref_rounds, "ref_searches": ref_searches}
    _check_lengths("score_groups", len(groups), columns)
    members: dict[Hashable, list[int]] = {}
    for row, g in enumerate(groups):
        members.setdefault(g, []).append(row)
    out: list[OfficialScore | None] = [None] * len(groups)
    for rows in members.values():
        scores = official_group_scores(**{k: [col[i] for i in rows] for k, col in columns.items()}, cfg=cfg)
        for i, sc in zip(rows, scores, strict=True):
            out[i] = sc
    return out  # type: ignore[return-value]  # every row belongs to one group
