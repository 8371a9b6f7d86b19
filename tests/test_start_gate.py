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


class _Cycle:
    def __init__(self):
        self.me = self


def _full_passes() -> tuple[list[int], callable]:
    seen: list[int] = []

    def on_gc(phase, info):
        if phase == "stop":
            seen.append(info["generation"])
    return seen, on_gc


def test_full_collections_wait_until_no_episode_is_in_flight():
    """200k container allocations (which would start full passes) run inside two overlapping episodes: young
    collections happen, full ones do not, until the last episode ends; an old cycle that became garbage meanwhile is
    freed then, and the thresholds are restored."""
    import weakref

    from hyperseyes_verl.utils.gc_deferral import YOUNG_THRESHOLDS, FullCollectionDeferral

    before = gc.get_threshold()
    deferral = FullCollectionDeferral()
    seen, on_gc = _full_passes()
    gc.collect()
    gc.freeze()  # as the worker: few long-lived objects, so these allocations would start full passes
    gc.callbacks.append(on_gc)
    try:
        deferral.enter()
        deferral.enter()
        assert gc.get_threshold()[:2] == YOUNG_THRESHOLDS
        obj = _Cycle()
        gc.collect(1)  # promoted to the oldest generation: only a full pass can free it once it is garbage
        cycle = weakref.ref(obj)
        del obj
        keep = [[[] for _ in range(50)] for _ in range(4000)]  # 204k containers (an empty dict is not tracked)
        assert 0 in seen and 2 not in seen and cycle() is not None
        deferral.exit()
        assert 2 not in seen and deferral.collections == 0  # one episode still in flight
        deferral.exit()
        assert seen.count(2) == 1 and deferral.collections == 1 and cycle() is None
        assert gc.get_threshold() == before and deferral.in_flight == 0
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*before)
        gc.unfreeze()
    del keep


def test_a_worker_never_idle_still_collects_on_a_clock():
    from hyperseyes_verl.utils.gc_deferral import FullCollectionDeferral

    before = gc.get_threshold()
    deferral = FullCollectionDeferral(max_defer_s=0.0)
    try:
        with deferral:
            with deferral:
                pass
            assert deferral.collections == 1 and deferral.in_flight == 1  # the inner exit, over the clock
        assert deferral.collections == 2 and gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)


async def test_the_worker_mixin_sizes_the_executor_and_defers_full_collections():
    import threading

    from omegaconf import OmegaConf

    from hyperseyes_verl.utils.gc_deferral import _NEVER
    from hyperseyes_verl.verl.paced_start import PacedStartMixin

    seen = {}

    class Episode(_Worker):
        async def _run_agent_loop(self, sampling_params, trajectory, *, agent_name, **kwargs):
            loop = asyncio.get_running_loop()
            names = await asyncio.gather(*(loop.run_in_executor(None, _slow_name) for _ in range(6)))
            seen[trajectory["i"]] = (set(names), gc.get_threshold()[2])
            return trajectory["i"]

    class Worker(PacedStartMixin, Episode):
        pass

    def _slow_name():
        import time

        time.sleep(0.02)
        return threading.current_thread().name

    before = gc.get_threshold()
    try:
        worker = Worker(OmegaConf.create({"hyperseyes": {"agent_loop": {"executor_threads": 3, "freeze_gc": False}}}))
        assert await asyncio.gather(*(worker._run_agent_loop({}, {"i": i}, agent_name="x") for i in range(2))) == [0, 1]
        names, threshold = seen[0]
        assert len(names) == 3 and all(n.startswith("agent-loop") for n in names)  # 6 calls, 3 threads
        assert threshold == _NEVER and gc.get_threshold() == before
        off = Worker(OmegaConf.create({"hyperseyes": {"agent_loop": {"executor_threads": None, "defer_full_gc": False,
                                                                      "freeze_gc": False}}}))
        await off._run_agent_loop({}, {"i": 2}, agent_name="x")
        assert seen[2][1] == before[2]  # (the loop's executor is left as the first worker set it)
    finally:
        gc.set_threshold(*before)


async def test_a_gated_loop_hands_an_executor_result_back_only_through_the_gate():
    from hyperseyes_verl.utils.start_gate import GatedLoop

    class Held:
        def __init__(self):
            self.open, self.waits = asyncio.Event(), 0

        async def wait(self):
            self.waits += 1
            await self.open.wait()

    loop, gate = asyncio.get_running_loop(), Held()
    gated = GatedLoop(loop, gate)
    task = asyncio.create_task(gated.run_in_executor(None, lambda: 7))
    await asyncio.sleep(0.05)  # the executor finished long ago
    assert not task.done() and gate.waits == 1
    gate.open.set()
    assert await task == 7
    assert gated.time is not None and gated.create_future().get_loop() is loop  # the rest is the loop's
