"""Image registry: official id semantics, clamping, rejection kinds, resize, RGB."""
from __future__ import annotations

import math

import pytest
from PIL import Image

from hyperseyes_verl.ugs.images import ImageRegistry, fit_long_side, validate_box
from hyperseyes_verl.ugs.types import UGSConfig

QUADRANTS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]  # top-left, top-right, bottom-left, bottom-right


def quadrant_image(w: int = 200, h: int = 100, mode: str = "RGB") -> Image.Image:
    im = Image.new("RGB", (w, h))
    for i, colour in enumerate(QUADRANTS):
        x, y = (i % 2) * w // 2, (i // 2) * h // 2
        im.paste(colour, (x, y, x + w // 2, y + h // 2))
    return im.convert(mode)


def colours(im: Image.Image) -> set:
    """Every distinct pixel value of `im` (Image.getdata() is deprecated, removed in Pillow 14)."""
    return {c for _, c in im.getcolors(im.width * im.height)}


def test_inputs_are_img_0_to_n_minus_1_and_crops_take_the_next_ids():
    reg = ImageRegistry([quadrant_image(), quadrant_image()])
    assert reg.ids == ["img_0", "img_1"]
    first = reg.crop("img_1", [0, 0, 0.5, 0.5])
    second = reg.crop("img_0", [0.5, 0.5, 1, 1])
    assert (first.image_id, second.image_id) == ("img_2", "img_3")
    assert reg.ids == ["img_0", "img_1", "img_2", "img_3"] and reg.get("img_3") is second.image


def test_failed_crop_consumes_its_id_and_explains_itself_later():
    reg = ImageRegistry([quadrant_image()])
    bad = reg.crop("img_0", [0.6, 0.1, 0.2, 0.9])
    good = reg.crop("img_0", [0, 0, 0.5, 0.5])
    assert not bad.ok and bad.image_id == "img_1" and good.image_id == "img_2"
    assert "img_1" not in reg and "img_2" in reg
    with pytest.raises(KeyError, match="crop that failed"):
        reg.get("img_1")
    with pytest.raises(KeyError, match="known ids: img_0, img_2"):
        reg.get("img_9")


def test_crop_content_matches_the_normalized_box():
    reg = ImageRegistry([quadrant_image(200, 100)])
    for i, box in enumerate([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]]):
        crop = reg.crop("img_0", box)
        assert crop.image.size == (100, 50)
        assert colours(crop.image) == {QUADRANTS[i]}


def test_crop_of_a_crop():
    reg = ImageRegistry([quadrant_image(200, 100)])
    top = reg.crop("img_0", [0, 0, 1, 0.5])
    right = reg.crop(top.image_id, [0.5, 0, 1, 1])
    assert right.source_id == "img_1" and colours(right.image) == {QUADRANTS[1]}


def test_negative_values_are_clamped_to_the_image():
    reg = ImageRegistry([quadrant_image(200, 100)])
    crop = reg.crop("img_0", [-0.5, -1, 0.5, 1])
    assert crop.ok and crop.box == (0.0, 0.0, 0.5, 1.0) and crop.image.size == (100, 100)


@pytest.mark.parametrize("box,kind", [
    ([0, 0, 1], "bad_box_arity"),
    ([0, 0, 1, 1, 1], "bad_box_arity"),
    ("0,0,1,1", "bad_box_arity"),
    (None, "bad_box_arity"),
    ([[0, 0, 1, 1]], "bad_box_arity"),
    (["0", 0, 1, 1], "bad_box_value"),
    ([True, 0, 1, 1], "bad_box_value"),
    ([0, None, 1, 1], "bad_box_value"),
    ([0, 0, math.nan, 1], "bad_box_nonfinite"),
    ([0, 0, 1, math.inf], "bad_box_nonfinite"),
    ([0, 0, 10**400, 1], "bad_box_nonfinite"),
    ([0.5, 0, 0.5, 1], "bad_box_inverted"),
    ([0, 0.7, 1, 0.3], "bad_box_inverted"),
    ([1.2, 0, 1.5, 1], "bad_box_units"),  # above 1: pixels or 0-1000, never clamped
    ([0.1, 0.1, 0.1001, 0.5], "crop_too_small"),
])
def test_rejections_have_a_kind_and_a_reason(box, kind):
    reg = ImageRegistry([quadrant_image(200, 100)])
    crop = reg.crop("img_0", box)
    assert not crop.ok and crop.error_kind == kind and crop.reason
    assert crop.image_id == "img_1" and reg.next_id() == "img_2"  # the id was consumed


def test_pixel_coordinates_are_their_own_error_kind():
    box, kind, reason = validate_box([100, 200, 500, 600], 1000, 800, 2)
    assert box is None and kind == "bad_box_units" and "not pixels or 0-1000" in reason
    assert "width (1000)" in reason and "height (800)" in reason


def test_min_crop_px_is_configurable():
    box = [0, 0, 0.04, 0.5]  # 8 px wide of 200
    assert ImageRegistry([quadrant_image()], UGSConfig(min_crop_px=8)).crop("img_0", box).ok
    assert ImageRegistry([quadrant_image()], UGSConfig(min_crop_px=9)).crop("img_0", box).error_kind == "crop_too_small"


def test_crops_are_resized_to_the_long_side_limit_and_never_upscaled():
    reg = ImageRegistry([quadrant_image(1200, 600)], UGSConfig(crop_max_side=400))
    assert reg.crop("img_0", [0, 0, 1, 1]).image.size == (400, 200)
    assert reg.crop("img_0", [0, 0, 0.1, 0.1]).image.size == (120, 60)
    assert fit_long_side(Image.new("RGB", (12, 4000)), 1000).size == (3, 1000)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_crops_are_rgb(mode):
    crop = ImageRegistry([quadrant_image(mode=mode)]).crop("img_0", [0, 0, 1, 1])
    assert crop.image.mode == "RGB"


def test_registry_rejects_non_images_clearly():
    with pytest.raises(TypeError, match=r"images\[1\] must be a PIL.Image.Image, got bytes"):
        ImageRegistry([quadrant_image(), b"png"])


def test_planned_crop_takes_its_id_before_the_pixels_are_cut():
    reg = ImageRegistry([quadrant_image()])
    planned = reg.plan_crop("img_0", [0, 0, 0.5, 0.5])
    assert planned.image_id == "img_1" and planned.image is None and planned.error_kind is None
    assert "img_1" not in reg and reg.n_assigned == 2
    with pytest.raises(KeyError, match="still being made"):
        reg.get("img_1")
    assert reg.cut(planned).ok and reg.get("img_1") is planned.image


def truncated_png() -> Image.Image:
    import io

    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue()[:200]))  # header parses; pixel data is cut


