"""`hyperseyes eval`: evaluate a served model (accuracy, rounds, width, tokens, CAS) and `hyperseyes eval report`.

    hyperseyes eval --endpoint http://127.0.0.1:8000/v1 --model my-ckpt --data imeb.parquet --index idx --out runs/a
    hyperseyes eval report --runs runs/a runs/b --out report/

`--endpoint scripted --model scripted-parallel` runs a scripted strategy (strategies.py) instead of a model,
on `hyperseyes synth` items only (their entity classes come from the classes.json next to the items file).

Before the run one one-token request checks the endpoint (down, no `/v1`, unknown model: one clear line, exit
2). A rerun into the same `--out` resumes and retries the items that failed on the endpoint; it is refused when
model, endpoint, data file or settings differ from the run already there (`--restart` starts afresh). The exit
status is 1 while items remain failed on endpoint errors (rerun to retry them).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from hyperseyes_verl.eval import report as report_cmd


# options that are fields of the configs an eval run builds (name, type, default, help from the field)
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens")
ENDPOINT_FIELDS = ("api_key_env", "timeout_s", "max_attempts")
ENDPOINT_FLAGS = {"timeout_s": "timeout"}
UGS_FIELDS = ("max_tool_rounds", "max_turns")
UGS_FLAGS = {"max_tool_rounds": "max-rounds"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hyperseyes_verl.episode.runner import SamplingParams
    from hyperseyes_verl.eval.evaluate import EvalConfig
    from hyperseyes_verl.ugs.types import UGSConfig
    from hyperseyes_verl.utils.cli import add_model_options
    from hyperseyes_verl.utils.openai_chat import EndpointConfig

    sub = p.add_subparsers(dest="eval_command")  # optional: plain `hyperseyes eval …` evaluates
    report_cmd.add_arguments(sub.add_parser("report", help="markdown/JSON report + Pareto plot over run folders"))
    g = p.add_argument_group("model")
    g.add_argument("--endpoint", help="OpenAI-compatible base URL (…/v1), or 'scripted' for a scripted strategy")
    # not required here: `hyperseyes eval report` needs none of them (run() says which are missing)
    add_model_options(g, EvalConfig, ["model", "name"], defaults={"model": None}, helps={
        "model": "model name served at --endpoint", "name": "display name of this run in reports (default: --model)"})
    add_model_options(g, EndpointConfig, ENDPOINT_FIELDS, flags=ENDPOINT_FLAGS,
                      helps={"timeout_s": "seconds per model request"})
    add_model_options(g, EvalConfig, ["wire"])
    add_model_options(g, SamplingParams, SAMPLING_FIELDS)
    d = p.add_argument_group("data")
    d.add_argument("--data", help="benchmark file (.parquet/.jsonl/.json) or folder holding one")
    d.add_argument("--format", help="force a shape: synth, rl, imeb, mmsearch, mmsearch_plus, fvqa, livevqa, "
                   "browsecomp_vl (default: detected from the columns)")
    d.add_argument("--columns", help="mapping for other layouts: question=COL,answer=COL,images=COL[,domain=…]")
    d.add_argument("--bench-name", help="benchmark name in ids and reports (default: from the format / file)")
    d.add_argument("--image-root", help="folder relative image paths resolve against (default: the file's folder)")
    d.add_argument("--limit", type=int, help="evaluate only the first N items")
    s = p.add_argument_group("search")
    s.add_argument("--index", help="embedded index folder (`hyperseyes index build`)")
    s.add_argument("--backend-config", help="YAML file with a search backend config (see search/config.py)")
    r = p.add_argument_group("run")
    r.add_argument("--out", help="run folder: results.jsonl (resumable), run.json, report.md, pareto.png")
    add_model_options(r, EvalConfig, ["concurrency"])
    add_model_options(r, UGSConfig, UGS_FIELDS, flags=UGS_FLAGS, defaults={"max_turns": None},
                      helps={"max_turns": "assistant turns per episode (default: max-rounds + 1)"})
    r.add_argument("--no-tool-schemas", action="store_true", help="with --wire chat_template: leave the tool "
                   "schemas out of the requests, for a checkpoint trained without them (the tiny CPU recipe, "
                   "`ugs.tool_schemas: false`)")
    r.add_argument("--max-new", type=int, help="stop after this many new items (rerun to continue)")
    r.add_argument("--restart", action="store_true", help="--out holds another run's results: move them aside "
                   "and start over (default: refuse)")
    r.add_argument("--no-preflight", action="store_true", help="skip the one-request endpoint check before the run")
    r.add_argument("--judge", choices=["rule", "llm"], default="rule", help="rule: offline; llm: needs --judge-endpoint")
    r.add_argument("--judge-endpoint", help="OpenAI-compatible base URL of the LLM judge")
    r.add_argument("--judge-model", default="judge")
    add_model_options(r, EvalConfig, ["keep_trajectories"])
    r.add_argument("--no-progress", action="store_true")


def _backend(args):
    from hyperseyes_verl.search.factory import build_backend

    if bool(args.index) == bool(args.backend_config):
        raise SystemExit("give exactly one of --index DIR (embedded index) or --backend-config FILE.yaml")
    if args.index:
        return build_backend({"type": "embedded", "index_dir": args.index})
    import yaml

    try:
        cfg = yaml.safe_load(Path(args.backend_config).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"cannot read --backend-config {args.backend_config!r}: {e}")
    return build_backend(cfg)


def build_config(args):
    from hyperseyes_verl.episode.runner import SamplingParams
    from hyperseyes_verl.eval.evaluate import EvalConfig
    from hyperseyes_verl.judge.judge import JudgeConfig
    from hyperseyes_verl.judge.llm import LLMJudgeConfig
    from hyperseyes_verl.ugs.types import UGSConfig
    from hyperseyes_verl.utils.cli import model_kwargs

    judge = JudgeConfig()
    if args.judge == "llm":
        if not args.judge_endpoint:
            raise SystemExit("--judge llm needs --judge-endpoint URL (and --judge-model)")
        judge = JudgeConfig(kind="llm", llm=LLMJudgeConfig(base_url=args.judge_endpoint, model=args.judge_model))
    ugs = UGSConfig(max_tool_rounds=args.max_rounds, max_turns=args.max_turns or args.max_rounds + 1,
                    tool_schemas=not args.no_tool_schemas)
    return EvalConfig(**model_kwargs(args, EvalConfig, ["model", "name", "concurrency", "keep_trajectories", "wire"]),
                      ugs=ugs, sampling=SamplingParams(**model_kwargs(args, SamplingParams, SAMPLING_FIELDS)),
                      judge=judge, progress=not args.no_progress)


def one_line(e: Exception) -> str:
    """A user error as one line: pydantic's multi-line report condensed to `field: what is wrong (got value)`."""
    from pydantic import ValidationError

    cause = e if isinstance(e, ValidationError) else (e.__cause__ or e.__context__)
    if not isinstance(cause, ValidationError):
        return str(e)
    fields = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r})"
                       for err in cause.errors())
    return fields if cause is e else f"{str(e).split(':', 1)[0]}: {fields}"  # keep the wrapper's "which config"


