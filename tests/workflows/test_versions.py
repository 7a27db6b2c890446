"""Versions of the subscription workflow (docs/architecture.md, "Versions").

Version 1 runs (every subscription started before versions existed) keep making their effects as
they always did — an effect activity, then a `publish` activity — until their next month-close,
which ends the run; the next run is at the current version: one local-activity commit per
decision and a new run after each month-close. Version 2 runs keep calling their activities by
their old names until their month-close; version 3 calls typed ones (one input model each).
All are exercised here on the time-skipping server: the recorded histories (test_durability)
prove the replay side, these prove the running side.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import services.subscriptions as subscription_service
from domain.billing import invoice_delay
from domain.calendar import next_period, period_of, period_start
from domain.subscription import (
    CONTINUE_AS_NEW_WINDOW,
    CURRENT_VERSION,
    SubscriptionData,
    continue_as_new_delay,
)
from services.root import build_services
from services.subscriptions import SubscriptionService, derived_subscription_id
from store import events, ledger, permissions
from store.ledger import InvoiceRow
from tests.conftest import TERMS, Workplace, advance_to, apply_for, eventually

# The month-close, then the next run: it starts within CONTINUE_AS_NEW_WINDOW of the close.
AFTER_NEXT_RUN = CONTINUE_AS_NEW_WINDOW[0] + CONTINUE_AS_NEW_WINDOW[1] + timedelta(minutes=1)


async def _history(client: Client, workflow_id: str, run_id: str) -> list[HistoryEvent]:
    run = client.get_workflow_handle(workflow_id, run_id=run_id)
    return list((await run.fetch_history()).events)


async def _data(handle: WorkflowHandle[Any, Any]) -> SubscriptionData:
    return SubscriptionData.model_validate(await handle.query("data_query"))


async def _activity_types(client: Client, workflow_id: str, run_id: str) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in await _history(client, workflow_id, run_id)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def _markers(client: Client, workflow_id: str, run_id: str) -> int:
    events = await _history(client, workflow_id, run_id)
    return sum(e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED for e in events)


async def _holders(service: SubscriptionService, subscription_id: str) -> list[str]:
    return [r.member_id for r in await permissions.usage_holders(service.pool, subscription_id)]


async def _next_run(handle: WorkflowHandle[Any, Any], first_run: str) -> str:
    """The run after `first_run` (its continue-as-new), once it has started."""

    async def new_run() -> str | None:
        run = (await handle.describe()).run_id
        return run if run != first_run else None

    found: str = await eventually(new_run, what="the next run")
    return found


async def _grant(service: SubscriptionService, wp: Workplace, member: str, grant: bool) -> None:
    await service.set_usage(
        workplace_id=wp.id,
        service_id="miricanvas",
        actor_id=wp.rep,
        member_id=member,
        grant=grant,
    )


async def test_version_1_run_keeps_its_effects_then_moves_to_version_2_at_month_close(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    workplace: Workplace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A subscription started by the code before versions: its data says version 1.
    monkeypatch.setattr(subscription_service, "CURRENT_VERSION", 1)
    status = await apply_for(service, workplace, "miricanvas")
    monkeypatch.undo()
    handle = service.handle(status.subscription_id)
    assert (await _data(handle)).version == 1
    m1, m2, m3 = workplace.members
    await _grant(service, workplace, m1, True)
    await _grant(service, workplace, m2, True)
    await _grant(service, workplace, m2, False)
    assert await _holders(service, status.subscription_id) == [m1]
    first_run = (await handle.describe()).run_id
    assert first_run is not None
    kinds = await _activity_types(env.client, handle.id, first_run)
    assert "publish" in kinds and "sync_usage_holders" in kinds and "commit" not in kinds

    period = period_of(await env.get_current_time())
    await advance_to(env, period_start(next_period(period)) + AFTER_NEXT_RUN)

    second_run = await _next_run(handle, first_run)
    assert [i.period for i in await _invoices(service, workplace)] == [period]
    assert "issue_invoice" in await _activity_types(env.client, handle.id, first_run)
    data = await _data(handle)
    assert data.version == CURRENT_VERSION == 5
    assert data.usage_holders == [m1] and data.next_invoice_period == next_period(period)

    # The current run: the same actions, written by one local-activity commit each.
    await _grant(service, workplace, m3, True)
    assert await _holders(service, status.subscription_id) == [m1, m3]
    assert await _activity_types(env.client, handle.id, second_run) == []
    assert await _markers(env.client, handle.id, second_run) >= 1
    row = await service.status(
        workplace_id=workplace.id, service_id="miricanvas", actor_id=workplace.rep
    )
    assert row.state == "active" and row.usage_permission_count == 2

    # R-EVENT-1: version 1 announced its decisions through `publish` (its invoice read back
    # from the ledger its own activity wrote), and the version-3 run goes on counting.
    async def announced() -> list[str] | None:
        async with service.pool.connection() as conn:
            rows = await events.read_feed(conn, after=None, limit=100, workplace_id=workplace.id)
        mine = [r for r in rows if r.subscription_id == status.subscription_id]
        assert [r.seq for r in mine] == list(range(1, len(mine) + 1))
        types = [r.type for r in mine]
        return types if types[-1:] == ["usage_permission.granted"] and len(types) > 6 else None

    assert await eventually(announced, what="the events of both runs") == [
        "subscription.applied",
        "subscription.activated",
        "usage_permission.granted",
        "usage_permission.granted",
        "usage_permission.revoked",
        "invoice.issued",
        "usage_permission.granted",
    ]


async def test_version_2_run_keeps_its_activities_then_moves_to_version_3(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    workplace: Workplace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A version-2 run calls its activities by their old names with positional arguments
    (activities/legacy.py) until its month-close; the next run is version 3, whose activities
    take one input model each under names of their own (activities/effects.py)."""
    monkeypatch.setattr(subscription_service, "CURRENT_VERSION", 2)
    status = await apply_for(service, workplace, "miricanvas")
    monkeypatch.undo()
    handle = service.handle(status.subscription_id)
    assert (await _data(handle)).version == 2
    m1, m2, _ = workplace.members
    await _grant(service, workplace, m1, True)
    first_run = (await handle.describe()).run_id
    assert first_run is not None
    assert await _activity_types(env.client, handle.id, first_run) == ["provision"]
    period = period_of(await env.get_current_time())
    await advance_to(env, period_start(next_period(period)) + AFTER_NEXT_RUN)

    second_run = await _next_run(handle, first_run)
    data = await _data(handle)
    assert data.version == CURRENT_VERSION == 5 and data.usage_holders == [m1]
    assert [i.period for i in await _invoices(service, workplace)] == [period]
    await _grant(service, workplace, m2, True)
    assert await _holders(service, status.subscription_id) == [m1, m2]
    await service.cancel(workplace_id=workplace.id, service_id="miricanvas", actor_id=workplace.rep)
    assert await _activity_types(env.client, handle.id, second_run) == [
        "suspend_partner_account.v3"
    ]


