"""`hyperseyes demo` (what `make demo` runs): the whole product on embedded defaults, offline, on CPU.

1. gallery + search corpus + synthetic multi-entity questions (`hyperseyes synth`), embedded index
2. Progressive Rejection Sampling with a scripted teacher -> per-prompt references + RL parquet
3. every question run in the real search environment by four scripted strategies (or a served model)
4. TRACE scores of each question's group of rollouts, official and paper mode, over two "epochs" whose
   references go through the reference store. They start from the serial strategy's correct trajectories (what
   a cold-start policy that searches one entity per round would set); epoch 1 observes the parallel strategy's
   shorter correct rollouts and its end tightens them; epoch 2 scores the same rollouts against the tighter bar
5. evaluation report (accuracy, rounds, width, tokens, CAS per benchmark / domain / entity count) + Pareto plot

Without `--endpoint` the "policies" are the scripted strategies of strategies.py: real tool calls against the
real index, but a script, not a trained model — the output says so.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.data.mosaic import Layout
from hyperseyes_verl.utils.cli import add_model_options, model_kwargs


class DemoConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    out: str = Field(description="output folder")
    per_class: int = Field(8, ge=2, description="gallery entities per class")
    n_visual: int = Field(24, ge=1, description="visual multi-entity questions")
    n_textual: int = Field(6, ge=0, description="textual multi-constraint questions")
    min_entities: int = Field(2, ge=2, le=9, description="entities per mosaic, at least")
    max_entities: int = Field(6, ge=2, le=9, description="entities per mosaic, at most")
    layout: Layout | None = Field(None, description="every mosaic in this layout; default: drawn per mosaic")
    seed: int = Field(0, description="seed of the gallery, the questions and their layouts")
    prs_max_rounds: int = Field(3, ge=1, description="PRS budgets tried: 1..this")
    concurrency: int = Field(4, ge=1, description="PRS items / evaluation episodes in flight")
    endpoint: str | None = Field(None, description="policy endpoint to evaluate (OpenAI-compatible); None = scripted")
    model: str | None = Field(None, description="model name served at `endpoint`")
    progress: bool = Field(True, description="tqdm progress bars on stderr")


def _say(msg: str) -> None:
    print(msg, flush=True)


def build_data(cfg: DemoConfig) -> tuple[Path, Path]:
    from hyperseyes_verl.data.gallery import build_demo_gallery, write_gallery
    from hyperseyes_verl.data.synth import SynthConfig, synthesize, write_items
    from hyperseyes_verl.search.embedded import build_index

    data, index = Path(cfg.out) / "data", Path(cfg.out) / "index"
    gallery = build_demo_gallery(data, per_class=cfg.per_class, seed=cfg.seed)
    write_gallery(gallery, data)
    items = synthesize(gallery, data, SynthConfig(n_visual=cfg.n_visual, n_textual=cfg.n_textual, seed=cfg.seed,
                                                  min_entities=cfg.min_entities, layout=cfg.layout,
                                                  max_entities=min(cfg.max_entities, cfg.per_class)))
    write_items(items, data / "items.jsonl")
    build_index(index, corpus=data / "corpus.jsonl", images_dir=data, images_meta=data / "images.jsonl",
                progress=False)
    return data / "items.jsonl", index


def cold_start_refs(results: list) -> dict[str, tuple[int, int]]:
    """(rounds, searches) of each correct tool-using rollout: the references a cold-start policy would set."""
    return {r.id: (r.tool_rounds, r.searches) for r in results if r.acc > 0.5 and r.tool_rounds > 0}


def _ref_stats(refs: dict[str, Any], keys: list[str]) -> dict[str, float | None]:
    got = [refs[k] for k in keys if refs.get(k) is not None and refs[k].rounds >= 0]
    return {"rounds": round(sum(r.rounds for r in got) / len(got), 3) if got else None,
            "searches": round(sum(r.searches for r in got) / len(got), 3) if got else None}


def trace_epochs(results_by_run: dict[str, list], init_refs: dict[str, tuple[int, int]],
                 epochs: int = 2) -> dict[str, Any]:
    """Score each question's group (one rollout per run) with TRACE in both modes over `epochs` epochs.

    References start at `init_refs` and go through the real reference store: every rollout is recorded, and
    each epoch end tightens a prompt's reference to its shortest correct rollout of that epoch when shorter.
    The rollouts are replayed unchanged each epoch (a scripted policy does not learn), so the epoch after a
    tightening scores the same behaviour against the stricter bar.
    """
    from hyperseyes_verl.trace.official import score_groups
    from hyperseyes_verl.trace.paper import PaperTraceConfig, paper_score
    from hyperseyes_verl.trace.store import ReferenceStore, StoreConfig

    store = ReferenceStore(StoreConfig(use_ray=False))
    paper_cfg = PaperTraceConfig()
    runs = list(results_by_run)
    by_id = {run: {r.id: r for r in rs} for run, rs in results_by_run.items()}
    ids = sorted(set.intersection(*(set(v) for v in by_id.values())))
    for qid in ids:
        store.reference(qid, *init_refs.get(qid, (-1, -1)))
    out: dict[str, Any] = {"epochs": []}
    for epoch in range(1, epochs + 1):
        start = {q: store.peek(q) for q in ids}
        # one flat batch, one group per question (one rollout per run), as the trainer sees it
        rows = [(qid, run, by_id[run][qid]) for qid in ids for run in runs]
        refs = [store.record(qid, -1, -1, g.acc > 0.5, g.tool_rounds, g.searches) for qid, _, g in rows]
        group = [g for _, _, g in rows]
        scores = score_groups([qid for qid, _, _ in rows], acc=[g.acc for g in group],
                              answered=[g.answered for g in group], tool_rounds=[g.tool_rounds for g in group],
                              searches=[g.searches for g in group], ref_rounds=[i.rounds for i in refs],
                              ref_searches=[i.searches for i in refs])
        official = {run: [] for run in runs}
        paper = {run: [] for run in runs}
        for (_, run, g), sc, info in zip(rows, scores, refs):
            official[run].append(sc.score)
            paper[run].append(paper_score(paper_cfg, g.acc > 0.5, g.answered, g.tool_rounds, info.rounds,
                                          paper_cfg.lam).score)
        end = store.end_epoch()
        after = {q: store.peek(q) for q in ids}
        had = [q for q in ids if start[q].rounds >= 0]
        out["epochs"].append({
            "epoch": epoch,
            "official_mean": {run: sum(v) / len(v) for run, v in official.items() if v},
            "paper_mean": {run: sum(v) / len(v) for run, v in paper.items() if v},
            "prompts": len(ids),
            "prompts_with_reference": len(had),
            "refs_tightened_at_epoch_end": int(end["trace/refs_tightened"]),
            "refs_gained_at_epoch_end": sum(start[q].rounds < 0 <= after[q].rounds for q in ids),
            # before/after over the same prompts (those with a reference at the epoch start)
            "mean_reference_before": _ref_stats(start, had),
            "mean_reference_after": _ref_stats(after, had),
            "references_after": {q: [after[q].rounds, after[q].searches] for q in ids if after[q].rounds >= 0},
        })
    return out


async def run_scripted(items: list, backend, runs_dir: Path, *, client=None, restart: bool = True,
                       fingerprint_extra: dict[str, Any] | None = None, **eval_config: Any) -> dict[str, list]:
    """Every scripted strategy on `items` (runs_dir/<strategy>), keyed "scripted-<strategy>". `client`: a
    ScriptedClient over these items (built when None); `eval_config`: further EvalConfig fields."""
    from hyperseyes_verl.eval.evaluate import EvalConfig, evaluate
    from hyperseyes_verl.eval.strategies import STRATEGIES, ScriptedClient, specs_from_items

    client = client or ScriptedClient(specs_from_items(items))
    by_run = {}
    for strategy in STRATEGIES:
        cfg = EvalConfig(model=f"scripted-{strategy}", keep_trajectories=True, **eval_config)
        by_run[f"scripted-{strategy}"] = await evaluate(items, client, backend, runs_dir / strategy, cfg,
                                                        run_info={"scripted": True}, restart=restart,
                                                        fingerprint_extra=fingerprint_extra)
    return by_run


async def _run_all(cfg: DemoConfig, items_path: Path, index: Path) -> dict[str, Any]:
    from hyperseyes_verl.data.parquet import rl_rows, write_parquet
    from hyperseyes_verl.data.prs import PRSConfig, read_results, run_prs
    from hyperseyes_verl.data.synth import read_items
    from hyperseyes_verl.eval.evaluate import EvalConfig, evaluate, file_sha256
    from hyperseyes_verl.eval.loaders import load_benchmark
    from hyperseyes_verl.eval.strategies import STRATEGIES, ScriptedClient, specs_from_items
    from hyperseyes_verl.search.factory import build_backend

    out = Path(cfg.out)
    items = load_benchmark(items_path, name="demo")
    backend = build_backend({"type": "embedded", "index_dir": str(index)})
    scripted = ScriptedClient(specs_from_items(items))
    info: dict[str, Any] = {}
    try:
        _say("[2/5] Progressive Rejection Sampling (budgets 1..%d) with the scripted *parallel* strategy as the "
             "teacher (a script, not a model)" % cfg.prs_max_rounds)
        raw_items = read_items(items_path)
        prs = await run_prs(raw_items, backend, scripted, PRSConfig(model="scripted-parallel",
                            max_rounds=cfg.prs_max_rounds, concurrency=cfg.concurrency), out / "prs",
                            progress=cfg.progress)
        results = read_results(out / "prs" / "results.jsonl")
        # keyed like the evaluation items (`demo/<id>`); the PRS folder keeps the synth ids, so
        # `hyperseyes to-parquet rl --items data/items.jsonl --prs prs` works on it as on a real run
        refs = {f"demo/{k}": (v["ref_rounds"], v["ref_searches"]) for k, v in results.items()
                if v["status"] == "solved"}
        rows = rl_rows(raw_items, results, data_source="hyperseyes_demo")
        write_parquet(rows, out / "data" / "rl.parquet")
        info["prs"] = prs
        _say(f"      solved {prs['prs/solved']}/{prs['prs/items']} (by budget {prs['prs/solved_by_budget']}), "
             f"mean reference {prs['prs/mean_ref_rounds']} rounds / {prs['prs/mean_ref_searches']} searches; "
             f"RL parquet with references: {out / 'data' / 'rl.parquet'}")

        # A demo rerun into the same folder with other settings regenerates the items under the same ids: its
        # runs start afresh instead of resuming another data set's results.
        fresh = {"fingerprint_extra": {"data_sha256": file_sha256(items_path)}, "restart": True}
        _say("[3/5] Every question in the search environment: " + (
            f"model {cfg.model} at {cfg.endpoint}, and " if cfg.endpoint else "") + "scripted strategies "
             + ", ".join(STRATEGIES))
        by_run = await run_scripted(items, backend, out / "runs", client=scripted, concurrency=cfg.concurrency,
                                    progress=cfg.progress, **fresh)
        if cfg.endpoint:
            from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient

            async with OpenAIChatClient(EndpointConfig(base_url=cfg.endpoint)) as client:
                ecfg = EvalConfig(model=cfg.model, concurrency=cfg.concurrency, keep_trajectories=True,
                                  progress=cfg.progress)
                by_run[cfg.model] = await evaluate(items, client, backend, out / "runs" / "model", ecfg,
                                                   run_info={"endpoint": cfg.endpoint},
                                                   fingerprint_extra={**fresh["fingerprint_extra"],
                                                                      "endpoint": cfg.endpoint}, restart=True)
        info["by_run"] = by_run
        info["refs"] = refs
        return info
    finally:
        await backend.aclose()


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    from hyperseyes_verl.eval.report import render_markdown, run_summary, write_report
    from hyperseyes_verl.eval.strategies import NOTICE

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _say(f"[1/5] Gallery, synthetic questions and embedded index under {out}")
    items_path, index = build_data(cfg)
    info = asyncio.run(_run_all(cfg, items_path, index))
    by_run = info["by_run"]

    scripted = {k: v for k, v in by_run.items() if k.startswith("scripted-")}
    cold = cold_start_refs(by_run["scripted-serial"])
    _say("[4/5] TRACE over two epochs through the reference store. References start from the scripted *serial* "
         f"strategy's correct trajectories ({len(cold)} prompts), standing in for a cold-start policy that searches "
         "one entity per round; each epoch's group per question = one rollout per scripted strategy, replayed "
         "unchanged (scripts do not learn), so epoch 2 scores the same rollouts against the tightened references")
    trace = trace_epochs(scripted, cold)
    prs_refs = info["refs"]
    final = trace["epochs"][-1]["references_after"]
    trace["matches_prs_reference"] = sum(tuple(final.get(q, ())) == tuple(r) for q, r in prs_refs.items())
    (out / "trace.json").write_text(json.dumps(trace, indent=1))
    for e in trace["epochs"]:
        b, a = e["mean_reference_before"], e["mean_reference_after"]
        _say(f"      epoch {e['epoch']}: {e['prompts_with_reference']}/{e['prompts']} prompts with a reference; "
             f"at its end {e['refs_tightened_at_epoch_end']} tightened ({e['refs_gained_at_epoch_end']} of them "
             f"had none); mean reference of the referenced prompts {b['rounds']} -> {a['rounds']} rounds, "
             f"{b['searches']} -> {a['searches']} searches (rounds first, searches break ties)")
        _say("        official: " + ", ".join(f"{k} {v:+.3f}" for k, v in e["official_mean"].items()))
        _say("        paper (charges every round by default, so references do not move it): " + ", ".join(f"{k} {v:+.3f}" for k, v in e["paper_mean"].items()))
    _say(f"      after tightening, {trace['matches_prs_reference']}/{len(prs_refs)} references equal the one PRS "
         "recorded (its shortest correct trajectory): RL tightening reaches what PRS measured up front")

    _say("[5/5] Report and Pareto plot")
    notes = [] if cfg.endpoint is None else [f"Model {cfg.model} served at {cfg.endpoint} next to the scripted runs."]
    notes += [NOTICE, "PRS teacher: the scripted parallel strategy (a script, not a model). TRACE references "
              "start from the scripted serial strategy's correct trajectories and are tightened by the reference "
              f"store: epoch 1 tightened {trace['epochs'][0]['refs_tightened_at_epoch_end']}, see trace.json."]
    runs = [run_summary(name, rs, {"scripted": name.startswith("scripted-")}) for name, rs in by_run.items()]
    paths = write_report(runs, out / "report", title="HyperEyes demo: accuracy vs cost", notes=notes)
    table = render_markdown(runs, "Summary").split("\n## ")[0]
    _say("")
    _say(NOTICE)
    _say(table)
    _say(f"report: {paths['markdown']}\nplot:   {paths.get('plot')}\ntrace:  {out / 'trace.json'}\n"
         f"done in {time.perf_counter() - t0:.0f} s")
    return {"paths": paths, "trace": trace, "runs": runs, "prs": info["prs"]}


# DemoConfig fields that are options (type, default, help from the field); --no-progress is `progress`
DEMO_FIELDS = ("out", "per_class", "n_visual", "n_textual", "seed", "endpoint", "model", "concurrency")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p, DemoConfig, DEMO_FIELDS, defaults={"out": "outputs/demo"})
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if bool(args.endpoint) != bool(args.model):
        raise SystemExit("--endpoint and --model go together (the model served at that endpoint)")
    if args.endpoint:  # one request now, not a demo that ends with a 0 % model row after a minute
        from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient
        from hyperseyes_verl.utils.openai_preflight import PreflightError, preflight

        async def check() -> None:
            async with OpenAIChatClient(EndpointConfig(base_url=args.endpoint, max_attempts=2)) as client:
                await preflight(client, args.model, args.endpoint)

        try:
            asyncio.run(check())
        except PreflightError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    run_demo(DemoConfig(**model_kwargs(args, DemoConfig, DEMO_FIELDS), progress=not args.no_progress))
    return 0
