"""RUN paths -> episodes and per-step rows -> site: what `hyperseyes view` does, callable from Python."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .items import ItemIndex
from .load_eval import load_eval_run
from .load_prs import load_prs
from .load_rollouts import load_rollouts
from .model import Episode
from .site import build_site
from .sources import Source, default_items_file, discover
from .steps import episode_step_rows, merge_step_rows, read_metrics


def load_sources(sources: Sequence[Source], items: ItemIndex | None) -> tuple[list[Episode], list[dict[str, Any]]]:
    episodes: list[Episode] = []
    metrics: list[dict[str, Any]] = []
    for s in sources:
        if s.kind == "eval":
            # the run's own benchmark file when it recorded one and none was given
            episodes += load_eval_run(s.path, s.name, items)
        elif s.kind == "prs":
            episodes += load_prs(s.path, s.name, items)
        elif s.kind == "rollouts":
            episodes += load_rollouts(s.path, s.name, items)
        elif s.kind == "metrics":
            metrics = merge_step_rows(metrics, read_metrics(s.path))
    return episodes, metrics


def step_tables(episodes: Sequence[Episode], metric_rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per-step rows per run that has steps (training and validation dumps stay apart); the logged metrics join
    the first run not named like a validation dump, or stand alone."""
    runs = list(dict.fromkeys(ep.run for ep in episodes if ep.step is not None))
    tables = {run: episode_step_rows([ep for ep in episodes if ep.run == run]) for run in runs}
    if metric_rows:
        train = next((r for r in runs if "val" not in r.lower()), None)
        if train is None:
            tables["logged metrics"] = metric_rows
        else:
            tables[train] = merge_step_rows(tables[train], metric_rows)
    return tables


def build_from_paths(runs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                     data: str | os.PathLike | None = None, title: str = "HyperEyes trajectories",
                     workers: int | None = None) -> dict[str, Any]:
    sources: list[Source] = []
    for r in runs:
        if not Path(r).exists():
            raise FileNotFoundError(f"{str(r)!r} does not exist")
        found = discover(r)
        if not found:
            raise ValueError(f"nothing to show in {str(r)!r}: expected an eval run or PRS folder (results.jsonl), "
                             "verl rollout dumps (<step>.jsonl from trainer.rollout_data_dir) or a metrics JSONL")
        sources += found
    data_file = data or next((f for r in runs if (f := default_items_file(r)) is not None), None)
    items = ItemIndex.from_file(data_file) if data_file else None
    episodes, metric_rows = load_sources(sources, items)
    info = build_site(episodes, out_dir, title=title, step_tables=step_tables(episodes, metric_rows),
                      sources=[f"{s.kind}: {s.path}" for s in sources], workers=workers)
    info["sources"] = [f"{s.kind}: {s.name}" for s in sources]
    return info
