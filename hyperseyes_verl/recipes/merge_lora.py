"""Fold the stage-1 LoRA adapter into the base weights so stage 2 (full-parameter RL) starts from one plain
Hugging Face checkpoint. verl's `model_merger` writes the base weights plus `lora_adapter/` separately; peft's
`merge_and_unload` computes W + (α/r)·B·A for every adapted layer."""
from __future__ import annotations

import shutil
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".safetensors.index.json", ".bin.index.json")
WRITTEN_BY_SAVE = ("config.json", "generation_config.json")


def side_files(model_dir: Path) -> list[Path]:
    """Tokenizer / processor / chat-template files: everything in the folder except weights and configs."""
    return [p for p in sorted(model_dir.iterdir()) if p.is_file() and p.name not in WRITTEN_BY_SAVE
            and not p.name.endswith(WEIGHT_SUFFIXES) and not p.name.startswith(".")]


def merge_lora(model_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, dtype: str = "bfloat16") -> Path:
    import torch
    import transformers
    from peft import PeftModel

    model_dir, adapter_dir, out_dir = Path(model_dir), Path(adapter_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"base model {str(model_dir)!r} has no config.json: pass the folder written by "
                                "`python -m verl.model_merger merge` (or the original base checkpoint)")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"adapter {str(adapter_dir)!r} has no adapter_config.json: pass the `lora_adapter` "
                                "folder written by `python -m verl.model_merger merge`")
    config = transformers.AutoConfig.from_pretrained(model_dir)
    auto = transformers.AutoModelForImageTextToText if hasattr(config, "vision_config") else transformers.AutoModelForCausalLM
    base = auto.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    for path in side_files(model_dir):  # tokenizer / processor / template travel with the weights
        shutil.copy2(path, out_dir / path.name)
    return out_dir
