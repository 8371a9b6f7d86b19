"""Full garbage collections between episodes, not in the middle of them.

A full (generation-2) pass visits every reference held by a tracked container, and an episode in flight holds its
token ids, mask and logprobs as Python lists: at 256 episodes of the bench's small size that is ~1M references and a
25-80 ms pass, at the paper's sizes (~60k tokens per episode) tens of millions. CPython starts a full pass after ~70k
container allocations once a quarter of the long-lived objects are new, which in an agent-loop worker (after
`gc.freeze()`, few long-lived objects) is every few seconds; the pass runs on whichever thread allocates, the event
loop's included, and nothing else runs meanwhile. While episodes are in flight, full passes wait until none is, or
at most `max_defer_s`; the young generations are collected in smaller steps (thresholds 300 / 3 instead of 700 / 10:
the young lists are traversed as often, a few at a time). At 256 episodes (bench_agent_loop_scale.py, 2 cores):
longest collection 34-43 ms (full passes deferred alone) -> 11-12 ms, the same episodes/s.
"""
from __future__ import annotations

import gc
import time

_NEVER = 1 << 30  # a generation-2 threshold CPython never reaches
YOUNG_THRESHOLDS = (300, 3)  # generation 0 / 1 while episodes are in flight


class FullCollectionDeferral:
    """`with deferral:` around each episode (`enter()` / `exit()`, also on error or cancellation)."""

    def __init__(self, max_defer_s: float = 60.0):
        self.max_defer_s = max_defer_s
        self.in_flight = 0
        self.collections = 0  # full passes run here
        self._saved = gc.get_threshold()
        self._since = time.monotonic()

    def enter(self) -> None:
        if self.in_flight == 0:
            self._saved = gc.get_threshold()
            gc.set_threshold(*YOUNG_THRESHOLDS, _NEVER)
            self._since = time.monotonic()
        self.in_flight += 1

    def exit(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            gc.set_threshold(*self._saved)
            self._collect()
        elif time.monotonic() - self._since > self.max_defer_s:  # a worker never idle still collects, on a clock
            self._collect()

    def _collect(self) -> None:
        gc.collect()
        self.collections += 1
        self._since = time.monotonic()

    def __enter__(self) -> FullCollectionDeferral:
        self.enter()
        return self

    def __exit__(self, *exc) -> None:
        self.exit()