def test_undecodable_source_fails_the_crop_not_the_caller():
    reg = ImageRegistry([truncated_png()])
    crop = reg.crop("img_0", [0, 0, 1, 1])
    assert not crop.ok and crop.error_kind == "image_unreadable" and "img_0 could not be decoded" in crop.reason
    assert "img_1" not in reg


def _noise(w: int, h: int, mode: str = "RGB") -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(3)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_with_the_model_fit_a_crop_is_kept_once_at_the_models_size(mode):
    """A 1000x750 crop of a 3000x2250 image (the paper's sizes): the model sees 1008x756 (36x27 tokens at
    factor 28). The registry keeps that copy, cut from the source without resampling and centred on the box;
    the search gets the box itself; fitting the kept copy again is a no-op (the agent loop holds no 2nd copy)."""
    from hyperseyes_verl.utils.images import TokenFit, fit_image_tokens

    src = _noise(3000, 2250, mode)
    fit = TokenFit(1200, 28)
    reg = ImageRegistry([src], UGSConfig(), fit)
    crop = reg.crop("img_0", [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert crop.ok and crop.image.size == (1008, 756) and crop.image.mode == "RGB"
    assert reg.get(crop.image_id) is crop.image
    assert fit_image_tokens(crop.image, 1200, 28) is crop.image
    # the box grown by 4 px left / right and 3 px top / bottom, pixel for pixel
    assert crop.image.tobytes() == src.crop((996, 747, 2004, 1503)).convert("RGB").tobytes()
    assert crop.search_image.size == (1000, 750)
    assert crop.search_image.tobytes() == src.crop((1000, 750, 2000, 1500)).convert("RGB").tobytes()
    # without the fit: the box itself, shown and searched
    plain = ImageRegistry([src]).crop("img_0", [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert plain.image.size == (1000, 750) and plain.search_image is plain.image


def test_the_model_copy_stays_inside_the_image_and_resamples_when_snapping_would_lose_content():
    from hyperseyes_verl.utils.images import TokenFit, fit_image_tokens

    src = _noise(1500, 1125)
    reg = ImageRegistry([src], UGSConfig(crop_max_side=1000), TokenFit(1200, 28))
    # the bottom-right quarter, (750, 562)-(1500, 1125), becomes 756x560: 6 px wider, grown towards the inside
    # (the image ends at the box's right edge); 3 px shorter, centred
    corner = reg.crop("img_0", [0.5, 0.5, 1.0, 1.0])
    assert corner.image.size == (756, 560)
    assert corner.image.tobytes() == src.crop((744, 563, 1500, 1123)).tobytes()
    # the whole image is larger than crop_max_side: resampled once more from the 1000x750 cut, as SFT rows are
    whole = reg.crop("img_0", [0, 0, 1, 1])
    assert whole.search_image.size == (1000, 750)
    assert whole.image.tobytes() == fit_image_tokens(whole.search_image, 1200, 28).tobytes()
    # a 100x100 crop would lose 16 % of a side to the grid (84 px): resampled instead
    small = reg.crop("img_0", [0, 0, 100 / 1500, 100 / 1125])
    assert small.search_image.size == (100, 100) and small.image.size == (112, 112)
    assert small.image.tobytes() == fit_image_tokens(small.search_image, 1200, 28).tobytes()
    # a crop of a crop is cut from the copy the model saw (its boxes are fractions of that image)
    again = reg.crop(corner.image_id, [0, 0, 0.5, 0.5])
    assert again.search_image.tobytes() == corner.image.crop((0, 0, 378, 280)).tobytes()


def test_a_box_slightly_over_crop_max_side_is_trimmed_not_resampled():
    """Boxes a model writes with 2-4 decimals (0.3333-0.6667 of 3000 px = 1002 px) overshoot crop_max_side by a
    few pixels: the searched copy is the box trimmed around its centre to 1000x750 and the model's copy the box
    grown to 1008x756, both plain copies of the source; a box 5 % over is still resized, as before."""
    from hyperseyes_verl.utils.images import TokenFit, fit_image_tokens

    src = _noise(3000, 2250)
    for fit in (None, TokenFit(1200, 28)):
        crop = ImageRegistry([src], UGSConfig(), fit).crop("img_0", [0.3333, 0.3333, 0.6667, 0.6667])
        # 999..2001 x 749..1501 px: 1002x752
        assert crop.search_image.tobytes() == src.crop((1000, 750, 2000, 1500)).tobytes()
        if fit is not None:
            assert crop.image.tobytes() == src.crop((996, 747, 2004, 1503)).tobytes()
    over = ImageRegistry([src], UGSConfig(), TokenFit(1200, 28)).crop("img_0", [0, 0, 0.35, 0.35])  # 1050x788
    assert over.search_image.tobytes() == fit_long_side(src.crop((0, 0, 1050, 788)), 1000).tobytes()
    assert over.image.tobytes() == fit_image_tokens(over.search_image, 1200, 28).tobytes()
