"""Stage-1 helpers: the image cap of the SFT dataset and the LoRA merge that hands stage 1 to stage 2."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from hyperseyes_verl.utils.images import fit_image_tokens as fit_image

pytestmark = pytest.mark.verl


@pytest.mark.parametrize("size", [(4000, 3000), (1000, 100), (30, 30), (28, 5000), (3584, 3584)])
def test_fit_image_respects_token_cap(size):
    out = fit_image(Image.new("RGB", size), max_tokens=1200, factor=32)
    w, h = out.size
    assert w % 32 == 0 and h % 32 == 0 and w >= 32 and h >= 32
    assert (w // 32) * (h // 32) <= 1200
    if size[0] * size[1] > 1200 * 32 * 32 * 2:  # big images keep their aspect ratio within one patch
        assert abs(w / h - size[0] / size[1]) <= 32 / min(w, h) + 0.05 * size[0] / size[1]


def test_fit_image_keeps_small_aligned_images():
    img = Image.new("RGB", (64, 96))
    assert fit_image(img, max_tokens=1200, factor=32) is img


def test_fit_image_rejects_bad_cap():
    with pytest.raises(ValueError, match="must be positive"):
        fit_image(Image.new("RGB", (10, 10)), max_tokens=0, factor=32)


def test_merge_lora_matches_adapter_model(tiny_qwen25_dir, tmp_path):
    """The merged checkpoint computes what base + adapter computes (W + α/r·B·A), and loads without peft."""
    import transformers
    from peft import LoraConfig, get_peft_model

    from hyperseyes_verl.recipes.merge_lora import merge_lora

    base = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen25_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, target_modules="all-linear",
                                                 exclude_modules=".*visual.*"))
    torch.manual_seed(0)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B starts at 0: make the adapter change the output
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 5, 9, 17, 33, 2]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        plain = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen25_dir)(input_ids=ids).logits
    out = merge_lora(tiny_qwen25_dir, tmp_path / "adapter", tmp_path / "merged", dtype="float32")
    merged = transformers.AutoModelForImageTextToText.from_pretrained(out)
    with torch.no_grad():
        got = merged(input_ids=ids).logits
    assert not torch.allclose(plain, expected, atol=1e-4)  # the adapter matters ...
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)  # ... and survives the merge
    source = {p.name for p in Path(tiny_qwen25_dir).iterdir() if not p.name.endswith(".safetensors")}
    assert source <= {p.name for p in out.iterdir()}  # tokenizer, processor and template came along


def test_merge_lora_reports_missing_adapter(tiny_qwen25_dir, tmp_path):
    from hyperseyes_verl.recipes.merge_lora import merge_lora

    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        merge_lora(tiny_qwen25_dir, tmp_path / "nothing", tmp_path / "out")


def test_text_only_and_image_rows_share_a_batch(tiny_qwen25_dir, tmp_path):
    """verl's collate reads the first sample's keys: a text-only row first (no multi_modal_inputs) next to an
    image row raised KeyError in the end-to-end SFT run; both orders must collate."""
    import io

    import pandas as pd
    from verl.trainer.sft_trainer import create_sft_dataset
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.dataset_utils import SFTTensorCollator

    from hyperseyes_verl.recipes.compose import compose_recipe

    png = io.BytesIO()
    Image.new("RGB", (56, 56), (10, 200, 30)).save(png, format="PNG")
    rows = [{"messages": [{"role": "user", "content": "what is it?"}, {"role": "assistant", "content": "a tower"}],
             "images": []},
            {"messages": [{"role": "user", "content": "<image>what is it?"}, {"role": "assistant", "content": "red"}],
             "images": [{"bytes": png.getvalue()}]}]
    pd.DataFrame(rows).to_parquet(tmp_path / "sft.parquet")
    cfg = compose_recipe(Path(__file__).resolve().parents[1] / "recipes" / "stage1_sft_tiny_cpu.yaml",
                         [f"model.path={tiny_qwen25_dir}", f"data.train_files={tmp_path / 'sft.parquet'}"])
    dataset = create_sft_dataset([str(tmp_path / "sft.parquet")], cfg.data, hf_tokenizer(tiny_qwen25_dir),
                                 hf_processor(tiny_qwen25_dir))
    collate = SFTTensorCollator(cfg.data.pad_mode)
    for order in ([0, 1], [1, 0]):
        batch = collate([dataset[i] for i in order])
        mm = [x.data if hasattr(x, "data") else x for x in batch["multi_modal_inputs"]]
        assert [m is None for m in mm] == [i == 0 for i in order]
        assert batch["input_ids"].size(0) == 2
