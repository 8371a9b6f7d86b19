"""The recipe dry run (`hyperseyes recipe validate`, what `--dry-run` runs) refuses what the trainer would refuse
(issue 15): every `hyperseyes.*` section through the runtime's own models, and an SFT job that would train 0 steps.
Models are given as missing folders with --allow-missing-models, which keeps tokenizer loading out of these runs."""
from __future__ import annotations

import pytest

from hyperseyes_verl.cli import main
from test_recipes import AGENT_LOOP_YAML, RECIPES, write_rl_parquet, write_sft_parquet


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("usability_recipes")
    (d / "index").mkdir()
    return {"train": write_rl_parquet(d / "train.parquet"), "val": write_rl_parquet(d / "val.parquet", n=2),
            "sft2": write_sft_parquet(d / "sft2.parquet", n=2), "sft8": write_sft_parquet(d / "sft8.parquet", n=8),
            "index": str(d / "index")}


def _rl(data, capsys, *overrides: str) -> tuple[int, str]:
    rc = main(["recipe", "validate", "--stage", "rl", "--config", str(RECIPES / "stage2_rl_30b.yaml"),
               "--allow-missing-models", "actor_rollout_ref.model.path=/nonexistent/model",
               "distillation.teacher_models.teacher_model.model_path=/nonexistent/teacher",
               f"data.train_files={data['train']}", f"data.val_files={data['val']}",
               f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_YAML}",
               f"hyperseyes.agent_loop.backend.index_dir={data['index']}", *overrides])
    return rc, capsys.readouterr().out


def test_every_hyperseyes_section_is_validated_like_the_trainer_does(data, capsys):
    rc, out = _rl(data, capsys, "hyperseyes.trace.mode=paper", "+hyperseyes.trace.paper.r_minus=0.9",
                  "+hyperseyes.hdpo.w_tol=0.1", "hyperseyes.opd.beta=-1", "+hyperseyes.traec.mode=paper")
    assert rc == 1, out
    problems = [line for line in out.splitlines() if line.startswith("  - [hyperseyes]")]
    assert any("hyperseyes.trace would be refused" in p and "give up on hard queries" in p for p in problems), out
    assert any("hyperseyes.hdpo would be refused" in p and "w_tol" in p for p in problems), out
    assert any(p.startswith("  - [opd] hyperseyes.opd.beta: Input should be greater than or equal to 0") for p in
               out.splitlines()), out  # built by the trainer's own resolve_opd_config (OPD is on in this recipe)
    assert any("hyperseyes.traec is not read by the rl stage" in p for p in problems), out
    rc, out = _rl(data, capsys, "hyperseyes.trace.mode=paper", "+hyperseyes.trace.paper.r_minsu=-0.2")
    assert rc == 1 and "r_minsu" in out and "Extra inputs are not permitted" in out, out


def test_a_clean_rl_section_still_passes(data, capsys):
    rc, out = _rl(data, capsys, "hyperseyes.trace.mode=paper", "+hyperseyes.trace.paper.lam=0.05",
                  "+hyperseyes.hdpo.w_tool=0.2")
    assert "[hyperseyes]" not in out, out


def _sft(data, capsys, rows: str, *overrides: str) -> tuple[int, str]:
    rc = main(["recipe", "validate", "--stage", "sft", "--config", str(RECIPES / "stage1_sft_30b.yaml"),
               "--allow-missing-models", "model.path=/nonexistent/model", f"data.train_files={data[rows]}", *overrides])
    return rc, capsys.readouterr().out


def test_sft_job_with_zero_steps_is_refused(data, capsys):
    rc, out = _sft(data, capsys, "sft2")
    assert rc == 1 and "[steps] data.train_files has 2 rows" in out and "0 steps" in out, out
    rc, out = _sft(data, capsys, "sft8", "trainer.total_training_steps=0")
    assert rc == 1 and "trainer.total_training_steps = 0" in out, out
    rc, out = _sft(data, capsys, "sft8", "+hyperseyes.sft.freeze_vision_towr=false")
    assert rc == 1 and "hyperseyes.sft would be refused" in out and "freeze_vision_towr" in out, out
    rc, out = _sft(data, capsys, "sft8")
    assert "[steps]" not in out and "[hyperseyes]" not in out, out


def test_a_hub_id_model_is_accepted_with_a_note(data, capsys):
    rc, out = _sft(data, capsys, "sft8", "model.path=Qwen/Qwen2.5-VL-7B-Instruct")
    assert "[model]" not in out and "'Qwen/Qwen2.5-VL-7B-Instruct' is a Hugging Face hub id" in out, out
