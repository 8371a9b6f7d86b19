"""One reference store per training job, shared by every reward worker.

With Ray initialized the store lives in a named actor (`StoreConfig.actor_name`) that the ~8 reward worker
processes reach by name; creation is get-or-create (`get_if_exists=True`), so concurrent first calls from
several workers end up with the same actor. Without Ray (tests, eval, single process) a process-local store
is used. Both are wrapped in `StoreHandle`. A record carries the observation with the lookup (no second call),
and on the actor path the records issued concurrently by one worker's event loop are coalesced into one
`record_many` round trip (micro-batching: whatever is pending when the loop gets to the flush goes together).
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any

from hyperseyes_verl.trace.store import RefInfo, ReferenceStore, StoreConfig

_local_stores: dict[tuple[str, str | None], ReferenceStore] = {}
# Ray garbage-collects a non-detached named actor once no handle to it is left, even while other processes
# still want it: every process keeps its handle here for its lifetime.
_ray_handles: dict[tuple[str, str | None], "StoreHandle"] = {}
_local_lock = threading.Lock()


class StoreHandle:
    """Uniform access to the in-process store or the Ray actor."""

    def __init__(self, store: ReferenceStore | None = None, actor: Any = None):
        if (store is None) == (actor is None):
            raise ValueError("StoreHandle needs exactly one of store / actor")
        self._store, self._actor = store, actor
        self._pending: list[tuple[tuple, asyncio.Future]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    @property
    def is_remote(self) -> bool:
        return self._actor is not None

    async def arecord(self, key: str, init_rounds: int, init_searches: int, correct: bool, rounds: int,
                      searches: int) -> RefInfo:
        row = (key, int(init_rounds), int(init_searches), bool(correct), int(rounds), int(searches))
        if self._actor is None:
            return self._store.record(*row)
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
        except Exception as e:  # every waiter sees the failure (the scorer counts it)
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), info in zip(batch, infos):
            if not future.done():
                future.set_result(info)

    def call(self, method: str, *args: Any) -> Any:
        """Blocking call of any store method (driver-side: epoch end, save, restore)."""
        if self._actor is None:
            return getattr(self._store, method)(*args)
        import ray

        return ray.get(getattr(self._actor, method).remote(*args))


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
    key = (config.actor_name, config.namespace)
    if _ray_ready(config):
        import ray

        with _local_lock:
            cached = _ray_handles.get(key)
        if cached is not None:
            return cached
        remote_cls = ray.remote(num_cpus=0, max_restarts=0)(ReferenceStore)
        options: dict[str, Any] = {"name": config.actor_name, "get_if_exists": True}
        if config.namespace is not None:
            options["namespace"] = config.namespace
        if config.detached:
            options["lifetime"] = "detached"
        handle = StoreHandle(actor=remote_cls.options(**options).remote(config))
        with _local_lock:
            return _ray_handles.setdefault(key, handle)
    with _local_lock:
        store = _local_stores.get(key)
        if store is None:
            store = _local_stores[key] = ReferenceStore(config)
        return StoreHandle(store=store)


def drop_local_store(config: StoreConfig | None = None) -> None:
    """Forget this process's store / actor handle (tests, a fresh job, or a store actor that died: the next
    `get_store` gets or re-creates it)."""
    config = config or StoreConfig()
    with _local_lock:
        _local_stores.pop((config.actor_name, config.namespace), None)
        _ray_handles.pop((config.actor_name, config.namespace), None)

