"""Reverse image search over a folder of images: one fingerprint per image (image_fingerprint.py) in a
float32 matrix (as stored, memory-mapped or not; never copied). Relevance = max(0, cosine).

Ranking is exact: a batch of queries is scored against the whole matrix by one float32 product (half the
memory traffic of float64 and no 2x copy of the index), then every row that can still be in a query's top k
is rescored exactly and ranked by that score rounded to float32 (ties by row). The float32 error of one dot
product of D terms is at most gamma_D * |q| * |f| (gamma_D = D*u/(1 - D*u), u = 2^-24, whatever order or FMA
the BLAS sums in), so the candidates are every row whose float32 score is within twice that bound (plus one
float32 ulp) of the k-th best float32 score: a superset of the exact top k. The rescored value is the float64
sum of float64 products of the float32 values (each product exact; the sum off by ~1e-16, which rounding to
float32 absorbs, as in the full float64 product this replaces), pairwise-summed per row by numpy in an order
that depends on neither the batch nor the candidate set: a batched answer equals the single one.

BLAS runs one thread per search (threadpoolctl when installed; without it set OPENBLAS_NUM_THREADS=1 /
OMP_NUM_THREADS=1 for a search server): a scan is memory-bound, and N search workers each spawning
all-core BLAS threads only fight over the cores."""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from hyperseyes_verl.search.image_fingerprint import EMBEDDING_DIM, image_embedding
from hyperseyes_verl.utils.images import open_image
from hyperseyes_verl.utils.jsonl import read_jsonl

_FEATURES_FILE = "features.npy"
_META_FILE = "images.json"
_RESCORE_ROWS = 4096  # rows rescored per float64 block: bounds the temporary when near-ties are many
_U32 = 2.0 ** -24  # float32 unit roundoff

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # optional: without it, BLAS threads are whatever the environment variables say
    ThreadpoolController = None

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit = None
_blas_controller = None  # found once: inspecting the loaded libraries takes milliseconds


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread while any search runs. The limit is process-wide, so it is counted: set by the
    first search in, restored by the last one out (a plain `threadpool_limits` per call would let concurrent
    searches restore each other's limits in the wrong order)."""
    global _blas_users, _blas_limit, _blas_controller
    if ThreadpoolController is None:
        yield
        return
    with _blas_lock:
        if _blas_users == 0:
            if _blas_controller is None:
                _blas_controller = ThreadpoolController()
            _blas_limit = _blas_controller.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None


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
        # float32 is what is stored and scanned; another dtype (an index saved by hand) is converted once
        self.features = features if features.dtype == np.float32 else np.ascontiguousarray(features, np.float32)
        self.docs = docs
        self._max_norm: float | None = None  # of the rows, for the float32 error bound; one chunked pass

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
        qs = np.stack([np.asarray(vecs[i], np.float32) for i in rows])
        with one_blas_thread():
            approx = qs @ self.features.T  # float32 (B, N): the only full pass over the index
        for q, sims, i in zip(qs, approx, rows):
            qk = min(ks[i], len(sims))
            if qk > 0:
                out[i] = self._exact_top(q, sims, qk, min_score)
        return out

    def _error_bound(self, q: np.ndarray) -> float:
        """Largest possible |float32 score - exact score| of `q` against any row."""
        if self._max_norm is None:  # float32 sums of squares are within 1e-4 relative (D*u): padded by that
            sq = max(float(np.einsum("ij,ij->i", c, c).max())
                     for c in (self.features[j:j + 65536] for j in range(0, len(self.features), 65536)))
            self._max_norm = float(np.sqrt(sq)) * (1 + 1e-4)
        d = self.features.shape[1]
        gamma = d * _U32 / (1 - d * _U32)
        return gamma * float(np.linalg.norm(q.astype(np.float64))) * self._max_norm

    def _exact_top(self, q: np.ndarray, sims: np.ndarray, k: int, min_score: float) -> list[tuple[ImageDoc, float]]:
        if k < len(sims):
            kth = float(np.partition(sims, len(sims) - k)[len(sims) - k])
            margin = 2 * self._error_bound(q) + 2 * np.spacing(np.float32(max(abs(kth), 1.0)))
            cand = np.flatnonzero(sims >= kth - margin)
        else:
            cand = np.arange(len(sims))
        q64 = q.astype(np.float64)
        exact = np.concatenate([(self.features[cand[j:j + _RESCORE_ROWS]].astype(np.float64) * q64).sum(axis=1)
                                for j in range(0, len(cand), _RESCORE_ROWS)]).astype(np.float32)
        order = np.lexsort((cand, -exact))[:k]  # best first, ties by row
        return [(self.docs[int(cand[j])], s) for j in order if (s := max(0.0, float(exact[j]))) >= min_score]
