"""10,000 randomly mutated turns through `parse_turn` and `SearchEnvironment.step` (in-memory backend, no latency).

Prints the number of exceptions (must be 0), how many turns parsed to calls / answers / errors, and the
throughput of each stage measured in the same run.

    python bench/bench_parser_fuzz.py [--n 10000] [--seed 0]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import traceback
from collections import Counter

from PIL import Image

from hyperseyes_verl.search.base import Hit, InMemoryBackend
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.parser import parse_turn
from hyperseyes_verl.ugs.types import UGSConfig

FRAGMENTS = ["<tool_call>", "</tool_call>", "<answer>", "</answer>", "<reason>", "</reason>", "<think>", "</think>",
             "{", "}", "[", "]", '"', "'", ",", ":", "\\", "|", "```json", "```", "null", "NaN", "-Infinity", "1e999",
             "True", '"name": ', '"arguments": ', '"image_search"', '"text_search"', '"img_0"', '"img_3"', "\n", " "]


def valid_turn(rng: random.Random) -> str:
    parts = [f"<reason>step {rng.randint(0, 99)}</reason>"]
    if rng.random() < 0.15:
        return parts[0] + "<answer>Red Kite</answer>"
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.5:
            boxes = []
            for _ in range(rng.randint(0, 4)):
                x1, y1 = rng.uniform(-0.2, 0.9), rng.uniform(-0.2, 0.9)
                boxes.append([round(x1, 3), round(y1, 3), round(x1 + rng.uniform(-0.1, 0.6), 3),
                              round(y1 + rng.uniform(-0.1, 0.6), 3)])
            args = {"image_id": f"img_{rng.choice([0, 0, 1, 5])}", "area": boxes}
            call = {"name": "image_search", "arguments": args}
        else:
            call = {"name": "text_search", "arguments": {"input": [f"kite query {i}" for i in range(rng.randint(1, 5))]}}
        body = json.dumps(call)
        if rng.random() < 0.2:
            body = json.dumps({"name": call["name"], "arguments": json.dumps(call["arguments"])})
        parts.append(f"<tool_call>{body}</tool_call>")
    return "\n".join(parts)


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(0, 3)):
        i = rng.randint(0, len(text))
        j = min(len(text), i + rng.randint(0, 12))
        op = rng.randrange(5)
        if op == 0:
            text = text[:i] + text[j:]  # delete a span
        elif op == 1:
            text = text[:i] + rng.choice(FRAGMENTS) + text[i:]  # insert a fragment
        elif op == 2:
            text = text[:j] + text[i:j] + text[j:]  # duplicate a span
        elif op == 3:
            text = text[:i]  # cut off, as a length limit does
        else:
            text = text[:i] + "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(1, 4))) + text[i:]
    return text


def make_turns(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    turns = []
    for _ in range(n):
        if rng.random() < 0.25:
            turns.append("".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 40))))
        else:
            turns.append(mutate(valid_turn(rng), rng))
    return turns


async def run_env(turns: list[str], image: Image.Image) -> tuple[int, float, Counter]:
    backend = InMemoryBackend(text={"kite": [Hit("Red Kite", "A bird of prey.", "https://k", 0.9)]})
    config = UGSConfig(max_tool_rounds=2, max_turns=3)
    exceptions, finishes = 0, Counter()
    t0 = time.perf_counter()
    for text in turns:
        env = SearchEnvironment(backend, "Which bird?", [image], config)
        try:
            result = await env.step(text)
            finishes[result.finish_reason] += 1
        except Exception:
            exceptions += 1
            if exceptions <= 3:
                traceback.print_exc()
    return exceptions, time.perf_counter() - t0, finishes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    turns = make_turns(a.n, a.seed)

    parse_exceptions, shapes = 0, Counter()
    t0 = time.perf_counter()
    for text in turns:
        try:
            turn = parse_turn(text)
        except Exception:
            parse_exceptions += 1
            continue
        shapes["with calls"] += bool(turn.calls)
        shapes["with answer"] += turn.answer is not None
        shapes["with errors"] += bool(turn.errors)
        shapes.update(f"error:{e.kind}" for e in turn.errors)
    parse_s = time.perf_counter() - t0

    env_exceptions, env_s, finishes = asyncio.run(run_env(turns, Image.new("RGB", (640, 480), (30, 90, 160))))
    print(f"turns: {len(turns)} (seed {a.seed})")
    print(f"parse_turn: exceptions {parse_exceptions}, {len(turns) / parse_s:,.0f} turns/s")
    print(f"env.step:   exceptions {env_exceptions}, {len(turns) / env_s:,.0f} turns/s "
          f"(parse share {parse_s / env_s:.0%} of step time)")
    print("parsed: " + ", ".join(f"{k} {v}" for k, v in sorted(shapes.items())))
    print("finish: " + ", ".join(f"{k} {v}" for k, v in sorted(finishes.items())))
    raise SystemExit(1 if parse_exceptions or env_exceptions else 0)


if __name__ == "__main__":
    main()
