"""`hyperseyes recipe …`: `validate` composes a stage's full verl config and checks it (the `--dry-run` of the
recipe scripts); `merge-lora` folds the stage-1 adapter into the base weights for stage 2."""
from __future__ import annotations

import argparse
import os
import sys


# ValidateOptions fields that are options (type, default, help from the field); the overrides are positional and
# --no-cpu-stand-in is `cpu_processor_stand_in=False`
VALIDATE_FIELDS = ("stage", "config", "allow_missing_models", "total_gpus", "check_rows")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hyperseyes_verl.recipes.validate import ValidateOptions
    from hyperseyes_verl.utils.cli import add_model_options

    sub = parser.add_subparsers(dest="recipe_command", required=True)
    v = sub.add_parser("validate", help="compose and check a stage config without training")
    add_model_options(v, ValidateOptions, VALIDATE_FIELDS,
                      helps={"config": "recipe YAML, e.g. recipes/stage2_rl_30b.yaml"})
    v.add_argument("--no-cpu-stand-in", action="store_true",
                   help="do not load Qwen-VL processors with the stand-in video processor when torchvision is missing")
    v.add_argument("overrides", nargs="*", help="hydra overrides (key=value), as passed to the trainer")
    m = sub.add_parser("merge-lora", help="merge a LoRA adapter into its base model (stage 1 → stage 2)")
    m.add_argument("--model", required=True, help="base HF checkpoint folder")
    m.add_argument("--adapter", required=True, help="peft adapter folder (adapter_config.json)")
    m.add_argument("--out", required=True, help="output folder for the merged checkpoint")
    m.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.recipe_command == "merge-lora":
        from hyperseyes_verl.recipes.merge_lora import merge_lora

        try:
            out = merge_lora(args.model, args.adapter, args.out, args.dtype)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"merged checkpoint written to {out}")
        return 0
    from hyperseyes_verl.recipes.validate import ValidateOptions, validate_recipe

    from hyperseyes_verl.utils.cli import model_kwargs

    report = validate_recipe(ValidateOptions(**model_kwargs(args, ValidateOptions, VALIDATE_FIELDS),
                                             overrides=tuple(args.overrides),
                                             cpu_processor_stand_in=not args.no_cpu_stand_in))
    print(report.render())
    return 0 if report.ok else 1
