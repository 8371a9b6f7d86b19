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
"""
from __future__ import annotations

import argparse
import base64
import binascii
import io
import sys

from pydantic import BaseModel, Field

from hyperseyes_verl.search.config import EmbeddedConfig, SearchConfigError
from hyperseyes_verl.search.embedded import EmbeddedIndex

# The embedded backend's defaults, so a served index answers what the in-process backend would.
_DEFAULT = {name: EmbeddedConfig.model_fields[name].default for name in ("min_score", "image_min_score", "snippet_chars")}


class RetrieveRequest(BaseModel):
    queries: list[str] = Field(max_length=1024)
    topk: int = Field(3, ge=1, le=100)
    return_scores: bool = True


class ImageRetrieveRequest(BaseModel):
    images: list[str] = Field(max_length=256, description="base64 image files (data: URL prefix allowed)")
    topk: int = Field(3, ge=1, le=100)


def create_app(index: EmbeddedIndex, min_score: float = _DEFAULT["min_score"],
               image_min_score: float = _DEFAULT["image_min_score"], snippet_chars: int = _DEFAULT["snippet_chars"]):
    from fastapi import FastAPI, HTTPException
    from PIL import Image, UnidentifiedImageError

    app = FastAPI(title="hyperseyes search", description=__doc__)

    @app.get("/health")
    def health() -> dict:
        return index.manifest

    @app.post("/retrieve")
    def retrieve(req: RetrieveRequest) -> dict:
        if index.text is None:
            raise HTTPException(404, f"index {str(index.dir)!r} has no text corpus")
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
        images = []
        for n, b64 in enumerate(req.images):
            try:
                raw = base64.b64decode(b64.split(",", 1)[1] if b64.startswith("data:") else b64, validate=True)
                img = Image.open(io.BytesIO(raw))
                img.load()
            except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as e:
                raise HTTPException(400, f"images[{n}] is not a base64-encoded image file: {e}") from None
            images.append(img)
        rows = index.image.search_many(images, req.topk, image_min_score)
        for n, row in enumerate(rows):
            if isinstance(row, Exception):
                raise HTTPException(400, f"images[{n}]: {row}")
        return {"result": [[{"title": d.title, "text": d.text[:snippet_chars], "url": d.url, "score": round(s, 4),
                             "image": d.path, "entity": d.entity} for d, s in row] for row in rows]}

    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="folder written by `hyperseyes index build`")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--min-score", type=float, default=_DEFAULT["min_score"],
                        help="text relevance threshold (official 0.6)")
    parser.add_argument("--image-min-score", type=float, default=_DEFAULT["image_min_score"],
                        help="image similarity threshold")
    parser.add_argument("--snippet-chars", type=int, default=_DEFAULT["snippet_chars"],
                        help="snippet = document text cut to this length")
    parser.add_argument("--mmap", action="store_true", help="memory-map the index arrays")
    parser.add_argument("--log-level", default="warning")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        index = EmbeddedIndex(args.index, mmap=args.mmap)
    except SearchConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    app = create_app(index, args.min_score, args.image_min_score, args.snippet_chars)
    print(f"serving {args.index} ({index.manifest.get('text_docs', 0)} documents, {index.manifest.get('images', 0)} images) "
          f"on http://{args.host}:{args.port}  — client config: "
          f'{{"type": "search_r1", "url": "http://{args.host}:{args.port}", "image_path": "/image_retrieve"}}', flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
