"""Registers hyperseyes components in every verl process (entry point group `verl.plugins`).

verl imports this module at the end of `import verl`, in every process, rollout servers included. Importing
the registries eagerly would add seconds to each of them (`verl.experimental.agent_loop` ≈ 3.5 s,
`verl.trainer.ppo.v1` ≈ 3.5 s, `verl.trainer.distillation` ≈ 1.9 s on a 2-core box), so nothing heavy is
imported here. Instead an import hook waits for verl's own registry package to finish loading in that
process and registers then:

- `verl.experimental.agent_loop` → `hyperseyes_agent` in `_agent_loop_registry` (a `_target_` string:
  the agent loop module itself is imported by hydra only when a trajectory uses it);
- `verl.trainer.ppo.v1` → imports `hyperseyes_verl.verl.trainer` (registers trainer mode `hyperseyes_sync`; the
  module holds the class only: judge, TRACE, OPD and HDPO load when a job builds the trainer);
- `verl.trainer.distillation` → imports `hyperseyes_verl.verl.distill_loss` (distillation loss modes; the OPD
  core loads at the first loss call);
- `verl.utils.tensordict_utils`, `verl.models.transformers.qwen2_vl` → `hyperseyes_verl.verl.verl_fixes` (two verl
  0.9.1 defects, patches/README.md).

With `HYPERSEYES_CPU_RUNTIME=1` (and only then) it also switches the CPU runtime on (`hyperseyes_verl/verl/cpu`):
the `cpu` platform at once, then `rollout.name=hf` when `verl.workers.rollout.replica` loads and verl's FSDP
engines for the cpu device when `verl.workers.engine` loads.

At the first two it also checks the installed verl (`verl_guard`: version 0.9.1, the callables the adapters use,
the private methods they override) and logs one ERROR line when it does not fit; registration goes on, and the
adapters refuse to be built with that same line (verl hides plugin exceptions, and a job that never selects a
HyperEyes part must keep working).

Optional parts are registered only when their module exists (`importlib.util.find_spec`); when it exists
and fails, that is an error. verl swallows plugin exceptions at DEBUG level, so every failure here is
logged at ERROR with the traceback and the fix, kept in `registration_errors()`, and re-raised when
`HYPERSEYES_STRICT_PLUGIN=1`.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
import time
import traceback
from typing import Callable

logger = logging.getLogger("hyperseyes_verl.plugin")

AGENT_NAME = "hyperseyes_agent"
AGENT_TARGET = "hyperseyes_verl.verl.agent_loop.HyperEyesAgentLoop"
STRICT_ENV = "HYPERSEYES_STRICT_PLUGIN"

_ERRORS: list[str] = []
_DONE: set[str] = set()
_SECONDS: dict[str, float] = {}


def registration_errors() -> list[str]:
    """Failures of this process's registrations so far, each with its traceback."""
    return list(_ERRORS)


def hook_seconds() -> dict[str, float]:
    """Time each hook of this process took (bench/bench_plugin_import.py)."""
    return dict(_SECONDS)


