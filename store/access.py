"""Access data: management-permission writes and listings, member notices, launch-token spending.

Management permissions belong to the workplace and service, not to a subscription (R-LIFE-3), and
only admins hold them (R-PERM-4): the write locks the member's directory row so a concurrent
demotion (which drops them, R-PERM-3) cannot leave a plain member holding one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from psycopg.types.json import Jsonb

from domain.errors import BizError
from domain.events import management_event
from domain.subscription import SYSTEM_ACTOR, AuditEntry
from statemachines.lifecycle import USABLE_STATES, StateName
from store import audit, events
from store.audit import ROW as AUDIT_ROW
from store.audit import AuditRow
from store.db import Conn, Pool, columns, fetch_all, fetch_one


@dataclass(frozen=True, slots=True)
class ManagementGrant:
    """One management permission on one service (of a member the caller knows)."""

    service_id: str
    permission: str


@dataclass(frozen=True)
class ManagementChange:
    """What `set_management` changed: permissions added and removed, each sorted."""

    added: list[str]
    removed: list[str]


@dataclass(frozen=True, slots=True)
class ManagementHolder:
    """An explicit management permission with its holder's name and role."""

    service_id: str
    permission: str
    member_id: str
    granted_at: datetime
    granted_by: str | None
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class UsageHolder:
    """A usage permission (seat) with its holder's name (None: not in the directory)."""

    member_id: str
    name: str | None
    granted_at: datetime


@dataclass(frozen=True, slots=True)
class UsableSubscription:
    subscription_id: str
    service_id: str
    state: StateName


@dataclass(frozen=True, slots=True)
class NoticeRow:
    """A member notice (R-PERM-9). `details` is free-form JSON, its keys depend on `kind`."""

    notice_id: int
    workplace_id: str
    member_id: str
    kind: str
    service_id: str | None
    subscription_id: str | None
    message: str
    message_ko: str
    details: dict[str, Any]
    created_at: datetime
    dismissed_at: datetime | None


NOTICE = columns(NoticeRow)

# ── management permissions (R-PERM-3, -4, -7) ────────────────────────────────────────────────


async def drop_management_on(
    conn: Conn, workplace_id: str, member_id: str, *, at: datetime, reason: str
) -> list[ManagementGrant]:
    """Delete every management permission of a member (demotion, leaving), with one audit entry
    and one event per service, on the caller's transaction; returns what went. The caller took
    the workplace's event stream first (`events.lock_stream`)."""
    rows = await fetch_all(
        conn,
        ManagementGrant,
        "DELETE FROM management_permissions WHERE workplace_id = %s AND member_id = %s"
        " RETURNING service_id, permission",
        (workplace_id, member_id),
    )
    dropped = sorted(rows, key=lambda r: (r.service_id, r.permission))
    for service_id, grants in groupby(dropped, key=lambda r: r.service_id):
        await _record_management(
            conn,
            workplace_id=workplace_id,
            service_id=service_id,
            entry=AuditEntry(
                at=at,
                actor=SYSTEM_ACTOR,
                action="management_permissions_dropped",
                details={
                    "member_id": member_id,
                    "permissions": [g.permission for g in grants],
                    "reason": reason,
                },
            ),
        )
    return dropped


async def _record_management(
    conn: Conn, *, workplace_id: str, service_id: str, entry: AuditEntry
) -> None:
    """A management-permission change's audit entry and its event (R-EVENT-1), in the change's
    transaction. The event is keyed by the audit entry it announces ("audit:{audit_id}"), so it
    exists exactly when the change and its entry do, under an id that never changes."""
    audit_id = await audit.write(
        conn,
        event_key=None,
        at=entry.at,
        workplace_id=workplace_id,
        service_id=service_id,
        subscription_id=None,
        actor=entry.actor,
        action=entry.action,
        details=entry.details,
    )
    assert audit_id is not None  # no event key: never a conflict
    event = management_event(entry, service_id)
    await events.append(
        conn,
        event_key=f"audit:{audit_id}",
        type=event.type,
        created_at=entry.at,
        workplace_id=workplace_id,
        service_id=service_id,
        subscription_id=None,
        data=event.data,
    )


