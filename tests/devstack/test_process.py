"""The dev launcher's files are private: children's logs and stack.json (it holds the database
password) are 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from devstack.process import Children
from settings import write_private


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
