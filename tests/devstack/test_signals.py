"""Ctrl-C and SIGTERM at any moment of `make run`'s start-up (README, "Stopping").

The real launcher (`python -m devstack.stack`, what `make run` starts) on free ports and a fresh
temporary DATA_DIR gets SIGINT or SIGTERM at a point of its start-up told by the line it prints
there, and must end by that signal within 10 s, having stopped every process it started. It is
also started as a shell starts a background job (SIGINT ignored) and signalled through its
process group, as a Ctrl-C in a terminal or a script's `kill -INT -- -PGID` would.

"Every process it started" is looked for two ways: its descendants in /proc just before the
signal, and afterwards every process whose environment names this test's DATA_DIR (everything
the launcher starts inherits it, so a process started after the snapshot, or orphaned and
re-parented, is found too).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.embedded import EmbeddedPostgres, free_port
from devstack.process import identity, running, stop_leftovers
from devstack.stack import STOP_SIGNALS
from settings import REPO_ROOT

# The lines the launcher prints at each point of its start-up (devstack/stack.py).
POINTS = {
    "postgres": "embedded PostgreSQL on",
    "temporal": "Temporal dev server on",
    "worker": "worker started",
    "api": "API on",
    "ready": "Ctrl-C stops everything.",
}
START_TIMEOUT = 120.0  # to reach a point (two busy cores: PostgreSQL's initdb, Temporal, seeding)
EXIT_WITHIN = 10.0


class Launcher:
    """One launcher on its own DATA_DIR and ports, its output collected line by line."""

    def __init__(self, *, sigint_ignored: bool = False, sandbox: bool = False) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="bizsupport-signals-"))
        env = {
            **os.environ,
            "DATA_DIR": str(self.data),
            "API_PORT": str(free_port()),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "TEMPORAL_UI_PORT": str(free_port()),
            "SANDBOX_PARTNER_PORT": str(free_port()),
            "WORKER_METRICS_PORT": "0",  # the worker's SDK metrics would take the fixed 9464
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("DATABASE_URL", "SANDBOX", "BIZSUPPORT_AUTH_SECRET"):
            env.pop(name, None)
        for name in [n for n in env if n.startswith("BIZSUPPORT_PARTNER_")]:
            env.pop(name)  # every service goes to the stack's own sandbox partner
        if sandbox:
            env["SANDBOX"] = "1"

        def as_a_background_job() -> None:  # what a POSIX shell does for `cmd &`
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.stack"],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to signal as a terminal would
            preexec_fn=as_a_background_job if sigint_ignored else None,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    @property
    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_for_line(self, text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with self.changed:
            while not any(text in line for line in self.lines):
                if self.proc.poll() is not None and not self.reader.is_alive():
                    pytest.fail(f"the launcher exited before {text!r}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no {text!r} within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")
                self.changed.wait(timeout=0.5)

    def descendants(self) -> dict[int, tuple[dict[str, int], int]]:
        """The launcher's descendants now: pid → (identity, parent pid), from /proc."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found: dict[int, tuple[dict[str, int], int]] = {}
        frontier = [self.proc.pid]
        while frontier:
            parent = frontier.pop()
            for pid, ppid in parents.items():
                if ppid == parent and pid not in found:
                    who = identity(pid)
                    if who is not None:
                        found[pid] = (who, ppid)
                        frontier.append(pid)
        return found

    def processes_of_this_data_dir(self) -> list[str]:
        """Every live process whose environment names this DATA_DIR, as `pid command`."""
        needle = f"DATA_DIR={self.data}\0".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes() and identity(int(entry.name)):
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                    found.append(f"{entry.name} {command.decode(errors='replace')[:120]}")
            except OSError:
                continue
        return found

    def recorded_children(self) -> dict[str, dict[str, int]]:
        try:
            children: dict[str, dict[str, int]] = json.loads(
                (self.data / "stack.json").read_text()
            )["children"]
        except (OSError, ValueError, KeyError):
            return {}
        return children

    def log_tail(self, chars: int = 3000) -> str:
        parts = [f"--- launcher\n{self.output[-chars:]}"]
        for log in sorted((self.data / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def destroy(self) -> None:
        """Whatever the test found, leave nothing running and remove DATA_DIR and its cluster."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        stop_leftovers(self.recorded_children(), STOP_SIGNALS, timeout=5)
        for line in self.processes_of_this_data_dir():  # started by this launcher, nothing else
            pid = int(line.split()[0])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for cluster in (self.data / "postgres", self.data / "sandbox" / "postgres"):
            EmbeddedPostgres(cluster).destroy()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def launchers() -> Iterator[list[Launcher]]:
    made: list[Launcher] = []
    try:
        yield made
    finally:
        for launcher in made:
            launcher.destroy()


def stop_and_check(launcher: Launcher, sig: signal.Signals, *, group: bool = False) -> float:
    """Send `sig` (to the launcher's process group with `group`), then check that it ends by
    that signal within EXIT_WITHIN seconds and that nothing it started still runs. Returns how
    long it took."""
    before = launcher.descendants()
    recorded = launcher.recorded_children()
    sent = time.monotonic()
    if group:
        os.killpg(launcher.proc.pid, sig)
    else:
        launcher.proc.send_signal(sig)
    try:
        code = launcher.proc.wait(timeout=EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_WITHIN:.0f} s after {sig.name}:\n{launcher.log_tail()}")
    took = time.monotonic() - sent
    launcher.reader.join(timeout=5)
    said = launcher.output
    assert code == -sig, f"exit status {code}, not by {sig.name}:\n{launcher.log_tail()}"
    assert f"stopped by {sig.name}: every process it started has ended" in said, said
    assert "Traceback" not in said, said

    # What it started itself is gone the moment it has ended; what those started (PostgreSQL's
    # backends) goes with them, within a moment.
    direct = [who for who, parent in before.values() if parent == launcher.proc.pid]
    assert direct or not recorded, before  # the snapshot did see its children
    assert not [who for who in direct if running(who)], (direct, said)
    assert not [who for who in recorded.values() if running(who)], (recorded, said)
    deadline = time.monotonic() + 2.0
    while True:
        left = [who for who, _ in before.values() if running(who)]
        strays = launcher.processes_of_this_data_dir()
        if not left and not strays:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"left running after {sig.name}: {left} {strays}\n{said}")
        time.sleep(0.1)
    assert not (launcher.data / "stack.json").exists()  # a clean stop removes it
    return took


# Every point of start-up gets a signal, and each signal several points (the background-job
# cases below add SIGINT during imports and after Temporal). One handler records either signal,
# so the full cross product (ten launches) would add a minute to the suite and no new path.
STOPS = [
    ("postgres", signal.SIGINT),
    ("temporal", signal.SIGTERM),
    ("worker", signal.SIGINT),
    ("api", signal.SIGTERM),
    ("ready", signal.SIGINT),
    ("ready", signal.SIGTERM),
]


@pytest.mark.parametrize(("point", "sig"), STOPS, ids=[f"{p}-{s.name}" for p, s in STOPS])
def test_a_stop_signal_at_any_point_of_start_up_stops_everything(
    launchers: list[Launcher], point: str, sig: signal.Signals
) -> None:
    launcher = Launcher()
    launchers.append(launcher)
    launcher.wait_for_line(POINTS[point])
    took = stop_and_check(launcher, sig)
    print(f"{point} {sig.name}: ended {took:.2f} s after the signal")


@pytest.mark.parametrize("point", ["imports", "temporal"])
def test_ctrl_c_reaches_a_launcher_started_as_a_background_job(
    launchers: list[Launcher], point: str
) -> None:
    """SIGINT inherited as ignored (a shell's `make run &`), then a Ctrl-C to the process group:
    while it imports (before anything starts), and later in its start-up."""
    launcher = Launcher(sigint_ignored=True)
    launchers.append(launcher)
    if point == "imports":
        time.sleep(0.3)  # python has started; the launcher's imports take about a second
    else:
        launcher.wait_for_line(POINTS[point])
    took = stop_and_check(launcher, signal.SIGINT, group=True)
    print(f"background job, {point}: ended {took:.2f} s after the signal")
    if point == "imports":
        assert POINTS["postgres"] not in launcher.output, launcher.output


def test_ctrl_c_stops_the_sandbox_during_its_start_up(launchers: list[Launcher]) -> None:
    """`SANDBOX=1 make run` (devstack/sandbox.py) in the background, a Ctrl-C to its process
    group once its time-skipping server runs: that server (which the SDK starts in the
    launcher's process group, so the Ctrl-C reaches it too) goes, and so does everything else."""
    launcher = Launcher(sigint_ignored=True, sandbox=True)
    launchers.append(launcher)
    launcher.wait_for_line("time-skipping Temporal server on")
    took = stop_and_check(launcher, signal.SIGINT, group=True)
    print(f"sandbox: ended {took:.2f} s after the signal")
