"""`make train-tiny`'s stage 1 as it runs it: verl's sft_trainer with LoRA (the official rank 8) through
`recipes/run_hyperseyes_tiny_cpu.sh --stage 1`, whose merge gives the HF model stage 2 starts from. Stage 2 and the
run's checks (resume, teacher faults, rollout log-prob gap, gating) run once, inside the demo pipeline test
(tests/test_train_demo_e2e.py): the two toy runs share `run_stage2` and `summarize`, and one main_ppo start costs
~80 s on 2 cores."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.verl, pytest.mark.e2e]


def test_lora_sft_trains_and_merges(short_tmp):
    from hyperseyes_verl.demo.tiny import TrainTinyConfig, prepare, run_recipe
    from hyperseyes_verl.demo.tiny_checks import read_metrics, weight_change

    cfg = TrainTinyConfig(out=str(Path(short_tmp) / "train_tiny"))
    paths = prepare(cfg)
    run_recipe(paths, 1, "stage1", [f"trainer.total_training_steps={cfg.sft_steps}",
                                    f"trainer.save_freq={cfg.sft_steps}", f"model.lora_rank={cfg.sft_lora_rank}",
                                    f"optim.lr={cfg.sft_lr}"])
    steps = read_metrics(paths["logs"] / "stage1.jsonl")
    assert [s["step"] for s in steps] == [1, 2] and all(s["train/loss"] > 0 for s in steps)
    merged = paths["ckpt"] / "stage1_merged"
    # LoRA merged into the base: the same tensors as the base model, some of them changed
    change = weight_change(paths["model"], merged)
    assert change["tensors_changed"] > 0 and change["tensors_compared"] >= change["tensors_changed"], change
    assert (paths["ckpt"] / "stage1" / f"global_step_{cfg.sft_steps}").is_dir()
