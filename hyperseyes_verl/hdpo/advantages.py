"""HDPO's two decoupled advantages over the rollouts of each prompt (index = prompt group id per rollout).

    R_acc  = 0.9*answer + 0.1*format          A_acc : GRPO over all G rollouts of the prompt
    R_tool = 1/(T+1) if correct else 0        A_tool: normalised over the correct rollouts Q only,
                                                      0 when |Q| < 2 and 0 for every incorrect rollout
Group statistics mirror verl's GRPO (`compute_grpo_outcome_advantage`): mean, unbiased std, +epsilon;
a group of one gets mean 0 / std 1 there, reproduced here for A_acc.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hyperseyes_verl.hdpo.config import HDPOConfig


@dataclass(frozen=True)
class HDPOAdvantages:
    acc_adv_N: np.ndarray  # per rollout (N,)
    tool_adv_N: np.ndarray
    combined_adv_N: np.ndarray  # w_acc*A_acc + w_tool*A_tool (the "sum" form)
    metrics: dict[str, float]


def accuracy_rewards(answer_N: np.ndarray, format_N: np.ndarray, cfg: HDPOConfig = HDPOConfig()) -> np.ndarray:
    return cfg.answer_weight * np.asarray(answer_N, float) + cfg.format_weight * np.asarray(format_N, float)


def efficiency_rewards(correct_N: np.ndarray, tool_count_N: np.ndarray) -> np.ndarray:
    tools = np.asarray(tool_count_N, float)
    if (tools < 0).any():
        raise ValueError(f"tool counts must be >= 0; got {tools[tools < 0][:5].tolist()}")
    return np.where(np.asarray(correct_N, bool), 1.0 / (tools + 1.0), 0.0)


def _groups(index_N: Sequence) -> dict:
    groups: dict = defaultdict(list)
    for i, g in enumerate(index_N):
        groups[g].append(i)
    return groups


def group_normalized(values_N: np.ndarray, index_N: Sequence, members_N: np.ndarray | None = None,
                     min_members: int = 1, epsilon: float = 1e-6, norm_by_std: bool = True) -> np.ndarray:
    """(v - mean_g) / (std_g + eps) over the members of each group; non-members and groups with fewer than
    `min_members` members get 0. A group of exactly one member uses mean 0 / std 1 (verl's GRPO rule)."""
    v = np.asarray(values_N, float)
    members = np.ones(len(v), bool) if members_N is None else np.asarray(members_N, bool)
    out = np.zeros(len(v))
    for rows in _groups(index_N).values():
        sel = [r for r in rows if members[r]]
        if len(sel) < min_members or not sel:
            continue
        x = v[sel]
        mean, std = (0.0, 1.0) if len(sel) == 1 else (x.mean(), x.std(ddof=1))
        out[sel] = (x - mean) / (std + epsilon) if norm_by_std else x - mean
    return out


def hdpo_advantages(index_N: Sequence, answer_N: np.ndarray, format_N: np.ndarray, tool_count_N: np.ndarray,
                    cfg: HDPOConfig = HDPOConfig()) -> HDPOAdvantages:
    """All arrays are per rollout (N,); `answer` is the judge's 0/1 accuracy."""
    n = len(index_N)
    for name, a in (("answer", answer_N), ("format", format_N), ("tool_count", tool_count_N)):
        if len(a) != n:
            raise ValueError(f"HDPO: {name} has {len(a)} entries, index has {n}")
    correct = np.asarray(answer_N, float) > 0
    r_acc = accuracy_rewards(answer_N, format_N, cfg)
    r_tool = efficiency_rewards(correct, tool_count_N)
    a_acc = group_normalized(r_acc, index_N, epsilon=cfg.epsilon, norm_by_std=cfg.norm_by_std)
    a_tool = group_normalized(r_tool, index_N, members_N=correct, min_members=2, epsilon=cfg.epsilon,
                              norm_by_std=cfg.norm_by_std)
    groups = _groups(index_N)
    n_ge2 = sum(1 for rows in groups.values() if correct[rows].sum() >= 2)
    metrics = {
        "hdpo/acc_reward_mean": float(r_acc.mean()) if n else 0.0,
        "hdpo/tool_reward_mean_correct": float(r_tool[correct].mean()) if correct.any() else 0.0,
        "hdpo/groups_with_tool_signal_frac": n_ge2 / len(groups) if groups else 0.0,
        "hdpo/acc_adv_abs_mean": float(np.abs(a_acc).mean()) if n else 0.0,
        "hdpo/tool_adv_abs_mean": float(np.abs(a_tool).mean()) if n else 0.0,
    }
    return HDPOAdvantages(a_acc, a_tool, cfg.w_acc * a_acc + cfg.w_tool * a_tool, metrics)
