"""Which verl the adapters were written against, checked when a HyperEyes part is built.

The adapters call verl methods that are new in 0.9.1 (`ct_merge_context_msg` replaced
`ct_merge_non_assistant_msg`) and override or mirror a few private ones. On another verl they import and register
fine and then fail deep inside a run (the first tool observation, the first advantage step). So each adapter
calls `require(part)` when it is constructed: verl must be `SUPPORTED_VERL`, the callables its part uses must
exist, and the private methods it overrides must still have the 0.9.1 source it was written against
(`PINNED_SOURCES`, sha256 of `inspect.getsource`). A failure is one line naming what differs and the fix.

`HYPERSEYES_SKIP_VERL_VERSION_CHECK=1` accepts another version string (verl's development branch); missing
callables and changed private methods still fail, since those would break the run anyway.

The plugin runs `check(part)` when verl's registry package loads and logs the same line at ERROR; it cannot
stop the process there (verl swallows plugin exceptions, and a process that never selects a HyperEyes part
must keep working), so the hard stop is the constructor: the trainer, the reward manager and the agent-loop
managers at start-up, the agent loop before its first generation.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import os

SUPPORTED_VERL = "0.9.1"
SKIP_ENV = "HYPERSEYES_SKIP_VERL_VERSION_CHECK"

_AL = "verl.experimental.agent_loop.agent_loop"
_TQ = "verl.trainer.ppo.v1.agent_loop_tq"
_TB = "verl.trainer.ppo.v1.trainer_base"
_CT = "verl.utils.tokenizer.continuous_token"

# part -> verl callables it uses ("module:qualname")
REQUIRED: dict[str, tuple[str, ...]] = {
    "agent_loop": (
        f"{_AL}:AgentLoopBase.ct_build_initial_tokens", f"{_AL}:AgentLoopBase.ct_merge_assistant_token",
        f"{_AL}:AgentLoopBase.ct_merge_context_msg", f"{_AL}:AgentLoopBase.process_multi_modal_info",
        f"{_AL}:AgentLoopBase._assert_mm_supported", f"{_AL}:AgentLoopBase._get_mm_processor_kwargs",
        f"{_AL}:_agent_loop_registry", "verl.utils.tokenizer:get_processor_token_id",
        f"{_CT}:VLContinuousTokenMixin.render_tokens_with_mm", f"{_CT}:VLContinuousTokenMixin._render_tokens",
    ),
    "teacher_worker": (
        f"{_AL}:AgentLoopWorker._compute_teacher_logprobs", f"{_AL}:AgentLoopManager.__init__",
        f"{_AL}:AgentLoopManager._init_agent_loop_workers",
    ),
    "teacher_worker_tq": (
        f"{_TQ}:AgentLoopManagerTQ.__init__", f"{_TQ}:AgentLoopWorkerTQ._agent_loop_postprocess",
        f"{_AL}:AgentLoopWorker._compute_multi_modal_inputs",
    ),
    "trainer": (
        f"{_TB}:PPOTrainer._compute_advantage", f"{_TB}:PPOTrainer._save_checkpoint",
        f"{_TB}:PPOTrainer._consume_sync_metrics", f"{_TB}:register_trainer",
        "verl.trainer.ppo.v1.utils:compute_advantage_for_multi_trajectories",
    ),
    "reward_manager": ("verl.experimental.reward_loop.reward_manager.base:RewardManagerBase.__init__",),
    "distill_loss": ("verl.trainer.distillation.losses:register_distillation_loss",
                     "verl.trainer.ppo.core_algos:kl_penalty"),
}

# Private verl methods we override, mirror or rely on the order of, with the sha256[:16] of their verl 0.9.1
# source. tests/test_verl_guard.py fails when the installed verl differs; re-read the method, adapt the
# override, then record the new hash.
PINNED_SOURCES: dict[str, str] = {
    # image_pads.install replaces the render per builder with a mirror of it (size-based image-pad counts); the
    # prompt and merge renders reach it through `_render_tokens` / `build_initial_tokens`
    f"{_CT}:VLContinuousTokenMixin.render_tokens_with_mm": "38e33aacd81eea6e",
    f"{_CT}:VLContinuousTokenMixin._render_tokens": "4282d2d334619768",
    # GatedTeacherMixin overrides it and calls it (teacher_worker.py)
    f"{_AL}:AgentLoopWorker._compute_teacher_logprobs": "9644b90ae461658c",
    # the gated managers replace `agent_loop_workers_class`, read when the workers are started
    f"{_AL}:AgentLoopManager.__init__": "f121655cb484a19c",
    f"{_AL}:AgentLoopManager._init_agent_loop_workers": "7c577f83ba5d9f44",
    f"{_TQ}:AgentLoopManagerTQ.__init__": "9f1e99d66170d332",
    # OffLoopMultiModalMixin overrides both: it precomputes the multimodal inputs for the ids the first builds
    f"{_TQ}:AgentLoopWorkerTQ._agent_loop_postprocess": "523edacbff73640d",
    f"{_AL}:AgentLoopWorker._compute_multi_modal_inputs": "c1bf0d04b7399d10",
    # HyperEyesTrainer._compute_advantage is a mirror of it with the HyperEyes steps (trainer.py)
    f"{_TB}:PPOTrainer._compute_advantage": "2a4a2aa4a475b228",
    # HyperEyesTrainer extends it (TRACE snapshot) and feeds `_pending_sync_metrics` to the other
    f"{_TB}:PPOTrainer._save_checkpoint": "8c2435b577e54f19",
    f"{_TB}:PPOTrainer._consume_sync_metrics": "ecc81e2d5836a38d",
}


# Call sites we depend on without overriding them: checked by the tests only (a change there need not break a
# run: the teacher override takes extra keyword arguments), so a new verl gets re-read, not refused.
WATCHED_SOURCES: dict[str, str] = {
    # both call `_compute_teacher_logprobs` after the streaming reward, which the OPD gate reads
    f"{_AL}:AgentLoopWorker._agent_loop_postprocess": "0673c29ea3dbbbec",
    f"{_TQ}:AgentLoopWorkerTQ._agent_loop_postprocess": "523edacbff73640d",
    # they render through `self.loop.run_in_executor`, which our agent loop paces (GatedLoop); another call would
    # only lose the pacing
    f"{_AL}:AgentLoopBase.ct_build_initial_tokens": "cc0ef93a0db8638f",
    f"{_AL}:AgentLoopBase.ct_merge_context_msg": "c53f0db3904b00a8",
    f"{_AL}:AgentLoopBase.ct_merge_assistant_token": "d8cbb98f7358747f",
}


class VerlVersionError(RuntimeError):
    """The installed verl is not the one the HyperEyes adapters were written against."""


def source_hash(obj) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def resolve(ref: str):
    """`module:qualname` -> the object, or None when the module or an attribute is missing."""
    module, _, qualname = ref.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError:
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def verdict(part: str, version: str, missing: list[str], changed: list[str], skip_version: bool) -> str | None:
    """The one-line error for these facts, or None when the part can run. Pure."""
    problems = []
    if version != SUPPORTED_VERL and not skip_version:
        problems.append(f"found verl {version}")
    if missing:
        problems.append("missing " + ", ".join(missing))
    if changed:
        problems.append("changed since 0.9.1 (overridden here) " + ", ".join(changed))
    if not problems:
        return None
    fix = f"install it with `pip install verl=={SUPPORTED_VERL}`"
    if version != SUPPORTED_VERL and not missing and not changed:
        fix += f", or set {SKIP_ENV}=1 to run on verl {version} anyway"
    return f"hyperseyes-verl ({part}) needs verl=={SUPPORTED_VERL}: {'; '.join(problems)}; {fix}"


def _short(ref: str) -> str:
    return ref.partition(":")[2]


def check(part: str) -> str | None:
    """Inspect the installed verl for `part` (a key of REQUIRED); the error line, or None."""
    import verl

    missing, changed = [], []
    for ref in REQUIRED[part]:
        obj = resolve(ref)
        if obj is None:
            missing.append(_short(ref))
            continue
        pinned = PINNED_SOURCES.get(ref)
        if pinned is not None:
            try:
                current = source_hash(obj)
            except (OSError, TypeError):  # no source shipped: nothing to compare, the version check still applies
                continue
            if current != pinned:
                changed.append(_short(ref))
    skip = os.getenv(SKIP_ENV, "").strip().lower() in ("1", "true", "yes")
    return verdict(part, str(getattr(verl, "__version__", "unknown")), missing, changed, skip)


_OK: set[str] = set()


def require(part: str) -> None:
    """Raise VerlVersionError (one line) unless the installed verl supports `part`; cached once it does."""
    if part in _OK:
        return
    line = check(part)
    if line is not None:
        raise VerlVersionError(line)
    _OK.add(part)
