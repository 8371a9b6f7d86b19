"""HyperEyesTrainer: verl's V1 synchronous PPO trainer plus the HyperEyes advantage step and TRACE hooks.

Select it with `trainer.v1.trainer_mode=hyperseyes_sync` (registered when the `verl.plugins` entry point
imports this module). Inside, the mode is reset to "sync": verl compares that literal in several places
(replay buffer class, trainer.v1.<mode> sub-config).

What it adds (advantage step in `_compute_advantage`, math in advantage_step.py and the pure cores):
  (a) `hyperseyes.trace.mode=official`: the released TRACE group rule replaces each rollout's reward;
  (b) `algorithm.adv_estimator=hdpo`: HDPO decoupled advantages (`hyperseyes.hdpo.*`), else verl's estimator;
  (c) `distillation.enabled=true`: OPD on failed rollouts (`hyperseyes.opd.*`), official advantage shaping
      or verl's PG-OPD via the `k1_failed_only` loss mode; an `opd_mask` column is written for the loss.
Epoch ends: `hyperseyes_verl.verl.trace_state.on_epoch_end` (reference tightening); init/resume: `restore`.

The plugin imports this module in every process that loads `verl.trainer.ppo.v1`, to register the name. So at
module level it imports only verl modules that package has already loaded; the HyperEyes cores (judge, TRACE,
OPD, HDPO) are imported when a trainer is built or a function is called, i.e. only by jobs that select them.
`tests/test_verl_good_citizen.py` checks which modules an unrelated job gets.
"""
from __future__ import annotations

import logging
from functools import partial

import numpy as np
import transfer_queue as tq
from omegaconf import OmegaConf, open_dict
from tensordict import TensorDict
from transfer_queue import KVBatchMeta

from verl.protocol import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.core_algos import get_policy_loss_fn, register_adv_est
from verl.trainer.ppo.ray_trainer import apply_kl_penalty
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories
from verl.utils.metric import Metric
from verl.workers.utils.padding import no_padding_2_padding, response_to_nested

from hyperseyes_verl.verl import verl_guard

logger = logging.getLogger(__name__)

TRAINER_NAME = "hyperseyes_sync"
HDPO_ESTIMATOR = "hdpo"
BASE_FIELDS = ["uid", "response_mask", "rm_scores", "rollout_log_probs", "old_log_probs", "ref_log_prob", "values"]


def _hdpo_outside_trainer(**kwargs):
    raise ValueError("algorithm.adv_estimator=hdpo needs per-sample reward components, which verl's estimator "
                     f"interface does not pass: set trainer.v1.trainer_mode={TRAINER_NAME} (HyperEyesTrainer)")


