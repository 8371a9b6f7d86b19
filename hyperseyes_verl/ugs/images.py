"""Image registry of one episode, with the official id semantics, and crops by normalized boxes.

Input images are `img_0 … img_{n-1}`. Every requested box takes the next id `img_N` whether or not its crop
succeeds (the official release advances the counter on failed crops; keeping that keeps ids comparable with
its trajectories). Coordinates are fractions of the source image; negative values are clamped to 0 (official
behaviour). A coordinate above 1 means the model wrote pixels or Qwen's 0-1000 grid: clamping that would crop the
whole image and count it a success, so it is its own error, `bad_box_units` (the environment applies it to every box
of that call). Everything else that cannot be a box is rejected with a reason the model can act on.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from numbers import Real

from PIL import Image

from hyperseyes_verl.ugs.types import UGSConfig
from hyperseyes_verl.utils.images import TokenFit, fit_image_tokens

Box = tuple[float, float, float, float]
_PENDING = object()  # registry value of a crop whose pixels are being cut
# error kind of a crop whose *input* image cannot be decoded (a truncated dataset file): a data fault that the
# environment counts as a search failure, never as the model's crop error
UNREADABLE_SOURCE = "image_unreadable"
# A box within this fraction (per side) of the size it is needed at is cut at that size around its centre instead
# of resampled: at most 1.5 % more or less context per edge, against a 15-25 ms pass over a 1000x750 crop. 3 %
# covers the grid rounding of a 750 px side (up to half a token: 14 px at Qwen2.5-VL's 28, 16 at Qwen3-VL's 32)
SNAP_TOLERANCE = 0.03


@dataclass
class CropResult:
    image_id: str  # the id this box consumed, also when the crop failed
    source_id: str
    box: Box | None  # the clamped box, None when the value was not a box at all
    # RGB, registered and shown: long side <= crop_max_side, or the model's size with a fit; None on failure
    image: Image.Image | None = None
    # the box at crop_max_side, searched, when `image` is the model's copy at another size (dropped with the round)
    searched: Image.Image | None = None
    # bad_box_arity|bad_box_value|bad_box_nonfinite|bad_box_units|bad_box_inverted|crop_too_small|crop_error|image_unreadable
    error_kind: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.image is not None

    @property
    def search_image(self) -> Image.Image | None:
        return self.image if self.searched is None else self.searched


class ImageRegistry:
    """Ids -> images of one episode. Failed crops keep their id (mapped to None) so a later use says why.

    With `fit` (the model's image-token rule) the registry keeps each crop as the model sees it (`model_copy`):
    one copy per crop for the whole episode (the agent loop then has nothing to resize), usually cut without
    resampling. The search still gets the box at `crop_max_side` (`CropResult.searched`)."""

    def __init__(self, images: list[Image.Image], config: UGSConfig = UGSConfig(), fit: TokenFit | None = None):
        for i, im in enumerate(images):
            if not isinstance(im, Image.Image):
                raise TypeError(f"images[{i}] must be a PIL.Image.Image, got {type(im).__name__}; "
                                "decode bytes/paths with PIL.Image.open(...) first")
        self.config = config
        self.fit = fit
        self._images: dict[str, object] = {f"img_{i}": im for i, im in enumerate(images)}
        self._next = len(images)
        self.n_inputs = len(images)
        self._load_lock = threading.Lock()  # PIL's lazy decoding of an opened file is not thread-safe

    @property
    def known_ids(self) -> set[str]:
        """Every id handed out (usable, failed or pending)."""
        return set(self._images)

    def __contains__(self, image_id: object) -> bool:
        """True for ids whose image is ready (inputs and finished crops)."""
        return isinstance(image_id, str) and isinstance(self._images.get(image_id), Image.Image)

    @property
    def ids(self) -> list[str]:
        """Usable ids (failed and unfinished crops excluded), in registration order."""
        return [k for k, v in self._images.items() if isinstance(v, Image.Image)]

    @property
    def n_assigned(self) -> int:
        """Ids handed out so far (inputs and every requested crop): the next id is img_{n_assigned}."""
        return self._next

    def get(self, image_id: str) -> Image.Image:
        """The image of a usable id; `KeyError` whose message says why an id is not usable."""
        if not isinstance(image_id, str):
            raise KeyError(f"image_id must be a string like 'img_0', got {image_id!r}")
        if image_id not in self._images:
            raise KeyError(f"unknown image id {image_id!r}; known ids: {', '.join(self.ids) or 'none'}")
        image = self._images[image_id]
        if image is None:
            raise KeyError(f"{image_id} is the id of a crop that failed; crop a valid box to get a usable id")
        if not isinstance(image, Image.Image):
            raise KeyError(f"{image_id} is a crop still being made; it is usable from the next turn on")
        return image

    def next_id(self) -> str:
        image_id = f"img_{self._next}"
        self._next += 1
        return image_id

    def plan_crop(self, source_id: str, box: object) -> CropResult:
        """Take the next id for `box` of `source_id` and validate the box; the pixels are cut by `cut`.

        Split in two so ids are handed out in request order on the event loop while the pixel work (which can
        take tens of ms on a large image) runs in a worker thread next to the searches already in flight.
        """
        source = self.get(source_id)  # the caller checks the source id first; this only guards misuse
        new_id = self.next_id()
        clamped, kind, reason = validate_box(box, source.width, source.height, self.config.min_crop_px)
        if kind is not None:
            self._images[new_id] = None
            return CropResult(new_id, source_id, clamped, error_kind=kind, reason=reason)
        self._images[new_id] = _PENDING
        return CropResult(new_id, source_id, clamped)

    def cut(self, crop: CropResult) -> CropResult:
        """Cut a planned crop (`search_copy`; with `fit`, also `model_copy`). An input that cannot be decoded
        fails it (`image_unreadable`), any other pixel error too (`crop_error`)."""
        if crop.error_kind is not None or crop.image is not None:
            return crop
        try:
            source = self._loaded(crop.source_id)
        except Exception as e:  # the input file itself is broken (e.g. truncated): not the box's fault
            crop.error_kind = UNREADABLE_SOURCE
            crop.reason = f"{crop.source_id} could not be decoded ({type(e).__name__}: {e})"
            self._images[crop.image_id] = None
            return crop
        try:
            rect = to_pixels(crop.box, source.width, source.height)  # type: ignore[arg-type,union-attr]
            searched = search_copy(source, rect, self.config.crop_max_side)
            crop.image = searched if self.fit is None else model_copy(source, rect, searched, self.fit)
            crop.searched = None if crop.image is searched else searched
        except Exception as e:  # e.g. a truncated input file decoded lazily by PIL
            crop.error_kind, crop.reason = "crop_error", f"the image could not be cropped ({type(e).__name__}: {e})"
            self._images[crop.image_id] = None
            return crop
        self._images[crop.image_id] = crop.image
        return crop

    def whole(self, image_id: str) -> Image.Image:
        """The full image of `image_id` for a search without `area`: RGB, long side <= crop_max_side."""
        return fit_long_side(_rgb(self._loaded(image_id)), self.config.crop_max_side)

    def _loaded(self, image_id: str) -> Image.Image:
        image = self.get(image_id)
        with self._load_lock:
            image.load()
        return image

    def reject(self, source_id: str, box: object, kind: str, reason: str) -> CropResult:
        """Take the next id for a box refused by the caller (e.g. `bad_box_units` for a whole call); never cut."""
        self.get(source_id)
        new_id = self.next_id()
        self._images[new_id] = None
        return CropResult(new_id, source_id, None, error_kind=kind, reason=reason)

    def crop(self, source_id: str, box: object) -> CropResult:
        """Plan and cut in one call. The id is consumed even when the crop fails."""
        return self.cut(self.plan_crop(source_id, box))


def validate_box(box: object, width: int, height: int, min_px: int) -> tuple[Box | None, str | None, str]:
    """(clamped box, error kind or None, reason). Clamps negatives to 0; rejects what cannot be a box, and
    coordinates above 1 (other units) as `bad_box_units`."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        n = len(box) if isinstance(box, (list, tuple)) else type(box).__name__
        return None, "bad_box_arity", f"a box must be 4 numbers [x1, y1, x2, y2], got {short_repr(box)} ({n})"
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in box):
        return None, "bad_box_value", f"box values must be numbers, got {short_repr(box)}"
    try:
        values = [float(v) for v in box]
    except OverflowError:  # a JSON integer too large for a float
        values = [math.inf]
    if not all(math.isfinite(v) for v in values):
        return None, "bad_box_nonfinite", f"box values must be finite, got {short_repr(box)}"
    if max(values) > 1:
        return None, "bad_box_units", units_reason(box, width, height)
    x1, y1, x2, y2 = (max(0.0, v) for v in values)
    clamped = (x1, y1, x2, y2)
    if x2 <= x1 or y2 <= y1:
        return clamped, "bad_box_inverted", (f"box {short_repr(box)} is empty after clamping to [0, 1]: need x1 < x2 and "
                                             f"y1 < y2")
    left, top, right, bottom = to_pixels(clamped, width, height)
    if right - left < min_px or bottom - top < min_px:
        return clamped, "crop_too_small", (f"box {short_repr(box)} is {right - left}x{bottom - top} px of a {width}x{height} "
                                           f"image; crops need at least {min_px} px per side")
    return clamped, None, ""


