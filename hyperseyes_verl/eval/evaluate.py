"""Evaluate a model on benchmark items: the training environment, prompts and budgets, any chat endpoint.

Each item is one `run_episode` (hyperseyes_verl.episode.runner) in a fresh `SearchEnvironment`, judged by
hyperseyes_verl.judge, and appended to `results.jsonl` the moment it finishes; a rerun skips the ids already
there, so an interrupted evaluation resumes where it stopped; items that ended on endpoint failures or errors
are run again. The run's fingerprint (model, endpoint, data file hash, search, environment, decoding, judge) is
kept in run.json: a rerun with a different one is refused (`restart=True` starts afresh), so one model's answers
are never reported as another's. At most `concurrency` episodes run at once.
Nothing an item does can stop the run: endpoint failures end that episode (counted), an unreadable image or
an unexpected error becomes that item's `error` (counted, scored wrong).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from hyperseyes_verl.episode.runner import EpisodeRecord, SamplingParams, content_text, run_episode
from hyperseyes_verl.eval.loaders import EvalItem
from hyperseyes_verl.eval.report import RUN_INFO
from hyperseyes_verl.eval.results import ItemResult, ResultsFile
from hyperseyes_verl.judge.judge import Judge, JudgeConfig
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.types import UGSConfig

log = logging.getLogger(__name__)


class EvalConfig(BaseModel):
    """One evaluation run. Defaults = the training environment's official budgets, greedy decoding."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="model name sent to the endpoint (or the scripted strategy's name)")
    name: str | None = Field(None, description="display name of the run in reports (default: model)")
    concurrency: int = Field(4, ge=1, description="episodes in flight at once")
    ugs: UGSConfig = Field(default_factory=UGSConfig, description="environment budgets, same as training")
    sampling: SamplingParams = Field(default_factory=SamplingParams, description="per-turn decoding")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="rule judge offline; llm with a fallback")
    keep_trajectories: bool = Field(False, description="store each episode's text messages in results.jsonl")
    wire: Literal["openai", "chat_template"] = Field(
        "openai", description="openai: observations as user turns; chat_template: tool messages + tool schemas for "
        "a server that renders the model's chat template (hyperseyes serve-model), i.e. the RL stage's text")
    progress: bool = Field(True, description="tqdm progress bar on stderr")

    @property
    def display_name(self) -> str:
        return self.name or self.model


def item_result(item: EvalItem, rec: EpisodeRecord, verdict, keep_trajectory: bool) -> ItemResult:
    """Fold an episode and its verdict into the per-item record (CONTRACTS §3 counts)."""
    st = rec.stats
    error = None
    if rec.finish_reason == "endpoint_error":
        last = rec.endpoint_errors[-1] if rec.endpoint_errors else {}
        error = f"endpoint {last.get('kind', '?')}: {str(last.get('message', ''))[:200]}"
    return ItemResult(
        id=item.id, benchmark=item.benchmark, domain=item.domain, entity_count=item.entity_count,
        question=item.question, answers=item.answers, prediction=rec.answer, acc=verdict.acc,
        judge_source="none" if verdict.source == "no_answer" else verdict.source,
        answered=bool(st.get("answered", rec.answer is not None)), tool_rounds=int(st.get("tool_rounds", 0)),
        tool_calls=int(st.get("tool_calls", 0)), searches=int(st.get("searches", 0)),
        searches_per_round=[int(w) for w in st.get("searches_per_round", [])],
        searches_empty=int(st.get("searches_empty", 0)),
        generated_tokens=rec.generated_tokens, tokens_estimated=rec.tokens_estimated,
        finish_reason=rec.finish_reason,
        budget_exhausted=bool(st.get("budget_exhausted", False)), truncated=rec.truncated,
        search_failures=int(st.get("search_failures", 0)), tool_errors={k: int(v) for k, v in st.get("errors", {}).items()},
        endpoint_errors=len(rec.endpoint_errors), error=error, wall_s=rec.wall_s,
        trajectory=([{"role": m["role"], "content": content_text(m["content"])} for m in rec.messages]
                    if keep_trajectory else None))


def failed_item(item: EvalItem, error: str, wall_s: float = 0.0) -> ItemResult:
    return ItemResult(id=item.id, benchmark=item.benchmark, domain=item.domain, entity_count=item.entity_count,
                      question=item.question, answers=item.answers, finish_reason="error", error=error[:500],
                      wall_s=wall_s)


