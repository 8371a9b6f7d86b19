"""Procedural test images: distinct "entities" (random shapes, colours and stripes), mosaics of them
and the jittered, rescaled, JPEG re-encoded tile crops an agent sends to reverse image search.
Used by the tests and benchmarks of the embedded image index; deterministic per seed."""
from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw


def entity_image(seed: int, size: int = 128) -> Image.Image:
    """One entity: a background colour, optional stripes, and 2-5 filled shapes, all drawn from `seed`."""
    rng = random.Random(seed)

    def colour() -> tuple[int, int, int]:
        return tuple(rng.randrange(256) for _ in range(3))  # type: ignore[return-value]

    img = Image.new("RGB", (size, size), colour())
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.5:  # stripes at a random period and direction
        period, stripe = rng.randint(6, 24), colour()
        for off in range(-size, 2 * size, period):
            if rng.random() < 0.5:
                draw.line([(off, 0), (off + size, size)], fill=stripe, width=max(2, period // 3))
            else:
                draw.line([(off, 0), (off, size)], fill=stripe, width=max(2, period // 3))
    for _ in range(rng.randint(2, 5)):
        x1, y1 = rng.randrange(size), rng.randrange(size)
        w, h = rng.randint(size // 6, size // 2), rng.randint(size // 6, size // 2)
        box = [x1 - w // 2, y1 - h // 2, x1 + w // 2, y1 + h // 2]
        kind = rng.choice(["ellipse", "rectangle", "polygon"])
        if kind == "ellipse":
            draw.ellipse(box, fill=colour())
        elif kind == "rectangle":
            draw.rectangle(box, fill=colour())
        else:
            pts = [(rng.randint(box[0], box[2]), rng.randint(box[1], box[3])) for _ in range(rng.randint(3, 6))]
            draw.polygon(pts, fill=colour())
    return img


def mosaic(tiles: list[Image.Image], cols: int, tile_px: int = 160) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Tiles on a grid (row-major); returns the mosaic and each tile's pixel box."""
    rows = (len(tiles) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * tile_px, rows * tile_px), (255, 255, 255))
    boxes = []
    for i, tile in enumerate(tiles):
        x, y = (i % cols) * tile_px, (i // cols) * tile_px
        canvas.paste(tile.resize((tile_px, tile_px), Image.Resampling.BICUBIC), (x, y))
        boxes.append((x, y, x + tile_px, y + tile_px))
    return canvas, boxes


def jittered_crop(image: Image.Image, box: tuple[int, int, int, int], rng: random.Random, margin: float = 0.05,
                  scale: tuple[float, float] = (0.6, 1.6), jpeg_quality: tuple[int, int] = (60, 90)) -> Image.Image:
    """Crop `box` with each edge moved by up to `margin` of the box size (in or out), rescale by a random
    factor and re-encode as JPEG: what the agent's normalized-coordinate crops look like."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    jx = lambda: rng.uniform(-margin, margin) * w  # noqa: E731
    jy = lambda: rng.uniform(-margin, margin) * h  # noqa: E731
    cx1, cy1 = max(0, round(x1 + jx())), max(0, round(y1 + jy()))
    cx2, cy2 = min(image.width, round(x2 + jx())), min(image.height, round(y2 + jy()))
    crop = image.crop((cx1, cy1, cx2, cy2))
    f = rng.uniform(*scale)
    crop = crop.resize((max(8, round(crop.width * f)), max(8, round(crop.height * f))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=rng.randint(*jpeg_quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")
