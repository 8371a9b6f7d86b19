"""HyperEyesAgentLoop at the paper's image sizes: CPU per turn by turn index, before vs after; concurrency.

A tiny random Qwen2.5-VL and Qwen3-VL checkpoint (built offline) whose image processors get the released
models' pixel budgets (Qwen2.5-VL 56²..28²·16384 px, Qwen3-VL 256²..4096² px), so a 1000×750 crop is ~1000
visual tokens as in training. One episode: a 3000×2250 input image, `--rounds` tool rounds each cutting 6 crops
of ~1000×750 (one image_search with 6 boxes written with 4 decimals, 1002×752 px, one text_search), then the
answer; a fake LLM server (scripted tokens, no latency) and an in-memory search backend. The loop is built with
hydra as verl's worker builds it.

Measured per episode, one at a time: process CPU (all threads: verl runs renders in its executor) from the
loop's construction to the first generate (first-turn prompt), and between consecutive generate calls (turn t =
the work after generation t: observation render and merge, searches, crops). `before` = the code at `--before`
(default HEAD; cf7d070 is the code when issue #19 was filed), extracted with `git archive REV | tar -x -C DIR`
and put first on PYTHONPATH in a child process (the git state is not touched); `after` = this tree. Both runs
must produce the same token ids (printed).

The concurrency section runs N 2-round episodes at once (the paper's average is 2.2 rounds) for each N of
`--concurrent` (default 64,256,1024), each level in its own child process, one row per level: episodes/s,
peak RSS (`ru_maxrss` of that child; in brackets its peak after setup + one warm-up episode), the longest
event-loop stall (how late a 5 ms timer fired), the stall at the start (all N tasks are created at once, as
verl's `AgentLoopWorker.generate_sequences` does, so every episode's synchronous start — building the loop with
hydra, up to its first await — runs back to back), the longest stall after that, and GC time. By default each
level runs three times (`--rows`): verl's worker as is (Python's executor and collector, no pacing), with
`gc.freeze()` after warm-up, and as our worker and agent loop run (`paced`, hyperseyes_verl.verl.paced_start and
the `hyperseyes.agent_loop` defaults: gc.freeze(); each episode behind a StartGate, `--starts-per-turn` synchronous
starts per loop turn; `--steps-per-turn` episode steps per loop turn; full collections deferred while episodes
are in flight; `--executor-threads` executor threads). Only the agent loop runs: verl's per-episode postprocess
(padding, position ids) and the reward do not.
`--pixels small` (default) keeps the tiny processor's own budget (28²..28²·16 px) with a 300×225 source image
(crops of 100×75), so 1024 episodes take ~30 s on 2 cores; `--pixels real` uses the released Qwen2.5-VL
budget and the 3000×2250 source: each episode then holds ~37 MiB while in flight (12 crops of 1008×756, each
held once: the environment cuts them at the model's size; the input image is shared by all episodes here, a
decoded one adds 19 MiB), so 256 / 1024 real-size episodes need ~10 / ~38 GiB in one process.

    .venv/bin/python bench/bench_agent_loop_scale.py [--episodes 2] [--rounds 9] [--before REV]
        [--concurrent 64,256,1024] [--pixels small|real] [--rows all|verl|freeze|paced]
    # the full-size concurrency run only (no per-turn section): 64 + 256 take ~2 min and 10 GiB on 2 cores
    .venv/bin/python bench/bench_agent_loop_scale.py --episodes 0 --pixels real --concurrent 64,256 --rows all

Default run: ~4 minutes on 2 cores (per-turn section ~2 min, concurrency ~2 min).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REAL_BUDGET = {"qwen2_5_vl": (56 * 56, 28 * 28 * 16384), "qwen3_vl": (256 * 256, 4096 * 4096)}
SOURCE = {"real": (3000, 2250), "small": (300, 225)}  # input image; the 6 boxes cut 1000×750 / 100×75 crops
BOXES = [[c / 3, r / 3, (c + 1) / 3, (r + 1) / 3] for r in range(2) for c in range(3)]  # 6 crops of 1000×750
SEARCH = ('<reason>look closer</reason>\n<tool_call>\n{"name": "image_search", "arguments": {"image_id": "img_0", '
          f'"area": {json.dumps([[round(v, 4) for v in b] for b in BOXES])}}}}}\n</tool_call>\n<tool_call>\n'
          '{"name": "text_search", "arguments": {"input": ["height of the tower"]}}\n</tool_call>')
ANSWER = "<reason>found it</reason> <answer>Paris</answer>"


def set_pixel_budget(processor, family: str) -> None:
    """The released model's min/max pixels on a (tiny) processor, so images get their real visual-token counts."""
    lo, hi = REAL_BUDGET[family]
    processor.image_processor.size = {"shortest_edge": lo, "longest_edge": hi}
    processor.image_processor.min_pixels, processor.image_processor.max_pixels = lo, hi


