"""Accuracy-vs-rounds Pareto plot: one point per run, the non-dominated runs joined by the frontier."""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402


def pareto_front(points_P: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points (rounds, acc) not dominated by another (fewer-or-equal rounds and higher-or-equal acc,
    one strictly), ordered by rounds."""
    front = []
    for i, (r_i, a_i) in enumerate(points_P):
        dominated = any((r_j <= r_i and a_j >= a_i) and (r_j < r_i or a_j > a_i)
                        for j, (r_j, a_j) in enumerate(points_P) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points_P[i][0], -points_P[i][1]))


def pareto_plot(runs: Sequence[dict], path: str | os.PathLike, title: str = "Accuracy vs tool rounds") -> str:
    """`runs`: dicts with `name`, `acc` (0..1), `mean_tool_rounds`, `searches_per_round`, `cas`. Writes a PNG."""
    if not runs:
        raise ValueError("pareto_plot needs at least one run")
    pts = [(float(r["mean_tool_rounds"]), 100.0 * float(r["acc"])) for r in runs]
    fig, ax = plt.subplots(figsize=(7.0, 4.8), dpi=120)
    front = pareto_front(pts)
    if len(front) > 1:
        # Staircase: from each non-dominated run, accuracy holds until a run with more rounds and higher accuracy begins.
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="0.55", lw=1.2,
                drawstyle="steps-post", zorder=1, label="Pareto front")
    cmap = plt.get_cmap("tab10")
    for k, (r, (x, y)) in enumerate(zip(runs, pts)):
        width = float(r.get("searches_per_round", 0.0))
        ax.scatter([x], [y], s=60 + 40 * min(width, 8.0), color=cmap(k % 10), edgecolor="black", lw=0.6, zorder=3,
                   label=f"{r['name']}  (CAS {float(r.get('cas', 0.0)):.2f}, width {width:.1f})")
    xspan = max(1.0, max(p[0] for p in pts))
    placed: list[tuple[float, float, int]] = []
    for k in sorted(range(len(runs)), key=lambda i: pts[i]):
        x, y = pts[k]
        # Labels of nearby points alternate above / below so they do not print over each other.
        near = [dy for (px, py, dy) in placed if abs(px - x) < 0.25 * xspan and abs(py - y) < 8]
        dy = 6 if not near or near[-1] < 0 else -14
        placed.append((x, y, dy))
        ax.annotate(runs[k]["name"], (x, y), textcoords="offset points", xytext=(7, dy), fontsize=8)
    ax.set_xlim(-0.3, xspan * 1.25 + 0.3)
    ax.set_ylim(-3, 105)
    ax.set_xlabel("mean tool-call rounds per question (lower is cheaper)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title + "\n(up and left is better; marker size = searches per round)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)
