"""Stage-1 SFT dataset: verl 0.9.1's `MultiTurnSFTDataset` plus the one thing HyperEyes' SFT needs that it lacks.

verl's multi-turn SFT dataset already trains multimodal multi-turn tool conversations (per-message chat-template
rendering, `<image>` placeholders in any message — tool observations included —, `tools` column, loss on
assistant turns only). What it cannot do as shipped:
  * cap the image size the way RL does: the official recipe feeds each image at ≤ 1200 visual tokens in both
    stages; verl's `process_image` calls `qwen_vl_utils.fetch_image` with its default bound (16384 tokens);
  * read the `tools` column our SFT rows carry as JSON text (`hyperseyes_verl.ugs.conversation.tools_json`);
  * run without torchvision: `qwen_vl_utils` imports it at module top (so the dataset cannot even be dry-run on
    a CPU box).
This subclass replaces the image loading and decodes the tools. Images (`{"bytes": png}`, a path, or PIL) are
resized with `hyperseyes_verl.utils.images.fit_image_tokens` to at most `data.max_image_tokens` visual tokens
(default `IMAGE_TOKEN_CAP`), the function and the cap the RL agent loop applies to every image, with the
processor's patch × merge size, so SFT and RL show the model the same pixels. `data.cache_items: true` keeps
every rendered sample in memory (for a small dataset trained for many epochs). Select it with
`data.custom_cls.path=pkg://hyperseyes_verl.verl.sft_dataset data.custom_cls.name=HyperEyesSFTDataset`.
"""
from __future__ import annotations

import re

from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.py_functional import convert_nested_value_to_list_recursive

from hyperseyes_verl.ugs.conversation import decode_tools
from hyperseyes_verl.utils.images import IMAGE_TOKEN_CAP, fit_image_tokens, image_token_factor
from hyperseyes_verl.utils.images import load_image_ref as load_image

DEFAULT_MAX_IMAGE_TOKENS = IMAGE_TOKEN_CAP  # the one cap of both stages


class HyperEyesSFTDataset(MultiTurnSFTDataset):
    def __init__(self, parquet_files, tokenizer, config, processor=None, max_samples: int = -1):
        config = config or {}
        self.max_image_tokens = int(config.get("max_image_tokens", DEFAULT_MAX_IMAGE_TOKENS))
        # the processor's patch × merge size, as the agent loop computes it (not data.image_patch_size, which
        # could disagree with the processor and so with RL)
        self.image_factor = image_token_factor(processor)
        # a small dataset trained for many epochs (the demo: 48 conversations, ~9 epochs) renders each sample once:
        # a demo sample took 146 ms to render and the demo model 128 ms forward + backward on it (issue #12,
        # bench/bench_sft_dataset_cache.py)
        self.cache_items = bool(config.get("cache_items", False))
        self._cache: dict[int, dict] = {}
        super().__init__(parquet_files, tokenizer, config, processor=processor, max_samples=max_samples)

    def _read_files_and_process(self):
        super()._read_files_and_process()
        if self.tools is not None:  # JSON text in our rows (see hyperseyes_verl.ugs.conversation)
            self.tools = [decode_tools(t) for t in self.tools]

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
                    image = fit_image_tokens(load_image(images[used]), self.max_image_tokens, self.image_factor)
                    parts.append({"type": "image", "image": image})
                    used += 1
                else:
                    parts.append({"type": "text", "text": segment})
            message["content"] = parts
        if used != len(images):
            raise ValueError(f"sample has {len(images)} images but {used} <image> placeholders")
        return messages

    def __getitem__(self, item):
        sample = self._cache.get(item)
        if sample is None:
            sample = super().__getitem__(item)
            # verl's collate (dataset_utils.collate_variable_batch) reads the keys of the batch's first sample; a
            # text-only first sample (no multi_modal_inputs) next to image samples raises KeyError. None is what
            # verl's engine already skips for text-only rows (utils/model.extract_multi_modal_inputs).
            sample.setdefault("multi_modal_inputs", None)
            if self.cache_items:
                self._cache[item] = sample
        if not self.cache_items:
            return sample
        # a cached sample: fresh dicts for the caller (the tensors are only read)
        return {k: dict(v) if isinstance(v, dict) else v for k, v in sample.items()}
