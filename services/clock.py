"""Business time: the wall clock in production, the sandbox's movable clock in a rehearsal.

The services read business time through a `Clock`; the API's sandbox routes and the console move
it through a `SandboxControl`, which the dev stack implements (`devstack.clock.SandboxClock`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

Clock = Callable[[], Awaitable[datetime]]


async def wall_clock() -> datetime:
    return datetime.now(UTC)


class SandboxControl(Protocol):
    """A business clock that can be moved forward (sandbox mode only)."""

    async def now(self) -> datetime: ...

    async def advance(self, seconds: float) -> datetime:
        """Move business time; answer once the effects of every timer due in the span landed."""
        ...
