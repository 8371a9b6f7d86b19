"""Opening image files the same way everywhere: EXIF orientation applied once, at load, and a pixel cap
checked from the header before any pixel is decoded.

A phone photo stores its pixels sideways plus an EXIF `Orientation` tag that viewers honour. If one loader
applies the tag and another does not, the model sees the image one way while crops, fingerprints and stored
PNGs use the other (and re-encoding to PNG drops the tag, fixing the wrong orientation for good). Every loader
calls `upright` (or `open_image`) right after `Image.open`; it is idempotent (the tag is removed), so a second
call never rotates twice.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000: above any dataset photo, far below what exhausts memory


class ImageTooLarge(ValueError):
    """The header announces more pixels than allowed; nothing was decoded."""


def upright(image: Image.Image) -> Image.Image:
    """`image` turned as its EXIF orientation says (the same object when there is nothing to turn)."""
    try:
        orientation = image.getexif().get(0x0112, 1)  # 0x0112 = Orientation
    except Exception:  # a broken EXIF block: show the pixels as stored rather than fail the image
        return image
    if orientation in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def check_pixels(image: Image.Image, max_pixels: int, what: str = "image") -> None:
    """Raise `ImageTooLarge` when the (header) size exceeds `max_pixels`; call before `load()`."""
    w, h = image.size
    if w * h > max_pixels:
        raise ImageTooLarge(f"{what} is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels}")


def open_image(src: str | os.PathLike | bytes | Path, mode: str | None = "RGB",
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A file path or encoded bytes as a fully decoded, upright image (converted to `mode` unless None).

    Raises `ImageTooLarge` (a ValueError) before decoding an image over `max_pixels`, OSError / ValueError
    for a file PIL cannot read. Decompression bombs are ImageTooLarge too (PIL's own check is a warning
    below 2x its limit and a different exception type above it)."""
    fp = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src
    what = "the image" if isinstance(src, (bytes, bytearray)) else str(src)
    try:
        with Image.open(fp) as im:
            check_pixels(im, max_pixels, what)
            im.load()
            out = upright(im)
            out = out.convert(mode) if mode and out.mode != mode else out.copy() if out is im else out
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"{what}: {e}") from None
    return out
