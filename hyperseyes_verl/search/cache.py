"""A persistent search cache in front of any backend (itself a `SearchBackend`).

SQLite in WAL mode: many reader and writer processes (rollout workers) share one file; each write is
one short transaction, writers wait up to `busy_timeout_s` for a lock. Keys: backend name + namespace +
k + the lower-cased, whitespace-collapsed query, or the image's thumbnail hash (image_cache_key).
Only answers are stored: a failure is re-raised and never cached. SQLite work runs in threads, off the
event loop; concurrent identical searches in one process share one lookup and one backend call. A broken cache file
degrades to uncached searches (counted as `search/cache/errors`), never to a failed search.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from PIL import Image

from hyperseyes_verl.search.base import Hit, SearchBackend, backend_metrics
from hyperseyes_verl.search.config import CacheConfig
from hyperseyes_verl.search.image_fingerprint import image_cache_key

_SCHEMA = "CREATE TABLE IF NOT EXISTS hits (key TEXT PRIMARY KEY, payload TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID"


def normalize_query(query: str) -> str:
    return " ".join(query.lower().split())


class SqliteStore:
    """key -> JSON payload with creation time; one connection per thread."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._conn()  # create the schema now: a bad path fails at build time, not mid-rollout

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
            deadline = time.monotonic() + self.busy_timeout_s
            while True:  # switching to WAL needs a moment of exclusive access; other processes may hold it
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute(_SCHEMA)
                    break
                except sqlite3.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def get(self, key: str) -> tuple[str, float] | None:
        row = self._conn().execute("SELECT payload, created FROM hits WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def put(self, key: str, payload: str) -> None:
        self._conn().execute("INSERT OR REPLACE INTO hits (key, payload, created) VALUES (?, ?, ?)",
                             (key, payload, time.time()))

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM hits").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()
        self._local = threading.local()


class CachedBackend:
    """`SearchBackend` that answers from the cache and asks `inner` on a miss."""

    def __init__(self, inner: SearchBackend, cfg: CacheConfig):
        self.inner, self.cfg = inner, cfg
        self.name = inner.name
        self.store = SqliteStore(cfg.path, cfg.busy_timeout_s)
        self.counts: Counter = Counter()
        self._inflight: dict[str, asyncio.Future] = {}

    def _key(self, kind: str, k: int, body: str) -> str:
        return f"{kind}|{self.inner.name}|{self.cfg.namespace}|{k}|{body}"

    def _lookup(self, key: str) -> list[Hit] | None:
        try:
            row = self.store.get(key)
        except (sqlite3.Error, UnicodeError):  # UnicodeError: a key with a lone surrogate
            self.counts["errors"] += 1
            return None
        if row is None or (self.cfg.ttl_s is not None and time.time() - row[1] > self.cfg.ttl_s):
            return None
        try:
            return [Hit.from_dict(d) for d in json.loads(row[0])]
        except (ValueError, TypeError, AttributeError):
            self.counts["errors"] += 1
            return None

    def _store(self, key: str, hits: list[Hit]) -> None:
        if not hits and not self.cfg.cache_empty:
            return
        payload = json.dumps([h.to_dict() for h in hits], ensure_ascii=False)
        if len(payload.encode("utf-8", "surrogatepass")) > self.cfg.max_entry_bytes:
            self.counts["oversized"] += 1
            return
        try:
            self.store.put(key, payload)
            self.counts["writes"] += 1
        except (sqlite3.Error, UnicodeError):  # a lone surrogate cannot be stored as SQLite text
            self.counts["errors"] += 1

    async def _cached(self, key: str, call) -> list[Hit]:
        # The same search already running in this process (rollouts of one prompt): share its lookup and answer.
        while (leader := self._inflight.get(key)) is not None:
            self.counts["coalesced"] += 1
            try:
                return list(await asyncio.shield(leader))
            except asyncio.CancelledError:
                if not leader.cancelled():
                    raise  # this caller was cancelled
                self.counts["coalesced"] -= 1  # the leader was cancelled: join its successor or lead
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            try:
                hits = await asyncio.to_thread(self._lookup, key)
                fresh = hits is None
                self.counts["misses" if fresh else "hits"] += 1
                if fresh:
                    hits = await call()
            except asyncio.CancelledError:
                fut.cancel()
                raise
            except BaseException as e:
                fut.set_exception(e)
                fut.exception()  # mark retrieved: there may be no other waiter
                raise
            fut.set_result(hits)
            if fresh:  # still in flight while storing: a caller arriving now joins instead of missing again
                await asyncio.to_thread(self._store, key, hits)
        finally:
            if self._inflight.get(key) is fut:
                del self._inflight[key]
        return hits

    async def text_search(self, query: str, k: int) -> list[Hit]:
        key = self._key("t", k, normalize_query(query))
        return await self._cached(key, lambda: self.inner.text_search(query, k))

    async def image_search(self, image: Image.Image, k: int) -> list[Hit]:
        key = self._key("i", k, await asyncio.to_thread(image_cache_key, image))
        return await self._cached(key, lambda: self.inner.image_search(image, k))

    def metrics(self) -> dict[str, float]:
        return {**{f"search/cache/{k}": float(v) for k, v in self.counts.items()}, **backend_metrics(self.inner)}

    async def aclose(self) -> None:
        await self.inner.aclose()
        self.store.close()
