"""The subscriptions read model: reservation (R-LIFE-1), publication, queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import psycopg
from psycopg.types.json import Jsonb

from domain.errors import BizError
from domain.events import subscription_event
from domain.subscription import Application, Publication
from statemachines.lifecycle import LIVE_STATES, StateName
from store import events, ledger, permissions
from store.db import Conn, Pool, columns, fetch_all, fetch_one

_LIVE = list(LIVE_STATES)  # passed as a parameter: `state = ANY(%s)`


class LastPlanChange(TypedDict):
    """`last_plan_change` (jsonb): the Seoul month of the last plan change and its notice."""

    period: str | None
    # `domain.subscription.PlanChangeNotice` as JSON; rows written before version 3 hold its
    # English sentence, which the model still reads.
    notice: dict[str, str] | str | None


class ScheduledPlanChangeJson(TypedDict):
    """`scheduled_plan_change` (jsonb): `domain.subscription.ScheduledPlanChange` as JSON."""

    plan_id: str
    at: str
    confirm_course_reset: bool
    requested_by: str


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """A row of the subscriptions read model (migrations/001_core.sql)."""

    subscription_id: str
    workplace_id: str
    service_id: str
    state: StateName
    plan_id: str
    applicant_id: str
    terms_version: str
    requested_at: datetime
    applied_at: datetime | None
    activated_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    next_plan_change_at: datetime | None
    scheduled_plan_change: ScheduledPlanChangeJson | None
    last_plan_change: LastPlanChange | None
    data_deletion_at: datetime | None
    final_invoice_at: datetime | None
    purged_at: datetime | None
    usage_permission_count: int
    status_seq: int
    updated_at: datetime


ROW = columns(SubscriptionRow)


async def reserve(
    pool: Pool,
    *,
    subscription_id: str,
    workplace_id: str,
    service_id: str,
    plan_id: str,
    applicant_id: str,
    terms_version: str,
) -> bool:
    """Take the (workplace, service) slot before the workflow starts; a second live one fails.

    False when a subscription with this id exists already: a retried application whose id is
    derived from its Idempotency-Key finds its own earlier reservation."""
    try:
        async with pool.connection() as conn:
            inserted = await (
                await conn.execute(
                    "INSERT INTO subscriptions (subscription_id, workplace_id, service_id, state,"
                    " plan_id, applicant_id, terms_version)"
                    " VALUES (%s, %s, %s, 'applied', %s, %s, %s)"
                    " ON CONFLICT (subscription_id) DO NOTHING RETURNING subscription_id",
                    (
                        subscription_id,
                        workplace_id,
                        service_id,
                        plan_id,
                        applicant_id,
                        terms_version,
                    ),
                )
            ).fetchone()
    except psycopg.errors.UniqueViolation as err:
        raise BizError("ALREADY_SUBSCRIBED", service_id=service_id) from err
    return inserted is not None


async def release(pool: Pool, subscription_id: str) -> None:
    """Undo a reservation whose workflow never started (nothing else refers to it yet)."""
    async with pool.connection() as conn:
        await conn.execute(
            "DELETE FROM subscriptions WHERE subscription_id = %s AND status_seq = 0",
            (subscription_id,),
        )


async def unstarted_reservations(
    pool: Pool, older_than_seconds: float, workplace_id: str | None = None
) -> list[SubscriptionRow]:
    """Reservations whose workflow has never published (`status_seq` 0) and that are older than
    the given age, of one workplace or all: a workflow start that may never have happened (the
    reconciler's input)."""
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            SubscriptionRow,
            f"SELECT {ROW} FROM subscriptions WHERE state = 'applied' AND status_seq = 0"
            " AND requested_at < now() - make_interval(secs => %s)"
            " AND (%s::text IS NULL OR workplace_id = %s)"
            " ORDER BY requested_at",
            (older_than_seconds, workplace_id, workplace_id),
        )


# A subscription left `applied` (activated or refused): what an application waits for
# (services.subscriptions, `_settled`). Only that once-per-subscription change notifies: every
# NOTIFY serialises its transaction's commit on one lock, which month-close must not pay for.
SETTLED_CHANNEL = "subscription_settled"


async def publish(pool: Pool, pub: Publication) -> None:
    """Write the workflow's snapshot (never over a newer one) and its audit entry, together."""
    async with pool.connection() as conn, conn.transaction():
        await write_publication(conn, pub)


