"""Let a burst of asyncio tasks run their synchronous start a few per event-loop turn.

verl's agent-loop worker creates every episode's task at once; each runs its synchronous start (building the agent
loop through hydra, 6-7 ms) before its first real await. asyncio runs every task that is ready in one turn, so 256
starts block the loop for ~2 s: no generate reply, search result or timer is handled meanwhile. Awaiting
`StartGate.wait()` first queues the task; each turn lets `per_turn` of them through, in arrival order.

Episodes started together also advance together: replies to a batch of generate calls, or executor renders, come
back at once, and each episode's step after them (parsing, planning the round, building the observation: ~1 ms) runs
in the same turn. `loop_gate` is one gate per event loop that the agent loops of a worker share for those steps.
"""
from __future__ import annotations

import asyncio
import weakref
from collections import deque


class StartGate:
    """`per_turn` ≤ 0 lets everything through at once (verl's own behaviour)."""

    def __init__(self, per_turn: int):
        self.per_turn = per_turn
        self._waiters: deque[asyncio.Future] = deque()
        self._armed = False

    async def wait(self) -> None:
        if self.per_turn <= 0:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.append(fut)
        if not self._armed:
            self._armed = True
            loop.call_soon(self._release, loop)
        await fut

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        # the tasks released here resume next turn, together with the next call of this callback
        released = 0
        while self._waiters and released < self.per_turn:
            fut = self._waiters.popleft()
            if not fut.done():  # a cancelled waiter takes no slot
                fut.set_result(None)
                released += 1
        if self._waiters:
            loop.call_soon(self._release, loop)
        else:
            self._armed = False


_LOOP_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StartGate] = weakref.WeakKeyDictionary()


def loop_gate(per_turn: int) -> StartGate:
    """The gate shared by every task of the running event loop (created on first use; `per_turn` updates it)."""
    loop = asyncio.get_running_loop()
    gate = _LOOP_GATES.get(loop)
    if gate is None:
        gate = _LOOP_GATES[loop] = StartGate(per_turn)
    gate.per_turn = per_turn
    return gate


class GatedLoop:
    """`loop` whose `run_in_executor` results reach their caller through `gate`.

    verl's agent loop awaits its token renders in the executor and then works on the event loop (the merges align
    the response mask and logprobs, O(context)): when a batch of renders finishes at once, every episode's part
    would run in the same turn. Set as an agent loop's `loop`, each waits for its turn at the gate first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gate: StartGate):
        self._loop, self._gate = loop, gate

    def __getattr__(self, name: str):
        return getattr(self._loop, name)

    async def run_in_executor(self, executor, func, *args):
        result = await self._loop.run_in_executor(executor, func, *args)
        await self._gate.wait()
        return result
