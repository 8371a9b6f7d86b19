"""Stitch several entity images into one mosaic and record where each one went.

Boxes are normalized `[x1, y1, x2, y2]` floats in [0, 1] of the mosaic — the coordinates the UGS
`image_search` tool takes — so a recorded box is also a correct tool argument.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, get_args

from PIL import Image

from hyperseyes_verl.ugs.images import to_pixels

Layout = Literal["grid", "rows", "irregular", "tiles"]
LAYOUTS: tuple[Layout, ...] = get_args(Layout)
# what a mosaic is drawn from unless asked otherwise: "tiles" is for models too small to place free boxes
RANDOM_LAYOUTS: tuple[Layout, ...] = ("grid", "rows", "irregular")


@dataclass
class Mosaic:
    image: Image.Image
    boxes: list[list[float]]  # one per input image, same order
    layout: Layout


def _place(canvas: Image.Image, img: Image.Image, x: int, y: int, w: int, h: int) -> list[float]:
    canvas.paste(img.convert("RGB").resize((w, h), Image.Resampling.LANCZOS), (x, y))
    W, H = canvas.size
    # 2 decimals (1 % of a side), rounded inward so a box stays inside its tile: the precision a model is asked to
    # write — a tiny one learns the call format far sooner than with 4-decimal coordinates (issue #12)
    return [_up(x / W), _up(y / H), _down((x + w) / W), _down((y + h) / H)]


def _up(v: float) -> float:
    return math.ceil(round(v * 100, 6)) / 100


def _down(v: float) -> float:
    return math.floor(round(v * 100, 6)) / 100


def _grid(rng: random.Random, canvas: Image.Image, images: list[Image.Image]) -> list[list[float]]:
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    W, H = canvas.size
    cw, ch = W // cols, H // rows
    cells = rng.sample(range(cols * rows), n)
    boxes = []
    for img, cell in zip(images, cells):
        side = int(min(cw, ch) * rng.uniform(0.6, 0.95))
        x = (cell % cols) * cw + rng.randint(0, cw - side)
        y = (cell // cols) * ch + rng.randint(0, ch - side)
        boxes.append(_place(canvas, img, x, y, side, side))
    return boxes


def _rows(rng: random.Random, canvas: Image.Image, images: list[Image.Image]) -> list[list[float]]:
    n = len(images)
    n_rows = max(1, min(3, round(math.sqrt(n) * rng.uniform(0.7, 1.1))))
    counts = [n // n_rows + (1 if r < n % n_rows else 0) for r in range(n_rows)]
    W, H = canvas.size
    rh = H // n_rows
    boxes, k = [], 0
    for r, cnt in enumerate(counts):
        widths = [rng.uniform(0.7, 1.3) for _ in range(cnt)]
        scale = W / sum(widths)
        x = 0
        for wfrac in widths:
            slot = int(wfrac * scale)
            side = int(min(slot, rh) * rng.uniform(0.65, 0.95))
            bx = x + rng.randint(0, max(0, slot - side))
            by = r * rh + rng.randint(0, rh - side)
            boxes.append(_place(canvas, images[k], bx, by, side, side))
            x += slot
            k += 1
    return boxes


def _tiles(rng: random.Random, canvas: Image.Image, images: list[Image.Image]) -> list[list[float]]:
    """Each image stretched over a whole grid cell but a thin gutter: a cell's box finds it. A model that sees a
    mosaic as a few visual tokens (the demo's 16) can learn these boxes; free placements it cannot (issue #12)."""
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    W, H = canvas.size
    cw, ch = W // cols, H // rows
    gutter = max(1, min(cw, ch) // 64)
    cells = sorted(rng.sample(range(cols * rows), n))  # reading order: the boxes of a full grid are always the same
    return [_place(canvas, img, (cell % cols) * cw + gutter, (cell // cols) * ch + gutter, cw - 2 * gutter,
                   ch - 2 * gutter) for img, cell in zip(images, cells)]


def _irregular(rng: random.Random, canvas: Image.Image, images: list[Image.Image]) -> list[list[float]] | None:
    W, H = canvas.size
    n = len(images)
    base = int(math.sqrt(W * H / n) * 0.62)
    taken: list[tuple[int, int, int, int]] = []
    for _ in images:
        for _attempt in range(200):
            side = int(base * rng.uniform(0.75, 1.2))
            x, y = rng.randint(0, W - side), rng.randint(0, H - side)
            gap = 4
            if all(x + side + gap <= a or a + c + gap <= x or y + side + gap <= b or b + c + gap <= y
                   for a, b, c, _ in taken):
                taken.append((x, y, side, side))
                break
        else:
            return None  # too crowded for this draw; caller falls back to a grid
    return [_place(canvas, img, x, y, w, h) for img, (x, y, w, h) in zip(images, taken)]


def build_mosaic(images: list[Image.Image], rng: random.Random, layout: Layout | None = None,
                 canvas_size: tuple[int, int] = (768, 576), background: tuple[int, int, int] | None = None) -> Mosaic:
    """Place `images` (2–9) on one canvas without overlap; sizes, positions and the layout (unless given: one
    of RANDOM_LAYOUTS) vary with `rng`."""
    if not 2 <= len(images) <= 9:
        raise ValueError(f"a mosaic takes 2 to 9 images, got {len(images)}")
    layout = layout or rng.choice(RANDOM_LAYOUTS)
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} unknown; use one of {LAYOUTS}")
    bg = background or tuple(rng.randint(225, 250) for _ in range(3))
    canvas = Image.new("RGB", canvas_size, bg)
    boxes = None
    if layout == "irregular":
        boxes = _irregular(rng, canvas, images)
        if boxes is None:
            canvas, layout = Image.new("RGB", canvas_size, bg), "grid"
    if boxes is None:
        boxes = {"grid": _grid, "rows": _rows, "tiles": _tiles}[layout](rng, canvas, images)
    return Mosaic(canvas, boxes, layout)


def crop_box(image: Image.Image, box: list[float]) -> Image.Image:
    """The pixels under a normalized box, by the environment's own box-to-pixel rule (before its size cap)."""
    return image.crop(to_pixels(tuple(box), image.width, image.height))
