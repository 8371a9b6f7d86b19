"""`validate_recipe`: compose a stage's full hydra config on a CPU box and run every check; never raises for a
bad recipe — each finding becomes a Problem in the returned Report."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.recipes.compose import RecipeError, compose_recipe
from hyperseyes_verl.recipes.report import Report


class ValidateOptions(BaseModel):
    """What to validate and how strictly."""

    model_config = ConfigDict(frozen=True)

    stage: Literal["sft", "rl"] = Field(description="sft = stage 1 (verl sft_trainer), rl = stage 2 (verl main_ppo)")
    config: Path = Field(description="recipe YAML (a hydra primary config under recipes/)")
    overrides: tuple[str, ...] = Field(default=(), description="hydra overrides, exactly as given to the trainer")
    allow_missing_models: bool = Field(default=False, description="skip the config.json check of model paths "
                                       "(e.g. the stage-1 output that does not exist yet during a dry run)")
    total_gpus: int | None = Field(default=None, ge=1, description="GPUs available to the run; None = not checked")
    check_rows: int = Field(default=2, ge=0, description="SFT: rows tokenized with the dataset class (0 = none)")
    cpu_processor_stand_in: bool = Field(default=True, description="on a box without torchvision, load Qwen-VL "
                                         "processors with a stand-in video processor so the dry run can check them")


def validate_recipe(options: ValidateOptions) -> Report:
    report = Report(stage=options.stage)
    if options.cpu_processor_stand_in:
        from hyperseyes_verl.testing.cpu_patches import apply_processor_patch

        if apply_processor_patch():
            report.note("torchvision is not installed here: Qwen-VL processors were loaded with a stand-in video "
                        "processor for this dry run; the training machines need torchvision (verl's GPU install has it)")
    try:
        cfg = compose_recipe(options.config, options.overrides)
    except RecipeError as exc:
        report.fail("compose", str(exc))
        return report
    if options.stage == "rl":
        from hyperseyes_verl.recipes.checks_rl import validate_rl

        validate_rl(cfg, report, options.allow_missing_models, options.total_gpus)
    else:
        from hyperseyes_verl.recipes.checks_sft import validate_sft

        validate_sft(cfg, report, options.allow_missing_models, options.total_gpus, options.check_rows)
    return report