def _scripted_client(args, items):
    """The scripted strategies for `hyperseyes synth` items: model name and entity classes checked up front."""
    from hyperseyes_verl.data.gallery import DEMO_CLASSES, load_classes
    from hyperseyes_verl.eval.loaders import benchmark_file
    from hyperseyes_verl.eval.strategies import STRATEGIES, ScriptedClient, specs_from_items

    if args.model.removeprefix("scripted-") not in STRATEGIES:
        raise SystemExit(f"--endpoint scripted --model {args.model!r}: no such scripted strategy; use one of "
                         f"{', '.join('scripted-' + s for s in STRATEGIES)}")
    specs = specs_from_items(items)
    if not specs:
        raise SystemExit("--endpoint scripted runs only on `hyperseyes synth` items (items with a `program`)")
    path = benchmark_file(args.data).parent / "classes.json"
    classes = load_classes(path) if path.exists() else {c.name: c for c in DEMO_CLASSES}
    unknown = sorted({s.cls for s in specs.values()} - set(classes))
    if unknown:
        raise SystemExit(f"the scripted strategies read facts with the entity classes of {path} (written by "
                         f"`hyperseyes synth` next to items.jsonl), which " + ("is missing" if not path.exists() else
                         "lacks") + f" the classes {unknown}: evaluate the items.jsonl in the folder synth wrote")
    return ScriptedClient(specs, classes)


