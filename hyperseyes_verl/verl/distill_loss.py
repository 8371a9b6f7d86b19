"""verl distillation loss modes for OPD on failed rollouts (PG-OPD form, and a no-op for advantage mode).

- `k1_failed_only` (also `k3_failed_only`, `low_var_kl_failed_only`): verl's single-sample reverse-KL
  estimator, zeroed on rows that must not be distilled. With `distillation.distillation_loss.
  use_policy_gradient=true` verl turns it into PG-OPD (advantage = -loss, clipped surrogate).
- `opd_in_advantage`: contributes 0; use it when `hyperseyes.opd.mode=advantage` (the official form, applied
  in the trainer's advantage step) so the teacher pool still runs but nothing is counted twice.

A row is distilled only when (1) the teacher scored it — the gated worker writes the sentinel −1 into
`teacher_ids` of skipped / failed rows — and (2) when the micro-batch carries `opd_mask` (written by the
hyperseyes_sync trainer from the reward components), that mask is 1. Gating reads the accuracy
components, not the total reward, so a TRACE bonus cannot flip it. Without the gated worker and without
the hyperseyes_sync trainer nothing marks successes: use at least one of them.

Caveat (verl's aggregation): zeroed rows still count in the token-mean denominator, so the effective
coefficient shrinks with the success rate.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict

from verl.trainer.distillation.losses import (
    DISTILLATION_LOSS_REGISTRY,
    DistillationLossSettings,
    register_distillation_loss,
)
from verl.trainer.ppo.core_algos import kl_penalty
from verl.workers.utils.padding import no_padding_2_padding

from hyperseyes_verl.verl import verl_guard

GATED_SUFFIX = "_failed_only"
GATED_LOSS_NAMES = ("k1_failed_only", "k3_failed_only", "low_var_kl_failed_only")
ADVANTAGE_MODE_LOSS_NAME = "opd_in_advantage"


def _padded(t: torch.Tensor, fill=0) -> torch.Tensor:
    return t.to_padded_tensor(fill) if t.is_nested else t


def opd_row_mask(data: TensorDict) -> torch.Tensor:
    """(B,) bool: rows the distillation term may touch (teacher scored them and, if present, opd_mask = 1)."""
    # imported here, not at module level: every agent-loop process imports verl's distillation package (and so
    # this module), most of them for jobs without OPD
    from hyperseyes_verl.opd.teacher import teacher_rows_valid

    response_mask = _padded(data["response_mask"], 0).bool()
    teacher_ids = no_padding_2_padding(data["teacher_ids"], data)
    rows = teacher_rows_valid(teacher_ids, response_mask)
    if "opd_mask" in data.keys():
        opd = _padded(data["opd_mask"], 0.0).reshape(rows.shape[0], -1)[:, 0]
        rows = rows & (opd > 0)
    return rows


def gated_reverse_kl_loss(config, distillation_config, model_output: dict, data: TensorDict):
    """(B, T) per-token losses (zero on masked rows) and metrics; signature of verl's DistillationLossFn."""
    verl_guard.require("distill_loss")  # cached after the first call
    loss_mode = distillation_config.distillation_loss.loss_mode
    estimator = loss_mode[: -len(GATED_SUFFIX)] if loss_mode.endswith(GATED_SUFFIX) else "k1"
    student = no_padding_2_padding(model_output["log_probs"], data)
    teacher = no_padding_2_padding(data["teacher_logprobs"], data)
    teacher = teacher[..., 0] if teacher.dim() == 3 else teacher
    rows = opd_row_mask(data)
    losses = kl_penalty(logprob=student, ref_logprob=teacher, kl_penalty=estimator) * rows[:, None].to(student.dtype)
    response_mask = _padded(data["response_mask"], 0).bool()
    on = response_mask & rows[:, None]
    metrics = {
        "opd/loss_rows_frac": float(rows.float().mean()),
        "opd/reverse_kl_mean": float((student - teacher)[on].mean()) if on.any() else 0.0,
    }
    return losses, metrics


def zero_distillation_loss(config, distillation_config, model_output: dict, data: TensorDict):
    """Advantage-mode placeholder: the OPD term already lives in the advantages."""
    verl_guard.require("distill_loss")
    student = no_padding_2_padding(model_output["log_probs"], data)
    return torch.zeros_like(student), {}


def register() -> None:
    """Idempotent: verl raises on duplicate names, so only missing names are registered."""
    missing = [n for n in GATED_LOSS_NAMES if n not in DISTILLATION_LOSS_REGISTRY]
    if missing:
        register_distillation_loss(DistillationLossSettings(names=missing, use_estimator=True))(gated_reverse_kl_loss)
    if ADVANTAGE_MODE_LOSS_NAME not in DISTILLATION_LOSS_REGISTRY:
        register_distillation_loss(DistillationLossSettings(names=[ADVANTAGE_MODE_LOSS_NAME], use_estimator=True))(
            zero_distillation_loss)


register()
