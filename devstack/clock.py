"""The sandbox's movable business clock (the time-skipping server's time)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio.api.testservice.v1 import SleepRequest
from temporalio.testing import WorkflowEnvironment

from domain.errors import BizError

ADVANCE_RPC_TIMEOUT = timedelta(minutes=10)


class SandboxClock:
    """The sandbox's business clock: the time-skipping server's time, moved on request.

    `advance` lets every timer due in the span (the end included) fire, then waits for `idle` (the
    worker has nothing in flight) so that the effects are in the read model when it answers.
    """

    def __init__(self, env: WorkflowEnvironment, idle: Callable[[], Awaitable[None]]) -> None:
        self.env = env
        self.idle = idle
        self._lock = asyncio.Lock()

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def advance(self, seconds: float) -> datetime:
        if self._lock.locked():  # no await between the check and the acquire: no race
            raise BizError("CLOCK_BUSY")
        async with self._lock:
            await self._skip(seconds)
            await self.idle()
            return await self.now()

    async def _skip(self, seconds: float) -> None:
        """`env.sleep`, with a deadline long enough for a month-end of many subscriptions."""
        if not getattr(self.env, "supports_time_skipping_v1", False):
            await self.env.sleep(seconds)
            return
        request = SleepRequest()
        request.duration.FromTimedelta(timedelta(seconds=seconds))
        await self.env.client.test_service.unlock_time_skipping_with_sleep(
            request, timeout=ADVANCE_RPC_TIMEOUT
        )
