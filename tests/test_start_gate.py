"""StartGate lets a burst of tasks through a few per event-loop turn, in arrival order; the agent-loop worker's
mixin puts every episode behind it and freezes the collector once the worker is built."""
from __future__ import annotations

import asyncio
import gc
from collections import Counter

import pytest

from hyperseyes_verl.utils.start_gate import StartGate


async def _burst(gate: StartGate, n: int) -> list[tuple[int, int]]:
    """n tasks created at once, as verl's worker does; (task, loop turn it passed the gate in), in pass order."""
    turn, passed = [0], []

    def tick():
        turn[0] += 1
        loop.call_soon(tick)

    async def episode(i):
        await gate.wait()
        passed.append((i, turn[0]))

    loop = asyncio.get_running_loop()
    loop.call_soon(tick)
    await asyncio.gather(*(asyncio.create_task(episode(i)) for i in range(n)))
    return passed


async def test_a_burst_passes_per_turn_in_arrival_order():
    passed = await _burst(StartGate(4), 30)
    assert [i for i, _ in passed] == list(range(30))
    per_turn = Counter(t for _, t in passed)
    assert max(per_turn.values()) == 4 and len(per_turn) == 8  # 30 = 7 turns of 4 + 2


async def test_zero_lets_the_whole_burst_through_in_one_turn():
    passed = await _burst(StartGate(0), 30)
    assert len({t for _, t in passed}) == 1


async def test_a_cancelled_waiter_takes_no_slot_and_the_gate_rearms():
    gate = StartGate(1)
    a, b, c = (asyncio.create_task(gate.wait()) for _ in range(3))
    await asyncio.sleep(0)  # all three queued
    b.cancel()
    await asyncio.gather(a, c, return_exceptions=False)
    assert b.cancelled() and a.done() and c.done()
    await asyncio.wait_for(gate.wait(), 1)  # a later burst is served too


class _Worker:
    """Stands in for verl's AgentLoopWorker: what the mixin reads and overrides."""

    def __init__(self, config):
        self.config = config
        self.started = []

    async def _run_agent_loop(self, sampling_params, trajectory, *, agent_name, **kwargs):
        self.started.append(trajectory["i"])
        await asyncio.sleep(0)
        return trajectory["i"]


async def test_the_worker_mixin_paces_episodes_and_freezes_gc():
    from omegaconf import OmegaConf

    from hyperseyes_verl.verl.paced_start import PacedStartMixin

    class Worker(PacedStartMixin, _Worker):
        pass

    gc.unfreeze()
    try:
        worker = Worker(OmegaConf.create({"hyperseyes": {"agent_loop": {"starts_per_turn": 2}}}))
        assert gc.get_freeze_count() > 0 and worker._start_gate.per_turn == 2
        tasks = [asyncio.create_task(worker._run_agent_loop({}, {"i": i}, agent_name="x")) for i in range(6)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(worker.started) <= 2  # verl's own start (hydra) has run for two episodes only
        assert await asyncio.gather(*tasks) == list(range(6))
    finally:
        gc.unfreeze()
    off = Worker(OmegaConf.create({"hyperseyes": {"agent_loop": {"starts_per_turn": 0, "freeze_gc": False}}}))
    assert off._start_gate.per_turn == 0 and gc.get_freeze_count() == 0


def test_a_negative_pace_is_refused_naming_the_key():
    from hyperseyes_verl.config import AgentLoopConfig

    with pytest.raises(ValueError, match="starts_per_turn"):
        AgentLoopConfig(starts_per_turn=-1)
