"""The search-backend protocol shared by the environment, the cache and every backend.

A backend answers one text query or one image with at most `k` hits, or raises `SearchFailure`
with a typed kind. The environment turns a failure into an observation line and a counted error:
backends never return partial garbage and never hang past their own timeout.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Protocol, runtime_checkable

from PIL import Image


@dataclass(frozen=True)
class Hit:
    """One search result as the model sees it."""

    title: str
    snippet: str
    url: str = ""
    score: float | None = None  # relevance in [0, 1] where the backend has one
    image_url: str | None = None

    def to_dict(self) -> dict:
        return {"title": self.title, "snippet": self.snippet, "url": self.url, "score": self.score,
                "image_url": self.image_url}

    @classmethod
    def from_dict(cls, d: dict) -> "Hit":
        return cls(title=str(d.get("title", "")), snippet=str(d.get("snippet", "")), url=str(d.get("url", "")),
                   score=None if d.get("score") is None else float(d["score"]), image_url=d.get("image_url"))


class FailureKind(str, Enum):
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    BAD_PAYLOAD = "bad_payload"
    REFUSED = "refused"  # connection refused / unreachable
    RATE_LIMITED = "rate_limited"
    CONFIG = "config"  # missing key, unreadable index: the user's set-up, not the model's fault
    INTERNAL = "internal"


class SearchFailure(Exception):
    """A search that could not be answered. `kind` is counted in metrics; `str()` is shown to the model."""

    def __init__(self, kind: FailureKind, message: str):
        super().__init__(message)
        self.kind = FailureKind(kind)
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


@runtime_checkable
class SearchBackend(Protocol):
    """Async text and reverse-image search. Implementations must be safe under concurrent calls."""

    name: str

    async def text_search(self, query: str, k: int) -> list[Hit]: ...

    async def image_search(self, image: Image.Image, k: int) -> list[Hit]: ...

    async def aclose(self) -> None: ...


def backend_metrics(backend: object) -> dict[str, float]:
    """Flat `search/...` counters of any backend (empty for backends without a `metrics()` method)."""
    fn = getattr(backend, "metrics", None)
    return dict(fn()) if callable(fn) else {}


@dataclass
class InMemoryBackend:
    """A small deterministic backend for tests and examples.

    `text` maps a lower-cased query substring to hits (first key contained in the query wins);
    `image_fn` maps an image to hits (default: one hit naming the image size). `latency_s` is awaited
    per search so concurrency is measurable; `fail_queries` raise the given failure kind.
    """

    text: dict[str, list[Hit]] = field(default_factory=dict)
    image_fn: Callable[[Image.Image], list[Hit]] | None = None
    latency_s: float = 0.0
    fail_queries: dict[str, FailureKind] = field(default_factory=dict)
    name: str = "memory"
    calls: list[tuple[str, str]] = field(default_factory=list)  # ("text"|"image", query or size)

    async def text_search(self, query: str, k: int) -> list[Hit]:
        self.calls.append(("text", query))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        q = query.lower()
        for needle, kind in self.fail_queries.items():
            if needle.lower() in q:
                raise SearchFailure(kind, f"injected failure for {query!r}")
        for needle, hits in self.text.items():
            if needle.lower() in q:
                return list(hits[:k])
        return []

    async def image_search(self, image: Image.Image, k: int) -> list[Hit]:
        self.calls.append(("image", f"{image.width}x{image.height}"))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.image_fn is not None:
            return list(self.image_fn(image)[:k])
        return [Hit(title=f"image {image.width}x{image.height}", snippet="no metadata", score=1.0)][:k]

    async def aclose(self) -> None:
        return None
