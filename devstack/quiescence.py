"""Knowing when a worker has gone quiet, so the sandbox clock can answer after the effects landed.

After the time-skipping server fires the timers of an advance, the workflow tasks and activities
they cause still run on the worker. `InFlight` counts the worker's activities in flight (through
an activity interceptor); `idle()` returns once none has been in flight for a short settle period,
which also covers the workflow task between two activities. It is a heuristic with a bound, not a
proof: the settle period should exceed the worker's poll latency.

    in_flight = InFlight()
    worker = Worker(client, ..., interceptors=[in_flight.interceptor()])
    clock = SandboxClock(env, in_flight.idle)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

log = logging.getLogger(__name__)


class InFlight:
    """A count of activities running on the worker(s) this interceptor is installed on."""

    def __init__(self) -> None:
        self.count = 0
        self._changed_at = 0.0

    def interceptor(self) -> Interceptor:
        return _CountingInterceptor(self)

    def _enter(self) -> None:
        self.count += 1
        self._changed_at = _loop_time()

    def _leave(self) -> None:
        self.count -= 1
        self._changed_at = _loop_time()

    async def idle(self, settle: float = 0.3, *, limit: float = 60.0) -> None:
        """Return once no activity has been in flight for `settle` seconds (at most `limit`)."""
        started = _loop_time()
        # Whatever happened before this call, start the settle period now: the timers just fired.
        self._changed_at = max(self._changed_at, started)
        while True:
            now = _loop_time()
            if self.count == 0 and now - self._changed_at >= settle:
                return
            if now - started > limit:
                log.warning("worker still busy after %.0f s (%d activities)", limit, self.count)
                return
            await asyncio.sleep(min(0.05, settle / 4))


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class _CountingInterceptor(Interceptor):
    def __init__(self, in_flight: InFlight) -> None:
        self.in_flight = in_flight

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountingActivity(next, self.in_flight)


class _CountingActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, in_flight: InFlight) -> None:
        super().__init__(next)
        self.in_flight = in_flight

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        self.in_flight._enter()
        try:
            return await super().execute_activity(input)
        finally:
            self.in_flight._leave()
