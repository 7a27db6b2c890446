"""The launcher's stop machinery, piece by piece (devstack/stopping.py, devstack/process.py); the
whole launcher under signals is tests/devstack/test_signals.py."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.process import identity, running, terminate
from devstack.stopping import LEFTOVER_GRACE, Stopped, StopSignals, run
from settings import REPO_ROOT
from store.db import open_pool


def test_signals_are_taken_over_an_inherited_sig_ign_and_end_the_process_by_them() -> None:
    """A background job inherits SIGINT ignored: the launcher's first line takes it back, and
    once stopped it ends by the signal (a shell reports 130), not with a plain exit."""
    script = textwrap.dedent(
        """
        import os, signal, sys
        from devstack.stopping import Stopped, StopSignals
        stop = StopSignals.install()
        os.kill(os.getpid(), signal.SIGINT)
        try:
            stop.sleep(5)
        except Stopped as stopped:
            print("stopped by", stopped.signum, flush=True)
        stop.exit()
        print("not reached", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=30,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert done.stdout.decode() == f"stopped by {int(signal.SIGINT)}\n", done.stderr
    assert done.returncode == -signal.SIGINT


def test_a_second_signal_hurries_the_stop() -> None:
    stop = StopSignals()
    assert not stop.requested and not stop.hurried
    stop.handle(signal.SIGTERM, None)
    assert stop.requested and not stop.hurried and stop.name == "SIGTERM"
    stop.handle(signal.SIGINT, None)
    assert stop.hurried and stop.name == "SIGTERM"  # the first one is the one it ends by
    with pytest.raises(Stopped):
        stop.check()


def test_guard_undoes_a_step_that_finishes_after_the_stop() -> None:
    """A pool being opened when the signal comes is closed, not lost."""
    stop = StopSignals()
    undone: list[str] = []

    async def opening() -> str:
        await asyncio.sleep(0.3)
        return "pool"

    async def close(made: str) -> None:
        undone.append(made)

    async def main() -> None:
        asyncio.get_running_loop().call_later(0.1, stop.handle, signal.SIGINT, None)
        with pytest.raises(Stopped):
            await stop.guard(opening(), undo=close)

    asyncio.run(main())
    assert undone == ["pool"]


def test_guard_cancels_a_step_that_would_not_end() -> None:
    stop = StopSignals()
    cancelled = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> float:
        asyncio.get_running_loop().call_later(0.1, stop.handle, signal.SIGTERM, None)
        started = time.monotonic()
        with pytest.raises(Stopped):
            await stop.guard(forever())
        return time.monotonic() - started

    took = asyncio.run(main())
    assert cancelled == [True] and took < 1.0


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a connection attempt hangs there."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_run_ends_a_pool_whose_opening_was_interrupted(silent_server: int) -> None:
    """The hang of issue 18: a psycopg pool's worker swallows the one cancellation asyncio.run
    gives it while it connects, and asyncio.run waits for it for good. `run` cancels again."""
    tasks: list[asyncio.Task[object]] = []

    async def main() -> None:
        opening = asyncio.ensure_future(open_pool(f"postgresql://u:p@127.0.0.1:{silent_server}/db"))
        await asyncio.sleep(1.0)  # its worker is connecting (connect_timeout 5 s)
        tasks.extend(t for t in asyncio.all_tasks() if t is not asyncio.current_task())
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening

    started = time.monotonic()
    run(main())
    assert time.monotonic() - started < 1.0 + LEFTOVER_GRACE + 0.5
    assert tasks and all(task.done() for task in tasks), tasks


def _sleeper_ignoring_sigterm(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A child in a session of its own that ignores SIGTERM, and a grandchild of it."""
    pid_file = tmp_path / "grandchild.pid"
    script = textwrap.dedent(
        f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child did not start its own child"
        time.sleep(0.05)
    return proc, int(pid_file.read_text())


@pytest.mark.parametrize("hurried", [False, True], ids=["in-time", "hurried"])
def test_terminate_kills_what_does_not_stop_with_its_process_group(
    tmp_path: Path, hurried: bool
) -> None:
    proc, grandchild = _sleeper_ignoring_sigterm(tmp_path)
    grandchild_was = identity(grandchild)
    try:
        started = time.monotonic()
        how = terminate(proc, (signal.SIGTERM,), grace=1.0, hurried=lambda: hurried)
        took = time.monotonic() - started
        assert proc.returncode == -signal.SIGKILL
        assert how == (" (killed)" if hurried else " (killed after 1.0 s)")
        assert (took < 0.5) if hurried else (1.0 <= took < 3.0), took
        deadline = time.monotonic() + 5
        while running(grandchild_was):
            assert time.monotonic() < deadline, "the grandchild survived"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_terminate_says_nothing_of_a_clean_stop() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    assert terminate(proc, (signal.SIGTERM,), grace=10.0) == ""
    assert proc.returncode == -signal.SIGTERM
