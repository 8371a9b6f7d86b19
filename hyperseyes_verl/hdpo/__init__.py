"""HDPO decoupled advantages (Metis, arXiv 2604.08545), the sibling of TRACE in HyperEyes (§4).

Pure core (numpy/torch, no verl). verl wiring: hyperseyes_verl/verl/advantage_step.py and trainer.py.
"""
from hyperseyes_verl.hdpo.advantages import (
    HDPOAdvantages,
    accuracy_rewards,
    efficiency_rewards,
    group_normalized,
    hdpo_advantages,
)
from hyperseyes_verl.hdpo.config import HDPOConfig
from hyperseyes_verl.hdpo.loss import clipped_surrogate_loss, sum_of_advantages_loss, two_surrogate_loss

__all__ = [
    "HDPOAdvantages",
    "HDPOConfig",
    "accuracy_rewards",
    "clipped_surrogate_loss",
    "efficiency_rewards",
    "group_normalized",
    "hdpo_advantages",
    "sum_of_advantages_loss",
    "two_surrogate_loss",
]