async def set_management(
    pool: Pool,
    *,
    workplace_id: str,
    service_id: str,
    member_id: str,
    permissions: list[str],
    by: str,
    at: datetime,
) -> ManagementChange:
    """Make the member's explicit permissions on the service exactly `permissions`; a change is
    audited (`management_permissions_changed`, by `by` at `at`) and announced in its transaction.

    Refuses (nothing changed) an unknown or departed member (UNKNOWN_MEMBER), a plain member
    (NOT_AN_ADMIN) and the representative admin (REPRESENTATIVE_HOLDS_ALL: they hold every
    permission implicitly).
    """
    wanted = sorted(set(permissions))
    async with pool.connection() as conn, conn.transaction():
        await events.lock_stream(conn, events.stream_of(None, workplace_id))
        member = await (
            await conn.execute(
                "SELECT role FROM members WHERE workplace_id = %s AND member_id = %s"
                " AND left_at IS NULL FOR SHARE",
                (workplace_id, member_id),
            )
        ).fetchone()
        if member is None:
            raise BizError("UNKNOWN_MEMBER", member_id=member_id)
        if member["role"] == "representative_admin":
            raise BizError("REPRESENTATIVE_HOLDS_ALL", member_id=member_id)
        if member["role"] != "admin":
            raise BizError("NOT_AN_ADMIN", member_id=member_id)
        held_rows = await (
            await conn.execute(
                "SELECT permission FROM management_permissions"
                " WHERE workplace_id = %s AND service_id = %s AND member_id = %s",
                (workplace_id, service_id, member_id),
            )
        ).fetchall()
        held = {r["permission"] for r in held_rows}
        removed = sorted(held - set(wanted))
        added = [p for p in wanted if p not in held]
        if removed:
            await conn.execute(
                "DELETE FROM management_permissions WHERE workplace_id = %s AND service_id = %s"
                " AND member_id = %s AND permission = ANY(%s)",
                (workplace_id, service_id, member_id, removed),
            )
        for permission in added:
            await conn.execute(
                "INSERT INTO management_permissions"
                " (workplace_id, service_id, member_id, permission, granted_by)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (workplace_id, service_id, member_id, permission, by),
            )
        if added or removed:
            entry = AuditEntry(
                at=at,
                actor=by,
                action="management_permissions_changed",
                details={
                    "member_id": member_id,
                    "permissions": wanted,
                    "added": added,
                    "removed": removed,
                },
            )
            await _record_management(
                conn, workplace_id=workplace_id, service_id=service_id, entry=entry
            )
    return ManagementChange(added=added, removed=removed)


async def management_holders(pool: Pool, workplace_id: str) -> list[ManagementHolder]:
    """Explicit permissions held by present admins (and the representative admin's own rows).

    Rows of plain members (there should be none) are left out: they confer nothing.
    """
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            ManagementHolder,
            "SELECT p.service_id, p.permission, p.member_id, p.granted_at, p.granted_by,"
            " m.name, m.role FROM management_permissions p JOIN members m"
            " ON m.workplace_id = p.workplace_id AND m.member_id = p.member_id"
            " WHERE p.workplace_id = %s AND m.left_at IS NULL"
            " AND m.role IN ('admin', 'representative_admin')"
            " ORDER BY p.service_id, p.permission, p.member_id",
            (workplace_id,),
        )


# ── usage permissions, read side (R-PERM-2, -8) ──────────────────────────────────────────────


async def usage_holders_named(
    pool: Pool, workplace_id: str, subscription_id: str
) -> list[UsageHolder]:
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            UsageHolder,
            "SELECT u.member_id, m.name, u.granted_at FROM usage_permissions u"
            " LEFT JOIN members m ON m.workplace_id = %s AND m.member_id = u.member_id"
            " WHERE u.subscription_id = %s ORDER BY u.member_id",
            (workplace_id, subscription_id),
        )


