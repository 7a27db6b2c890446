"""Processes of the dev stack: ports, child processes, signals and what the launcher says."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.stopping import POLL, StopSignals, within
from settings import REPO_ROOT, open_private_log

if TYPE_CHECKING:
    from store.db import Pool


def say(message: str) -> None:
    try:
        print(f"[bizsupport] {message}", flush=True)
    except OSError:
        pass  # the terminal is gone (SIGHUP): the launcher goes on stopping what it started


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_ports(ports: dict[str, int]) -> None:
    busy = [
        f"{name} port {port}" for name, port in ports.items() if not port_free("127.0.0.1", port)
    ]
    if busy:
        raise SystemExit(
            f"[bizsupport] cannot start: {', '.join(busy)} already in use "
            "(another `make run`?). Stop it, or choose other ports: API_PORT, TEMPORAL_ADDRESS"
            " (host:port) and TEMPORAL_UI_PORT."
        )


class Children:
    """Processes this launcher started: restarted when they die (with backoff, and saying so),
    stopped in reverse order at the end, only these."""

    FIRST_DELAY = 1.0  # seconds before the first restart; doubles while it keeps dying
    MAX_DELAY = 30.0
    STEADY = 60.0  # a child up this long has recovered: its next restart is quick again

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.started_at: dict[str, float] = {}
        self.delay: dict[str, float] = {}
        self.retry_at: dict[str, float] = {}
        self.restarts: dict[str, int] = {}
        self.watched: dict[str, tuple[Callable[[], int | None], Callable[[], None]]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = self._spawn(name, argv, env)
        self.procs.append((name, proc))
        self.commands[name] = (argv, env)
        return proc

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open_private_log(self.logs / f"{name}.log")
        self.started_at[name] = time.monotonic()
        return subprocess.Popen(
            argv,
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def watch(self, name: str, poll: Callable[[], int | None], restart: Callable[[], None]) -> None:
        """Supervise something this launcher runs itself (embedded PostgreSQL) like a child."""
        self.watched[name] = (poll, restart)
        self.started_at[name] = time.monotonic()

    def check(self) -> None:
        """Restart whatever died, after a delay that doubles while it keeps dying: the worker's
        work is resumed by Temporal, the API is stateless, the Temporal dev server comes back on
        the same SQLite file and PostgreSQL on the same data directory."""
        for index, (name, proc) in enumerate(self.procs):

            def respawn(index: int = index, name: str = name) -> None:
                self.procs[index] = (name, self._spawn(name, *self.commands[name]))

            self._supervise(name, proc.poll(), respawn)
        for name, (poll, restart) in self.watched.items():
            self._supervise(name, poll(), restart)

    def _supervise(self, name: str, code: int | None, restart: Callable[[], None]) -> None:
        if code is None:
            return
        now = time.monotonic()
        if name not in self.retry_at:
            lived = now - self.started_at[name]
            delay = self.FIRST_DELAY if lived >= self.STEADY else self.delay.get(name, 0.0)
            delay = min(max(delay * 2, self.FIRST_DELAY), self.MAX_DELAY)
            self.delay[name] = delay
            self.retry_at[name] = now + delay
            say(f"{name} exited with {code}; starting it again in {delay:.0f} s")
        if now >= self.retry_at[name]:
            del self.retry_at[name]
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.started_at[name] = now
            try:
                restart()
            except Exception as err:  # e.g. its port still taken: try again later
                self.retry_at[name] = now + self.delay[name]
                say(f"{name} could not start again ({err}); trying again")
                return
            say(f"{name} started again (restart {self.restarts[name]})")

    def pids(self) -> dict[str, int]:
        """The pid of each child as it runs now (a restart gives it a new one)."""
        return {name: proc.pid for name, proc in self.procs}

    def stop(
        self,
        until: float | None = None,
        hurried: Callable[[], bool] = lambda: False,
        after: int = 0,
    ) -> None:
        """Stop every child still running, the last started first, by `until` (time.monotonic;
        STOP_TIME from now by default): each gets SIGTERM and its share of the time left
        (`share_of`), then is killed. `after`: how many more processes the caller stops within
        the same time once these are done."""
        if until is None:
            until = time.monotonic() + STOP_TIME
        alive = [(name, proc) for name, proc in reversed(self.procs) if proc.poll() is None]
        for index, (name, proc) in enumerate(alive):
            seconds = share_of(until, len(alive) - index + after)
            say(f"stopped {name}{terminate(proc, (signal.SIGTERM,), seconds, hurried)}")


# Stopping: from a stop signal to the launcher's end, what it started gets STOP_TIME in all, so
# that the launcher ends within 10 s. A process gets at most GRACE seconds to end by itself, less
# when that time (its deadline, shared by everything still to stop) runs short.
STOP_TIME = 8.0
GRACE = 5.0
MIN_GRACE = 0.5
KILL_WAIT = 1.0  # after each further signal: SIGQUIT (PostgreSQL's immediate shutdown), SIGKILL


def share_of(until: float, count: int) -> float:
    """The time one of `count` processes still to stop gets, `until` being the deadline."""
    return max(MIN_GRACE, min(GRACE, (until - time.monotonic()) / max(count, 1)))


def terminate(
    proc: subprocess.Popen[bytes],
    signals: Sequence[signal.Signals],
    grace: float,
    hurried: Callable[[], bool] = lambda: False,
) -> str:
    """End `proc`: its first signal and `grace` seconds, then each further one and KILL_WAIT
    seconds, then SIGKILL to its whole process group (children run in sessions of their own, so
    the group is the child and whatever it started). A hurried stop skips the waiting. Returns
    "" for a clean stop, else how it ended, to say."""
    for index, sig in enumerate(signals):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        if _ended(proc, grace if index == 0 else KILL_WAIT, hurried):
            return "" if index == 0 else f" ({sig.name} after {grace:.1f} s)"
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()  # a child that left its process group
    proc.wait()
    return " (killed)" if hurried() else f" (killed after {grace:.1f} s)"


def _ended(proc: subprocess.Popen[bytes], seconds: float, hurried: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        if hurried() or time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


POOL_CLOSE_TIME = 1.0  # for the launcher's own database pool


async def close_pool(pool: Pool) -> None:
    """Close the launcher's pool, before the servers it talks to go, without letting it hold the
    stop up (its tasks are then left to devstack.stopping.run's clean-up)."""
    if not await within(POOL_CLOSE_TIME + 1, pool.close(timeout=POOL_CLOSE_TIME)):
        say("the launcher's database pool did not close in time; left to the process's end")


def wait_for_port(
    port: int,
    what: str,
    proc: subprocess.Popen[bytes],
    timeout: float = 60,
    stop: StopSignals | None = None,
) -> None:
    """Until `proc` listens on `port`; with `stop`, a stop signal ends the wait (Stopped)."""
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start (code {proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not open port {port} in {timeout:.0f} s")
        (time.sleep if stop is None else stop.sleep)(0.2)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def wait_for_signal(stop: StopSignals, failed: Callable[[], bool]) -> None:
    """Until a stop signal (Ctrl-C, SIGTERM); `failed` is polled each second and ends the wait
    when true."""
    polled = 0.0
    while not stop.requested:
        if time.monotonic() - polled >= 1.0:
            if failed():
                return
            polled = time.monotonic()
        await asyncio.sleep(POLL)


# ── processes a dead launcher left behind ────────────────────────────────────────────────────


def identity(pid: int) -> dict[str, int] | None:
    """`{"pid", "started"}` of a running process, `started` being its start time in clock ticks
    since boot (/proc/<pid>/stat): with it a later process given the same pid is not taken for
    this one. None when no such process runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its ")".
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return {"pid": pid, "started": int(fields[19])}  # field 22: starttime


def running(recorded: Any) -> bool:
    """Whether the process `identity` once described still runs (same pid, same start time)."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("pid"), int):
        return False
    return identity(recorded["pid"]) == recorded


def stop_leftovers(
    children: dict[str, Any], signals: dict[str, signal.Signals], timeout: float = 20.0
) -> list[str]:
    """Stop the children (name → identity, in start order) a launcher recorded and left running
    when it died without stopping them (SIGKILL, out of memory): the last started first, each
    with its own stop signal (default SIGTERM), killed if it has not ended within `timeout`.
    Returns the names stopped. Only processes whose pid and start time both match are signalled,
    so nothing that merely reuses a pid is touched."""
    stopped = []
    for name, recorded in reversed(list(children.items())):
        if not running(recorded):
            continue
        say(f"stopping {name} (pid {recorded['pid']}), left running by a launcher that died")
        with contextlib.suppress(ProcessLookupError):  # it ended by itself meanwhile
            os.kill(recorded["pid"], signals.get(name, signal.SIGTERM))
        deadline = time.monotonic() + timeout
        while running(recorded) and time.monotonic() < deadline:
            time.sleep(0.1)
        if running(recorded):
            with contextlib.suppress(ProcessLookupError):  # it ended by itself meanwhile
                os.kill(recorded["pid"], signal.SIGKILL)
            while running(recorded):
                time.sleep(0.05)
        stopped.append(name)
    return stopped
