"""A deterministic image embedding for reverse image search that needs no downloaded weights.

Three blocks, each L2-normalized and scaled by the square root of its weight, so the cosine of two
embeddings is the weighted mean of the per-block cosines:
- colour: joint RGB histograms (4x4x4 bins) of the whole image and of its 2x2 quadrants, square-rooted
  (Hellinger), so a few percent of foreign border barely moves them;
- layout: an 8x8 thumbnail per channel, mean-removed (the coarse picture; survives rescaling and JPEG);
- shape: 8-bin gradient-orientation histograms over a 4x4 grid of a 32x32 grey image (edges and texture).
An agent's crop of one mosaic tile (a few percent margin off, rescaled, re-encoded) stays close to the
tile's own embedding; bench/bench_search_image.py measures the top-1 accuracy.
"""
from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

FINGERPRINT_VERSION = "fp1"  # stored in the index manifest; bump when the features change
_WEIGHTS = {"colour": 0.35, "layout": 0.35, "shape": 0.30}
_BINS = 4
_THUMB = 8
_GRAD_SIDE = 32
_GRAD_CELLS = 4
_ORIENT_BINS = 8
_CELL = np.arange(_GRAD_SIDE) // (_GRAD_SIDE // _GRAD_CELLS)
_CELL_OF_PIXEL = _CELL[:, None] * _GRAD_CELLS + _CELL[None, :]  # grid cell of each pixel of the grey image


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P"):  # flatten transparency onto white, as a browser would show it
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _colour_block(px: np.ndarray) -> np.ndarray:
    q = (px.astype(np.int32) * _BINS) // 256  # per-channel bin
    code = q[..., 0] * _BINS * _BINS + q[..., 1] * _BINS + q[..., 2]
    h, w = code.shape
    regions = [code, code[: h // 2, : w // 2], code[: h // 2, w // 2:], code[h // 2:, : w // 2], code[h // 2:, w // 2:]]
    hists = [np.bincount(r.ravel(), minlength=_BINS**3).astype(np.float32) / max(r.size, 1) for r in regions]
    return _unit(np.sqrt(np.concatenate(hists)))


def _layout_block(image: Image.Image) -> np.ndarray:
    thumb = np.asarray(image.resize((_THUMB, _THUMB), Image.Resampling.BOX), dtype=np.float32)
    return _unit((thumb - thumb.mean(axis=(0, 1), keepdims=True)).ravel())


def _shape_block(image: Image.Image) -> np.ndarray:
    grey = np.asarray(image.convert("L").resize((_GRAD_SIDE, _GRAD_SIDE), Image.Resampling.BOX), dtype=np.float32)
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    orient = (np.arctan2(gy, gx) % np.pi) / np.pi * _ORIENT_BINS  # unsigned orientation
    bins = np.minimum(orient.astype(np.int32), _ORIENT_BINS - 1)
    flat = (_CELL_OF_PIXEL * _ORIENT_BINS + bins).ravel()
    hist = np.bincount(flat, weights=magnitude.ravel(), minlength=_GRAD_CELLS**2 * _ORIENT_BINS).astype(np.float32)
    return _unit(np.sqrt(hist))


def image_embedding(image: Image.Image) -> np.ndarray:
    """The float32 unit vector of `image` (any mode, any size >= 1x1)."""
    if image.width < 1 or image.height < 1:
        raise ValueError(f"cannot embed an empty image of size {image.width}x{image.height}")
    rgb = _rgb(image)
    small = rgb.resize((64, 64), Image.Resampling.BOX) if rgb.size != (64, 64) else rgb
    blocks = [
        _colour_block(np.asarray(small)) * np.sqrt(_WEIGHTS["colour"]),
        _layout_block(small) * np.sqrt(_WEIGHTS["layout"]),
        _shape_block(small) * np.sqrt(_WEIGHTS["shape"]),
    ]
    return _unit(np.concatenate(blocks)).astype(np.float32)


EMBEDDING_DIM = int(image_embedding(Image.new("RGB", (2, 2))).shape[0])


def image_cache_key(image: Image.Image) -> str:
    """A short hash of a 16x16 RGB thumbnail quantized to 32 levels: the same crop sent twice (by the
    rollouts of one prompt) maps to one key; different images practically never collide."""
    thumb = np.asarray(_rgb(image).resize((16, 16), Image.Resampling.BOX), dtype=np.uint8) // 8
    return hashlib.blake2b(thumb.tobytes(), digest_size=16).hexdigest()
