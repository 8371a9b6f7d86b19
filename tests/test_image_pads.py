"""Image-pad counts from the image size (hyperseyes_verl.verl.image_pads) give verl's token ids exactly.

Both tiny Qwen-VL families, with the processor given the real Qwen pixel budget (min/max pixels of the released
Qwen2.5-VL / Qwen3-VL image processors), so crops of ~1000 px keep their size (~1000 tokens each) instead of being
shrunk to the tiny test budget. Reference = verl's own builder, which runs the processor on every render.
"""
from __future__ import annotations

import copy
import functools
import json
import os

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.verl

from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder  # noqa: E402
from verl.utils.tokenizer.tokenizer import hf_processor, hf_tokenizer  # noqa: E402

from hyperseyes_verl.ugs.conversation import chat_tools  # noqa: E402
from hyperseyes_verl.utils.images import image_token_count  # noqa: E402
from hyperseyes_verl.verl import image_pads  # noqa: E402

# (min_pixels, max_pixels) of the released processors: Qwen2.5-VL 56²..28²·16384, Qwen3-VL 256²/... (patch 16)
REAL_BUDGET = {"qwen2_5_vl": (56 * 56, 28 * 28 * 16384), "qwen3_vl": (65536, 16777216)}
# ~1000 px crops, an odd size, a landscape strip, one under min_pixels, one over a tight max
SIZES = [(1000, 750), (997, 613), (1400, 180), (30, 20), (640, 480)]


@functools.lru_cache(maxsize=None)
def _real_processor(model_dir: str):
    family = json.load(open(os.path.join(model_dir, "config.json")))["model_type"]
    proc = copy.deepcopy(hf_processor(model_dir))
    lo, hi = REAL_BUDGET[family]
    ip = proc.image_processor
    ip.size = {"shortest_edge": lo, "longest_edge": hi}
    ip.min_pixels, ip.max_pixels = lo, hi
    return hf_tokenizer(model_dir), proc, family


def _builder(model_dir: str, fast: bool, mm_kwargs=None):
    tok, proc, family = _real_processor(model_dir)
    b = create_continuous_token_builder(tok, hf_model_type=family, processor=proc, mm_processor_kwargs=mm_kwargs)
    if fast:
        assert image_pads.install(b)
    return b


