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
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# One image-token cap for both training stages: SFT (`HyperEyesSFTDataset`) and RL (the agent loop) resize every
# image the model sees with `fit_image_tokens(image, IMAGE_TOKEN_CAP, factor)`, so a cold-started model meets
# images at the same resolution in RL as in SFT. The official recipe caps both stages at 1200 tokens
# (ms-swift IMAGE_MAX_TOKEN_NUM=1200 for SFT, Relax --image-max-token-num 1200 for RL).
IMAGE_TOKEN_CAP = 1200


def jpeg_bytes(image: Image.Image, max_side: int, quality: int) -> bytes:
    """`image` as JPEG bytes, downscaled to `max_side` on its long side first (for sending to a search service)."""
    img = image.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def fit_image_tokens(image: Image.Image, max_tokens: int, factor: int) -> Image.Image:
    """Resize so that (w/factor)·(h/factor) ≤ `max_tokens`, both sides multiples of `factor` (≥ factor).

    `factor` is the processor's patch size × merge size (28 for Qwen2.5-VL, 32 for Qwen3-VL): one merged patch
    = one visual token. Sides are rounded to the nearest multiple as Qwen's `smart_resize` does, so a processor
    whose own `max_pixels` is at least the cap leaves the result unchanged (the token count is decided here).
    Returns `image` itself when it already fits exactly."""
    size = token_fit_size(image.width, image.height, max_tokens, factor)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def token_fit_size(w: int, h: int, max_tokens: int, factor: int) -> tuple[int, int]:
    """The size `fit_image_tokens` gives a `w`×`h` image (the rule alone, no pixels)."""
    if not isinstance(max_tokens, int) or not isinstance(factor, int) or max_tokens < 1 or factor < 1:
        raise ValueError(f"max_tokens ({max_tokens!r}) and factor ({factor!r}) must be positive integers")
    new_w = max(factor, round(w / factor) * factor)
    new_h = max(factor, round(h / factor) * factor)
    if (new_w // factor) * (new_h // factor) > max_tokens:
        beta = math.sqrt(w * h / (max_tokens * factor * factor))
        new_w = max(factor, math.floor(w / beta / factor) * factor)
        new_h = max(factor, math.floor(h / beta / factor) * factor)
        while (new_w // factor) * (new_h // factor) > max_tokens:  # the 1-patch floor of a very thin image
            if new_w >= new_h and new_w > factor:
                new_w -= factor
            elif new_h > factor:
                new_h -= factor
            else:
                break
    return new_w, new_h


@dataclass(frozen=True)
class TokenFit:
    """How the model sees an image: at most `max_tokens` visual tokens, sides multiples of `factor` (the
    `fit_image_tokens` rule). Given to the environment, crops are cut at this size directly."""
    max_tokens: int
    factor: int

    def size(self, width: int, height: int) -> tuple[int, int]:
        return token_fit_size(width, height, self.max_tokens, self.factor)


def image_token_factor(processor) -> int:
    """Pixels per visual-token side of a Qwen-VL processor: patch size × merge size (14·2 = 28 if unknown)."""
    ip = getattr(processor, "image_processor", None)
    return int(getattr(ip, "patch_size", None) or 14) * int(getattr(ip, "merge_size", None) or 2)


def image_token_count(image_processor, width: int, height: int, images_kwargs: dict | None = None) -> int | None:
    """Visual tokens a Qwen-VL image processor gives a `width`×`height` image, from the size alone.

    Uses the processor's own rule (`get_number_of_image_patches`: its smart-resize with its min/max pixels, or
    the `min_pixels` / `max_pixels` in `images_kwargs`) divided by merge_size², the count its `__call__` expands
    each image placeholder to. None when the processor has no such rule (then only running it tells)."""
    rule = getattr(image_processor, "get_number_of_image_patches", None)
    merge = getattr(image_processor, "merge_size", None)
    if rule is None or not isinstance(merge, int) or merge < 1:
        return None
    return int(rule(int(height), int(width), dict(images_kwargs or {}))) // (merge * merge)


def load_image_ref(ref: Any) -> Image.Image:
    """A parquet / message image reference as an upright RGB image: a PIL image, encoded bytes, a path
    (`file://` allowed), or a dict holding one of them under `image`, `bytes` or `path`. Both training stages
    read their images through this, so SFT and RL see the same pixels."""
    if isinstance(ref, dict):
        for key in ("image", "bytes", "path"):
            if ref.get(key) is not None and ref.get(key) != "":
                return load_image_ref(ref[key])
        raise ValueError(f"image entry has none of 'image', 'bytes', 'path': keys {sorted(ref)}; "
                         "write images as {'bytes': png_bytes} (docs/CONTRACTS.md §5)")
    if isinstance(ref, Image.Image):
        ref = upright(ref)  # the model must see what the crops are cut from (EXIF applied once)
        return ref if ref.mode == "RGB" else ref.convert("RGB")
    if isinstance(ref, (bytes, bytearray)):
        return open_image(bytes(ref))
    if isinstance(ref, (str, os.PathLike)):
        return open_image(os.fspath(ref).removeprefix("file://"))
    raise TypeError(f"unsupported image reference of type {type(ref).__name__}: use a PIL image, "
                    "{'bytes': png_bytes} or a file path")
