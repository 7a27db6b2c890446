"""Reconciliation (issue 11): repair what a crash or a restore can leave behind, audit it, count it.

Three kinds of drift, each repaired at most once, audited once, counted in `ReconcileOut`:

**A reservation with no workflow.** The process applying died between taking the slot
(R-LIFE-1) and starting the workflow, or Temporal was unreachable when it tried. The subscription
shows `applied` and nothing would move it. `reconcile_reservations` finds reservations older than
a minute whose workflow never published and starts the workflow unless it exists (the same start
an application or a retried application would make: `SubscriptionService.ensure_started`,
audited once per subscription as `reservation_resumed`).

**A read-model row that disagrees with its workflow.** The workflow is the truth and publishes
every change with an increasing `seq` (`store.subscriptions.publish` never writes over a newer
row), and its publish activity retries until it succeeds, so a row falls behind only when
something outside that path touched it: a database restored from a backup, a hand edit, a
publication lost with the database. `reconcile_read_model` asks the workflow's `status` query
and, when the snapshot is newer than the row, writes the snapshot through the same `publish`
(forward only; a row with an equal or higher seq is never overwritten) and audits
`read_model_repaired` once per (subscription, seq). A row newer than its workflow (a reset
workflow counting from an older seq) is logged and counted as `ahead`, never rewound.

*Which rows are compared, and why not all of them.* Asking every workflow every minute costs
one query (a workflow task, possibly a replay) per subscription per minute. Temporal's
visibility (`list_workflows` on `SubscriptionState`) would compare states in one listing, but it
is eventually consistent, carries the state and plan but not the seq (so a missed seat change or
invoice publication would not show), and Temporal's time-skipping test server does not implement
it at all. The read model itself says which rows are suspect, in one indexed query per pass:
- rows in a **transient state** (`applied` after publication, `plan_changing`) not updated for
  `STALE_AFTER` (5 min): a workflow leaves those within seconds, unless the partner is slow,
  in which case the query answers the same seq and nothing is written;
- rows in any state but `purged` not updated for `QUIET_FOR` (40 days): every active or cancelled
  workflow publishes at least monthly (the invoice on the 1st, the purge 30 days after
  cancellation), so a row quiet for longer has missed something, or its workflow is stuck, which
  the log then says every pass;
- at most `DRIFT_LIMIT` rows per pass, least recently updated first.
`purged` rows are final: the workflow has ended and never changes them again. An operator who
restored the database runs `python -m starter.cli reconcile --all`, which compares every
published, unpurged row once.

**A partner account with no live subscription.** Cancellation suspends the partner account
(R-CANCEL-1) through the same activity that retries until it succeeds, so an active account of an
ended subscription means a suspension was lost (a restored partner, a hand edit, a partner that
re-activated it). `reconcile_partner_accounts` lists the partner's active accounts, and suspends
those whose subscription is `cancelled` or `purged` (a partner refusal ends in `cancelled` too)
with the same gateway call the workflow makes, auditing `partner_account_suspended` once per
subscription. An account whose subscription changed within the last minute is left alone (its
workflow is probably suspending it right now). An account whose subscription the read model
does not know is counted and logged, never suspended or deleted: it is not ours to judge.

Run by `python -m starter.cli reconcile` (prints the counts as JSON), and every minute by each
worker process (worker.py, `reconcile_periodically`). A worker-side loop rather than a Temporal
schedule: the repair is a workflow start or query plus read-model queries, which is the service
layer's job; a scheduled workflow would have to do it from an activity, below the service layer,
and it would stop exactly when the worker or Temporal is the thing that is down. Every worker runs
it: each repair is idempotent (a start by workflow id, a forward-only write, an idempotent
suspension, audit entries keyed by event), so several replicas only repeat cheap queries; two
passes racing on the same row may both count it, but it is written and audited once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import BizError
from domain.subscription import SYSTEM_ACTOR, Publication, StatusSnapshot
from partners.gateway import PartnerGateway
from services.models import (
    PartnerAccountsReconciled,
    ReadModelReconciled,
    ReconcileOut,
    ReservationsReconciled,
)
from services.subscriptions import ORPHAN_GRACE, SubscriptionService
from statemachines.lifecycle import ENDED_STATES
from store import audit, subscriptions
from store import reconcile as store
from store.subscriptions import SubscriptionRow
from workflows.subscription import SubscriptionWorkflow

log = logging.getLogger(__name__)

MIN_AGE = ORPHAN_GRACE  # younger reservations may still be starting
STALE_AFTER = timedelta(minutes=5)  # a transient state held this long is suspect
QUIET_FOR = timedelta(days=40)  # longer than any gap between two publications of a workflow
DRIFT_LIMIT = 200  # rows compared with their workflow per pass at most


async def reconcile(
    service: SubscriptionService,
    partner: PartnerGateway,
    *,
    older_than: timedelta = MIN_AGE,
    workplace_id: str | None = None,
    everything: bool = False,
) -> ReconcileOut:
    """One full pass: reservations, then read-model rows, then partner accounts.

    Each part counts its own per-item failures and moves on; a part that cannot even list what
    to look at (PostgreSQL or the partner down) raises, and the next pass tries again."""
    reservations = await reconcile_reservations(
        service, older_than=older_than, workplace_id=workplace_id
    )
    read_model = await reconcile_read_model(
        service, workplace_id=workplace_id, everything=everything
    )
    accounts = await reconcile_partner_accounts(service, partner, workplace_id=workplace_id)
    return ReconcileOut(reservations=reservations, read_model=read_model, partner_accounts=accounts)


async def reconcile_reservations(
    service: SubscriptionService,
    *,
    older_than: timedelta = MIN_AGE,
    workplace_id: str | None = None,
) -> ReservationsReconciled:
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
            log.warning("reservation %s left for the next pass: %r", row.subscription_id, err)
            continue
        if outcome == "started":
            started += 1
        else:
            running += 1
    report = ReservationsReconciled(
        examined=len(rows), started=started, already_running=running, failed=failed
    )
    if report.started or report.failed:
        log.warning("reconciled reservations: %s", report.model_dump())
    return report


async def reconcile_read_model(
    service: SubscriptionService,
    *,
    stale_after: timedelta = STALE_AFTER,
    quiet_for: timedelta = QUIET_FOR,
    limit: int = DRIFT_LIMIT,
    workplace_id: str | None = None,
    everything: bool = False,
) -> ReadModelReconciled:
    """Compare suspect rows with their workflow's snapshot; bring rows that are behind forward."""
    rows = await store.drift_candidates(
        service.pool,
        stale_after_seconds=stale_after.total_seconds(),
        quiet_for_seconds=quiet_for.total_seconds(),
        limit=limit,
        workplace_id=workplace_id,
        everything=everything,
    )
    counts = {"repaired": 0, "in_step": 0, "ahead": 0, "workflow_missing": 0, "failed": 0}
    for row in rows:
        counts[await _compare(service, row)] += 1
    report = ReadModelReconciled(examined=len(rows), **counts)
    if report.repaired or report.ahead or report.workflow_missing or report.failed:
        log.warning("reconciled the read model: %s", report.model_dump())
    return report


