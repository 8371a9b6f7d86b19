"""A fault-injecting FastAPI app standing in for the web search APIs (search tests), served over real HTTP by
`hyperseyes_verl.testing.local_server.LocalServer`. `fault_app` mimics Serper (/search, /lens, /upload) and
Search-R1 (/retrieve) with fault modes picked by the query text:
  "slow"      sleeps 1 s (longer than the tests' timeouts)
  "boom"      HTTP 500 every time
  "flaky"     HTTP 503 on the first two calls of that query, then answers
  "malformed" a body that is not JSON
  "limited"   HTTP 429 (Retry-After: 0)
  "shape"     JSON of the wrong shape
"""
from __future__ import annotations

import asyncio
import base64
import io
from collections import Counter

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

API_KEY = "test-key-123"


class FaultState:
    def __init__(self):
        self.calls: Counter = Counter()  # (path, query) -> count
        self.batch_sizes: list[int] = []
        self.in_flight = 0  # of requests whose first query starts with "cap" (other tests' slow requests linger)
        self.max_in_flight = 0
        self.uploads: dict[str, bytes] = {}
        self.delay_s = 0.0  # added to every answer (to observe concurrency)


def _mean_colour(data: bytes) -> str:
    img = Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1), Image.Resampling.BOX)
    return "%d,%d,%d" % img.getpixel((0, 0))


def fault_app(state: FaultState, require_key: bool = True) -> FastAPI:
    app = FastAPI()

    async def fault(path: str, text: str) -> Response | None:
        state.calls[(path, text)] += 1
        if "slow" in text:
            await asyncio.sleep(1.0)
        if "boom" in text:
            return JSONResponse({"message": "internal"}, status_code=500)
        if "flaky" in text and state.calls[(path, text)] <= 2:
            return JSONResponse({"message": "try again"}, status_code=503)
        if "malformed" in text:
            return Response("{not json", media_type="application/json")
        if "limited" in text:
            return JSONResponse({"message": "slow down"}, status_code=429, headers={"Retry-After": "0"})
        if "shape" in text:
            return JSONResponse({"organic": "oops", "result": {"x": 1}})
        return None

    async def tracked(coro, first_query: str):
        counted = first_query.startswith("cap")
        state.in_flight += counted
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if state.delay_s:
                await asyncio.sleep(state.delay_s)
            return await coro
        finally:
            state.in_flight -= counted

    def bad_key(request: Request) -> Response | None:
        if require_key and request.headers.get("x-api-key") != API_KEY:
            return JSONResponse({"message": "Unauthorized."}, status_code=403)
        return None

    @app.post("/search")
    async def search(request: Request):
        async def go(body):
            if (r := bad_key(request)) is not None:
                return r
            q, num = body["q"], int(body.get("num", 10))
            if (r := await fault("/search", q)) is not None:
                return r
            return {"organic": [{"title": f"{q} result {i}", "snippet": f"about {q} #{i}", "link": f"https://ex.org/{i}"}
                                for i in range(num)]}
        body = await request.json()
        return await tracked(go(body), str(body.get("q", "")))

    @app.post("/upload")
    async def upload(request: Request):
        body = await request.body()
        start, end = body.find(b"\xff\xd8"), body.rfind(b"\xff\xd9")
        if start < 0 or end < 0:
            return JSONResponse({"message": "no jpeg"}, status_code=400)
        name = f"img{len(state.uploads)}"
        state.uploads[name] = body[start:end + 2]
        return {"url": f"https://img.test/{name}"}

    @app.post("/lens")
    async def lens(request: Request):
        if (r := bad_key(request)) is not None:
            return r
        url = (await request.json())["url"]
        if url.startswith("data:image/jpeg;base64,"):
            data = base64.b64decode(url.split(",", 1)[1])
        elif url.startswith("https://img.test/") and url.rsplit("/", 1)[1] in state.uploads:
            data = state.uploads[url.rsplit("/", 1)[1]]
        else:
            return JSONResponse({"message": f"cannot fetch {url[:40]}"}, status_code=400)
        colour = _mean_colour(data)
        return {"visualMatches": [{"title": f"match {colour}", "link": "https://lens.test/1", "source": "lens.test",
                                   "imageUrl": "https://lens.test/1.jpg"}]}

    @app.post("/retrieve")
    async def retrieve(request: Request):
        async def go(body):
            queries, topk = body["queries"], int(body.get("topk", 3))
            state.batch_sizes.append(len(queries))
            for q in queries:
                if (r := await fault("/retrieve", q)) is not None:
                    return r
            return {"result": [[{"document": {"contents": f'"{q} title {i}"\n{q} text {i}'}, "score": 0.9 - 0.1 * i}
                                for i in range(topk)] for q in queries]}
        body = await request.json()
        return await tracked(go(body), str((body.get("queries") or [""])[0]))

    return app
