"""How the launcher stops: SIGINT, SIGTERM (and SIGHUP) taken from its first line.

Standard library only, so that `devstack/stack.py` can install it before its own imports (about a
second). The handler only records the signal; the launcher looks at it between start-up steps,
while it waits for a port or a server (`check`, `sleep`, `guard`) and in its wait loop, then
unwinds with `Stopped` from a known point, so a child is never started unrecorded and every
`finally` runs. Handlers are installed whatever the inherited disposition: a shell starts a
background job with SIGINT ignored, and a Ctrl-C sent to its process group must still stop it.

A second signal while stopping hurries the stop: the processes still running are killed at once
instead of being given their grace period.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Awaitable, Coroutine
from types import FrameType
from typing import Any, TypeVar

# asyncio is imported where it is used: this module is imported before anything else, and
# asyncio alone takes longer to import than everything else here.

T = TypeVar("T")

# How often a wait looks at the signal. A signal the kernel hands to another thread (the Temporal
# SDK's, psycopg's) reaches the Python handler only when the main thread next runs, so every wait
# wakes at least this often.
POLL = 0.1


class Stopped(BaseException):
    """Raised by the launcher at its next check after a stop signal. A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way mistakes it for a failure."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """The stop signals this process has received (in order)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.at: float | None = None  # time.monotonic() of the first one

    @classmethod
    def install(cls) -> StopSignals:
        """Take SIGINT and SIGTERM (and SIGHUP unless it was ignored, as under nohup) from now
        on, replacing whatever the process inherited (SIG_IGN included)."""
        stop = cls()
        signal.signal(signal.SIGINT, stop._handle)
        signal.signal(signal.SIGTERM, stop._handle)
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            signal.signal(signal.SIGHUP, stop._handle)  # the terminal closed
        return stop

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread: record, nothing else (printing here
        # could re-enter a write to stdout the signal interrupted).
        if self.at is None:
            self.at = time.monotonic()
        self.received.append(signum)

    @property
    def requested(self) -> bool:
        return bool(self.received)

    @property
    def hurried(self) -> bool:
        """A second signal came: stop what still runs without waiting for it."""
        return len(self.received) > 1

    @property
    def name(self) -> str:
        return signal.Signals(self.received[0]).name if self.received else ""

    def check(self) -> None:
        """Raise Stopped if a stop signal has come."""
        if self.received:
            raise Stopped(self.received[0])

    def sleep(self, seconds: float) -> None:
        """time.sleep that ends with Stopped as soon as a stop signal has come."""
        deadline = time.monotonic() + seconds
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, POLL))

    async def guard(self, step: Awaitable[T], grace: float = 2.0) -> T:
        """Await `step`; on a stop signal cancel it, give it `grace` seconds to unwind, and
        raise Stopped (a step that ignores its cancellation is left to `run`'s clean-up)."""
        import asyncio

        task = asyncio.ensure_future(step)
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL)
            if done:
                return task.result()
            if self.received:
                task.cancel()
                await asyncio.wait({task}, timeout=grace)
                self.check()

    def exit(self) -> None:
        """End this process by the first stop signal, as a program that does not catch it ends
        (a shell reports 130 for SIGINT, 143 for SIGTERM, and a script running it stops too)."""
        signum = self.received[0]
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # not reached: the signal ends the process


# How long the event loop's own leftovers (a task that ignored its cancellation) are waited for
# once the launcher's coroutine has returned.
LEFTOVER_GRACE = 2.0


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, except that the tasks `main` leaves behind are cancelled and waited for at
    most LEFTOVER_GRACE seconds (asyncio.run waits for them without end: a connection pool's
    reconnect loop to a server already stopped kept the launcher alive), and that it leaves the
    signal handlers alone (it takes SIGINT only while it is Python's default)."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_GRACE))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
