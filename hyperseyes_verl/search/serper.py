"""Serper-style web search (google.serper.dev or a compatible proxy).

Text:  POST {base_url}/search  {"q": query, "num": k}  ->  {"organic": [{title, snippet, link}, ...]}
Image: POST {base_url}/lens    {"url": image_url}     ->  {"visualMatches": [{title, link, source, imageUrl}]}
                                                          (older answers: "organic")
The key goes in the `X-API-KEY` header, read from the environment by `build_backend`, never logged.
Lens needs the image as a URL: see `ImageUploadConfig` for what is sent.
"""
from __future__ import annotations

import asyncio
import base64
from typing import Any

from PIL import Image

from hyperseyes_verl.search.base import FailureKind, Hit, SearchFailure
from hyperseyes_verl.search.config import HttpConfig, ImageUploadConfig, SerperConfig
from hyperseyes_verl.search.http_client import HttpSearchClient
from hyperseyes_verl.utils.images import jpeg_bytes


class ImageUploader:
    """Turns an image into the URL the Lens endpoint fetches (inline data URL, or an upload endpoint)."""

    def __init__(self, cfg: ImageUploadConfig, client: HttpSearchClient):
        self.cfg, self.client = cfg, client  # cfg guarantees an endpoint_url in mode 'endpoint'

    async def to_url(self, image: Image.Image) -> str:
        data = jpeg_bytes(image, self.cfg.max_side, self.cfg.jpeg_quality)
        if self.cfg.mode == "data_url":
            return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        answer = await self.client.post(self.cfg.endpoint_url, files={self.cfg.field: ("image.jpg", data, "image/jpeg")})
        url = answer.get(self.cfg.url_key) if isinstance(answer, dict) else None
        if not isinstance(url, str) or not url:
            self.client.count_failure(FailureKind.BAD_PAYLOAD)
            raise SearchFailure(FailureKind.BAD_PAYLOAD, f"image upload answer has no string {self.cfg.url_key!r}: "
                                                         f"{str(answer)[:200]!r}")
        return url


def _items(answer: Any, keys: tuple[str, ...], endpoint: str) -> list[dict]:
    """The result objects under the first of `keys` present; `SearchFailure` for an answer of the wrong shape."""
    if not isinstance(answer, dict):
        raise SearchFailure(FailureKind.BAD_PAYLOAD, f"{endpoint} answered {type(answer).__name__}, expected an object")
    for key in keys:
        if key in answer:
            items = answer[key]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise SearchFailure(FailureKind.BAD_PAYLOAD, f"{endpoint}: {key!r} is not a list of objects")
            return items
    if "message" in answer or "error" in answer:  # an error body with status 200
        raise SearchFailure(FailureKind.BAD_PAYLOAD, f"{endpoint}: {str(answer.get('message') or answer.get('error'))[:200]}")
    return []  # no results


class SerperBackend:
    def __init__(self, cfg: SerperConfig, api_key: str):
        self.cfg, self.name = cfg, cfg.name
        self.client = HttpSearchClient(cfg.name, cfg.base_url, cfg.http,
                                       headers={"X-API-KEY": api_key, "Content-Type": "application/json"})
        upload_http = HttpConfig(**{**cfg.http.model_dump(), "limit_group": f"{cfg.name}-upload"})
        self._upload_client = HttpSearchClient(f"{cfg.name}_upload", cfg.base_url, upload_http)  # no key to third parties
        self.uploader = ImageUploader(cfg.image_upload, self._upload_client)

    async def _post_items(self, path: str, body: dict, keys: tuple[str, ...]) -> list[dict]:
        extra = {k: v for k, v in (("gl", self.cfg.gl), ("hl", self.cfg.hl)) if v}
        answer = await self.client.post(path, {**body, **extra})
        try:
            return _items(answer, keys, f"serper {path}")
        except SearchFailure:
            self.client.count_failure(FailureKind.BAD_PAYLOAD)
            raise

    async def text_search(self, query: str, k: int) -> list[Hit]:
        items = await self._post_items("/search", {"q": query, "num": k}, ("organic",))
        return [Hit(title=str(i.get("title", "")), snippet=str(i.get("snippet", "")), url=str(i.get("link", "")))
                for i in items[:k]]

    async def image_search(self, image: Image.Image, k: int) -> list[Hit]:
        try:  # upload + lens together stay within one total timeout
            return await asyncio.wait_for(self._image_search(image, k), self.cfg.http.total_timeout_s)
        except asyncio.TimeoutError:
            raise self.client.fail(FailureKind.TIMEOUT, f"image search (upload + lens) took longer than the total "
                                                        f"{self.cfg.http.total_timeout_s}s") from None

    async def _image_search(self, image: Image.Image, k: int) -> list[Hit]:
        url = await self.uploader.to_url(image)
        items = await self._post_items("/lens", {"url": url}, ("visualMatches", "organic"))
        return [Hit(title=str(i.get("title", "")), snippet=str(i.get("snippet") or i.get("source") or ""),
                    url=str(i.get("link", "")), image_url=i.get("imageUrl") or i.get("thumbnailUrl"))
                for i in items[:k]]

    def metrics(self) -> dict[str, float]:
        return {**self.client.metrics(), **self._upload_client.metrics()}

    async def aclose(self) -> None:
        await self.client.aclose()
        await self._upload_client.aclose()
