"""The TRACE reference store as one named Ray actor, shared by every reward worker of a verl job.

With Ray initialized, `get_store` reaches the actor `StoreConfig.actor_name` by name (~8 reward worker processes
and the trainer driver); creation is get-or-create (`get_if_exists=True`), so concurrent first calls from
several workers end up with the same actor. Without Ray it returns the process-local store
(`hyperseyes_verl.trace.shared.local_store`). `RayStoreHandle` has the typed methods of `StoreHandle`; a record
carries the observation with the lookup (no second call), and the records one worker's event loop issues
concurrently are coalesced into one `record_many` round trip (whatever is pending when the flush starts).
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from hyperseyes_verl.trace.shared import StoreHandle, drop_local_store, local_store
from hyperseyes_verl.trace.store import RefInfo, ReferenceStore, StoreConfig

# Ray garbage-collects a non-detached named actor once no handle to it is left, even while other processes
# still want it: every process keeps its handle here for its lifetime.
_ray_handles: dict[tuple[str, str | None], RayStoreHandle] = {}
_lock = threading.Lock()


class RayStoreHandle(StoreHandle):
    """`StoreHandle` on the shared actor: blocking methods for the driver, a batched `arecord` for workers."""

    is_remote = True

    def __init__(self, actor: Any, key: tuple[str, str | None]):
        self._actor, self._key = actor, key
        self._pending: list[tuple[tuple, asyncio.Future]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    def _run(self, method: Callable, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self._actor, method.__name__).remote(*args))

    async def arecord(self, key: str, init_rounds: int, init_searches: int, correct: bool, rounds: int,
                      searches: int) -> RefInfo:
        row = (key, int(init_rounds), int(init_searches), bool(correct), int(rounds), int(searches))
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((row, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._start_flush)  # rows issued until the flush starts join its batch
        return await future

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        batch, self._pending, self._flush_scheduled = self._pending, [], False
        try:
            infos = await self._actor.record_many.remote([row for row, _ in batch])
        except Exception as e:  # every waiter sees the failure (the scorer flags its row: store_error)
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), info in zip(batch, infos):
            if not future.done():
                future.set_result(info)

    def disconnect(self) -> None:
        """E.g. the actor died with its owner: the next `get_store` gets (or re-creates) it."""
        with _lock:
            if _ray_handles.get(self._key) is self:
                del _ray_handles[self._key]


def _ray_ready(config: StoreConfig) -> bool:
    if not config.use_ray:
        return False
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a verl dependency
        return False
    return ray.is_initialized()


def get_store(config: StoreConfig | None = None) -> StoreHandle:
    """The job's store: the named Ray actor when Ray is up (get-or-create), else a process-local one."""
    config = config or StoreConfig()
    if not _ray_ready(config):
        return local_store(config)
    import ray

    key = (config.actor_name, config.namespace)
    with _lock:
        cached = _ray_handles.get(key)
    if cached is not None:
        return cached
    remote_cls = ray.remote(num_cpus=0, max_restarts=0)(ReferenceStore)
    options: dict[str, Any] = {"name": config.actor_name, "get_if_exists": True}
    if config.namespace is not None:
        options["namespace"] = config.namespace
    if config.detached:
        options["lifetime"] = "detached"
    handle = RayStoreHandle(remote_cls.options(**options).remote(config), key)
    with _lock:
        return _ray_handles.setdefault(key, handle)


def drop_store(config: StoreConfig | None = None) -> None:
    """Forget this process's store and actor handle for `config` (tests, a fresh job)."""
    config = config or StoreConfig()
    drop_local_store(config)
    with _lock:
        _ray_handles.pop((config.actor_name, config.namespace), None)