async def test_version_4_run_applies_with_local_activities_then_moves_to_version_5(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    workplace: Workplace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A version-4 run applied in two local activities (the record, the "applied" commit) and
    the provisioning activity; it keeps them, and its next run is version 5."""
    monkeypatch.setattr(subscription_service, "CURRENT_VERSION", 4)
    status = await apply_for(service, workplace, "miricanvas")
    monkeypatch.undo()
    handle = service.handle(status.subscription_id)
    assert (await _data(handle)).version == 4
    first_run = (await handle.describe()).run_id
    assert first_run is not None
    assert await _activity_types(env.client, handle.id, first_run) == ["provision.v3"]
    assert await _markers(env.client, handle.id, first_run) >= 3  # record, applied, activated
    roles = await permissions.management_of(service.pool, workplace.id, workplace.rep)
    assert roles.get("miricanvas")  # R-APPLY-4, recorded by the version-4 local activity
    period = period_of(await env.get_current_time())
    await advance_to(env, period_start(next_period(period)) + AFTER_NEXT_RUN)
    await _next_run(handle, first_run)
    assert (await _data(handle)).version == CURRENT_VERSION == 5
    assert [i.period for i in await _invoices(service, workplace)] == [period]


async def test_current_version_month_close_is_one_commit_and_a_new_run(
    service: SubscriptionService, env: WorkflowEnvironment, workplace: Workplace
) -> None:
    status = await apply_for(service, workplace, "miricanvas")
    handle = service.handle(status.subscription_id)
    assert (await _data(handle)).version == CURRENT_VERSION
    first_run = (await handle.describe()).run_id
    period = period_of(await env.get_current_time())
    first = period_start(next_period(period))
    delay = continue_as_new_delay(status.subscription_id)
    # The month-close at 00:00 is one workflow task in the same run: the next run waits for
    # this subscription's own instant, hours later, out of the month-end herd.
    await advance_to(env, first + delay - timedelta(minutes=1))
    await eventually(lambda: _invoices(service, workplace), what="the invoice at 00:00")
    assert (await handle.describe()).run_id == first_run
    await advance_to(env, first + delay + timedelta(minutes=1))
    assert first_run is not None
    await _next_run(handle, first_run)
    # One activity applied (the application recorded and announced, then the partner's
    # account); every other database write was a local activity.
    assert await _activity_types(env.client, handle.id, first_run) == ["apply.v5"]
    invoices = await _invoices(service, workplace)
    assert [i.period for i in invoices] == [period]
    assert invoices[0].invoice_id == f"inv-{status.subscription_id}-{period}"


async def test_spread_month_end_issues_later_on_the_first_for_the_same_days(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    workplace: Workplace,
    other_workplace: Workplace,
) -> None:
    """Issue 12: with a spread, the invoice waits for the subscription's own instant on the 1st
    and bills exactly the days, plans and seats it would have billed at 00:00 — its twin, with
    no spread and the same actions at the same instants, issues the same amount at 00:00."""
    spread = timedelta(hours=6)
    spreading = build_services(
        service.pool,
        service.client,
        service.authz.catalog,
        service.task_queue,
        clock=service.clock,
        invoice_spread=spread,
    ).subscriptions
    # A request id whose subscription lands at least an hour into the window (ids are random
    # otherwise, and a delay of seconds would not show the wait).
    request_id = next(
        rid
        for rid in (f"spread-{i}" for i in range(1000))
        if invoice_delay(derived_subscription_id(rid, workplace.id, "miricanvas"), spread)
        >= timedelta(hours=1)
    )
    status = await spreading.apply(
        workplace_id=workplace.id,
        service_id="miricanvas",
        actor_id=workplace.rep,
        plan_id=None,
        terms_version=TERMS,
        agree_terms=True,
        request_id=request_id,
    )
    twin = await apply_for(service, other_workplace, "miricanvas")
    delay = invoice_delay(status.subscription_id, spread)
    assert (await _data(spreading.handle(status.subscription_id))).invoice_delay_seconds == int(
        delay.total_seconds()
    )
    assert (await _data(service.handle(twin.subscription_id))).invoice_delay_seconds == 0
    for wp, svc in ((workplace, spreading), (other_workplace, service)):
        await _grant(svc, wp, wp.members[0], True)
    period = period_of(await env.get_current_time())
    first = period_start(next_period(period))
    await advance_to(env, first + delay / 2)
    # A seat granted on the 1st before the invoice goes out is the new month's, not the old's.
    for wp, svc in ((workplace, spreading), (other_workplace, service)):
        await _grant(svc, wp, wp.members[1], True)
    twin_invoices = await eventually(
        lambda: _invoices(service, other_workplace), what="the twin's invoice at 00:00"
    )
    assert await _invoices(service, workplace) == []
    await advance_to(env, first + delay + timedelta(minutes=1))
    invoices = await eventually(lambda: _invoices(service, workplace), what="the spread invoice")
    assert invoices[0].issued_at >= first + delay > twin_invoices[0].issued_at
    assert [i.period for i in invoices] == [i.period for i in twin_invoices] == [period]
    assert invoices[0].total == twin_invoices[0].total
    assert [x["seats"] for x in invoices[0].lines] == [x["seats"] for x in twin_invoices[0].lines]


async def _invoices(service: SubscriptionService, wp: Workplace) -> list[InvoiceRow]:
    return await ledger.invoices_for(service.pool, wp.id, "miricanvas")
