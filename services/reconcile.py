"""Reconciliation (issue 11): repair what a crash can leave behind, audit it, count it.

A reservation with no workflow: the process applying died between taking the slot (R-LIFE-1) and
starting the workflow, or Temporal was unreachable when it tried. The subscription shows `applied`
and nothing would move it. `reconcile_reservations` finds reservations older than a minute whose
workflow never published and starts the workflow unless it exists (the same start an application
or a retried application would make: `SubscriptionService.ensure_started`, audited once per
subscription as `reservation_resumed`). Safe to run anywhere and concurrently: the start uses the
subscription's workflow id and takes an existing workflow as the same one.

Run by `python -m starter.cli reconcile`, and every minute by each worker process (worker.py,
`reconcile_periodically`). A worker-side loop rather than a Temporal schedule: the repair is a
workflow start plus a read-model query, which is the service layer's job; a scheduled workflow
would have to do it from an activity, below the service layer, and it would stop exactly when
the worker or Temporal is the thing that is down. Every worker runs it: the passes are
idempotent, so several replicas only repeat a cheap query.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.service import RPCError

from domain.errors import BizError
from services.models import ReconcileOut
from services.subscriptions import ORPHAN_GRACE, SubscriptionService
from store import subscriptions

log = logging.getLogger(__name__)

MIN_AGE = ORPHAN_GRACE  # younger reservations may still be starting


async def reconcile_reservations(
    service: SubscriptionService,
    *,
    older_than: timedelta = MIN_AGE,
    workplace_id: str | None = None,
) -> ReconcileOut:
    """Start the workflow of every reservation that has none; count what was done."""
    rows = await subscriptions.unstarted_reservations(
        service.pool, older_than.total_seconds(), workplace_id
    )
    started = running = failed = 0
    for row in rows:
        try:
            outcome = await service.ensure_started(row, by="reconciler")
        except (BizError, RPCError) as err:
            failed += 1
            log.warning("reservation %s left for the next pass: %r", row["subscription_id"], err)
            continue
        if outcome == "started":
            started += 1
        else:
            running += 1
    report = ReconcileOut(
        examined=len(rows), started=started, already_running=running, failed=failed
    )
    if report.started or report.failed:
        log.warning("reconciled reservations: %s", report.model_dump())
    return report


async def reconcile_periodically(
    service: SubscriptionService, stop: asyncio.Event, *, every: timedelta = MIN_AGE
) -> None:
    """A reconciliation pass every `every` until `stop` is set; a failed pass (PostgreSQL or
    Temporal down) is logged and the next one tries again."""
    while not stop.is_set():
        try:
            await reconcile_reservations(service)
        except Exception as err:
            log.warning("reconciliation pass failed, next in %s: %r", every, err)
        try:
            await asyncio.wait_for(stop.wait(), every.total_seconds())
        except TimeoutError:
            pass
