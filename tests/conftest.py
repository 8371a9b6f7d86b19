"""Shared fixtures. Tiny Qwen-VL checkpoints are built once per session into a temp dir."""
from __future__ import annotations

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
