"""Stage-1 SFT dataset: verl 0.9.1's `MultiTurnSFTDataset` plus the one thing HyperEyes' SFT needs that it lacks.

verl's multi-turn SFT dataset already trains multimodal multi-turn tool conversations (per-message chat-template
rendering, `<image>` placeholders in any message — tool observations included —, `tools` column, loss on
assistant turns only). What it cannot do as shipped:
  * cap the image size: the official recipe feeds each image at ≤ 1200 visual tokens; verl's `process_image`
    calls `qwen_vl_utils.fetch_image` with its default bound (16384 tokens), and the SFT config has no knob;
  * run without torchvision: `qwen_vl_utils` imports it at module top (so the dataset cannot even be dry-run on
    a CPU box).
This subclass replaces only the image loading: images (`{"bytes": png}`, a path, or PIL) are resized with PIL to
at most `data.max_image_tokens` merged patches (`image_patch_size × merge_size` squared pixels each), keeping
the aspect ratio and rounding each side to a multiple of that patch. Select it with
`data.custom_cls.path=pkg://hyperseyes_verl.recipes.sft_dataset data.custom_cls.name=HyperEyesSFTDataset`.
"""
from __future__ import annotations

import math
import re
from typing import Any

from PIL import Image
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.py_functional import convert_nested_value_to_list_recursive

from hyperseyes_verl.utils.images import open_image, upright

DEFAULT_MAX_IMAGE_TOKENS = 1200  # official stage-1 recipe


def load_image(ref: Any) -> Image.Image:
    if isinstance(ref, Image.Image):
        return upright(ref).convert("RGB")
    if isinstance(ref, dict):
        if ref.get("bytes") is not None:
            return open_image(bytes(ref["bytes"]))
        ref = ref.get("path") or ref.get("image")
        if isinstance(ref, Image.Image):
            return upright(ref).convert("RGB")
    if isinstance(ref, (bytes, bytearray)):
        return open_image(bytes(ref))
    if isinstance(ref, str):
        return open_image(ref.removeprefix("file://"))
    raise ValueError(f"cannot read an image from {type(ref).__name__} {str(ref)[:80]!r}: expected "
                     "{'bytes': png}, a file path, or a PIL image")


def fit_image(image: Image.Image, max_tokens: int, factor: int) -> Image.Image:
    """Resize so that (h/factor)·(w/factor) ≤ max_tokens, both sides multiples of `factor` (≥ factor)."""
    if max_tokens < 1 or factor < 1:
        raise ValueError(f"max_tokens ({max_tokens}) and factor ({factor}) must be positive")
    w, h = image.size
    scale = min(1.0, math.sqrt(max_tokens * factor * factor / (w * h)))
    new_w = max(factor, int(w * scale) // factor * factor)
    new_h = max(factor, int(h * scale) // factor * factor)
    while (new_w // factor) * (new_h // factor) > max_tokens:  # rounding at the floor of 1 patch per side
        if new_w >= new_h and new_w > factor:
            new_w -= factor
        elif new_h > factor:
            new_h -= factor
        else:
            break
    return image if (new_w, new_h) == (w, h) else image.resize((new_w, new_h), Image.Resampling.BICUBIC)


class HyperEyesSFTDataset(MultiTurnSFTDataset):
    def __init__(self, parquet_files, tokenizer, config, processor=None, max_samples: int = -1):
        config = config or {}
        self.max_image_tokens = int(config.get("max_image_tokens", DEFAULT_MAX_IMAGE_TOKENS))
        image_processor = getattr(processor, "image_processor", None)
        patch = config.get("image_patch_size", getattr(image_processor, "patch_size", None) or 14)
        self.image_factor = int(patch) * int(getattr(image_processor, "merge_size", None) or 2)
        super().__init__(parquet_files, tokenizer, config, processor=processor, max_samples=max_samples)

    def _build_messages(self, example: dict):
        messages = convert_nested_value_to_list_recursive(example[self.messages_key])
        images = example.get(self.image_key)
        images = [] if images is None else list(convert_nested_value_to_list_recursive(images))
        if example.get(self.video_key) is not None and len(example[self.video_key]):
            raise ValueError("HyperEyesSFTDataset does not support videos; drop the videos column")
        used = 0
        for message in messages:
            content = message["content"]
            if not isinstance(content, str):
                continue
            if not images:
                if self.processor is not None:
                    message["content"] = [{"type": "text", "text": content}]
                continue
            if self.processor is None:
                raise ValueError("this SFT sample has images but the model has no processor: use a VL checkpoint")
            parts = []
            for segment in (s for s in re.split("(<image>)", content) if s):
                if segment == "<image>":
                    if used >= len(images):
                        raise ValueError(f"sample has more <image> placeholders than images ({len(images)})")
                    image = fit_image(load_image(images[used]), self.max_image_tokens, self.image_factor)
                    parts.append({"type": "image", "image": image})
                    used += 1
                else:
                    parts.append({"type": "text", "text": segment})
            message["content"] = parts
        if used != len(images):
            raise ValueError(f"sample has {len(images)} images but {used} <image> placeholders")
        return messages

    def __getitem__(self, item):
        sample = super().__getitem__(item)
        # verl's collate (dataset_utils.collate_variable_batch) reads the keys of the batch's first sample; a
        # text-only first sample (no multi_modal_inputs) next to image samples raises KeyError. None is what
        # verl's engine already skips for text-only rows (utils/model.extract_multi_modal_inputs).
        sample.setdefault("multi_modal_inputs", None)
        return sample
