"""Agent-loop workers that ask verl's teacher pool only for failed rollouts, with bounded retries.

verl calls `_compute_teacher_logprobs` right after the streaming reward, so `extra_fields
["reward_extra_info"]` (CONTRACTS §4) is known: successes (opd_eligible = 0) get sentinel placeholders
instead of a teacher prefill. A teacher timeout, error or length mismatch never falls back to the
student's own log-probs (the official code's silent zero signal): the row gets the sentinel, is masked
downstream, and is counted (`opd_teacher_status` per row -> `opd/teacher_failures` in the trainer).

Select with `+actor_rollout_ref.rollout.agent.agent_loop_manager_class=
hyperseyes_verl.verl.teacher_worker.GatedAgentLoopManagerTQ` (V1 trainer, default) or
`...GatedAgentLoopManager` (legacy trainer).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from omegaconf import OmegaConf
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from verl.experimental.agent_loop.agent_loop import AgentLoopManager, AgentLoopWorker

from hyperseyes_verl.opd import OPDConfig, TeacherStatus, eligible_from_info, placeholder_teacher_outputs

logger = logging.getLogger(__name__)


class TeacherLengthMismatch(RuntimeError):
    """The teacher returned a number of positions different from the sequence it was given."""


def _retryable(exc: BaseException) -> bool:
    # a length mismatch is deterministic for a given sequence: retrying would only waste teacher time
    return not isinstance(exc, TeacherLengthMismatch | AssertionError)


class GatedTeacherMixin:
    """Overrides AgentLoopWorker._compute_teacher_logprobs; counters are per worker instance."""

    def _opd(self) -> OPDConfig:
        cfg = getattr(self, "_opd_config", None)
        if cfg is None:
            section = OmegaConf.select(self.config, "hyperseyes.opd", default=None)
            cfg = self._opd_config = OPDConfig.from_mapping(section)
        return cfg

    def opd_counters(self) -> dict[str, int]:
        if not hasattr(self, "_opd_counts"):
            self._opd_counts = {"teacher_calls": 0, "teacher_skips": 0, "teacher_failures": 0,
                                "teacher_tokens_scored": 0, "teacher_timeouts": 0, "teacher_errors": 0,
                                "teacher_length_mismatches": 0}
        return self._opd_counts

    def _teacher_k(self) -> int:
        loss_cfg = self.teacher_server_manager.distillation_loss_config
        return int(loss_cfg.topk) if loss_cfg.loss_settings.use_topk else 1

    def _mark(self, output, seq_len: int, status: TeacherStatus) -> None:
        ids, logprobs = placeholder_teacher_outputs(seq_len, self._teacher_k())
        output.extra_fields["teacher_ids"] = ids
        output.extra_fields["teacher_logprobs"] = logprobs
        output.extra_fields["opd_teacher_status"] = status.value
        output.extra_fields["opd_teacher_tokens"] = 0

    async def _compute_teacher_logprobs(self, output, prompt_ids: list[int], response_ids: list[int],
                                        validate: bool, sample_kwargs: dict[str, Any] | None = None) -> None:
        if not self.distillation_enabled or validate:
            return
        cfg, counts = self._opd(), self.opd_counters()
        seq_len = len(prompt_ids) + len(response_ids)
        info = output.extra_fields.get("reward_extra_info")
        # no reward yet (colocated reward model scores later): query the teacher; the trainer's opd_mask gates
        # OPD off (hyperseyes.opd.enabled=false) = verl's plain distillation of every row: no placeholders then
        if cfg.enabled and cfg.gate_teacher_calls and info is not None and not eligible_from_info(info):
            counts["teacher_skips"] += 1
            self._mark(output, seq_len, TeacherStatus.SKIPPED)
            return
        counts["teacher_calls"] += 1
        parent = super()._compute_teacher_logprobs
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(cfg.teacher_max_attempts),
                wait=wait_exponential(multiplier=cfg.teacher_retry_backoff_s, max=30.0),
                retry=retry_if_exception(_retryable), reraise=True,
            ):
                with attempt:
                    await asyncio.wait_for(parent(output, prompt_ids, response_ids, validate, sample_kwargs),
                                           timeout=cfg.teacher_timeout_s)
                    got = [int(output.extra_fields[k].shape[0]) for k in ("teacher_ids", "teacher_logprobs")]
                    if got != [seq_len, seq_len]:
                        raise TeacherLengthMismatch(f"teacher returned {got} positions for a {seq_len}-token sequence")
        except Exception as e:  # noqa: BLE001 - every fault masks this sample and is counted, never raised
            kind = ("teacher_timeouts" if isinstance(e, asyncio.TimeoutError | TimeoutError) else
                    "teacher_length_mismatches" if isinstance(e, TeacherLengthMismatch | AssertionError) else
                    "teacher_errors")
            counts[kind] += 1
            counts["teacher_failures"] += 1
            logger.warning("OPD teacher failed (%s) for a %d-token sequence: %r; sample masked", kind, seq_len, e)
            self._mark(output, seq_len, TeacherStatus.FAILED)
            return
        counts["teacher_tokens_scored"] += seq_len
        output.extra_fields["opd_teacher_status"] = TeacherStatus.SCORED.value
        output.extra_fields["opd_teacher_tokens"] = seq_len


class GatedAgentLoopWorker(GatedTeacherMixin, AgentLoopWorker):
    """Legacy (non-TransferQueue) worker."""


class GatedAgentLoopManager(AgentLoopManager):
    def __init__(self, *args, **kwargs):
        self.agent_loop_workers_class = ray.remote(GatedAgentLoopWorker)  # base keeps a preset class
        super().__init__(*args, **kwargs)


def _tq_classes():
    """TransferQueue-backed classes; built lazily so this module imports without transfer_queue."""
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ

    class GatedAgentLoopWorkerTQ(GatedTeacherMixin, AgentLoopWorkerTQ.__ray_actor_class__):
        """V1 worker (the plain class behind verl's @ray.remote AgentLoopWorkerTQ)."""

    class GatedAgentLoopManagerTQ(AgentLoopManagerTQ):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.agent_loop_workers_class = ray.remote(GatedAgentLoopWorkerTQ)  # TQ base sets it unconditionally

    GatedAgentLoopWorkerTQ.__module__ = GatedAgentLoopManagerTQ.__module__ = __name__
    GatedAgentLoopWorkerTQ.__qualname__, GatedAgentLoopManagerTQ.__qualname__ = (
        "GatedAgentLoopWorkerTQ", "GatedAgentLoopManagerTQ")
    return GatedAgentLoopWorkerTQ, GatedAgentLoopManagerTQ


def __getattr__(name: str):
    if name in ("GatedAgentLoopWorkerTQ", "GatedAgentLoopManagerTQ"):
        worker, manager = _tq_classes()
        globals().update(GatedAgentLoopWorkerTQ=worker, GatedAgentLoopManagerTQ=manager)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
