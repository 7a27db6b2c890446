"""Long life (R-LIFE-5): continue-as-new keeps the whole state; recorded histories still replay.

Recorded histories: `ubob_full_life.json` is a whole version-1 life (recorded before versions
existed, by the code of commit bb02659); `ubob_v2_run*.json` are the runs of a version-2 life,
`ubob_v3_run*.json` of a version-3 life, `ubob_v4_run*.json` of a version-4 life with its
deletion notices, and `ubob_v5_run*.json` of a version-5 life (each month-close starts a new
run). A change to the workflow must replay all of them; never re-record or edit one to make a
change pass (docs/architecture.md, "Versions").
`BIZSUPPORT_RECORD_HISTORIES=1 pytest tests/workflows/test_durability.py` records the current
version's life into new files, for a new version only.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain.catalog import default_catalog
from domain.subscription import CURRENT_VERSION, SubscriptionData
from services.root import build_services
from services.subscriptions import SubscriptionService
from store import audit, subscriptions
from tests.conftest import Workplace, advance, eventually
from workflows.subscription import SubscriptionWorkflow

HISTORIES = Path(__file__).parent / "histories"
# The subscription workflow's recordings (the endpoint workflow's are webhook_*.json).
SUBSCRIPTION_HISTORIES = "ubob_*.json"
TERMS = "2026-01-01"


async def test_continue_as_new_keeps_state(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    workplace: Workplace,
) -> None:
    """R-LIFE-5: with a small history limit the workflow continues as new, state intact."""
    small = build_services(
        service.pool,
        service.client,
        default_catalog(),
        service.task_queue,
        clock=service.clock,
        history_event_limit=60,
    ).subscriptions
    status = await small.apply(
        workplace_id=workplace.id,
        service_id="miricanvas",
        actor_id=workplace.rep,
        plan_id=None,
        terms_version=TERMS,
        agree_terms=True,
    )
    handle = small.handle(status.subscription_id)
    first_run = (await handle.describe()).run_id
    for _ in range(4):
        for member in workplace.members:
            await small.set_usage(
                workplace_id=workplace.id,
                service_id="miricanvas",
                actor_id=workplace.rep,
                member_id=member,
                grant=True,
            )
        await small.set_usage(
            workplace_id=workplace.id,
            service_id="miricanvas",
            actor_id=workplace.rep,
            member_id=workplace.members[0],
            grant=False,
        )
    latest = await eventually(
        lambda: _run_changed(handle, first_run), what="a continued-as-new run"
    )
    assert latest != first_run
    data = SubscriptionData.model_validate(await handle.query("data_query"))
    assert data.usage_holders == sorted(workplace.members[1:])
    assert data.state == "active"
    # round one grants three and revokes one; later rounds re-grant and revoke one (no-ops skip)
    assert data.billing is not None and len(data.billing.seat_events) == 4 + 3 * 2
    seq = data.event_seq
    # the new run keeps serving actions and timers
    await small.set_usage(
        workplace_id=workplace.id,
        service_id="miricanvas",
        actor_id=workplace.rep,
        member_id=workplace.members[0],
        grant=True,
    )
    row = await subscriptions.by_id(service.pool, status.subscription_id)
    assert row.usage_permission_count == 3 and row.status_seq == seq + 1
    keys = [e.event_key for e in await audit.entries(service.pool, workplace.id, "miricanvas")]
    assert len(keys) == len(set(keys))  # every audit entry once, across runs
    await small.cancel(workplace_id=workplace.id, service_id="miricanvas", actor_id=workplace.rep)
    await advance(env, timedelta(days=62))
    await eventually(lambda: _closed(handle), what="workflow completion after the new runs")


async def _run_changed(handle, first_run: str) -> str | None:
    run_id = (await handle.describe()).run_id
    return run_id if run_id != first_run else None


async def _closed(handle) -> bool:
    description = await handle.describe()
    return description.status is not None and description.status.name == "COMPLETED"


async def test_recorded_histories_replay() -> None:
    """Workflow changes that would break running subscriptions fail here (determinism)."""
    files = sorted(HISTORIES.glob(SUBSCRIPTION_HISTORIES))
    assert files, "no recorded histories: record them (see the module docstring)"
    replayer = Replayer(workflows=[SubscriptionWorkflow], data_converter=pydantic_data_converter)
    for path in files:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        await replayer.replay_workflow(history)


@pytest.mark.skipif(not os.environ.get("BIZSUPPORT_RECORD_HISTORIES"), reason="recording only")
async def test_record_history(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    workplace: Workplace,
) -> None:
    """Full ubob life: apply, plan change, seats, cancel, invoice, purge; saved for replay."""
    status = await service.apply(
        workplace_id=workplace.id,
        service_id="ubob",
        actor_id=workplace.rep,
        plan_id="ubob-basic",
        terms_version=TERMS,
        agree_terms=True,
    )
    await advance(env, timedelta(days=1))
    await service.change_plan(
        workplace_id=workplace.id,
        service_id="ubob",
        actor_id=workplace.rep,
        plan_id="ubob-standard",
    )
    await service.change_plan(
        workplace_id=workplace.id,
        service_id="ubob",
        actor_id=workplace.rep,
        plan_id="ubob-premium",
        when="next_window",
    )
    await advance(env, timedelta(days=35))
    await service.cancel(workplace_id=workplace.id, service_id="ubob", actor_id=workplace.rep)
    await advance(env, timedelta(days=40))
    handle = service.handle(status.subscription_id)
    await eventually(lambda: _closed(handle), what="completion")
    runs = []
    run_id: str | None = (await handle.describe()).run_id
    while run_id:  # from the last run back to the first, through continue-as-new
        history = await env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
    version = CURRENT_VERSION
    for number, history in enumerate(reversed(runs), start=1):
        path = HISTORIES / f"ubob_v{version}_run{number}.json"
        assert not path.exists(), f"{path.name} is recorded already: never re-record a version"
        path.write_text(history.to_json())