def source_image(width: int = 3000, height: int = 2250):
    """A noise image upscaled from 1/25 size (blocky, like a photo's low-frequency content); seed 0."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    small = (rng.random((max(height // 25, 1), max(width // 25, 1), 3)) * 255).astype("uint8")
    return Image.fromarray(small).resize((width, height))


def _setup(model_dir: str, family: str, rounds: int, pixels: str = "real", steps_per_turn: int | None = None):
    import hydra
    from hydra import compose, initialize_config_dir
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
    from verl.utils.tokenizer.tokenizer import hf_processor, hf_tokenizer

    import verl
    from hyperseyes_verl.search.base import Hit, InMemoryBackend
    from hyperseyes_verl.verl import agent_loop as hal
    from hyperseyes_verl.verl.dataset import HyperEyesDataset

    hal.set_backend_override(InMemoryBackend(text={"height": [Hit("Tower", "300 m tall", "http://t", 0.9)]}))
    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer/config")
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=[
            f"actor_rollout_ref.model.path={model_dir}", "actor_rollout_ref.rollout.name=vllm",
            "actor_rollout_ref.rollout.prompt_length=8192", "actor_rollout_ref.rollout.response_length=131072",
            f"+hyperseyes.agent_loop.ugs.max_tool_rounds={rounds}",
            f"+hyperseyes.agent_loop.ugs.max_turns={rounds + 1}",
            *([] if steps_per_turn is None else [f"+hyperseyes.agent_loop.steps_per_turn={steps_per_turn}"])])
    tokenizer, processor = hf_tokenizer(model_dir), hf_processor(model_dir)
    if pixels == "real":
        set_pixel_budget(processor, family)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    script = [tokenizer.encode(t, add_special_tokens=False) + [im_end] for t in [SEARCH] * rounds + [ANSWER]]
    src = source_image(*SOURCE[pixels])

    def make(server):
        return hydra.utils.instantiate(
            config={"_target_": "hyperseyes_verl.verl.agent_loop.HyperEyesAgentLoop"},
            trainer_config=DictConfigWrap(config=cfg), server_manager=server, tokenizer=tokenizer,
            processor=processor, hf_model_type=family, dataset_cls=HyperEyesDataset,
            data_config=DictConfigWrap(cfg.data), tools=ToolListWrap([]))

    def prompt():
        return [{"role": "user", "content": [{"type": "image", "image": src},
                                             {"type": "text", "text": "Where is the tower?"}]}]
    return make, prompt, script, tokenizer.convert_tokens_to_ids("<|image_pad|>")


class _TimedServer:
    """The fake server, stamping process CPU and wall time at every generate call."""

    def __init__(self, inner):
        self.inner, self.cpu, self.wall = inner, [], []

    async def generate(self, *a, **k):
        self.cpu.append(time.process_time())
        self.wall.append(time.perf_counter())
        return await self.inner.generate(*a, **k)


async def _episode(make, prompt, script, pad_id, index, digest=True, gate=None, deferral=None):
    """One episode; `pad_id` None / `digest` False leave out the bench's own on-loop work (counting image pads in
    the prompt, hashing the token ids), as the concurrency section does. `gate` / `deferral`: wait at the gate
    first, inside the deferral, as our worker's `_run_agent_loop` does (hyperseyes_verl.verl.paced_start)."""
    try:
        from hyperseyes_verl.testing.fake_llm_server import FakeServerManager
    except ImportError:  # `--before` a revision older than the move (e.g. cf7d070)
        from hyperseyes_verl.testing.fake_server import FakeServerManager

    if deferral is not None:  # as our worker's _run_agent_loop: the whole episode, its start included
        with deferral:
            return await _episode(make, prompt, script, pad_id, index, digest, gate)
    if gate is not None:
        await gate.wait()
    server = _TimedServer(FakeServerManager(script=script, image_token_id=pad_id))
    c0, w0 = time.process_time(), time.perf_counter()
    loop = make(server)
    make_ms = (time.perf_counter() - w0) * 1e3
    out = await loop.run(dict(temperature=1.0, top_p=1.0, top_k=-1, repetition_penalty=1.0, logprobs=True),
                                 raw_prompt=prompt(), extra_info={}, index=index)
    stamps = server.cpu + [time.process_time()]
    if digest:
        digest = hashlib.sha256(json.dumps([out.prompt_ids, out.response_ids, out.response_mask]).encode()).hexdigest()
    return {"prompt_ms": (server.cpu[0] - c0) * 1e3,
            "turn_ms": [(b - a) * 1e3 for a, b in zip(stamps, stamps[1:])][:-1],  # the answer turn has no work
            "images": len(out.multi_modal_data.get("images", [])), "pads": server.inner.calls[-1].n_image_pad,
            "tokens": len(out.prompt_ids) + len(out.response_ids), "digest": digest,
            "finish": out.extra_fields["finish_reason"], "make_ms": make_ms,
            # concurrency: the images kept until all are done, as verl's worker keeps them (its token lists become
            # tensors in verl's per-episode postprocess)
            "images_kept": None if digest else out.multi_modal_data,
            "ended": time.perf_counter()}


