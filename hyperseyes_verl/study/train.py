"""GRPO-style training of the tabular policy: per step, n rollouts for each of a batch of prompts, advantages
from the signal under study, REINFORCE on the softmax logits (∇ log π(s) = onehot(s) − π), the reference
store tightened at every epoch end. Accuracy and rounds are measured exactly (expectation over the whole
population under the current policy), so the curves carry no evaluation noise."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.study.signals import Rollouts, Variant, advantages
from hyperseyes_verl.study.world import (
    MAX_ENTITIES,
    Population,
    WorldConfig,
    expected_stats,
    initial_logits,
    make_population,
    sample_strategies,
    softmax_TS,
)
from hyperseyes_verl.trace import ReferenceStore, StoreConfig


class StudyConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(0, description="seed of the population and of every run's sampling")
    epochs: int = Field(60, ge=1, description="passes over the prompt population")
    prompts: int = Field(256, ge=MAX_ENTITIES, description="prompts in the population (entity counts 1..8 equally)")
    batch_prompts: int = Field(32, ge=1, description="prompts per training step (official: 32)")
    n: int = Field(8, ge=2, description="rollouts per prompt (GRPO group size; official: 8)")
    lr: float = Field(0.5, gt=0, description="step size on the logits (mean gradient per entity count)")
    world: WorldConfig = Field(default_factory=WorldConfig, description="the strategy / success model")
    estimator: str = Field("grpo", description="verl advantage estimator of the scalar-reward signals "
                           "(`grpo`; `reinforce_plus_plus` whitens over the batch, with no per-group baseline)")


@dataclass
class History:
    variant: str
    label: str
    epochs: list[dict[str, float]] = field(default_factory=list)  # index 0 = before training

    def final(self) -> dict[str, float]:
        return self.epochs[-1]

    def series(self, key: str) -> np.ndarray:
        return np.array([e[key] for e in self.epochs])


def _policy_step(logits_TS: np.ndarray, type_N: np.ndarray, strategy_N: np.ndarray, probs_TS: np.ndarray,
                 adv_N: np.ndarray, lr: float) -> None:
    """logits[t] += lr · mean over type-t rollouts of A · (onehot(s) − π_t)."""
    grad_TS = np.zeros_like(logits_TS)
    np.add.at(grad_TS, (type_N, strategy_N), adv_N)
    count_T = np.bincount(type_N, minlength=len(logits_TS)).astype(float)
    adv_sum_T = np.bincount(type_N, weights=adv_N, minlength=len(logits_TS))
    grad_TS -= adv_sum_T[:, None] * probs_TS
    logits_TS += lr * grad_TS / np.maximum(count_T, 1)[:, None]


def run_variant(variant: Variant, cfg: StudyConfig, pop: Population | None = None) -> History:
    variant = replace(variant, estimator=cfg.estimator)
    rng = np.random.default_rng(cfg.seed)
    pop = pop or make_population(cfg.prompts, cfg.world, np.random.default_rng(cfg.seed))
    logits_TS = initial_logits(cfg.world)
    store = ReferenceStore(StoreConfig(warmup_epochs=variant.warmup_epochs, min_correct=variant.min_correct,
                                       use_ray=False))
    keys_P = [pop.key(p) for p in range(pop.size)]
    store.load_initial(zip(keys_P, pop.ref_rounds_P.tolist(), pop.ref_searches_P.tolist()))
    hist = History(variant.name, variant.label or variant.name)
    hist.epochs.append({**expected_stats(pop, softmax_TS(logits_TS)), "ref_rounds": float(pop.ref_rounds_P.mean())})
    step = 0
    for _ in range(cfg.epochs):
        order = rng.permutation(pop.size)
        for start in range(0, pop.size, cfg.batch_prompts):
            prompts = order[start:start + cfg.batch_prompts]
            prompt_N = np.repeat(prompts, cfg.n)
            type_N = pop.type_P[prompt_N]
            probs_TS = softmax_TS(logits_TS)
            strategy_N = sample_strategies(probs_TS, type_N, rng)
            correct_N = rng.random(len(prompt_N)) < pop.p_correct_PS[prompt_N, strategy_N]
            r = Rollouts(prompt_N=prompt_N, group_N=np.repeat(np.arange(len(prompts)), cfg.n),
                         strategy_N=strategy_N, correct_N=correct_N, answered_N=pop.answered_S[strategy_N],
                         rounds_N=pop.rounds_PS[prompt_N, strategy_N], searches_N=pop.searches_PS[prompt_N, strategy_N],
                         init_ref_rounds_N=pop.ref_rounds_P[prompt_N], init_ref_searches_N=pop.ref_searches_P[prompt_N],
                         keys_N=[keys_P[p] for p in prompt_N])
            logp_N = np.log(probs_TS[type_N, strategy_N])
            adv_N = advantages(variant, r, store, logp_N, step)
            _policy_step(logits_TS, type_N, strategy_N, probs_TS, adv_N, cfg.lr)
            step += 1
        m = store.end_epoch()
        refs = np.array([row["ref_rounds"] for row in store.rows()], float)
        hist.epochs.append({**expected_stats(pop, softmax_TS(logits_TS)), "ref_rounds": float(refs.mean()),
                            "refs_tightened": m["trace/refs_tightened"]})
    return hist

