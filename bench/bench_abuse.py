"""Hostile inputs, measured side by side in one run (issue 13).

1. Time per `SearchEnvironment.step` for hostile model outputs of 1 KB ... 1 MB (unclosed tags, thousands of
   empty calls or error lines, a huge tool name, deep JSON, whitespace fences). Linear cost means the time per
   KB stays flat; the printed exponent is the slope of log(time) over log(size) from 16 KB to 1 MB
   (1 = linear, 2 = quadratic). Also the observation size over the input size.
2. Peak RSS of a real `hyperseyes serve-search` process receiving hostile image requests (a ~150 KB PNG that
   claims 12000x12000 pixels, four of them per request, a 0.5 KB header bomb, images just under the pixel cap
   one by one and four requests at once, a 96 MB body), next to the peak RSS of a process that simply decodes
   that PNG with PIL (what an uncapped server pays per image).
3. A redirect to another origin: credentials received by the other host, with httpx's default redirect
   handling (what the client did before) and with the web client now.

    python bench/bench_abuse.py [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx
from fastapi import FastAPI, Request  # module level: FastAPI resolves the postponed annotations from here
from fastapi.responses import RedirectResponse
from PIL import Image

from hyperseyes_verl.search.base import InMemoryBackend, SearchFailure
from hyperseyes_verl.search.factory import build_backend
from hyperseyes_verl.search.embedded import build_index
from hyperseyes_verl.search.synthetic import entity_image
from hyperseyes_verl.testing.local_server import LocalServer
from hyperseyes_verl.ugs.environment import SearchEnvironment


# ------------------------------------------------------------------ 1. time per turn vs input size

def _call(name, **arguments) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


FAMILIES = {
    "unclosed <think>": lambda n: "<think>" * (n // 7),
    "empty calls": lambda n: "<tool_call></tool_call>" * (n // 23),
    "empty queries": lambda n: _call("text_search", input=[""] * (n // 4)),
    "calls over the cap": lambda n: _call("text_search", input=["q"]) * (n // 60),
    "huge tool name": lambda n: _call("x" * n),
    "deep area string": lambda n: _call("image_search", image_id="img_0", area="[" * (n // 2) + "]" * (n // 2)),
    "whitespace fence": lambda n: "<tool_call>" + " " * n + "```</tool_call>",
    "objects in a row": lambda n: "<tool_call>" + "{}" * (n // 2) + "</tool_call>",
}
SIZES_KB = [1, 4, 16, 64, 256, 1024]


async def _time_turn(text: str, reps: int) -> tuple[float, int]:
    times, out_len = [], 0
    for _ in range(reps):
        env = SearchEnvironment(InMemoryBackend(), "Which tower?", [Image.new("RGB", (64, 64))])
        t0 = time.perf_counter()
        result = await env.step(text)
        times.append(time.perf_counter() - t0)
        out_len = len(result.observation.text) if result.observation else 0
    return statistics.median(times), out_len


async def bench_turns(quick: bool) -> None:
    sizes = SIZES_KB[:-1] if quick else SIZES_KB
    print("1. time per turn vs hostile output size (median of 3; time per KB flat = linear)")
    print(f"   {'output':<20}" + "".join(f"{f'{kb} KB':>11}" for kb in sizes) + "   exponent  obs/input at 1 KB, max")
    for name, make in FAMILIES.items():
        row, per_kb, ratios = [], [], []
        for kb in sizes:
            text = make(kb * 1024)
            t, out_len = await _time_turn(text, 3)
            row.append(t)
            per_kb.append(t / kb)
            ratios.append(out_len / len(text))
        i16 = sizes.index(16)
        exponent = math.log(row[-1] / row[i16]) / math.log(sizes[-1] / sizes[i16])
        print(f"   {name:<20}" + "".join(f"{t * 1e3:>8.2f} ms" for t in row)
              + f"   {exponent:>7.2f}   {ratios[0]:.2f}, {max(ratios):.2f}")
        print(f"   {'  per KB':<20}" + "".join(f"{v * 1e6:>8.0f} us" for v in per_kb))


# ------------------------------------------------------------------ 2. serve-search peak RSS

def _png_stream(width: int, height: int, mode_byte: int = 0, channels: int = 1) -> bytes:
    """A valid PNG of a solid image, compressed row by row (the bench never holds its pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\x00" + bytes([mode_byte]) * (width * channels)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    colour = {1: 0, 3: 2}[channels]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _header_bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096, 9)) + chunk(b"IEND", b""))


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _decode_peak_mb(png: bytes, tmp: Path) -> float:
    """Peak RSS of a fresh process that decodes `png` with PIL and converts it to RGB (no cap)."""
    path = tmp / "decode_me.png"
    path.write_bytes(png)
    code = ("import sys; from PIL import Image; Image.MAX_IMAGE_PIXELS = None; "
            "im = Image.open(sys.argv[1]); im.load(); im.convert('RGB'); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    base = ("import sys; from PIL import Image; "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    full = int(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout)
    idle = int(subprocess.run([sys.executable, "-c", base], capture_output=True, text=True, check=True).stdout)
    return (full - idle) / 1024


def bench_serve(tmp: Path) -> None:
    print("\n2. serve-search peak RSS under hostile image requests (one real server process)")
    imgs = tmp / "imgs"
    imgs.mkdir()
    for i in range(20):
        entity_image(i).save(imgs / f"e{i}.png")
    build_index(tmp / "index", images_dir=imgs, progress=False)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from hyperseyes_verl.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", "serve-search", "--index", str(tmp / "index"),
                             "--port", str(port), "--log-level", "error"], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=120) as client:
            for _ in range(300):
                try:
                    client.get(f"{url}/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            small = base64.b64encode(_png_stream(64, 64, 90, 3)).decode()
            client.post(f"{url}/image_retrieve", json={"images": [small]})  # warm-up: imports, first lookup
            rows = [("after start and one normal request", None, _hwm_mb(proc.pid), 0.0)]
            big_png = _png_stream(12_000, 12_000)
            big = base64.b64encode(big_png).decode()
            under_cap = base64.b64encode(_png_stream(4000, 4000, 120, 3)).decode()
            cases = [
                (f"{len(big_png) // 1024} KB PNG claiming 12000x12000", {"images": [big]}, 1),
                ("4 of them in one request", {"images": [big] * 4}, 1),
                ("0.5 KB header bomb 100000x100000", {"images": [base64.b64encode(_header_bomb()).decode()]}, 1),
                ("4000x4000 RGB (under the cap) x4 in one request", {"images": [under_cap] * 4}, 1),
                ("4 such requests at once", {"images": [under_cap] * 4}, 4),
            ]
            for label, body, parallel in cases:
                t0 = time.perf_counter()
                if parallel == 1:
                    status = client.post(f"{url}/image_retrieve", json=body).status_code
                else:
                    async def many():
                        async with httpx.AsyncClient(timeout=120) as ac:
                            return await asyncio.gather(*(ac.post(f"{url}/image_retrieve", json=body)
                                                          for _ in range(parallel)))
                    status = "/".join(str(r.status_code) for r in asyncio.run(many()))
                rows.append((label, status, _hwm_mb(proc.pid), time.perf_counter() - t0))
            t0 = time.perf_counter()
            huge = b'{"queries": ["' + b"q" * (96 << 20) + b'"]}'
            try:
                status = client.post(f"{url}/retrieve", content=huge, headers={"content-type": "application/json"}
                                     ).status_code
            except httpx.TransportError as e:  # the server may close the connection while the body is still sent
                status = f"closed ({type(e).__name__})"
            rows.append(("96 MB body of queries", status, _hwm_mb(proc.pid), time.perf_counter() - t0))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"   {'request':<50}{'status':>12}{'peak RSS':>12}{'time':>9}")
    for label, status, hwm, secs in rows:
        print(f"   {label:<50}{str(status or '-'):>12}{hwm:>9.0f} MB{secs:>8.2f}s")
    print(f"   for comparison, a process decoding that 12000x12000 PNG once: +{_decode_peak_mb(big_png, tmp):.0f} MB "
          f"peak; the server's whole peak stayed at {rows[-1][2]:.0f} MB")


