"""Embedded text search at scale: build a 100k-document BM25 index, then print query latency (p50/p95;
goal p50 <= 10 ms), cache-hit latency (goal <= 1 ms) and 64-in-flight throughput vs sequential.

    .venv/bin/python bench/bench_search_text.py [--docs 100000] [--queries 400]
Numbers are measured side by side in one run and printed, never asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from hyperseyes_verl.search.factory import build_backend
from hyperseyes_verl.search.embedded import build_index

SYLLABLES = ["ka", "lo", "mi", "ren", "to", "sha", "vi", "dor", "el", "qua", "zen", "bri", "tu", "nox", "pa", "ser"]


def vocabulary(n: int, rng: random.Random) -> list[str]:
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def write_corpus(path: Path, n_docs: int, rng: random.Random) -> list[list[str]]:
    vocab = vocabulary(30_000, rng)
    zipf = np.random.default_rng(0).zipf(1.3, size=n_docs * 60) % len(vocab)
    docs_words, pos = [], 0
    with open(path, "w") as f:
        for i in range(n_docs):
            n = rng.randint(25, 90)
            words = [vocab[j] for j in zipf[pos:pos + n]]
            pos = (pos + n) % (len(zipf) - 100)
            docs_words.append(words)
            f.write(json.dumps({"id": str(i), "title": " ".join(words[:3]).title(), "text": " ".join(words[3:]),
                                "url": f"https://doc.test/{i}"}) + "\n")
    return docs_words


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


async def timed_each(fn, args: list) -> list[float]:
    out = []
    for a in args:
        t = time.perf_counter()
        await fn(a, 3)
        out.append(time.perf_counter() - t)
    return out


async def main(n_docs: int, n_queries: int) -> None:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        docs_words = write_corpus(root / "corpus.jsonl", n_docs, rng)
        print(f"corpus: {n_docs} docs written in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        build_index(root / "idx", corpus=root / "corpus.jsonl", progress=False)
        print(f"index build: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        backend = build_backend({"type": "embedded", "index_dir": str(root / "idx"), "min_score": 0.0, "threads": 4})
        print(f"index load: {time.perf_counter() - t:.2f} s")
        queries = [" ".join(rng.sample(docs_words[rng.randrange(n_docs)], 4)) for _ in range(n_queries)]
        await backend.text_search(queries[0], 3)  # warm-up

        direct = []
        for q in queries:
            t = time.perf_counter()
            backend.index.text.search(q, 3)
            direct.append(time.perf_counter() - t)
        via_backend = await timed_each(backend.text_search, queries)
        print(f"text query, index only   : p50 {pct(direct, 50):.2f} ms  p95 {pct(direct, 95):.2f} ms  (goal p50 <= 10 ms)")
        print(f"text query, async backend: p50 {pct(via_backend, 50):.2f} ms  p95 {pct(via_backend, 95):.2f} ms")

        cached = build_backend({"type": "embedded", "index_dir": str(root / "idx"), "min_score": 0.0,
                                "cache": {"path": str(root / "cache.sqlite")}})
        for q in queries:
            await cached.text_search(q, 3)  # fill
        hits = await timed_each(cached.text_search, queries)
        print(f"cache hit               : p50 {pct(hits, 50):.3f} ms  p95 {pct(hits, 95):.3f} ms  (goal <= 1 ms); "
              f"hits {cached.metrics()['search/cache/hits']:.0f}")
        await cached.aclose()

        unbatched = build_backend({"type": "embedded", "index_dir": str(root / "idx"), "min_score": 0.0,
                                   "batch_max": 1, "batch_window_ms": 0})
        seq = sum(via_backend)  # the sequential pass timed above
        conc = await in_flight(backend, queries, 64)
        conc_1 = await in_flight(unbatched, queries, 64)
        loop_lag = await event_loop_lag(backend, queries)
        m = backend.metrics()
        print(f"throughput: sequential {len(queries) / seq:.0f} q/s; 64 in flight, coalesced {len(queries) / conc:.0f} q/s "
              f"(ratio {seq / conc:.2f}x, mean batch {m['search/embedded/text_batch_mean']:.1f}); 64 in flight, one lookup "
              f"per search {len(queries) / conc_1:.0f} q/s (ratio {seq / conc_1:.2f}x); event-loop lag p95 {loop_lag:.2f} ms")
        await backend.aclose()
        await unbatched.aclose()


async def in_flight(backend, queries: list[str], n: int) -> float:
    sem = asyncio.Semaphore(n)

    async def one(q):
        async with sem:
            return await backend.text_search(q, 3)

    t = time.perf_counter()
    await asyncio.gather(*(one(q) for q in queries))
    return time.perf_counter() - t


async def event_loop_lag(backend, queries: list[str]) -> float:
    """How late a 1 ms timer fires while 64 searches run: lookups must not block the loop."""
    lags, done = [], asyncio.Event()

    async def ticker():
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(backend.text_search(q, 3) for q in queries[:64]))
    done.set()
    await task
    return statistics.quantiles([x * 1000 for x in lags], n=20)[-1] if len(lags) > 2 else 0.0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=400)
    a = ap.parse_args()
    asyncio.run(main(a.docs, a.queries))
