"""The HyperEyes advantage step, over the padded tensors verl's V1 trainer builds from TransferQueue.

Order (per training batch): (a) TRACE official group rule replaces each rollout's outcome reward,
(b) GRPO (verl's own function) or HDPO, (c) OPD shaping of failed rollouts' advantages. Kept apart from
trainer.py so it runs on plain DataProto objects in tests (no TransferQueue, no Ray).

Rows are trajectories keyed `{uid}_{session}_{index}`; an agent loop may emit several outputs per session,
whose reward is the final output's (verl copies it), so group statistics use the final row of each session
and are broadcast to the other rows of that session — as verl's `compute_advantage_for_multi_trajectories`.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hyperseyes_verl.contracts import GROUP_RULE_KEYS
from hyperseyes_verl.hdpo import HDPOConfig, hdpo_advantages
from hyperseyes_verl.opd import OPDConfig, TeacherStatus, eligible_mask, reverse_kl_shaped_advantages
from hyperseyes_verl.opd.teacher import teacher_rows_valid
from hyperseyes_verl.trace.config import check_trace_mode
from hyperseyes_verl.trace.metrics import trace_metrics
from hyperseyes_verl.trace.official import OfficialTraceConfig, score_groups


@dataclass
class AdvantageStepResult:
    advantages_BT: torch.Tensor
    returns_BT: torch.Tensor
    token_level_rewards_BT: torch.Tensor
    token_columns: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, T), response-aligned
    sample_columns: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, 1), one value per row
    metrics: dict[str, float] = field(default_factory=dict)


def unwrap_infos(extra_fields: Sequence) -> list[dict]:
    """TQ `extra_fields` entries (dicts, maybe NonTensorData-wrapped) -> their `reward_extra_info` dicts."""
    out = []
    for i, ef in enumerate(extra_fields):
        ef = getattr(ef, "data", ef)
        if not isinstance(ef, Mapping):
            raise ValueError(f"extra_fields[{i}] is {type(ef).__name__}, expected a dict from the agent loop")
        info = ef.get("reward_extra_info")
        out.append(dict(getattr(info, "data", info) or {}))
    return out


def teacher_status_metrics(extra_fields: Sequence) -> dict[str, float]:
    """Counts written per row by the gated teacher worker (`opd_teacher_status`, `opd_teacher_tokens`)."""
    status = defaultdict(int)
    tokens = 0
    for ef in extra_fields:
        ef = getattr(ef, "data", ef) or {}
        s = ef.get("opd_teacher_status")
        if s is not None:
            s = str(getattr(s, "value", s))  # the enum or its value
            status[s] += 1
            if s == TeacherStatus.SCORED.value:
                tokens += int(ef.get("opd_teacher_tokens", 0))
    if not status:
        return {}
    return {
        "opd/teacher_failures": float(status[TeacherStatus.FAILED.value]),
        "opd/teacher_skipped": float(status[TeacherStatus.SKIPPED.value]),
        "opd/teacher_scored": float(status[TeacherStatus.SCORED.value]),
        "opd/teacher_tokens_scored": float(tokens),
    }


def session_layout(batch_keys: Sequence[str]) -> tuple[list[int], np.ndarray]:
    """(final row of each session in first-seen order, per-row position of its session in that list)."""
    final: dict[str, tuple[int, int]] = {}
    row_session = []
    for row, key in enumerate(batch_keys):
        parts = key.rsplit("_", 2)
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(f"batch key {key!r} is not '{{uid}}_{{session}}_{{index}}' (verl V1 TQ key)")
        session, index = f"{parts[0]}_{parts[1]}", int(parts[2])
        row_session.append(session)
        if session not in final or final[session][0] < index:
            final[session] = (index, row)
    order = {s: i for i, s in enumerate(final)}
    return [row for _, row in final.values()], np.array([order[s] for s in row_session], dtype=np.int64)


# the fix to name when reward components are missing: only TraceRewardManager writes them
COMPONENTS_HINT = ("they are written by TraceRewardManager: set reward.reward_manager.source=importlib "
                   "reward.reward_manager.name=TraceRewardManager "
                   "reward.reward_manager.module.path=pkg://hyperseyes_verl.verl.reward_manager")


def component(infos: Sequence[Mapping], key: str, purpose: str, hint: str = COMPONENTS_HINT) -> np.ndarray:
    try:
        return np.array([float(i[key]) for i in infos], dtype=float)
    except KeyError:
        missing = [n for n, i in enumerate(infos) if key not in i][:5]
        raise ValueError(f"{purpose} needs reward_extra_info[{key!r}] (CONTRACTS §4); missing in rows {missing} "
                         f"(keys present: {sorted(infos[missing[0]]) if missing else []}); {hint}") from None


def last_token_index(response_mask_BT: torch.Tensor) -> torch.Tensor:
    """Index of the last model-generated token per row (where the outcome reward sits)."""
    T = response_mask_BT.shape[1]
    pos = torch.arange(T, device=response_mask_BT.device).expand_as(response_mask_BT)
    return torch.where(response_mask_BT.bool(), pos, torch.zeros_like(pos)).max(dim=1).values


def official_scores(uid_N: Sequence, infos: Sequence[Mapping], final_rows: list[int], row_to_session: np.ndarray,
                    cfg: OfficialTraceConfig) -> tuple[np.ndarray, dict[str, float]]:
    """Per-row official TRACE score (acc + group bonus, or -0.5 without an answer), computed per uid group
    over the final row of each session and broadcast to that session's rows."""
    hint = COMPONENTS_HINT + ", or score with your own reward manager under +hyperseyes.trace.mode=paper"
    comps = {k: component([infos[r] for r in final_rows], k, "TRACE official mode (the default)", hint)
             for k in GROUP_RULE_KEYS}
    results_S = score_groups([uid_N[r] for r in final_rows], **comps, cfg=cfg)
    score_S = np.array([r.score for r in results_S], dtype=float)
    # bonus = score - acc, so the -0.5 of rows without an answer counts in it
    metrics = {"trace/official_score_mean": float(score_S.mean()) if len(score_S) else 0.0,
               "trace/official_bonus_mean": float((score_S - comps["acc"]).mean()) if len(score_S) else 0.0}
    metrics.update(trace_metrics([infos[r] for r in final_rows], results_S))
    return score_S[row_to_session], metrics


