"""Stage 2 (RL, verl `main_ppo`) checks. Everything is resolved the way verl resolves it at run time: the agent
loop YAML through verl's `resolve_config_path`, the reward manager through verl's own loader, the trainer mode in
verl's TRAINER_REGISTRY, the advantage estimator and distillation loss in verl's registries (after the
hyperseyes plugin registered its names), and the config sections through verl's dataclasses and validate_config."""
from __future__ import annotations

import contextlib
import importlib
import sys

from omegaconf import DictConfig, OmegaConf

from hyperseyes_verl.recipes.checks_common import (
    as_file_list,
    check_backend_keys,
    check_fqn,
    check_hyperseyes_sections,
    check_image_token_cap,
    check_missing_values,
    check_model_dir,
    check_parquet,
    check_targets,
    count_rows,
    error_text,
    quiet,
    read_column,
    section_errors,
)
from hyperseyes_verl.recipes.compose import select
from hyperseyes_verl.recipes.report import Report

PLUGIN_MODULE = "hyperseyes_verl.verl.plugin"

RL_HINTS = {
    "actor_rollout_ref.model.path": "set MODEL_PATH (the merged stage-1 checkpoint) or pass actor_rollout_ref.model.path=...",
    "data.train_files": "set DATA_DIR / RL_TRAIN or pass data.train_files=<rl train parquet>",
    "data.val_files": "set DATA_DIR / RL_VAL or pass data.val_files=<rl val parquet>",
    "hyperseyes.agent_loop.backend.index_dir": "set INDEX_DIR (built by `hyperseyes index build`) or pass "
    "hyperseyes.agent_loop.backend.index_dir=...",
    "distillation.teacher_models.teacher_model.model_path": "set TEACHER_PATH or pass "
    "distillation.teacher_models.teacher_model.model_path=... (or distillation.enabled=false to train without OPD)",
}


def load_plugin(report: Report) -> None:
    try:
        import verl  # noqa: F401  (loads `verl.plugins` entry points, the hyperseyes one included)
        plugin = importlib.import_module(PLUGIN_MODULE)
        install = getattr(plugin, "install", None)
        if callable(install):
            install()
    except Exception as exc:
        report.fail("plugin", f"{PLUGIN_MODULE} failed to load ({error_text(exc)}): hyperseyes names (trainer mode, "
                              "estimator, distillation loss) will be unknown to verl")


def plugin_errors(report: Report) -> None:
    """Registrations the plugin attempted in this process and that failed (verl would swallow them)."""
    plugin = sys.modules.get(PLUGIN_MODULE)
    for error in (getattr(plugin, "registration_errors", lambda: [])() if plugin else []):
        report.fail("plugin", error.strip().splitlines()[0])


def check_agent_settings(cfg: DictConfig, report: Report, trees: dict) -> None:
    """The agent loop's own settings model (`hyperseyes.agent_loop` + extra keys of its YAML entry)."""
    try:
        import hyperseyes_verl.verl.agent_loop  # noqa: F401 - what verl imports: refuse a module that cannot load
        from hyperseyes_verl.config import section_from_mapping
    except Exception as exc:
        report.fail("agent_loop", f"hyperseyes_verl.verl.agent_loop cannot be imported ({error_text(exc)})")
        return
    extra = {}
    default = select(cfg, "actor_rollout_ref.rollout.agent.default_agent_loop")
    for entries in (v for k, v in trees.items() if k.startswith("agent_loop_config")):
        for entry in entries or []:
            if isinstance(entry, dict) and entry.get("name") == default:
                extra = {k: v for k, v in entry.items() if k not in ("name", "_target_")}
    backend_node = select(cfg, "hyperseyes.agent_loop.backend", None)
    if isinstance(backend_node, dict) and backend_node.get("type") == "embedded" \
            and not backend_node.get("index_dir") and "backend" not in extra:
        report.fail("search", "the embedded search backend has no index: "
                    + RL_HINTS["hyperseyes.agent_loop.backend.index_dir"])
        return
    try:
        settings = section_from_mapping("agent_loop", select(cfg, "hyperseyes.agent_loop", None), extra)
    except Exception as exc:
        report.fail("agent_loop", f"hyperseyes.agent_loop is rejected by the agent loop: {error_text(exc)}")
        return
    check_image_token_cap(settings.max_image_tokens, "hyperseyes.agent_loop.max_image_tokens", report)
    check_episode_tokens(cfg, settings, report)
    backend = settings.backend or {}
    if not backend:
        report.fail("search", "hyperseyes.agent_loop.backend is not set: the agent loop has no search backend "
                              "(set backend.type=embedded and backend.index_dir=INDEX_DIR)")


