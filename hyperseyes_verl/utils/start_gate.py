"""Let a burst of asyncio tasks run their synchronous start a few per event-loop turn.

verl's agent-loop worker creates every episode's task at once; each runs its synchronous start (building the agent
loop through hydra, 6-7 ms) before its first real await. asyncio runs every task that is ready in one turn, so 256
starts block the loop for ~2 s: no generate reply, search result or timer is handled meanwhile. Awaiting
`StartGate.wait()` first queues the task; each turn lets `per_turn` of them through, in arrival order.
"""
from __future__ import annotations

import asyncio
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
