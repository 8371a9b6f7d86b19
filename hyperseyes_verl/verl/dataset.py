"""`HyperEyesDataset`: verl's RLHFDataset without the torchvision dependency.

verl's `RLHFDataset.process_multi_modal_info` imports `qwen_vl_utils`, which imports torchvision at
module top; on boxes without torchvision (CPU CI) every multimodal rollout then fails. This class
takes the PIL images straight out of the chat messages (the `images` column's `{"bytes": png}`
entries have already been decoded into them by `RLHFDataset._build_messages`) and leaves resizing
to the processor's own `min_pixels` / `max_pixels`. Overlong-prompt filtering also counts the HyperEyes tool
schemas (the agent loop renders them into every prompt). Select it with

    data.custom_cls.path=pkg://hyperseyes_verl.verl.dataset data.custom_cls.name=HyperEyesDataset
"""
from __future__ import annotations

from PIL import Image
from verl.utils.dataset.rl_dataset import RLHFDataset

from hyperseyes_verl.ugs.schema import TOOL_SCHEMAS
from hyperseyes_verl.utils.images import load_image_ref as load_image  # noqa: F401  (used by the agent loop)


def images_in_messages(messages: list[dict]) -> list[Image.Image]:
    """Every `{"type": "image"}` block of the messages, in order, as RGB PIL images."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "image":
                    out.append(load_image(block))
    return out


class HyperEyesDataset(RLHFDataset):
    def maybe_filter_out_long_prompts(self, dataframe=None):
        if self.tool_schemas is None:  # no verl tool config: the agent loop's own schemas are what gets rendered
            self.tool_schemas = TOOL_SCHEMAS
        return super().maybe_filter_out_long_prompts(dataframe)

    @classmethod
    def _process_multi_modal_info(cls, messages, image_patch_size, config):
        if any(isinstance(b, dict) and b.get("type") == "video"
               for m in messages if isinstance(m.get("content"), list) for b in m["content"]):
            raise ValueError("HyperEyesDataset handles images only; a message carries a video block. "
                             "Use verl's RLHFDataset (needs qwen_vl_utils + torchvision) for video data.")
        images = images_in_messages(messages)
        return (images or None), None, cls._extract_audio_info(messages)

    @classmethod
    async def process_vision_info(cls, messages, image_patch_size, config):
        images, videos, _ = cls._process_multi_modal_info(messages, image_patch_size, config)
        return images, videos
