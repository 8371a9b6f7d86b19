"""verl's multimodal render with image-pad counts from the image size instead of the image processor.

verl's VL Continuous-Token builders render the first prompt and every appended observation through the full
processor (`VLContinuousTokenMixin.render_tokens_with_mm`): each crop is resized and normalised into pixel
patches (~17 MB for a 1000 px crop) only to learn how many `<|image_pad|>` tokens it expands to, and the
pixels are thrown away (the trainer recomputes them at the end of the episode). That count follows from the
image size through the processor's own rule (`hyperseyes_verl.utils.images.image_token_count`), so
`install` swaps the builder's render for one that renders the same chat-template text, repeats each
placeholder that many times and tokenizes: the same ids without the pixel work.

Never silently different: the first render with images per (processor, chat template, template kwargs,
processor kwargs) runs both ways and compares the ids; on any difference that key stays on verl's render for
the rest of the process (one warning). Videos, audio, images that are not PIL images, a processor without the
rule, a caller that wants the processor features (`mm_inputs_out`) and builders that override the render
(MiniMax-VL, DeepSeek-VL2) always take verl's path. The mirrored method is pinned in verl_guard.
"""
from __future__ import annotations

import json
import logging
import threading
import weakref
from typing import Any

from PIL import Image
from verl.utils.tokenizer.chat_template import apply_chat_template
from verl.utils.tokenizer.continuous_token import VLContinuousTokenMixin
from verl.utils.tokenizer.tokenizer import normalize_token_ids

from hyperseyes_verl.utils.images import image_token_count

logger = logging.getLogger(__name__)

# processor -> render key -> True (fast path verified identical) / False (differs: verl's path)
_VERIFIED: "weakref.WeakKeyDictionary[Any, dict[str, bool]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()  # renders run in verl's executor threads


def supported(builder: Any) -> bool:
    """Whether `builder` renders with verl's own VL method and its processor exposes the size rule."""
    proc = getattr(builder, "processor", None)
    return (getattr(type(builder), "render_tokens_with_mm", None) is VLContinuousTokenMixin.render_tokens_with_mm
            and proc is not None and isinstance(getattr(proc, "image_token", None), str)
            and getattr(proc, "tokenizer", None) is not None
            and image_token_count(getattr(proc, "image_processor", None), 28, 28) is not None)


def install(builder: Any) -> bool:
    """Route `builder`'s multimodal renders (initial prompt, appended messages) through the size-based count.

    Returns False, leaving the builder untouched, when it is not `supported`. Idempotent."""
    if getattr(builder, "_hyperseyes_fast_pads", False):
        return True
    if not supported(builder):
        return False
    verl_render = builder.render_tokens_with_mm  # bound before the instance attribute shadows it

    def render_tokens_with_mm(messages, images, *, videos=None, audios=None, add_generation_prompt=True,
                              tools=None, mm_inputs_out=None):
        def slow():
            return verl_render(messages, images, videos=videos, audios=audios,
                               add_generation_prompt=add_generation_prompt, tools=tools, mm_inputs_out=mm_inputs_out)

        if videos or audios or mm_inputs_out is not None \
                or not all(isinstance(im, Image.Image) for im in images or ()):
            return slow()  # something the count does not cover
        key = _key(builder)
        with _LOCK:
            state = _VERIFIED.setdefault(builder.processor, {}).get(key)
        if state is False or (state is None and not images):
            return slow()  # a text-only render verifies nothing (and costs the processor no pixel work)
        try:
            fast = fast_render(builder, messages, images, add_generation_prompt=add_generation_prompt, tools=tools)
        except Exception:  # noqa: BLE001 - e.g. smart_resize refusing an extreme aspect: verl's path decides
            fast = None
        if state is True and fast is not None:
            return fast
        reference = slow()
        if state is None and fast is not None:  # None: this text's placeholders do not pair with its images
            ok = fast == reference
            with _LOCK:
                _VERIFIED[builder.processor].setdefault(key, ok)
            if not ok:
                logger.warning("image-pad counts from the image size differ from the processor's for this chat "
                               "template; using verl's processor render (slower) for the rest of the run")
        return reference

    builder.render_tokens_with_mm = render_tokens_with_mm
    builder._hyperseyes_fast_pads = True
    return True


def fast_render(builder: Any, messages: list[dict], images: list[Image.Image] | None, *, add_generation_prompt: bool,
                tools: list[dict] | None) -> list[int] | None:
    """The ids verl's render gives, from the template text and the image sizes; None when the text's
    placeholders do not pair one-to-one with `images`."""
    proc = builder.processor
    template_kwargs = dict(builder.chat_template_kwargs)
    if tools:
        template_kwargs["tools"] = tools
    text = apply_chat_template(proc, messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                               **template_kwargs)
    pad, images = proc.image_token, images or []
    parts = text.split(pad)
    if len(parts) != len(images) + 1:
        return None
    kwargs = builder.mm_processor_kwargs or {}
    counts = [image_token_count(proc.image_processor, *im.size, kwargs) for im in images]
    if any(c is None or c < 1 for c in counts):
        return None
    expanded = "".join(part + pad * n for part, n in zip(parts, counts)) + parts[-1]
    return normalize_token_ids(proc.tokenizer(expanded)["input_ids"])


def _key(builder: Any) -> str:
    return json.dumps([getattr(builder.processor, "chat_template", None), builder.chat_template_kwargs,
                       builder.mm_processor_kwargs], sort_keys=True, default=str)


def verified(processor: Any) -> dict[str, bool]:
    """The verification outcomes recorded for `processor` (key -> identical?); for tests and the bench."""
    with _LOCK:
        return dict(_VERIFIED.get(processor, {}))