async def commit(pool: Pool, pub: Publication) -> None:
    """One decision's writes in one transaction: the invoice, the usage holders, the snapshot
    and the audit entry. Each write is keyed (invoice per period, holders as a set, snapshot by
    sequence, audit by event key), so a repeated commit changes nothing."""
    async with pool.connection() as conn, conn.transaction():
        await commit_on(conn, pub)


async def commit_on(conn: Conn, pub: Publication) -> None:
    """`commit`'s writes, on the caller's transaction."""
    s = pub.snapshot
    if pub.invoice is not None:
        assert pub.audit is not None, "an invoice is committed with its audit entry"
        await ledger.insert_invoice(
            conn,
            subscription_id=s.subscription_id,
            workplace_id=s.workplace_id,
            service_id=s.service_id,
            invoice=pub.invoice,
            issued_at=pub.audit.at,
        )
    if pub.usage_holders is not None:
        assert pub.holders_at is not None
        await permissions.write_usage_holders(
            conn, s.subscription_id, pub.usage_holders, pub.holders_at
        )
    await write_publication(conn, pub)


async def write_publication(conn: Conn, pub: Publication) -> None:
    """The snapshot (never over a newer one) and its audit entry, on the caller's transaction."""
    s = pub.snapshot
    await conn.execute(
        "UPDATE subscriptions SET state = %s, plan_id = %s, applied_at = %s,"
        " activated_at = %s, cancelled_at = %s, cancel_reason = %s,"
        " last_plan_change = %s, scheduled_plan_change = %s, data_deletion_at = %s,"
        " final_invoice_at = %s, purged_at = %s, usage_permission_count = %s,"
        " status_seq = %s, updated_at = now()"
        " WHERE subscription_id = %s AND status_seq < %s",
        (
            s.state,
            s.plan_id,
            s.applied_at,
            s.activated_at,
            s.cancelled_at,
            s.cancel_reason,
            Jsonb(
                {
                    "period": s.last_plan_change_period,
                    "notice": s.plan_change_notice.model_dump() if s.plan_change_notice else None,
                }
            ),
            Jsonb(s.scheduled_plan_change.model_dump(mode="json"))
            if s.scheduled_plan_change
            else None,
            s.data_deletion_at,
            s.final_invoice_at,
            s.purged_at,
            s.usage_permission_count,
            s.seq,
            s.subscription_id,
            s.seq,
        ),
    )
    if pub.audit is not None:
        a = pub.audit
        await conn.execute(
            "INSERT INTO audit_log (event_key, at, workplace_id, service_id, subscription_id,"
            " actor, action, outcome, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (event_key) DO NOTHING",
            (
                f"{s.subscription_id}:{s.seq}",
                a.at,
                s.workplace_id,
                s.service_id,
                s.subscription_id,
                a.actor,
                a.action,
                a.outcome,
                Jsonb(a.details),
            ),
        )
        if a.details.get("previous_state") == "applied" and s.state != "applied":
            await conn.execute("SELECT pg_notify(%s, %s)", (SETTLED_CHANNEL, s.subscription_id))
        await _announce(conn, pub)


async def _announce(conn: Conn, pub: Publication) -> None:
    """R-EVENT-1: the decision's event, in the decision's transaction, keyed like its audit
    entry ("{subscription_id}:{seq}"): a repeated commit writes none and the event keeps its id.
    Every version's decisions come through here (version 1's `publish` activity as well)."""
    s, a = pub.snapshot, pub.audit
    assert a is not None
    invoice = None
    if a.action == "invoice_issued":
        invoice = await _shown_invoice(conn, pub)
    event = subscription_event(a, s, invoice)
    if event is None:
        return
    await events.append(
        conn,
        event_key=f"{s.subscription_id}:{s.seq}",
        type=event.type,
        created_at=a.at,
        workplace_id=s.workplace_id,
        service_id=s.service_id,
        subscription_id=s.subscription_id,
        data=event.data,
    )


async def _shown_invoice(conn: Conn, pub: Publication) -> dict[str, Any]:
    """The month's invoice as `GET …/invoices` shows it, read from the ledger in this
    transaction: written just before by this commit (version 2 on) or by version 1's own
    `issue_invoice` activity before its `publish`."""
    assert pub.audit is not None
    s = pub.snapshot
    period = pub.invoice.period if pub.invoice is not None else str(pub.audit.details["period"])
    row = await ledger.invoice_of(conn, s.subscription_id, period)
    if row is None:
        raise LookupError(f"invoice_issued without an invoice: {s.subscription_id} {period}")
    return row.shown()


