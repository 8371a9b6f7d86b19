"""The judge used by TRACE and eval: rule or LLM, with the rule judge as the fallback.

Each `Verdict.source` says which judge decided; callers log it per row (`judge_source`), and the run's metrics
count it (TRACE: `judge/fallbacks`, eval: `failures/judge_fallbacks`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hyperseyes_verl.judge.llm import LLMJudge, LLMJudgeConfig
from hyperseyes_verl.judge.rule import RuleJudge, RuleJudgeConfig
from hyperseyes_verl.judge.types import JudgeFailure, Verdict


class JudgeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["rule", "llm"] = Field("rule", description="rule: offline matching; llm: OpenAI-compatible "
                                         "endpoint, rule judge as fallback")
    rule: RuleJudgeConfig = Field(default_factory=RuleJudgeConfig, description="rule judge (also the fallback)")
    llm: LLMJudgeConfig | None = Field(None, description="required when kind = llm")

    @model_validator(mode="after")
    def _llm_needs_endpoint(self) -> "JudgeConfig":
        if self.kind == "llm" and self.llm is None:
            raise ValueError("judge.kind='llm' needs a judge.llm section (base_url, model); "
                             "set judge.kind='rule' to judge offline")
        return self


class Judge:
    """`await judge.judge(prediction, answers, question) -> Verdict` (its `source` says which judge decided)."""

    def __init__(self, config: JudgeConfig = JudgeConfig()):
        self.config = config
        self.rule = RuleJudge(config.rule)
        self.llm = LLMJudge(config.llm) if config.kind == "llm" else None

    async def judge(self, prediction: str | None, answers: Sequence[str], question: str = "") -> Verdict:
        answers = [answers] if isinstance(answers, str) else [str(a) for a in answers]
        if prediction is None:
            verdict = self.rule.judge(None, answers)
        elif self.llm is None:
            verdict = self.rule.judge(prediction, answers)
        else:
            try:
                ok = await self.llm.judge(question, prediction, answers)
                verdict = Verdict(correct=ok, answered=True, source="llm", reason="llm")
            except Exception as e:  # JudgeFailure, or a bug: never a crash, never a silent score
                rule = self.rule.judge(prediction, answers)
                reason = str(e) if isinstance(e, JudgeFailure) else f"judge error {type(e).__name__}: {e}"
                verdict = Verdict(correct=rule.correct, answered=True, source="rule_fallback", reason=reason[:200])
        return verdict

    async def aclose(self) -> None:
        if self.llm is not None:
            await self.llm.aclose()
