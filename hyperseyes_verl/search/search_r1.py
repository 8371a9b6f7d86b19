"""Client of a Search-R1 retrieval server (and of `hyperseyes serve-search`, which speaks the same protocol).

POST {url}/retrieve  {"queries": [q, ...], "topk": k, "return_scores": true}
  -> {"result": [[{"document": {"contents": "\"Title\"\ntext..."}, "score": s}, ...], ...]}  (one list per query)
The first line of `contents` is the quoted title, as Search-R1's server writes it. Scores keep their value
only when they lie in [0, 1] (the scale of Search-R1's dense retrievers and of our server); other scales
(raw BM25) are not relevances, so they are dropped rather than shown as one.

With `batch_window_ms > 0`, text queries arriving within the window share one request (Search-R1 servers
batch on the GPU). `image_path` enables the image extension of `hyperseyes serve-search`:
POST {url}{image_path} {"images": [base64 JPEG], "topk": k} -> {"result": [[{title, text, url, score}]]}.
"""
from __future__ import annotations

import asyncio
import base64
from typing import Any

from PIL import Image

from hyperseyes_verl.search.base import FailureKind, Hit, SearchFailure
from hyperseyes_verl.search.coalesce import Coalescer
from hyperseyes_verl.search.config import SearchR1Config
from hyperseyes_verl.search.http_client import HttpSearchClient
from hyperseyes_verl.utils.images import jpeg_bytes


def parse_contents(contents: str) -> tuple[str, str]:
    """("Title", "text") from Search-R1's `"Title"\\ntext`; a contents without a title line is all text."""
    first, _, rest = contents.partition("\n")
    first = first.strip()
    if len(first) >= 2 and first[0] == first[-1] == '"':
        return first[1:-1], rest.strip()
    return "", contents.strip()


def _score(value: Any) -> float | None:
    try:
        s = float(value)
    except (TypeError, ValueError):
        return None
    return s if 0.0 <= s <= 1.0 else None


def _hit(item: Any) -> Hit:
    if not isinstance(item, dict):
        raise ValueError(f"a result is {type(item).__name__}, expected an object")
    doc = item.get("document", item)
    if not isinstance(doc, dict):
        raise ValueError("'document' is not an object")
    if isinstance(doc.get("contents"), str):
        title, text = parse_contents(doc["contents"])
    else:
        title, text = str(doc.get("title", "")), str(doc.get("text", ""))
    return Hit(title=title or str(doc.get("title", "")), snippet=text, url=str(doc.get("url", "")),
               score=_score(item.get("score")), image_url=doc.get("image"))


class SearchR1Backend:
    def __init__(self, cfg: SearchR1Config):
        self.cfg, self.name = cfg, cfg.name
        self.client = HttpSearchClient(cfg.name, cfg.url, cfg.http)
        self._batcher = (Coalescer(self._retrieve_batch, cfg.batch_window_ms / 1000, cfg.batch_max,
                                   max_workers=cfg.http.max_concurrency) if cfg.batch_window_ms > 0 else None)

    def _rows(self, answer: Any, n: int, path: str) -> list[list[Hit]]:
        try:
            rows = answer["result"]
            if not isinstance(rows, list) or len(rows) != n:
                raise ValueError(f"'result' must be a list of {n} lists")
            return [[_hit(i) for i in row] for row in rows]
        except (KeyError, TypeError, ValueError) as e:
            self.client.count_failure(FailureKind.BAD_PAYLOAD)
            raise SearchFailure(FailureKind.BAD_PAYLOAD, f"{self.client.base_url}{path} answered an unexpected shape "
                                                         f"({e}): {str(answer)[:200]!r}") from None

    def _keep(self, hits: list[Hit], k: int) -> list[Hit]:
        if self.cfg.min_score is not None:
            hits = [h for h in hits if h.score is not None and h.score >= self.cfg.min_score]
        return hits[:k]

    async def retrieve(self, queries: list[str], k: int) -> list[list[Hit]]:
        """One request for several queries (the server's batch endpoint)."""
        answer = await self.client.post("/retrieve", {"queries": queries, "topk": k, "return_scores": True})
        return [self._keep(row, k) for row in self._rows(answer, len(queries), "/retrieve")]

    async def text_search(self, query: str, k: int) -> list[Hit]:
        if self._batcher is None:
            return (await self.retrieve([query], k))[0]
        return await self._batcher.submit((query, k))

    async def _retrieve_batch(self, items: list[tuple[str, int]]) -> list[list[Hit] | BaseException]:
        """One request per distinct k (the protocol has one topk per request), sent concurrently."""
        by_k: dict[int, list[int]] = {}
        for n, (_, k) in enumerate(items):
            by_k.setdefault(k, []).append(n)
        answers = await asyncio.gather(*(self.retrieve([items[n][0] for n in ns], k) for k, ns in by_k.items()),
                                       return_exceptions=True)
        out: list = [None] * len(items)
        for ns, rows in zip(by_k.values(), answers):
            if isinstance(rows, BaseException) and not isinstance(rows, SearchFailure):
                rows = SearchFailure(FailureKind.INTERNAL, f"{type(rows).__name__}: {rows}")
            for j, n in enumerate(ns):
                out[n] = rows if isinstance(rows, SearchFailure) else rows[j]  # a failed request fails all its queries
        return out

    async def image_search(self, image: Image.Image, k: int) -> list[Hit]:
        if not self.cfg.image_path:
            raise SearchFailure(FailureKind.CONFIG, f"backend {self.name!r} has no image search: set image_path="
                                "'/image_retrieve' when the server is `hyperseyes serve-search`, or use a composite backend")
        data = base64.b64encode(jpeg_bytes(image, self.cfg.image_max_side, 92)).decode("ascii")
        answer = await self.client.post(self.cfg.image_path, {"images": [data], "topk": k})
        return self._keep(self._rows(answer, 1, self.cfg.image_path)[0], k)

    def metrics(self) -> dict[str, float]:
        return self.client.metrics()

    async def aclose(self) -> None:
        await self.client.aclose()
