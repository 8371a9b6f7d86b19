"""`hyperseyes env-demo`: one scripted episode of the search environment, offline.

Turn 1 searches the four tiles of a generated 2x2 mosaic in one image_search (four crops) and runs a
text_search with two queries alongside - six searches in parallel; turn 2 checks three facts at once;
turn 3 answers. Each round's statistics are printed as a table, then the episode's.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Callable

from PIL import Image, ImageDraw, ImageStat

from hyperseyes_verl.search.base import Hit, InMemoryBackend, SearchBackend
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.types import EpisodeStats, RoundStats, UGSConfig

# The mosaic's entities: tile colour -> (name, fact). A reverse image search of a tile "recognises" its colour.
ENTITIES: dict[tuple[int, int, int], tuple[str, str]] = {
    (200, 40, 40): ("Red Kite", "A bird of prey of Europe; wingspan 175-195 cm."),
    (40, 160, 60): ("Green Woodpecker", "A woodpecker of Europe; wingspan 40-42 cm."),
    (40, 70, 200): ("Blue Jay", "A passerine bird of North America; wingspan 34-43 cm."),
    (230, 200, 40): ("Yellow Warbler", "A New World warbler; wingspan 16-22 cm."),
}
QUESTION = "Which of the four birds in the mosaic has the largest wingspan?"


def make_mosaic(tile: int = 160) -> Image.Image:
    """A 2x2 mosaic, one coloured tile (with a white disc, so crops are not flat) per entity."""
    mosaic = Image.new("RGB", (2 * tile, 2 * tile), "white")
    draw = ImageDraw.Draw(mosaic)
    for i, colour in enumerate(ENTITIES):
        x, y = (i % 2) * tile, (i // 2) * tile
        draw.rectangle([x + 4, y + 4, x + tile - 5, y + tile - 5], fill=colour)
        draw.ellipse([x + tile // 3, y + tile // 3, x + 2 * tile // 3, y + 2 * tile // 3], fill="white")
    return mosaic


def recognise(image: Image.Image) -> list[Hit]:
    """Nearest entity colour to the crop's median colour (the demo's stand-in for reverse image search)."""
    median = ImageStat.Stat(image.convert("RGB")).median
    colour = min(ENTITIES, key=lambda c: sum((a - b) ** 2 for a, b in zip(c, median)))
    name, fact = ENTITIES[colour]
    return [Hit(title=name, snippet=fact, url=f"https://example.org/{name.replace(' ', '_')}", score=0.9)]


def demo_backend(latency_s: float = 0.2) -> InMemoryBackend:
    text = {name.split()[-1].lower(): [Hit(name, fact, f"https://example.org/{name.replace(' ', '_')}", 0.8)]
            for name, fact in ENTITIES.values()}
    text["wingspan"] = [Hit("Wingspan", "The distance from one wingtip to the other.", "https://example.org/Wingspan")]
    return InMemoryBackend(text=text, image_fn=recognise, latency_s=latency_s)


def _call(name: str, **arguments) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


SCRIPT = [
    "<reason>Four birds; identify all tiles at once and look up what a wingspan is meanwhile.</reason>"
    + _call("image_search", image_id="img_0",
            area=[[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]])
    + _call("text_search", input=["wingspan definition", "largest bird wingspan"]),
    "<reason>Tiles are a kite, a woodpecker, a jay and a warbler; check the wingspans together.</reason>"
    + _call("text_search", input=["red kite wingspan", "green woodpecker wingspan", "blue jay wingspan"]),
    "<reason>The red kite's 175-195 cm is the largest.</reason><answer>Red Kite</answer>",
]

_COLUMNS = ["round", "calls", "queries", "crops_ok", "crops_failed", "searches", "failures", "errors",
            "rounds_left", "wall_s"]


def format_round_table(rounds: list[RoundStats]) -> str:
    rows = [[str(r.round_index), str(r.tool_calls), str(r.text_queries), str(r.crops_ok), str(r.crops_failed),
             str(r.searches), str(r.search_failures), str(sum(r.errors.values())), str(r.rounds_left),
             f"{r.wall_s:.3f}"] for r in rounds]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(_COLUMNS)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(_COLUMNS, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


async def run_episode(backend: SearchBackend | None = None, latency_s: float = 0.2, config: UGSConfig = UGSConfig(),
                      show: Callable[[str], None] = print, observations: bool = False) -> EpisodeStats:
    backend = backend if backend is not None else demo_backend(latency_s)
    env = SearchEnvironment(backend, QUESTION, [make_mosaic()], config)
    rounds: list[RoundStats] = []
    for turn in SCRIPT:
        result = await env.step(turn)
        if result.round is not None:
            rounds.append(result.round)
        if observations and result.observation is not None:
            show(result.observation.text + "\n")
        if result.done:
            break
    show(format_round_table(rounds))
    show("episode: " + json.dumps(env.stats.to_dict()))
    return env.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latency", type=float, default=0.2, help="seconds of injected latency per search")
    parser.add_argument("--observations", action="store_true", help="also print each observation's text")


def run(args: argparse.Namespace) -> int:
    if args.latency < 0:
        raise SystemExit(f"--latency must be >= 0 seconds, got {args.latency}")
    t0 = time.perf_counter()
    stats = asyncio.run(run_episode(latency_s=args.latency, observations=args.observations))
    print(f"total {time.perf_counter() - t0:.2f} s for {stats.searches} searches in {stats.tool_rounds} rounds")
    return 0 if stats.answered else 1
