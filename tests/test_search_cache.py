"""The persistent SQLite cache: hits and misses, query normalization, image keys, failures never cached,
TTL, in-process coalescing, and several processes writing and reading one file."""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import sqlite3

import pytest
from PIL import Image

from hyperseyes_verl.search.base import FailureKind, Hit, InMemoryBackend, SearchFailure
from hyperseyes_verl.search.cache import CachedBackend, normalize_query
from hyperseyes_verl.search.config import CacheConfig

QUERIES = [f"topic {i} facts" for i in range(30)]


def _backend() -> InMemoryBackend:
    return InMemoryBackend(text={f"topic {i} ": [Hit(f"T{i}", f"snippet {i}", f"https://x/{i}", 0.9)] for i in range(30)},
                           fail_queries={"explode": FailureKind.HTTP_STATUS})


async def test_hit_after_miss_with_normalized_query(tmp_path):
    inner = _backend()
    cache = CachedBackend(inner, CacheConfig(path=str(tmp_path / "c.sqlite")))
    first = await cache.text_search("Topic 3   FACTS", 3)
    again = await cache.text_search("  topic 3 facts ", 3)
    assert first == again == [Hit("T3", "snippet 3", "https://x/3", 0.9)]
    assert len(inner.calls) == 1 and normalize_query(" A\tb  C ") == "a b c"
    await cache.text_search("topic 3 facts", 5)  # k is part of the key
    m = cache.metrics()
    assert (m["search/cache/hits"], m["search/cache/misses"], len(inner.calls)) == (1, 2, 2)
    await cache.aclose()


async def test_failures_are_not_cached(tmp_path):
    inner = _backend()
    cache = CachedBackend(inner, CacheConfig(path=str(tmp_path / "c.sqlite")))
    for _ in range(2):
        with pytest.raises(SearchFailure):
            await cache.text_search("explode now", 3)
    assert len(inner.calls) == 2 and cache.store.count() == 0 and "search/cache/hits" not in cache.metrics()
    await cache.aclose()


async def test_entries_survive_a_new_process_view_and_expire_with_ttl(tmp_path):
    path = str(tmp_path / "c.sqlite")
    cache = CachedBackend(_backend(), CacheConfig(path=path))
    await cache.text_search("topic 1 facts", 3)
    await cache.aclose()
    inner = _backend()
    reopened = CachedBackend(inner, CacheConfig(path=path))
    assert (await reopened.text_search("topic 1 facts", 3))[0].title == "T1" and inner.calls == []
    await reopened.aclose()
    expiring = CachedBackend(inner, CacheConfig(path=path, ttl_s=1e-6))
    await asyncio.sleep(0.01)
    await expiring.text_search("topic 1 facts", 3)
    assert len(inner.calls) == 1  # the entry was too old
    await expiring.aclose()


async def test_image_keys_match_same_pixels_not_other_images(tmp_path):
    inner = InMemoryBackend(image_fn=lambda im: [Hit(f"mean {im.resize((1, 1)).getpixel((0, 0))}", "")])
    cache = CachedBackend(inner, CacheConfig(path=str(tmp_path / "c.sqlite")))
    red = Image.new("RGB", (64, 48), (220, 10, 10))
    a = await cache.image_search(red, 3)
    b = await cache.image_search(red.copy(), 3)
    c = await cache.image_search(Image.new("RGB", (64, 48), (10, 10, 220)), 3)
    assert a == b and a != c and len(inner.calls) == 2
    await cache.aclose()


async def test_concurrent_identical_misses_share_one_backend_call(tmp_path):
    inner = _backend()
    inner.latency_s = 0.05
    cache = CachedBackend(inner, CacheConfig(path=str(tmp_path / "c.sqlite")))
    rows = await asyncio.gather(*(cache.text_search("topic 7 facts", 3) for _ in range(8)))
    assert all(r == rows[0] for r in rows) and len(inner.calls) == 1
    m = cache.metrics()
    assert m["search/cache/misses"] + m.get("search/cache/coalesced", 0) + m.get("search/cache/hits", 0) == 8
    await cache.aclose()