def in_other_units(box: object) -> bool:
    """A box of 4 finite numbers with a coordinate above 1: pixels or Qwen's 0-1000 grid, not fractions. Clamping
    it would silently crop the whole image (the first box) or nothing; every box of its call is then suspect."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return False
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in box):
        return False
    try:
        return any(math.isfinite(float(v)) and float(v) > 1 for v in box)
    except OverflowError:
        return False


def units_reason(box: object, width: int, height: int) -> str:
    return (f"box {short_repr(box)} has a coordinate above 1: boxes are fractions of the image in [0, 1], not pixels "
            f"or 0-1000; divide x by the width ({width}) and y by the height ({height}) of the image")


def to_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel rectangle covering the normalized box (floor the start, ceil the end, inside the image)."""
    x1, y1, x2, y2 = box
    left, top = int(math.floor(x1 * width)), int(math.floor(y1 * height))
    right, bottom = int(math.ceil(x2 * width)), int(math.ceil(y2 * height))
    return max(0, left), max(0, top), min(width, right), min(height, bottom)


def search_copy(source: Image.Image, rect: tuple[int, int, int, int], max_side: int) -> Image.Image:
    """The box `rect` of `source` as RGB with its long side at most `max_side` (the official crop rule): a plain
    copy when it fits, or fits after trimming at most SNAP_TOLERANCE per side (`snapped`), else resized."""
    size = long_side_size(rect[2] - rect[0], rect[3] - rect[1], max_side)
    near = snapped(rect, size, source.size)
    if near is not None:
        return _rgb(source.crop(near))
    return fit_long_side(_rgb(source.crop(rect)), max_side)