def assemble_advantages(
    data,  # verl DataProto: token_level_rewards, token_level_scores, response_mask, (old_log_probs); uid
    batch_keys: Sequence[str],
    infos: Sequence[Mapping],
    *,
    adv_estimator: str,
    verl_advantage_fn: Callable,  # (data) -> data with advantages/returns (verl's own estimator)
    trace_mode: str = "paper",
    official_cfg: OfficialTraceConfig = OfficialTraceConfig(),
    hdpo_cfg: HDPOConfig = HDPOConfig(),
    opd_cfg: OPDConfig = OPDConfig(),
    distillation_enabled: bool = False,
    teacher_logp_BT: torch.Tensor | None = None,
    teacher_valid_B: torch.Tensor | None = None,
) -> AdvantageStepResult:
    batch = data.batch
    mask_BT = batch["response_mask"]
    B = mask_BT.shape[0]
    if len(infos) != B or len(batch_keys) != B:
        raise ValueError(f"advantage step: {B} rows but {len(infos)} reward infos and {len(batch_keys)} keys")
    uid_N = data.non_tensor_batch["uid"]
    final_rows, row_to_session = session_layout(batch_keys)
    metrics: dict[str, float] = {}

    # (a) TRACE official group rule
    if check_trace_mode(trace_mode) == "official":
        new_score_B, m = official_scores(uid_N, infos, final_rows, row_to_session, official_cfg)
        # only the outcome part changes (delta at the last generated token): a KL-in-reward penalty
        # already folded into token_level_rewards survives
        old_B = batch["token_level_scores"].sum(-1)
        delta_B = torch.as_tensor(new_score_B, dtype=old_B.dtype) - old_B
        tlr = batch["token_level_rewards"].clone()
        tlr[torch.arange(B), last_token_index(mask_BT)] += delta_B
        batch["token_level_rewards"] = tlr
        metrics.update(m)
    elif all("acc" in infos[r] for r in final_rows):  # TRACE components present (paper mode)
        metrics.update(trace_metrics([infos[r] for r in final_rows]))

    # (b) GRPO / any verl estimator, or HDPO
    extra: dict[str, torch.Tensor] = {}
    per_sample: dict[str, torch.Tensor] = {}
    if adv_estimator == "hdpo":
        fin = [infos[r] for r in final_rows]
        h = hdpo_advantages(
            index_N=[uid_N[r] for r in final_rows],
            answer_N=component(fin, "acc", "HDPO"),
            format_N=component(fin, "hdpo_format", "HDPO"),
            tool_count_N=component(fin, hdpo_cfg.tool_count, "HDPO"),
            cfg=hdpo_cfg,
        )
        metrics.update(h.metrics)
        per_row = h.combined_adv_N if hdpo_cfg.combine == "sum" else hdpo_cfg.w_acc * h.acc_adv_N
        advantages = torch.as_tensor(per_row[row_to_session], dtype=torch.float32)[:, None] * mask_BT.float()
        if hdpo_cfg.combine == "two_surrogate":
            extra["hdpo_tool_advantages"] = (torch.as_tensor(h.tool_adv_N[row_to_session], dtype=torch.float32)
                                             [:, None] * mask_BT.float())
        returns = advantages.clone()  # outcome advantages, as verl's GRPO returns them
    else:
        data = verl_advantage_fn(data)
        advantages = data.batch["advantages"]
        returns = data.batch["returns"]  # GAE's returns (advantages + values) are the critic's targets

    # (c) OPD on failed rollouts
    if distillation_enabled and opd_cfg.enabled:
        eligible_B = torch.as_tensor(eligible_mask(infos))
        valid_B = teacher_valid_B if teacher_valid_B is not None else torch.ones(B, dtype=torch.bool)
        per_sample["opd_mask"] = (eligible_B & valid_B.bool()).float()[:, None]
        metrics["opd/eligible_frac"] = float(eligible_B.float().mean())
        if opd_cfg.mode != "loss":  # None (not tied to a loss mode yet) = the official shaping
            if teacher_logp_BT is None or "old_log_probs" not in batch.keys():
                raise ValueError("OPD advantage mode needs old_log_probs and teacher log-probs in the batch "
                                 "(distillation.enabled=true and the teacher pool configured)")
            r = reverse_kl_shaped_advantages(advantages, batch["old_log_probs"], teacher_logp_BT, mask_BT,
                                             eligible_B, valid_B, beta=opd_cfg.beta)
            advantages = r.advantages_BT  # returns stay the task returns (only the policy term is shaped)
            metrics.update(r.metrics)
    return AdvantageStepResult(advantages, returns, batch["token_level_rewards"], extra, per_sample, metrics)


def teacher_response_logprobs(teacher_logprobs_rows: Sequence[torch.Tensor], teacher_ids_rows: Sequence[torch.Tensor],
                              prompt_lens: Sequence[int], response_mask_BT: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-sequence teacher outputs (S_i, K) -> response-aligned (B, T) log-probs and (B,) validity.

    verl's teacher rows follow the model-output layout: entry j is the log-prob of token j+1, so response
    token t of a row with prompt length P sits at entry P-1+t (the same shift `no_padding_2_padding` uses)."""
    B, T = response_mask_BT.shape
    logp = torch.zeros(B, T)
    ids = torch.zeros(B, T, dtype=torch.long)
    for i, (lp, tid, P) in enumerate(zip(teacher_logprobs_rows, teacher_ids_rows, prompt_lens, strict=True)):
        R = min(T, lp.shape[0] - int(P))
        lp2 = lp if lp.dim() == 2 else lp[:, None]
        tid2 = tid if tid.dim() == 2 else tid[:, None]
        logp[i, :R] = lp2[int(P) - 1:int(P) - 1 + R, 0].float()
        ids[i, :R] = tid2[int(P) - 1:int(P) - 1 + R, 0].long()
    return logp, teacher_rows_valid(ids, response_mask_BT)
