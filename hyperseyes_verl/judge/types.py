"""Plain data of a judge verdict."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

JudgeSource = Literal["rule", "llm", "rule_fallback", "no_answer"]


@dataclass(frozen=True)
class Verdict:
    """One judged prediction.

    `answered` False means the trajectory had no parsable `<answer>`: its own outcome (official score
    -0.5), never confused with a wrong answer. `source` says who decided; `rule_fallback` = the LLM
    judge failed after its retries and the rule judge decided instead (counted in metrics).
    """

    correct: bool
    answered: bool
    source: JudgeSource
    reason: str = ""  # which rule matched, or the failure that caused a fallback

    @property
    def acc(self) -> float:
        return 1.0 if (self.correct and self.answered) else 0.0


class JudgeFailure(Exception):
    """The LLM judge could not produce a verdict (transport error, 5xx, timeout, unparsable reply)."""
