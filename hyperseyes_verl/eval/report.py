"""Markdown + JSON report and Pareto plot over one or several evaluation runs.

A run is a directory with `results.jsonl` (and optionally `run.json`, the settings it ran with); the report
recomputes every number from the per-item records, so a report can be rebuilt from any (partial) run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from hyperseyes_verl.eval.metrics import full_metrics
from hyperseyes_verl.eval.plot import pareto_plot
from hyperseyes_verl.eval.results import ItemResult, load_run

RUN_INFO = "run.json"

_COLS = [("n", "n", "{:.0f}"), ("acc", "Acc %", "{:.1f}"), ("mean_tool_rounds", "rounds", "{:.2f}"),
         ("mean_tool_calls", "calls", "{:.2f}"), ("searches_per_round", "width", "{:.2f}"),
         ("multi_search_round_share", "multi-search rounds %", "{:.0f}"),
         ("empty_search_share", "searches with no hit %", "{:.0f}"),
         ("mean_generated_tokens", "gen tokens", "{:.0f}"), ("cas", "CAS", "{:.2f}")]
_PERCENT = {"acc", "multi_search_round_share", "empty_search_share"}


_ESTIMATED = {"mean_generated_tokens", "cas"}  # cells marked ≈ when tokens were estimated from characters


def _row(name: str, m: dict, prefix: str = "eval") -> str:
    cells = []
    approx = m.get(f"{prefix}/tokens_estimated_share", 0.0) > 0
    for key, _, fmt in _COLS:
        v = m.get(f"{prefix}/{key}", 0.0)
        cells.append(("≈" if approx and key in _ESTIMATED else "") + fmt.format(100 * v if key in _PERCENT else v))
    return f"| {name} | " + " | ".join(cells) + " |"


def comparison_notes(runs: Sequence[dict], item_ids: Sequence[set[str]] | None = None) -> list[str]:
    """What a reader must know before comparing the rows: estimated token counts, and runs over different items."""
    notes = []
    for r in runs:
        share = r["metrics"]["overall"].get("eval/tokens_estimated_share", 0.0)
        if share:
            notes.append(f"{r['name']}: gen tokens and CAS are estimated (≈) from characters for {100 * share:.0f}% "
                         "of the items: the endpoint returned no `usage`")
    counts = [r["metrics"]["overall"].get("eval/n", 0) for r in runs]
    differ = len(set(counts)) > 1 or (item_ids is not None and len({frozenset(s) for s in item_ids}) > 1)
    if len(runs) > 1 and differ:
        common = len(set.intersection(*map(set, item_ids))) if item_ids else None
        notes.append("the runs cover different items (" + ", ".join(f"{r['name']}: {n}" for r, n in zip(runs, counts))
                     + (f"; {common} in common" if common is not None else "") + "): their numbers are not directly "
                     "comparable; `hyperseyes eval report --common-only` compares them on the shared items")
    return notes


def _header(first: str) -> list[str]:
    return [f"| {first} | " + " | ".join(h for _, h, _ in _COLS) + " |", "|---" * (len(_COLS) + 1) + "|"]


def run_summary(name: str, results_R: Sequence[ItemResult], info: dict | None = None) -> dict:
    metrics = full_metrics(results_R)
    return {"name": name, "info": info or {}, "metrics": metrics}


def render_markdown(runs: Sequence[dict], title: str = "Evaluation report", notes: Sequence[str] = (),
                    plot_file: str | None = None) -> str:
    lines = [f"# {title}", ""]
    lines += [f"> {n}" for n in notes] + ([""] if notes else [])
    lines += ["Acc = judge accuracy over every item (failed episodes count as wrong); rounds = tool-call rounds; "
              "width = searches per tool round; CAS = Acc² · 100 / (k-tokens + 2 · rounds + 1).", ""]
    lines += _header("run") + [_row(r["name"], r["metrics"]["overall"]) for r in runs] + [""]
    if plot_file:
        lines += [f"![accuracy vs rounds]({plot_file})", ""]
    lines += ["## Failures (counted, not hidden)", ""]
    keys = sorted({k for r in runs for k in r["metrics"]["failures"]})
    lines += ["| run | " + " | ".join(k.removeprefix("failures/") for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {r['name']} | " + " | ".join(str(r["metrics"]["failures"].get(k, 0)) for k in keys) + " |"
              for r in runs]
    lines.append("")
    for group, label in (("benchmark", "benchmark"), ("domain", "domain"), ("entities", "entity count")):
        lines += [f"## By {label}", ""]
        lines += _header(f"run / {label}")
        for r in runs:
            for g, m in r["metrics"]["by"][group].items():
                lines.append(_row(f"{r['name']} / {g}", m))
        lines.append("")
    for r in runs:
        if r.get("info"):
            lines += [f"### Settings of {r['name']}", "", "```json", json.dumps(r["info"], indent=1, default=str),
                      "```", ""]
    return "\n".join(lines)


def write_report(runs: Sequence[dict], out_dir: str | os.PathLike, title: str = "Evaluation report",
                 notes: Sequence[str] = ()) -> dict[str, str]:
    """Write report.md, report.json and pareto.png into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = [{"name": r["name"], **{k.split("/", 1)[1]: v for k, v in r["metrics"]["overall"].items()}}
              for r in runs if r["metrics"]["overall"].get("eval/n", 0)]
    paths = {"markdown": str(out / "report.md"), "json": str(out / "report.json")}
    if points:
        paths["plot"] = pareto_plot(points, out / "pareto.png", title=title)
    (out / "report.json").write_text(json.dumps({"title": title, "notes": list(notes), "runs": list(runs)}, indent=1,
                                                default=str))
    (out / "report.md").write_text(render_markdown(runs, title, notes, "pareto.png" if points else None))
    return paths