async def test_concurrent_identical_searches_share_one_lookup(tmp_path):
    """Callers arriving while a search is in flight join it before any SQLite lookup of their own."""
    inner = _backend()
    cache = CachedBackend(inner, CacheConfig(path=str(tmp_path / "c.sqlite")))
    await cache.text_search("topic 2 facts", 3)  # now cached
    lookups = []
    real_lookup = cache._lookup
    cache._lookup = lambda key: lookups.append(key) or real_lookup(key)
    rows = await asyncio.gather(*(cache.text_search("topic 2 facts", 3) for _ in range(6)))
    assert all(r == [Hit("T2", "snippet 2", "https://x/2", 0.9)] for r in rows)
    assert len(lookups) == 1 and len(inner.calls) == 1
    m = cache.metrics()
    assert (m["search/cache/hits"], m["search/cache/coalesced"]) == (1, 5)
    await cache.aclose()


async def test_a_cancelled_leader_hands_over_to_one_waiting_caller(tmp_path):
    inner = _backend()
    inner.latency_s = 0.05
    cache = CachedBackend(inner, CacheConfig(path=str(tmp_path / "c.sqlite")))
    leader = asyncio.ensure_future(cache.text_search("topic 4 facts", 3))
    await asyncio.sleep(0.02)  # the leader is inside the backend call
    waiters = [asyncio.ensure_future(cache.text_search("topic 4 facts", 3)) for _ in range(3)]
    await asyncio.sleep(0.005)
    leader.cancel()
    rows = await asyncio.gather(*waiters)
    assert all(r[0].title == "T4" for r in rows) and leader.cancelled()
    assert len(inner.calls) == 2  # the cancelled leader's call and exactly one successor's
    m = cache.metrics()
    assert m["search/cache/misses"] == 2 and m["search/cache/coalesced"] == 2
    await cache.aclose()


async def test_empty_answers_cached_only_when_asked(tmp_path):
    inner = _backend()
    off = CachedBackend(inner, CacheConfig(path=str(tmp_path / "c.sqlite"), cache_empty=False))
    await off.text_search("nothing here", 3)
    await off.text_search("nothing here", 3)
    assert len(inner.calls) == 2
    await off.aclose()


def _worker(path: str, seed: int, barrier, out) -> None:
    async def main():
        inner = _backend()
        cache = CachedBackend(inner, CacheConfig(path=path, busy_timeout_s=30))
        order = QUERIES[:]
        random.Random(seed).shuffle(order)
        phase1 = {}
        for q in order:  # writes race with the other processes
            phase1[q] = [h.title for h in await cache.text_search(q.upper() if seed % 2 else q, 3)]
            try:
                await cache.text_search("explode", 3)
            except SearchFailure:
                pass
        m1, calls1 = dict(cache.counts), len([c for c in inner.calls if "explode" not in c[1]])
        await asyncio.to_thread(barrier.wait)
        cache.counts.clear()
        phase2 = {q: [h.title for h in await cache.text_search(q, 3)] for q in QUERIES}
        m2 = dict(cache.counts)
        await cache.aclose()
        return phase1, m1, calls1, phase2, m2

    out.put(asyncio.run(main()))


def test_cache_shared_by_four_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = mp.get_context("fork")  # children build their own cache and loop; nothing inherited is used
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(path, seed, barrier, out)) for seed in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    expected = {q: [f"T{q.split()[1]}"] for q in QUERIES}
    total_misses = 0
    for phase1, m1, calls1, phase2, m2 in results:
        assert phase1 == expected and phase2 == expected
        assert m1.get("hits", 0) + m1.get("misses", 0) == len(QUERIES) * 2  # 30 topics + 30 failing searches
        assert calls1 == m1["misses"] - len(QUERIES)  # every miss asked the backend exactly once
        assert m2.get("hits", 0) == len(QUERIES) and m2.get("misses", 0) == 0  # everything is cached by now
        total_misses += m1["misses"] - len(QUERIES)
    assert total_misses >= len(QUERIES)  # each key missed at least once somewhere
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM hits").fetchone()[0] == len(QUERIES)  # failures absent
