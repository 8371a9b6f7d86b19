"""The recipe script itself: missing inputs fail in bash before any Python starts, and `--dry-run` hands the
composed stage-2 config to `hyperseyes recipe validate` (one subprocess: the script is the behaviour)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_recipes import write_rl_parquet

pytestmark = [pytest.mark.verl, pytest.mark.slow]  # the script runs `hyperseyes recipe validate`

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "recipes" / "run_hyperseyes_7b_1node.sh"


def run(env_updates: dict, *args: str, timeout=240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "TEACHER_PATH", "DATA_DIR", "OUT_DIR",
                                                            "INDEX_DIR", "SFT_TRAIN", "RL_TRAIN", "RL_VAL")}
    env.update({"PYTHON": sys.executable, "RAY_AUTH_MODE": "disabled", **env_updates})
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_script_refuses_missing_inputs(tiny_qwen25_dir, tmp_path):
    r = run({})
    assert r.returncode == 2 and "MODEL_PATH is not set" in r.stderr
    r = run({"MODEL_PATH": tiny_qwen25_dir, "DATA_DIR": str(tmp_path), "OUT_DIR": str(tmp_path / "out")},
            "--stage", "2", "--dry-run")
    assert r.returncode == 2 and "RL_TRAIN=" in r.stderr and "does not exist" in r.stderr
    write_rl_parquet((tmp_path / "rl").mkdir() or tmp_path / "rl" / "train.parquet")
    write_rl_parquet(tmp_path / "rl" / "val.parquet")
    r = run({"MODEL_PATH": tiny_qwen25_dir, "DATA_DIR": str(tmp_path), "OUT_DIR": str(tmp_path / "out"),
             "INDEX_DIR": str(tmp_path)}, "--stage", "2", "--dry-run")
    assert r.returncode == 2 and "TEACHER_PATH is not set" in r.stderr
    r = run({}, "--stage", "3")
    assert r.returncode == 2 and "--stage must be 1, 2 or all" in r.stderr


def test_script_dry_run_validates_stage2(tiny_qwen25_dir, tmp_path):
    (tmp_path / "rl").mkdir()
    write_rl_parquet(tmp_path / "rl" / "train.parquet")
    write_rl_parquet(tmp_path / "rl" / "val.parquet")
    r = run({"MODEL_PATH": tiny_qwen25_dir, "TEACHER_PATH": tiny_qwen25_dir, "DATA_DIR": str(tmp_path),
             "OUT_DIR": str(tmp_path / "out"), "INDEX_DIR": str(tmp_path)}, "--stage", "2", "--dry-run")
    out = r.stdout
    assert "validating stage 2 with MODEL_PATH as its stand-in" in out  # stage 1 has not run
    assert "resolved plan:" in out and "trainer 1×4 = 4" in out and "teacher 4, total 8" in out, out + r.stderr
    # This CPU box has no torchvision: the dry run loads the processor with the stand-in video processor and says so.
    assert r.returncode == 0 and "stand-in video processor" in out and "FAILED" not in out, out + r.stderr


def test_web_backend_needs_no_index_dir(tiny_qwen25_dir, tmp_path):
    """recipes/README.md's web-backend override: the script must not demand INDEX_DIR nor append index_dir."""
    (tmp_path / "rl").mkdir()
    write_rl_parquet(tmp_path / "rl" / "train.parquet")
    write_rl_parquet(tmp_path / "rl" / "val.parquet")
    env = {"MODEL_PATH": tiny_qwen25_dir, "TEACHER_PATH": tiny_qwen25_dir, "DATA_DIR": str(tmp_path),
           "OUT_DIR": str(tmp_path / "out"), "SERPER_API_KEY": "test-key"}
    r = run(env, "--stage", "2", "--dry-run")
    assert r.returncode == 2 and "INDEX_DIR is not set" in r.stderr  # the default backend is the embedded index
    r = run(env, "--stage", "2", "--dry-run", "--", "++hyperseyes.agent_loop.backend={type: serper}")
    assert "INDEX_DIR" not in r.stderr and "index_dir" not in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    assert r.returncode == 0 and "FAILED" not in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def test_script_finds_the_project_interpreter(tmp_path):
    """Run as the README shows, without an activated venv: PYTHON unset must not mean `python` from PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    r = subprocess.run(["bash", str(SCRIPT), "--stage", "3"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert "cannot import hyperseyes_verl" not in r.stderr and "--stage must be 1, 2 or all" in r.stderr
    env["PYTHON"] = "/usr/bin/false"
    r = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "cannot import hyperseyes_verl" in r.stderr and "make venv" in r.stderr
