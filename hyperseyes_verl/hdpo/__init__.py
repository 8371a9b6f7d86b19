"""HDPO decoupled advantages (Metis, arXiv 2604.08545), the sibling of TRACE in HyperEyes (§4).

Pure core (numpy, no verl): the advantages. verl wiring: hyperseyes_verl/verl/advantage_step.py; the loss side
(`combine`: one surrogate of the weighted sum, or two surrogates) is verl's own actor loss, wrapped for
`two_surrogate` by `HDPOTwoSurrogateLoss` in hyperseyes_verl/verl/trainer.py.
"""
from hyperseyes_verl.hdpo.advantages import (
    HDPOAdvantages,
    accuracy_rewards,
    efficiency_rewards,
    group_normalized,
    hdpo_advantages,
)
from hyperseyes_verl.hdpo.config import HDPOConfig

__all__ = [
    "HDPOAdvantages",
    "HDPOConfig",
    "accuracy_rewards",
    "efficiency_rewards",
    "group_normalized",
    "hdpo_advantages",
]
