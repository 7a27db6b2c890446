"""The kill matrix's partner scenarios that need business time to pass (docs/faults.md, "The
partner and the clock"): on a sandbox stack (`SANDBOX=1 make run` on free ports), the sandbox
partner server SIGKILLed mid-plan-change (scheduled changes at their window) and mid-deletion
(30 days after cancellation), then back: every action carried out exactly once at the partner
and recorded once, nothing stuck. In this order, on one stack: the deletions are of the
subscriptions whose plans changed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.clocked import Clocked, deletion_scenario, plan_change_scenario
from tests.faults.matrix import Matrix
from tests.faults.stack import DevStack


@pytest.fixture(scope="module")
def sandbox_stack() -> Iterator[DevStack]:
    running = DevStack(sandbox=True)
    try:
        running.start()
        yield running
    finally:
        running.destroy()


@pytest.fixture(scope="module")
async def clocked(sandbox_stack: DevStack) -> Clocked:
    found = Clocked(Matrix(sandbox_stack))
    await found.set_up()
    return found


async def test_partner_killed_mid_plan_change(clocked: Clocked) -> None:
    assert await plan_change_scenario(clocked) == []


async def test_partner_killed_mid_deletion(clocked: Clocked) -> None:
    assert await deletion_scenario(clocked) == []
