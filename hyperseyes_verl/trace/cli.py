"""`hyperseyes refs show|export`: inspect / export TRACE reference snapshots.

    hyperseyes refs show   --path <default_local_dir>/hyperseyes_refs [--step N] [--limit 10]
    hyperseyes refs export --path <dir or step_N.npz> [--step N] --out refs.jsonl|refs.csv
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import re
import sys

from hyperseyes_verl.trace.store import ReferenceStore, snapshots


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="refs_command", required=True)
    for name, help_text in (("show", "summary and the first references"), ("export", "write JSONL or CSV")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--path", required=True, help="snapshot folder (hyperseyes_refs) or one step_<N>.npz file")
        p.add_argument("--step", type=int, default=None, help="newest snapshot at or before this step (default newest)")
        if name == "show":
            p.add_argument("--limit", type=int, default=10, help="references printed")
        else:
            p.add_argument("--out", required=True, help="output file; .jsonl or .csv")


def _load(path: str, step: int | None) -> tuple[ReferenceStore, int]:
    store = ReferenceStore()
    if os.path.isfile(path):  # one snapshot file: its step comes from its name
        try:
            store.load_file(path)
        except Exception as e:
            raise SystemExit(f"error: {path!r} is not a readable TRACE snapshot ({type(e).__name__}: {e})") from e
        m = re.match(r"^step_(\d+)\.npz$", os.path.basename(path))
        return store, int(m.group(1)) if m else 0
    if not snapshots(path):
        raise SystemExit(f"error: no step_<N>.npz snapshots in {path!r}; point --path at "
                         "<trainer.default_local_dir>/hyperseyes_refs or at one snapshot file")
    loaded = store.load(path, step)
    if loaded is None:
        raise SystemExit(f"error: no readable snapshot in {path!r}"
                         + (f" at or before step {step}" if step is not None else ""))
    return store, loaded


def run(args: argparse.Namespace) -> int:
    if args.refs_command == "export" and not args.out.endswith((".jsonl", ".csv")):
        print(f"error: --out {args.out!r} must end with .jsonl or .csv", file=sys.stderr)
        return 2
    store, loaded = _load(args.path, args.step)
    if args.refs_command == "show":
        print(json.dumps({"snapshot_step": loaded, **store.summary()}, indent=2))
        for row in itertools.islice(store.rows(), args.limit):
            print(json.dumps(row))
        return 0
    out = args.out
    n = 0
    with open(out, "w", newline="") as f:
        if out.endswith(".csv"):
            w = csv.DictWriter(f, fieldnames=["prompt_key", "ref_rounds", "ref_searches"])
            w.writeheader()
            for row in store.rows():
                w.writerow(row)
                n += 1
        else:
            for row in store.rows():
                f.write(json.dumps(row) + "\n")
                n += 1
    print(f"wrote {n} references from snapshot step {loaded} to {out}")
    return 0