def model_copy(source: Image.Image, rect: tuple[int, int, int, int], searched: Image.Image,
               fit: TokenFit) -> Image.Image:
    """The crop as the model sees it (`fit`'s size of `searched`, the box's `search_copy`): `searched` itself
    when it fits, a plain copy of the box grown or trimmed to that size when that is within SNAP_TOLERANCE
    (`snapped`; the model sees a little more or less at the edges where resizing would resample every pixel),
    else `fit_image_tokens(searched)`, as SFT rows are fitted."""
    size = fit.size(searched.width, searched.height)
    if size == searched.size:
        return searched
    near = snapped(rect, size, source.size)
    return _rgb(source.crop(near)) if near is not None else fit_image_tokens(searched, fit.max_tokens, fit.factor)


def snapped(rect: tuple[int, int, int, int], size: tuple[int, int], bounds: tuple[int, int]
            ) -> tuple[int, int, int, int] | None:
    """`rect` resized to `size` around its centre and moved inside `bounds`, or None when a side would change by
    more than SNAP_TOLERANCE or the image is too small."""
    (left, top, right, bottom), (tw, th) = rect, size
    w, h = right - left, bottom - top
    if abs(tw - w) > SNAP_TOLERANCE * w or abs(th - h) > SNAP_TOLERANCE * h or tw > bounds[0] or th > bounds[1]:
        return None
    x = min(max(0, left + (w - tw) // 2), bounds[0] - tw)
    y = min(max(0, top + (h - th) // 2), bounds[1] - th)
    return x, y, x + tw, y + th


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def long_side_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size with the long side at most `max_side`, aspect ratio kept; never larger."""
    if max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_long_side(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale (keeping the aspect ratio) so the long side is at most `max_side`; never upscale."""
    size = long_side_size(image.width, image.height, max_side)
    # BILINEAR is antialiased when shrinking and about half the cost of BICUBIC on a large crop
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def short_repr(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, for error lines that quote what the model wrote."""
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."
