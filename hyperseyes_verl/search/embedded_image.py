"""Reverse image search over a folder of images: one fingerprint per image (image_fingerprint.py) in a
float32 matrix, cosine similarity by one matrix-vector product. Relevance = max(0, cosine)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from hyperseyes_verl.search.image_fingerprint import EMBEDDING_DIM, image_embedding

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
    with open(meta_path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{meta_path}:{n}: not a JSON object ({e})") from None
            if not isinstance(d, dict) or not isinstance(d.get("path"), str):
                raise ValueError(f"{meta_path}:{n}: an image entry needs a string 'path' relative to {root}, got {str(d)[:120]!r}")
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

    @classmethod
    def build(cls, images_dir: str | Path, docs: list[ImageDoc],
              on_progress: Callable[[int], None] | None = None) -> "ImageIndex":
        root = Path(images_dir)
        feats = np.zeros((len(docs), EMBEDDING_DIM), dtype=np.float32)
        for i, doc in enumerate(docs):
            path = root / doc.path
            try:
                with Image.open(path) as im:
                    feats[i] = image_embedding(im)
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot read image {path} (entry {i + 1} of the image list): {e}") from None
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
        if k <= 0 or not self.docs:
            return []
        sims = self.features @ image_embedding(image)
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(self.docs[int(i)], max(0.0, float(sims[i]))) for i in top if max(0.0, float(sims[i])) >= min_score]
