"""The embedded offline backend (the default): an index folder holding a BM25 text index and an image
fingerprint index, built once by `hyperseyes index build` and loaded in well under a second.

Layout of INDEX_DIR: manifest.json (format, counts, sources), text/ (bm25s arrays + docs.json and its row offsets),
image/ (features.npy + images.json). Either part may be absent (text-only or image-only index).
Lookups run in a small thread pool so many concurrent searches never block the event loop, and concurrent
searches are coalesced into batched lookups (coalesce.py): 64 in flight cost less than 64 in a row.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from hyperseyes_verl.search.base import FailureKind, Hit, SearchFailure
from hyperseyes_verl.search.coalesce import Coalescer
from hyperseyes_verl.search.config import EmbeddedConfig, SearchConfigError
from hyperseyes_verl.search.embedded_image import ImageIndex, read_images_meta
from hyperseyes_verl.search.embedded_text import TextIndex, read_corpus
from hyperseyes_verl.search.image_fingerprint import FINGERPRINT_VERSION

INDEX_FORMAT = "hyperseyes-index/1"
MANIFEST = "manifest.json"


def read_manifest(index_dir: str | Path) -> dict:
    d = Path(index_dir)
    if not d.is_dir():
        raise SearchConfigError(f"search index folder {str(d)!r} does not exist; build one with "
                                "`hyperseyes index build --corpus corpus.jsonl --out DIR`")
    try:
        manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SearchConfigError(f"{str(d)!r} is not a readable search index ({MANIFEST}: {e}); rebuild it with "
                                "`hyperseyes index build`") from None
    if manifest.get("format") != INDEX_FORMAT:
        raise SearchConfigError(f"index {str(d)!r} has format {manifest.get('format')!r}, this version reads "
                                f"{INDEX_FORMAT!r}; rebuild it with `hyperseyes index build`")
    if manifest.get("images") and manifest.get("fingerprint") != FINGERPRINT_VERSION:
        raise SearchConfigError(f"index {str(d)!r} holds image fingerprints {manifest.get('fingerprint')!r}, this version "
                                f"computes {FINGERPRINT_VERSION!r}; rebuild it with `hyperseyes index build`")
    return manifest


def build_index(out_dir: str | Path, corpus: str | Path | None = None, images_dir: str | Path | None = None,
                images_meta: str | Path | None = None, progress: bool = True) -> dict:
    """Build the index folder atomically (a half-built index is never left under `out_dir`); returns the manifest."""
    if corpus is None and images_dir is None:
        raise SearchConfigError("nothing to index: give a text corpus (--corpus) and/or an image folder (--images)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise SearchConfigError(f"refusing to overwrite {str(out)!r}: it is not empty and not a search index; "
                                "choose an empty or new --out folder")
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.time()
    manifest: dict = {"format": INDEX_FORMAT, "fingerprint": FINGERPRINT_VERSION, "text_docs": 0, "images": 0,
                      "corpus": str(corpus) if corpus else None, "images_dir": str(images_dir) if images_dir else None}
    try:
        if corpus is not None:
            docs = read_corpus(corpus)
            TextIndex.build(docs, show_progress=progress).save(tmp / "text")
            manifest["text_docs"] = len(docs)
        if images_dir is not None:
            if not Path(images_dir).is_dir():
                raise SearchConfigError(f"image folder {str(images_dir)!r} does not exist")
            entries = read_images_meta(images_dir, images_meta)
            with tqdm(total=len(entries), desc="fingerprinting images", unit="img", disable=not progress) as bar:
                ImageIndex.build(images_dir, entries, on_progress=bar.update).save(tmp / "image")
            manifest["images"] = len(entries)
        manifest["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        manifest["build_s"] = round(time.time() - started, 3)
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


class EmbeddedIndex:
    """The loaded index folder (text and/or image part), shared by the backend and `serve-search`."""

    def __init__(self, index_dir: str | Path, mmap: bool = False):
        self.dir = Path(index_dir)
        self.manifest = read_manifest(self.dir)
        try:
            self.text = TextIndex.load(self.dir / "text", mmap=mmap) if self.manifest.get("text_docs") else None
            self.image = ImageIndex.load(self.dir / "image", mmap=mmap) if self.manifest.get("images") else None
        except (OSError, ValueError, KeyError) as e:
            raise SearchConfigError(f"search index {str(self.dir)!r} is damaged ({type(e).__name__}: {e}); rebuild it "
                                    "with `hyperseyes index build`") from None


class EmbeddedBackend:
    """`SearchBackend` over an `EmbeddedIndex`; concurrent searches share batched lookups."""

    def __init__(self, cfg: EmbeddedConfig, index: EmbeddedIndex | None = None):
        self.cfg = cfg
        self.name = cfg.name
        self.index = index or EmbeddedIndex(cfg.index_dir, mmap=cfg.mmap)
        self._pool = ThreadPoolExecutor(max_workers=cfg.threads, thread_name_prefix=f"{cfg.name}-search")
        self._counts: Counter = Counter()
        window_s = cfg.batch_window_ms / 1000
        self._text = Coalescer(self._text_batch, window_s, cfg.batch_max, cfg.threads)
        self._image = Coalescer(self._image_batch, window_s, cfg.batch_max, cfg.threads)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _no(self, part: str) -> SearchFailure:
        self._counts[FailureKind.CONFIG.value] += 1
        return SearchFailure(FailureKind.CONFIG, f"index {str(self.index.dir)!r} has no {part}")

    async def text_search(self, query: str, k: int) -> list[Hit]:
        self._counts["text"] += 1
        if self.index.text is None:
            raise self._no("text corpus")
        return await self._text.submit((query, k))

    async def image_search(self, image: Image.Image, k: int) -> list[Hit]:
        self._counts["image"] += 1
        if self.index.image is None:
            raise self._no("images")
        return await self._image.submit((image, k))

    async def _text_batch(self, items: list[tuple[str, int]]) -> list[list[Hit]]:
        found = await self._run(self.index.text.search_many, [q for q, _ in items], [k for _, k in items],
                                self.cfg.min_score)
        return [[Hit(title=d.title, snippet=d.text[: self.cfg.snippet_chars], url=d.url, score=round(s, 4),
                     image_url=d.image) for d, s in row] for row in found]

    async def _image_batch(self, items: list[tuple[Image.Image, int]]) -> list:
        found = await self._run(self.index.image.search_many, [im for im, _ in items], [k for _, k in items],
                                self.cfg.image_min_score)
        out: list = []
        for row in found:
            if isinstance(row, Exception):
                self._counts[FailureKind.INTERNAL.value] += 1
                out.append(SearchFailure(FailureKind.INTERNAL, str(row)))
            else:
                out.append([Hit(title=d.title, snippet=d.text[: self.cfg.snippet_chars], url=d.url, score=round(s, 4),
                                image_url=d.path) for d, s in row])
        return out

    def metrics(self) -> dict[str, float]:
        out = {f"search/{self.name}/{k}": float(v) for k, v in self._counts.items()}
        for kind, c in (("text", self._text), ("image", self._image)):
            if c.batches:
                out[f"search/{self.name}/{kind}_batch_mean"] = c.items / c.batches
        return out

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False)
