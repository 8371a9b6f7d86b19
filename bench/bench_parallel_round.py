"""Round wall time with k concurrent searches (crops + queries) against a backend with injected latency.

Prints round_wall / single_search_latency for k = 1..8, measured side by side in one run, next to the CPU
time of cutting the round's widest crop (k <= 2 crop the full 1600 px width, which must be downscaled). All searches of a
turn go out in one asyncio.gather, so the ratio should stay near 1 (goal <= 1.15 at k = 6); serial would be k.

    python bench/bench_parallel_round.py [--latency 0.2] [--reps 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from PIL import Image

from hyperseyes_verl.search.base import Hit, InMemoryBackend
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.images import ImageRegistry


def turn_with(k: int) -> str:
    """k searches: ceil(k/2) crops of img_0 in one image_search + floor(k/2) queries in one text_search."""
    n_crops, n_queries = (k + 1) // 2, k // 2
    boxes = [[i / n_crops, 0.0, (i + 1) / n_crops, 1.0] for i in range(n_crops)]
    text = "<reason>bench</reason><tool_call>" + json.dumps(
        {"name": "image_search", "arguments": {"image_id": "img_0", "area": boxes}}) + "</tool_call>"
    if n_queries:
        text += "<tool_call>" + json.dumps(
            {"name": "text_search", "arguments": {"input": [f"entity {i}" for i in range(n_queries)]}}) + "</tool_call>"
    return text


async def one_round(backend: InMemoryBackend, image: Image.Image, k: int) -> float:
    env = SearchEnvironment(backend, "bench question", [image])
    t0 = time.perf_counter()
    result = await env.step(turn_with(k))
    wall = time.perf_counter() - t0
    assert result.round.searches == k, result.observation.text
    return wall


def one_cut(image: Image.Image, k: int) -> float:
    """CPU time to cut this round's widest crop alone: a part of the round that no concurrency removes."""
    registry = ImageRegistry([image])
    t0 = time.perf_counter()
    assert registry.crop("img_0", [0.0, 0.0, 1 / ((k + 1) // 2), 1.0]).ok
    return time.perf_counter() - t0


async def one_search(backend: InMemoryBackend) -> float:
    t0 = time.perf_counter()
    await backend.text_search("entity 0", 3)
    return time.perf_counter() - t0


async def main(latency: float, reps: int) -> None:
    backend = InMemoryBackend(text={"entity": [Hit("Entity", "snippet", "https://e", 0.9)]}, latency_s=latency)
    image = Image.new("RGB", (1600, 900), (90, 140, 200))
    print(f"backend latency {latency * 1000:.0f} ms, median of {reps} runs")
    print(f"{'k':>2}  {'crops':>5}  {'queries':>7}  {'single_s':>8}  {'cut_s':>6}  {'round_s':>7}  {'ratio':>5}  {'serial':>6}")
    for k in range(1, 9):
        single = statistics.median([await one_search(backend) for _ in range(reps)])
        cut = statistics.median([one_cut(image, k) for _ in range(reps)])
        wall = statistics.median([await one_round(backend, image, k) for _ in range(reps)])
        print(f"{k:>2}  {(k + 1) // 2:>5}  {k // 2:>7}  {single:>8.3f}  {cut:>6.3f}  {wall:>7.3f}  {wall / single:>5.2f}"
              f"  {k:>6}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    asyncio.run(main(a.latency, a.reps))
