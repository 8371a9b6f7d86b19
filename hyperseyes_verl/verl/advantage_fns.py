"""verl's registered outcome-advantage estimators (`grpo` by default) as a numpy function, called on (N, 1)
reward tensors exactly as verl's trainer calls them. Only translation lives here (numpy <-> torch, `uid` ->
`index`); verl is imported on first use, so importing this module stays cheap."""
from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=None)
def _estimator(name: str):
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn  # heavy import, once

    return get_adv_estimator_fn(name)


def verl_outcome_advantages(scores_N: np.ndarray, group_N: np.ndarray, estimator: str = "grpo") -> np.ndarray:
    """Per-rollout advantages from verl's estimator `estimator`; `group_N` plays verl's `uid` role."""
    import torch

    from verl.trainer.config import AlgoConfig

    fn = _estimator(estimator)
    rewards_N1 = torch.as_tensor(np.asarray(scores_N, dtype=np.float32))[:, None]
    # verl's default algorithm config: estimators such as reinforce_plus_plus read `gamma` from it
    adv_N1, _ = fn(token_level_rewards=rewards_N1, response_mask=torch.ones_like(rewards_N1),
                   index=np.asarray(group_N), config=AlgoConfig())
    return adv_N1[:, 0].numpy().astype(np.float64)
