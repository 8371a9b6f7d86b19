"""`hyperseyes serve-search`: one embedded index served over HTTP so many rollout workers share it.

Text, the Search-R1 protocol (what `SearchR1Backend` and Search-R1's own agents send):
  POST /retrieve {"queries": [str], "topk": 3, "return_scores": true}
    -> {"result": [[{"document": {"id", "contents": "\"Title\"\\ntext", "url", "image"}, "score": s}, ...], ...]}
  (return_scores false -> each entry is the document alone, as in Search-R1.)
Images, our extension (SearchR1Config.image_path = "/image_retrieve"):
  POST /image_retrieve {"images": [base64 PNG/JPEG], "topk": 3}
    -> {"result": [[{"title", "text", "url", "score", "image", "entity"}, ...], ...]}
GET /health -> the index manifest. Scores are the embedded index's relevances in [0, 1]; hits below
--min-score / --image-min-score are left out. Handlers are plain functions: FastAPI runs them in its
thread pool, so lookups never block the server's event loop.

It is a network server, so every request is bounded (`ServeLimits`): the body size (413 before it is read
in full), queries and images per request, query length, and image pixels, checked from the image header
before decoding (a decompression bomb is a 413, an undecodable image a 400, never a 500). Images are decoded
and fingerprinted one at a time, by at most `decode_slots` threads at once, and their pixels dropped before the
next: peak memory is bounded by the limits, not by what a client sends.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import io
import sys
import threading

from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hyperseyes_verl.search.config import EmbeddedConfig, SearchConfigError
from hyperseyes_verl.search.embedded import EmbeddedIndex
from hyperseyes_verl.search.image_fingerprint import image_embedding
from hyperseyes_verl.utils.cli import add_model_options, model_kwargs
from hyperseyes_verl.utils.images import ImageTooLarge, check_pixels, upright

# The embedded backend's defaults, so a served index answers what the in-process backend would.
_DEFAULT = {name: EmbeddedConfig.model_fields[name].default for name in ("min_score", "image_min_score", "snippet_chars")}


class RetrieveRequest(BaseModel):
    queries: list[str] = Field(max_length=1024)
    topk: int = Field(3, ge=1, le=100)
    return_scores: bool = True


class ImageRetrieveRequest(BaseModel):
    images: list[str] = Field(max_length=256, description="base64 image files (data: URL prefix allowed)")
    topk: int = Field(3, ge=1, le=100)


class ServeLimits(BaseModel):
    """What one request may ask of the server (defaults fit the project's clients with a wide margin)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(8 << 20, ge=1024, description="request body; larger is 413 (our client sends ~20 KB)")
    max_queries: int = Field(256, ge=1, le=1024, description="queries per /retrieve request")
    max_query_chars: int = Field(2048, ge=1, description="characters per query")
    max_images: int = Field(8, ge=1, le=256, description="images per /image_retrieve request")
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="width x height per image, read from the header "
                                  "before decoding (the fingerprint looks at 64x64)")
    decode_slots: int = Field(2, ge=1, description="images decoded at once by the whole server (bounds peak memory)")


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read; an HTTPException, so FastAPI answers it as is (other errors of reading the
    body it turns into a 400)."""

    def __init__(self, size: int, limit: int):
        super().__init__(413, f"request body of {size}+ bytes is larger than the server limit of {limit} bytes "
                              "(serve-search --max-body-mb)")


class BodyLimitMiddleware:
    """413 for a request body over `limit` bytes: from Content-Length before reading, else while streaming."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._drain(receive, 0)
            return await self._reject(send, int(declared))
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge(seen, self.limit)
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:  # an app that lets it through (FastAPI answers it itself)
            if started:
                raise
            await self._drain(receive, seen)
            await self._reject(send, seen)

    async def _drain(self, receive, seen: int) -> None:
        """Read and drop the rest of a refused body, up to 2x the limit in all: a client still sending then reads
        the 413 instead of a connection reset (unread bytes at close make the kernel reset). Past that the
        connection is cut: the cost a sender can impose stays bounded."""
        while seen <= 2 * self.limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject(self, send, size: int) -> None:
        body = (f'{{"detail": "request body of {size}+ bytes is larger than the server limit of {self.limit} bytes '
                f'(serve-search --max-body-mb)"}}').encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def create_app(index: EmbeddedIndex, min_score: float = _DEFAULT["min_score"],
               image_min_score: float = _DEFAULT["image_min_score"], snippet_chars: int = _DEFAULT["snippet_chars"],
               limits: ServeLimits = ServeLimits()):
    from fastapi import FastAPI, HTTPException
    from PIL import Image

    app = FastAPI(title="hyperseyes search", description=__doc__)
    app.add_middleware(BodyLimitMiddleware, limit=limits.max_body_bytes)
    decode_slots = threading.BoundedSemaphore(limits.decode_slots)

    def fingerprint(n: int, b64: str):
        """The fingerprint of images[n]; 413 over the pixel cap (checked before decoding), 400 if unreadable."""
        try:
            raw = base64.b64decode(b64.split(",", 1)[1] if b64.startswith("data:") else b64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise HTTPException(400, f"images[{n}] is not base64 ({e})") from None
        try:
            with decode_slots, Image.open(io.BytesIO(raw)) as img:
                check_pixels(img, limits.max_image_pixels, f"images[{n}]")
                img.load()
                return image_embedding(upright(img))
        except (ImageTooLarge, Image.DecompressionBombError) as e:  # PIL's own check fires first on huge headers
            raise HTTPException(413, f"images[{n}] has too many pixels: {e} (serve-search --max-image-pixels)") from None
        except Exception as e:  # PIL raises many types on hostile files: all are the client's bad image
            raise HTTPException(400, f"images[{n}] is not a readable image file ({type(e).__name__}: {e})") from None

    @app.get("/health")
    def health() -> dict:
        return index.manifest

    @app.post("/retrieve")
    def retrieve(req: RetrieveRequest) -> dict:
        if index.text is None:
            raise HTTPException(404, f"index {str(index.dir)!r} has no text corpus")
        if len(req.queries) > limits.max_queries:
            raise HTTPException(413, f"{len(req.queries)} queries in one request; the limit is {limits.max_queries}")
        if (longest := max(map(len, req.queries), default=0)) > limits.max_query_chars:
            raise HTTPException(413, f"a query has {longest} characters; the limit is {limits.max_query_chars}")
        result = []
        for row in index.text.search_many(req.queries, req.topk, min_score):  # one batched lookup per request
            docs = [({"id": d.id, "contents": f'"{d.title}"\n{d.text[:snippet_chars]}', "url": d.url, "image": d.image}, s)
                    for d, s in row]
            result.append([{"document": doc, "score": round(s, 4)} for doc, s in docs] if req.return_scores
                          else [doc for doc, _ in docs])
        return {"result": result}

    @app.post("/image_retrieve")
    def image_retrieve(req: ImageRetrieveRequest) -> dict:
        if index.image is None:
            raise HTTPException(404, f"index {str(index.dir)!r} has no images")
        if len(req.images) > limits.max_images:
            raise HTTPException(413, f"{len(req.images)} images in one request; the limit is {limits.max_images}")
        vecs = [fingerprint(n, b64) for n, b64 in enumerate(req.images)]  # one at a time: pixels freed in between
        rows = index.image.search_embeddings(vecs, req.topk, image_min_score)
        for n, row in enumerate(rows):
            if isinstance(row, Exception):
                raise HTTPException(400, f"images[{n}]: {row}")
        return {"result": [[{"title": d.title, "text": d.text[:snippet_chars], "url": d.url, "score": round(s, 4),
                             "image": d.path, "entity": d.entity} for d, s in row] for row in rows]}

    return app


# options that are fields of EmbeddedConfig / ServeLimits (name, type, default, help from the field)
INDEX_FIELDS = ("min_score", "image_min_score", "snippet_chars", "mmap")
LIMIT_FIELDS = ("max_images", "max_image_pixels", "max_queries", "decode_slots")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="folder written by `hyperseyes index build`")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    add_model_options(parser, EmbeddedConfig, INDEX_FIELDS)
    d = ServeLimits()
    parser.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20, help="request body limit (MiB)")
    add_model_options(parser, ServeLimits, LIMIT_FIELDS)
    parser.add_argument("--log-level", default="warning")


def run(args: argparse.Namespace) -> int:
    import warnings

    import uvicorn
    from PIL import Image

    # the server applies its own pixel cap from the header; PIL's warning on opening a large header is noise here
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

    try:
        index = EmbeddedIndex(args.index, mmap=args.mmap)
    except SearchConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        limits = ServeLimits(max_body_bytes=int(args.max_body_mb * 2**20),
                             **model_kwargs(args, ServeLimits, LIMIT_FIELDS))
    except ValueError as e:
        print(f"error: invalid serve-search limits: {e}", file=sys.stderr)
        return 2
    app = create_app(index, args.min_score, args.image_min_score, args.snippet_chars, limits)
    print(f"serving {args.index} ({index.manifest.get('text_docs', 0)} documents, {index.manifest.get('images', 0)} images) "
          f"on http://{args.host}:{args.port}  — client config: "
          f'{{"type": "search_r1", "url": "http://{args.host}:{args.port}", "image_path": "/image_retrieve"}}', flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
