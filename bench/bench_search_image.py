"""Embedded reverse image search at scale: 10k procedural entities, then print the top-1 accuracy of
agent-style tile crops of mosaics (edges jittered by +-5% / +-10% of the tile, rescaled, JPEG re-encoded)
and the search latency p50/p95 (index only and through the async backend).

    .venv/bin/python bench/bench_search_image.py [--images 10000] [--mosaics 60]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from hyperseyes_verl.search.config import EmbeddedConfig
from hyperseyes_verl.search.embedded import EmbeddedBackend
from hyperseyes_verl.search.embedded_image import ImageDoc, ImageIndex
from hyperseyes_verl.search.synthetic import entity_image, jittered_crop, mosaic


def accuracy(index: ImageIndex, entities, n_mosaics: int, cols: int, margin: float, seed: int) -> tuple[float, list]:
    rng, correct, crops = random.Random(seed), 0, []
    for _ in range(n_mosaics):
        ids = rng.sample(range(len(entities)), cols * cols)
        image, boxes = mosaic([entities[i] for i in ids], cols=cols, tile_px=rng.choice([120, 160, 220]))
        for i, box in zip(ids, boxes):
            crop = jittered_crop(image, box, rng, margin=margin)
            crops.append(crop)
            correct += index.search(crop, 1)[0][0].path == str(i)
    return correct / len(crops), crops


async def main(n_images: int, n_mosaics: int) -> None:
    t = time.perf_counter()
    entities = [entity_image(i) for i in range(n_images)]
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    index = ImageIndex.from_images(entities, [ImageDoc(str(i), f"Entity {i}", "", "") for i in range(n_images)])
    t_emb = time.perf_counter() - t
    print(f"{n_images} entities generated in {t_gen:.1f} s, fingerprinted in {t_emb:.1f} s "
          f"({t_emb / n_images * 1000:.2f} ms/image, {index.features.shape[1]} dims)")
    for cols, margin in [(3, 0.05), (4, 0.05), (3, 0.10)]:
        acc, crops = accuracy(index, entities, n_mosaics, cols, margin, seed=cols * 100 + int(margin * 100))
        print(f"top-1 accuracy, {cols}x{cols} mosaics, +-{margin:.0%} crop margins, rescale 0.6-1.6x, JPEG q60-90: "
              f"{acc:.3f} over {len(crops)} crops")
    lat = []
    for crop in crops[:300]:
        t0 = time.perf_counter()
        index.search(crop, 3)
        lat.append(time.perf_counter() - t0)
    backend = EmbeddedBackend(EmbeddedConfig(index_dir="(in memory)", image_min_score=0.0),
                              index=SimpleNamespace(image=index, text=None, dir=Path("(in memory)")))
    lat_b = []
    for crop in crops[:300]:
        t0 = time.perf_counter()
        await backend.image_search(crop, 3)
        lat_b.append(time.perf_counter() - t0)
    ms = lambda xs, q: float(np.percentile(np.array(xs) * 1000, q))  # noqa: E731
    print(f"image search over {n_images}: index only p50 {ms(lat, 50):.2f} ms p95 {ms(lat, 95):.2f} ms; "
          f"async backend p50 {ms(lat_b, 50):.2f} ms p95 {ms(lat_b, 95):.2f} ms")
    unbatched = EmbeddedBackend(EmbeddedConfig(index_dir="(in memory)", image_min_score=0.0, batch_max=1,
                                               batch_window_ms=0), index=backend.index)
    seq = sum(lat_b) / len(lat_b)
    for label, b in (("coalesced", backend), ("one lookup per search", unbatched)):
        sem = asyncio.Semaphore(64)

        async def one(c, b=b):
            async with sem:
                return await b.image_search(c, 3)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(c) for c in crops[:256]))
        conc = (time.perf_counter() - t0) / 256
        print(f"image searches, 64 in flight, {label}: {1 / conc:.0f}/s vs sequential {1 / seq:.0f}/s "
              f"(ratio {seq / conc:.2f}x)")
    await backend.aclose()
    await unbatched.aclose()

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--mosaics", type=int, default=60)
    a = ap.parse_args()
    asyncio.run(main(a.images, a.mosaics))
