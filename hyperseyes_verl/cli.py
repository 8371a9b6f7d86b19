"""`hyperseyes` command line. Each subcommand lives in its own module, imported only when used
(verl and torch stay out of commands that do not need them)."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, help). Each module defines `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("hyperseyes_verl.demo.scripted", "the whole product on embedded defaults, offline"),
    "env-demo": ("hyperseyes_verl.ugs.demo", "one scripted episode of the search environment"),
    "index": ("hyperseyes_verl.search.cli", "build / inspect the embedded search index"),
    "serve-search": ("hyperseyes_verl.search.serve", "serve the embedded index over the Search-R1 protocol"),
    "serve-model": ("hyperseyes_verl.hf.chat_server", "OpenAI-compatible chat endpoint over a local checkpoint (CPU)"),
    "refs": ("hyperseyes_verl.trace.cli", "inspect / export the TRACE reference store"),
    "synth": ("hyperseyes_verl.data.synth_cli", "Parallel-Amenable data synthesis (mosaics, multi-constraint QA)"),
    "prs": ("hyperseyes_verl.data.prs_cli", "Progressive Rejection Sampling against an OpenAI-compatible endpoint"),
    "to-parquet": ("hyperseyes_verl.data.parquet_cli", "write / convert RL and SFT parquet for verl"),
    "eval": ("hyperseyes_verl.eval.cli", "evaluate a served model: accuracy, rounds, width, tokens, CAS"),
    "study": ("hyperseyes_verl.study.cli", "learning-signal study of TRACE / HDPO / OPD gating on CPU"),
    "recipe": ("hyperseyes_verl.recipes.cli", "resolve and validate a training recipe (--dry-run)"),
    "view": ("hyperseyes_verl.view.cli", "static HTML trajectory viewer for eval runs, PRS folders, rollout dumps"),
}


def version() -> str:
    """The installed package version, and the verl it was built for."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        ours = dist_version("hyperseyes-verl")
    except PackageNotFoundError:  # a source checkout that was never pip-installed
        ours = "unknown (not installed)"
    return f"{ours} (for verl 0.9.1)"


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser for `argv` (the arguments after the program name): only the chosen command's module is
    imported to add its arguments; the others appear by name and help only."""
    parser = argparse.ArgumentParser(prog="hyperseyes", description="HyperEyes on verl")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == wanted:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