def _strict() -> bool:
    return os.getenv(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")


def _report(what: str, fix: str) -> None:
    msg = f"hyperseyes plugin: {what} failed; {fix}\n{traceback.format_exc()}"
    _ERRORS.append(msg)
    logger.error(msg)
    if _strict():
        raise


def check_verl(part: str) -> None:
    """Log (and keep) one line when the installed verl does not fit `part`; raise it in strict mode."""
    from hyperseyes_verl.verl import verl_guard

    line = verl_guard.check(part)
    if line is not None:
        _ERRORS.append(line)
        logger.error(line)
        if _strict():
            raise verl_guard.VerlVersionError(line)


def register_agent_loop() -> None:
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

    # A YAML entry (agent_loop_config_path) for the same name wins: it may carry settings. The agent-loop module
    # registers the same way when hydra imports it, so neither overwrites the other.
    _agent_loop_registry.setdefault(AGENT_NAME, {"_target_": AGENT_TARGET})
    check_verl("agent_loop")


def register_trainer() -> None:
    check_verl("trainer")  # first: on another verl the import itself may fail, with a less clear error
    _import_optional("hyperseyes_verl.verl.trainer")()


def _import_optional(module: str) -> Callable[[], None]:
    def register() -> None:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
        else:
            logger.debug("hyperseyes plugin: %s is not installed; skipped", module)
    return register


# verl package that must be fully loaded -> (what, registration, fix shown on failure)
HOOKS: dict[str, tuple[str, Callable[[], None], str]] = {
    "verl.experimental.agent_loop": (
        f"registering agent loop {AGENT_NAME!r}", register_agent_loop,
        "the agent loop stays selectable through actor_rollout_ref.rollout.agent.agent_loop_config_path="
        "<hyperseyes_verl/verl/agent_loop.yaml>; check that verl==0.9.1 is installed"),
    "verl.trainer.ppo.v1": (
        "importing hyperseyes_verl.verl.trainer (trainer mode 'hyperseyes_sync')", register_trainer,
        "install the V1 trainer's dependencies (pip install TransferQueue pyzmq msgspec) and run "
        "`python -c 'import hyperseyes_verl.verl.trainer'` to see the error"),
    "verl.utils.tensordict_utils": (
        "installing the equal-length position_ids workaround (hyperseyes_verl.verl.verl_fixes)",
        lambda: importlib.import_module("hyperseyes_verl.verl.verl_fixes").install_position_ids_fix(),
        "run `python -c 'import hyperseyes_verl.verl.verl_fixes as f; f.install()'` to see the error; without it "
        "a batch whose sequences all have one length crashes compute_log_prob (see patches/README.md)"),
    "verl.models.transformers.qwen2_vl": (
        "installing the Qwen2-VL text-only sample workaround (hyperseyes_verl.verl.verl_fixes)",
        lambda: importlib.import_module("hyperseyes_verl.verl.verl_fixes").install_qwen2_vl_text_only_fix(),
        "without it a text-only sample crashes the Qwen2/2.5-VL forward (see patches/README.md)"),
    "verl.trainer.distillation": (
        "importing hyperseyes_verl.verl.distill_loss (distillation loss modes)",
        _import_optional("hyperseyes_verl.verl.distill_loss"),
        "run `python -c 'import hyperseyes_verl.verl.distill_loss'` to see the error; without it the "
        "HyperEyes distillation loss_mode is unknown to verl"),
}


def _cpu_runtime_hooks() -> dict[str, tuple[str, Callable[[], None], str]]:
    from hyperseyes_verl.verl.cpu import runtime

    return {
        "verl.workers.rollout.replica": (
            "registering the HF CPU rollout (rollout.name=hf)", runtime.register_rollout,
            "run `python -c 'import hyperseyes_verl.verl.cpu.hf_replica'` to see the error"),
        "verl.workers.engine": (
            "registering verl's FSDP engines for the cpu device", runtime.register_engines,
            "check that verl==0.9.1 is installed"),
    }


def _run_hook(package: str) -> None:
    if package in _DONE:
        return
    _DONE.add(package)
    what, register, fix = HOOKS[package]
    t0 = time.perf_counter()
    try:
        register()
    except Exception:
        _report(what, fix)
    finally:
        _SECONDS[package] = time.perf_counter() - t0


class _AfterImportLoader(importlib.abc.Loader):
    """Runs the real loader, then the package's hook; leaves the module's own loader in place."""

    def __init__(self, inner: importlib.abc.Loader, name: str):
        self.inner, self.name = inner, name

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        spec = module.__spec__
        spec.loader = self.inner
        module.__loader__ = self.inner
        self.inner.exec_module(module)
        _run_hook(self.name)


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that only wraps the loaders of the hooked verl packages."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in HOOKS or fullname in _DONE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _AfterImportLoader(spec.loader, fullname)
                return spec
        return None


_FINDER = _AfterImportFinder()


def install() -> None:
    """Idempotent: hook the registry packages; run the hooks of those already imported."""
    try:
        from hyperseyes_verl.verl import cpu

        if cpu.requested() and "verl.workers.engine" not in HOOKS:
            try:
                from hyperseyes_verl.verl.cpu import runtime

                runtime.activate()
                HOOKS.update(_cpu_runtime_hooks())
            except Exception:
                _report("switching the CPU runtime on (HYPERSEYES_CPU_RUNTIME=1)", "read the error above")
        if not any(isinstance(f, _AfterImportFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _FINDER)
        for package in HOOKS:
            module = sys.modules.get(package)
            if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
                _run_hook(package)
    except Exception:
        _report("installing the import hooks", "please report this with the traceback")


install()
