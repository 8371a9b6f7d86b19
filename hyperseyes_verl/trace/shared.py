"""Typed access to the reference store of a training job: `StoreHandle`.

This module's handle wraps a store in this process (tests, eval, the study, single-process jobs);
`hyperseyes_verl.verl.store_actor.RayStoreHandle` has the same methods on the named Ray actor that every
reward worker of a verl job shares, and `hyperseyes_verl.verl.store_actor.get_store` picks one of the two.
Each method names the `ReferenceStore` method it runs, so a subclass forwards the method itself, never a string.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from hyperseyes_verl.trace.store import RefInfo, ReferenceStore, StoreConfig

_local_stores: dict[tuple[str, str | None], ReferenceStore] = {}
_local_lock = threading.Lock()


class StoreHandle:
    """The reference store's operations; this class runs them on a store in this process."""

    is_remote = False

    def __init__(self, store: ReferenceStore):
        self._store = store

    def _run(self, method: Callable, *args: Any) -> Any:
        """Run `ReferenceStore.<method>` (a subclass runs it elsewhere)."""
        return method(self._store, *args)

    async def arecord(self, key: str, init_rounds: int, init_searches: int, correct: bool, rounds: int,
                      searches: int) -> RefInfo:
        """Observe one training rollout; return the reference it is scored against (the reward's call)."""
        return self.record(key, init_rounds, init_searches, correct, rounds, searches)

    def record(self, key: str, init_rounds: int, init_searches: int, correct: bool, rounds: int,
               searches: int) -> RefInfo:
        return self._run(ReferenceStore.record, key, int(init_rounds), int(init_searches), bool(correct),
                         int(rounds), int(searches))

    def peek(self, key: str) -> RefInfo | None:
        return self._run(ReferenceStore.peek, key)

    def summary(self) -> dict[str, float]:
        return self._run(ReferenceStore.summary)

    def end_epoch(self) -> dict[str, float]:
        return self._run(ReferenceStore.end_epoch)

    def set_lambda(self, lam: float) -> None:
        self._run(ReferenceStore.set_lambda, float(lam))

    def save(self, directory: str, step: int) -> str:
        return self._run(ReferenceStore.save, directory, int(step))

    def load(self, directory: str, step: int | None = None) -> int | None:
        return self._run(ReferenceStore.load, directory, step)

    def reset(self) -> None:
        self._run(ReferenceStore.reset)

    def disconnect(self) -> None:
        """Forget a broken connection so the next lookup makes a new one (nothing to do in-process)."""


def local_store(config: StoreConfig | None = None) -> StoreHandle:
    """This process's store for `config` (one per actor name / namespace), created on first use."""
    config = config or StoreConfig()
    key = (config.actor_name, config.namespace)
    with _local_lock:
        store = _local_stores.get(key)
        if store is None:
            store = _local_stores[key] = ReferenceStore(config)
        return StoreHandle(store)


def drop_local_store(config: StoreConfig | None = None) -> None:
    """Forget this process's store for `config` (tests, a fresh job)."""
    config = config or StoreConfig()
    with _local_lock:
        _local_stores.pop((config.actor_name, config.namespace), None)
