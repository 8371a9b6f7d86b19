"""The agent-loop worker's episode starts, paced, its start-up objects kept out of the garbage collector, and full
collections run between episodes.

verl's `AgentLoopWorker.generate_sequences` creates every episode's task at once, and `_run_agent_loop` builds the
agent loop through hydra (6-7 ms, synchronous) before its first await: at 256 episodes the worker's event loop
handles no server reply, search result or timer for ~2 s (bench/bench_agent_loop_scale.py). Each episode here
first waits at a `StartGate` (`hyperseyes.agent_loop.starts_per_turn` per loop turn). `gc.freeze()` after the
worker is built moves the modules, tokenizer and processor (~500k objects) out of the collector's full passes,
which otherwise pause the loop ~0.4 s each. Full collections of what the episodes hold wait until none is in flight
(`FullCollectionDeferral`, `hyperseyes.agent_loop.defer_full_gc`), and the loop's default executor has
`hyperseyes.agent_loop.executor_threads` threads.
"""
from __future__ import annotations

import asyncio
import gc
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

from hyperseyes_verl.utils.gc_deferral import FullCollectionDeferral
from hyperseyes_verl.utils.start_gate import StartGate
from hyperseyes_verl.verl.config_reader import hyperseyes_config


class PacedStartMixin:
    """Mixed into the agent-loop worker class before verl's (see teacher_worker.gated_worker_tq_class)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = hyperseyes_config(self.config).agent_loop
        self._start_gate = StartGate(cfg.starts_per_turn)
        self._gc_deferral = FullCollectionDeferral(cfg.full_gc_max_defer_s) if cfg.defer_full_gc else nullcontext()
        self._executor_threads = cfg.executor_threads
        self._executor_loop: asyncio.AbstractEventLoop | None = None
        if cfg.freeze_gc:
            gc.collect()
            gc.freeze()

    async def _run_agent_loop(self, *args, **kwargs):
        loop = asyncio.get_running_loop()
        if self._executor_threads and self._executor_loop is not loop:  # the worker's loop, known once running
            loop.set_default_executor(ThreadPoolExecutor(self._executor_threads, thread_name_prefix="agent-loop"))
            self._executor_loop = loop
        with self._gc_deferral:
            await self._start_gate.wait()
            return await super()._run_agent_loop(*args, **kwargs)
