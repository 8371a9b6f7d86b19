"""Boxes written in pixels or on Qwen's 0-1000 grid (issue 15): every box of such a call is refused as
`bad_box_units` with the image size to divide by, instead of the first box being clamped to the whole image and
counted as a successful crop."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from hyperseyes_verl.search.base import InMemoryBackend
from hyperseyes_verl.ugs.environment import SearchEnvironment


def crop_call(*boxes) -> str:
    return ('<reason>crop</reason><tool_call>' + json.dumps({"name": "image_search", "arguments": {
        "image_id": "img_0", "area": [list(b) for b in boxes]}}) + "</tool_call>")


@pytest.mark.parametrize("boxes", [
    ([0, 0, 500, 500], [500, 0, 1000, 500]),  # pixels of a 1000 x 600 image: the first used to crop everything
    ([0, 0, 1, 1], [0, 0, 500, 1000]),  # 0-1000 grid: [0, 0, 1, 1] is a tiny corner there, not the whole image
])
async def test_every_box_of_a_call_in_other_units_is_refused(boxes):
    backend = InMemoryBackend()
    env = SearchEnvironment(backend, "which bird?", [Image.new("RGB", (1000, 600), (10, 120, 200))])
    result = await env.step(crop_call(*boxes))
    r = result.round
    assert (r.crops_ok, r.crops_failed, r.searches) == (0, 2, 0) and r.errors == {"bad_box_units": 2}
    text = result.observation.text
    assert "img_1: crop failed (bad_box_units)" in text and "img_2: crop failed (bad_box_units)" in text
    assert "divide x by the width (1000) and y by the height (600)" in text
    again = await env.step(crop_call([0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5]))  # fractions: both crops run
    assert again.round.crops_ok == 2 and "img_3: <image>" in again.observation.text
