"""The tiny-model builder works on its own (issue 15): a fresh interpreter on a box without torchvision builds a
checkpoint without first calling the undocumented CPU processor patch."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # builds a checkpoint in a fresh interpreter


def test_build_tiny_vl_needs_no_prior_patch_call(tmp_path):
    code = ("from hyperseyes_verl.testing.tiny_vl import build_tiny_vl; "
            f"p = build_tiny_vl({str(tmp_path / 'tiny')!r}, 'qwen2_5_vl'); "
            "import transformers; transformers.AutoProcessor.from_pretrained(str(p)); print('built', p)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "built" in done.stdout and (tmp_path / "tiny" / "config.json").is_file()
