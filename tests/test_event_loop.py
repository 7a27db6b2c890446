"""The suite runs on the event loop production runs on (tests/conftest.py)."""

from __future__ import annotations

import asyncio

import uvloop


async def test_the_suite_runs_on_uvloop() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
