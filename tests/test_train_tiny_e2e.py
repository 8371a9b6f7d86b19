"""The main job at toy size, for real (issue #11): `python -m hyperseyes_verl.recipes.train_tiny` runs stage 1
(verl sft_trainer, LoRA, merge) and stage 2 (verl main_ppo, hyperseyes_sync, the agent loop on the embedded
index, TRACE official, OPD through the gated manager from a separately served teacher) on the CPU runtime,
stops after step 1, resumes to step 2 with a teacher that fails for half of the sequences, and writes
summary.json. One subprocess, about four minutes on 2 cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.verl, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def summary(short_tmp):
    out = Path(short_tmp) / "train_tiny"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": f"{short_tmp}/ray_e2e"}
    proc = subprocess.run([sys.executable, "-m", "hyperseyes_verl.recipes.train_tiny", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert (out / "summary.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "summary.json").read_text())
    print("\n".join(data["report"]))
    return data


def test_both_stages_complete_their_steps(summary):
    c = summary["checks"]
    assert c["sft_steps"]["steps_completed"] >= 2 and c["rl_steps"]["steps_completed"] >= 2
    assert c["rl_steps"]["steps"] == [1, 2]


def test_training_changed_the_weights(summary):
    for stage in ("sft_weights_changed", "rl_weights_changed"):
        assert summary["checks"][stage]["tensors_changed"] > 0, summary["checks"][stage]


def test_rollout_serves_the_actors_weights(summary):
    gaps = summary["checks"]["rollout_logprob_gap"]["per_step"]
    assert len(gaps) == 2 and all(g < 1e-3 for g in gaps), gaps


def test_teacher_is_asked_for_failed_rollouts_only(summary):
    for step in summary["checks"]["teacher_gating"]["per_step"]:
        assert step["rollouts"] == 4 and step["scored"] + step["failed"] == step["eligible"], step
        assert step["skipped"] == step["rollouts"] - step["eligible"], step
    assert summary["checks"]["opd_nonzero"]["ok"], summary["checks"]["opd_nonzero"]


def test_a_failing_teacher_masks_and_counts_its_samples(summary):
    faults = summary["checks"]["teacher_faults"]
    assert faults["ok"] and all(f["failed"] > 0 for f in faults["per_step"]), faults


def test_trace_metrics_every_step_and_resume_restores_references(summary):
    c = summary["checks"]
    assert c["trace_every_step"]["ok"], c["trace_every_step"]
    r = c["resume"]
    assert r["run2_first_step"] == 2 and r["restored_step"] == 1, r
    assert r["references_saved"] > 0 and r["references_restored"] == r["references_saved"] == r["references_kept"]


def test_summary_is_all_green(summary):
    assert summary["ok"], "\n".join(summary["report"])
    assert summary["timings"]["total_s"] > 0
