"""The one async HTTP client of the web backends: pooled connections, per-attempt and total timeouts,
bounded retries with exponential backoff (tenacity), a concurrency cap and a token-bucket rate limit.

Limits are shared per *limit group* (default: the backend name): the token bucket by every search of the
process (thread-safe), the concurrency semaphore by every search of one event loop (asyncio primitives
belong to a loop; verl runs one loop per agent-loop worker process). Failures surface as typed
`SearchFailure`s after the retries, one counter per kind: `search/<backend>/<kind>`.

Hostile or broken servers: redirects are not followed unless `max_redirects > 0`, and then only within the
request's own origin (scheme, host, port), so the API key and the request body never reach another host and a
public backend can never be pointed into the private network. Answers are read as a stream and refused past
`max_response_bytes` (decoded size, so a gzip bomb is capped too), then parsed in a worker thread inside the
same total deadline. A body that cannot be decoded (bad gzip, JSON nested too deep) is a `bad_payload`.
"""
from __future__ import annotations

import asyncio
import functools
import json
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


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default_port


def _preview(body: bytes) -> str:
    return repr(body[:200].decode("utf-8", "replace"))


_PARSE_IN_THREAD_BYTES = 256 * 1024  # larger answers are parsed off the event loop


class HttpSearchClient:
    """POSTs JSON to one service for one backend; counts outcomes under `search/<backend>/...`."""

    def __init__(self, backend: str, base_url: str, cfg: HttpConfig, headers: dict[str, str] | None = None):
        self.backend, self.base_url, self.cfg = backend, base_url.rstrip("/"), cfg
        self.group = cfg.limit_group or backend
        self.counts: Counter = Counter()
        self._client = httpx.AsyncClient(
            headers=headers or {}, timeout=httpx.Timeout(cfg.timeout_s),
            limits=httpx.Limits(max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections),
            follow_redirects=False, verify=_ssl_context())  # redirects: see _send
        self._bucket = shared_bucket(self.group, cfg.rate_per_s, cfg.burst) if cfg.rate_per_s else None

    def _wait(self, state) -> float:
        base = wait_exponential_jitter(initial=self.cfg.backoff_s, max=self.cfg.max_backoff_s)(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:  # the server said when to come back
            return min(self.cfg.max_backoff_s, max(base, exc.retry_after))
        return base

    async def _attempt(self, url: str, json_body: Any | None, files: dict | None) -> Any:
        self.counts["requests"] += 1
        async with shared_semaphore(self.group, self.cfg.max_concurrency):
            if self._bucket is not None:
                await self._bucket.acquire()
            try:
                resp, body = await self._send(url, json_body, files)
            except httpx.TimeoutException:
                raise _Retryable(FailureKind.TIMEOUT, f"no answer from {url} within {self.cfg.timeout_s}s") from None
            except httpx.ConnectError as e:
                raise _Retryable(FailureKind.REFUSED, f"cannot connect to {url} ({e})") from None
            except httpx.DecodingError as e:  # e.g. a Content-Encoding: gzip body that is not gzip
                raise SearchFailure(FailureKind.BAD_PAYLOAD, f"{url} sent a body that cannot be decoded ({e})") from None
            except httpx.RemoteProtocolError as e:
                if "location header" in str(e):  # httpx parses Location even when not following: a bad redirect
                    raise SearchFailure(FailureKind.HTTP_STATUS, f"{url} redirected to an invalid URL ({e})") from None
                raise _Retryable(FailureKind.REFUSED, f"connection to {url} failed ({type(e).__name__}: {e})") from None
            except httpx.RequestError as e:  # connection dropped mid-answer, protocol errors
                raise _Retryable(FailureKind.REFUSED, f"connection to {url} failed ({type(e).__name__}: {e})") from None
        if resp.status_code == 429:
            raise _Retryable(FailureKind.RATE_LIMITED, f"{url} rate-limited the request (HTTP 429)", _retry_after(resp))
        if resp.status_code >= 500:
            raise _Retryable(FailureKind.HTTP_STATUS, f"{url} answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            hint = " (check the API key)" if resp.status_code in (401, 403) else ""
            raise SearchFailure(FailureKind.HTTP_STATUS, f"{url} answered HTTP {resp.status_code}{hint}: {_preview(body)}")
        try:
            if len(body) > _PARSE_IN_THREAD_BYTES:
                return await asyncio.to_thread(json.loads, body)
            return json.loads(body)
        except (ValueError, RecursionError) as e:  # not JSON, or nested deeper than the decoder recurses
            raise SearchFailure(FailureKind.BAD_PAYLOAD, f"{url} answered non-JSON ({type(e).__name__}): "
                                                         f"{_preview(body)}") from None

    async def _send(self, url: str, json_body: Any | None, files: dict | None) -> tuple[httpx.Response, bytes]:
        """POST and read the answer, following at most `max_redirects` redirects within the request's origin."""
        for hop in range(self.cfg.max_redirects + 1):
            request = self._client.build_request("POST", url, json=json_body, files=files)
            resp = await self._client.send(request, stream=True)
            try:
                if not resp.is_redirect:
                    return resp, await self._read_capped(resp, url)
                try:
                    target = request.url.join(resp.headers["location"])
                except httpx.InvalidURL as e:
                    raise SearchFailure(FailureKind.HTTP_STATUS, f"{url} redirected to an invalid URL ({e})") from None
                if _origin(target) != _origin(request.url):
                    raise SearchFailure(FailureKind.HTTP_STATUS, f"{url} redirected to another origin "
                                        f"({target.scheme}://{target.host}); not followed: the API key and the request "
                                        "are never sent to another host")
                if hop == self.cfg.max_redirects:
                    why = ("redirects are not followed (http.max_redirects = 0)" if hop == 0 else
                           f"more than http.max_redirects = {self.cfg.max_redirects} redirects (a loop?)")
                    raise SearchFailure(FailureKind.HTTP_STATUS, f"{url} answered HTTP {resp.status_code} "
                                                                 f"to {target}: {why}")
                url = str(target)  # same origin: the same POST again (a search request is idempotent)
            finally:
                await resp.aclose()
        raise AssertionError("unreachable")  # the loop returns or raises on its last hop

    async def _read_capped(self, resp: httpx.Response, url: str) -> bytes:
        """The decoded body, or `bad_payload` as soon as it exceeds `max_response_bytes` (never buffered whole)."""
        limit = self.cfg.max_response_bytes
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise SearchFailure(FailureKind.BAD_PAYLOAD, f"{url} announced a {int(declared)}-byte answer, more than "
                                                         f"http.max_response_bytes = {limit}")
        body = bytearray()
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise SearchFailure(FailureKind.BAD_PAYLOAD, f"{url} answered more than http.max_response_bytes = "
                                                             f"{limit} bytes; the answer was dropped")
        return bytes(body)

    async def post(self, path: str, json_body: Any | None = None, files: dict | None = None) -> Any:
        """The decoded JSON answer, or `SearchFailure` (after retries, within `total_timeout_s`)."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        attempts = [0]

        async def with_retries() -> Any:
            retrying = AsyncRetrying(stop=stop_after_attempt(self.cfg.max_attempts), wait=self._wait,
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
        except Exception as e:  # anything unforeseen is still a typed, counted failure of this client
            raise self.fail(FailureKind.INTERNAL, f"{url}: {type(e).__name__}: {e}") from None
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
