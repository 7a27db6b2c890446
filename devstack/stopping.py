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

import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
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
        signal.signal(signal.SIGINT, stop.handle)
        signal.signal(signal.SIGTERM, stop.handle)
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            signal.signal(signal.SIGHUP, stop.handle)  # the terminal closed
        return stop

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The handler of the stop signals."""
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

    async def guard(
        self,
        step: Awaitable[T],
        grace: float = 1.0,
        undo: Callable[[T], Awaitable[object]] | None = None,
    ) -> T:
        """Await `step`; on a stop signal end it and raise Stopped. A step that makes something
        to undo (a pool to close: `undo`) is first given `grace` seconds to finish, so that what
        it made is undone rather than lost; then, unfinished, it is cancelled and given `grace`
        seconds to unwind (one that ignores its cancellation is left to `run`'s clean-up)."""
        import asyncio

        task = asyncio.ensure_future(step)
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL)
            if done:
                return task.result()
            if self.received:
                break
        if undo is not None:
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=grace)
        if undo is not None and task.done() and not task.cancelled() and not task.exception():
            await undo(task.result())
        raise Stopped(self.received[0])

    def deadline(self, seconds: float) -> float:
        """`seconds` after the first stop signal (after now without one), as time.monotonic."""
        return (self.at if self.at is not None else time.monotonic()) + seconds

    def exit(self) -> None:
        """End this process by the first stop signal, as a program that does not catch it ends
        (a shell reports 130 for SIGINT, 143 for SIGTERM, and a script running it stops too)."""
        signum = self.received[0]
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):  # a terminal already gone (SIGHUP)
                stream.flush()
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # not reached: the signal ends the process


async def within(seconds: float, step: Awaitable[object]) -> bool:
    """Await `step` for at most `seconds`, then cancel it (what ignores that is left to `run`'s
    clean-up). Whether it ended in time; its own exception, if it raised one, is raised."""
    import asyncio

    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        return False
    task.result()
    return True


# How long the tasks the launcher's coroutine leaves behind get to end once it has returned.
LEFTOVER_GRACE = 2.0


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, except that it leaves the signal handlers alone (asyncio.run takes SIGINT
    while it is Python's default) and that the tasks `main` leaves behind are cancelled again
    and again, for at most LEFTOVER_GRACE seconds, until they end.

    asyncio.run cancels each leftover task once and then waits for it without end. A psycopg
    pool's worker catches the CancelledError that lands while it connects (psycopg_pool 3.3,
    CLIENT_EXCEPTIONS) and goes on: a pool whose opening was interrupted kept the launcher
    alive for good, retrying the PostgreSQL it had just stopped ("error connecting in
    'pool-1'"). Cancelled again while it waits for its next job, it ends."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            deadline = time.monotonic() + LEFTOVER_GRACE
            while (leftovers := asyncio.all_tasks(loop)) and time.monotonic() < deadline:
                for task in leftovers:
                    task.cancel()
                loop.run_until_complete(asyncio.wait(leftovers, timeout=POLL))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
