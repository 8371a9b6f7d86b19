"""Make Qwen-VL processors load on a box without torchvision (tests and CPU dry-runs only).

Every transformers video processor needs torchvision, and without one `AutoProcessor` raises, so
verl's `hf_processor()` silently returns None and a VL model is treated as text-only. The patch
hands the processor a plain `BaseVideoProcessor` (images work end to end; video does not) and lets
the processor accept it. Production GPU images ship torchvision and need none of this.
"""
from __future__ import annotations

import importlib.util

_APPLIED = False


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def apply_processor_patch() -> bool:
    """Idempotent; returns True when the patch is active (False where torchvision exists)."""
    global _APPLIED
    if _APPLIED or has_torchvision():
        return _APPLIED
    from transformers import processing_utils
    from transformers.video_processing_utils import BaseVideoProcessor

    class _PlainVideoProcessorLoader:
        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return BaseVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2)

    mapping = processing_utils._LazyAutoProcessorMapping
    original_getitem = mapping.__getitem__

    def getitem(self, key):
        return _PlainVideoProcessorLoader if key == "video_processor" else original_getitem(self, key)

    mapping.__getitem__ = getitem
    processing_utils.ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: type(arg)
    _APPLIED = True
    return True