def check_rl_data(cfg: DictConfig, report: Report) -> dict[str, list[str]]:
    prompt_key = select(cfg, "data.prompt_key", "prompt")
    image_key = select(cfg, "data.image_key", "images")
    required = {
        "data_source": (), prompt_key: (), image_key: (), "agent_name": (),
        "reward_model": ("ground_truth",),
        "extra_info": ("index", "split", "ref_rounds", "ref_searches"),
    }
    found = {}
    for key in ("data.train_files", "data.val_files"):
        if OmegaConf.is_missing(cfg, key) or select(cfg, key) is None:
            continue  # reported as unset
        found[key] = check_parquet(as_file_list(select(cfg, key)), key, report, required)
    check_row_counts(cfg, found, report)
    return found


def check_row_counts(cfg: DictConfig, found: dict[str, list[str]], report: Report) -> None:
    """verl drops the train loader's last partial batch and asserts both loaders are non-empty at startup."""
    batch = select(cfg, "data.train_batch_size", 0) or 0
    for key, need in (("data.train_files", batch), ("data.val_files", 1)):
        files = found.get(key) or []  # the files check_parquet found readable
        if not files:
            continue
        rows = count_rows(files)
        if rows < need:
            report.fail("data", f"{key} has {rows} rows, fewer than " + (
                f"one batch (data.train_batch_size = {batch}): verl drops the partial batch and stops with "
                "'Train dataloader is empty!'; add rows or lower data.train_batch_size" if key == "data.train_files"
                else "1: verl stops with 'Validation dataloader is empty!'; point it at a non-empty file"))


def check_agent_loop(cfg: DictConfig, report: Report, data_files: dict[str, list[str]], trees: dict) -> None:
    from verl.experimental.agent_loop import agent_loop as verl_agent_loop
    from verl.utils.import_utils import resolve_config_path

    names = set(verl_agent_loop._agent_loop_registry)  # built-ins (and names registered by the plugin)
    key = "actor_rollout_ref.rollout.agent.agent_loop_config_path"
    path = select(cfg, key)
    if path:
        try:
            resolved = resolve_config_path(str(path))
            entries = OmegaConf.to_container(OmegaConf.load(resolved), resolve=True)
        except Exception as exc:
            report.fail("agent_loop", f"{key} = {path!r} cannot be loaded ({error_text(exc)}): pass an absolute path "
                                      "to hyperseyes_verl/verl/agent_loop.yaml")
            entries = None
        if entries is not None:
            if not isinstance(entries, list):
                report.fail("agent_loop", f"{key}: {resolved} must be a YAML list of {{name, _target_}} entries")
                entries = []
            trees[f"agent_loop_config ({path})"] = entries
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict) or "name" not in entry or "_target_" not in entry:
                    report.fail("agent_loop", f"{resolved} entry {i} = {entry!r} needs both `name` and `_target_`")
                    continue
                cls = check_fqn(entry["_target_"], f"{resolved}[{entry['name']}]._target_", report, "agent loop")
                if cls is not None:
                    from verl.experimental.agent_loop.agent_loop import AgentLoopBase

                    if not (isinstance(cls, type) and issubclass(cls, AgentLoopBase)):
                        report.fail("agent_loop", f"{entry['_target_']} is not a verl AgentLoopBase subclass")
                names.add(entry["name"])
    default = select(cfg, "actor_rollout_ref.rollout.agent.default_agent_loop")
    if default not in names:
        report.fail("agent_loop", f"actor_rollout_ref.rollout.agent.default_agent_loop = {default!r} is not a "
                                  f"registered agent loop (known: {sorted(names)}); check {key}")
    for data_key, files in data_files.items():
        wanted = {n for n in read_column(files, "agent_name") if n} if files else set()
        for name in sorted(wanted - names):
            report.fail("agent_loop", f"{data_key}: rows ask for agent_name={name!r}, which is not registered "
                                      f"(known: {sorted(names)}); set {key}")


