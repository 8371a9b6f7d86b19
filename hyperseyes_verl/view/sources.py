"""What a RUN path holds: eval runs, PRS folders, verl rollout dumps, metrics JSONL — found by their content.

`hyperseyes view outputs/demo` finds the demo's PRS folder and its four strategy runs (and `data/items.jsonl`
for their images); a training folder yields its rollout dump folder(s) and its metrics file. Folders are
searched a few levels deep; a folder that holds a built site is skipped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .load_rollouts import STEP_FILE_RE, first_row, is_rollout_row
from .steps import is_metrics_row

MAX_DEPTH = 4
ITEMS_FILES = ("data/items.jsonl", "items.jsonl")  # a demo / synth folder's benchmark items


@dataclass(frozen=True)
class Source:
    kind: str  # eval | prs | rollouts | metrics
    path: Path
    name: str


def _kind_of_results(path: Path) -> str | None:
    row = first_row(path)
    if not row:
        return None
    if "status" in row and "attempts" in row:
        return "prs"
    if "benchmark" in row and "id" in row:
        return "eval"
    return None


def discover(root: str | os.PathLike) -> list[Source]:
    root = Path(root)
    if root.is_file():
        row = first_row(root)
        if root.name == "results.jsonl" and (kind := _kind_of_results(root)):
            return [Source(kind, root.parent, root.parent.name)]
        if is_rollout_row(row):
            return [Source("rollouts", root, root.stem)]
        if is_metrics_row(row):
            return [Source("metrics", root, root.stem)]
        return []
    found: list[Source] = []
    for d, dirs, files in os.walk(root):
        here = Path(d)
        depth = len(here.relative_to(root).parts)
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and depth < MAX_DEPTH
                         and not (here / x / "data" / "episodes.js").exists())
        name = str(here.relative_to(root)) if here != root else root.resolve().name
        if "results.jsonl" in files and (kind := _kind_of_results(here / "results.jsonl")):
            found.append(Source(kind, here, name))
        steps = [f for f in files if STEP_FILE_RE.match(f)]
        if steps and is_rollout_row(first_row(here / steps[0])):
            found.append(Source("rollouts", here, name))
        for f in sorted(files):
            if f.endswith(".jsonl") and f != "results.jsonl" and f not in steps:
                row = first_row(here / f)
                file_name = f if here == root else f"{name}/{f}"
                if is_metrics_row(row):
                    found.append(Source("metrics", here / f, file_name))
                elif is_rollout_row(row):
                    found.append(Source("rollouts", here / f, file_name))
    return found


def default_items_file(root: str | os.PathLike) -> Path | None:
    root = Path(root)
    if root.is_file():
        return None
    return next((root / f for f in ITEMS_FILES if (root / f).exists()), None)
