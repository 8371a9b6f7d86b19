"""Switching the CPU runtime on in a verl process (called by the plugin when HYPERSEYES_CPU_RUNTIME=1).

Cheap at `import verl`: the platform registers at once (verl's platform registry is already loaded); the
rollout backend and the engine registrations wait for their verl packages through the plugin's import hooks.
Two things are patched (see patches/README.md), neither in verl: torch's `init_process_group` drops a
duplicate device type (verl builds "cpu:gloo,<device>:<backend>", on the cpu platform "cpu:gloo,cpu:gloo",
which torch refuses), and transformers' processor loading gets the torchvision-free video processor stand-in
of `hyperseyes_verl.testing.cpu_patches` (a no-op where torchvision is installed).
"""
from __future__ import annotations

import functools
import logging
import os

from hyperseyes_verl.verl.cpu import ENV, PLATFORM_NAME

logger = logging.getLogger(__name__)

FSDP_BACKENDS = ("fsdp", "fsdp2")


def dedupe_backend(backend: str | None) -> str | None:
    """'cpu:gloo,cpu:gloo' -> 'cpu:gloo'; anything without a repeated device type is returned unchanged."""
    if not isinstance(backend, str) or "," not in backend:
        return backend
    seen: dict[str, str] = {}
    for pair in backend.split(","):
        device, _, name = pair.partition(":")
        seen.setdefault(device.strip(), name.strip())
    return ",".join(f"{d}:{n}" for d, n in seen.items())


def _patch_process_group() -> None:
    import torch.distributed as dist

    if getattr(dist.init_process_group, "_hyperseyes_cpu", False):
        return
    original = dist.init_process_group

    @functools.wraps(original)
    def init_process_group(*args, **kwargs):
        if "backend" in kwargs:
            kwargs["backend"] = dedupe_backend(kwargs["backend"])
        elif args:
            args = (dedupe_backend(args[0]), *args[1:])
        return original(*args, **kwargs)

    init_process_group._hyperseyes_cpu = True
    dist.init_process_group = init_process_group


def register_engines() -> None:
    """verl registers its FSDP engines for cuda/npu only; the same classes run on CPU tensors with gloo."""
    from verl.workers.engine.base import EngineRegistry

    for model_type, backends in EngineRegistry._engines.items():
        for backend in FSDP_BACKENDS:
            registry = backends.get(backend, {})
            if "cuda" in registry:
                registry.setdefault(PLATFORM_NAME, registry["cuda"])


def register_rollout() -> None:
    from hyperseyes_verl.verl.cpu.hf_replica import register

    register()


def activate() -> None:
    """Select and register the cpu platform in this process; the plugin adds the two lazy hooks."""
    chosen = os.environ.get("VERL_PLATFORM", "").strip().lower()
    if chosen and chosen != PLATFORM_NAME:
        raise RuntimeError(f"{ENV}=1 but VERL_PLATFORM={chosen!r}: the CPU runtime needs VERL_PLATFORM=cpu "
                           f"(or unset); unset {ENV} to run on {chosen}")
    os.environ["VERL_PLATFORM"] = PLATFORM_NAME  # inherited by the Ray cluster this process starts
    import hyperseyes_verl.verl.cpu.platform  # noqa: F401  (registers PlatformCPU)
    from hyperseyes_verl.testing.cpu_patches import apply_processor_patch

    _patch_process_group()
    # CPU boxes have no torchvision: without this verl's hf_processor() is None and a VL model trains as text
    apply_processor_patch()
