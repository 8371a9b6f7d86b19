"""Stage 1 (SFT, verl `sft_trainer` with the engine config) checks: model and tokenizer/processor load through
verl's HFModelConfig, the LoRA placement is measured on the real architecture (built on the meta device: no
weights, no memory), the dataset class imports and tokenizes the first samples, and the batch fits the GPUs."""
from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from hyperseyes_verl.recipes.checks_common import (
    as_file_list,
    check_hyperseyes_sections,
    check_image_token_cap,
    check_missing_values,
    check_model_dir,
    check_parquet,
    check_targets,
    count_rows,
    error_text,
    quiet,
)
from hyperseyes_verl.recipes.compose import select
from hyperseyes_verl.recipes.report import Report

SFT_HINTS = {
    "model.path": "set MODEL_PATH (the base Qwen-VL checkpoint) or pass model.path=...",
    "data.train_files": "set DATA_DIR / SFT_TRAIN or pass data.train_files=<sft parquet>",
}
VISION_MARKERS = ("visual", "vision_tower", "vision_model")


def lora_coverage(hf_config, target_modules, exclude_modules) -> dict[str, int]:
    """How many nn.Linear modules LoRA would wrap, split into vision tower and language model (meta device)."""
    import torch
    import transformers

    with torch.device("meta"):
        try:
            model = transformers.AutoModelForImageTextToText.from_config(hf_config, attn_implementation="eager")
        except ValueError:
            model = transformers.AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager")
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if target_modules == "all-linear":
        chosen = [n for n in linear if not n.endswith("lm_head")]  # peft never adapts the output layer
    else:
        targets = [target_modules] if isinstance(target_modules, str) else list(target_modules or [])
        chosen = [n for n in linear if any(n == t or n.endswith("." + t) for t in targets)]
    if exclude_modules:
        if isinstance(exclude_modules, str):
            chosen = [n for n in chosen if not re.fullmatch(exclude_modules, n)]
        else:
            chosen = [n for n in chosen if not any(n == e or n.endswith("." + e) for e in exclude_modules)]
    vision = [n for n in chosen if any(v in n for v in VISION_MARKERS)]
    return {"vision": len(vision), "language": len(chosen) - len(vision), "linear_total": len(linear)}


def check_lora(cfg: DictConfig, model, report: Report) -> str:
    rank = select(cfg, "model.lora_rank", 0) or 0
    if rank <= 0:
        return "off (full fine-tuning)"
    try:
        import peft  # noqa: F401
    except ImportError:
        report.fail("lora", "model.lora_rank > 0 needs the `peft` package: pip install peft")
    exclude = select(cfg, "model.exclude_modules")
    if isinstance(exclude, str):
        try:
            re.compile(exclude)
        except re.error as exc:
            report.fail("lora", f"model.exclude_modules = {exclude!r} is not a valid regular expression ({exc})")
            return "invalid"
    summary = f"r={rank} α={select(cfg, 'model.lora_alpha')} targets={select(cfg, 'model.target_modules')} exclude={exclude}"
    if model is None:
        return summary
    try:
        cover = lora_coverage(model.hf_config, select(cfg, "model.target_modules"), exclude)
    except Exception as exc:
        report.note(f"LoRA placement not measured ({error_text(exc)})")
        return summary
    if cover["language"] == 0:
        report.fail("lora", f"LoRA ({summary}) wraps no language-model linear layer: fix model.target_modules")
    if cover["vision"] and select(cfg, "hyperseyes.sft.freeze_vision_tower", True):
        report.fail("lora", f"LoRA wraps {cover['vision']} vision-tower linear layers but the recipe keeps the "
                            "vision tower frozen: exclude them with model.exclude_modules='.*visual.*'")
    return f"{summary} → {cover['language']} language-model linears, {cover['vision']} vision-tower linears"


def check_samples(cfg: DictConfig, model, files: list[str], n: int, report: Report) -> None:
    """Tokenize the first `n` rows with the configured dataset class (the same call verl's trainer makes)."""
    from verl.trainer.sft_trainer import create_sft_dataset

    if n <= 0:
        return
    try:
        dataset = quiet(create_sft_dataset, files, cfg.data, model.tokenizer, model.processor, max_samples=n)
        for i in range(min(n, len(dataset))):
            item = quiet(dataset.__getitem__, i)
            if int(item["loss_mask"].sum()) == 0:
                report.fail("data", f"data.train_files row {i}: no assistant token carries loss (loss_mask all 0)")
    except Exception as exc:
        report.fail("data", f"the SFT dataset ({select(cfg, 'data.custom_cls.name') or 'MultiTurnSFTDataset'}) "
                            f"fails on the first {n} row(s) of {files}: {error_text(exc)}")


