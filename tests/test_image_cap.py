"""One image-token cap for both stages: the SFT dataset and the RL agent loop resize every image with the same
function and the same default cap (`IMAGE_TOKEN_CAP`), so the model sees each image at the same resolution
(the same number of image tokens) in SFT and RL; the dry run of either stage refuses a different cap."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hyperseyes_verl.utils.images import IMAGE_TOKEN_CAP, fit_image_tokens

pytestmark = pytest.mark.verl


def _noise(size) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


@pytest.mark.parametrize("size", [(4000, 3000), (1000, 100), (30, 30), (28, 5000), (3584, 3584), (96, 80)])
@pytest.mark.parametrize("factor", [28, 32])
def test_fit_image_tokens_caps_and_aligns(size, factor):
    out = fit_image_tokens(Image.new("RGB", size), IMAGE_TOKEN_CAP, factor)
    w, h = out.size
    assert w % factor == 0 and h % factor == 0 and (w // factor) * (h // factor) <= IMAGE_TOKEN_CAP
    # a fitted image is a fixed point: the second stage (or the processor's smart_resize) changes nothing
    assert fit_image_tokens(out, IMAGE_TOKEN_CAP, factor) is out


def test_fit_image_tokens_rounds_like_the_processor():
    """Sides round to the nearest multiple (Qwen's smart_resize), not down: 96x80 at factor 28 is 3x3 tokens."""
    assert fit_image_tokens(Image.new("RGB", (96, 80)), 1200, 28).size == (84, 84)
    with pytest.raises(ValueError, match="positive integers"):
        fit_image_tokens(Image.new("RGB", (10, 10)), 0, 28)


async def test_rl_and_sft_give_an_image_the_same_tokens(tiny_vl_dir, tmp_path):
    """A capped image (a small cap, so it binds below the tiny processor's own max_pixels) gets the same number
    of image tokens in the RL prompt (agent loop) and in the SFT row (HyperEyesSFTDataset)."""
    from test_verl_agent_loop import SAMPLING, T_ANSWER, _tok_proc, count_pads, make_loop, server_for

    from hyperseyes_verl.data.parquet import png_bytes, write_parquet
    from hyperseyes_verl.verl.sft_dataset import HyperEyesSFTDataset
    from hyperseyes_verl.search.base import InMemoryBackend
    from hyperseyes_verl.utils.images import image_token_factor
    from hyperseyes_verl.verl import agent_loop as hal

    cap = 6
    tokenizer, processor = _tok_proc(tiny_vl_dir)
    factor = image_token_factor(processor)
    img = _noise((7 * factor + 5, 3 * factor + 3))  # 7x3 = 21 tokens unscaled, over the cap of 6
    w, h = fit_image_tokens(img, cap, factor).size
    expected = (w // factor) * (h // factor)
    assert expected <= cap

    server, _ = server_for(tiny_vl_dir, [T_ANSWER])
    hal.set_backend_override(InMemoryBackend())
    try:
        loop = make_loop(tiny_vl_dir, server, max_image_tokens=cap)
        raw = [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "Where?"}]}]
        out = await loop.run(dict(SAMPLING), raw_prompt=raw, extra_info={"question": "Where?"}, index=0)
    finally:
        hal.set_backend_override(None)
    assert count_pads(tiny_vl_dir, out.prompt_ids) == expected
    assert out.multi_modal_data["images"][0].size == fit_image_tokens(img, cap, factor).size

    row = {"messages": [{"role": "user", "content": "<image>Where?"},
                        {"role": "assistant", "content": T_ANSWER}], "images": [{"bytes": png_bytes(img)}]}
    path = write_parquet([row], tmp_path / "sft.parquet")
    ds = HyperEyesSFTDataset(str(path), tokenizer, {"max_length": 4096, "max_image_tokens": cap},
                             processor=processor)
    assert count_pads(tiny_vl_dir, ds[0]["input_ids"].tolist()) == expected

    # data.cache_items: each sample rendered once, the same sample every epoch, and a caller's edit stays its own
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    cached = HyperEyesSFTDataset(str(path), tokenizer, {"max_length": 4096, "max_image_tokens": cap,
                                                        "cache_items": True}, processor=processor)
    renders = []
    with pytest.MonkeyPatch.context() as mp:
        parent = MultiTurnSFTDataset.__getitem__
        mp.setattr(MultiTurnSFTDataset, "__getitem__", lambda self, i: renders.append(i) or parent(self, i))
        first = cached[0]
        first.pop("input_ids")
        first["multi_modal_inputs"].clear()
        again, fresh = cached[0], ds[0]
    assert renders == [0, 0]  # `cached` rendered once, `ds` (no cache) again
    assert again["input_ids"].equal(fresh["input_ids"]) and set(again) == set(fresh)
    assert again["multi_modal_inputs"]["image_grid_thw"].equal(fresh["multi_modal_inputs"]["image_grid_thw"])


def test_agent_loop_and_sft_dataset_default_to_the_one_cap():
    from hyperseyes_verl.verl.sft_dataset import DEFAULT_MAX_IMAGE_TOKENS
    from hyperseyes_verl.config import AgentLoopConfig

    assert AgentLoopConfig().max_image_tokens == DEFAULT_MAX_IMAGE_TOKENS == IMAGE_TOKEN_CAP == 1200


def test_dry_run_refuses_a_cap_that_differs_between_stages(tiny_qwen25_dir, tmp_path):
    from test_recipes import sft_options, validate_rl, write_rl_parquet, write_sft_parquet

    from hyperseyes_verl.recipes.validate import validate_recipe

    (tmp_path / "index").mkdir()
    files = {"model": tiny_qwen25_dir, "train": write_rl_parquet(tmp_path / "rl.parquet"),
             "val": write_rl_parquet(tmp_path / "val.parquet", n=2), "index": str(tmp_path / "index"),
             "sft": write_sft_parquet(tmp_path / "sft.parquet", n=8)}
    report = validate_recipe(sft_options(files, "stage1_sft_30b.yaml", "data.max_image_tokens=800"))
    assert any("data.max_image_tokens = 800" in m and "1200" in m for m in report.messages("images")), \
        report.render()
    report = validate_rl(files, "+hyperseyes.agent_loop.max_image_tokens=800")
    assert any("hyperseyes.agent_loop.max_image_tokens = 800" in m for m in report.messages("images")), \
        report.render()
    assert not validate_rl(files).messages("images")
