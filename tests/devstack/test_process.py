"""The dev launcher's files are private: children's logs and stack.json (it holds the database
password) are 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

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
