"""`make demo` at a smaller size: stage-1 SFT through verl teaches the tool-call format (the share of assistant turns
that parse rises from the base model's), stage-2 RL steps complete through main_ppo with TRACE rewards that tell
rollouts apart, and the served base / SFT / RL checkpoints are evaluated into the report."""
from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.verl, pytest.mark.e2e]


def test_demo_trains_the_format_and_runs_rl(tmp_path):
    from hyperseyes_verl.recipes.train_demo import DemoTrainConfig, train_demo

    cfg = DemoTrainConfig(out=str(tmp_path / "demo"), n_visual=12, student_step=60, sft_steps=70, rl_steps=1,
                          rl_batch=2, eval_limit=4)
    summary = train_demo(cfg)  # ≈ 4 min on 2 cores
    validity = summary["turn_validity"]
    base, sft = validity["base"], validity["sft-step60"]
    assert base["turns"] > 0 and sft["turns"] > 0
    # the random base never opens a tool call or an answer; after SFT most turns do (at this size few parse yet:
    # the demo's 150 steps on 4x the data reach about two thirds, see the README)
    assert base["attempt_share"] == 0 and sft["attempt_share"] >= 0.5, validity
    assert sft["valid_share"] >= base["valid_share"], validity
    (step,) = summary["rl_steps"]
    assert step["step"] == 1
    # TRACE scored the step's rollouts: its official score is the reward manager's score plus the group bonus,
    # and tool rounds were spent
    for key in ("critic/score/mean", "trace/acc", "trace/rounds_mean", "trace/bonus_mean", "opd/eligible_frac"):
        assert isinstance(step.get(key), (int, float)), key
    assert step["trace/official_score_mean"] == pytest.approx(step["critic/score/mean"] + step["trace/bonus_mean"],
                                                              abs=1e-6)
    assert step["trace/rounds_mean"] > 0
    assert step["opd/eligible_frac"] == pytest.approx(1 - step["trace/acc"], abs=1e-6)  # teacher on failures only
    report = (tmp_path / "demo" / "report" / "report.md").read_text()
    assert "Assistant turns that parse" in report and "Stage 2 per RL step" in report
    assert (tmp_path / "demo" / "report" / "rl_steps.png").stat().st_size > 0
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert set(saved["runs"]) >= {"base", "sft-step60", "rl-step1", "scripted-parallel"}
