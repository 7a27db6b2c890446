"""The audit log (R-LIFE-4, R-BILL-8): who, when, what, outcome. Never deleted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from domain.audit import AuditAction
from store.db import Conn, Pool, columns, fetch_all


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit log entry. `details` is free-form JSON: each action puts its own facts there."""

    audit_id: int
    event_key: str | None
    at: datetime
    workplace_id: str
    service_id: str | None
    subscription_id: str | None
    actor: str
    action: AuditAction
    outcome: str
    details: dict[str, Any]


ROW = columns(AuditRow)


async def write(
    conn: Conn,
    *,
    event_key: str | None,
    at: datetime,
    workplace_id: str,
    service_id: str | None,
    subscription_id: str | None,
    actor: str,
    action: AuditAction,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> int | None:
    """One audit entry, on a connection the caller holds (and may be in a transaction on): the
    new entry's id, or None when an entry with this event key exists already."""
    row = await (
        await conn.execute(
            "INSERT INTO audit_log (event_key, at, workplace_id, service_id, subscription_id,"
            " actor, action, outcome, details) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT (event_key) DO NOTHING RETURNING audit_id",
            (
                event_key,
                at,
                workplace_id,
                service_id,
                subscription_id,
                actor,
                action,
                outcome,
                Jsonb(details or {}),
            ),
        )
    ).fetchone()
    return None if row is None else int(row["audit_id"])


async def entries(
    pool: Pool,
    workplace_id: str,
    service_id: str | None = None,
    subscription_id: str | None = None,
    limit: int | None = 100,
) -> list[AuditRow]:
    """Oldest first; `limit=None`: every entry."""
    clauses = ["workplace_id = %s"]
    params: list[Any] = [workplace_id]
    if service_id is not None:
        clauses.append("service_id = %s")
        params.append(service_id)
    if subscription_id is not None:
        clauses.append("subscription_id = %s")
        params.append(subscription_id)
    params.append(limit)
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            AuditRow,
            f"SELECT {ROW} FROM audit_log WHERE {' AND '.join(clauses)}"
            " ORDER BY at, audit_id LIMIT %s",
            params,
        )