def check_reward(cfg: DictConfig, report: Report) -> None:
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    try:  # verl's own loader (omega_conf_to_dataclass(cfg.reward) itself fails in verl 0.9.1: super().__post_init__)
        cls = resolve_reward_manager_cls(cfg)
    except Exception as exc:
        m = select(cfg, "reward.reward_manager") or {}
        report.fail("reward", f"reward manager {m.get('name')!r} (source {m.get('source')}, module "
                              f"{(m.get('module') or {}).get('path')}) cannot be loaded by verl ({error_text(exc)})")
        return
    if not (isinstance(cls, type) and issubclass(cls, RewardManagerBase)):
        report.fail("reward", f"reward manager {cls!r} is not a verl RewardManagerBase subclass")
    # hyperseyes.trace.mode: checked with its section (check_hyperseyes_sections, TraceConfig)


def check_trainer_mode(cfg: DictConfig, report: Report) -> None:
    if not select(cfg, "trainer.use_v1", True):
        report.note("trainer.use_v1=false: the legacy trainer has no hooks; TRACE tightening and HDPO need V1")
        return
    mode = select(cfg, "trainer.v1.trainer_mode")
    try:
        from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY
    except Exception as exc:
        report.fail("trainer", f"verl's V1 trainer cannot be imported ({error_text(exc)}): "
                               "pip install TransferQueue pyzmq msgspec")
        return
    if mode not in TRAINER_REGISTRY:
        report.fail("trainer", f"trainer.v1.trainer_mode = {mode!r} is not registered (known: "
                               f"{sorted(TRAINER_REGISTRY)}); it is registered by the hyperseyes plugin "
                               "(hyperseyes_verl.verl.trainer) — is the package installed?")


def check_rollout_names(cfg: DictConfig, report: Report) -> None:
    """The student's and the teacher's rollout backends are known to verl's replica registry in this process."""
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    known = sorted(RolloutReplicaRegistry._registry)
    keys = ["actor_rollout_ref.rollout.name"]
    if select(cfg, "distillation.enabled", False):
        keys += [f"distillation.teacher_models.{t}.inference.name"
                 for t in (select(cfg, "distillation.teacher_models", {}) or {})]
    for key in keys:
        name = select(cfg, key)
        if name is not None and name not in known:
            hint = (" (the CPU runtime's HF rollout: run with HYPERSEYES_CPU_RUNTIME=1, as "
                    "recipes/run_hyperseyes_tiny_cpu.sh does)" if name == "hf" else "")
            report.fail("rollout", f"{key} = {name!r} is not a registered rollout backend (known: {known}){hint}")


def check_estimator(cfg: DictConfig, report: Report) -> None:
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    with contextlib.suppress(Exception):  # hyperseyes registers `hdpo` when verl's V1 trainer package loads
        importlib.import_module("verl.trainer.ppo.v1")

    name = select(cfg, "algorithm.adv_estimator")
    name = getattr(name, "value", name)
    if name not in ("gae", "grpo") and name not in ADV_ESTIMATOR_REGISTRY:
        report.fail("algorithm", f"algorithm.adv_estimator = {name!r} is not a registered advantage estimator "
                                 f"(known: {sorted(set(ADV_ESTIMATOR_REGISTRY) | {'gae', 'grpo'})})")


def check_distillation(cfg: DictConfig, report: Report, allow_missing_models: bool) -> None:
    manager = select(cfg, "actor_rollout_ref.rollout.agent.agent_loop_manager_class")
    if manager:
        check_fqn(manager, "actor_rollout_ref.rollout.agent.agent_loop_manager_class", report, "agent loop manager")
    if not select(cfg, "distillation.enabled", False):
        return
    from verl.trainer.distillation.losses import get_distillation_loss_settings
    from verl.utils.config import omega_conf_to_dataclass

    mode = select(cfg, "distillation.distillation_loss.loss_mode")
    try:
        get_distillation_loss_settings(mode)
    except Exception as exc:
        report.fail("distillation", f"distillation.distillation_loss.loss_mode = {mode!r} is not registered "
                                    f"({error_text(exc)}); hyperseyes modes are registered by its plugin")
        return
    if select(cfg, "trainer.v1.trainer_mode") == "hyperseyes_sync":
        try:
            from hyperseyes_verl.config import section_from_mapping
            from hyperseyes_verl.verl.trainer import resolve_opd_config

            # OPD mode and loss mode must agree (else the term counts twice or never); the section alone, so
            # another section's error is reported once, with that section
            resolve_opd_config(cfg, section_from_mapping("opd", select(cfg, "hyperseyes.opd", None)))
        except ImportError:
            pass  # reported by the plugin / trainer-registry checks
        except ValueError as exc:
            report.fail("opd", section_errors(exc, "hyperseyes.opd"))
    teachers = select(cfg, "distillation.teacher_models", {}) or {}
    usable = {k: v for k, v in teachers.items() if not (k == "teacher_model" and len(teachers) > 1)}
    for name, teacher in usable.items():
        key = f"distillation.teacher_models.{name}.model_path"
        if not (teacher or {}).get("model_path"):
            report.fail("distillation", f"distillation.enabled=true but {key} is not set: set TEACHER_PATH "
                                            "(or distillation.enabled=false to train without OPD)")
            continue
        check_model_dir(teacher["model_path"], key, report, allow_missing_models)
    if any(p.check in ("distillation", "unset") for p in report.problems):
        return
    try:
        quiet(omega_conf_to_dataclass, cfg.distillation)  # verl's own checks: pool size = teacher world size, ...
    except Exception as exc:
        report.fail("distillation", f"verl rejects the distillation section: {error_text(exc)}")