def sft_plan(cfg: DictConfig, files: list[str], rows: int, lora: str) -> list[tuple[str, str]]:
    s = lambda k, d=None: select(cfg, k, d)  # noqa: E731
    batch = s("data.train_batch_size") or 1
    steps = s("trainer.total_training_steps") or (rows // batch * (s("trainer.total_epochs") or 1) if rows else "?")
    gpus = (s("trainer.n_gpus_per_node") or 0) * (s("trainer.nnodes") or 0)
    return [
        ("model", str(s("model.path"))),
        ("LoRA", lora),
        ("train data", f"{s('data.train_files')} ({rows} rows)" if files else str(s("data.train_files"))),
        ("dataset", f"{s('data.custom_cls.name') or 'MultiTurnSFTDataset'}; images ≤ {s('data.max_image_tokens', '-')} tokens"),
        ("steps", f"{steps} ({s('trainer.total_epochs')} epoch(s), global batch {batch})"),
        ("lengths", f"max_length {s('data.max_length')} (truncation {s('data.truncation')}), "
                    f"dynamic bsz {s('data.use_dynamic_bsz')} ≤ {s('data.max_token_len_per_gpu')} tokens/GPU"),
        ("optimizer", f"lr {s('optim.lr')} {s('optim.lr_scheduler_type')} → ×{s('optim.min_lr_ratio')}, "
                      f"warm-up {s('optim.lr_warmup_steps_ratio')}, wd {s('optim.weight_decay')}"),
        ("GPUs", f"{s('trainer.nnodes')}×{s('trainer.n_gpus_per_node')} = {gpus}"),
        ("output", str(s("trainer.default_local_dir"))),
    ]


def validate_sft(cfg: DictConfig, report: Report, allow_missing_models: bool, total_gpus: int | None,
                 check_rows: int = 2) -> None:
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.import_utils import load_extern_object

    check_missing_values(cfg, report, SFT_HINTS)
    check_hyperseyes_sections(cfg, report, "sft")
    check_targets(cfg, report)
    model = None
    if not OmegaConf.is_missing(cfg, "model.path"):
        if check_model_dir(select(cfg, "model.path"), "model.path", report, allow_missing_models):
            try:
                model = quiet(omega_conf_to_dataclass, cfg.model)
            except Exception as exc:
                report.fail("model", f"verl's HFModelConfig rejects model section: {error_text(exc)}")
            if model is not None and getattr(model.hf_config, "vision_config", None) is not None and model.processor is None:
                report.fail("model", "the model is vision-language but no processor loads (Qwen-VL processors need "
                                     "torchvision): verl would train it as text-only; install torchvision")
    for key in ("optim", "engine", "checkpoint"):
        try:
            quiet(omega_conf_to_dataclass, OmegaConf.select(cfg, key))
        except Exception as exc:
            report.fail("verl", f"{key} is rejected by verl's config class: {error_text(exc)}")
    custom_path, custom_name = select(cfg, "data.custom_cls.path"), select(cfg, "data.custom_cls.name")
    dataset_ok = True
    if custom_path:
        try:
            load_extern_object(custom_path, custom_name)
        except Exception as exc:
            dataset_ok = False
            report.fail("import", f"data.custom_cls {custom_path}:{custom_name} cannot be loaded ({error_text(exc)})")
    from hyperseyes_verl.verl.sft_dataset import DEFAULT_MAX_IMAGE_TOKENS
    check_image_token_cap(select(cfg, "data.max_image_tokens", DEFAULT_MAX_IMAGE_TOKENS), "data.max_image_tokens",
                          report, custom_name or "MultiTurnSFTDataset")
    files = []
    if not OmegaConf.is_missing(cfg, "data.train_files") and select(cfg, "data.train_files") is not None:
        required = {select(cfg, "data.messages_key", "messages"): ()}
        files = check_parquet(as_file_list(select(cfg, "data.train_files")), "data.train_files", report, required)
    gpus = (select(cfg, "trainer.n_gpus_per_node", 0) or 0) * (select(cfg, "trainer.nnodes", 0) or 0)
    sp = select(cfg, "engine.ulysses_sequence_parallel_size", 1) or 1
    batch = select(cfg, "data.train_batch_size", 0) or 0
    if gpus <= 0 or gpus % sp:
        report.fail("gpus", f"trainer.n_gpus_per_node × trainer.nnodes = {gpus} must be a positive multiple of "
                            f"engine.ulysses_sequence_parallel_size = {sp}")
    elif batch % (gpus // sp):
        report.fail("batch", f"data.train_batch_size = {batch} must be divisible by the data-parallel size "
                             f"{gpus // sp} (each rank gets train_batch_size / dp samples)")
    if total_gpus is not None and gpus > total_gpus:
        report.fail("gpus", f"stage 1 needs {gpus} GPUs but only {total_gpus} are available (--total-gpus)")
    lora = check_lora(cfg, model, report)
    if model is not None and files and dataset_ok:
        check_samples(cfg, model, files, check_rows, report)
    rows = count_rows(files)
    check_steps(cfg, report, rows if files else None, batch, gpus // sp if gpus > 0 and not gpus % sp else 0)
    report.plan = sft_plan(cfg, files, rows, lora)


def check_steps(cfg: DictConfig, report: Report, rows: int | None, batch: int, dp: int) -> None:
    """A job that would train for 0 steps is refused: verl's SFT loader drops partial batches (each of the `dp`
    ranks gets rows // dp samples, in batches of batch // dp), so too few rows start and end the job without one
    update."""
    steps, epochs = select(cfg, "trainer.total_training_steps"), select(cfg, "trainer.total_epochs", 1)
    if steps is not None and steps <= 0:
        report.fail("steps", f"trainer.total_training_steps = {steps}: the job would train 0 steps; set it > 0 or "
                             "null (one pass over the data per epoch)")
    if epochs is not None and epochs <= 0:
        report.fail("steps", f"trainer.total_epochs = {epochs}: the job would train 0 steps; set it >= 1")
    if rows is None or dp <= 0 or batch <= 0 or batch % dp:
        return  # no readable data, or a batch/GPU problem reported above
    per_epoch = (rows // dp) // (batch // dp)
    if per_epoch == 0:
        report.fail("steps", f"data.train_files has {rows} rows, fewer than one global batch (data.train_batch_size "
                             f"= {batch} over {dp} data-parallel ranks): verl drops partial batches, so the job would "
                             f"train 0 steps; add rows or lower data.train_batch_size")
