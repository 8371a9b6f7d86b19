"""The study's world: multi-entity prompts, the strategies a policy can pick, and what each one yields.

A prompt asks about k ∈ {1..8} entities and has a difficulty factor d (how findable its entities are).
Each rollout picks one strategy; the strategy fixes (answered, tool_rounds, searches) and the probability
that the answer is correct:

    strategy       rounds         searches   P(correct)                  why
    guess          0              0          d · g^k                     answering from memory rarely works
    skim           1              1          d · q · g^(k-1)             search one entity, guess the rest
    serial         k              k          d · q^k                     one entity per round (cold-start style)
    partial        ceil(k/2)      k          d · q^k                     two entities per round
    parallel       1              k          d · q^k                     every entity in one round
    over_search    min(8, k+2)    2k         d · q^k · over_noise        redundant queries add noise
    give_up        0              0          0 (no answer)

A fraction of prompts is *chained* (multi-hop: entity j can only be searched once entity j-1 is known).
On those, searching several entities in one round means guessing all but the first of them:
partial succeeds with d · q^ceil(k/2) · g^floor(k/2), parallel with d · q · g^(k-1); serial stays reliable.
Chained prompts are the hard queries where even the best trajectory needs k rounds, so they are where an
R⁻ above the lowest correct reward makes giving up pay. The policy sees whether a prompt is chained
(policy type = (chained, k), 16 types).

Serial, partial and parallel are equally reliable on purpose: the round count is the only thing that
separates them, so an accuracy-only reward has no reason to prefer fewer rounds and any efficiency
pressure comes from the reward under test. A cold-start reference of a prompt is its serial trajectory
(k rounds, k searches), as a teacher that resolves one entity per round would produce.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

STRATEGIES: tuple[str, ...] = ("guess", "skim", "serial", "partial", "parallel", "over_search", "give_up")
S = len(STRATEGIES)
IDX = {name: i for i, name in enumerate(STRATEGIES)}
MAX_ENTITIES = 8
MAX_ROUNDS = 8  # the UGS round budget
N_TYPES = 2 * MAX_ENTITIES


class WorldConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    q: float = Field(0.985, gt=0, le=1, description="P(one entity is resolved by a search)")
    g: float = Field(0.3, ge=0, le=1, description="P(one entity is guessed right without a search)")
    over_noise: float = Field(0.95, gt=0, le=1, description="reliability factor of over-searching (noisier)")
    chained_frac: float = Field(0.1, ge=0, le=1, description="share of chained (multi-hop) prompts")
    difficulty: tuple[float, float] = Field((0.85, 1.0), description="range of the per-prompt factor d (uniform)")
    init_probs: tuple[float, ...] = Field(
        (0.08, 0.08, 0.40, 0.15, 0.10, 0.12, 0.07),
        description="initial policy per strategy (same for every entity count): a serial-leaning cold-start "
        "policy, order as STRATEGIES")

    @model_validator(mode="after")
    def _check(self) -> "WorldConfig":
        lo, hi = self.difficulty
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"difficulty={self.difficulty} must satisfy 0 < lo <= hi <= 1")
        p = np.asarray(self.init_probs, float)
        if len(p) != S or (p <= 0).any() or abs(p.sum() - 1) > 1e-6:
            raise ValueError(f"init_probs={self.init_probs} must be {S} positive numbers summing to 1 "
                             f"(one per strategy {STRATEGIES})")
        return self


@dataclass(frozen=True)
class Population:
    """P prompts; `*_PS` tables give each prompt's outcome under each strategy."""

    entities_P: np.ndarray  # (P,) int, 1..8
    chained_P: np.ndarray  # (P,) bool
    p_correct_PS: np.ndarray  # (P, S)
    answered_S: np.ndarray  # (S,) bool
    rounds_PS: np.ndarray  # (P, S) int
    searches_PS: np.ndarray  # (P, S) int
    ref_rounds_P: np.ndarray  # cold-start reference (serial)
    ref_searches_P: np.ndarray

    @property
    def size(self) -> int:
        return len(self.entities_P)

    @property
    def type_P(self) -> np.ndarray:
        """Policy type of each prompt: (k - 1) + 8 · chained."""
        return self.entities_P - 1 + MAX_ENTITIES * self.chained_P

    def key(self, p: int) -> str:
        return f"study/{p}"


