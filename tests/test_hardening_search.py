"""Issue 13, search side: hostile or broken servers against the web client (redirects, oversized, undecodable
and too-deep answers), and hostile clients against `serve-search` (body size, image count, pixel bombs).
Every server is a real one on 127.0.0.1 started here."""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from PIL import Image

from hyperseyes_verl.search.base import FailureKind, SearchFailure, backend_metrics
from hyperseyes_verl.search.factory import build_backend
from hyperseyes_verl.search.embedded import EmbeddedIndex, build_index
from hyperseyes_verl.search.serve import ServeLimits, create_app
from hyperseyes_verl.search.synthetic import entity_image
from hyperseyes_verl.testing.local_server import LocalServer

KEY = "secret-key-abc"
FAST = {"timeout_s": 2.0, "total_timeout_s": 10.0, "max_attempts": 2, "backoff_s": 0.01, "max_backoff_s": 0.02}
ORGANIC = {"organic": [{"title": "Eiffel Tower", "snippet": "Paris", "link": "https://x.test/eiffel"}]}


def _collector_app(seen: list[dict]) -> FastAPI:
    """The 'other origin': records every request it gets (headers and body)."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str, request: Request):
        seen.append({"path": path, "headers": dict(request.headers), "body": (await request.body()).decode()})
        return ORGANIC

    return app


def _origin_app(other_url: str, hits: Counter) -> FastAPI:
    """The configured API: redirects, loops, oversized, broken and deep answers, chosen by the query text."""
    app = FastAPI()
    big = json.dumps({"organic": [{"title": "t" * 100, "snippet": "s" * 1000, "link": "l"}] * 4000})  # ~4.5 MB

    @app.post("/search")
    async def search(request: Request):
        q = (await request.json())["q"]
        hits[q] += 1
        if q == "elsewhere":
            return RedirectResponse(f"{other_url}/search", status_code=307)
        if q == "same":
            return RedirectResponse("/search2", status_code=307)
        if q == "loop":
            return RedirectResponse("/search", status_code=307)
        if q == "badlocation":
            return Response(status_code=307, headers={"location": "http://[::1"})
        if q == "big":
            return Response(big, media_type="application/json")
        if q == "endless":  # no Content-Length: the cap must stop the read, not the end of the body
            hits["endless_chunks"] = 0

            def chunks():
                yield b'{"organic": ['
                for _ in range(4096):  # 4096 x 64 KB = 256 MB if the client read it all
                    hits["endless_chunks"] += 1
                    yield b'{"title": "x", "snippet": "' + b"y" * 65_000 + b'"},'
                yield b"{}]}"

            return StreamingResponse(chunks(), media_type="application/json")
        if q == "badgzip":
            return Response(b"this is not gzip at all", media_type="application/json",
                            headers={"content-encoding": "gzip"})
        if q == "deep":
            return Response("[" * 100_000 + "]" * 100_000, media_type="application/json")
        return ORGANIC

    @app.post("/search2")
    async def search2(request: Request):
        hits["search2:" + request.headers.get("x-api-key", "")] += 1
        return ORGANIC

    return app


@pytest.fixture(scope="module")
def servers():
    seen: list[dict] = []
    hits: Counter = Counter()
    with LocalServer(_collector_app(seen)) as other, LocalServer(_origin_app(other.url, hits)) as origin:
        yield origin, seen, hits


def _serper(url: str, monkeypatch, **http) -> object:
    monkeypatch.setenv("HYP_TEST_KEY", KEY)
    return build_backend({"type": "serper", "base_url": url, "api_key_env": "HYP_TEST_KEY", "http": {**FAST, **http}})


# ------------------------------------------------------------------ item 1: credentials never leave the origin

@pytest.mark.parametrize("max_redirects", [0, 3])
async def test_redirect_to_another_origin_sends_no_credentials(servers, monkeypatch, max_redirects):
    origin, seen, _ = servers
    seen.clear()
    backend = _serper(origin.url, monkeypatch, max_redirects=max_redirects)
    with pytest.raises(SearchFailure) as e:
        await backend.text_search("elsewhere", 3)
    assert e.value.kind is FailureKind.HTTP_STATUS and KEY not in str(e.value)
    assert seen == []  # the other host got nothing: no key, no body
    assert backend_metrics(backend)["search/serper/http_status"] == 1
    await backend.aclose()


async def test_same_origin_redirect_is_followed_only_when_enabled(servers, monkeypatch):
    origin, seen, hits = servers
    off = _serper(origin.url, monkeypatch)
    with pytest.raises(SearchFailure, match="redirects are not followed"):
        await off.text_search("same", 3)
    on = _serper(origin.url, monkeypatch, max_redirects=2)
    found = await on.text_search("same", 3)
    assert [h.title for h in found] == ["Eiffel Tower"] and hits["search2:" + KEY] == 1
    await off.aclose()
    await on.aclose()


async def test_redirect_to_an_invalid_url_is_a_counted_http_status(servers, monkeypatch):
    origin, _, _ = servers
    backend = _serper(origin.url, monkeypatch, max_redirects=3)
    with pytest.raises(SearchFailure, match="invalid URL") as e:
        await backend.text_search("badlocation", 3)
    assert e.value.kind is FailureKind.HTTP_STATUS and backend_metrics(backend)["search/serper/http_status"] == 1
    await backend.aclose()


async def test_redirect_loop_is_a_counted_http_status(servers, monkeypatch):
    origin, _, hits = servers
    backend = _serper(origin.url, monkeypatch, max_redirects=3)
    hits["loop"] = 0
    with pytest.raises(SearchFailure, match="more than http.max_redirects = 3") as e:
        await backend.text_search("loop", 3)
    assert e.value.kind is FailureKind.HTTP_STATUS and hits["loop"] == 4  # the request and 3 redirects, no retry
    assert backend_metrics(backend)["search/serper/http_status"] == 1
    await backend.aclose()


# ------------------------------------------------------------------ item 6 and the smaller ones: bounded answers

async def test_oversized_answer_is_refused_counted_and_never_cached(servers, monkeypatch, tmp_path):
    origin, _, _ = servers
    monkeypatch.setenv("HYP_TEST_KEY", KEY)
    backend = build_backend({"type": "serper", "base_url": origin.url, "api_key_env": "HYP_TEST_KEY",
                             "http": {**FAST, "max_response_bytes": 1 << 20},
                             "cache": {"path": str(tmp_path / "cache.sqlite")}})
    for query in ("big", "endless"):
        with pytest.raises(SearchFailure, match="max_response_bytes") as e:
            await backend.text_search(query, 3)
        assert e.value.kind is FailureKind.BAD_PAYLOAD
    assert backend.store.count() == 0
    assert backend_metrics(backend)["search/serper/bad_payload"] == 2
    _, _, hits = servers
    assert hits["endless_chunks"] < 4096  # the read stopped near the cap (the server may have queued a few chunks)
    await backend.aclose()


@pytest.mark.parametrize("query", ["badgzip", "deep"])
async def test_undecodable_answers_are_counted_bad_payload(servers, monkeypatch, query):
    origin, _, _ = servers
    backend = _serper(origin.url, monkeypatch)
    with pytest.raises(SearchFailure) as e:
        await backend.text_search(query, 3)
    assert e.value.kind is FailureKind.BAD_PAYLOAD
    assert backend_metrics(backend)["search/serper/bad_payload"] == 1
    await backend.aclose()


# ------------------------------------------------------------------ item 2: serve-search under hostile requests

def _png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def png_bomb(width: int, height: int) -> bytes:
    """A few hundred bytes of valid PNG whose header claims width x height grey pixels (all zero)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (width + 1) * 8, 9)  # the first 8 rows; the rest is missing
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def image_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    for i in range(6):
        entity_image(i).save(root / f"e{i}.png")
    build_index(root / "index", images_dir=root, progress=False)
    return EmbeddedIndex(root / "index")


