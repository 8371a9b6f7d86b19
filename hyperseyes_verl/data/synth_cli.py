"""`hyperseyes synth`: gallery + mosaics + questions + search corpus, in one folder.

Output (`--out DIR`): items.jsonl, mosaics/*.png, and the gallery files that `hyperseyes index build`
reads: corpus.jsonl, images/ + images.jsonl (plus entities.jsonl, classes.json, synth_summary.json).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path


# options that are SynthConfig fields (name, type, default, help from the field)
SYNTH_FIELDS = ("n_visual", "n_textual", "seed", "min_entities", "max_entities", "layout")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..utils.cli import add_model_options
    from ..utils.openai_chat import EndpointConfig
    from .synth import SynthConfig

    p.add_argument("--out", required=True, help="output folder")
    add_model_options(p, SynthConfig, SYNTH_FIELDS)
    p.add_argument("--per-class", type=int, default=12, help="demo gallery: entities per class")
    p.add_argument("--gallery", help="your own image folder (with --facts); default: the embedded demo gallery")
    p.add_argument("--facts", help="facts JSONL for --gallery (format: hyperseyes_verl/data/gallery.py)")
    p.add_argument("--schema", help="with --facts: JSON/YAML saying per class which facts are quantities (summed), "
                   "numbers (compared only), categories or text; without it numbers are never summed")
    p.add_argument("--endpoint", help="OpenAI-compatible base URL for LLM rewriting and the needs-search filter")
    p.add_argument("--model", help="model name at --endpoint")
    add_model_options(p, EndpointConfig, ["api_key_env"])
    p.add_argument("--no-rewrite", action="store_true", help="with --endpoint: only filter, keep templates")
    p.add_argument("--no-filter", action="store_true", help="with --endpoint: only rewrite, keep every item")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ..utils.cli import model_kwargs
    from .gallery import build_demo_gallery, load_user_gallery, write_gallery
    from .synth import SynthConfig, rewrite_and_filter, synthesize, write_items

    if bool(args.gallery) != bool(args.facts):
        raise SystemExit("--gallery and --facts go together: an image folder and its facts JSONL")
    if args.schema and not args.facts:
        raise SystemExit("--schema describes the facts of --facts: pass --gallery DIR --facts FILE with it")
    if args.endpoint and not args.model:
        raise SystemExit("--endpoint needs --model (the model name served there)")
    out = Path(args.out)
    try:  # everything here fails on the user's files or numbers: one line, never a traceback
        cfg = SynthConfig(**model_kwargs(args, SynthConfig, SYNTH_FIELDS))
        out.mkdir(parents=True, exist_ok=True)
        gallery = (load_user_gallery(args.gallery, args.facts, args.schema) if args.gallery
                   else build_demo_gallery(out, per_class=args.per_class, seed=args.seed))
        write_gallery(gallery, out)
        items = synthesize(gallery, out, cfg)
    except ValidationError as e:
        first = e.errors()[0]
        print(f"error: --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.gallery and not args.schema:
        print("note: no --schema: numeric facts are compared but never summed; declare the ones that add up "
              "(heights, populations) as `quantity` in a schema (format: hyperseyes_verl/data/gallery.py)",
              file=sys.stderr)
    counts: dict[str, int] = {}
    if args.endpoint:
        from ..utils.openai_chat import EndpointConfig, OpenAIChatClient

        async def llm_pass():
            async with OpenAIChatClient(EndpointConfig(base_url=args.endpoint, api_key_env=args.api_key_env)) as c:
                return await rewrite_and_filter(items, out, c, args.model, rewrite=not args.no_rewrite,
                                                filter_no_search=not args.no_filter)

        items, counts = asyncio.run(llm_pass())
    write_items(items, out / "items.jsonl")
    summary = {"items": len(items), "by_kind": Counter(i["kind"] for i in items),
               "by_domain": Counter(i["domain"] for i in items),
               "by_op": Counter(i["program"]["op"] for i in items),
               "entities_per_mosaic": Counter(i["entity_count"] for i in items if i["kind"] == "visual"),
               "gallery_entities": len(gallery.entities), **counts}
    (out / "synth_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    print(f"next: hyperseyes index build --corpus {out}/corpus.jsonl --images {out} "
          f"--images-meta {out}/images.jsonl --out {out}/index")
    return 0