async def evaluate_one(item: EvalItem, client, backend, judge: Judge, cfg: EvalConfig) -> ItemResult:
    t0 = time.perf_counter()
    try:
        images = item.load_images()
    except Exception as e:  # noqa: BLE001 - a bad image is this item's failure, not the run's
        return failed_item(item, f"unreadable image: {type(e).__name__}: {e}")
    try:
        env = SearchEnvironment(backend, item.question, images, cfg.ugs)
        rec = await run_episode(client, cfg.model, env, item.question, images, cfg.sampling, wire=cfg.wire)
        verdict = await judge.judge(rec.answer, item.answers, item.question)
    except Exception as e:  # noqa: BLE001 - counted and scored wrong; the other items go on
        log.exception("item %s failed", item.id)
        return failed_item(item, f"{type(e).__name__}: {e}", time.perf_counter() - t0)
    return item_result(item, rec, verdict, cfg.keep_trajectories)


class RunMismatch(ValueError):
    """`out_dir` holds results of a run with another fingerprint; resuming would mix two runs."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_fingerprint(cfg: EvalConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What decides an item's result: model, environment, decoding, judge, plus the caller's `extra` (endpoint,
    data file hash, search backend). Display name, concurrency and progress are left out: they change nothing."""
    return {"model": cfg.model, "ugs": cfg.ugs.model_dump(mode="json"),
            "sampling": cfg.sampling.model_dump(mode="json"), "judge": cfg.judge.model_dump(mode="json"),
            "wire": cfg.wire,
            **(extra or {})}


def check_resume(out_dir: str | Path, fingerprint: dict[str, Any], restart: bool = False) -> str | None:
    """Refuse to resume `out_dir` when its results come from a run with another fingerprint; with `restart`, move
    them aside instead (returns where to). A folder without results is always fine."""
    store = ResultsFile(out_dir)
    if not store.path.exists() or not store.path.stat().st_size:
        return None
    info_path = Path(out_dir) / RUN_INFO
    old = json.loads(info_path.read_text()).get("fingerprint") if info_path.exists() else None
    if old == fingerprint:
        return None
    if restart:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = store.path.with_name(f"results.replaced-{stamp}.jsonl")
        store.path.rename(aside)
        return str(aside)
    if old is None:
        why = f"{info_path} has no fingerprint (written by an older version or by hand)"
    else:
        diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        why = "; ".join(f"{k}: was {json.dumps(old.get(k))[:120]}, now {json.dumps(fingerprint.get(k))[:120]}"
                        for k in diff)
    raise RunMismatch(f"{store.path} holds {len(store.load())} results of another run ({why}). Resuming would "
                      f"report them as this run's: pass another --out, or --restart to move them aside and start over")


def write_run_info(out_dir: str | Path, cfg: EvalConfig, extra: dict[str, Any] | None = None,
                   fingerprint: dict[str, Any] | None = None) -> None:
    info = {"name": cfg.display_name, "model": cfg.model, "config": cfg.model_dump(mode="json"), **(extra or {}),
            "fingerprint": fingerprint if fingerprint is not None else run_fingerprint(cfg)}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / RUN_INFO).write_text(json.dumps(info, indent=1, default=str))


async def evaluate(items: Sequence[EvalItem], client, backend, out_dir: str | Path, cfg: EvalConfig, *,
                   max_new: int | None = None, run_info: dict[str, Any] | None = None,
                   fingerprint_extra: dict[str, Any] | None = None, restart: bool = False) -> list[ItemResult]:
    """Run every item without a final result in `out_dir/results.jsonl`; return all records of the run.

    `max_new` stops after that many new items (a deliberate interruption; rerun to finish). Raises `RunMismatch`
    when `out_dir` holds another run's results (see `check_resume`).
    """
    fingerprint = run_fingerprint(cfg, fingerprint_extra)
    aside = check_resume(out_dir, fingerprint, restart)
    if aside:
        log.warning("previous results of %s moved to %s", out_dir, aside)
    store = ResultsFile(out_dir)
    done = store.done_ids()
    todo = [it for it in items if it.id not in done]
    if max_new is not None:
        todo = todo[:max_new]
    write_run_info(out_dir, cfg, run_info, fingerprint)
    judge = Judge(cfg.judge)
    sem = asyncio.Semaphore(cfg.concurrency)
    bar = tqdm(total=len(items), initial=sum(it.id in done for it in items), desc=cfg.display_name, unit="item", disable=not cfg.progress,
               dynamic_ncols=True)

    async def one(item: EvalItem) -> None:
        async with sem:
            res = await evaluate_one(item, client, backend, judge, cfg)
        store.append(res)  # whole line per item: a kill loses at most the episodes in flight
        bar.update(1)
        bar.set_postfix(acc=f"{res.acc:.0f}", rounds=res.tool_rounds)

    try:
        await asyncio.gather(*(one(it) for it in todo))
    finally:
        bar.close()
        await judge.aclose()
    wanted = {it.id for it in items}
    return [r for r in store.load() if r.id in wanted]
