"""Learning signals under study: each turns one step's rollouts into per-rollout advantages, through the
project's real reward code and verl's real estimator.

    acc_only        reward = acc (0 without an answer)                -> verl GRPO
    trace_official  acc + official group bonus (`official_group_scores`, references from the store)
                    (-0.5 without an answer)                          -> verl GRPO
    trace_paper     `paper_score`: R⁺ − λ·t / R⁻ / R_none (optionally reference-relative) -> verl GRPO
    hdpo            `hdpo_advantages` (A_acc + w_tool·A_tool over the correct rollouts)
    + opd           failed rollouts (the project's `eligible_mask`) get A −= β·(log π − log π_teacher)
                    through `reverse_kl_shaped_advantages`

Every rollout is observed by the reference store (as the reward manager does) and scored against the
reference frozen for the epoch; the trainer calls `end_epoch` to tighten.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from hyperseyes_verl.hdpo import HDPOConfig, hdpo_advantages
from hyperseyes_verl.opd import eligible_mask, reverse_kl_shaped_advantages
from hyperseyes_verl.verl.advantage_fns import verl_outcome_advantages
from hyperseyes_verl.trace import OfficialTraceConfig, PaperTraceConfig, ReferenceStore, score_groups
from hyperseyes_verl.trace.paper import lambda_at, paper_score

Reward = Literal["acc_only", "trace_official", "trace_paper", "hdpo"]

# A strong teacher's strategy preferences (order as world.STRATEGIES): mostly parallel, rarely guessing.
TEACHER_PROBS = (0.02, 0.02, 0.10, 0.15, 0.65, 0.04, 0.02)


@dataclass(frozen=True)
class Variant:
    """One learning signal. `paper` may be built with `model_construct` to skip its validator on purpose
    (the deliberately broken R⁻ guard); everything else is validated."""

    name: str
    reward: Reward
    label: str = ""
    official: OfficialTraceConfig = field(default_factory=OfficialTraceConfig)
    paper: PaperTraceConfig = field(default_factory=lambda: PaperTraceConfig(lam=0.1))
    hdpo: HDPOConfig = field(default_factory=lambda: HDPOConfig(tool_count="tool_rounds"))
    warmup_epochs: int = 2  # reference store: epoch ends that do not tighten
    min_correct: int = 1
    opd_beta: float = 0.0  # > 0: OPD shaping of failed rollouts
    estimator: str = "grpo"  # verl estimator for the scalar-reward signals


@dataclass
class Rollouts:
    """One step's rollouts (N = prompts × n), flat."""

    prompt_N: np.ndarray
    group_N: np.ndarray  # prompt position in the batch (verl's uid)
    strategy_N: np.ndarray
    correct_N: np.ndarray  # bool
    answered_N: np.ndarray  # bool
    rounds_N: np.ndarray
    searches_N: np.ndarray
    init_ref_rounds_N: np.ndarray
    init_ref_searches_N: np.ndarray
    keys_N: list[str]


def official_total(v: Variant, r: Rollouts) -> np.ndarray:
    """The `total` the official rule compares with the reference's searches. release counting: one per call,
    and in this world every round is one call holding all its boxes / queries, so total = rounds whatever the
    width; searches counting: the searches themselves (queries + crops), so width is charged."""
    return r.rounds_N if v.official.counting == "release" else r.searches_N


def observe(store: ReferenceStore, r: Rollouts, searches_N: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Record every rollout in the store (searches as the reward counts them); return the references they are
    scored against."""
    searches_N = r.searches_N if searches_N is None else searches_N
    infos = store.record_many(zip(r.keys_N, r.init_ref_rounds_N.tolist(), r.init_ref_searches_N.tolist(),
                                  r.correct_N.tolist(), r.rounds_N.tolist(), searches_N.tolist()))
    return np.array([i.rounds for i in infos]), np.array([i.searches for i in infos])


def official_scores(v: Variant, r: Rollouts, ref_r: np.ndarray, ref_s: np.ndarray) -> np.ndarray:
    res = score_groups(r.group_N.tolist(), acc=r.correct_N.astype(float).tolist(), answered=r.answered_N.tolist(),
                       tool_rounds=r.rounds_N.tolist(), searches=official_total(v, r).tolist(),
                       ref_rounds=ref_r.tolist(), ref_searches=ref_s.tolist(), cfg=v.official)
    return np.array([x.score for x in res], dtype=float)


def paper_scores(v: Variant, r: Rollouts, ref_r: np.ndarray, lam_state: float | None, step: int) -> np.ndarray:
    lam = lambda_at(v.paper, step, lam_state)
    return np.array([paper_score(v.paper, bool(c), bool(a), int(t), int(ref), lam).score
                     for c, a, t, ref in zip(r.correct_N, r.answered_N, r.rounds_N, ref_r)])


def advantages(v: Variant, r: Rollouts, store: ReferenceStore, logp_N: np.ndarray, step: int) -> np.ndarray:
    """Per-rollout advantages of this step under `v`."""
    ref_r, ref_s = observe(store, r, official_total(v, r) if v.reward == "trace_official" else None)
    if v.reward == "acc_only":
        adv_N = verl_outcome_advantages(r.correct_N.astype(float), r.group_N, v.estimator)
    elif v.reward == "trace_official":
        adv_N = verl_outcome_advantages(official_scores(v, r, ref_r, ref_s), r.group_N, v.estimator)
    elif v.reward == "trace_paper":
        adv_N = verl_outcome_advantages(paper_scores(v, r, ref_r, store.lam, step), r.group_N, v.estimator)
    elif v.reward == "hdpo":
        adv_N = hdpo_advantages(r.group_N, r.correct_N.astype(float), r.answered_N.astype(float), r.rounds_N,
                                v.hdpo).combined_adv_N
    else:
        raise ValueError(f"unknown reward {v.reward!r}; use one of acc_only, trace_official, trace_paper, hdpo")
    if v.opd_beta > 0:
        adv_N = opd_shaped(adv_N, r, logp_N, v.opd_beta)
    return adv_N


def opd_shaped(adv_N: np.ndarray, r: Rollouts, student_logp_N: np.ndarray, beta: float) -> np.ndarray:
    """The project's gating + reverse-KL term with one 'token' per rollout (the strategy choice)."""
    infos = [{"acc": float(c), "opd_eligible": int(not c)} for c in r.correct_N]
    eligible_N = torch.as_tensor(eligible_mask(infos))
    teacher_logp_N = np.log(np.asarray(TEACHER_PROBS))[r.strategy_N]

    def col(x):
        return torch.as_tensor(np.asarray(x, dtype=np.float64))[:, None]

    res = reverse_kl_shaped_advantages(col(adv_N), col(student_logp_N), col(teacher_logp_N),
                                       torch.ones(len(adv_N), 1), eligible_N, torch.ones(len(adv_N), dtype=torch.bool),
                                       beta=beta)
    return res.advantages_BT[:, 0].numpy()
