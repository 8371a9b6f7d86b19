"""The micro-batcher behind the embedded and Search-R1 backends: concurrent callers share batches, each gets its
own answer or its own failure, a failing batch function fails only its batch, cancelled callers are skipped."""
from __future__ import annotations

import asyncio

import pytest

from hyperseyes_verl.search.coalesce import Coalescer


async def test_concurrent_submissions_form_batches_and_get_their_own_answers():
    seen: list[list[int]] = []

    async def double(items):
        seen.append(list(items))
        await asyncio.sleep(0.01)  # while this batch runs, later callers queue into the next one
        return [2 * i for i in items]

    c = Coalescer(double, window_s=0.001, max_batch=8, max_workers=1)
    results = await asyncio.gather(*(c.submit(i) for i in range(20)))
    assert results == [2 * i for i in range(20)]
    assert sorted(i for b in seen for i in b) == list(range(20))  # every item exactly once
    assert all(len(b) <= 8 for b in seen) and len(seen) == 3  # 20 items, batches of at most 8
    assert c.batches == 3 and c.items == 20
    assert await c.submit(5) == 10 and seen[-1] == [5]  # a lone caller is answered alone


async def test_per_item_exceptions_and_failed_batches_reach_only_their_callers():
    async def picky(items):
        if "crash" in items:
            raise RuntimeError("batch function broke")
        return [ValueError(f"bad {i}") if i.startswith("bad") else i.upper() for i in items]

    c = Coalescer(picky, window_s=0.001, max_batch=4)
    out = await asyncio.gather(c.submit("a"), c.submit("bad1"), c.submit("b"), return_exceptions=True)
    assert out[0] == "A" and out[2] == "B" and isinstance(out[1], ValueError) and str(out[1]) == "bad bad1"
    out = await asyncio.gather(c.submit("x"), c.submit("crash"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in out)
    assert await c.submit("after") == "AFTER"  # the worker survived


async def test_cancelled_caller_is_dropped_from_its_batch():
    seen: list[list[str]] = []

    async def echo(items):
        seen.append(list(items))
        return list(items)

    c = Coalescer(echo, window_s=0.05, max_batch=8)
    keep = asyncio.ensure_future(c.submit("keep"))
    gone = asyncio.ensure_future(c.submit("gone"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await keep == "keep" and seen == [["keep"]]
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_wrong_result_count_is_an_error_for_the_batch():
    async def short(items):
        return items[:-1]

    c = Coalescer(short, window_s=0.001, max_batch=4)
    out = await asyncio.gather(c.submit(1), c.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 results for 2 items" in str(r) for r in out)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="max_batch >= 1"):
        Coalescer(lambda items: items, window_s=0.0, max_batch=0)
