"""Reverse image search over a folder of images: one fingerprint per image (image_fingerprint.py) in a
float32 matrix (as stored), cosine similarity of a batch of queries by one float64 matrix product.
Relevance = max(0, cosine).

Why float64: BLAS sums a matrix product in an order that depends on the batch size, so float32 similarities of
one image differ in the last bits between a batch of 1 and of 64 and near-ties could swap. In float64 those
differences (~1e-16) practically always vanish when the similarities are rounded to float32 for ranking, so a
batched answer equals the single one."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from hyperseyes_verl.search.image_fingerprint import EMBEDDING_DIM, image_embedding
from hyperseyes_verl.utils.images import open_image
from hyperseyes_verl.utils.jsonl import read_jsonl

_FEATURES_FILE = "features.npy"
_META_FILE = "images.json"


@dataclass(frozen=True)
class ImageDoc:
    path: str
    title: str
    text: str
    url: str
    entity: str | None = None


def read_images_meta(images_dir: str | Path, meta_path: str | Path | None) -> list[ImageDoc]:
    """Entries of images.jsonl (CONTRACTS §6); without it, every image file of the folder titled by its stem."""
    root = Path(images_dir)
    if meta_path is None:
        exts = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts)
        return [ImageDoc(path=str(p.relative_to(root)), title=p.stem.replace("_", " "), text="", url="") for p in files]
    docs = []
    for n, d in enumerate(read_jsonl(meta_path, required=("path",), what="metadata entry"), 1):
        if not isinstance(d["path"], str):
            raise ValueError(f"{meta_path}: metadata entry {n}: 'path' must be a string relative to {root}, "
                             f"got {str(d)[:120]!r}")
        docs.append(ImageDoc(path=d["path"], title=str(d.get("title", "")), text=str(d.get("text", "")),
                             url=str(d.get("url", "")), entity=d.get("entity")))
    return docs


class ImageIndex:
    """Fingerprints (N x D, unit rows) and the metadata of each row; `search` is thread-safe."""

    def __init__(self, features: np.ndarray, docs: list[ImageDoc]):
        if features.shape != (len(docs), EMBEDDING_DIM):
            raise ValueError(f"image index features have shape {features.shape}, expected ({len(docs)}, {EMBEDDING_DIM}); "
                             "rebuild the index with `hyperseyes index build`")
        self.features = features
        self.docs = docs
        self._f64: np.ndarray | None = None  # the float64 copy products use, made on first search

    @classmethod
    def build(cls, images_dir: str | Path, docs: list[ImageDoc],
              on_progress: Callable[[int], None] | None = None) -> "ImageIndex":
        root = Path(images_dir)
        feats = np.zeros((len(docs), EMBEDDING_DIM), dtype=np.float32)
        for i, doc in enumerate(docs):
            path = root / doc.path
            try:  # upright and pixel-capped like every loader; mode kept so transparency is flattened as for queries
                feats[i] = image_embedding(open_image(path, mode=None))
            except Exception as e:  # PIL raises many types on hostile files (SyntaxError, EOFError, bombs, ...)
                raise ValueError(f"cannot read image {path} (entry {i + 1} of the image list): "
                                 f"{type(e).__name__}: {e}") from None
            if on_progress:
                on_progress(1)
        return cls(feats, docs)

    @classmethod
    def from_images(cls, images: Iterable[Image.Image], docs: list[ImageDoc]) -> "ImageIndex":
        feats = np.stack([image_embedding(im) for im in images]) if docs else np.zeros((0, EMBEDDING_DIM), np.float32)
        return cls(feats.astype(np.float32), docs)

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / _FEATURES_FILE, self.features)
        tmp = out / (_META_FILE + ".tmp")
        tmp.write_text(json.dumps([[d.path, d.title, d.text, d.url, d.entity] for d in self.docs], ensure_ascii=False),
                       encoding="utf-8")
        os.replace(tmp, out / _META_FILE)

    @classmethod
    def load(cls, index_dir: str | Path, mmap: bool = False) -> "ImageIndex":
        d = Path(index_dir)
        feats = np.load(d / _FEATURES_FILE, mmap_mode="r" if mmap else None)
        rows = json.loads((d / _META_FILE).read_text(encoding="utf-8"))
        return cls(feats, [ImageDoc(*r) for r in rows])

    def search(self, image: Image.Image, k: int, min_score: float = 0.0) -> list[tuple[ImageDoc, float]]:
        """Up to `k` (image entry, relevance in [0,1]) pairs with relevance >= `min_score`, best first."""
        found = self.search_many([image], k, min_score)[0]
        if isinstance(found, Exception):
            raise found
        return found

    def search_many(self, images: Sequence[Image.Image], k: int | Sequence[int], min_score: float = 0.0
                    ) -> list[list[tuple[ImageDoc, float]] | ValueError]:
        """`search` for each image (with its own k when `k` is a list), by one matrix product. An image that cannot
        be embedded (e.g. 0x0) gets its ValueError in its slot instead of failing the batch."""
        ks = [k] * len(images) if isinstance(k, int) else list(k)
        if len(ks) != len(images):
            raise ValueError(f"search_many got {len(images)} images but {len(ks)} values of k")
        vecs: list = []
        for image in images:
            try:
                vecs.append(image_embedding(image))
            except (ValueError, OSError) as e:
                vecs.append(ValueError(f"cannot fingerprint the query image ({e})"))
        return self.search_embeddings(vecs, ks, min_score)

    def search_embeddings(self, vecs: Sequence[np.ndarray | ValueError], k: int | Sequence[int],
                          min_score: float = 0.0) -> list[list[tuple[ImageDoc, float]] | ValueError]:
        """`search_many` from fingerprints already computed (`image_embedding`); a ValueError entry is passed
        through. Lets a server decode and fingerprint one image at a time and drop its pixels before the next."""
        ks = [k] * len(vecs) if isinstance(k, int) else list(k)
        out: list = [v if isinstance(v, ValueError) else [] for v in vecs]
        rows = [i for i, v in enumerate(vecs) if not isinstance(v, ValueError)]
        if not rows or not self.docs:
            return out
        if self._f64 is None:
            self._f64 = np.ascontiguousarray(self.features, dtype=np.float64)
        sims_all = (np.stack([vecs[i] for i in rows]).astype(np.float64) @ self._f64.T).astype(np.float32)
        for sims, i in zip(sims_all, rows):
            qk = min(ks[i], len(sims))
            if qk <= 0:
                continue
            top = np.argpartition(-sims, qk - 1)[:qk] if qk < len(sims) else np.arange(len(sims))
            top = top[np.argsort(-sims[top], kind="stable")]
            out[i] = [(self.docs[int(j)], s) for j in top if (s := max(0.0, float(sims[j]))) >= min_score]
        return out
