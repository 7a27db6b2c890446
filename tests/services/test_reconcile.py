"""The reconciler (issue 11): a reservation with no workflow is started once, audited, counted.

The process applying died between taking the slot and starting the workflow; the subscription
shows `applied` and nothing else would move it. Real PostgreSQL and the time-skipping server.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from services.reconcile import reconcile_reservations
from services.subscriptions import SubscriptionService
from store import audit, subscriptions
from store.db import Pool
from tests.conftest import TERMS, Workplace, eventually

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


async def resumed(pool: Pool, wp: Workplace) -> list[tuple[str, str]]:
    entries = await audit.entries(pool, wp.id, limit=1000)
    return [
        (e["subscription_id"], e["details"]["by"])
        for e in entries
        if e["action"] == "reservation_resumed"
    ]


async def test_the_reconciler_starts_an_orphaned_reservation_once(
    service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    young = await orphan(pool, workplace, "juju", age=timedelta(seconds=5))
    report = await reconcile_reservations(service, workplace_id=workplace.id)
    assert report.model_dump() == {"examined": 0, "started": 0, "already_running": 0, "failed": 0}
    assert (await subscriptions.by_id(pool, young))["state"] == "applied"  # may still be starting
    await subscriptions.release(pool, young)

    sub = await orphan(pool, workplace, "miricanvas", age=timedelta(minutes=2))
    report = await reconcile_reservations(service, workplace_id=workplace.id)
    assert (report.examined, report.started, report.failed) == (1, 1, 0)

    async def active() -> bool:
        row = await subscriptions.by_id(pool, sub)
        return row is not None and row["state"] == "active"

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
    assert counts == {"examined": 1, "started": 1, "already_running": 0, "failed": 0}

    async def active() -> bool:
        row = await subscriptions.by_id(pool, sub)
        return row is not None and row["state"] == "active"

    await eventually(active, what="the subscription the CLI resumed to activate")
    assert await resumed(pool, workplace) == [(sub, "reconciler")]
