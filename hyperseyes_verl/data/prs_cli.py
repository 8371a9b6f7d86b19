"""`hyperseyes prs`: Progressive Rejection Sampling of synthesized items against a served teacher.

    hyperseyes prs --items out/items.jsonl --index out/index --endpoint http://127.0.0.1:8000/v1 \
        --model Qwen3-VL-235B-A22B-Instruct --out prs/ --max-rounds 4 --concurrency 16

Rerunning the same command resumes: items already in prs/results.jsonl are skipped (endpoint failures
are retried). `--limit N` stops after N items (batches, smoke tests).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys


# options that are fields of the configs PRS builds (name, type, default, help from the field)
PRS_FIELDS = ("model", "max_rounds", "concurrency", "limit")
SAMPLING_FIELDS = ("temperature", "max_tokens")
ENDPOINT_FIELDS = ("api_key_env", "timeout_s")
ENDPOINT_FLAGS = {"timeout_s": "timeout"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..episode.runner import SamplingParams
    from ..ugs.types import UGSConfig
    from ..utils.cli import add_model_options
    from ..utils.openai_chat import EndpointConfig
    from .prs import PRSConfig

    p.add_argument("--items", required=True, help="items JSONL from `hyperseyes synth`")
    p.add_argument("--index", help="embedded search index folder (`hyperseyes index build`)")
    p.add_argument("--backend", help="search backend config as JSON (instead of --index), e.g. a composite")
    p.add_argument("--endpoint", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--out", required=True, help="output folder (results.jsonl, trajectories/, summary.json)")
    add_model_options(p, PRSConfig, PRS_FIELDS, helps={"model": "model name served at --endpoint (the teacher)"})
    add_model_options(p, SamplingParams, SAMPLING_FIELDS)
    add_model_options(p, EndpointConfig, ENDPOINT_FIELDS, flags=ENDPOINT_FLAGS,
                      helps={"timeout_s": "seconds per chat request"})
    add_model_options(p, UGSConfig, ["observation_format"], helps={
        "observation_format": "observation text of the trajectories, hence of the SFT rows; use the RL stage's "
                              "hyperseyes.agent_loop.ugs.observation_format (docs/OFFICIAL_PARITY.md)"})
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from hyperseyes_verl.search.factory import build_backend

    from ..utils.openai_chat import EndpointConfig, OpenAIChatClient
    from ..episode.runner import SamplingParams
    from ..ugs.types import UGSConfig
    from ..utils.cli import model_kwargs
    from .prs import PRSConfig, run_prs
    from .synth import read_items

    from ..utils.openai_preflight import PreflightError, preflight

    if bool(args.index) == bool(args.backend):
        raise SystemExit("give exactly one of --index DIR (embedded backend) or --backend JSON")
    try:
        backend_cfg = {"type": "embedded", "index_dir": args.index} if args.index else json.loads(args.backend)
        cfg = PRSConfig(**model_kwargs(args, PRSConfig, PRS_FIELDS),
                        sampling=SamplingParams(**model_kwargs(args, SamplingParams, SAMPLING_FIELDS)),
                        ugs=UGSConfig(observation_format=args.observation_format))
        endpoint = EndpointConfig(base_url=args.endpoint,
                                  **model_kwargs(args, EndpointConfig, ENDPOINT_FIELDS, flags=ENDPOINT_FLAGS))
        items = read_items(args.items)
    except (ValueError, OSError) as e:  # pydantic's ValidationError and JSON errors are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2

    async def main() -> dict:
        backend = build_backend(backend_cfg)
        try:
            async with OpenAIChatClient(endpoint) as client:
                await preflight(client, args.model, args.endpoint)  # a down teacher: one line, not N failures
                return await run_prs(items, backend, client, cfg, args.out, progress=not args.no_progress)
        finally:
            await backend.aclose()

    try:
        summary = asyncio.run(main())
    except (PreflightError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0
