"""The dev launcher's files are private: children's logs and stack.json (it holds the database
password) are 0600, whatever the umask."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.process import Children, identity, running, stop_leftovers
from devstack.stack import StackFile
from settings import load_settings, write_private


def test_children_logs_and_stack_file_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        children = Children(tmp_path)
        children.start("echo", [sys.executable, "-c", "print('hello')"], dict(os.environ))
        children.procs[0][1].wait(timeout=30)
        write_private(tmp_path / "stack.json", '{"database_url": "postgresql://u:secret@h/db"}')
    finally:
        os.umask(old)
    log = tmp_path / "echo.log"
    assert "hello" in log.read_text()
    for path in (log, tmp_path / "stack.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_child_that_dies_is_started_again_with_growing_delays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Supervision: whatever dies comes back, each time a little later while it keeps dying,
    and the launcher says so; a child that lives is left alone."""
    children = Children(tmp_path)
    children.FIRST_DELAY = 0.1
    dying = children.start("dying", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))
    alive = children.start("alive", [sys.executable, "-c", "import time; time.sleep(30)"], {})
    dying.wait(timeout=30)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        children.check()
        time.sleep(0.02)
    try:
        restarts = children.restarts.get("dying", 0)
        assert 2 <= restarts <= 5, restarts  # 0.1, 0.2, 0.4, 0.8 … not every 20 ms
        assert children.delay["dying"] > children.FIRST_DELAY
        assert "alive" not in children.restarts and alive.poll() is None
        said = capsys.readouterr().out
        assert "dying exited with 3; starting it again in" in said
        assert "dying started again (restart 1)" in said
    finally:
        children.stop()


def test_supervision_covers_what_the_launcher_runs_itself(tmp_path: Path) -> None:
    children = Children(tmp_path)
    children.FIRST_DELAY = 0.0
    state = {"code": 1, "restarted": 0}

    def restart() -> None:
        state["restarted"] += 1
        state["code"] = None  # type: ignore[assignment]

    children.watch("postgres", lambda: state["code"], restart)
    children.check()
    children.check()
    assert state["restarted"] == 1 and children.restarts["postgres"] == 1


def test_a_dead_launchers_children_are_stopped_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A launcher killed outright leaves its children running (each in its own session); the
    next launcher stops those stack.json lists, and only if pid and start time both match."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    left = subprocess.Popen(sleeper, start_new_session=True)
    other = subprocess.Popen(sleeper, start_new_session=True)
    try:
        recorded = identity(left.pid)
        assert recorded is not None and running(recorded)
        same_pid_later = identity(other.pid)
        assert same_pid_later is not None
        same_pid_later["started"] -= 1  # as if the recorded process ended and its pid was reused
        stopped = stop_leftovers({"worker": recorded, "api": same_pid_later}, {}, timeout=10)
        assert stopped == ["worker"]
        assert left.wait(timeout=10) == -signal.SIGTERM
        assert other.poll() is None  # not ours: untouched
        assert not running(recorded)
        assert "stopping worker (pid" in capsys.readouterr().out
    finally:
        for proc in (left, other):
            proc.kill()
            proc.wait()


def test_a_second_launcher_on_a_running_stacks_data_dir_refuses_to_start(tmp_path: Path) -> None:
    running_one = StackFile(tmp_path / "stack.json", load_settings())
    running_one.write()  # names this (live) process as its launcher
    with pytest.raises(SystemExit, match=r"another launcher \(pid \d+\) runs on"):
        StackFile(tmp_path / "stack.json", load_settings()).take_over()
    assert (tmp_path / "stack.json").exists()


def test_the_sandboxs_stack_file_is_left_alone(tmp_path: Path) -> None:
    sandbox = '{"database_url": "postgresql://u:secret@h/db", "temporal_address": "h:1"}'
    write_private(tmp_path / "stack.json", sandbox)
    StackFile(tmp_path / "stack.json", load_settings()).take_over()
    assert (tmp_path / "stack.json").read_text() == sandbox
