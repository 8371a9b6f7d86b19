"""`hyperseyes study`: do TRACE, HDPO and OPD gating push a policy toward fewer rounds without losing accuracy?

    hyperseyes study --out runs/study [--seed 0 --epochs 60 --prompts 256] [--only acc_only,trace_paper]
                     [--estimator grpo]

A CPU-sized, seeded check that drives the project's real reward code (TRACE official / paper rule, the
reference store, HDPO, OPD gating) and verl's own GRPO estimator with a tabular policy over search
strategies (see hyperseyes_verl/study/world.py for the model). Writes histories.json, claims.json,
summary.md and study.png under --out.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from hyperseyes_verl.study.claims import evaluate
from hyperseyes_verl.study.report import claims_markdown, counting_example, counting_table, summary_table, write_outputs
from hyperseyes_verl.study.train import StudyConfig, run_variant
from hyperseyes_verl.study.variants import standard_variants
from hyperseyes_verl.study.world import make_population
from hyperseyes_verl.utils.cli import add_model_options, model_kwargs


STUDY_FIELDS = ("seed", "epochs", "prompts", "estimator")  # StudyConfig fields (type, default, help from the field)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created)")
    add_model_options(parser, StudyConfig, STUDY_FIELDS)
    parser.add_argument("--only", default="", help="comma-separated subset of runs (acc_only is always included)")


def run_study(cfg: StudyConfig, only: list[str] | None = None, log=print) -> tuple[dict, list, float]:
    variants = standard_variants()
    names = [v.name for v in variants]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown run(s) {unknown}; choose from {names}")
        variants = [v for v in variants if v.name in set(only) | {"acc_only"}]
    pop = make_population(cfg.prompts, cfg.world, np.random.default_rng(cfg.seed))
    start = time.perf_counter()
    hist = {}
    for v in variants:
        t0 = time.perf_counter()
        hist[v.name] = run_variant(v, cfg, pop)
        f = hist[v.name].final()
        log(f"{v.name:32s} acc {100 * f['acc']:5.1f}%  rounds {f['rounds']:.2f}  ({time.perf_counter() - t0:.1f} s)")
    return hist, evaluate(hist), time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    try:
        cfg = StudyConfig(**model_kwargs(args, StudyConfig, STUDY_FIELDS))
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        hist, claims, seconds = run_study(cfg, only)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = write_outputs(args.out, cfg, hist, claims, seconds)
    counting = counting_table(hist)
    counting = f"{counting}\n\n{counting_example()}" if counting else ""
    print("\n" + summary_table(hist) + "\n\n" + (f"What each official counting does to width:\n\n{counting}\n\n"
                                                  if counting else "") + claims_markdown(claims))
    print(f"\n{len(hist)} runs in {seconds:.0f} s; wrote " + ", ".join(paths.values()))
    return 0
