"""Which rollouts get the OPD signal: only failures (acc <= 0, no answer included).

Gating reads the reward *components*, never the total reward: a TRACE bonus (official mode adds up to
+0.2 / -0.1, paper mode subtracts a round cost) must not flip a failure into a success or back.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def eligible_from_info(info: Mapping | None) -> bool:
    """True when the rollout failed. `info` is one sample's reward_extra_info (CONTRACTS §4).

    `opd_eligible` wins when present (the reward manager's verdict); otherwise `acc <= 0`.
    Raises ValueError when neither key is there: gating on the total reward would be silently wrong.
    """
    if info is None:
        raise ValueError("OPD gating needs reward_extra_info with 'opd_eligible' or 'acc'; got None "
                         "(is the HyperEyes reward manager configured?)")
    if "opd_eligible" in info and info["opd_eligible"] is not None:
        return float(info["opd_eligible"]) > 0.0
    if "acc" in info and info["acc"] is not None:
        return float(info["acc"]) <= 0.0
    raise ValueError(f"OPD gating needs 'opd_eligible' or 'acc' in reward_extra_info; got keys {sorted(info)}")


def eligible_mask(infos: Sequence[Mapping | None]) -> np.ndarray:
    """(B,) bool array, one entry per sample."""
    return np.array([eligible_from_info(i) for i in infos], dtype=bool)