async def usable_subscriptions(
    pool: Pool, workplace_id: str, member_id: str, service_id: str | None = None
) -> list[UsableSubscription]:
    """Active subscriptions of the workplace on which the present member holds usage permission."""
    clauses = ""
    params: list[Any] = [workplace_id, member_id, list(USABLE_STATES)]
    if service_id is not None:
        clauses = " AND s.service_id = %s"
        params.append(service_id)
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            UsableSubscription,
            "SELECT s.subscription_id, s.service_id, s.state FROM subscriptions s"
            " JOIN usage_permissions u ON u.subscription_id = s.subscription_id"
            " JOIN members m ON m.workplace_id = s.workplace_id AND m.member_id = u.member_id"
            " WHERE s.workplace_id = %s AND u.member_id = %s AND m.left_at IS NULL"
            f" AND s.state = ANY(%s){clauses} ORDER BY s.service_id",
            params,
        )


# ── notices (R-PERM-9) ───────────────────────────────────────────────────────────────────────


async def add_notice(
    pool: Pool,
    *,
    workplace_id: str,
    member_id: str,
    kind: str,
    service_id: str | None,
    subscription_id: str | None,
    message: str,
    message_ko: str,
    details: dict[str, Any] | None = None,
    at: datetime,
) -> NoticeRow:
    async with pool.connection() as conn:
        row = await fetch_one(
            conn,
            NoticeRow,
            "INSERT INTO member_notices (workplace_id, member_id, kind, service_id,"
            " subscription_id, message, message_ko, details, created_at)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {NOTICE}",
            (
                workplace_id,
                member_id,
                kind,
                service_id,
                subscription_id,
                message,
                message_ko,
                Jsonb(details or {}),
                at,
            ),
        )
        assert row is not None
        return row


async def notices_for(
    pool: Pool, workplace_id: str, member_id: str, limit: int = 20
) -> list[NoticeRow]:
    """The member's notices not dismissed, newest first."""
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            NoticeRow,
            f"SELECT {NOTICE} FROM member_notices WHERE workplace_id = %s AND member_id = %s"
            " AND dismissed_at IS NULL ORDER BY created_at DESC, notice_id DESC LIMIT %s",
            (workplace_id, member_id, limit),
        )


# ── launch tokens (R-PERM-8) ─────────────────────────────────────────────────────────────────


async def spend_launch_token(
    pool: Pool,
    *,
    jti: str,
    workplace_id: str,
    member_id: str,
    service_id: str,
    expires_at: datetime,
) -> bool:
    """True the first time a jti is spent, False on every later attempt."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO spent_launch_tokens (jti, workplace_id, member_id, service_id, expires_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (jti) DO NOTHING",
            (jti, workplace_id, member_id, service_id, expires_at),
        )
        return cur.rowcount == 1


async def forget_expired_launch_tokens(pool: Pool, before: datetime) -> int:
    """Spent jtis of tokens that expired before `before` can no longer be replayed anyway."""
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM spent_launch_tokens WHERE expires_at < %s", (before,))
        return cur.rowcount


# ── audit log, newest entries ────────────────────────────────────────────────────────────────


async def recent_audit(
    pool: Pool, workplace_id: str, service_id: str | None, limit: int
) -> list[AuditRow]:
    """The latest `limit` entries of the workplace (optionally one service), oldest first."""
    clause = ""
    params: list[Any] = [workplace_id]
    if service_id is not None:
        clause = " AND service_id = %s"
        params.append(service_id)
    params.append(limit)
    async with pool.connection() as conn:
        rows = await fetch_all(
            conn,
            AuditRow,
            f"SELECT {AUDIT_ROW} FROM audit_log WHERE workplace_id = %s{clause}"
            " ORDER BY at DESC, audit_id DESC LIMIT %s",
            params,
        )
    return list(reversed(rows))