async def current(pool: Pool, workplace_id: str, service_id: str) -> SubscriptionRow | None:
    """The live subscription, else the latest one (API: GET …/subscription)."""
    async with pool.connection() as conn:
        return await fetch_one(
            conn,
            SubscriptionRow,
            f"SELECT {ROW} FROM subscriptions WHERE workplace_id = %s AND service_id = %s"
            " ORDER BY (state = ANY(%s)) DESC, requested_at DESC LIMIT 1",
            (workplace_id, service_id, _LIVE),
        )


async def by_id(pool: Pool, subscription_id: str) -> SubscriptionRow | None:
    async with pool.connection() as conn:
        return await fetch_one(
            conn,
            SubscriptionRow,
            f"SELECT {ROW} FROM subscriptions WHERE subscription_id = %s",
            (subscription_id,),
        )


async def for_workplace(pool: Pool, workplace_id: str) -> list[SubscriptionRow]:
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            SubscriptionRow,
            f"SELECT {ROW} FROM subscriptions WHERE workplace_id = %s"
            " ORDER BY service_id, requested_at",
            (workplace_id,),
        )


async def live_for_workplace(pool: Pool, workplace_id: str) -> list[SubscriptionRow]:
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            SubscriptionRow,
            f"SELECT {ROW} FROM subscriptions WHERE workplace_id = %s AND state = ANY(%s)",
            (workplace_id, _LIVE),
        )


async def live_of_services(
    pool: Pool, workplace_id: str, service_ids: Sequence[str]
) -> list[SubscriptionRow]:
    """Live subscriptions of the workplace on the given services."""
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            SubscriptionRow,
            f"SELECT {ROW} FROM subscriptions WHERE workplace_id = %s AND state = ANY(%s)"
            " AND service_id = ANY(%s)",
            (workplace_id, _LIVE, list(service_ids)),
        )


async def live_held_by(
    pool: Pool, workplace_id: str, member_id: str, or_services: Sequence[str] = ()
) -> list[SubscriptionRow]:
    """Live subscriptions of the workplace on which the member holds usage permission (as the
    read model mirrors it), together with every live one on ``or_services``."""
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            SubscriptionRow,
            f"SELECT {columns(SubscriptionRow, 's')} FROM subscriptions s"
            " WHERE s.workplace_id = %s AND s.state = ANY(%s)"
            " AND (s.service_id = ANY(%s) OR EXISTS (SELECT 1 FROM usage_permissions u"
            " WHERE u.subscription_id = s.subscription_id AND u.member_id = %s))",
            (workplace_id, _LIVE, list(or_services), member_id),
        )


async def record_application(conn: Conn, app: Application, at: datetime) -> datetime | None:
    """On the caller's transaction: who agreed to which terms, once per subscription (R-APPLY-2),
    and the applicant's management role (R-APPLY-4). Returns when the previous subscription to
    the same service by the same workplace was cancelled (R-BILL-2)."""
    await conn.execute(
        "INSERT INTO terms_agreements (subscription_id, workplace_id, service_id,"
        " terms_version, agreed_by, agreed_at) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (subscription_id) DO NOTHING",
        (
            app.subscription_id,
            app.workplace_id,
            app.service_id,
            app.terms_version,
            app.applicant_id,
            at,
        ),
    )
    await permissions.grant_manager(
        conn, app.workplace_id, app.service_id, app.applicant_id, by=app.applicant_id
    )
    return await _predecessor_cancelled_at(conn, app.subscription_id)


async def _predecessor_cancelled_at(conn: Conn, subscription_id: str) -> datetime | None:
    row = await (
        await conn.execute(
            "SELECT max(p.cancelled_at) AS at FROM subscriptions s JOIN subscriptions p"
            " ON p.workplace_id = s.workplace_id AND p.service_id = s.service_id"
            " AND p.subscription_id <> s.subscription_id AND p.activated_at IS NOT NULL"
            " WHERE s.subscription_id = %s AND p.requested_at < s.requested_at",
            (subscription_id,),
        )
    ).fetchone()
    at: datetime | None = row["at"] if row else None
    return at
