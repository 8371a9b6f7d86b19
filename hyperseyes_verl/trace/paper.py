"""TRACE as written in the paper: a per-rollout reward with a round cost.

    correct: R = R⁺ − λ · t        wrong: R = R⁻        no <answer>: R = R_none

t = tool rounds, or in the reference-relative variant `max(0, t − l)` with l the prompt's reference
(rounds at or under the reference are free; no reference → all rounds are charged).
λ follows a schedule: constant, linear warm-up over training steps, or adaptive tightening (after an
epoch whose correct rollouts used more rounds on average than their references, λ grows by a step, up
to λ_max). The config refuses settings where giving up could pay: R⁻ and R_none must stay below the
lowest reward a correct trajectory can get within the round budget, R⁺ − λ_max · max_rounds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PaperTraceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    r_plus: float = Field(1.0, allow_inf_nan=False, description="R⁺: reward of a correct answer before the round cost")
    r_minus: float = Field(0.0, allow_inf_nan=False, description="R⁻: reward of a wrong answer")
    r_no_answer: float = Field(-0.5, allow_inf_nan=False, description="reward without a parsable <answer> "
                               "(at most R⁻: not answering must never beat answering wrong)")
    lam: float = Field(0.05, ge=0, allow_inf_nan=False, description="λ: cost per charged tool round "
                       "(the final value of a warm-up, the start of adaptive tightening)")
    schedule: Literal["constant", "linear_warmup", "adaptive"] = Field(
        "constant", description="constant λ; linear_warmup: λ·min(1, step/warmup_steps); adaptive: grows at epoch ends")
    warmup_steps: int = Field(0, ge=0, description="steps of the linear warm-up (0 = no warm-up)")
    lam_max: float = Field(0.1, ge=0, allow_inf_nan=False, description="cap of adaptive λ")
    adapt_step: float = Field(0.01, ge=0, allow_inf_nan=False, description="adaptive λ increase per tightening epoch")
    adapt_margin: float = Field(0.0, ge=0, allow_inf_nan=False, description="λ grows only when the mean rounds of "
                                "correct rollouts exceed the mean reference by more than this")
    max_rounds: int = Field(8, ge=1, description="the round budget of an episode (official 8)")
    relative: bool = Field(False, description="charge only rounds above the prompt's reference")

    @property
    def lam_peak(self) -> float:
        return self.lam_max if self.schedule == "adaptive" else self.lam

    @model_validator(mode="after")
    def _no_give_up_hack(self) -> "PaperTraceConfig":
        if self.schedule == "adaptive" and self.lam_max < self.lam:
            raise ValueError(f"lam_max={self.lam_max} is below the starting lam={self.lam}; adaptive λ only grows, "
                             "so set lam_max >= lam")
        if self.schedule == "linear_warmup" and self.warmup_steps == 0:
            raise ValueError("schedule='linear_warmup' needs warmup_steps >= 1 (or use schedule='constant')")
        floor = self.r_plus - self.lam_peak * self.max_rounds
        for name in ("r_minus", "r_no_answer"):
            value = getattr(self, name)
            if not value < floor:
                raise ValueError(
                    f"{name}={value} is not below the lowest reward of a correct trajectory, "
                    f"R⁺ − λ_max·max_rounds = {self.r_plus} − {self.lam_peak}·{self.max_rounds} = {floor:.4g}: "
                    "the policy would learn to give up on hard queries. Lower it, or lower λ / lam_max.")
        if self.r_no_answer > self.r_minus:
            raise ValueError(f"r_no_answer={self.r_no_answer} exceeds r_minus={self.r_minus}: not answering would pay "
                             "more than a wrong answer")
        return self


@dataclass(frozen=True)
class PaperScore:
    score: float
    bonus: float  # score − (R⁺ if correct else R⁻ / R_none): the round cost, ≤ 0
    charged_rounds: int


def lambda_at(cfg: PaperTraceConfig, step: int | None, adaptive_lam: float | None = None) -> float:
    """λ in force at training step `step` (adaptive: the shared state, starting at cfg.lam)."""
    if cfg.schedule == "adaptive":
        return cfg.lam if adaptive_lam is None else min(float(adaptive_lam), cfg.lam_max)
    if cfg.schedule == "linear_warmup":
        return cfg.lam * min(1.0, max(0, step or 0) / cfg.warmup_steps)
    return cfg.lam


def paper_score(cfg: PaperTraceConfig, correct: bool, answered: bool, rounds: int,
                ref_rounds: int | None, lam: float) -> PaperScore:
    if not answered:
        return PaperScore(cfg.r_no_answer, 0.0, 0)
    if not correct:
        return PaperScore(cfg.r_minus, 0.0, 0)
    rounds = min(int(rounds), cfg.max_rounds)
    has_ref = ref_rounds is not None and ref_rounds >= 0
    charged = max(0, rounds - int(ref_rounds)) if (cfg.relative and has_ref) else rounds
    cost = min(lam, cfg.lam_peak) * charged
    return PaperScore(cfg.r_plus - cost, -cost, charged)


def adapt_lambda(cfg: PaperTraceConfig, lam: float, mean_correct_rounds: float | None, mean_ref: float | None) -> float:
    """Adaptive tightening at an epoch end: λ grows while correct rollouts stay above their references."""
    if cfg.schedule != "adaptive" or mean_correct_rounds is None or mean_ref is None:
        return lam
    if mean_correct_rounds > mean_ref + cfg.adapt_margin:
        return min(cfg.lam_max, lam + cfg.adapt_step)
    return lam
