"""Micro-batching of concurrent searches: many callers `await submit(item)`, a few workers answer them in batches.

Why: 64 rollouts searching at once each paid a thread hop and a Python-level lookup while holding the GIL, so
concurrency ran slower than a loop. A batch pays the hop once, tokenizes once and multiplies one query matrix
(embedded index), or sends one request (Search-R1 server). A worker waits `window_s` after it wakes, then takes
up to `max_batch` waiting items; items arriving while all `max_workers` workers are busy queue up and form the
next batch, so the batch size grows with the load and a lone search waits only the window.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# A batch function answers item i with a result or with the exception its caller should get.
BatchFn = Callable[[list[T]], Awaitable[Sequence["R | BaseException"]]]


class Coalescer(Generic[T, R]):
    def __init__(self, run_batch: BatchFn, window_s: float, max_batch: int, max_workers: int = 1):
        if max_batch < 1 or max_workers < 1 or window_s < 0:
            raise ValueError(f"Coalescer needs max_batch >= 1, max_workers >= 1, window_s >= 0; got {max_batch}, "
                             f"{max_workers}, {window_s}")
        self._run_batch = run_batch
        self.window_s, self.max_batch, self.max_workers = window_s, max_batch, max_workers
        self._pending: list[tuple[T, asyncio.Future]] = []
        self._workers = 0
        self.batches = 0  # counters for metrics and tests
        self.items = 0

    async def submit(self, item: T) -> R:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._workers < self.max_workers:
            self._workers += 1
            asyncio.get_running_loop().create_task(self._work())
        return await fut

    async def _work(self) -> None:
        try:
            while self._pending:
                if len(self._pending) < self.max_batch:
                    await asyncio.sleep(self.window_s)  # let the other in-flight searches join this batch
                batch = [(i, f) for i, f in self._pending[: self.max_batch] if not f.done()]  # drop cancelled callers
                del self._pending[: self.max_batch]
                if batch:
                    await self._answer(batch)
        finally:
            self._workers -= 1

    async def _answer(self, batch: list[tuple[T, asyncio.Future]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = list(await self._run_batch([i for i, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"batch function answered {len(results)} results for {len(batch)} items")
        except Exception as e:  # noqa: BLE001 - every caller of the batch gets the failure, the worker lives on
            results = [e] * len(batch)
        for (_, fut), res in zip(batch, results):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