def _image(size, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def _prompt(images):
    return [{"role": "system", "content": "You search."},
            {"role": "user", "content": [*({"type": "image", "image": im} for im in images),
                                         {"type": "text", "text": "Where is the tower?"}]}]


def _observation(images):
    content = []
    for i, im in enumerate(images):
        content += [{"type": "text", "text": f"crop {i}:"}, {"type": "image", "image": im}]
    return [{"role": "tool", "content": content}]


def _count_processor_calls(monkeypatch, proc) -> list[int]:
    calls = [0]
    original = type(proc).__call__

    def counting(self, *a, **k):
        if self is proc:
            calls[0] += 1
        return original(self, *a, **k)

    monkeypatch.setattr(type(proc), "__call__", counting)
    return calls


def test_counts_match_the_processor_grid(tiny_vl_dir):
    _, proc, _ = _real_processor(tiny_vl_dir)
    ip = proc.image_processor
    for size in SIZES:
        grid = ip(images=[_image(size)], return_tensors="pt")["image_grid_thw"]
        assert image_token_count(ip, *size) == int(grid.prod(-1)[0]) // ip.merge_size ** 2
    assert image_token_count(ip, 1000, 750) > 500  # the real budget keeps a 1000 px crop large
    assert image_token_count(object(), 10, 10) is None


def test_identical_ids_for_prompt_and_observations_and_no_processor_per_turn(tiny_vl_dir, monkeypatch):
    verl_b, fast_b = _builder(tiny_vl_dir, False), _builder(tiny_vl_dir, True)
    tools = chat_tools()
    calls = _count_processor_calls(monkeypatch, fast_b.processor)
    inputs = [_image((800, 600), 9)]
    prompt = _prompt(inputs)
    first_fast = fast_b.build_initial_tokens(prompt, tools=tools, images=inputs)
    verifying_calls = calls[0]
    assert verifying_calls >= 1  # the first render with images is checked against the processor
    calls[0] = 0
    first_verl = verl_b.build_initial_tokens(prompt, tools=tools, images=inputs)
    assert first_fast == first_verl
    assert all(image_pads.verified(fast_b.processor).values())

    runtime_fast, runtime_verl, history = list(first_fast), list(first_verl), list(prompt)
    pad = fast_b.processor.image_token_id
    for turn, size in enumerate(SIZES):
        crops = [_image(size, seed=turn * 10 + k) for k in range(3)]
        previous = history + [{"role": "assistant", "content": f"<tool_call>round {turn}</tool_call>"}]
        updated = previous + _observation(crops)
        calls[0] = 0
        merged_fast = fast_b.merge_context_tokens(previous, updated, runtime_fast)
        assert calls[0] == 0, f"the processor ran on turn {turn}"
        merged_verl = verl_b.merge_context_tokens(previous, updated, runtime_verl)
        assert merged_fast.token_ids == merged_verl.token_ids, f"ids differ at crop size {size}"
        new = merged_fast.token_ids[len(runtime_fast):]
        assert sum(t == pad for t in new) == sum(image_token_count(fast_b.processor.image_processor, *size)
                                                 for _ in crops)
        runtime_fast, runtime_verl, history = merged_fast.token_ids, merged_verl.token_ids, updated

    calls[0] = 0  # a later first-turn prompt (new episode) is not re-verified either
    again = [_image((1000, 750), 3), _image((500, 333), 4)]
    fast_ids = fast_b.build_initial_tokens(_prompt(again), tools=tools, images=again)
    assert calls[0] == 0  # (the verl builder shares the processor: count before using it)
    assert fast_ids == verl_b.build_initial_tokens(_prompt(again), tools=tools, images=again)


def test_processor_kwargs_budget_is_honoured(tiny_vl_dir):
    kwargs = {"max_pixels": 200 * 28 * 28}  # verl's data.mm_processor_kwargs: a lower per-image budget
    verl_b, fast_b = _builder(tiny_vl_dir, False, kwargs), _builder(tiny_vl_dir, True, kwargs)
    crops = [_image((1000, 750)), _image((333, 999), 1)]
    prompt = _prompt(crops[:1])
    updated = prompt + [{"role": "assistant", "content": "x"}] + _observation(crops)
    for _ in range(2):  # verification render, then the fast one
        assert fast_b.build_initial_tokens(prompt, images=crops[:1]) == verl_b.build_initial_tokens(prompt,
                                                                                                      images=crops[:1])
        a = fast_b.merge_context_tokens(updated[:3], updated, [1, 2])
        assert a.token_ids == verl_b.merge_context_tokens(updated[:3], updated, [1, 2]).token_ids


def test_a_mismatch_falls_back_to_verl_for_good(tiny_vl_dir, monkeypatch):
    tok, proc, family = _real_processor(tiny_vl_dir)
    proc = copy.deepcopy(proc)  # its own verification record
    rule = type(proc.image_processor).get_number_of_image_patches
    monkeypatch.setattr(type(proc.image_processor), "get_number_of_image_patches",
                        lambda self, h, w, kw=None: rule(self, h, w, kw) + 4 * self.merge_size ** 2)
    verl_b = create_continuous_token_builder(tok, hf_model_type=family, processor=proc)
    fast_b = create_continuous_token_builder(tok, hf_model_type=family, processor=proc)
    assert image_pads.install(fast_b)
    calls = _count_processor_calls(monkeypatch, proc)
    for size in SIZES[:3]:
        ims = [_image(size)]
        assert fast_b.build_initial_tokens(_prompt(ims), images=ims) == verl_b.build_initial_tokens(_prompt(ims),
                                                                                                    images=ims)
    assert list(image_pads.verified(proc).values()) == [False]
    assert calls[0] == 6  # every render went through the processor


def test_builders_that_override_the_render_are_left_alone(tiny_qwen25_dir):
    from verl.utils.tokenizer.continuous_token import VLContinuousTokenBuilder

    tok, proc, _ = _real_processor(tiny_qwen25_dir)

    class Custom(VLContinuousTokenBuilder):
        def render_tokens_with_mm(self, *a, **k):
            return super().render_tokens_with_mm(*a, **k)

    b = Custom(tok, proc)
    assert not image_pads.install(b)
    assert "render_tokens_with_mm" not in vars(b)


def test_renders_the_count_cannot_cover_take_verl_s_path(tiny_qwen25_dir, monkeypatch):
    """A text whose placeholders do not pair with its images, or a size the rule refuses: verl's render, and the
    verification record is left alone."""
    tok, proc, family = _real_processor(tiny_qwen25_dir)
    proc = copy.deepcopy(proc)
    fast_b = create_continuous_token_builder(tok, hf_model_type=family, processor=proc)
    verl_b = create_continuous_token_builder(tok, hf_model_type=family, processor=proc)
    assert image_pads.install(fast_b)
    ims = [_image((640, 480))]
    literal = [{"role": "user", "content": [{"type": "image", "image": ims[0]},
                                            {"type": "text", "text": "a literal <|image_pad|> in the text"}]}]
    with pytest.raises(Exception) as refused:  # the processor itself refuses it; so must we, not render another text
        verl_b.build_initial_tokens(literal, images=ims)
    with pytest.raises(refused.type):
        fast_b.build_initial_tokens(literal, images=ims)
    monkeypatch.setattr(type(proc.image_processor), "get_number_of_image_patches",
                        lambda self, h, w, kw=None: (_ for _ in ()).throw(ValueError("refused")))
    assert fast_b.build_initial_tokens(_prompt(ims), images=ims) == verl_b.build_initial_tokens(_prompt(ims),
                                                                                              images=ims)
    assert image_pads.verified(proc) == {}