async def _compare(service: SubscriptionService, row: SubscriptionRow) -> str:
    sub = row.subscription_id
    try:
        snapshot: StatusSnapshot = await service.handle(sub).query(
            SubscriptionWorkflow.status, rpc_timeout=timedelta(seconds=service.temporal_deadline)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            log.warning("subscription %s (%s) has no workflow in Temporal", sub, row.state)
            return "workflow_missing"
        log.warning("subscription %s left for the next pass: %r", sub, err)
        return "failed"
    except WorkflowQueryFailedError as err:
        log.warning("subscription %s: its status query failed: %r", sub, err)
        return "failed"
    if snapshot.seq == row.status_seq:
        if row.state != snapshot.state:  # only a hand edit keeps the seq and moves the state
            log.warning(
                "subscription %s: row says %s at seq %d, its workflow %s; not rewritten (same seq)",
                sub,
                row.state,
                snapshot.seq,
                snapshot.state,
            )
        return "in_step"
    if snapshot.seq < row.status_seq:
        log.warning(
            "subscription %s: row at seq %d is ahead of its workflow (seq %d); left as it is",
            sub,
            row.status_seq,
            snapshot.seq,
        )
        return "ahead"
    await subscriptions.publish(service.pool, Publication(snapshot=snapshot))
    fresh = await subscriptions.by_id(service.pool, sub)
    if fresh is None or fresh.status_seq != snapshot.seq:
        return "in_step"  # the workflow published a newer one meanwhile: nothing left to repair
    log.warning(
        "repaired subscription %s: %s (seq %d) → %s (seq %d)",
        sub,
        row.state,
        row.status_seq,
        snapshot.state,
        snapshot.seq,
    )
    at = await service.clock()
    async with service.pool.connection() as conn:
        await audit.write(
            conn,
            event_key=f"{sub}:read_model_repaired:{snapshot.seq}",
            at=at,
            workplace_id=row.workplace_id,
            service_id=row.service_id,
            subscription_id=sub,
            actor=SYSTEM_ACTOR,
            action="read_model_repaired",
            details={
                "by": "reconciler",
                "state": snapshot.state,
                "previous_state": row.state,
                "seq": snapshot.seq,
                "previous_seq": row.status_seq,
            },
        )
    return "repaired"


async def reconcile_partner_accounts(
    service: SubscriptionService,
    partner: PartnerGateway,
    *,
    grace: timedelta = ORPHAN_GRACE,
    workplace_id: str | None = None,
) -> PartnerAccountsReconciled:
    """Suspend the active partner accounts of ended subscriptions; count unknown ones."""
    accounts = await partner.active_accounts(workplace_id=workplace_id)
    rows = await store.rows_by_id(service.pool, [a.subscription_id for a in accounts])
    suspended = unknown = failed = 0
    for account in accounts:
        sub = account.subscription_id
        row = rows.get(sub)
        if row is None:
            unknown += 1
            log.warning(
                "partner account %s (%s, %s) has no subscription here; left untouched",
                sub,
                account.workplace_id,
                account.service_id,
            )
            continue
        if row.state not in ENDED_STATES or datetime.now(UTC) - row.updated_at < grace:
            continue  # live, or just ended: its workflow suspends it itself
        at = await service.clock()
        try:
            await partner.suspend(subscription_id=sub, at_iso=at.isoformat())
        except Exception as err:  # a partner's fault of any kind: the next pass tries again
            failed += 1
            log.warning("partner account %s left for the next pass: %r", sub, err)
            continue
        suspended += 1
        log.warning("suspended the partner account of %s subscription %s", row.state, sub)
        async with service.pool.connection() as conn:
            await audit.write(
                conn,
                event_key=f"{sub}:partner_account_suspended",
                at=at,
                workplace_id=row.workplace_id,
                service_id=row.service_id,
                subscription_id=sub,
                actor=SYSTEM_ACTOR,
                action="partner_account_suspended",
                details={"by": "reconciler", "state": row.state},
            )
    report = PartnerAccountsReconciled(
        examined=len(accounts), suspended=suspended, unknown=unknown, failed=failed
    )
    if report.suspended or report.unknown or report.failed:
        log.warning("reconciled partner accounts: %s", report.model_dump())
    return report


async def reconcile_periodically(
    service: SubscriptionService,
    partner: PartnerGateway,
    stop: asyncio.Event,
    *,
    every: timedelta = MIN_AGE,
) -> None:
    """A reconciliation pass every `every` until `stop` is set; a failed pass (PostgreSQL,
    Temporal or the partner down) is logged and the next one tries again."""
    while not stop.is_set():
        try:
            await reconcile(service, partner)
        except Exception as err:
            log.warning("reconciliation pass failed, next in %s: %r", every, err)
        try:
            await asyncio.wait_for(stop.wait(), every.total_seconds())
        except TimeoutError:
            pass
