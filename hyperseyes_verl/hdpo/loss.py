"""Loss-level combination of HDPO's advantages: two clipped surrogates vs one surrogate of their sum.

PPO clipped surrogate per token: l(A) = max(-r*A, -clip(r, 1-e_lo, 1+e_hi)*A), r = exp(logp - logp_old).
  two_surrogate:  w_acc*l(A_acc) + w_tool*l(A_tool)       (Metis)
  sum:            l(w_acc*A_acc + w_tool*A_tool)
They agree while r is inside the clip range (l is linear in A there) and differ when clipping is active and
the two advantages disagree in sign: each surrogate clips on its own side. Since l(c*A) = c*l(A) for c > 0,
w_acc*l(A_acc) is computed as l(w_acc*A_acc), which is how the verl adapter realises the two-surrogate form.
Token aggregation: mean over response tokens (verl's "token-mean").
"""
from __future__ import annotations

import torch


def clipped_surrogate_loss(logp_BT: torch.Tensor, old_logp_BT: torch.Tensor, adv_BT: torch.Tensor,
                           mask_BT: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.28) -> torch.Tensor:
    """Token-mean PPO clipped surrogate (scalar, differentiable in logp)."""
    ratio = torch.exp(logp_BT - old_logp_BT)
    per_tok = torch.maximum(-adv_BT * ratio, -adv_BT * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
    m = mask_BT.float()
    return (per_tok * m).sum() / m.sum().clamp_min(1.0)


def two_surrogate_loss(logp_BT, old_logp_BT, acc_adv_BT, tool_adv_BT, mask_BT, w_acc=1.0, w_tool=0.15,
                       clip_low=0.2, clip_high=0.28) -> torch.Tensor:
    return (w_acc * clipped_surrogate_loss(logp_BT, old_logp_BT, acc_adv_BT, mask_BT, clip_low, clip_high)
            + w_tool * clipped_surrogate_loss(logp_BT, old_logp_BT, tool_adv_BT, mask_BT, clip_low, clip_high))


def sum_of_advantages_loss(logp_BT, old_logp_BT, acc_adv_BT, tool_adv_BT, mask_BT, w_acc=1.0, w_tool=0.15,
                           clip_low=0.2, clip_high=0.28) -> torch.Tensor:
    return clipped_surrogate_loss(logp_BT, old_logp_BT, w_acc * acc_adv_BT + w_tool * tool_adv_BT, mask_BT,
                                  clip_low, clip_high)
