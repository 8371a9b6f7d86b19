"""Per-step summary of a training run: reward, accuracy, rounds and width over steps.

Input is a list of `{"step": int, metric: value, ...}` dicts, from the rollouts themselves (`episode_step_rows`)
and from a metrics JSONL (`read_metrics`: verl's file logger writes `{"step": s, "data": {...}}`, flat
`{"step": s, ...}` lines are read too). The four series are taken from the rollouts when there are any (they
are what the pages show), else from the logged metrics under the names the trainer logs them.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from hyperseyes_verl.utils.jsonl import AppendOnlyJsonl

from .model import Episode

SERIES = ("reward", "accuracy", "rounds", "width")
# logged metric names that stand for a series when no rollouts are dumped (first found wins)
ALIASES = {
    "reward": ("critic/score/mean", "critic/rewards/mean", "trace/official_score_mean", "val-core/reward/mean"),
    "accuracy": ("trace/acc",),
    "rounds": ("trace/rounds_mean",),
    "width": ("trace/searches_per_round",),
}


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Numeric per-step values of a metrics JSONL; lines without a step are skipped."""
    rows = []
    for row in AppendOnlyJsonl(path).records():
        step = row.get("step")
        data = row["data"] if isinstance(row.get("data"), dict) else row
        if _finite(step) is None:
            continue
        values = {k: float(v) for k, v in data.items() if k != "step" and _finite(v) is not None}
        rows.append({"step": int(step), **values})
    return rows


def is_metrics_row(row: Any) -> bool:
    if not isinstance(row, dict) or _finite(row.get("step")) is None or "input" in row:
        return False
    data = row["data"] if isinstance(row.get("data"), dict) else row
    return any(_finite(v) is not None for k, v in data.items() if k != "step")


def episode_step_rows(episodes: Sequence[Episode]) -> list[dict[str, Any]]:
    """One row per step of the episodes that have one: mean reward, accuracy (judged ones), rounds, pooled width."""
    by_step: dict[int, list[Episode]] = defaultdict(list)
    for ep in episodes:
        if ep.step is not None:
            by_step[ep.step].append(ep)
    rows = []
    for step in sorted(by_step):
        eps = by_step[step]
        rewards = [e.reward for e in eps if e.reward is not None]
        judged = [e for e in eps if e.verdict in ("correct", "wrong", "no_answer")]
        rounds = sum(e.tool_rounds for e in eps)
        rows.append({"step": step, "episodes": len(eps),
                     "reward": sum(rewards) / len(rewards) if rewards else None,
                     "accuracy": sum(e.verdict == "correct" for e in judged) / len(judged) if judged else None,
                     "rounds": rounds / len(eps),
                     "width": sum(e.searches for e in eps) / rounds if rounds else 0.0})
    return rows


def merge_step_rows(*tables: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several tables joined on `step`; an earlier table's value wins."""
    merged: dict[int, dict[str, Any]] = {}
    for table in tables:
        for row in table:
            into = merged.setdefault(int(row["step"]), {"step": int(row["step"])})
            for k, v in row.items():
                if into.get(k) is None:
                    into[k] = v
    return [merged[s] for s in sorted(merged)]


def series(rows: Sequence[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) points of each summary series, filled from the aliases where the rollouts gave none."""
    out = {}
    for name in SERIES:
        pts = [(r["step"], float(r[name])) for r in rows if _finite(r.get(name)) is not None]
        if not pts:
            for alias in ALIASES[name]:
                pts = [(r["step"], float(r[alias])) for r in rows if _finite(r.get(alias)) is not None]
                if pts:
                    break
        out[name] = pts
    return out
