"""R-EVENT-4 on the time-skipping server: a cancelled subscription's admins are told 7 days and
1 day before its data deletion (R-CANCEL-2), each notice once, then the data goes. A version-3
run cancelled under this code sends them too, through the "deletion-notices" patch (recorded
in its history only because it was cancelled with a deletion ahead; test_durability replays the
histories without it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import services.subscriptions as subscription_service
from domain.calendar import SEOUL, days_in_month, next_period, period_of, period_start
from domain.subscription import SubscriptionData
from services.subscriptions import SubscriptionService
from store import audit, subscriptions
from store.audit import AuditRow
from store.db import Pool
from tests.conftest import Workplace, advance, advance_to, apply_for, eventually


async def _notices(pool: Pool, wp: Workplace, svc: str) -> list[AuditRow]:
    entries = await audit.entries(pool, wp.id, svc, limit=1000)
    return [e for e in entries if e.action == "deletion_upcoming"]


async def _notice_count(pool: Pool, wp: Workplace, svc: str, count: int) -> list[AuditRow]:
    found = await _notices(pool, wp, svc)
    return found if len(found) >= count else []


async def _purged(pool: Pool, subscription_id: str) -> bool:
    row = await subscriptions.by_id(pool, subscription_id)
    return row is not None and row.state == "purged"


async def _patched(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], run_id: str) -> bool:
    """Whether the run's history records the "deletion-notices" patch marker."""
    history = await env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
    return any(
        e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and b"deletion-notices" in e.SerializeToString()
        for e in history.events
    )


def _at_instant(sent: datetime, due: datetime) -> bool:
    """Sent at its instant (business time; its timer fires a workflow task after it)."""
    return due <= sent < due + timedelta(minutes=1)


async def _live_through_deletion(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    workplace: Workplace,
    svc: str,
    subscription_id: str,
) -> tuple[datetime, list[AuditRow]]:
    """Cancel now; 23 days on the 7-day notice, 6 more the 1-day one, 1 more the deletion."""
    cancelled = await service.cancel(
        workplace_id=workplace.id, service_id=svc, actor_id=workplace.rep
    )
    assert cancelled.data_deletion_at is not None
    deletion = cancelled.data_deletion_at
    assert await _notices(pool, workplace, svc) == []

    await advance(env, timedelta(days=23))
    (seven,) = await eventually(
        lambda: _notice_count(pool, workplace, svc, 1), what="the 7-day notice"
    )
    assert seven.details["days_left"] == 7 and seven.actor == "system"
    assert datetime.fromisoformat(seven.details["data_deletion_at"]) == deletion
    assert _at_instant(seven.at, deletion - timedelta(days=7))

    await advance(env, timedelta(days=6))
    notices = await eventually(
        lambda: _notice_count(pool, workplace, svc, 2), what="the 1-day notice"
    )
    assert [n.details["days_left"] for n in notices] == [7, 1]
    assert _at_instant(notices[1].at, deletion - timedelta(days=1))
    assert not await _purged(pool, subscription_id)

    await advance(env, timedelta(days=1))
    await eventually(lambda: _purged(pool, subscription_id), what="the deletion")
    return deletion, await _notices(pool, workplace, svc)


async def test_notices_7_days_and_1_day_before_the_deletion_each_once(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    status = await apply_for(service, workplace, "miricanvas")
    handle = service.handle(status.subscription_id)
    assert SubscriptionData.model_validate(await handle.query("data_query")).version >= 4
    _, notices = await _live_through_deletion(
        service, env, pool, workplace, "miricanvas", status.subscription_id
    )
    assert [n.details["days_left"] for n in notices] == [7, 1]  # each exactly once
    assert all(n.details["state"] == "cancelled" for n in notices)
    row = await subscriptions.by_id(pool, status.subscription_id)
    assert row is not None and row.status_seq >= 5  # the notices reached the read model too


async def test_a_version_3_run_cancelled_now_gets_the_notices_through_the_patch(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    workplace: Workplace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A version-3 run applied for and cancelled early on the 1st of a 31-day month: notices
    # and deletion all come before its month-close, in that same run (no new run at version 4).
    period = next_period(period_of(await env.get_current_time()))
    while days_in_month(period) != 31:
        period = next_period(period)
    start = period_start(period) + timedelta(hours=1)
    await advance_to(env, start)
    monkeypatch.setattr(subscription_service, "CURRENT_VERSION", 3)
    status = await apply_for(service, workplace, "cartax")
    monkeypatch.undo()
    handle = service.handle(status.subscription_id)
    first_run = (await handle.describe()).run_id
    assert first_run is not None
    assert SubscriptionData.model_validate(await handle.query("data_query")).version == 3
    assert not await _patched(env, handle, first_run)

    deletion, notices = await _live_through_deletion(
        service, env, pool, workplace, "cartax", status.subscription_id
    )
    assert deletion.astimezone(SEOUL).month == start.astimezone(SEOUL).month
    assert [n.details["days_left"] for n in notices] == [7, 1]
    assert (await handle.describe()).run_id == first_run  # no new run: the patch sent them
    assert await _patched(env, handle, first_run)