def resolve_opd_config(config, opd=None):
    """`hyperseyes.opd` (an OPDConfig; `opd` when given, else read with the rest of the tree) with its mode tied
    to verl's distillation loss mode.

    The official advantage shaping and a gated PG-OPD loss must not both run (the term would count twice), and
    a plain verl loss mode (k1, k3, ...) would distil successful rollouts too: both are refused here.
    """
    from hyperseyes_verl.verl.config_reader import hyperseyes_config
    from hyperseyes_verl.verl.distill_loss import ADVANTAGE_MODE_LOSS_NAME, GATED_LOSS_NAMES

    opd = opd if opd is not None else hyperseyes_config(config).opd
    if not OmegaConf.select(config, "distillation.enabled", default=False) or not opd.enabled:
        return opd
    loss_mode = str(OmegaConf.select(config, "distillation.distillation_loss.loss_mode", default=""))
    inferred = ("advantage" if loss_mode == ADVANTAGE_MODE_LOSS_NAME
                else "loss" if loss_mode in GATED_LOSS_NAMES else None)
    if inferred is None:
        raise ValueError(
            f"distillation.distillation_loss.loss_mode={loss_mode!r} would distil every rollout; HyperEyes OPD "
            f"distils failed rollouts only: use {ADVANTAGE_MODE_LOSS_NAME!r} (official advantage shaping) or one "
            f"of {list(GATED_LOSS_NAMES)} (PG-OPD), or set +hyperseyes.opd.enabled=false")
    if opd.mode is not None and opd.mode != inferred:
        raise ValueError(
            f"hyperseyes.opd.mode={opd.mode!r} contradicts distillation.distillation_loss.loss_mode={loss_mode!r} "
            f"(which means mode {inferred!r}): drop hyperseyes.opd.mode or make them agree")
    loss = "distillation.distillation_loss"
    if inferred == "advantage" and not OmegaConf.select(config, f"{loss}.use_task_rewards", default=True):
        # verl then drops the policy loss (losses.distillation_ppo_loss), where the shaped advantages live
        raise ValueError(f"{loss}.loss_mode={ADVANTAGE_MODE_LOSS_NAME!r} puts OPD into the advantages, which only "
                         f"the task policy loss uses, but {loss}.use_task_rewards=false drops that loss: set "
                         f"use_task_rewards=true, or use k1_failed_only for distillation without task rewards")
    if loss_mode == "k1_failed_only" and not OmegaConf.select(config, f"{loss}.use_policy_gradient", default=True):
        # same reason verl refuses plain k1 without policy gradient
        raise ValueError(f"{loss}.loss_mode='k1_failed_only' with use_policy_gradient=false back-propagates k1, "
                         "whose gradient does not depend on the teacher: set use_policy_gradient=true or use "
                         "k3_failed_only / low_var_kl_failed_only")
    return opd.model_copy(update={"mode": inferred})


if core_algos.ADV_ESTIMATOR_REGISTRY.get(HDPO_ESTIMATOR) is None:  # registered so the config validates
    register_adv_est(HDPO_ESTIMATOR)(_hdpo_outside_trainer)


def rollout_actor_logprob_gap(batch) -> dict[str, float]:
    """Mean / max |log π_rollout − log π_actor| over response tokens: ~0 when the weight sync and both engines
    agree (verl's own `training/rollout_probs_diff_*` compares probabilities, which hides rare tokens)."""
    if "rollout_log_probs" not in batch.keys() or "old_log_probs" not in batch.keys():
        return {}
    mask = batch["response_mask"].bool()
    gap = (batch["rollout_log_probs"] - batch["old_log_probs"]).abs()[mask]
    if gap.numel() == 0:
        return {}
    return {"hyperseyes/rollout_logprob_gap_mean": float(gap.mean()),
            "hyperseyes/rollout_logprob_gap_max": float(gap.max())}


class HDPOTwoSurrogateLoss:
    """Actor loss for `hyperseyes.hdpo.combine=two_surrogate`: verl's loss on `advantages` (= w_acc*A_acc,
    plus the OPD term) + w_tool * the same policy surrogate on the `hdpo_tool_advantages` column.

    The clipped surrogate is positively homogeneous in A, so L(w_acc*A_acc) = w_acc*L(A_acc): the sum is
    exactly Metis' w_acc*L(A_acc) + w_tool*L(A_tool); entropy / KL / distillation terms are counted once."""

    def __init__(self, base_loss_fn, actor_config, w_tool: float):
        self.base_loss_fn, self.actor_config, self.w_tool = base_loss_fn, actor_config, float(w_tool)

    def __call__(self, model_output=None, data: TensorDict = None, dp_group=None, **kwargs):
        if kwargs.get("student_logits") is not None:
            # verl's engine also calls the loss fn as the top-k distillation logits processor: not a policy loss
            return self.base_loss_fn(model_output=model_output, data=data, dp_group=dp_group, **kwargs)
        loss, metrics = self.base_loss_fn(model_output=model_output, data=data, dp_group=dp_group, **kwargs)
        if "hdpo_tool_advantages" not in data.keys():
            raise ValueError("combine=two_surrogate needs the hdpo_tool_advantages column written by "
                             f"{TRAINER_NAME}'s advantage step")
        cfg = self.actor_config
        fields = ["response_mask", "old_log_probs", "hdpo_tool_advantages"]
        if "rollout_is_weights" in data.keys():
            fields.append("rollout_is_weights")
        d = data.select(*fields).to_padded_tensor()
        policy_loss_fn = get_policy_loss_fn(cfg.policy_loss.get("loss_mode", "vanilla"))
        tool_loss, _ = policy_loss_fn(
            old_log_prob=d["old_log_probs"], log_prob=no_padding_2_padding(model_output["log_probs"], data),
            advantages=d["hdpo_tool_advantages"], response_mask=d["response_mask"].bool(),
            loss_agg_mode=cfg.loss_agg_mode, config=cfg, rollout_is_weights=d.get("rollout_is_weights", None))
        pg = metrics.get("actor/pg_loss")  # same aggregation as verl's own pg loss metric
        metrics["hdpo/tool_pg_loss"] = (Metric(value=tool_loss.detach(), aggregation=pg.aggregation)
                                        if isinstance(pg, Metric) else float(tool_loss.detach()))
        return loss + self.w_tool * tool_loss, metrics