def report_from_dirs(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                     names: Sequence[str] | None = None, title: str = "Evaluation report",
                     common_only: bool = False) -> dict[str, str]:
    """One report over several runs. Runs sharing a name (two runs of one model) are told apart by their folder;
    `common_only` restricts every run to the items all of them have."""
    infos, results = [], []
    for d in run_dirs:
        info_path = Path(d) / RUN_INFO
        infos.append(json.loads(info_path.read_text()) if info_path.exists() else {})
        results.append(load_run(d))
    labels = [(names[i] if names else None) or info.get("name") or Path(d).name
              for i, (d, info) in enumerate(zip(run_dirs, infos))]
    labels = [f"{n} ({d})" if labels.count(n) > 1 else n for n, d in zip(labels, run_dirs)]
    ids = [{r.id for r in res} for res in results]
    notes = []
    if common_only and len(results) > 1:
        shared = set.intersection(*ids)
        results = [[r for r in res if r.id in shared] for res in results]
        notes.append(f"restricted to the {len(shared)} items every run has (--common-only)")
        ids = [shared] * len(results)
    runs = [run_summary(name, res, info) for name, res, info in zip(labels, results, infos)]
    return write_report(runs, out_dir, title=title, notes=notes + comparison_notes(runs, ids))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", required=True, help="run directories written by `hyperseyes eval --out`")
    p.add_argument("--names", nargs="*", help="display names, one per run (default: run.json name or folder name)")
    p.add_argument("--out", required=True, help="folder for report.md, report.json, pareto.png")
    p.add_argument("--title", default="Evaluation report")
    p.add_argument("--common-only", action="store_true", help="compare the runs on the items they all have")


def run(args: argparse.Namespace) -> int:
    if args.names and len(args.names) != len(args.runs):
        raise SystemExit(f"--names has {len(args.names)} entries for {len(args.runs)} --runs; give one per run")
    try:
        paths = report_from_dirs(args.runs, args.out, args.names, args.title, args.common_only)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(Path(paths["markdown"]).read_text().split("\n## ")[0])
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0
