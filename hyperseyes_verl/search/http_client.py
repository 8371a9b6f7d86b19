"""The one async HTTP client of the web backends: pooled connections, per-attempt and total timeouts,
bounded retries with exponential backoff (tenacity), a concurrency cap and a token-bucket rate limit.

Limits are shared per *limit group* (default: the backend name): the token bucket by every search of the
process (thread-safe), the concurrency semaphore by every search of one event loop (asyncio primitives
belong to a loop; verl runs one loop per agent-loop worker process). Failures surface as typed
`SearchFailure`s after the retries, one counter per kind: `search/<backend>/<kind>`.
"""
from __future__ import annotations

import asyncio
import functools
import ssl
import threading
import time
import weakref
from collections import Counter
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from hyperseyes_verl.search.base import FailureKind, SearchFailure
from hyperseyes_verl.search.config import HttpConfig


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `acquire` waits (asynchronously) for one token."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _take(self) -> float:
        """Take a token and return 0, or return the seconds until one is available."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    async def acquire(self) -> None:
        while (wait := self._take()) > 0:
            await asyncio.sleep(wait)


_BUCKETS: dict[tuple[str, float, int], TokenBucket] = {}
_BUCKETS_LOCK = threading.Lock()
_SEMAPHORES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], asyncio.Semaphore]]" = (
    weakref.WeakKeyDictionary())


def shared_bucket(group: str, rate: float, burst: int) -> TokenBucket:
    with _BUCKETS_LOCK:
        return _BUCKETS.setdefault((group, rate, burst), TokenBucket(rate, burst))


def shared_semaphore(group: str, limit: int) -> asyncio.Semaphore:
    per_loop = _SEMAPHORES.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault((group, limit), asyncio.Semaphore(limit))


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building it loads the CA bundle (~0.1-0.3 s), too slow per client."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class _Retryable(Exception):
    def __init__(self, kind: FailureKind, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.message, self.retry_after = kind, message, retry_after


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None


class HttpSearchClient:
    """POSTs JSON to one service for one backend; counts outcomes under `search/<backend>/...`."""

    def __init__(self, backend: str, base_url: str, cfg: HttpConfig, headers: dict[str, str] | None = None):
        self.backend, self.base_url, self.cfg = backend, base_url.rstrip("/"), cfg
        self.group = cfg.limit_group or backend
        self.counts: Counter = Counter()
        self._client = httpx.AsyncClient(
            headers=headers or {}, timeout=httpx.Timeout(cfg.timeout_s),
            limits=httpx.Limits(max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections),
            follow_redirects=True, verify=_ssl_context())
        self._bucket = shared_bucket(self.group, cfg.rate_per_s, cfg.burst) if cfg.rate_per_s else None

    def _wait(self, state) -> float:
        base = wait_exponential_jitter(initial=self.cfg.backoff_initial_s, max=self.cfg.backoff_max_s)(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:  # the server said when to come back
            return min(self.cfg.backoff_max_s, max(base, exc.retry_after))
        return base

    async def _attempt(self, url: str, json_body: Any | None, files: dict | None) -> Any:
        self.counts["requests"] += 1
        async with shared_semaphore(self.group, self.cfg.max_concurrency):
            if self._bucket is not None:
                await self._bucket.acquire()
            try:
                resp = await self._client.post(url, json=json_body, files=files)
            except httpx.TimeoutException:
                raise _Retryable(FailureKind.TIMEOUT, f"no answer from {url} within {self.cfg.timeout_s}s") from None
            except httpx.ConnectError as e:
                raise _Retryable(FailureKind.REFUSED, f"cannot connect to {url} ({e})") from None
            except httpx.TransportError as e:  # connection dropped mid-answer
                raise _Retryable(FailureKind.REFUSED, f"connection to {url} failed ({type(e).__name__}: {e})") from None
        if resp.status_code == 429:
            raise _Retryable(FailureKind.RATE_LIMITED, f"{url} rate-limited the request (HTTP 429)", _retry_after(resp))
        if resp.status_code >= 500:
            raise _Retryable(FailureKind.HTTP_STATUS, f"{url} answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            hint = " (check the API key)" if resp.status_code in (401, 403) else ""
            raise SearchFailure(FailureKind.HTTP_STATUS,
                                f"{url} answered HTTP {resp.status_code}{hint}: {resp.text[:200]!r}")
        try:
            return resp.json()
        except ValueError:
            raise SearchFailure(FailureKind.BAD_PAYLOAD, f"{url} answered non-JSON: {resp.text[:200]!r}") from None

    async def post(self, path: str, json_body: Any | None = None, files: dict | None = None) -> Any:
        """The decoded JSON answer, or `SearchFailure` (after retries, within `total_timeout_s`)."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        attempts = [0]

        async def with_retries() -> Any:
            retrying = AsyncRetrying(stop=stop_after_attempt(self.cfg.max_retries + 1), wait=self._wait,
                                     retry=retry_if_exception_type(_Retryable), reraise=True)
            async for attempt in retrying:
                with attempt:
                    attempts[0] += 1
                    if attempts[0] > 1:
                        self.counts["retries"] += 1
                    return await self._attempt(url, json_body, files)

        try:  # wait_for, not asyncio.timeout: Python 3.10 is supported
            result = await asyncio.wait_for(with_retries(), self.cfg.total_timeout_s)
        except _Retryable as e:
            raise self.fail(e.kind, f"{e.message} (after {attempts[0]} attempts)") from None
        except SearchFailure as e:
            raise self.fail(e.kind, e.message) from None
        except asyncio.TimeoutError:
            raise self.fail(FailureKind.TIMEOUT, f"{url}: no answer within the total {self.cfg.total_timeout_s}s "
                                                  f"({attempts[0]} attempts)") from None
        self.counts["ok"] += 1
        return result

    def fail(self, kind: FailureKind, message: str) -> SearchFailure:
        """The failure to raise, counted under its kind."""
        self.counts[kind.value] += 1
        return SearchFailure(kind, message)

    def count_failure(self, kind: FailureKind) -> None:
        """For failures found by the caller after a good HTTP answer (e.g. a payload of the wrong shape)."""
        self.counts[kind.value] += 1
        self.counts["ok"] -= 1

    def metrics(self) -> dict[str, float]:
        return {f"search/{self.backend}/{k}": float(v) for k, v in self.counts.items()}

    async def aclose(self) -> None:
        await self._client.aclose()
