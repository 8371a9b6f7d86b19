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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--items", required=True, help="items JSONL from `hyperseyes synth`")
    p.add_argument("--index", help="embedded search index folder (`hyperseyes index build`)")
    p.add_argument("--backend", help="search backend config as JSON (instead of --index), e.g. a composite")
    p.add_argument("--endpoint", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True, help="model name served at --endpoint")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--out", required=True, help="output folder (results.jsonl, trajectories/, summary.json)")
    p.add_argument("--max-rounds", type=int, default=4, help="budgets tried: 1..max-rounds tool rounds")
    p.add_argument("--concurrency", type=int, default=8, help="items in flight")
    p.add_argument("--limit", type=int, help="process at most N pending items, then stop")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=1524, help="per assistant turn")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per chat request")
    p.add_argument("--observation-format", choices=("hyperseyes", "official"), default="hyperseyes",
                   help="observation text of the trajectories, hence of the SFT rows; use the RL stage's "
                        "hyperseyes.agent_loop.ugs.observation_format (docs/OFFICIAL_PARITY.md)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from hyperseyes_verl.search.factory import build_backend

    from ..agent.openai_client import EndpointConfig, OpenAIChatClient
    from ..agent.runner import SamplingParams
    from ..ugs.types import UGSConfig
    from .prs import PRSConfig, run_prs
    from .synth import read_items

    from ..agent.preflight import PreflightError, preflight

    if bool(args.index) == bool(args.backend):
        raise SystemExit("give exactly one of --index DIR (embedded backend) or --backend JSON")
    try:
        backend_cfg = {"type": "embedded", "index_dir": args.index} if args.index else json.loads(args.backend)
        cfg = PRSConfig(model=args.model, max_rounds=args.max_rounds, concurrency=args.concurrency, limit=args.limit,
                        sampling=SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens),
                        ugs=UGSConfig(observation_format=args.observation_format))
        items = read_items(args.items)
    except (ValueError, OSError) as e:  # pydantic's ValidationError and JSON errors are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2

    async def main() -> dict:
        backend = build_backend(backend_cfg)
        try:
            async with OpenAIChatClient(EndpointConfig(base_url=args.endpoint, api_key_env=args.api_key_env,
                                                       timeout_s=args.timeout)) as client:
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
