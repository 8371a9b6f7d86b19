"""Shared fixtures. Tiny Qwen-VL checkpoints are built once per session into a temp dir."""
from __future__ import annotations

import contextlib
import os
import tempfile

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hyperseyes_verl.testing.cpu_patches import apply_processor_patch  # noqa: E402

apply_processor_patch()

# Short root: Ray's AF_UNIX socket paths under pytest's long tmp_path fail.
_ROOT = tempfile.mkdtemp(prefix="hyp_")


def pytest_collection_modifyitems(items):
    """End-to-end files first, longest first: with `make test`'s workers (`--dist loadfile`) the training pipeline
    starts at once beside the rest of the suite instead of being its tail."""
    order = {"test_train_demo_e2e.py": 0}
    items.sort(key=lambda it: (order.get(it.path.name, 1) if it.get_closest_marker("e2e") else 2))


_niced = False


@pytest.fixture(autouse=True)
def _leave_the_cores_to_the_pipeline(request):
    """Under `make test`'s workers the training pipeline is the critical path: a worker lowers its CPU priority
    (for good, with the processes its tests start) at its first test that is not end-to-end. With the kernel's
    autogroups (on by default) nice ranks processes only within one session, and torchrun starts the pipeline's
    SFT in a session of its own: the worker moves to a new session and lowers that group too."""
    global _niced
    if not _niced and os.environ.get("PYTEST_XDIST_WORKER") and request.node.get_closest_marker("e2e") is None:
        _niced = True
        os.nice(10)
        with contextlib.suppress(OSError):
            os.setsid()
            with open("/proc/self/autogroup", "w") as f:
                f.write("5")  # ~1/4 of a contended core: 10 (~1/10) starved a 1.5 s HTTP timeout in one run
    yield


@pytest.fixture(scope="session")
def short_tmp() -> str:
    return _ROOT


@pytest.fixture(scope="session", params=["qwen2_5_vl", "qwen3_vl"])
def tiny_vl_dir(request) -> str:
    """Path of a tiny random checkpoint (model + tokenizer + processor), both Qwen-VL families."""
    from hyperseyes_verl.testing.tiny_vl import build_tiny_vl

    return str(build_tiny_vl(os.path.join(_ROOT, request.param), request.param))


@pytest.fixture(scope="session")
def tiny_qwen25_dir() -> str:
    from hyperseyes_verl.testing.tiny_vl import build_tiny_vl

    return str(build_tiny_vl(os.path.join(_ROOT, "qwen2_5_vl"), "qwen2_5_vl"))
