"""The reconciler (issue 11): each kind of drift is repaired once, audited once, counted.

- a reservation with no workflow (the process applying died between taking the slot and
  starting the workflow; the subscription shows `applied` and nothing else would move it);
- a read-model row behind its workflow (written stale here, as a restore would leave it);
- an active partner account of an ended subscription (re-activated here, as a restored
  partner would have it), and one of a subscription nobody knows.

Real PostgreSQL and the time-skipping server.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from services.reconcile import (
    reconcile_partner_accounts,
    reconcile_read_model,
    reconcile_reservations,
)
from services.subscriptions import SubscriptionService
from starter.temporal import partner_gateway
from store import audit, subscriptions
from store.db import Pool
from tests.conftest import TERMS, Workplace, apply_for, eventually
from tests.partner_sandbox import session_partner

ROOT = Path(__file__).resolve().parents[2]


async def orphan(pool: Pool, wp: Workplace, svc: str, *, age: timedelta) -> str:
    """A reservation whose workflow was never started, made `age` ago."""
    sub = f"sub_{uuid.uuid4().hex[:20]}"
    assert await subscriptions.reserve(
        pool,
        subscription_id=sub,
        workplace_id=wp.id,
        service_id=svc,
        plan_id=f"{svc}-standard",
        applicant_id=wp.rep,
        terms_version=TERMS,
    )
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE subscriptions SET requested_at = requested_at - %s WHERE subscription_id = %s",
            (age, sub),
        )
    return sub


async def audited(pool: Pool, wp: Workplace, action: str) -> list[tuple[str | None, str]]:
    """(subscription, by whom) of the workplace's audit entries of one action."""
    entries = await audit.entries(pool, wp.id, limit=1000)
    return [(e.subscription_id, e.details["by"]) for e in entries if e.action == action]


async def resumed(pool: Pool, wp: Workplace) -> list[tuple[str | None, str]]:
    return await audited(pool, wp, "reservation_resumed")