def fingerprint_extra(args) -> dict:
    """The run's inputs besides the model settings: a rerun with other ones must not reuse these results."""
    from hyperseyes_verl.eval.evaluate import file_sha256 as _sha256
    from hyperseyes_verl.eval.loaders import benchmark_file

    data = benchmark_file(args.data)
    search = (f"index {Path(args.index).resolve()}" if args.index
              else f"backend config sha256 {_sha256(Path(args.backend_config))}")
    return {"endpoint": args.endpoint.rstrip("/"), "data_sha256": _sha256(data),
            "data_shape": {"format": args.format, "columns": args.columns, "bench_name": args.bench_name,
                           "image_root": args.image_root}, "search": search}


async def _run_eval(args, items, backend, cfg, scripted) -> list:
    from hyperseyes_verl.utils.cli import model_kwargs
    from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient
    from hyperseyes_verl.utils.openai_preflight import preflight
    from hyperseyes_verl.eval.evaluate import check_resume, evaluate, run_fingerprint

    extra = fingerprint_extra(args)
    client = scripted or OpenAIChatClient(EndpointConfig(
        base_url=args.endpoint, **model_kwargs(args, EndpointConfig, ENDPOINT_FIELDS, flags=ENDPOINT_FLAGS)))
    try:
        if not args.restart:
            check_resume(args.out, run_fingerprint(cfg, extra))  # a refused resume sends nothing anywhere
        if args.endpoint != "scripted" and not args.no_preflight:
            await preflight(client, args.model, args.endpoint)
        return await evaluate(items, client, backend, args.out, cfg, max_new=args.max_new,
                              run_info={"endpoint": args.endpoint, "data": str(args.data)},
                              fingerprint_extra=extra, restart=args.restart)
    finally:
        await client.aclose()
        await backend.aclose()


def run(args: argparse.Namespace) -> int:
    if args.eval_command == "report":
        return report_cmd.run(args)
    from hyperseyes_verl.utils.openai_preflight import PreflightError
    from hyperseyes_verl.eval.evaluate import RunMismatch
    from hyperseyes_verl.eval.loaders import BenchmarkFormatError, load_benchmark
    from hyperseyes_verl.eval.report import comparison_notes, run_summary, write_report

    missing = [f"--{k}" for k in ("endpoint", "model", "data", "out") if not getattr(args, k)]
    if missing:
        raise SystemExit(f"hyperseyes eval needs {', '.join(missing)} (or use `hyperseyes eval report --runs …`)")
    try:
        items = load_benchmark(args.data, fmt=args.format, columns=args.columns, name=args.bench_name,
                               image_root=args.image_root, limit=args.limit)
    except (BenchmarkFormatError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        cfg = build_config(args)  # before the backend: a bad flag must not leave an opened index behind
        scripted = _scripted_client(args, items) if args.endpoint == "scripted" else None
        backend = _backend(args)
    except ValueError as e:  # a bad flag value or backend config (pydantic's errors are ValueErrors too)
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(_run_eval(args, items, backend, cfg, scripted))
    except (PreflightError, RunMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = run_summary(cfg.display_name, results, {"endpoint": args.endpoint, "data": str(args.data)})
    paths = write_report([summary], args.out, title=f"Evaluation of {cfg.display_name}",
                         notes=comparison_notes([summary]))
    o, f = summary["metrics"]["overall"], summary["metrics"]["failures"]
    print(f"{cfg.display_name}: {len(results)}/{len(items)} items  acc {100 * o.get('eval/acc', 0):.1f}%  "
          f"rounds {o.get('eval/mean_tool_rounds', 0):.2f}  width {o.get('eval/searches_per_round', 0):.2f}  "
          f"tokens {o.get('eval/mean_generated_tokens', 0):.0f}  CAS {o.get('eval/cas', 0):.2f}")
    print("failures: " + ", ".join(f"{k.removeprefix('failures/')}={v}" for k, v in f.items() if v))
    for k, v in paths.items():
        print(f"{k}: {v}")
    for note in comparison_notes([summary]):
        print(f"note: {note}")
    unfinished = sum(r.finish_reason == "endpoint_error" for r in results)
    if unfinished:
        print(f"{unfinished} of {len(results)} items ended on endpoint errors (scored wrong until retried): rerun "
              f"the same command to retry them", file=sys.stderr)
        return 1
    return 0
