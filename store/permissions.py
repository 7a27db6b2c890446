"""Usage permissions (seats, per subscription) and management permissions (per service)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.permissions import MANAGEMENT_PERMISSIONS
from store.db import Conn, Pool, fetch_all


@dataclass(frozen=True, slots=True)
class Seat:
    """A usage permission on a subscription."""

    member_id: str
    granted_at: datetime


async def set_usage_holders(
    pool: Pool, subscription_id: str, holders: list[str], at: datetime
) -> None:
    """Make the stored holders exactly `holders` (the workflow's set is the source of truth)."""
    async with pool.connection() as conn, conn.transaction():
        await write_usage_holders(conn, subscription_id, holders, at)


async def write_usage_holders(
    conn: Conn, subscription_id: str, holders: list[str], at: datetime
) -> None:
    """`set_usage_holders` on a connection the caller holds, inside its transaction."""
    await conn.execute(
        "DELETE FROM usage_permissions WHERE subscription_id = %s AND NOT (member_id = ANY(%s))",
        (subscription_id, holders),
    )
    await conn.execute(
        "INSERT INTO usage_permissions (subscription_id, member_id, granted_at)"
        " SELECT %s, member_id, %s FROM unnest(%s::text[]) AS member_id ON CONFLICT DO NOTHING",
        (subscription_id, at, holders),
    )


async def usage_holders(pool: Pool, subscription_id: str) -> list[Seat]:
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            Seat,
            "SELECT member_id, granted_at FROM usage_permissions WHERE subscription_id = %s"
            " ORDER BY member_id",
            (subscription_id,),
        )


async def grant_manager(
    conn: Conn, workplace_id: str, service_id: str, member_id: str, by: str
) -> None:
    """R-APPLY-4: the applicant holds every detailed management permission, stored explicitly
    (on the caller's transaction)."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO management_permissions"
            " (workplace_id, service_id, member_id, permission, granted_by)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(workplace_id, service_id, member_id, p, by) for p in MANAGEMENT_PERMISSIONS],
        )


async def management_of(pool: Pool, workplace_id: str, member_id: str) -> dict[str, set[str]]:
    """service_id → permissions the member holds explicitly."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT service_id, permission FROM management_permissions"
                " WHERE workplace_id = %s AND member_id = %s",
                (workplace_id, member_id),
            )
        ).fetchall()
    held: dict[str, set[str]] = {}
    for r in rows:
        held.setdefault(r["service_id"], set()).add(r["permission"])
    return held


async def managers(pool: Pool, workplace_id: str, service_id: str) -> list[str]:
    """Members holding every management permission on the service (the 담당자 of R-APPLY-4)."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT member_id FROM management_permissions"
                " WHERE workplace_id = %s AND service_id = %s"
                " GROUP BY member_id HAVING count(*) = %s ORDER BY member_id",
                (workplace_id, service_id, len(MANAGEMENT_PERMISSIONS)),
            )
        ).fetchall()
        return [r["member_id"] for r in rows]
