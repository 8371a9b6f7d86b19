"""Thumbnails of a site: one JPEG per distinct image and size, named by content key, written once.

Rollouts of one prompt, and every strategy's run on one item, share their input image and most crops, so
keying by content (not by episode) keeps a large site small and fast to build. Writes go through a temporary
file and `os.replace`, so parallel page builders can race on the same thumbnail harmlessly.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from PIL import Image

from .model import ImageRef

log = logging.getLogger(__name__)
INPUT_SIDE = 720  # long side of an input image as shown with its boxes
CROP_SIDE = 240  # long side of a crop thumbnail


class ThumbStore:
    def __init__(self, site_dir: str | os.PathLike):
        self.site = Path(site_dir)
        self.folder = self.site / "img"
        self._known: dict[tuple[str, int], tuple[str, int, int] | None] = {}
        self._dirs: set[Path] = set()

    def thumb(self, ref: ImageRef | None, max_side: int) -> tuple[str, int, int] | None:
        """(path relative to the site root, width, height) of the thumbnail, or None if it has no pixels."""
        if ref is None or not ref.known:
            return None
        key = (ref.key(), max_side)
        if key not in self._known:
            self._known[key] = self._make(ref, *key)
        return self._known[key]

    def _make(self, ref: ImageRef, key: str, max_side: int) -> tuple[str, int, int] | None:
        rel = f"img/{key[:2]}/{key}_{max_side}.jpg"
        path = self.site / rel
        if path.exists():  # written by another page or worker
            try:
                with Image.open(path) as im:
                    return rel, im.width, im.height
            except OSError:
                pass
        try:
            image = ref.load()
        except (OSError, ValueError) as e:
            # an unreadable source is drawn as a frame without pixels; the site still builds
            log.warning("image %s not shown (%s: %s)", ref.path or "(bytes)", type(e).__name__, e)
            return None
        scale = max_side / max(image.size)
        if scale < 1:  # a new image: `load` may hand out the decoded input its crops are cut from
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        image.save(tmp, "JPEG", quality=82)
        os.replace(tmp, path)
        return rel, image.width, image.height
