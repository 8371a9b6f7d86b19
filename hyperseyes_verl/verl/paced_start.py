"""The agent-loop worker's episode starts, paced, and its start-up objects kept out of the garbage collector.

verl's `AgentLoopWorker.generate_sequences` creates every episode's task at once, and `_run_agent_loop` builds the
agent loop through hydra (6-7 ms, synchronous) before its first await: at 256 episodes the worker's event loop
handles no server reply, search result or timer for ~2 s (bench/bench_agent_loop_scale.py). Each episode here
first waits at a `StartGate` (`hyperseyes.agent_loop.starts_per_turn` per loop turn). `gc.freeze()` after the
worker is built moves the modules, tokenizer and processor (~500k objects) out of the collector's full passes,
which otherwise pause the loop ~0.4 s each.
"""
from __future__ import annotations

import gc

from hyperseyes_verl.utils.start_gate import StartGate
from hyperseyes_verl.verl.config_reader import hyperseyes_config


class PacedStartMixin:
    """Mixed into the agent-loop worker class before verl's (see teacher_worker.gated_worker_tq_class)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = hyperseyes_config(self.config).agent_loop
        self._start_gate = StartGate(cfg.starts_per_turn)
        if cfg.freeze_gc:
            gc.collect()
            gc.freeze()

    async def _run_agent_loop(self, *args, **kwargs):
        await self._start_gate.wait()
        return await super()._run_agent_loop(*args, **kwargs)
