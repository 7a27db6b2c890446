"""What the sandbox no longer checks in workflow code, lint does (workflows/ruff.toml).

`workflows/` is passed through the sandbox (starter/sandbox_runner.py), so the sandbox's proxies
no longer refuse a clock read, a random draw or I/O in it at run time. The rules of
workflows/ruff.toml refuse them in review and here, in the suite: the workflow code is clean of
them, and the rules do catch each kind (a file judged as if it lived in workflows/)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from settings import REPO_ROOT

RUFF = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise"]


def ruff(*args: str, source: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUFF, *args], cwd=REPO_ROOT, input=source, capture_output=True, text=True, check=False
    )


def test_the_workflow_code_reads_no_clock_draws_nothing_and_does_no_io() -> None:
    found = ruff("workflows/")
    assert found.returncode == 0, found.stdout + found.stderr


@pytest.mark.parametrize(
    ("line", "banned"),
    [
        ("from datetime import datetime\nNOW = datetime.now()", "datetime.datetime.now"),
        ("import datetime\nTODAY = datetime.date.today()", "datetime.date.today"),
        ("import time\nT = time.monotonic()", "`time`"),
        ("import asyncio\nasync def f() -> None:\n    await asyncio.sleep(1)", "asyncio.sleep"),
        ("import random\nR = random.random()", "`random`"),
        ("import uuid\nU = uuid.uuid4()", "uuid.uuid4"),
        ("import os\nE = os.environ", "`os`"),
        ("from pathlib import Path\nP = Path('x')", "`pathlib`"),
        ("import httpx\nC = httpx.Client", "`httpx`"),
        ("import psycopg\nC = psycopg.connect", "`psycopg`"),
        ("from settings import load\nS = load", "`settings`"),
        ("print('x')", "T201"),
    ],
)
def test_the_rules_catch_each_kind(line: str, banned: str) -> None:
    found = ruff("--stdin-filename", "workflows/probe.py", "-", source=line + "\n")
    assert found.returncode == 1, found.stdout + found.stderr
    assert banned in found.stdout, found.stdout