def check_dataclasses(cfg: DictConfig, report: Report, model_ok: bool) -> None:
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    sections = ["actor_rollout_ref.rollout", "algorithm"] + (["actor_rollout_ref.model"] if model_ok else [])
    for key in sections:
        try:
            obj = quiet(omega_conf_to_dataclass, OmegaConf.select(cfg, key))
        except Exception as exc:
            report.fail("verl", f"{key} is rejected by verl's config class: {error_text(exc)}")
            continue
        if key == "actor_rollout_ref.model":
            vision = getattr(obj.hf_config, "vision_config", None)
            if vision is not None and obj.processor is None:
                report.fail("model", f"actor_rollout_ref.model.path = {obj.path!r} is a vision-language model but "
                                     "no processor loads (transformers needs torchvision for Qwen-VL processors): "
                                     "verl would silently train it as text-only; install torchvision")
    try:
        from verl.trainer.ppo.utils import need_critic, need_reference_policy

        quiet(validate_config, cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    except Exception as exc:
        report.fail("verl", f"verl.utils.config.validate_config rejects the config: {error_text(exc)}")


def gpu_counts(cfg: DictConfig) -> dict[str, int]:
    rollout_world = (select(cfg, "actor_rollout_ref.rollout.tensor_model_parallel_size", 1)
                     * select(cfg, "actor_rollout_ref.rollout.data_parallel_size", 1)
                     * select(cfg, "actor_rollout_ref.rollout.pipeline_model_parallel_size", 1))
    teacher = 0
    if select(cfg, "distillation.enabled", False):
        teacher = select(cfg, "distillation.n_gpus_per_node", 0) * select(cfg, "distillation.nnodes", 0)
    reward_pool = 0
    if select(cfg, "reward.reward_model.enable", False) and select(cfg, "reward.reward_model.enable_resource_pool"):
        reward_pool = select(cfg, "reward.reward_model.n_gpus_per_node", 0) * select(cfg, "reward.reward_model.nnodes", 0)
    train = select(cfg, "trainer.n_gpus_per_node", 0) * select(cfg, "trainer.nnodes", 0)
    return {"train": train, "rollout_replica": rollout_world, "teacher": teacher, "reward": reward_pool,
            "total": train + teacher + reward_pool}


def check_gpu_arithmetic(cfg: DictConfig, report: Report, total_gpus: int | None) -> None:
    g = gpu_counts(cfg)
    per_node = select(cfg, "trainer.n_gpus_per_node", 0)
    tp = select(cfg, "actor_rollout_ref.rollout.tensor_model_parallel_size", 1)
    if g["train"] <= 0:
        report.fail("gpus", "trainer.n_gpus_per_node × trainer.nnodes must be positive")
        return
    if tp > per_node:
        report.fail("gpus", f"actor_rollout_ref.rollout.tensor_model_parallel_size = {tp} exceeds "
                            f"trainer.n_gpus_per_node = {per_node}: tensor parallelism must stay inside one node")
    if g["train"] % g["rollout_replica"]:
        report.fail("gpus", f"rollout replica size (TP×DP×PP = {g['rollout_replica']}) must divide the trainer's "
                            f"{g['train']} GPUs (trainer.n_gpus_per_node × trainer.nnodes)")
    sp = select(cfg, "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size", 1) or 1
    if g["train"] % sp:
        report.fail("gpus", f"ulysses_sequence_parallel_size = {sp} must divide the {g['train']} trainer GPUs")
    n = select(cfg, "actor_rollout_ref.rollout.n", 1)
    batch = select(cfg, "data.train_batch_size", 0)
    mini = select(cfg, "actor_rollout_ref.actor.ppo_mini_batch_size", 0)
    if mini <= 0 or batch % mini:
        report.fail("batch", f"data.train_batch_size = {batch} must be a multiple of "
                             f"actor_rollout_ref.actor.ppo_mini_batch_size = {mini} (both count prompts)")
    elif (mini * n) % (g["train"] // sp or 1):
        report.fail("batch", f"ppo_mini_batch_size × rollout.n = {mini} × {n} = {mini * n} trajectories must be "
                             f"divisible by the data-parallel size {g['train'] // sp}")
    if select(cfg, "distillation.enabled", False):
        teacher_tp = select(cfg, "distillation.teacher_models.teacher_model.inference.tensor_model_parallel_size", 1)
        teacher_per_node = select(cfg, "distillation.n_gpus_per_node", 0)
        if teacher_tp and teacher_per_node and teacher_tp > teacher_per_node:
            report.fail("gpus", f"teacher tensor_model_parallel_size = {teacher_tp} exceeds "
                                f"distillation.n_gpus_per_node = {teacher_per_node}")
    if total_gpus is not None and g["total"] > total_gpus:
        report.fail("gpus", f"the run needs {g['total']} GPUs (trainer {g['train']} + teacher {g['teacher']} + "
                            f"reward model {g['reward']}) but only {total_gpus} are available (--total-gpus)")


# The paper's trajectories: 2.2 tool rounds on average, up to 8, each image_search cutting about 6 crops.
PAPER_MEAN_ROUNDS, PAPER_MAX_ROUNDS, PAPER_CROPS_PER_ROUND = 2.2, 8, 6
CHARS_PER_TOKEN = 4  # English search results; the observation text is an estimate, the image tokens are exact


def processor_factor(model_path) -> tuple[int, str]:
    """Pixels per visual-token side (patch × merge) from the model's processor config, else Qwen2.5-VL's 28."""
    import json
    import os

    for name, section in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        try:
            with open(os.path.join(str(model_path or ""), name)) as f:
                pc = json.load(f)
            pc = pc[section] if section else pc
            return int(pc["patch_size"]) * int(pc["merge_size"]), f"the model's {name}"
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return 28, "Qwen2.5-VL's 14×2: no processor config to read"


def episode_tokens(settings, factor: int, rounds: float, crops_per_round: int) -> dict[str, int]:
    """Response tokens of an episode of `rounds` tool rounds of `crops_per_round` crops at their largest: each crop
    is resized to `crop_max_side` and then capped at `max_image_tokens` (the agent loop's fit_image_tokens).
    Text is bounded by the per-turn cap (assistant turns) and estimated for the observations (hits per crop and
    query × snippet length)."""
    ugs = settings.ugs
    side = max(factor, round(ugs.crop_max_side / factor) * factor) // factor
    crop = side * side  # a square crop at crop_max_side is the most tokens a crop can take
    if settings.max_image_tokens is not None:
        crop = min(crop, settings.max_image_tokens)
    crop += 2  # vision start / end
    from hyperseyes_verl.ugs.types import MAX_TOKENS_PER_TURN

    turn = settings.max_tokens_per_turn or MAX_TOKENS_PER_TURN
    # per crop: its line and top_k hits (title, url ~140 chars + snippet); plus one text query's hits per round
    obs_text = (crops_per_round + 1) * (60 + ugs.top_k * (140 + ugs.snippet_chars)) // CHARS_PER_TOKEN
    per_round = crops_per_round * crop + obs_text + turn
    return {"crop": crop, "per_round": per_round, "obs_text": obs_text, "turn": turn,
            "total": int(rounds * per_round + turn)}  # + the answer turn


def check_episode_tokens(cfg: DictConfig, settings, report: Report) -> None:
    """Report the worst-case response tokens of the paper's trajectories against the response budget; a note
    (not a failure) when they do not fit: the episode then ends as `length`, truncated."""
    budget = select(cfg, "actor_rollout_ref.rollout.response_length", None) or select(
        cfg, "data.max_response_length", None)
    if not isinstance(budget, int) or budget <= 0:
        return
    factor, source = processor_factor(select(cfg, "actor_rollout_ref.model.path", None))
    ugs = settings.ugs
    crops = min(PAPER_CROPS_PER_ROUND, ugs.max_calls_per_turn * ugs.max_boxes_per_call)
    max_rounds = min(PAPER_MAX_ROUNDS, ugs.max_tool_rounds)
    mean, worst = (episode_tokens(settings, factor, r, crops) for r in (PAPER_MEAN_ROUNDS, max_rounds))
    fit = max(int((budget - mean["turn"]) // mean["per_round"]), 0)
    line = (f"≤ {mean['crop']} tokens per crop (crop_max_side {ugs.crop_max_side}, cap {settings.max_image_tokens}, "
            f"factor {factor}: {source}); a {crops}-crop round ≈ {mean['per_round']} (+ text ≈ {mean['obs_text']}, "
            f"turn ≤ {mean['turn']}); episode {PAPER_MEAN_ROUNDS} rounds ≈ {mean['total']}, {max_rounds} rounds ≈ "
            f"{worst['total']} vs response budget {budget}: {fit} round(s) fit")
    report.note(f"episode tokens (worst case): {line}")
    if worst["total"] > budget:
        which = "even the average" if mean["total"] > budget else f"the longest ({max_rounds} rounds)"
        report.note(f"WARNING: the paper's trajectories do not fit the response budget: {which} needs "
                    f"≈ {worst['total'] if mean['total'] <= budget else mean['total']} tokens, "
                    f"actor_rollout_ref.rollout.response_length = {budget} holds {fit} round(s) of {crops} crops; "
                    f"longer episodes end as `length` (truncated). Raise data.max_response_length (≈ {worst['total']} "
                    "for 8 rounds), or lower hyperseyes.agent_loop.ugs.crop_max_side / max_tool_rounds")


def check_multi_turn(cfg: DictConfig, report: Report) -> None:
    calls = select(cfg, "actor_rollout_ref.rollout.multi_turn.max_parallel_calls", 1)
    if calls < 2:
        report.fail("rollout", f"actor_rollout_ref.rollout.multi_turn.max_parallel_calls = {calls}: verl executes "
                               "only that many tool calls per turn and silently drops the rest while their tokens "
                               "stay in the sequence; HyperEyes issues several per turn (set it to e.g. 32)")
    max_len = select(cfg, "actor_rollout_ref.rollout.max_model_len")
    prompt, response = select(cfg, "data.max_prompt_length", 0), select(cfg, "data.max_response_length", 0)
    if max_len and prompt + response > max_len:
        report.fail("rollout", f"data.max_prompt_length + data.max_response_length = {prompt + response} exceeds "
                               f"actor_rollout_ref.rollout.max_model_len = {max_len}")


def rl_plan(cfg: DictConfig, data_files: dict[str, list[str]]) -> list[tuple[str, str]]:
    def rows(key):
        files = data_files.get(key) or []
        return f"{count_rows(files)} rows" if files else "-"

    g = gpu_counts(cfg)
    s = lambda k, d=None: select(cfg, k, d)  # noqa: E731
    n, batch = s("actor_rollout_ref.rollout.n"), s("data.train_batch_size")
    teacher = s("distillation.teacher_models.teacher_model.model_path")
    if s("distillation.distillation_loss.loss_mode") == "opd_in_advantage":
        form = f"official advantage shaping, β {s('hyperseyes.opd.beta', 0.05)}"
    else:
        form = (f"PG-OPD loss {s('distillation.distillation_loss.loss_mode')}, "
                f"coef {s('distillation.distillation_loss.distillation_loss_coef')}")
    gated = "gated" if "Gated" in str(s("actor_rollout_ref.rollout.agent.agent_loop_manager_class", "")) else "ungated"
    opd = f"on: {form}, teacher {teacher} ({gated}, pool {g['teacher']} GPUs)" if s("distillation.enabled") else "off"
    return [
        ("model", str(s("actor_rollout_ref.model.path"))),
        ("train data", f"{s('data.train_files')} ({rows('data.train_files')})"),
        ("val data", f"{s('data.val_files')} ({rows('data.val_files')})"),
        ("steps", f"{s('trainer.total_training_steps')} (val every {s('trainer.test_freq')}, save every {s('trainer.save_freq')})"),
        ("batch", f"{batch} prompts × n={n} = {batch * n if batch and n else '?'} trajectories; "
                  f"mini-batch {s('actor_rollout_ref.actor.ppo_mini_batch_size')} prompts"),
        ("lengths", f"prompt ≤ {s('data.max_prompt_length')}, response (all turns) ≤ {s('data.max_response_length')}, "
                    f"per turn ≤ {s('hyperseyes.agent_loop.max_tokens_per_turn', '-')}, images ≤ {s('actor_rollout_ref.rollout.limit_images', '-')}"),
        ("sampling", f"T={s('actor_rollout_ref.rollout.temperature')} top_p={s('actor_rollout_ref.rollout.top_p')}; "
                     f"val T={s('actor_rollout_ref.rollout.val_kwargs.temperature')} top_p={s('actor_rollout_ref.rollout.val_kwargs.top_p')} n={s('actor_rollout_ref.rollout.val_kwargs.n')}"),
        ("agent loop", f"{s('actor_rollout_ref.rollout.agent.default_agent_loop')} "
                       f"(parallel calls ≤ {s('actor_rollout_ref.rollout.multi_turn.max_parallel_calls')})"),
        ("reward", f"{s('reward.reward_manager.name')} ({s('reward.reward_manager.source')}), "
                   f"TRACE mode {s('hyperseyes.trace.mode', 'default')}"),
        ("advantage", f"{s('algorithm.adv_estimator')}, clip {s('actor_rollout_ref.actor.clip_ratio_low')}/"
                      f"{s('actor_rollout_ref.actor.clip_ratio_high')}, IS {s('algorithm.rollout_correction.rollout_is')} "
                      f"≤ {s('algorithm.rollout_correction.rollout_is_threshold')}, kl_loss {s('actor_rollout_ref.actor.use_kl_loss')}"),
        ("optimizer", f"lr {s('actor_rollout_ref.actor.optim.lr')} {s('actor_rollout_ref.actor.optim.lr_scheduler_type')}, "
                      f"betas {s('actor_rollout_ref.actor.optim.betas')}, wd {s('actor_rollout_ref.actor.optim.weight_decay')}"),
        ("OPD", opd),
        ("trainer", f"{'V1 ' + str(s('trainer.v1.trainer_mode')) if s('trainer.use_v1') else 'legacy'}"),
        ("GPUs", f"trainer {s('trainer.nnodes')}×{s('trainer.n_gpus_per_node')} = {g['train']} (rollout TP "
                 f"{s('actor_rollout_ref.rollout.tensor_model_parallel_size')}), teacher {g['teacher']}, total {g['total']}"),
    ]


def validate_rl(cfg: DictConfig, report: Report, allow_missing_models: bool, total_gpus: int | None) -> None:
    check_missing_values(cfg, report, RL_HINTS)
    load_plugin(report)
    check_targets(cfg, report)
    model_ok = False
    if not OmegaConf.is_missing(cfg, "actor_rollout_ref.model.path"):
        model_ok = check_model_dir(select(cfg, "actor_rollout_ref.model.path"), "actor_rollout_ref.model.path",
                                   report, allow_missing_models)
    data_files = check_rl_data(cfg, report)
    trees = {"hyperseyes": select(cfg, "hyperseyes", {}) or {}}
    checks = [
        ("agent loop", lambda: check_agent_loop(cfg, report, data_files, trees)),
        ("agent settings", lambda: check_agent_settings(cfg, report, trees)),
        ("hyperseyes sections", lambda: check_hyperseyes_sections(cfg, report, "rl")),
        ("reward", lambda: check_reward(cfg, report)),
        ("trainer mode", lambda: check_trainer_mode(cfg, report)),
        ("rollout backends", lambda: check_rollout_names(cfg, report)),
        ("estimator", lambda: check_estimator(cfg, report)),
        ("distillation", lambda: check_distillation(cfg, report, allow_missing_models)),
        ("multi-turn", lambda: check_multi_turn(cfg, report)),
        ("gpu arithmetic", lambda: check_gpu_arithmetic(cfg, report, total_gpus)),
    ]
    for name, check in checks:
        try:
            check()
        except Exception as exc:  # a check that crashes is itself a finding, never a traceback
            report.fail("internal", f"the {name} check crashed: {error_text(exc)}")
    if not any(p.check == "unset" for p in report.problems):
        check_dataclasses(cfg, report, model_ok)
    check_backend_keys(trees, report)
    plugin_errors(report)
    report.plan = rl_plan(cfg, data_files)
