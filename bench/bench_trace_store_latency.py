"""Store round trip seen from a reward worker: in-process store vs the shared Ray actor (measured side by side).

    RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_trace_store_latency.py [--calls 2000]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import ray

from hyperseyes_verl.trace.shared import StoreHandle
from hyperseyes_verl.trace.store import ReferenceStore


async def _sequential(handle: StoreHandle, calls: int) -> float:
    t0 = time.perf_counter()
    for i in range(calls):
        await handle.arecord(f"d/{i % 500}", 3, 5, i % 2 == 0, 1 + i % 4, 2)
    return (time.perf_counter() - t0) / calls


async def _concurrent(handle: StoreHandle, calls: int, width: int = 64) -> float:
    t0 = time.perf_counter()
    for start in range(0, calls, width):
        await asyncio.gather(*(handle.arecord(f"d/{i % 500}", 3, 5, True, 2, 2)
                               for i in range(start, min(calls, start + width))))
    return calls / (time.perf_counter() - t0)


@ray.remote(num_cpus=0)
class RewardWorker:
    """Stands in for a verl RewardLoopWorker process talking to the shared store actor."""

    async def measure(self, calls: int):
        from hyperseyes_verl.verl.store_actor import get_store
        from hyperseyes_verl.trace.store import StoreConfig

        handle = get_store(StoreConfig(actor_name="bench_refs"))
        await handle.arecord("warm", -1, -1, False, 0, 0)
        return await _sequential(handle, calls), await _concurrent(handle, calls)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    local = StoreHandle(store=ReferenceStore())
    lat_local = asyncio.run(_sequential(local, args.calls))
    thr_local = asyncio.run(_concurrent(local, args.calls))
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="hb_"), logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}})
    try:
        lat_ray, thr_ray = ray.get(RewardWorker.remote().measure.remote(args.calls))
    finally:
        ray.shutdown()
    print(f"in-process store: {lat_local * 1e6:8.1f} us per awaited record, {thr_local:,.0f} records/s at width 64")
    print(f"Ray actor store : {lat_ray * 1e6:8.1f} us per awaited record, {thr_ray:,.0f} records/s at width 64")
    print(f"ratio Ray/in-process latency: {lat_ray / lat_local:.0f}x; one record per trajectory, so at 256 "
          f"trajectories/step the actor adds {256 * lat_ray * 1e3:.1f} ms of worker time per step (spread over workers)")


if __name__ == "__main__":
    main()
