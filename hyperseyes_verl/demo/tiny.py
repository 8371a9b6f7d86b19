"""`make train-tiny`: the two-stage HyperEyes recipe at toy size, through verl's own entry points, on a CPU box.

1. a tiny random Qwen-VL (built offline), the demo's data (gallery → synthetic questions → embedded index →
   Progressive Rejection Sampling with the scripted teacher) and its SFT / RL parquet;
2. `recipes/run_hyperseyes_tiny_cpu.sh --stage 1`: LoRA SFT with verl's `sft_trainer` (torchrun, one process,
   FSDP2 on gloo), verl's model merger, `hyperseyes recipe merge-lora`;
3. `recipes/run_hyperseyes_tiny_cpu.sh --stage 2` twice: `main_ppo` with the V1 `hyperseyes_sync` trainer, the
   HyperEyes agent loop on the embedded index, TRACE official, OPD from a separately served teacher through
   the gated manager; the first invocation stops after step `rl_steps - 1` (checkpoint saved every step), the
   second resumes and finishes — with a teacher that fails on purpose for a share of the sequences;
4. `summary.json`: what `summarize` checks (CI asserts the same checks on the demo's pipeline at test size,
   tests/test_train_demo_e2e.py, and stage 1 here in tests/test_train_tiny_e2e.py); the rollouts of every
   step are dumped to `rollouts/` (`hyperseyes view <out>` shows them with the logged metrics).
The model is random, so nothing here measures learning: it proves the machinery (issue #12 adds learning).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.data.mosaic import Layout
from hyperseyes_verl.demo.tiny_checks import read_metrics, summarize
from hyperseyes_verl.utils.cli import config_from_argv

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "recipes" / "run_hyperseyes_tiny_cpu.sh"


class TinySetup(BaseModel):
    """The tiny model and the demo data both toy runs start from (`prepare`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    out: str = Field("outputs/train_tiny", description="output folder (model, data, checkpoints, logs, summary)")
    family: str = Field("qwen2_5_vl", description="tiny model family: qwen2_5_vl | qwen3_vl")
    vocab_size: int = Field(600, ge=300, description="tiny tokenizer's BPE vocabulary (trained on the data too)")
    hidden_size: int = Field(64, ge=32, description="tiny model's hidden size (4 heads)")
    num_layers: int = Field(2, ge=1, description="tiny model's decoder layers")
    seed: int = Field(0, description="seed of the data and the tiny model")
    n_visual: int = Field(12, ge=2, description="visual multi-entity questions in the demo data")
    n_textual: int = Field(4, ge=0, description="textual multi-constraint questions in the demo data")
    min_entities: int = Field(2, ge=2, le=6, description="entities per mosaic, at least")
    max_entities: int = Field(6, ge=2, le=6, description="entities per mosaic, at most")
    layout: Layout | None = Field(None, description="every mosaic in this layout; default: drawn per mosaic")


class TrainTinyConfig(TinySetup):
    sft_steps: int = Field(2, ge=1, description="stage-1 optimizer steps")
    sft_lora_rank: int = Field(8, ge=0, description="stage-1 LoRA rank (official 8); 0 = full fine-tuning")
    sft_lr: float = Field(1e-3, gt=0, description="stage-1 peak learning rate")
    rl_steps: int = Field(2, ge=2, description="stage-2 steps; the run stops after rl_steps-1 and resumes")
    teacher_fault_frac: float = Field(0.5, ge=0, le=1, description="share of teacher requests that fail on "
                                      "purpose in the resumed invocation (0 = no fault injection)")


def _say(msg: str) -> None:
    print(f"[train-tiny] {msg}", flush=True)


def prepare(cfg: TinySetup) -> dict[str, Path]:
    """Tiny model + demo data + parquet + index under cfg.out (reused when already there)."""
    import asyncio

    from hyperseyes_verl.data.parquet import rl_rows, sft_rows, write_parquet
    from hyperseyes_verl.data.prs import PRSConfig, read_results, run_prs
    from hyperseyes_verl.data.synth import read_items
    from hyperseyes_verl.demo.scripted import DemoConfig, build_data
    from hyperseyes_verl.eval.loaders import load_benchmark
    from hyperseyes_verl.eval.strategies import ScriptedClient, specs_from_items
    from hyperseyes_verl.search.factory import build_backend
    from hyperseyes_verl.testing.cpu_patches import apply_processor_patch
    from hyperseyes_verl.testing.tiny_vl import build_tiny_vl
    from hyperseyes_verl.ugs.schema import system_prompt

    out = Path(cfg.out)
    paths = {"model": out / "model", "data": out / "data", "index": out / "demo" / "index", "ckpt": out / "ckpt",
             "logs": out / "logs"}
    apply_processor_patch()
    rl_train = paths["data"] / "rl" / "train.parquet"
    if not rl_train.exists():
        demo = DemoConfig(out=str(out / "demo"), n_visual=cfg.n_visual, n_textual=cfg.n_textual, seed=cfg.seed,
                          min_entities=cfg.min_entities, max_entities=cfg.max_entities, layout=cfg.layout,
                          progress=False)
        items_path, index = build_data(demo)
        items = read_items(items_path)
        backend = build_backend({"type": "embedded", "index_dir": str(index)})
        client = ScriptedClient(specs_from_items(load_benchmark(items_path, name="demo")))
        prs_dir = out / "demo" / "prs"
        env = rl_environment()  # the observations too are the RL environment's (hits shown, budgets)
        asyncio.run(run_prs(items, backend, client, PRSConfig(model="scripted-parallel", max_rounds=3, ugs=env),
                            prs_dir, progress=False))
        results = read_results(prs_dir / "results.jsonl")
        write_parquet(sft_rows(results, prs_dir, env=env), paths["data"] / "sft" / "train.parquet")
        rows = rl_rows(items, results, val_frac=0.25, system=system_prompt(env))
        write_parquet([r for r in rows if r["extra_info"]["split"] == "train"], rl_train)
        write_parquet([r for r in rows if r["extra_info"]["split"] == "val"], paths["data"] / "rl" / "val.parquet")
    # the tokenizer also learns the data's own text: shorter sequences for the same vocabulary size
    import pandas as pd

    texts = [m["content"] for ms in pd.read_parquet(paths["data"] / "sft" / "train.parquet")["messages"] for m in ms]
    build_tiny_vl(paths["model"], family=cfg.family, vocab_size=cfg.vocab_size, corpus=texts,
                  hidden_size=cfg.hidden_size, num_layers=cfg.num_layers)
    paths["logs"].mkdir(parents=True, exist_ok=True)
    return paths


def rl_environment():
    """The tiny RL recipe's environment (stage2_rl_tiny_cpu.yaml): the SFT / RL rows' system prompt states its
    budgets, the SFT rows render the tool schemas as it does, and evaluation runs in it, so all three show the
    model the same text."""
    from omegaconf import OmegaConf

    from hyperseyes_verl.ugs.types import UGSConfig

    tiny = OmegaConf.load(REPO / "recipes" / "stage2_rl_tiny_cpu.yaml")
    return UGSConfig(**OmegaConf.to_container(tiny.hyperseyes.agent_loop.ugs))


def run_recipe(paths: dict[str, Path], stage: int, name: str, overrides: list[str],
               env: dict[str, str] | None = None) -> float:
    """One invocation of the recipe script; its output goes to logs/<name>.log, its metrics to <name>.jsonl."""
    log = paths["logs"] / f"{name}.log"
    run_env = {**os.environ, "MODEL_PATH": str(paths["model"]), "TEACHER_PATH": str(paths["model"]),
               "DATA_DIR": str(paths["data"]), "INDEX_DIR": str(paths["index"]), "OUT_DIR": str(paths["ckpt"]),
               "PYTHON": sys.executable, "VERL_FILE_LOGGER_PATH": str(paths["logs"] / f"{name}.jsonl"),
               "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", "/tmp/hyperseyes_ray"), **(env or {})}
    Path(run_env["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    # hydra's own run folder goes with the logs, not into the working directory's outputs/<date>/<time>
    cmd = ["bash", str(SCRIPT), "--stage", str(stage), "--", *overrides,
           f"hydra.run.dir={paths['logs'].resolve() / ('hydra_' + name)}"]
    _say(f"{name}: {' '.join(cmd)}  (log: {log})")
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=run_env, cwd=REPO).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(f"{name} failed (exit {rc}) after {seconds:.0f} s; last lines of {log}:\n" + "\n".join(tail))
    _say(f"{name}: done in {seconds:.0f} s")
    return seconds


def merge_checkpoint(local_dir: Path, target: Path) -> Path:
    """verl's model merger on one FSDP checkpoint folder → an HF folder (weights, tokenizer and processor).
    The CPU runtime's processor patch must be on in the merger too, or the processor is silently not saved."""
    if not (target / "config.json").exists():
        subprocess.run([sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir",
                        str(local_dir), "--target_dir", str(target)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env={**os.environ, "HYPERSEYES_CPU_RUNTIME": "1"})
    return target


def merge_actor(paths: dict[str, Path], step: int) -> Path:
    """The stage-2 actor checkpoint of `step` as an HF model (to compare with stage 1, or to serve)."""
    return merge_checkpoint(paths["ckpt"] / "stage2" / f"global_step_{step}" / "actor",
                            paths["ckpt"] / f"stage2_step{step}_hf")


def run_stage2(paths: dict[str, Path], *, steps: int, resume: bool, teacher_fault_frac: float,
               overrides: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Stage 2 through main_ppo to `steps`: one invocation (`stage2_run1`), or with `resume` one that stops a step
    early and a second (`stage2_run2`) that resumes from its checkpoint with `teacher_fault_frac` of the teacher's
    requests failing on purpose: verl's resume, the TRACE references it restores and the teacher's failure path."""
    runs = [("stage2_run1", steps - 1 if resume else steps, {})]
    if resume:
        runs.append(("stage2_run2", steps, {"HYPERSEYES_HF_TEACHER_FAULT_FRAC": str(teacher_fault_frac)}))
    return {f"{name}_s": run_recipe(paths, 2, name, [f"trainer.total_training_steps={n}", *overrides],
                                    env={**(env or {}), **extra}) for name, n, extra in runs}


def stage2_metrics(paths: dict[str, Path]) -> list[dict]:
    """Per-step metrics of stage 2, over both invocations when it resumed."""
    return [r for name in ("stage2_run1", "stage2_run2") for r in read_metrics(paths["logs"] / f"{name}.jsonl")]


def train_tiny(cfg: TrainTinyConfig) -> dict:
    t0 = time.perf_counter()
    paths = prepare(cfg)
    timings = {"prepare_s": time.perf_counter() - t0}
    timings["stage1_s"] = run_recipe(paths, 1, "stage1", [f"trainer.total_training_steps={cfg.sft_steps}",
                                                          f"trainer.save_freq={cfg.sft_steps}",
                                                          f"model.lora_rank={cfg.sft_lora_rank}",
                                                          f"optim.lr={cfg.sft_lr}"])
    rollouts = f"trainer.rollout_data_dir={Path(cfg.out).resolve() / 'rollouts'}"  # `hyperseyes view` reads them
    timings |= run_stage2(paths, steps=cfg.rl_steps, resume=True, teacher_fault_frac=cfg.teacher_fault_frac,
                          overrides=[rollouts])
    rl_model = merge_actor(paths, cfg.rl_steps)
    timings["total_s"] = time.perf_counter() - t0
    summary = summarize(paths, sft_model=paths["ckpt"] / "stage1_merged", rl_model=rl_model, cfg=cfg.model_dump(),
                        timings=timings)
    (Path(cfg.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_argv(TrainTinyConfig, argv, "python -m hyperseyes_verl.demo.tiny",
                           __doc__.split("\n")[0])
    try:
        summary = train_tiny(cfg)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _say(f"summary: {Path(cfg.out) / 'summary.json'}")
    for line in summary["report"]:
        print(line)
    _say(f"wall time of the whole run on {os.cpu_count()} cores: {summary['timings']['total_s']:.0f} s")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
