"""`make demo`: the product's main job at toy size on a CPU box — data, stage-1 SFT, stage-2 RL, evaluation, report.

1. the demo's data (gallery → synthetic questions → embedded index → PRS with the scripted teacher → SFT / RL
   parquet) and a tiny random Qwen-VL whose tokenizer is trained on that data (`tiny.prepare`);
2. stage 1 through verl's `sft_trainer` (full fine-tuning): the checkpoint at `student_step` is the policy, the
   one at `sft_steps` — the same run trained longer — is the OPD teacher;
3. stage 2 through `main_ppo`: the HyperEyes agent loop on the embedded index, TRACE official with reference
   tightening at epoch ends, OPD from the served teacher on failed rollouts;
4. the base, SFT and RL checkpoints served with `hyperseyes serve-model` and evaluated by the eval code on every
   demo question (chat-template wire = the RL stage's text), next to the scripted strategies (labelled scripts);
5. the format probe (`format_probe.py`): the SFT and RL checkpoints write every assistant turn of a few SFT
   conversations from their own context, the format apart from grounding;
6. `report/`: accuracy / rounds / width / searches with no hit / tokens / CAS per run, the share of assistant turns
   that parse (overall, by turn, in the probe), and the RL stage's per-step metrics (markdown + PNG);
   `summary.json` holds the figures.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from hyperseyes_verl.data.mosaic import Layout
from hyperseyes_verl.demo.format_probe import format_probe, turn_validity
from hyperseyes_verl.demo.tiny import (TinySetup, merge_actor, merge_checkpoint, prepare, rl_environment, run_recipe,
                                       run_stage2, stage2_metrics)
from hyperseyes_verl.demo.tiny_checks import read_metrics, summarize
from hyperseyes_verl.utils.cli import config_from_argv

# per-RL-step columns of the report: (label, verl metric key)
RL_COLUMNS = [
    ("reward", "critic/score/mean"), ("accuracy", "trace/acc"), ("tool rounds", "trace/rounds_mean"),
    ("searches / round", "trace/searches_per_round"), ("answered", "trace/answered"),
    ("format-valid rollouts", "trace/format_ok"),
    ("TRACE bonus min", "trace/bonus_min"), ("TRACE bonus mean", "trace/bonus_mean"),
    ("TRACE bonus max", "trace/bonus_max"), ("refs tightened", "trace/refs_tightened"),
    ("teacher share", "opd/eligible_frac"), ("reverse KL", "opd/reverse_kl_mean"),
]


class DemoTrainConfig(TinySetup):
    out: str = Field("outputs/demo", description="output folder")
    # served turns that parse, one SFT run (16 questions): step 120 70 %, 180 100 %, 240 100 % (issue #12)
    hidden_size: int = Field(128, ge=32, description="tiny model's hidden size (4 heads)")
    num_layers: int = Field(2, ge=1, description="tiny model's decoder layers")
    vocab_size: int = Field(1200, ge=300, description="BPE vocabulary, trained on the data")
    student_step: int = Field(180, ge=1, description="SFT step whose checkpoint starts RL")
    sft_steps: int = Field(210, ge=2, description="SFT steps in all; the last checkpoint is the OPD teacher")
    sft_lr: float = Field(3e-3, gt=0, description="stage-1 peak learning rate (full fine-tuning)")
    rl_steps: int = Field(2, ge=1, description="stage-2 steps")
    # a mosaic is 16 visual tokens: free boxes were not learned (1 of 92 crops hit, issue #12), 2x2 tiles are
    min_entities: int = Field(4, ge=2, le=6, description="entities per mosaic, at least")
    max_entities: int = Field(4, ge=2, le=6, description="entities per mosaic, at most")
    layout: Layout | None = Field("tiles", description="every mosaic in this layout; None: drawn per mosaic")
    # the SFT data: PRS's 48 solves (the 4 textual questions need more than one hit per search)
    n_visual: int = Field(48, ge=2, description="visual multi-entity questions in the demo data")
    rl_prompts: int = Field(12, ge=1, description="RL training prompts drawn from the data (verl's "
                            "data.train_max_samples): with rl_batch 6, an epoch of 2 steps, so references tighten")
    rl_batch: int = Field(6, ge=1, description="prompts per RL step (x rollout.n 2)")
    max_new_tokens: int = Field(256, ge=16, description="per assistant turn, in RL and in evaluation")
    eval_limit: int = Field(16, ge=0, description="evaluate the first N questions (0 = all; each trained model "
                            "takes ~1.5 s per question on 2 cores)")
    probe_conversations: int = Field(8, ge=0, description="generate every assistant turn of the first N SFT "
                                     "conversations from their own context, per model: the format alone, apart "
                                     "from grounding (0 = off)")
    rl_resume: bool = Field(False, description="run stage 2 as two main_ppo invocations, the second resuming from "
                            "the first's checkpoint, and add `make train-tiny`'s checks to the summary (the test "
                            "does; costs one more start-up, ~85 s)")
    teacher_fault_frac: float = Field(0.0, ge=0, le=1, description="with rl_resume: share of teacher requests "
                                      "that fail on purpose in the resumed invocation")

    @model_validator(mode="after")
    def _check_steps(self) -> "DemoTrainConfig":
        if self.rl_resume and self.rl_steps < 2:
            raise ValueError("rl_resume needs rl_steps >= 2: the first invocation stops a step early")
        if self.student_step >= self.sft_steps:
            raise ValueError(f"student_step ({self.student_step}) must be below sft_steps ({self.sft_steps}): the "
                             "teacher is the same SFT run trained longer")
        return self


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def merge_sft(paths: dict[str, Path], step: int) -> Path:
    """The stage-1 checkpoint of `step` as an HF model (full fine-tuning: the merged shards are the model)."""
    return merge_checkpoint(paths["ckpt"] / "stage1" / f"global_step_{step}", paths["ckpt"] / f"stage1_step{step}_hf")


async def _evaluate_models(items_path: Path, index: Path, models: dict[str, Path], out: Path,
                           max_new_tokens: int, ugs, limit: int = 0) -> dict[str, list]:
    from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient
    from hyperseyes_verl.episode.runner import SamplingParams
    from hyperseyes_verl.eval.evaluate import EvalConfig, evaluate
    from hyperseyes_verl.eval.loaders import load_benchmark
    from hyperseyes_verl.demo.scripted import run_scripted
    from hyperseyes_verl.hf.chat_server import ChatModel, create_app
    from hyperseyes_verl.search.factory import build_backend
    from hyperseyes_verl.testing.local_server import LocalServer

    items = load_benchmark(items_path, name="demo")
    items = items[:limit] if limit else items
    backend = build_backend({"type": "embedded", "index_dir": str(index)})
    try:
        by_run = await run_scripted(items, backend, out / "runs", progress=False, ugs=ugs)
        for name, path in models.items():
            t0 = time.perf_counter()
            # served in-process: the same HTTP endpoint `hyperseyes serve-model` exposes, one model at a time
            with LocalServer(create_app(ChatModel(str(path), name=name)), start_timeout_s=120) as server:
                async with OpenAIChatClient(EndpointConfig(base_url=f"{server.url}/v1")) as client:
                    cfg = EvalConfig(model=name, keep_trajectories=True, progress=False, wire="chat_template", ugs=ugs,
                                     concurrency=2, sampling=SamplingParams(max_tokens=max_new_tokens))
                    by_run[name] = await evaluate(items, client, backend, out / "runs" / name, cfg,
                                                  run_info={"checkpoint": str(path)}, restart=True)
            _say(f"evaluated {name} ({path}) on {len(items)} questions in {time.perf_counter() - t0:.0f} s")
    finally:
        await backend.aclose()
    return by_run


def validity_table(validity: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows of `turn_validity` per model; `by turn` lists valid/turns of the 1st, 2nd, ... turns."""
    lines = ["| model | turns | attempted | valid | valid share | by turn |", "|---|---|---|---|---|---|"]
    return lines + [f"| {n} | {v['turns']} | {v['attempted']} | {v['valid']} | {v['valid_share']} | "
                    + ", ".join(f"{a}/{b}" for a, b in v["by_turn"]) + " |" for n, v in validity.items()]


