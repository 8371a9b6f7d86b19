"""Progressive Rejection Sampling (HyperEyes §5; unreleased upstream, this is our implementation).

For each item a strong model tries with a budget of 1 tool round, then 2, ... `max_rounds`
(`UGSConfig.max_tool_rounds = b`, `max_turns = b + 1`); the first correct trajectory — the shortest
budget that suffices — is kept. Its tool rounds and searches become the prompt's TRACE reference
(`ref_rounds`, `ref_searches`) and the trajectory becomes a stage-1 SFT example.

Outputs in `out_dir`: `results.jsonl` (append-only, one line per finished item; a rerun skips items
already there, so an interrupted run resumes), `trajectories/<id>/img_k.png` (the images of kept
trajectories), `summary.json` (accounting: solved by budget, never solved, endpoint failures).
Items whose attempts hit an endpoint failure are recorded as `endpoint_failure` and retried on the
next run; unsolved items are final.
"""
from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from hyperseyes_verl.judge import RuleJudge
from hyperseyes_verl.search.base import SearchBackend
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.parser import parse_turn
from hyperseyes_verl.ugs.types import UGSConfig
from hyperseyes_verl.utils.images import open_image
from hyperseyes_verl.utils.jsonl import AppendOnlyJsonl

from ..episode.runner import SamplingParams, run_episode

Judge = Callable[[str | None, list[str]], bool]
_RULE_JUDGE = RuleJudge()  # stateless: one for every call


def is_correct(prediction: str | None, answers: list[str]) -> bool:
    """The rule judge (`hyperseyes_verl.judge.RuleJudge`) on a final answer or a raw reply."""
    if prediction is not None and "<answer>" in prediction:
        prediction = parse_turn(prediction).answer
    return _RULE_JUDGE.judge(prediction, list(answers)).correct


class PRSConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="model name at the endpoint (the teacher)")
    max_rounds: int = Field(4, ge=1, le=16, description="largest tool-round budget tried (budgets 1..max_rounds)")
    concurrency: int = Field(8, ge=1, description="items in flight at once")
    sampling: SamplingParams = Field(SamplingParams(), description="teacher sampling (greedy by default)")
    ugs: UGSConfig = Field(UGSConfig(), description="environment caps; tool rounds / turns set per budget")
    limit: int | None = Field(None, ge=0, description="process at most this many pending items, then stop")


def budget_config(base: UGSConfig, budget: int) -> UGSConfig:
    return base.model_copy(update={"max_tool_rounds": budget, "max_turns": budget + 1})


def read_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """id -> latest result line. A torn last line (crash mid-write) is skipped: that item runs again."""
    return {row["id"]: row for row in AppendOnlyJsonl(path).records() if "id" in row}


async def sample_item(item: dict[str, Any], backend: SearchBackend, client, cfg: PRSConfig,
                      out_dir: Path, judge: Judge = is_correct) -> dict[str, Any]:
    """Budgets 1..max_rounds until one is correct. Returns the result line (images saved to disk)."""
    images = [open_image(p) for p in item.get("images", [])]
    attempts = []
    for budget in range(1, cfg.max_rounds + 1):
        env = SearchEnvironment(backend, item["question"], images, budget_config(cfg.ugs, budget))
        rec = await run_episode(client, cfg.model, env, item["question"], images, cfg.sampling)
        correct = rec.finish_reason != "endpoint_error" and judge(rec.answer, item["answers"])
        attempts.append({"budget": budget, "answer": rec.answer, "correct": correct, "tool_rounds": rec.tool_rounds,
                         "searches": rec.searches, "finish_reason": rec.finish_reason,
                         "generated_tokens": rec.generated_tokens, "endpoint_errors": rec.endpoint_errors})
        if rec.finish_reason == "endpoint_error":
            return {"id": item["id"], "status": "endpoint_failure", "attempts": attempts}
        if correct:
            folder = out_dir / "trajectories" / item["id"]
            names = await asyncio.to_thread(rec.save_images, folder)  # PNG files: seconds of CPU, off the loop
            return {"id": item["id"], "status": "solved", "budget": budget, "ref_rounds": rec.tool_rounds,
                    "ref_searches": rec.searches, "attempts": attempts, "trajectory": rec.to_dict(),
                    "trajectory_images": [str(Path("trajectories") / item["id"] / n) for n in names]}
    return {"id": item["id"], "status": "unsolved", "attempts": attempts}


def summarize(items: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    done = [results[i["id"]] for i in items if i["id"] in results]
    solved = [r for r in done if r["status"] == "solved"]
    status = Counter(r["status"] for r in done)
    n_attempts = sum(len(r["attempts"]) for r in done)

    def mean(key: str) -> float | None:
        return round(sum(r[key] for r in solved) / len(solved), 3) if solved else None

    return {
        "prs/items": len(items), "prs/finished": len(done), "prs/pending": len(items) - len(done) + status["endpoint_failure"],
        "prs/solved": status["solved"], "prs/unsolved": status["unsolved"],
        "prs/endpoint_failures": status["endpoint_failure"],
        "prs/solve_rate": (round(status["solved"] / (status["solved"] + status["unsolved"]), 4)
                           if status["solved"] + status["unsolved"] else None),  # endpoint failures excluded
        "prs/solved_by_budget": {str(k): v for k, v in sorted(Counter(r["budget"] for r in solved).items())},
        "prs/mean_ref_rounds": mean("ref_rounds"), "prs/mean_ref_searches": mean("ref_searches"),
        "prs/attempts": n_attempts,
        "prs/generated_tokens": sum(a["generated_tokens"] for r in done for a in r["attempts"]),
        "prs/endpoint_errors_by_kind": dict(Counter(e["kind"] for r in done for a in r["attempts"]
                                                    for e in a["endpoint_errors"])),
    }


async def run_prs(items: list[dict[str, Any]], backend: SearchBackend, client, cfg: PRSConfig,
                  out_dir: str | Path, judge: Judge = is_correct, progress: bool = True) -> dict[str, Any]:
    """Sample every pending item (resuming from `out_dir/results.jsonl`); write and return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    results_log = AppendOnlyJsonl(results_path)
    results = read_results(results_path)
    ids = [i["id"] for i in items]
    if len(set(ids)) != len(ids):
        dup = [k for k, v in Counter(ids).items() if v > 1][:5]
        raise ValueError(f"duplicate item ids {dup}: PRS resumes by id, so ids must be unique")
    pending = [i for i in items if results.get(i["id"], {}).get("status") not in ("solved", "unsolved")]
    if cfg.limit is not None:
        pending = pending[: cfg.limit]
    sem = asyncio.Semaphore(cfg.concurrency)
    bar = tqdm(total=len(pending), desc="PRS", unit="item", disable=not progress)
    n_solved = sum(r["status"] == "solved" for r in results.values())

    async def one(item: dict[str, Any]) -> None:
        nonlocal n_solved
        async with sem:
            row = await sample_item(item, backend, client, cfg, out, judge)
        # No await from here on: the event loop runs this bookkeeping for one item at a time.
        results_log.append(row)  # one fsynced line; a torn previous line is isolated by the log
        results[row["id"]] = row
        n_solved += row["status"] == "solved"  # a pending item was never solved before
        bar.update(1)
        bar.set_postfix(solved=n_solved)

    try:
        await asyncio.gather(*(one(i) for i in pending))
    finally:
        bar.close()
    summary = summarize(items, results)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