def make_population(n_prompts: int, cfg: WorldConfig, rng: np.random.Generator) -> Population:
    if n_prompts < MAX_ENTITIES:
        raise ValueError(f"--prompts {n_prompts} is too small: use at least {MAX_ENTITIES} (one per entity count)")
    k_P = np.resize(np.arange(1, MAX_ENTITIES + 1), n_prompts)  # every entity count equally often
    rng.shuffle(k_P)
    chained_P = rng.random(n_prompts) < cfg.chained_frac
    d_P = rng.uniform(*cfg.difficulty, size=n_prompts)
    k = k_P.astype(float)
    reliable = d_P * cfg.q ** k
    skim = d_P * cfg.q * cfg.g ** (k - 1)
    partial = np.where(chained_P, d_P * cfg.q ** np.ceil(k / 2) * cfg.g ** np.floor(k / 2), reliable)
    parallel = np.where(chained_P, skim, reliable)
    p = np.stack([d_P * cfg.g ** k, skim, reliable, partial, parallel, reliable * cfg.over_noise,
                  np.zeros(n_prompts)], axis=1)
    rounds = np.stack([np.zeros_like(k_P), np.ones_like(k_P), k_P, (k_P + 1) // 2, np.ones_like(k_P),
                       np.minimum(MAX_ROUNDS, k_P + 2), np.zeros_like(k_P)], axis=1)
    searches = np.stack([np.zeros_like(k_P), np.ones_like(k_P), k_P, k_P, k_P, 2 * k_P, np.zeros_like(k_P)],
                        axis=1)
    answered = np.array([name != "give_up" for name in STRATEGIES])
    return Population(k_P, chained_P, p, answered, rounds, searches, k_P.copy(), k_P.copy())


def softmax_TS(logits_TS: np.ndarray) -> np.ndarray:
    z = logits_TS - logits_TS.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def initial_logits(cfg: WorldConfig) -> np.ndarray:
    """(T, S) logits, T = 16 policy types (see `Population.type_P`)."""
    return np.tile(np.log(np.asarray(cfg.init_probs, float)), (N_TYPES, 1))


def sample_strategies(probs_TS: np.ndarray, type_N: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One strategy per rollout by inverse CDF (vectorised)."""
    cdf = np.cumsum(probs_TS[type_N], axis=1)
    u = rng.random(len(type_N))[:, None] * cdf[:, -1:]
    return np.minimum((u > cdf).sum(axis=1), S - 1)


def expected_stats(pop: Population, probs_TS: np.ndarray) -> dict[str, float]:
    """Exact (noise-free) accuracy, rounds and strategy shares of the policy over the whole population."""
    pi_PS = probs_TS[pop.type_P]
    hard = pop.entities_P >= 6
    hard_chained = hard & pop.chained_P
    out = {
        "acc": float((pi_PS * pop.p_correct_PS).sum(1).mean()),
        "rounds": float((pi_PS * pop.rounds_PS).sum(1).mean()),
        "searches": float((pi_PS * pop.searches_PS).sum(1).mean()),
        "answered": float((pi_PS * pop.answered_S).sum(1).mean()),
    }
    for name, i in IDX.items():
        out[f"share_{name}"] = float(pi_PS[:, i].mean())
    out["share_give_up_hard"] = float(pi_PS[hard, IDX["give_up"]].mean())
    no_search_P = pi_PS[:, [IDX["give_up"], IDX["guess"]]].sum(1)
    out["share_no_search_hard"] = float(no_search_P[hard].mean())
    out["share_no_search_hard_chained"] = float(no_search_P[hard_chained].mean()) if hard_chained.any() else 0.0
    # "giving up" in the seed's sense: a quick exit that cannot resolve the prompt (no answer, a guess, or
    # searching in a way that cannot work on it), i.e. any strategy below half the prompt's best reliability
    shortcut_PS = pop.p_correct_PS < 0.5 * pop.p_correct_PS.max(1, keepdims=True)
    shortcut_P = (pi_PS * shortcut_PS).sum(1)
    out["shortcut_hard_chained"] = float(shortcut_P[hard_chained].mean()) if hard_chained.any() else 0.0
    out["acc_hard_chained"] = float((pi_PS * pop.p_correct_PS).sum(1)[hard_chained].mean()) if hard_chained.any() \
        else 0.0
    out["share_give_up_hard_chained"] = float(pi_PS[hard_chained, IDX["give_up"]].mean()) if hard_chained.any() \
        else 0.0
    return out
