"""The kill matrix of issue 11 (docs/faults.md): the real dev stack (devstack.stack: embedded
PostgreSQL, Temporal dev server, worker, API) under a burst of admin actions through its HTTP
API, one process SIGKILLed per scenario, then: every accepted request's effect exactly once,
workflow state = read model, one partner account per live subscription, no duplicate audit entry
or invoice, no Idempotency-Key left in progress, no reservation without a workflow, nothing left
in a transient state; and every event delivered to a real webhook receiver in the test process,
signed, once after dedup by webhook-id, in seq order per subscription (tests/faults/hooks.py).
The sandbox partner server is killed too (its accounts are read through its admin endpoint). The
scenarios share one stack and run in this order; the launcher's kill starts the launcher again on
the same DATA_DIR.

`FAULTS_BURST=200` runs a larger burst per scenario (default 24 requests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.faults.hooks import MatrixHooks
from tests.faults.matrix import Matrix, run_scenario
from tests.faults.stack import DevStack


@pytest.fixture(scope="module")
async def matrix(stack: DevStack) -> AsyncIterator[Matrix]:
    """The stack and its webhook receiver, registered before the first scenario."""
    hooks = await MatrixHooks.register(stack)
    try:
        yield Matrix(stack, hooks)
    finally:
        await hooks.receiver.down()


async def test_worker_killed_three_times(matrix: Matrix) -> None:
    assert await run_scenario(matrix, "worker", "worker", kills=3) == []


async def test_temporal_dev_server_killed(matrix: Matrix) -> None:
    assert await run_scenario(matrix, "temporal", "temporal") == []


async def test_postgres_killed(matrix: Matrix) -> None:
    assert await run_scenario(matrix, "postgres", "postgres") == []


async def test_api_killed(matrix: Matrix) -> None:
    assert await run_scenario(matrix, "api", "api") == []


async def test_partner_killed_twice(matrix: Matrix) -> None:
    """The sandbox partner server, mid-provision (applications) and mid-suspension
    (cancellations): its calls fail as unreachable and are retried; one account per live
    subscription, none active for an ended one. (The burst's plan change is scheduled, so no
    partner call: mid-plan-change and mid-deletion are in test_partner_clocked.py.)"""
    assert await run_scenario(matrix, "partner", "partner", kills=2) == []


async def test_launcher_killed_and_started_again(matrix: Matrix) -> None:
    assert await run_scenario(matrix, "launcher", "launcher") == []