# ------------------------------------------------------------------ 3. redirect to another origin

async def bench_redirect() -> None:
    received: list[str] = []
    other = FastAPI()

    @other.post("/search")
    async def collect(request: Request):
        received.append(request.headers.get("x-api-key", ""))
        return {"organic": []}

    print("\n3. a 307 redirect from the API to another origin: credentials the other host received")
    with LocalServer(other) as other_srv:
        origin = FastAPI()

        @origin.post("/search")
        async def redirect():
            return RedirectResponse(f"{other_srv.url}/search", status_code=307)

        with LocalServer(origin) as origin_srv:
            key = "bench-secret"
            async with httpx.AsyncClient(headers={"X-API-KEY": key}, follow_redirects=True) as plain:
                await plain.post(f"{origin_srv.url}/search", json={"q": "x"})
            print(f"   httpx follow_redirects=True (the client before):   {sum(k == key for k in received)} credential(s) sent")
            os.environ["HYP_BENCH_KEY"] = key
            for max_redirects in (0, 3):
                received.clear()
                backend = build_backend({"type": "serper", "base_url": origin_srv.url, "api_key_env": "HYP_BENCH_KEY",
                                         "http": {"max_attempts": 1, "max_redirects": max_redirects}})
                try:
                    await backend.text_search("x", 3)
                    outcome = "answered"
                except SearchFailure as e:
                    outcome = e.kind.value
                await backend.aclose()
                print(f"   web client now, http.max_redirects={max_redirects}:            {len(received)} request(s), "
                      f"{sum(k == key for k in received)} credential(s) sent; search -> {outcome}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="turn sizes up to 256 KB only")
    args = ap.parse_args()
    asyncio.run(bench_turns(args.quick))
    with tempfile.TemporaryDirectory() as tmp:
        bench_serve(Path(tmp))
    asyncio.run(bench_redirect())


if __name__ == "__main__":
    main()