def _time_merges(store: list) -> None:
    """Process CPU inside the observation merge (the token render; crops and searches excluded)."""
    from hyperseyes_verl.verl.agent_loop import HyperEyesAgentLoop

    merge = HyperEyesAgentLoop._merge_observation

    async def timed(self, *a, **k):
        t = time.process_time()
        try:
            return await merge(self, *a, **k)
        finally:
            store.append((time.process_time() - t) * 1e3)

    HyperEyesAgentLoop._merge_observation = timed


async def _per_turn(model_dir, family, episodes, rounds):
    make, prompt, script, pad_id = _setup(model_dir, family, rounds)
    merges: list[float] = []
    _time_merges(merges)
    await _episode(make, prompt, script, pad_id, 0)  # warm-up (and the one verification render)
    merges.clear()
    runs = [await _episode(make, prompt, script, pad_id, i + 1) for i in range(episodes)]
    turns = [statistics.median(r["turn_ms"][t] for r in runs) for t in range(len(runs[0]["turn_ms"]))]
    return {"prompt_ms": statistics.median(r["prompt_ms"] for r in runs), "turn_ms": turns,
            "merge_ms": statistics.median(merges),
            **{k: runs[0][k] for k in ("images", "pads", "tokens", "digest", "finish")}}


def _rss_mib() -> float:
    """Peak resident set size of this process so far (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _concurrent(model_dir, family, n, freeze, pixels, starts_per_turn=0, steps_per_turn=0, defer_gc=False,
                      executor_threads=0):
    from hyperseyes_verl.utils.gc_deferral import FullCollectionDeferral
    from hyperseyes_verl.utils.start_gate import StartGate

    make, prompt, script, pad_id = _setup(model_dir, family, 2, pixels, steps_per_turn)
    if executor_threads:  # as our worker sets its loop's default executor
        from concurrent.futures import ThreadPoolExecutor

        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(executor_threads))
    warm = await _episode(make, prompt, script, pad_id, 0)  # warm-up
    gate = StartGate(starts_per_turn) if starts_per_turn else None
    deferral = FullCollectionDeferral() if defer_gc else None
    if freeze:
        gc.collect()
        gc.freeze()
    rss_warm = _rss_mib()
    pauses, start = [], {}

    def on_gc(phase, info):  # every collection: (generation, seconds)
        if phase == "start":
            start["t"] = time.perf_counter()
        elif "t" in start:
            pauses.append((info["generation"], time.perf_counter() - start.pop("t")))

    # (when the timer was set, how late it fired, event-loop thread CPU meanwhile), seconds
    stalls: list[tuple[float, float, float]] = []
    stop = asyncio.Event()

    async def ticker():  # the event loop's lateness: how long a ready task waited
        while not stop.is_set():
            t, c = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.005)
            stalls.append((t, time.perf_counter() - t - 0.005, time.thread_time() - c))

    gc.callbacks.append(on_gc)
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    started = loop.create_future()
    t0, c0 = time.perf_counter(), time.thread_time()
    # as verl's AgentLoopWorker.generate_sequences: every episode's task at once, then gather. The callback queued
    # after them runs once every task has run its synchronous start (building the loop, up to the first await)
    tasks = [asyncio.create_task(_episode(make, prompt, script, None, i, digest=False, gate=gate, deferral=deferral))
             for i in range(n)]
    loop.call_soon(lambda: started.set_result((time.perf_counter(), time.thread_time())))
    runs = await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    stop.set()
    await tick
    gc.callbacks.remove(on_gc)
    t1, c1 = started.result()
    last_end = max(r["ended"] for r in runs)
    after = max(((s, c) for at, s, c in stalls if at >= t1), default=(0.0, 0.0))
    full = [p for g, p in pauses if g == 2]
    return {"eps_per_s": n / wall, "wall_s": wall, "gc2_s": sum(full), "gc2_n": len(full),
            "gc_max_ms": max((p for _, p in pauses), default=0.0) * 1e3,
            "gc_max_gen": max(pauses, key=lambda gp: gp[1], default=(-1, 0))[0],
            "stall_ms": max([s for at, s, _ in stalls if at + s + 0.005 > t0] + [t1 - t0]) * 1e3,
            # timers that fired before the last episode ended: not the worker's idle time after it (our worker's one
            # full collection runs then)
            "running_stall_ms": max([s for at, s, _ in stalls if t0 < at + s + 0.005 <= last_end] + [t1 - t0]) * 1e3,
            "start_stall_ms": (t1 - t0) * 1e3, "start_cpu_ms": (c1 - c0) * 1e3,
            "after_start_ms": after[0] * 1e3, "after_start_cpu_ms": after[1] * 1e3,
            "make_ms": statistics.median(r["make_ms"] for r in runs), "rss_warm_mib": rss_warm,
            "rss_peak_mib": _rss_mib(), "images": warm["images"], "pads": warm["pads"]}


def _measure(args) -> None:
    """Child process: one code version, prints one JSON line."""
    import hyperseyes_verl
    from hyperseyes_verl.testing.cpu_patches import apply_processor_patch

    apply_processor_patch()
    res = {"code": os.path.dirname(hyperseyes_verl.__file__)}
    if args.mode == "turns":
        res.update(asyncio.run(_per_turn(args.model_dir, args.family, args.episodes, args.rounds)))
    else:
        paced = args.mode == "paced"  # our worker and agent loop: paced starts and steps, gc.freeze()
        res.update(asyncio.run(_concurrent(args.model_dir, args.family, int(args.concurrent),
                                           args.mode in ("gc_freeze", "paced"), args.pixels,
                                           args.starts_per_turn if paced else 0,
                                           args.steps_per_turn if paced else 0, paced,
                                           args.executor_threads if paced else 0)))
    print("RESULT " + json.dumps(res))


def _child(pythonpath: str | None, *argv: str) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, __file__, "--child", *argv], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"child {argv} failed:\n{out.stderr[-3000:]}")
    return json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))[7:])


ROW_LABEL = {"gc_default": "verl", "gc_freeze": "freeze", "paced": "paced"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=2, help="timed episodes per family and code version "
                    "(0: skip the per-turn section)")
    ap.add_argument("--rounds", type=int, default=9, help="tool rounds of 6 crops per episode")
    ap.add_argument("--concurrent", default="64,256,1024", help="comma-separated numbers of concurrent 2-round "
                    "episodes, one child process per level (0 or empty: skip the section)")
    ap.add_argument("--pixels", choices=("small", "real"), default="small", help="concurrency section: the tiny "
                    "processor's budget with a 300x225 source (small) or the released budget with 3000x2250 (real)")
    ap.add_argument("--rows", choices=("all", "verl", "freeze", "paced"), default="all", help="concurrency "
                    "section, per level: verl's worker as is (default gc), with gc.freeze() after warm-up, our "
                    "worker and agent loop (paced starts and steps, deferred full collections, executor threads, "
                    "gc.freeze), or all three")
    ap.add_argument("--starts-per-turn", type=int, default=None, help="paced rows: "
                    "synchronous episode starts per event-loop turn (hyperseyes.agent_loop.starts_per_turn)")
    ap.add_argument("--steps-per-turn", type=int, default=None, help="paced rows: episode steps per event-loop "
                    "turn (hyperseyes.agent_loop.steps_per_turn); the other rows run with 0, as verl's agent loops")
    ap.add_argument("--executor-threads", type=int, default=None, help="paced rows: threads of the loop's default "
                    "executor (hyperseyes.agent_loop.executor_threads); the other rows keep Python's default")
    ap.add_argument("--before", default="HEAD", help="per-turn section: the git revision measured as `before` "
                    "(cf7d070: the code when issue #19 was filed)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="turns", help=argparse.SUPPRESS)
    ap.add_argument("--family", default="qwen2_5_vl", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.child:  # here, not at import: a `--before` child may lack hyperseyes_verl.config
        from hyperseyes_verl.config import AgentLoopConfig  # pure: no verl import

        defaults = AgentLoopConfig()
        args.starts_per_turn = defaults.starts_per_turn if args.starts_per_turn is None else args.starts_per_turn
        args.steps_per_turn = defaults.steps_per_turn if args.steps_per_turn is None else args.steps_per_turn
        if args.executor_threads is None:
            args.executor_threads = defaults.executor_threads or 0
    levels = [int(v) for v in args.concurrent.replace(" ", "").split(",") if v and int(v) > 0]
    if args.child:
        _measure(args)
        return 0

    from hyperseyes_verl.testing.cpu_patches import apply_processor_patch
    from hyperseyes_verl.testing.tiny_vl import build_tiny_vl

    apply_processor_patch()
    tmp = tempfile.mkdtemp(prefix="hyp_scale_")
    before = os.path.join(tmp, "before")
    os.makedirs(before)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.episodes:
        subprocess.run(f"git -C {repo} archive {args.before} | tar -x -C {before}", shell=True, check=True)
    dirs = {f: str(build_tiny_vl(os.path.join(tmp, f), f)) for f in REAL_BUDGET}
    common = ["--episodes", str(args.episodes), "--rounds", str(args.rounds), "--pixels", args.pixels,
              "--starts-per-turn", str(args.starts_per_turn), "--steps-per-turn", str(args.steps_per_turn),
              "--executor-threads", str(args.executor_threads)]
    print(f"machine: {os.cpu_count()} CPUs")
    if args.episodes:
        print(f"per turn: {args.episodes} timed episodes per cell (after 1 warm-up), {args.rounds} rounds x 6 crops "
              "of 1000x750 from a 3000x2250 input, real pixel budgets")
    for family, model_dir in (dirs.items() if args.episodes else ()):
        cells = {name: _child(pp, "--mode", "turns", "--family", family, "--model-dir", model_dir, *common)
                 for name, pp in (("before", before), ("after", None))}
        b, a = cells["before"], cells["after"]
        assert b["code"].startswith(before) and not a["code"].startswith(before), (b["code"], a["code"])
        print(f"\n{family}: {a['images']} images, {a['pads']} image tokens, {a['tokens']} tokens per episode "
              f"(finish {a['finish']}); token ids before == after: {'yes' if a['digest'] == b['digest'] else 'NO'}")
        print(f"  {'CPU ms':18s} {'before':>9s} {'after':>9s} {'ratio':>7s}")
        print(f"  {'first prompt':18s} {b['prompt_ms']:9.1f} {a['prompt_ms']:9.1f} "
              f"{b['prompt_ms'] / max(a['prompt_ms'], 1e-9):6.1f}x")
        for t, (tb, ta) in enumerate(zip(b["turn_ms"], a["turn_ms"]), 1):
            print(f"  {'turn ' + str(t):18s} {tb:9.1f} {ta:9.1f} {tb / max(ta, 1e-9):6.1f}x")
        mb, ma = statistics.median(b["turn_ms"]), statistics.median(a["turn_ms"])
        print(f"  {'median turn':18s} {mb:9.1f} {ma:9.1f} {mb / max(ma, 1e-9):6.1f}x")
        print(f"  {'  of it: merge':18s} {b['merge_ms']:9.1f} {a['merge_ms']:9.1f} "
              f"{b['merge_ms'] / max(a['merge_ms'], 1e-9):6.1f}x  (observation render; the rest is cutting 6 crops, "
              "searches, the fake server)")
        if len(a["turn_ms"]) >= 9:
            print(f"  turn9/turn1 = {b['turn_ms'][8] / b['turn_ms'][0]:.2f} before, "
                  f"{a['turn_ms'][8] / a['turn_ms'][0]:.2f} after (6 new crops each turn)")

    family = "qwen2_5_vl"
    if not levels:
        return 0
    w, h = SOURCE[args.pixels]
    budget = "the released Qwen2.5-VL budget (56^2..28^2*16384 px)" if args.pixels == "real" else \
        "the tiny processor's own budget (28^2..28^2*16 px)"
    print(f"\nconcurrency ({family}, this tree, --pixels {args.pixels}: {budget}, a {w}x{h} input, 2 rounds x 6 crops "
          f"of {w // 3}x{h // 3}); one child process per level; all episodes' tasks created at once as verl does")
    print(f"  {'episodes':>8s} {'worker':>7s} {'ep/s':>7s} {'wall s':>7s} {'peak RSS MiB':>18s} "
          f"{'longest stall ms':>16s} {'while running':>13s} "
          f"{'start stall (CPU)':>17s} {'after start (CPU)':>17s} {'loop init ms':>12s} {'gen-2 GC ms':>14s} "
          f"{'longest GC ms':>13s}")
    for n in levels:
        for mode in {"all": ("gc_default", "gc_freeze", "paced"), "verl": ("gc_default",), "freeze": ("gc_freeze",),
                     "paced": ("paced",)}[args.rows]:
            r = _child(None, "--mode", mode, "--family", family, "--model-dir", dirs[family], *common,
                       "--concurrent", str(n))
            rss = f"{r['rss_peak_mib']:.0f} ({r['rss_warm_mib']:.0f})"
            start = f"{r['start_stall_ms']:.0f} ({r['start_cpu_ms']:.0f})"
            after = f"{r['after_start_ms']:.0f} ({r['after_start_cpu_ms']:.0f})"
            print(f"  {n:8d} {ROW_LABEL[mode]:>7s} {r['eps_per_s']:7.1f} {r['wall_s']:7.1f} "
                  f"{rss:>18s} {r['stall_ms']:16.0f} {r['running_stall_ms']:13.0f} {start:>17s} {after:>17s} "
                  f"{r['make_ms']:12.2f} "
                  f"{r['gc2_s'] * 1e3:8.0f} ({r['gc2_n']}) {r['gc_max_ms']:7.0f} (g{r['gc_max_gen']})", flush=True)
    print("  peak RSS: ru_maxrss of the level's child (in brackets: after setup and one warm-up episode); start stall:"
          " from creating the episodes' tasks until all of them ran their synchronous start (nothing else runs on "
          "the loop meanwhile); while running: the longest stall before the last episode ended; after start: "
          "longest lateness of a 5 ms timer set after that; (CPU): what the "
          "event-loop thread used of it, the rest it waited for the GIL (executor threads rendering, resizing, "
          "gen-2 GC) or for a core; loop init: median wall ms to build one agent loop (hydra), part of every task's "
          "synchronous start; gen-2 GC: total (passes); longest GC: the longest collection of any generation (g). "
          "worker: verl = verl's worker as is; freeze = + gc.freeze() after warm-up; paced = our worker and agent "
          f"loop (hyperseyes_verl.verl.paced_start): + {args.starts_per_turn} episode start(s) and "
          f"{args.steps_per_turn} episode step(s) per loop turn, full collections deferred while episodes are in "
          f"flight, {args.executor_threads or 'default'} executor threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
