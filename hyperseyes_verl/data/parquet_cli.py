"""`hyperseyes to-parquet`: verl datasets from synthesized items, PRS results, or a benchmark parquet.

    hyperseyes to-parquet rl --items out/items.jsonl --prs prs/ --out data/rl_train.parquet \
        --val-out data/rl_val.parquet --val-frac 0.05
    hyperseyes to-parquet sft --prs prs/ --out data/sft.parquet
    hyperseyes to-parquet convert --input mmsearch.parquet --out data/mmsearch.parquet \
        --question-col query --image-col image --answer-col gt_answer --data-source mmsearch
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


CONVERT_FIELDS = ("question_col", "image_col", "answer_col", "split")  # ConvertConfig fields (type, default)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..ugs.types import UGSConfig
    from ..utils.cli import add_model_options
    from .convert import ConvertConfig

    p.add_argument("kind", choices=("rl", "sft", "convert"), help="what to write")
    p.add_argument("--out", required=True, help="output parquet (rl: the train split)")
    p.add_argument("--items", help="rl: items JSONL from `hyperseyes synth`")
    p.add_argument("--prs", help="rl: PRS folder for references (optional); sft: PRS folder (required)")
    p.add_argument("--only-solved", action="store_true", help="rl: keep only items PRS solved")
    p.add_argument("--val-out", help="rl: write the val split here (with --val-frac)")
    p.add_argument("--val-frac", type=float, default=0.0, help="rl: fraction of items for val (hash of id)")
    p.add_argument("--no-system-prompt", action="store_true",
                   help="rl: user turn only (when the agent loop adds its own system prompt)")
    p.add_argument("--no-tool-schemas", action="store_true",
                   help="sft: no tools column, for an RL recipe with `ugs.tool_schemas: false` (the tiny CPU one)")
    # the RL environment's budgets, which the rows' system prompt and the SFT rows' budget hints state
    p.add_argument("--max-rounds", type=int, default=UGSConfig().max_tool_rounds,
                   help="the RL recipe's tool rounds (ugs.max_tool_rounds; default: %(default)s)")
    p.add_argument("--max-turns", type=int, default=None,
                   help="the RL recipe's assistant turns (ugs.max_turns; default: max-rounds + 1)")
    p.add_argument("--data-source", default=None, help="data_source column (default hyperseyes/synth | benchmark)")
    p.add_argument("--input", help="convert: benchmark parquet")
    add_model_options(p, ConvertConfig, CONVERT_FIELDS, helps={
        "question_col": "convert: column with the question text",
        "image_col": "convert: image column ('' for text-only)",
        "answer_col": "convert: column with the answer (str or list of accepted strings)",
        "split": "convert: split of every row"})


def _prs_results(folder: str, items: list | None = None) -> dict:
    """PRS results of `folder`; an error (not silence) when it holds none, or none for these items."""
    from .prs import read_results

    path = Path(folder) / "results.jsonl"
    if not path.is_file():
        raise ValueError(f"--prs {folder!r} has no results.jsonl: pass the --out folder of `hyperseyes prs`")
    results = read_results(path)
    if items is not None and not any(i["id"] in results for i in items):
        raise ValueError(f"none of the {len(items)} items has a PRS result in {str(path)!r} ({len(results)} results "
                         f"there): was PRS run on these items? Every TRACE reference would be missing")
    return results


def run(args: argparse.Namespace) -> int:
    try:  # bad inputs (missing files, columns, unsolved PRS folders) end in one line, never a traceback
        return _run(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ..ugs.schema import system_prompt
    from ..ugs.types import UGSConfig
    from .parquet import DEFAULT_SOURCE, rl_rows, sft_rows, write_parquet

    env = UGSConfig(max_tool_rounds=args.max_rounds, max_turns=args.max_turns or args.max_rounds + 1,
                    tool_schemas=not args.no_tool_schemas)
    source = args.data_source or (DEFAULT_SOURCE if args.kind != "convert" else "benchmark")
    counts: dict[str, int] = {}
    if args.kind == "rl":
        from .synth import read_items

        if not args.items:
            raise SystemExit("to-parquet rl needs --items (items JSONL from `hyperseyes synth`)")
        if bool(args.val_out) != (args.val_frac > 0):
            raise SystemExit(f"--val-out and --val-frac > 0 go together (got --val-out {args.val_out!r}, --val-frac "
                             f"{args.val_frac}): without --val-out the val rows would be dropped")
        items = read_items(args.items)
        results = _prs_results(args.prs, items) if args.prs else {}
        rows = rl_rows(items, results, data_source=source, val_frac=args.val_frac, only_solved=args.only_solved,
                       system=None if args.no_system_prompt else system_prompt(env))
        train = [r for r in rows if r["extra_info"]["split"] == "train"]
        val = [r for r in rows if r["extra_info"]["split"] == "val"]
        write_parquet(train, args.out)
        counts["train"] = len(train)
        if args.val_out:
            write_parquet(val, args.val_out)
            counts["val"] = len(val)
        counts["with_reference"] = sum(r["extra_info"]["ref_rounds"] >= 0 for r in rows)
    elif args.kind == "sft":
        if not args.prs:
            raise SystemExit("to-parquet sft needs --prs (the folder `hyperseyes prs` wrote)")
        rows = sft_rows(_prs_results(args.prs), args.prs, source, env=env)
        write_parquet(rows, args.out)
        counts["conversations"] = len(rows)
    else:
        from ..utils.cli import model_kwargs
        from .convert import ConvertConfig, convert_benchmark

        if not args.input:
            raise SystemExit("to-parquet convert needs --input (a benchmark parquet)")
        fields = {**model_kwargs(args, ConvertConfig, CONVERT_FIELDS), "image_col": args.image_col or None}
        cfg = ConvertConfig(**fields, data_source=source)
        rows = convert_benchmark(args.input, cfg)
        write_parquet(rows, args.out)
        counts["rows"] = len(rows)
    print(json.dumps({"kind": args.kind, "out": args.out, **counts}))
    return 0
