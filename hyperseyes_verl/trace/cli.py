"""`hyperseyes refs show|export`: inspect / export TRACE reference snapshots.

    hyperseyes refs show   --path <default_local_dir>/hyperseyes_refs [--step N] [--limit 10]
    hyperseyes refs export --path <dir or step_N.npz> [--step N] --out refs.jsonl|refs.csv
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sys
import tempfile

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
    if os.path.isfile(path):  # a single snapshot file: load it through a one-file folder
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(path, os.path.join(tmp, "step_0.npz"))
            loaded = store.load(tmp)
        m = re.match(r"^step_(\d+)\.npz$", os.path.basename(path))
        loaded = int(m.group(1)) if (m and loaded is not None) else loaded
    else:
        if not snapshots(path):
            raise SystemExit(f"error: no step_<N>.npz snapshots in {path!r}; point --path at "
                             "<trainer.default_local_dir>/hyperseyes_refs or at one snapshot file")
        loaded = store.load(path, step)
    if loaded is None:
        raise SystemExit(f"error: no readable snapshot in {path!r}" + (f" at or before step {step}" if step else ""))
    return store, loaded


def run(args: argparse.Namespace) -> int:
    store, loaded = _load(args.path, args.step)
    if args.refs_command == "show":
        print(json.dumps({"snapshot_step": loaded, **store.summary()}, indent=2))
        for i, row in enumerate(store.rows()):
            if i >= args.limit:
                break
            print(json.dumps(row))
        return 0
    out = args.out
    if not out.endswith((".jsonl", ".csv")):
        print(f"error: --out {out!r} must end with .jsonl or .csv", file=sys.stderr)
        return 2
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
