"""Workarounds for verl 0.9.1 defects that stop HyperEyes jobs (GPU and CPU alike); see patches/README.md.
Each is installed by the plugin when its verl module loads, in every verl process.

1. Equal-length 3D position ids (Qwen-VL M-RoPE). TransferQueue packs each trajectory's `position_ids` (4, L_i)
with `torch.nested.as_nested_tensor(..., layout=torch.jagged)`, which makes the *first* dimension whose sizes
differ the ragged one: with different L_i that is L (ragged_idx 2, values (4, ΣL)), but when every L_i is equal
nothing differs and torch picks the rope dimension (ragged_idx 1, values (4B, L)). verl's
`maybe_fix_3d_position_ids` then sets `_ragged_idx = 2` on that tensor (it restores an attribute that pickling
drops), after which `index_select_tensor_dict` splits values of width L by offsets [0, 4, 8, ...] and
`compute_log_prob` / `update_actor` crash with `split_with_sizes`. The wrapper re-lays such a tensor out along
L first. Installed when verl.utils.tensordict_utils loads, before verl's engine modules bind it by name.

2. Text-only samples with Qwen2/2.5-VL. For a sample without images (HyperEyes' textual multi-constraint
questions) verl's `qwen2_vl._get_input_embeds` runs the vision tower on a dummy patch grid so every FSDP rank
runs it, then calls `.mean()` on the tower's output, which transformers 5 returns as a ModelOutput
(`AttributeError: 'BaseModelOutputWithPooling' object has no attribute 'mean'`); the image branch of the same
function and the Qwen3-VL version unpack it first. The wrapper handles the text-only case the same way,
unpacked, and leaves every sample with images to verl.
"""
from __future__ import annotations

import functools

import torch

VERL_MODULE = "verl.utils.tensordict_utils"


def relayout_equal_length_position_ids(position_ids: torch.Tensor) -> torch.Tensor | None:
    """The (B, 4, j) nested tensor ragged along L for one packed as ragged along the rope rows; None if fine."""
    if not (position_ids.is_nested and position_ids.dim() == 3):
        return None
    values, offsets = position_ids.values(), position_ids.offsets()
    total = int(offsets[-1])
    if values.dim() != 2 or values.shape[0] != total or values.shape[1] == total:
        return None  # already laid out along L (or the B = 1 case, where both layouts coincide)
    from verl.utils.tensordict_utils import nested_tensor_from_tensor_list

    rows = list(values.split(offsets.diff().tolist(), dim=0))  # each (4, L)
    return nested_tensor_from_tensor_list(rows, ragged_idx=2)


def install_position_ids_fix() -> bool:
    """Wrap verl's `maybe_fix_3d_position_ids` (idempotent). Returns True when installed now or before."""
    import importlib

    tu = importlib.import_module(VERL_MODULE)
    original = tu.maybe_fix_3d_position_ids
    if getattr(original, "_hyperseyes_fixed", False):
        return True

    @functools.wraps(original)
    def maybe_fix_3d_position_ids(data):
        if "position_ids" in data.keys():
            fixed = relayout_equal_length_position_ids(data["position_ids"])
            if fixed is not None:
                data["position_ids"] = fixed
        return original(data)

    maybe_fix_3d_position_ids._hyperseyes_fixed = True
    tu.maybe_fix_3d_position_ids = maybe_fix_3d_position_ids
    return True


def install_qwen2_vl_text_only_fix() -> bool:
    """Wrap `verl.models.transformers.qwen2_vl._get_input_embeds` (idempotent; looked up by name at call time)."""
    import importlib

    qwen2_vl = importlib.import_module("verl.models.transformers.qwen2_vl")
    original = qwen2_vl._get_input_embeds
    if getattr(original, "_hyperseyes_fixed", False):
        return True

    @functools.wraps(original)
    def _get_input_embeds(model, input_ids, attention_mask=None, pixel_values=None, pixel_values_videos=None,
                          image_grid_thw=None, video_grid_thw=None):
        if pixel_values is not None or pixel_values_videos is not None:
            return original(model, input_ids, attention_mask, pixel_values, pixel_values_videos, image_grid_thw,
                            video_grid_thw)
        inputs_embeds = model.get_input_embeddings()(input_ids)
        vision = model.config.vision_config
        patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
        dummy = torch.zeros((16, patch_dim), dtype=inputs_embeds.dtype, device=inputs_embeds.device)
        grid = torch.tensor([[1, 4, 4]], dtype=torch.long, device=inputs_embeds.device)
        image_embeds, _ = qwen2_vl.unpack_visual_output(model.visual(dummy, grid_thw=grid))
        inputs_embeds = inputs_embeds + 0.0 * image_embeds.mean()  # keeps the tower in every rank's graph
        if attention_mask is not None:
            attention_mask = attention_mask.to(inputs_embeds.device)
        return inputs_embeds, attention_mask

    _get_input_embeds._hyperseyes_fixed = True
    qwen2_vl._get_input_embeds = _get_input_embeds
    return True
