"""PRS / eval episodes against an OpenAI-compatible endpoint: the longest event-loop stall and the wall time of
N concurrent `run_episode`s with real-size crops (six 1000x750 crops per round of a photo-like 2000x1500
source), before vs after, side by side in one run.

    .venv/bin/python bench/bench_runner_encoding.py [--episodes 4] [--rounds 4] [--before-rev b535f28]

"before" is the tree of --before-rev (default b535f28, the last commit before this change; exported read-only
with `git archive REV | tar -x -C /tmp/hyperseyes-before-REV` when that folder is missing); "after" is this
working tree. Each variant runs in its own process (PYTHONPATH picks the code) against one
chat server in a separate process that answers by counting assistant turns in the raw body (no JSON parse, so
the server costs both variants the same). Search latency 200 ms per call (InMemoryBackend). The ideal wall
time is rounds x 200 ms: everything else is encoding, serialisation and transport.
Numbers are printed, never asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fastapi import FastAPI, Request  # at module level: FastAPI resolves the handler's annotations here
from fastapi.responses import JSONResponse

ROOT = Path(__file__).resolve().parents[1]
AREAS = [[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1], [0.25, 0.25, 0.75, 0.75],
         [0, 0.25, 0.5, 0.75]]
SEARCH = ('<reason>look closer</reason><tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", '
          '"area": ' + json.dumps(AREAS) + '}}</tool_call>')
ANSWER = "<reason>done</reason><answer>Red Tower</answer>"


def photo(w: int = 2000, h: int = 1500, seed: int = 0):
    """Photo-like pixels: 1/f luminance, smooth colour, mild sensor noise (PNG ~1.9 MB per 1000x750 crop, as
    real photos; flat synthetic pictures would flatter every lossless codec)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    f = np.sqrt(np.fft.rfftfreq(w)[None, :] ** 2 + np.fft.fftfreq(h)[:, None] ** 2)
    f[0, 0] = 1

    def field(p: float):
        img = np.fft.irfft2((rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** p, s=(h, w))
        return (img - img.mean()) / img.std()

    x = 128 + 45 * field(1.0)[..., None] + 25 * np.stack([field(1.6) for _ in range(3)], -1)
    x += rng.normal(scale=2, size=(h, w, 3))
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def serve(port_file: str, rounds: int) -> None:
    """The chat server (own process): turn t < rounds asks for six crops, then answers."""
    from hyperseyes_verl.testing.local_server import LocalServer

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.body()
        turn = body.count(b'"assistant"')  # base64 never holds a quote: only roles match
        text = SEARCH if turn < rounds else ANSWER
        return JSONResponse({"choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}],
                             "usage": {"prompt_tokens": len(body) // 4, "completion_tokens": len(text) // 4}})

    srv = LocalServer(app).start()
    Path(port_file).write_text(str(srv.port))
    while True:
        time.sleep(3600)


async def episodes(port: int, n: int, rounds: int) -> dict:
    import hyperseyes_verl
    from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient
    from hyperseyes_verl.episode.runner import run_episode
    from hyperseyes_verl.search.base import InMemoryBackend
    from hyperseyes_verl.ugs.environment import SearchEnvironment
    from hyperseyes_verl.ugs.types import UGSConfig

    source = photo()
    cfg = UGSConfig(max_tool_rounds=rounds, max_turns=rounds + 1)
    stalls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:  # how late a 1 ms timer fires = how long the loop was blocked
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - t - 0.001)

    async with OpenAIChatClient(EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", timeout_s=600)) as client:
        tick = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        recs = await asyncio.gather(*(run_episode(client, "m", SearchEnvironment(InMemoryBackend(latency_s=0.2),
                                                                                   f"q{i}?", [source], cfg),
                                                  f"q{i}?", [source]) for i in range(n)))
        wall = time.perf_counter() - t0
        done.set()
        await tick
    assert all(r.answer == "Red Tower" for r in recs), [(r.finish_reason, r.endpoint_errors) for r in recs]
    return {"code": str(Path(hyperseyes_verl.__file__).parent.parent), "wall_s": wall,
            "max_stall_ms": max(stalls) * 1000, "images": len(recs[0].images), "crop": list(recs[0].images[1].size)}


def run_variant(pythonpath: str, port: int, n: int, rounds: int) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run([sys.executable, __file__, "--worker", str(port), "--episodes", str(n), "--rounds",
                          str(rounds)], env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"variant {pythonpath} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def export_tree(rev: str) -> Path:
    """The tree of `rev` as plain files (git archive: reads the repository, changes nothing in it)."""
    out = Path(f"/tmp/hyperseyes-before-{rev}")
    if not (out / "hyperseyes_verl").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=False)
        if archive.returncode:
            out.rmdir()
            raise SystemExit(f"cannot export {rev} as 'before' ({archive.stderr.decode().strip()}); a shallow clone "
                             "lacks it: pass --before-rev with a commit it has")
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=4, help="tool rounds of six crops per episode")
    ap.add_argument("--before-rev", default="b535f28", help="the commit measured as 'before'")
    ap.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--serve", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        return serve(a.serve, a.rounds)
    if a.worker:
        print(json.dumps(asyncio.run(episodes(a.worker, a.episodes, a.rounds))))
        return
    before = export_tree(a.before_rev)
    port_file = Path(f"/tmp/bench_runner_encoding.{os.getpid()}.port")
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file), "--rounds", str(a.rounds)],
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        while not port_file.exists():
            if server.poll() is not None:
                raise SystemExit("chat server did not start")
            time.sleep(0.1)
        time.sleep(0.2)
        port = int(port_file.read_text())
        res = {"before": run_variant(str(before), port, a.episodes, a.rounds),
               "after": run_variant(str(ROOT), port, a.episodes, a.rounds)}
    finally:
        server.terminate()
        server.wait()
        port_file.unlink(missing_ok=True)
    b, f = res["before"], res["after"]
    ideal = a.rounds * 0.2
    print(f"{a.episodes} concurrent episodes x {a.rounds} rounds of 6 crops ({b['images']} images per episode, "
          f"crops {b['crop'][0]}x{b['crop'][1]}), 200 ms per search, ideal wall {ideal:.1f} s, {os.cpu_count()} CPUs")
    print(f"  before ({b['code']}): wall {b['wall_s']:.2f} s  max event-loop stall {b['max_stall_ms']:.0f} ms")
    print(f"  after  ({f['code']}): wall {f['wall_s']:.2f} s  max event-loop stall {f['max_stall_ms']:.0f} ms")
    print(f"  after/before: wall {f['wall_s'] / b['wall_s']:.3f}  "
          f"max stall {f['max_stall_ms'] / b['max_stall_ms']:.3f}")


if __name__ == "__main__":
    main()
