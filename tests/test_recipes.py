"""Dry-run validation of the shipped two-stage recipes (recipes/*.yaml) on a CPU box, and of deliberately
broken variants: each must fail with a message naming the offending key or file."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hyperseyes_verl.recipes.validate import ValidateOptions, validate_recipe

pytestmark = pytest.mark.verl

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
AGENT_LOOP_YAML = ROOT / "hyperseyes_verl" / "verl" / "agent_loop.yaml"


def _png(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def write_rl_parquet(path: Path, n: int = 32, drop: tuple[str, ...] = (), drop_extra: tuple[str, ...] = ()) -> str:
    extra = {"index": 0, "split": "train", "question": "q", "answers": ["a"], "ref_rounds": 1, "ref_searches": 2,
             "entity_count": 1, "domain": "d"}
    rows = [{
        "data_source": "hyperseyes_demo",
        "prompt": [{"role": "user", "content": "<image>Who is shown?"}],
        "images": [{"bytes": _png()}],
        "reward_model": {"style": "rule", "ground_truth": "a"},
        "agent_name": "hyperseyes_agent",
        "extra_info": {k: (i if k == "index" else v) for k, v in extra.items() if k not in drop_extra},
    } for i in range(n)]
    rows = [{k: v for k, v in r.items() if k not in drop} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def write_sft_parquet(path: Path, n: int = 2) -> str:
    messages = [
        {"role": "user", "content": "<image>Which landmark is this?"},
        {"role": "assistant", "content": '<reason>search it</reason><tool_call>{"name": "image_search", '
                                         '"arguments": {"image_id": "img_0"}}</tool_call>'},
        {"role": "user", "content": "<image>result: Eiffel Tower"},
        {"role": "assistant", "content": "<reason>found</reason><answer>Eiffel Tower</answer>"},
    ]
    rows = [{"messages": messages, "images": [{"bytes": _png(size=(900, 700))}, {"bytes": _png((0, 90, 0))}]}
            for _ in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_qwen25_dir):
    d = tmp_path_factory.mktemp("recipes")
    (d / "index").mkdir()
    return {
        "model": tiny_qwen25_dir,
        "train": write_rl_parquet(d / "rl_train.parquet"),
        "val": write_rl_parquet(d / "rl_val.parquet", n=2),
        "no_agent_name": write_rl_parquet(d / "rl_no_agent.parquet", drop=("agent_name",)),
        "no_ref": write_rl_parquet(d / "rl_no_ref.parquet", drop_extra=("ref_rounds",)),
        "short": write_rl_parquet(d / "rl_short.parquet", n=31),
        "sft": write_sft_parquet(d / "sft.parquet", n=8),  # one global batch (8): fewer rows train 0 steps
        "index": str(d / "index"),
        "dir": d,
    }


def rl_overrides(files, **changes) -> tuple[str, ...]:
    base = {
        "actor_rollout_ref.model.path": files["model"],
        "data.train_files": files["train"],
        "data.val_files": files["val"],
        "distillation.teacher_models.teacher_model.model_path": files["model"],
        "actor_rollout_ref.rollout.agent.agent_loop_config_path": str(AGENT_LOOP_YAML),
        "hyperseyes.agent_loop.backend.index_dir": files["index"],
    }
    base.update(changes)
    return tuple(f"{k}={v}" for k, v in base.items() if v is not ...)


def validate_rl(files, *extra: str, allow_missing_models=False, **changes):
    return validate_recipe(ValidateOptions(stage="rl", config=RECIPES / "stage2_rl_30b.yaml",
                                           overrides=rl_overrides(files, **changes) + extra,
                                           allow_missing_models=allow_missing_models))


def test_shipped_rl_recipe_passes(files):
    report = validate_rl(files)
    assert report.ok, report.render()
    plan = dict(report.plan)
    assert plan["batch"].startswith("32 prompts × n=8 = 256 trajectories")
    assert "hyperseyes_sync" in plan["trainer"] and "official advantage shaping, β 0.05" in plan["OPD"]
    assert "gated" in plan["OPD"]
    assert "32 rows" in plan["train data"] and "trainer 2×8 = 16" in plan["GPUs"] and "total 24" in plan["GPUs"]


def test_small_preset_rl_recipe_passes(files):
    report = validate_recipe(ValidateOptions(stage="rl", config=RECIPES / "stage2_rl_small.yaml",
                                             overrides=rl_overrides(files), total_gpus=8))
    assert report.ok, report.render()


# Broken variants. The checks are independent, so several faults go into one validation (keeps the suite fast)
# and each must be reported with a message naming the bad key / value. A non-existent model with
# --allow-missing-models keeps verl's tokenizer loading out of these runs.
BROKEN_RL_GROUPS = {
    "targets, registries, rollout": [
        ("actor_rollout_ref.actor.optim._target_", "verl.workers.config.NoSuchOptimizerConfig", "import",
         "NoSuchOptimizerConfig"),
        ("algorithm.adv_estimator", "no_such_estimator", "algorithm", "'no_such_estimator' is not a registered"),
        ("trainer.v1.trainer_mode", "no_such_mode", "trainer", "'no_such_mode' is not registered"),
        ("actor_rollout_ref.rollout.multi_turn.max_parallel_calls", 1, "rollout", "max_parallel_calls = 1"),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", 16, "gpus", "tensor_model_parallel_size = 16"),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", 24, "batch", "ppo_mini_batch_size = 24"),
        ("data.train_files", "/nonexistent/rl_train.parquet", "data", "'/nonexistent/rl_train.parquet' does not exist"),
        ("hyperseyes.agent_loop.backend.index_dir", "/nonexistent/index", "search", "'/nonexistent/index' does not exist"),
        ("distillation.distillation_loss.loss_mode", "no_such_loss", "distillation", "'no_such_loss' is not registered"),
    ],
    "missing teacher, unset model": [
        ("distillation.teacher_models.teacher_model.model_path", "null", "distillation", "TEACHER_PATH"),
        ("actor_rollout_ref.model.path", "null", "unset", "actor_rollout_ref.model.path is required but unset"),
        ("hyperseyes.opd.mode", "loss", "opd", "contradicts"),  # shaping + PG-OPD: counted twice
    ],
    "teacher pool": [
        ("distillation.distillation_loss.loss_mode", "k3", "opd", "would distil every rollout"),
        ("distillation.teacher_models.teacher_model.inference.tensor_model_parallel_size", 3, "distillation",
         "must divide the distillation resource pool"),
    ],
}


@pytest.mark.parametrize("group", list(BROKEN_RL_GROUPS))
def test_broken_rl_variants_fail_clearly(files, group):
    faults = BROKEN_RL_GROUPS[group]
    changes = {"actor_rollout_ref.model.path": "/nonexistent/model",
               "distillation.teacher_models.teacher_model.model_path": "/nonexistent/teacher"}
    changes.update({key: value for key, value, _, _ in faults})
    report = validate_rl(files, allow_missing_models=True, **changes)
    for key, _, check, needle in faults:
        if check is not None:
            assert any(needle in m for m in report.messages(check)), f"{key}: {needle!r} not in\n{report.render()}"


def test_bad_model_path_and_missing_columns_fail(files):
    report = validate_rl(files, **{
        "actor_rollout_ref.model.path": "/nonexistent/model", "distillation.teacher_models.teacher_model.model_path": "/y",
        "data.train_files": files["no_agent_name"], "data.val_files": files["no_ref"]})
    assert any("'/nonexistent/model' does not exist" in m for m in report.messages("model")), report.render()
    msgs = report.messages("data")
    assert any("lacks column(s) ['agent_name']" in m for m in msgs), report.render()
    assert any("'extra_info' lacks field(s) ['ref_rounds']" in m for m in msgs), report.render()


def test_train_data_smaller_than_one_batch_fails(files):
    # verl drops the partial batch and asserts a non-empty loader only after the GPUs are allocated
    report = validate_rl(files, allow_missing_models=True, **{
        "actor_rollout_ref.model.path": "/x", "distillation.teacher_models.teacher_model.model_path": "/y",
        "data.train_files": files["short"]})
    assert any("has 31 rows, fewer than one batch (data.train_batch_size = 32)" in m
               for m in report.messages("data")), report.render()
    report = validate_rl(files, "data.train_batch_size=16", "actor_rollout_ref.actor.ppo_mini_batch_size=16",
                         allow_missing_models=True, **{"actor_rollout_ref.model.path": "/x",
                         "distillation.teacher_models.teacher_model.model_path": "/y", "data.train_files": files["short"]})
    assert not any("rows, fewer than" in m for m in report.messages("data")), report.render()


def test_web_backend_without_key_fails(files, monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    report = validate_rl(files, "hyperseyes.agent_loop.backend={type:serper}",
                         allow_missing_models=True, **{"actor_rollout_ref.model.path": "/x",
                         "distillation.teacher_models.teacher_model.model_path": "/y",
                         "hyperseyes.agent_loop.backend.index_dir": ...,
                         "hyperseyes.recipe.required": "[actor_rollout_ref.model.path]"})
    assert any("SERPER_API_KEY" in m for m in report.messages("search")), report.render()
    monkeypatch.setenv("SERPER_API_KEY", "test-key")
    report = validate_rl(files, "hyperseyes.agent_loop.backend={type:serper}",
                         allow_missing_models=True, **{"actor_rollout_ref.model.path": "/x",
                         "distillation.teacher_models.teacher_model.model_path": "/y",
                         "hyperseyes.agent_loop.backend.index_dir": ...,
                         "hyperseyes.recipe.required": "[actor_rollout_ref.model.path]"})
    assert not report.messages("search"), report.render()


def test_web_backend_replaces_the_embedded_node(files, monkeypatch):
    """The documented override `hyperseyes.agent_loop.backend={type:serper}` merges into the recipe's embedded
    node (index_dir: null stays behind): it must compose and validate without INDEX_DIR (issue #11, defect 2)."""
    monkeypatch.setenv("SERPER_API_KEY", "test-key")
    report = validate_rl(files, "hyperseyes.agent_loop.backend={type:serper}",
                         **{"hyperseyes.agent_loop.backend.index_dir": ...})
    assert not report.messages("search") and not report.messages("agent_loop") and not report.messages("unset"), \
        report.render()
    # `++` merges any backend's own keys into the node (a plain override may only set keys the node has)
    report = validate_rl(files, "++hyperseyes.agent_loop.backend={type:search_r1,url:'http://127.0.0.1:9'}",
                         **{"hyperseyes.agent_loop.backend.index_dir": ...})
    assert not report.messages("search") and not report.messages("agent_loop") and not report.messages("compose"), \
        report.render()
    from hyperseyes_verl.search.config import SerperConfig, parse_backend_config

    assert isinstance(parse_backend_config({"type": "serper", "index_dir": None}), SerperConfig)


def test_embedded_backend_without_index_names_index_dir(files):
    report = validate_rl(files, **{"hyperseyes.agent_loop.backend.index_dir": ...})
    assert any("INDEX_DIR" in m for m in report.messages("search")), report.render()
    # a real conflict (an index folder given to a web backend) is still refused by the dry run
    report = validate_rl(files, "++hyperseyes.agent_loop.backend={type:search_r1,url:'http://127.0.0.1:9',index_dir:/x}",
                         **{"hyperseyes.agent_loop.backend.index_dir": ...})
    assert any("index_dir" in m for m in report.messages("agent_loop")), report.render()


def test_unregistered_rollout_backend_fails_at_dry_run(files):
    # no HYPERSEYES_CPU_RUNTIME in this process: `hf` is unknown, and the message says how to get it
    report = validate_rl(files, "actor_rollout_ref.rollout.name=hf")
    assert any("'hf' is not a registered rollout backend" in m and "HYPERSEYES_CPU_RUNTIME=1" in m
               for m in report.messages("rollout")), report.render()


def test_unknown_override_key_fails_compose(files):
    report = validate_rl(files, "actor_rollout_ref.rollout.no_such_key=1")
    assert report.messages("compose") and "no_such_key" in report.messages("compose")[0]


def sft_options(files, config="stage1_sft_30b.yaml", *extra: str) -> ValidateOptions:
    overrides = (f"model.path={files['model']}", f"data.train_files={files['sft']}") + extra
    return ValidateOptions(stage="sft", config=RECIPES / config, overrides=overrides)


@pytest.mark.parametrize("config", ["stage1_sft_30b.yaml", "stage1_sft_small.yaml"])
def test_shipped_sft_recipes_pass(files, config):
    report = validate_recipe(sft_options(files, config))
    assert report.ok, report.render()
    lora = dict(report.plan)["LoRA"]
    assert "r=8 α=32" in lora and " 0 vision-tower linears" in lora


def test_sft_lora_on_vision_tower_and_bad_batch_fail(files):
    report = validate_recipe(sft_options(files, "stage1_sft_30b.yaml", "model.exclude_modules=null",
                                         "data.train_batch_size=7"))
    assert any("vision-tower linear layers" in m for m in report.messages("lora")), report.render()
    assert any("train_batch_size = 7" in m for m in report.messages("batch")), report.render()


def test_dry_run_reports_episode_tokens_and_warns_when_the_paper_trajectories_do_not_fit(files):
    from hyperseyes_verl.recipes.checks_rl import PAPER_MAX_ROUNDS

    shipped = validate_rl(files)
    assert shipped.ok, shipped.render()  # a warning, not a failure
    line = next(n for n in shipped.notes if n.startswith("episode tokens"))
    assert "≤ 1202 tokens per crop" in line and "factor 28: the model's processor_config.json" in line
    # the shipped budget holds the paper's average (2.2 rounds of 6 crops at the cap), not its longest episodes
    average = int(line.split("2.2 rounds ≈ ")[1].split(",")[0])
    assert "vs response budget 28672" in line and average <= 28672
    warning = [n for n in shipped.notes if n.startswith("WARNING")]
    assert len(warning) == 1 and "the longest (8 rounds)" in warning[0] and "response_length = 28672" in warning[0]
    # the release's 15000-token context (4096 + 12288 here) does not hold even the average
    tight = validate_rl(files, "data.max_response_length=12288")
    assert any("even the average" in n for n in tight.notes if n.startswith("WARNING")), tight.render()
    # the warning names the budget 8 rounds need; with it the warning goes away, one token less brings it back
    need = int(warning[0].split("data.max_response_length (≈ ")[1].split(" ")[0])
    assert need > 8 * 6 * 1200
    roomy = validate_rl(files, f"data.max_response_length={need}")
    assert roomy.ok and not [n for n in roomy.notes if n.startswith("WARNING")], roomy.render()
    assert f"{PAPER_MAX_ROUNDS} rounds" in next(n for n in roomy.notes if n.startswith("episode tokens"))
    tight = validate_rl(files, f"data.max_response_length={need - 1}")
    assert [n for n in tight.notes if n.startswith("WARNING")]
    # smaller crops fit more rounds in the same budget
    small = validate_rl(files, "+hyperseyes.agent_loop.ugs.crop_max_side=280")
    assert "≤ 102 tokens per crop" in next(n for n in small.notes if n.startswith("episode tokens"))