@pytest.fixture(scope="module")
def served(image_index):
    limits = ServeLimits(max_body_bytes=256 * 1024, max_images=2, max_image_pixels=1000 * 1000)
    with LocalServer(create_app(image_index, limits=limits)) as srv:
        yield srv


def test_serve_search_rejects_oversized_bodies_and_requests(served):
    with httpx.Client(timeout=30) as client:
        big = client.post(f"{served.url}/retrieve", json={"queries": ["x" * 1000] * 400, "topk": 1})
        assert big.status_code == 413 and "larger than the server limit" in big.text
        chunked = client.post(f"{served.url}/retrieve", content=iter([b'{"queries": ["', b"y" * 300_000, b'"]}']),
                              headers={"content-type": "application/json"})  # no Content-Length: counted while read
        assert chunked.status_code == 413
        many = client.post(f"{served.url}/image_retrieve", json={"images": [_png(entity_image(1))] * 3})
        assert many.status_code == 413 and "limit is 2" in many.text
        ok = client.post(f"{served.url}/image_retrieve", json={"images": [_png(entity_image(1))], "topk": 1})
        assert ok.status_code == 200 and ok.json()["result"][0][0]["title"] == "e1"


@pytest.mark.parametrize("width, height", [(2000, 2000), (100_000, 100_000)])
def test_serve_search_refuses_pixel_bombs_before_decoding(served, width, height):
    bomb = png_bomb(width, height)
    assert len(bomb) < 2000
    with httpx.Client(timeout=30) as client:
        r = client.post(f"{served.url}/image_retrieve", json={"images": [base64.b64encode(bomb).decode()]})
    assert r.status_code == 413 and "images[0] has too many pixels" in r.text


def test_serve_search_hostile_image_files_are_400_not_500(served):
    truncated = base64.b64decode(_png(entity_image(2)))[:300]
    with httpx.Client(timeout=30) as client:
        for payload in (base64.b64encode(truncated).decode(), base64.b64encode(b"GIF89a" + b"\x00" * 40).decode(), "%%%"):
            r = client.post(f"{served.url}/image_retrieve", json={"images": [payload]})
            assert r.status_code == 400 and "images[0]" in r.text

