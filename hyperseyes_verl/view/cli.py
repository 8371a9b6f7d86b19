"""`hyperseyes view RUN [RUN ...] [--out DIR]`: a static site of every episode the RUN paths hold.

    hyperseyes view outputs/demo                       # PRS + the four strategy runs, images from data/items.jsonl
    hyperseyes view runs/ckpt --data imeb.parquet      # an eval run (images from the benchmark file)
    hyperseyes view outputs/train-tiny --data rl.parquet --out /tmp/site   # verl rollout dumps + metrics JSONL

Open DIR/index.html in a browser; no server is needed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="eval run, PRS folder, rollout dump folder / file, metrics JSONL, or a folder holding them")
    p.add_argument("--out", help="site folder (default: RUN/view for one RUN folder)")
    p.add_argument("--data", help="benchmark / items / RL parquet file with the input images and gold answers "
                   "(default: run.json's data, or data/items.jsonl inside RUN)")
    p.add_argument("--title", default="HyperEyes trajectories")
    p.add_argument("--workers", type=int, help="page-building processes (default: CPU count)")


def run(args: argparse.Namespace) -> int:
    from .build import build_from_paths

    if args.out is None:
        first = Path(args.runs[0])
        if len(args.runs) != 1 or not first.is_dir():
            raise SystemExit("give --out DIR (the default RUN/view needs exactly one RUN folder)")
        args.out = str(first / "view")
    try:
        info = build_from_paths(args.runs, args.out, data=args.data, title=args.title, workers=args.workers)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{info['episodes']} episodes from {len(info['sources'])} sources in {info['seconds']:.1f} s "
          f"({info['workers']} workers)")
    for s in info["sources"]:
        print(f"  {s}")
    print(f"open {Path(info['index']).resolve()}")
    return 0
