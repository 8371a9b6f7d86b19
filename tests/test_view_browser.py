"""The viewer in a real browser: headless Chromium (Debian's `chromium`) loads the index and an episode page
from disk, and the test checks the rendered DOM — table rows drawn by the script, filters and sorting, every
image decoded, boxes placed where their coordinates say, no injected script ran, no console error — and
writes a screenshot (to $HYPERSEYES_VIEW_SCREENSHOT as well, when set)."""
from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

from hyperseyes_verl.testing.chromium import Chromium, find_chromium
from hyperseyes_verl.view import build_from_paths
from view_scenario import write_eval_run

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_chromium() is None,
                                                    reason="Chromium is not installed (Debian: apt-get install -y chromium)")]

LOAD_ALL_IMAGES = """(async () => {
  const ims = [...document.images];
  ims.forEach(i => { i.loading = "eager"; });  // lazy images below the fold load too
  await Promise.all(ims.map(i => i.decode().catch(() => null)));
  return ims.map(i => [i.getAttribute("src"), i.complete && i.naturalWidth > 0]);
})()"""

# each drawn box of the input figure, with its position as a fraction of the picture it is drawn on
BOX_GEOMETRY = """[...document.querySelectorAll('figure[data-image-id="img_0"]')[0].querySelectorAll(".box")].map(b => {
  const p = b.parentElement.getBoundingClientRect(), r = b.getBoundingClientRect();
  return [b.dataset.boxId, b.classList.contains("fail"), (r.left - p.left) / p.width, (r.right - p.left) / p.width,
          (r.bottom - p.top) / p.height, b.innerText];
})"""


async def test_index_and_episode_page_in_chromium(tmp_path):
    run, _ = await write_eval_run(tmp_path)
    site = tmp_path / "site"
    build_from_paths([run], site, workers=1)
    with Chromium(width=1280, height=1400) as browser:
        browser.open(site / "index.html")
        rows = browser.evaluate("[...document.querySelectorAll('#eps-body tr')].map(r => [r.cells[0].innerText, "
                                "r.cells[2].innerText, r.cells[0].querySelector('a').getAttribute('href')])")
        assert sorted(r[1] for r in rows) == ["correct", "wrong"]
        assert all(href.startswith("e/") and (site / href).is_file() for _, _, href in rows)
        # filters and sorting run in the page
        browser.evaluate("document.querySelector('input[value=correct]').click()")
        assert browser.evaluate("document.querySelectorAll('#eps-body tr').length") == 1
        browser.evaluate("document.querySelector('input[value=correct]').click();"
                         "document.querySelector('th[data-key=rounds]').click();"
                         "document.querySelector('th[data-key=rounds]').click()")  # rounds, descending
        assert browser.evaluate("[...document.querySelectorAll('#eps-body tr')].map(r => r.cells[6].innerText)") == [
            "2", "1"]
        assert browser.evaluate("document.getElementById('count').innerText") == "2 of 2 episodes"
        assert browser.errors() == []

        page = next(site / href for _, verdict, href in rows if verdict == "correct")
        browser.open(page)
        images = browser.evaluate(LOAD_ALL_IMAGES)
        assert len(images) >= 5 and all(ok for _, ok in images), images
        boxes = {b[0]: b for b in browser.evaluate(BOX_GEOMETRY)}
        assert set(boxes) == {"img_1", "img_2", "img_3"}
        _, fail1, left1, right1, bottom1, _ = boxes["img_1"]  # [0, 0, 0.5, 1]: the left half, full height
        assert not fail1 and abs(left1) < 0.02 and abs(right1 - 0.5) < 0.02 and abs(bottom1 - 1) < 0.02
        assert abs(boxes["img_2"][2] - 0.5) < 0.02 and abs(boxes["img_2"][3] - 1) < 0.02
        assert boxes["img_3"][1] and "bad_box_inverted" in boxes["img_3"][5]  # failed box marked with its kind
        assert browser.evaluate("document.querySelectorAll('.crop.fail').length") == 1
        assert browser.evaluate("document.getElementById('verdict').innerText") == "correct"
        # the model's and the search backend's HTML stayed text
        assert browser.evaluate("typeof window.__xss") == "undefined"
        assert browser.evaluate("document.querySelectorAll('main script, main img[src=x], a[href^=javascript]')"
                                ".length") == 0
        assert "<script>window.__xss=1</script>" in browser.evaluate("document.body.innerText")
        assert browser.errors() == []
        shot = browser.screenshot(tmp_path / "episode.png")
    with Image.open(shot) as im:
        assert im.width == 1280 and im.height > 1000
        assert len(set(im.convert("RGB").resize((64, 64)).getdata())) > 50  # a rendered page, not a blank one
    if os.environ.get("HYPERSEYES_VIEW_SCREENSHOT"):
        shutil.copy(shot, os.environ["HYPERSEYES_VIEW_SCREENSHOT"])