def rl_table(rows: list[dict[str, Any]]) -> list[str]:
    head = "| step | " + " | ".join(label for label, _ in RL_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(RL_COLUMNS) + 1)]
    for r in rows:
        cells = [f"{r[k]:.3g}" if isinstance(r.get(k), (int, float)) else "–" for _, k in RL_COLUMNS]
        lines.append(f"| {r['step']} | " + " | ".join(cells) + " |")
    return lines


def plot_rl(rows: list[dict[str, Any]], path: Path) -> Path | None:
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = dict(RL_COLUMNS)
    keys = [(label, columns[label]) for label in ("reward", "accuracy", "tool rounds", "answered",
                                                  "format-valid rollouts", "teacher share")]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8))
    for ax, (label, key) in zip(axes, keys):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("RL step", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def train_demo(cfg: DemoTrainConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = Path(cfg.out)
    _say("[1/5] data (gallery, questions, index, PRS, parquet) and a tiny random " + cfg.family)
    paths = prepare(cfg)
    timings = {"data_s": time.perf_counter() - t0}
    _say(f"[2/5] stage 1: SFT for {cfg.sft_steps} steps (policy = step {cfg.student_step}, teacher = step "
         f"{cfg.sft_steps})")
    timings["sft_s"] = run_recipe(paths, 1, "stage1", [
        f"trainer.total_training_steps={cfg.sft_steps}", f"trainer.save_freq={cfg.student_step}",
        "model.lora_rank=0", f"optim.lr={cfg.sft_lr}"])
    student, teacher = merge_sft(paths, cfg.student_step), paths["ckpt"] / "stage1_merged"
    _say(f"[3/5] stage 2: RL for {cfg.rl_steps} steps (TRACE official, OPD from the step-{cfg.sft_steps} teacher)")
    t = time.perf_counter()
    run_stage2(paths, steps=cfg.rl_steps, resume=cfg.rl_resume, teacher_fault_frac=cfg.teacher_fault_frac,
               overrides=[f"trainer.rollout_data_dir={out.resolve() / 'rollouts'}",
                          # an epoch of 2 steps: references tighten at its end, within the demo
                          f"data.train_batch_size={cfg.rl_batch}", f"data.train_max_samples={cfg.rl_prompts}",
                          # a 4-box call is ~150 tokens with digit-level number tokens
                          f"hyperseyes.agent_loop.max_tokens_per_turn={cfg.max_new_tokens}"],
               env={"STAGE1_MODEL": str(student), "TEACHER_PATH": str(teacher)})
    rl_model = merge_actor(paths, cfg.rl_steps)
    timings["rl_s"] = time.perf_counter() - t
    _say("[4/5] evaluation of base / SFT / RL, served, next to the scripted strategies")
    t = time.perf_counter()
    models = {"base": paths["model"], f"sft-step{cfg.student_step}": student, f"rl-step{cfg.rl_steps}": rl_model}
    by_run = asyncio.run(_evaluate_models(paths["index"].parent / "data" / "items.jsonl", paths["index"], models,
                                          out / "eval", cfg.max_new_tokens, rl_environment(), cfg.eval_limit))
    timings["eval_s"] = time.perf_counter() - t
    t = time.perf_counter()
    # the trained checkpoints only: the random base writes 0 % in evaluation and 256 tokens of noise a turn
    trained = {name: path for name, path in models.items() if name != "base"}
    probe = (format_probe(trained, paths["data"] / "sft" / "train.parquet", cfg.probe_conversations,
                          cfg.max_new_tokens) if cfg.probe_conversations else {})
    timings["format_probe_s"] = time.perf_counter() - t
    _say("[5/5] report")
    timings["total_s"] = time.perf_counter() - t0
    extra = {}
    if cfg.rl_resume:  # `make train-tiny`'s checks, read back from this run's own artefacts
        checks = summarize(paths, sft_model=student, rl_model=rl_model, cfg=cfg.model_dump(), timings=timings)
        extra = {"checks": checks["checks"], "checks_ok": checks["ok"], "checks_report": checks["report"]}
        print("\n".join(checks["report"]))
    return write_demo_report(out, cfg, by_run, stage2_metrics(paths), read_metrics(paths["logs"] / "stage1.jsonl"),
                             timings, {"format_probe": probe, **extra})


def write_demo_report(out: Path, cfg: DemoTrainConfig, by_run: dict[str, list], rl_rows: list[dict],
                      sft_rows: list[dict], timings: dict[str, float],
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """report/ (markdown + PNG) and summary.json; `extra`: more keys for summary.json."""
    from hyperseyes_verl.eval.report import render_markdown, run_summary, write_report
    from hyperseyes_verl.eval.strategies import NOTICE

    runs = [run_summary(name, rs, {"scripted": name.startswith("scripted-")}) for name, rs in by_run.items()]
    validity = {name: turn_validity(rs) for name, rs in by_run.items() if not name.startswith("scripted-")}
    notes = [NOTICE, "Rows base / sft / rl are the tiny model's checkpoints served with `hyperseyes serve-model`; "
             "scripted-* rows are scripts, kept as reference points.",
             "Every run is evaluated in the RL stage's budgets (stage2_rl_tiny_cpu.yaml). "
             f"{'The first %d' % cfg.eval_limit if cfg.eval_limit else 'Every'} demo question(s) are evaluated; "
             "most of them are also in the SFT / RL training data, so accuracy "
             "here measures what the model absorbed, not generalisation."]
    report_dir = out / "report"
    paths = write_report(runs, report_dir, title="HyperEyes demo: a tiny model trained for real", notes=notes)
    sft_loss = [(r["step"], r.get("train/loss")) for r in sft_rows]
    lines = ["", "## Assistant turns that parse (tool calls or an answer)", "",
             "attempted: the turn opens a `<tool_call>` or gives an `<answer>`; valid: it parses without an error.",
             "By turn: valid / turns of every episode's 1st, 2nd, ... assistant turn. The 1st turn answers the "
             "prompt the SFT data shows; later turns answer observations of the policy's own searches (see "
             "`searches with no hit` above: the SFT data, solved trajectories only, never shows an empty one).",
             "", *validity_table(validity)]
    probe = (extra or {}).get("format_probe") or {}
    if probe:
        lines += ["", f"## The format alone: turns generated on the first {cfg.probe_conversations} SFT "
                  "conversations' own context", "",
                  "Each assistant turn is generated greedily after the conversation's own messages (prompt, earlier "
                  "turns, observations with hits), so grounding plays no part (`hyperseyes_verl/demo/format_probe.py`)."
                  " Training data: what was learned, not generalisation.", "", *validity_table(probe)]
    lines += ["", "## Stage 2 per RL step", "", *rl_table(rl_rows)]
    plot = plot_rl(rl_rows, report_dir / "rl_steps.png")
    if plot:
        lines += ["", f"![RL steps]({plot.name})"]
    if sft_loss:
        lines += ["", "Stage-1 loss by step: " + ", ".join(f"{s} {v:.3f}" for s, v in sft_loss
                                                           if s in (1, cfg.student_step, cfg.sft_steps) or s % 20 == 0)]
    lines += ["", "Wall time on %d cores: " % (os.cpu_count() or 0) + ", ".join(
        f"{k[:-2]} {v:.0f} s" for k, v in timings.items())]
    md = Path(paths["markdown"])
    md.write_text(md.read_text() + "\n".join(lines) + "\n")
    summary = {"config": cfg.model_dump(), "timings": timings, "turn_validity": validity,
               "runs": {r["name"]: r["metrics"].get("overall", r["metrics"]) for r in runs},
               "rl_steps": rl_rows, "sft_loss": sft_loss, "report": str(md), "plot": str(plot) if plot else None,
               **(extra or {})}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(render_markdown(runs, "Summary").split("\n## ")[0])
    print("\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_argv(DemoTrainConfig, argv, "python -m hyperseyes_verl.demo.train",
                           __doc__.split("\n")[0])
    try:
        summary = train_demo(cfg)
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _say(f"report: {summary['report']}  summary: {Path(cfg.out) / 'summary.json'}  "
         f"({summary['timings']['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
