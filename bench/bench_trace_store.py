"""Reference store at 1M prompts: observation rate, epoch-end tightening (goal <= 2 s), snapshot save/load.

    .venv/bin/python bench/bench_trace_store.py [--prompts 1000000] [--rollouts 1000000]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from hyperseyes_verl.trace.store import ReferenceStore, StoreConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=1_000_000)
    ap.add_argument("--rollouts", type=int, default=1_000_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    store = ReferenceStore(StoreConfig())
    init = rng.integers(-1, 8, args.prompts)
    keys = [f"mmsearch/{i}" for i in range(args.prompts)]
    t0 = time.perf_counter()
    store.load_initial(zip(keys, init.tolist(), init.tolist()))
    t_reg = time.perf_counter() - t0

    which = rng.integers(0, args.prompts, args.rollouts).tolist()
    correct = (rng.random(args.rollouts) < 0.6).tolist()
    rounds = rng.integers(0, 8, args.rollouts).tolist()
    searches = rng.integers(0, 20, args.rollouts).tolist()
    t0 = time.perf_counter()
    for j in range(args.rollouts):
        k = which[j]
        store.record(keys[k], init[k], init[k], correct[j], rounds[j], searches[j])
    t_obs = time.perf_counter() - t0

    t0 = time.perf_counter()
    m = store.end_epoch()
    t_tight = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        path = store.save(d, 1)
        t_save = time.perf_counter() - t0
        size = os.path.getsize(path)
        t0 = time.perf_counter()
        ReferenceStore().load(d)
        t_load = time.perf_counter() - t0

    print(f"prompts {args.prompts:,}  rollouts observed {args.rollouts:,}")
    print(f"register from dataset: {t_reg:.2f} s   observe: {args.rollouts / t_obs:,.0f} rollouts/s")
    print(f"epoch-end tightening of {args.prompts:,} references: {t_tight:.3f} s (goal <= 2 s -> "
          f"{2.0 / t_tight:.0f}x under)  tightened {int(m['trace/refs_tightened']):,}")
    print(f"snapshot save {t_save:.2f} s / load {t_load:.2f} s, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
