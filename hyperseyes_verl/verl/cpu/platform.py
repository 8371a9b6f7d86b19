"""A `cpu` platform for verl's PlatformRegistry (verl 0.9.1 ships cuda, npu and rocm only).

verl asks the platform for its device module (`get_torch_device()`), its collective backend and its Ray
resource. On CPU: `torch.cpu` where it has the function, the few CUDA-only calls verl makes (memory
statistics, cache control, streams) answered with what a CPU has (nothing cached, no separate memory), gloo,
and placement on the fake `GPU` resources the job declares (`ray_kwargs.ray_init.num_gpus`), so verl's
resource pools work unchanged.
"""
from __future__ import annotations

import logging
import types
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

from hyperseyes_verl.verl.cpu import PLATFORM_NAME, requested

logger = logging.getLogger(__name__)

GPU_REFUSAL = ("HYPERSEYES_CPU_RUNTIME=1 on a machine with {n} CUDA device(s): the CPU runtime is for laptops "
               "and CI only; unset HYPERSEYES_CPU_RUNTIME (and VERL_PLATFORM=cpu) to train on the GPUs")


class _CpuStream:
    """torch.cuda.Stream stand-in: CPU work is already ordered."""

    def __init__(self, *args, **kwargs):
        pass

    def synchronize(self) -> None:
        return None

    def wait_stream(self, other) -> None:
        return None


def _no_memory(*args, **kwargs) -> int:
    return 0


class CpuDeviceModule(types.ModuleType):
    """What verl calls on `get_torch_device()`, answered for a CPU."""

    _ANSWERS: dict[str, Any] = {
        "is_available": lambda: True,
        "device_count": lambda: 1,
        "current_device": lambda: "cpu",
        "set_device": lambda *a, **k: None,
        "synchronize": lambda *a, **k: None,
        "empty_cache": lambda: None,
        "ipc_collect": lambda: None,
        "manual_seed": torch.manual_seed,
        "manual_seed_all": torch.manual_seed,
        "get_rng_state": lambda *a, **k: torch.get_rng_state(),
        "set_rng_state": lambda state, *a, **k: torch.set_rng_state(state),
        "set_per_process_memory_fraction": lambda *a, **k: None,
        "memory_allocated": _no_memory, "max_memory_allocated": _no_memory,
        "memory_reserved": _no_memory, "max_memory_reserved": _no_memory,
        "reset_peak_memory_stats": lambda *a, **k: None,
        # (free, total): a generous constant; verl only logs it or sizes caches that do not exist on CPU
        "mem_get_info": lambda *a, **k: (16 << 30, 24 << 30),
        # verl/utils/flops_counter.py looks the device name up in its peak-FLOPS table; unknown -> no MFU
        "get_device_name": lambda *a, **k: "CPU",
        "Stream": _CpuStream,
        "stream": lambda *a, **k: nullcontext(),
        "current_stream": lambda *a, **k: _CpuStream(),
        "Event": lambda *a, **k: types.SimpleNamespace(record=lambda *x: None, synchronize=lambda: None,
                                                       query=lambda: True, wait=lambda *x: None),
    }

    def __init__(self):
        super().__init__("hyperseyes_cpu_device")

    def __getattr__(self, name: str):
        if name in self._ANSWERS:
            return self._ANSWERS[name]
        if hasattr(torch.cpu, name):
            return getattr(torch.cpu, name)
        raise AttributeError(f"the CPU runtime has no torch device function {name!r}; please report which verl "
                             "code path asked for it")


CPU_DEVICE_MODULE = CpuDeviceModule()


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    def __init__(self):
        super().__init__()
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n:  # created in every verl process at its first device query: fails the job at start-up
            raise RuntimeError(GPU_REFUSAL.format(n=n))

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self):
        return CPU_DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        # never auto-detected: only VERL_PLATFORM=cpu (set by the CPU runtime switch) selects it
        return requested()

    def current_device(self) -> str:
        # verl passes it to tensor.to(device=...): an int would mean accelerator 0
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        return None

    def synchronize(self, device_index=None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"  # the job declares fake GPUs (ray_init.num_gpus) that only carry verl's placement groups

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None