class HyperEyesTrainer(PPOTrainerSync):
    def __init__(self, config):
        from hyperseyes_verl.verl.config_reader import hyperseyes_config
        from hyperseyes_verl.verl.trace_state import SELECTED_TRAINER_KEY

        verl_guard.require("trainer")  # before verl builds anything: a wrong verl fails here, at start-up
        with open_dict(config):
            # the reward manager reads this to know TRACE official mode has its trainer (trace_state)
            OmegaConf.update(config, SELECTED_TRAINER_KEY, TRAINER_NAME, force_add=True)
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)
        settings = hyperseyes_config(config)  # the reader the reward manager uses too: both agree on the mode
        self.opd_config = resolve_opd_config(config, settings.opd)
        self.trace_config = settings.trace  # the whole section: the group bonus needs `official.*`
        self.trace_mode = self.trace_config.mode
        self.hdpo_config = settings.hdpo

    # ------------------------------------------------------------------ hooks
    def on_init_end(self):
        super().on_init_end()
        from hyperseyes_verl.verl import trace_state

        self._pending_sync_metrics = {**(getattr(self, "_pending_sync_metrics", None) or {}),
                                      **trace_state.restore(self.config, self.global_steps)}
        if self.config.algorithm.adv_estimator == HDPO_ESTIMATOR and self.hdpo_config.combine == "two_surrogate":
            self._install_two_surrogate_loss()

    def on_step_end(self):
        super().on_step_end()
        if self.steps_per_epoch > 0 and self.global_steps % self.steps_per_epoch == 0:
            from hyperseyes_verl.verl import trace_state

            epoch = self.global_steps // self.steps_per_epoch - 1  # 0-based: the epoch that just ended
            metrics = trace_state.on_epoch_end(self.config, epoch, global_step=self.global_steps)
            # merged into this step's logged metrics by fit() (_consume_sync_metrics)
            self._pending_sync_metrics = {**(getattr(self, "_pending_sync_metrics", None) or {}), **metrics}

    def _save_checkpoint(self):
        super()._save_checkpoint()
        from hyperseyes_verl.verl import trace_state

        # with every verl checkpoint, so a mid-epoch resume keeps this epoch's observations
        trace_state.save(self.config, self.global_steps)

    def _install_two_surrogate_loss(self):
        from verl.trainer.distillation import distillation_ppo_loss, is_distillation_enabled
        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.utils.losses import ppo_loss

        actor_config = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
        if is_distillation_enabled(self.config.get("distillation")):
            base = partial(distillation_ppo_loss, config=actor_config,
                           distillation_config=omega_conf_to_dataclass(self.config.distillation))
        else:
            base = partial(ppo_loss, config=actor_config)
        self.actor_rollout_wg.set_loss_fn(HDPOTwoSurrogateLoss(base, actor_config, self.hdpo_config.w_tool))

    # ------------------------------------------------------------------ advantage step
    def _distillation_enabled(self) -> bool:
        return bool(OmegaConf.select(self.config, "distillation.enabled", default=False))

    def _advantage_settings(self) -> dict:
        """The `hyperseyes.*` settings the advantage step reads, all from this trainer's config."""
        return {"trace_mode": self.trace_mode, "official_cfg": self.trace_config.official,
                "hdpo_cfg": self.hdpo_config, "opd_cfg": self.opd_config}

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """Mirror of verl's PPOTrainer._compute_advantage (0.9.1) with the HyperEyes steps (a)-(c).

        There is no public advantage hook in verl's V1 trainer; verl_guard pins the source this mirrors, so a
        verl whose method changed is refused at construction and tests/test_verl_guard.py fails.
        """
        from hyperseyes_verl.verl.advantage_step import (
            assemble_advantages,
            teacher_response_logprobs,
            teacher_status_metrics,
            unwrap_infos,
        )

        raw = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                              select_fields=BASE_FIELDS + ["extra_fields"])
        response_mask = raw["response_mask"]
        extra_fields = list(raw.pop("extra_fields").tolist())
        infos = unwrap_infos(extra_fields)
        data = DataProto(batch=raw.to_padded_tensor())
        data.batch["token_level_scores"] = data.batch["rm_scores"]
        data.non_tensor_batch["uid"] = np.array(data.batch.pop("uid").tolist(), dtype=object)

        metrics.update(rollout_actor_logprob_gap(data.batch))
        algo = self.config.algorithm
        if algo.use_kl_in_reward:
            data, kl_metrics = apply_kl_penalty(data, kl_ctrl=self.kl_ctrl_in_reward, kl_penalty=algo.kl_penalty)
            metrics.update(kl_metrics)
        else:
            data.batch["token_level_rewards"] = data.batch["token_level_scores"]

        rollout_corr_config = algo.get("rollout_correction", None)
        bypass = rollout_corr_config and rollout_corr_config.get("bypass_mode", False)
        rollout_correction = rollout_corr_config is not None and "rollout_log_probs" in data.batch and not bypass
        if rollout_correction:
            data, is_metrics = compute_rollout_correction_and_add_to_batch(data, rollout_corr_config)
            metrics.update(is_metrics)

        distill = self._distillation_enabled() and self.opd_config.enabled
        teacher_logp = teacher_valid = None
        if distill:
            t = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                                select_fields=["teacher_logprobs", "teacher_ids", "prompts"])
            teacher_logp, teacher_valid = teacher_response_logprobs(
                t["teacher_logprobs"].unbind(), t["teacher_ids"].unbind(), t["prompts"].offsets().diff().tolist(),
                data.batch["response_mask"])
            metrics.update(teacher_status_metrics(extra_fields))
            metrics["opd/teacher_valid_frac"] = float(teacher_valid.float().mean())

        result = assemble_advantages(
            data, batch.keys, infos,
            adv_estimator=str(algo.adv_estimator),
            verl_advantage_fn=lambda d: compute_advantage_for_multi_trajectories(
                d, batch_keys=batch.keys, adv_estimator=algo.adv_estimator, gamma=algo.gamma, lam=algo.lam,
                num_repeat=self.config.actor_rollout_ref.rollout.n,
                norm_adv_by_std_in_grpo=algo.get("norm_adv_by_std_in_grpo", True), config=algo),
            **self._advantage_settings(), distillation_enabled=distill,
            teacher_logp_BT=teacher_logp, teacher_valid_B=teacher_valid)
        metrics.update(result.metrics)

        out = {"advantages": result.advantages_BT, "returns": result.returns_BT}
        if algo.use_kl_in_reward or self.trace_mode == "official":
            out["token_level_rewards"] = result.token_level_rewards_BT
        if rollout_correction:
            out["response_mask"] = data.batch["response_mask"]
            if "rollout_is_weights" in data.batch:
                out["rollout_is_weights"] = data.batch["rollout_is_weights"]
        out.update(result.token_columns)
        nested = {k: response_to_nested(v, response_mask) for k, v in out.items()}
        nested.update(result.sample_columns)
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                               fields=TensorDict(nested, batch_size=len(batch)))


if TRAINER_REGISTRY.get(TRAINER_NAME) is None:
    register_trainer(TRAINER_NAME)(HyperEyesTrainer)
