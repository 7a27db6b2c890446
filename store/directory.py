"""Workplaces and members (R-PERM-1), kept by directory sync."""

from __future__ import annotations

from typing import Any

from store.db import Pool

ADMIN_ROLES = ("admin", "representative_admin")


async def workplace(pool: Pool, workplace_id: str) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        row: dict[str, Any] | None = await (
            await conn.execute("SELECT * FROM workplaces WHERE workplace_id = %s", (workplace_id,))
        ).fetchone()
        return row


async def member(pool: Pool, workplace_id: str, member_id: str) -> dict[str, Any] | None:
    """A present member (one who left is not found)."""
    async with pool.connection() as conn:
        row: dict[str, Any] | None = await (
            await conn.execute(
                "SELECT * FROM members WHERE workplace_id = %s AND member_id = %s"
                " AND left_at IS NULL",
                (workplace_id, member_id),
            )
        ).fetchone()
        return row


async def present_member_ids(pool: Pool, workplace_id: str) -> list[str]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT member_id FROM members WHERE workplace_id = %s AND left_at IS NULL"
                " ORDER BY member_id",
                (workplace_id,),
            )
        ).fetchall()
        return [r["member_id"] for r in rows]


async def put_workplace(
    pool: Pool, workplace_id: str, name: str, representative: dict[str, str]
) -> None:
    """Create or rename a workplace and make `representative` its representative admin."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO workplaces (workplace_id, name) VALUES (%s, %s)"
            " ON CONFLICT (workplace_id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
            (workplace_id, name),
        )
        await _demote_representative(conn, workplace_id, except_member=representative["member_id"])
        await _upsert_member(conn, workplace_id, representative, "representative_admin")


async def _demote_representative(conn: Any, workplace_id: str, except_member: str) -> None:
    await conn.execute(
        "UPDATE members SET role = 'admin' WHERE workplace_id = %s"
        " AND role = 'representative_admin' AND member_id <> %s",
        (workplace_id, except_member),
    )


async def _upsert_member(conn: Any, workplace_id: str, m: dict[str, str], role: str) -> None:
    await conn.execute(
        "INSERT INTO members (workplace_id, member_id, login_id, name, role)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (workplace_id, member_id) DO UPDATE"
        " SET login_id = EXCLUDED.login_id, name = EXCLUDED.name, role = EXCLUDED.role,"
        " left_at = NULL",
        (workplace_id, m["member_id"], m["login_id"], m["name"], role),
    )


async def put_member(
    pool: Pool, workplace_id: str, member: dict[str, str], role: str
) -> dict[str, Any] | None:
    """Create or update a member; returns the previous row (None when new)."""
    async with pool.connection() as conn, conn.transaction():
        before: dict[str, Any] | None = await (
            await conn.execute(
                "SELECT * FROM members WHERE workplace_id = %s AND member_id = %s FOR UPDATE",
                (workplace_id, member["member_id"]),
            )
        ).fetchone()
        if role == "representative_admin":
            await _demote_representative(conn, workplace_id, except_member=member["member_id"])
        await _upsert_member(conn, workplace_id, member, role)
        return before


async def remove_member(pool: Pool, workplace_id: str, member_id: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE members SET left_at = now() WHERE workplace_id = %s AND member_id = %s"
            " AND left_at IS NULL",
            (workplace_id, member_id),
        )
        return cur.rowcount > 0
