"""Trajectory viewer build time for a large run (goal: 10,000 episodes in under a minute on 2 cores).

    .venv/bin/python bench/bench_view.py [--items 5000] [--runs 2] [--workers N]

Synthetic but realistic: `--items` distinct 320x240 input images, `--runs` eval runs over all of them (so
10,000 episodes by default), each episode the same shape as a real one — two tool rounds, three crops and a
failed box, a crop of a crop, three text queries with hits, an answer — taken from one episode played in the
real search environment and replayed with each item's own question and image (its crops are re-cut from that
image, as for any eval run). Timed: `hyperseyes view` from reading results.jsonl to the last page written.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from view_scenario import TURN_1, TURN_2, TURN_ANSWER, backend  # noqa: E402

from hyperseyes_verl.episode.runner import content_text, user_content  # noqa: E402
from hyperseyes_verl.eval.results import ItemResult  # noqa: E402
from hyperseyes_verl.ugs.environment import SearchEnvironment  # noqa: E402
from hyperseyes_verl.ugs.schema import system_prompt  # noqa: E402
from hyperseyes_verl.view import build_from_paths  # noqa: E402


def mosaic(rng: random.Random) -> Image.Image:
    im = Image.new("RGB", (320, 240), tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = rng.randrange(280), rng.randrange(200)
        d.rectangle((x, y, x + rng.randint(20, 120), y + rng.randint(20, 100)), fill=tuple(rng.randrange(256) for _ in range(3)))
    return im


async def template(image: Image.Image) -> tuple[list[dict], dict]:
    """Text messages and stats of one real episode (eval's `--keep-trajectories` form)."""
    q = "Which spire is taller?"
    env = SearchEnvironment(backend(), q, [image])
    msgs = [{"role": "system", "content": system_prompt(env.config)},
            {"role": "user", "content": content_text(user_content(q, [image]))}]
    for text in (TURN_1, TURN_2, TURN_ANSWER):
        msgs.append({"role": "assistant", "content": text})
        step = await env.step(text)
        if step.done:
            break
        msgs.append({"role": "user", "content": step.observation.text})
    return msgs, env.stats.to_dict()


def write_runs(root: Path, n_items: int, n_runs: int) -> None:
    rng = random.Random(0)
    data = root / "data"
    (data / "img").mkdir(parents=True)
    items = []
    for i in range(n_items):
        path = data / "img" / f"{i}.png"
        mosaic(rng).save(path)
        items.append({"id": f"it-{i}", "index": i, "question": f"Which spire is taller? (item {i})",
                      "answers": ["Beta Spire"], "images": [str(path)], "entity_count": 2, "domain": "landmark"})
    (data / "items.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    msgs, st = asyncio.run(template(Image.open(data / "img" / "0.png").convert("RGB")))
    for r in range(n_runs):
        run = root / "runs" / f"run{r}"
        run.mkdir(parents=True)
        with open(run / "results.jsonl", "w") as f:
            for i, it in enumerate(items):
                traj = [dict(m) for m in msgs]
                traj[1]["content"] = traj[1]["content"].replace("Which spire is taller?", it["question"])
                acc = float(rng.random() < 0.6)
                f.write(ItemResult(id=f"demo/{it['id']}", benchmark="demo", question=it["question"],
                                   answers=it["answers"], prediction="Beta Spire" if acc else "Alpha Spire", acc=acc,
                                   judge_source="rule", answered=True, tool_rounds=st["tool_rounds"],
                                   tool_calls=st["tool_calls"], searches=st["searches"],
                                   searches_per_round=st["searches_per_round"], finish_reason="answer",
                                   tool_errors=st["errors"], trajectory=traj).model_dump_json() + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_view_"))
    try:
        write_runs(root, args.items, args.runs)
        t0 = time.perf_counter()
        info = build_from_paths([root], root / "site", workers=args.workers)
        total = time.perf_counter() - t0
        files = sum(len(f) for _, _, f in os.walk(root / "site"))
        size = sum(p.stat().st_size for p in (root / "site").rglob("*") if p.is_file()) / 2**20
        n = info["episodes"]
        print(f"{n:,} episodes ({args.items:,} distinct input images, {args.runs} runs) on {os.cpu_count()} cores, "
              f"{info['workers']} workers: {total:.1f} s in all (load {total - info['seconds']:.1f} s, pages and "
              f"thumbnails {info['seconds']:.1f} s) = {1000 * total / n:.2f} ms/episode; goal 60 s -> "
              f"{60 / total:.1f}x")
        print(f"site: {files:,} files, {size:.0f} MiB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