async def test_the_reconciler_starts_an_orphaned_reservation_once(
    service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    young = await orphan(pool, workplace, "juju", age=timedelta(seconds=5))
    report = await reconcile_reservations(service, workplace_id=workplace.id)
    assert report.model_dump() == {"examined": 0, "started": 0, "already_running": 0, "failed": 0}
    assert (await subscriptions.by_id(pool, young)).state == "applied"  # may still be starting
    await subscriptions.release(pool, young)

    sub = await orphan(pool, workplace, "miricanvas", age=timedelta(minutes=2))
    report = await reconcile_reservations(service, workplace_id=workplace.id)
    assert (report.examined, report.started, report.failed) == (1, 1, 0)

    async def active() -> bool:
        row = await subscriptions.by_id(pool, sub)
        return row is not None and row.state == "active"

    await eventually(active, what="the resumed subscription to activate")
    assert await resumed(pool, workplace) == [(sub, "reconciler")]
    again = await reconcile_reservations(service, workplace_id=workplace.id)
    assert again.started == 0 and again.examined == 0  # it published: no longer a reservation
    assert await resumed(pool, workplace) == [(sub, "reconciler")]


async def test_a_reservation_whose_workflow_exists_is_counted_not_started_again(
    service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """The workflow was started but has not published yet (say its worker is slow)."""
    sub = await orphan(pool, workplace, "juju", age=timedelta(minutes=2))
    row = await subscriptions.by_id(pool, sub)
    assert row is not None
    # two reconcilers at once (two workers): one start, the other finds it
    first, second = await asyncio.gather(
        service.ensure_started(row, by="reconciler"), service.ensure_started(row, by="reconciler")
    )
    assert sorted([first, second]) in (["exists", "started"], ["started", "started"])
    assert await service.ensure_started(row, by="reconciler") == "exists"
    assert len(await resumed(pool, workplace)) == 1  # audited once per subscription


async def test_the_cli_reconciles_and_prints_counts(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    database_url: str,
    task_queue: str,
    workplace: Workplace,
) -> None:
    sub = await orphan(pool, workplace, "tudy", age=timedelta(minutes=2))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.cli",
        "reconcile",
        "--workplace",
        workplace.id,
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    counts = json.loads(out)
    assert counts["reservations"] == {
        "examined": 1,
        "started": 1,
        "already_running": 0,
        "failed": 0,
    }
    assert counts["read_model"] == dict.fromkeys(
        ("examined", "repaired", "in_step", "ahead", "workflow_missing", "failed"), 0
    )
    # the started subscription's account may already be at the partner (examined, live)
    partner_accounts = counts["partner_accounts"]
    assert partner_accounts["examined"] in (0, 1)
    assert partner_accounts == {
        **dict.fromkeys(("suspended", "unknown", "failed"), 0),
        "examined": partner_accounts["examined"],
    }

    async def active() -> bool:
        row = await subscriptions.by_id(pool, sub)
        return row is not None and row.state == "active"

    await eventually(active, what="the subscription the CLI resumed to activate")
    assert await resumed(pool, workplace) == [(sub, "reconciler")]


# ── read-model rows that disagree with their workflow ────────────────────────────────────────


async def rewrite_row(pool: Pool, sub: str, *, state: str, seq_delta: int, age: timedelta) -> int:
    """Write the row as a restore would leave it: another state, another seq, last updated
    `age` ago. Returns the seq the workflow published last (the row's before the rewrite)."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "UPDATE subscriptions s SET state = %s, status_seq = s.status_seq + %s,"
                " updated_at = now() - %s FROM subscriptions old"
                " WHERE s.subscription_id = %s AND old.subscription_id = s.subscription_id"
                " RETURNING old.status_seq AS seq",
                (state, seq_delta, age, sub),
            )
        ).fetchone()
    assert row is not None
    return int(row["seq"])


async def test_rows_behind_their_workflow_are_repaired_once_and_others_left_alone(
    service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    # A plan change whose end was never published: stuck in a transient state for 10 minutes.
    changing = (await apply_for(service, workplace, "juju")).subscription_id
    published = await rewrite_row(
        pool, changing, state="plan_changing", seq_delta=-1, age=timedelta(minutes=10)
    )
    # A cancellation never published: the row says active, quiet for 41 days.
    cancelled = (await apply_for(service, workplace, "cartax")).subscription_id
    await service.cancel(workplace_id=workplace.id, service_id="cartax", actor_id=workplace.rep)
    cancelled_seq = await rewrite_row(
        pool, cancelled, state="active", seq_delta=-1, age=timedelta(days=41)
    )
    # A row ahead of its workflow (say, the workflow was reset): never rewound.
    ahead = (await apply_for(service, workplace, "tudy")).subscription_id
    ahead_seq = await rewrite_row(
        pool, ahead, state="plan_changing", seq_delta=5, age=timedelta(minutes=10)
    )
    # A young row in a transient state: its workflow may be about to publish; not looked at.
    young = (await apply_for(service, workplace, "miricanvas")).subscription_id
    await rewrite_row(pool, young, state="plan_changing", seq_delta=-1, age=timedelta(minutes=1))

    report = await reconcile_read_model(service, workplace_id=workplace.id)
    assert report.model_dump() == {
        "examined": 3,
        "repaired": 2,
        "in_step": 0,
        "ahead": 1,
        "workflow_missing": 0,
        "failed": 0,
    }
    row = await subscriptions.by_id(pool, changing)
    assert (row.state, row.status_seq) == ("active", published)
    row = await subscriptions.by_id(pool, cancelled)
    assert (row.state, row.status_seq) == ("cancelled", cancelled_seq)
    assert row.cancelled_at is not None and row.data_deletion_at is not None
    row = await subscriptions.by_id(pool, ahead)
    assert (row.state, row.status_seq) == ("plan_changing", ahead_seq + 5)
    assert (await subscriptions.by_id(pool, young)).state == "plan_changing"
    repaired = sorted(await audited(pool, workplace, "read_model_repaired"))
    assert repaired == sorted([(changing, "reconciler"), (cancelled, "reconciler")])
    entry = next(
        e
        for e in await audit.entries(pool, workplace.id, "juju")
        if e.action == "read_model_repaired"
    )
    assert entry.details == {
        "by": "reconciler",
        "state": "active",
        "previous_state": "plan_changing",
        "seq": published,
        "previous_seq": published - 1,
    }

    # A second pass does nothing: the repaired rows are fresh, so not suspects any more…
    again = await reconcile_read_model(service, workplace_id=workplace.id)
    assert (again.examined, again.repaired, again.ahead) == (1, 0, 1)  # only the one ahead
    # …and compared anyway (an operator's full pass), they agree with their workflow.
    full = await reconcile_read_model(service, workplace_id=workplace.id, everything=True)
    assert (full.examined, full.repaired, full.in_step, full.ahead) == (4, 1, 2, 1)  # young's
    assert len(await audited(pool, workplace, "read_model_repaired")) == 3
    last = await reconcile_read_model(service, workplace_id=workplace.id, everything=True)
    assert (last.repaired, last.in_step) == (0, 3)
    assert len(await audited(pool, workplace, "read_model_repaired")) == 3
    await rewrite_row(pool, ahead, state="active", seq_delta=-5, age=timedelta(0))  # clean up


async def test_a_row_whose_workflow_temporal_does_not_know_is_counted_not_touched(
    service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    sub = await orphan(pool, workplace, "juju", age=timedelta(minutes=10))
    await rewrite_row(pool, sub, state="plan_changing", seq_delta=3, age=timedelta(minutes=10))
    report = await reconcile_read_model(service, workplace_id=workplace.id)
    assert (report.examined, report.workflow_missing, report.repaired) == (1, 1, 0)
    assert (await subscriptions.by_id(pool, sub)).state == "plan_changing"
    assert await audited(pool, workplace, "read_model_repaired") == []
    await rewrite_row(pool, sub, state="applied", seq_delta=-3, age=timedelta(0))
    await subscriptions.release(pool, sub)


# ── partner accounts with no live subscription ───────────────────────────────────────────────


async def account_status(sub: str) -> str | None:
    return await session_partner().account_status(sub)


async def test_active_accounts_of_ended_subscriptions_are_suspended_once(
    service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    partner = partner_gateway(pool)
    live = (await apply_for(service, workplace, "juju")).subscription_id
    ended = (await apply_for(service, workplace, "cartax")).subscription_id
    await service.cancel(workplace_id=workplace.id, service_id="cartax", actor_id=workplace.rep)
    assert await account_status(ended) == "suspended"  # the workflow suspended it
    unknown = f"sub_{uuid.uuid4().hex[:20]}"
    # the account is active again (a restored partner), the cancellation 2 minutes old
    await session_partner().set_account_status(ended, "active")
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE subscriptions SET updated_at = now() - interval '2 minutes'"
            " WHERE subscription_id = %s",
            (ended,),
        )
    # an account the read model has never heard of, made at the partner over the protocol
    await partner.provision(
        subscription_id=unknown,
        workplace_id=workplace.id,
        service_id="tudy",
        plan_id="tudy-standard",
        at_iso=datetime.now(UTC).isoformat(),
    )
    try:
        report = await reconcile_partner_accounts(service, partner, workplace_id=workplace.id)
        assert report.model_dump() == {"examined": 3, "suspended": 1, "unknown": 1, "failed": 0}
        assert await account_status(ended) == "suspended"
        assert await account_status(live) == "active"
        assert await account_status(unknown) == "active"  # not ours: untouched
        suspended = [("partner_account_suspended", ended, "reconciler")]
        assert [
            (e.action, e.subscription_id, e.details["by"])
            for e in await audit.entries(pool, workplace.id, limit=1000)
            if e.action == "partner_account_suspended"
        ] == suspended

        again = await reconcile_partner_accounts(service, partner, workplace_id=workplace.id)
        assert again.model_dump() == {"examined": 2, "suspended": 0, "unknown": 1, "failed": 0}
        assert len(await audited(pool, workplace, "partner_account_suspended")) == 1
    finally:
        await partner.delete_data(subscription_id=unknown)


async def test_an_account_of_a_subscription_ended_just_now_is_left_to_its_workflow(
    service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """Its workflow publishes `cancelled` before it suspends the account: within the grace the
    reconciler does not race it."""
    ended = (await apply_for(service, workplace, "juju")).subscription_id
    await service.cancel(workplace_id=workplace.id, service_id="juju", actor_id=workplace.rep)
    await session_partner().set_account_status(ended, "active")
    report = await reconcile_partner_accounts(
        service, partner_gateway(pool), workplace_id=workplace.id
    )
    assert (report.examined, report.suspended) == (1, 0)
    assert await account_status(ended) == "active"
    await reconcile_partner_accounts(
        service, partner_gateway(pool), workplace_id=workplace.id, grace=timedelta(0)
    )
    assert await account_status(ended) == "suspended"
