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
from typing import Any, Callable

import ray
import torch
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from verl.experimental.agent_loop.agent_loop import AgentLoopManager, AgentLoopWorker

from hyperseyes_verl.verl import verl_guard
from hyperseyes_verl.verl.config_reader import hyperseyes_config
from hyperseyes_verl.verl.paced_start import PacedStartMixin
from hyperseyes_verl.opd import (
    OPDConfig,
    TeacherStatus,
    check_teacher_outputs,
    eligible_from_info,
    placeholder_teacher_outputs,
)

logger = logging.getLogger(__name__)


class TeacherOutputInvalid(RuntimeError):
    """The teacher answered with outputs that cannot be distilled from (`problem`: TEACHER_OUTPUT_PROBLEMS)."""

    def __init__(self, problem: str, message: str):
        super().__init__(message)
        self.problem = problem


def _retryable(exc: BaseException) -> bool:
    # unusable outputs (wrong length / width, NaN) are deterministic for a sequence: a retry only wastes time
    return not isinstance(exc, TeacherOutputInvalid | AssertionError)


class GatedTeacherMixin:
    """Overrides AgentLoopWorker._compute_teacher_logprobs. Outcomes are written per row (`opd_teacher_status`,
    `opd_teacher_tokens`) and counted by the trainer's advantage step; a fault's kind is logged as a warning."""

    def _opd(self) -> OPDConfig:
        cfg = getattr(self, "_opd_config", None)
        if cfg is None:
            cfg = self._opd_config = hyperseyes_config(self.config).opd
        return cfg

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
                                        validate: bool, sample_kwargs: dict[str, Any] | None = None,
                                        **kwargs) -> None:
        # **kwargs: a private verl hook; arguments a newer verl adds (e.g. global_steps=) pass through to it
        if not self.distillation_enabled or validate:
            return
        cfg = self._opd()
        seq_len = len(prompt_ids) + len(response_ids)
        info = output.extra_fields.get("reward_extra_info")
        # no reward yet (colocated reward model scores later): query the teacher; the trainer's opd_mask gates
        # OPD off (hyperseyes.opd.enabled=false) = verl's plain distillation of every row: no placeholders then
        if cfg.enabled and cfg.gate_teacher_calls and info is not None and not eligible_from_info(info):
            self._mark(output, seq_len, TeacherStatus.SKIPPED)
            return
        parent = super()._compute_teacher_logprobs
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(cfg.teacher_max_attempts),
                wait=wait_exponential(multiplier=cfg.teacher_backoff_s, max=30.0),
                retry=retry_if_exception(_retryable), reraise=True,
            ):
                with attempt:
                    await asyncio.wait_for(parent(output, prompt_ids, response_ids, validate, sample_kwargs,
                                                  **kwargs), timeout=cfg.teacher_timeout_s)
                    check = check_teacher_outputs(output.extra_fields.get("teacher_ids"),
                                                  output.extra_fields.get("teacher_logprobs"), seq_len,
                                                  self._teacher_k())
                    if not check.ok:
                        raise TeacherOutputInvalid(check.problem, check.message)
        except Exception as e:  # noqa: BLE001 - every fault masks this sample (counted as failed), never raised
            kind = ("teacher_timeouts" if isinstance(e, asyncio.TimeoutError | TimeoutError) else
                    f"teacher_{e.problem}" if isinstance(e, TeacherOutputInvalid) else
                    "teacher_wrong_length" if isinstance(e, AssertionError) else  # verl's own length assert
                    "teacher_errors")
            logger.warning("OPD teacher failed (%s) for a %d-token sequence: %r; sample masked", kind, seq_len, e)
            self._mark(output, seq_len, TeacherStatus.FAILED)
            return
        output.extra_fields["opd_teacher_status"] = TeacherStatus.SCORED.value
        output.extra_fields["opd_teacher_tokens"] = seq_len


