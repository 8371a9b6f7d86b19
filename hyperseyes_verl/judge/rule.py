"""Rule judge: exact match, containment (prediction contains a ground truth, word-boundary aware),
numeric tolerance and token F1, over several accepted answers."""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.judge.normalize import normalize_answer, parse_numbers
from hyperseyes_verl.judge.types import Verdict


class RuleJudgeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    containment: bool = Field(True, description="correct when the normalized prediction contains a normalized "
                              "ground truth as whole words (the official judge's 'contains' semantics)")
    numeric: bool = Field(True, description="numeric ground truths (one number, at most `max_unit_tokens` "
                          "unit words) are compared as numbers with `rel_tol`; a numeric mismatch is wrong")
    rel_tol: float = Field(1e-3, ge=0, le=1, allow_inf_nan=False, description="relative tolerance of the numeric rule")
    max_unit_tokens: int = Field(2, ge=0, description="words besides the number a ground truth may have and stay numeric")
    f1_threshold: float | None = Field(0.8, gt=0, le=1, allow_inf_nan=False,
                                       description="token-F1 at or above this is correct; None disables the F1 rule")


def token_f1(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(pred) & Counter(gold)).values())
    if not pred or not gold or common == 0:
        return 0.0
    p, r = common / len(pred), common / len(gold)
    return 2 * p * r / (p + r)


@lru_cache(maxsize=65536)  # ground truths repeat across the n rollouts of a prompt
def _numeric_truth(truth: str, max_unit_tokens: int) -> float | None:
    """The number of a numeric ground truth (one number, at most `max_unit_tokens` other words), else None."""
    numbers = parse_numbers(truth)
    if len(numbers) != 1:
        return None
    words = [w for w in normalize_answer(truth).split() if not any(ch.isdigit() for ch in w)]
    return numbers[0] if len(words) <= max_unit_tokens else None


class RuleJudge:
    """Deterministic, offline judge; also the fallback of the LLM judge."""

    def __init__(self, config: RuleJudgeConfig = RuleJudgeConfig()):
        self.config = config

    def _match_one(self, prediction: str, pred_norm: str, truth: str) -> str | None:
        truth_norm = normalize_answer(truth)
        if not truth_norm:
            return None  # an empty ground truth would match everything
        if pred_norm == truth_norm:
            return "exact"
        number = _numeric_truth(truth, self.config.max_unit_tokens) if self.config.numeric else None
        if number is not None:
            tol = self.config.rel_tol * max(abs(number), 1e-12)
            ok = any(math.isclose(x, number, rel_tol=0.0, abs_tol=tol) for x in parse_numbers(prediction))
            return "numeric" if ok else None  # numbers decide: "5 km" never matches "3 km" by F1
        if self.config.containment and f" {truth_norm} " in f" {pred_norm} ":
            return "contains"
        if self.config.f1_threshold is not None and token_f1(pred_norm, truth_norm) >= self.config.f1_threshold:
            return "f1"
        return None

    def judge(self, prediction: str | None, answers: Sequence[str]) -> Verdict:
        if prediction is None:
            return Verdict(correct=False, answered=False, source="no_answer", reason="no <answer>")
        if isinstance(answers, str):
            answers = [answers]
        pred_norm = normalize_answer(prediction)
        for truth in answers:
            rule = self._match_one(prediction, pred_norm, str(truth))
            if rule is not None:
                return Verdict(correct=True, answered=True, source="rule", reason=rule)
        return Verdict(correct=False, answered=True, source="rule", reason="no_match")