class OffLoopMultiModalMixin:
    """The V1 worker's end-of-episode multimodal inputs computed in a thread instead of on the event loop.

    verl's `AgentLoopWorkerTQ._agent_loop_postprocess` (and `_compute_score` with a reward loop) call the sync
    `_compute_multi_modal_inputs`, which runs every image of the trajectory through the processor: seconds and
    hundreds of MB for ~50 crops, during which no other episode of the worker advances. This override computes
    it first in the default executor for exactly the ids verl passes (prompt + response, unpadded), then lets
    verl's method run; `_compute_multi_modal_inputs` hands verl the result when the output and the ids match,
    and computes as verl does otherwise. Both overridden methods are pinned in verl_guard.
    """

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        outputs = output if isinstance(output, list) else [output]
        ready = self.__dict__.setdefault("_mm_ready", {})
        compute = super()._compute_multi_modal_inputs
        loop = asyncio.get_running_loop()
        try:
            for out in outputs:
                if self.processor is not None and out.multi_modal_data:
                    ids = _sequence_ids(out)
                    ready[id(out)] = (out, ids, await loop.run_in_executor(None, compute, out, ids))
            return await super()._agent_loop_postprocess(output, validate, **kwargs)
        finally:
            for out in outputs:
                ready.pop(id(out), None)

    def _compute_multi_modal_inputs(self, output, input_ids):
        entry = self.__dict__.get("_mm_ready", {}).get(id(output))
        if entry is not None and entry[0] is output and entry[1].shape == input_ids.shape \
                and torch.equal(entry[1], input_ids):
            return dict(entry[2])  # a fresh dict per call: verl pops keys (mm_token_type_ids) from it
        return super()._compute_multi_modal_inputs(output, input_ids)


def _sequence_ids(output):
    """The ids `AgentLoopWorkerTQ._agent_loop_postprocess` builds for `_compute_multi_modal_inputs`."""
    return torch.cat([torch.tensor(output.prompt_ids, dtype=torch.int64),
                      torch.tensor(output.response_ids, dtype=torch.int64)], dim=0)


class GatedAgentLoopWorker(GatedTeacherMixin, PacedStartMixin, AgentLoopWorker):
    """Legacy (non-TransferQueue) worker."""


class _GatedWorkersMixin:
    """`agent_loop_workers_class` is always the gated worker, whatever verl assigns and whenever it starts them.

    verl's managers have no public way to choose the worker class: AgentLoopManager keeps a preset attribute,
    AgentLoopManagerTQ overwrites it in __init__. A data descriptor wins over both assignments, so the order of
    construction and worker start-up does not matter; the sources this relies on are pinned in verl_guard.
    """

    _guard_parts: tuple[str, ...] = ("teacher_worker",)
    _build_worker: Callable[[], type]  # each manager names the worker class it starts

    def __init__(self, *args, **kwargs):
        for part in self._guard_parts:
            verl_guard.require(part)
        super().__init__(*args, **kwargs)

    @property
    def agent_loop_workers_class(self):
        remote = self.__dict__.get("_gated_remote")
        if remote is None:
            remote = self.__dict__["_gated_remote"] = ray.remote(self._build_worker())
        return remote

    @agent_loop_workers_class.setter
    def agent_loop_workers_class(self, value) -> None:
        pass  # verl's default (ungated) worker class: ignored


class GatedAgentLoopManager(_GatedWorkersMixin, AgentLoopManager):
    _build_worker = staticmethod(lambda: GatedAgentLoopWorker)


def gated_worker_tq_class() -> type:
    """A fresh V1 worker class (GatedTeacherMixin + the plain class behind verl's @ray.remote AgentLoopWorkerTQ).

    Built per call and never bound to a module attribute, so cloudpickle ships it to the worker by value. The
    same class importable by reference (a module-level subclass of `SomeActor.__ray_actor_class__`) fails to
    start in Ray with `super(type, obj): obj must be an instance or subtype of type` (verl's agent_loop_tq.py
    `super().__init__`); tests/test_teacher_worker_ray.py starts the real one in Ray.
    """
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ

    return type("GatedAgentLoopWorkerTQ",
                (GatedTeacherMixin, OffLoopMultiModalMixin, PacedStartMixin, AgentLoopWorkerTQ.__ray_actor_class__),
                {"__doc__": "V1 agent-loop worker that asks the teacher only for failed rollouts, computes the "
                            "multimodal inputs off the event loop and paces its episodes' starts."})


def _manager_tq_class() -> type:
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ

    class GatedAgentLoopManagerTQ(_GatedWorkersMixin, AgentLoopManagerTQ):
        _guard_parts = ("teacher_worker", "teacher_worker_tq")
        _build_worker = staticmethod(gated_worker_tq_class)

    GatedAgentLoopManagerTQ.__module__ = __name__
    GatedAgentLoopManagerTQ.__qualname__ = "GatedAgentLoopManagerTQ"
    return GatedAgentLoopManagerTQ


def __getattr__(name: str):
    # built lazily so this module imports without transfer_queue (the legacy trainer does not need it)
    if name == "GatedAgentLoopManagerTQ":
        globals()[name] = _manager_tq_class()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
