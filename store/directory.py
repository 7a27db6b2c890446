"""Workplaces and members (R-PERM-1), kept by directory sync."""

from __future__ import annotations

from typing import Any

from domain.errors import BizError
from store.access import drop_management_on
from store.db import Pool


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


async def upsert_workplace(pool: Pool, workplace_id: str, name: str) -> bool:
    """Create or rename a workplace; True when it was created now."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "INSERT INTO workplaces (workplace_id, name) VALUES (%s, %s)"
                " ON CONFLICT (workplace_id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()"
                " RETURNING (xmax = 0) AS created",
                (workplace_id, name),
            )
        ).fetchone()
        return bool(row and row["created"])


async def sync_member(
    pool: Pool, workplace_id: str, member: dict[str, str], role: str
) -> dict[str, Any]:
    """Directory sync of one member, in one transaction (R-PERM-1, -3).

    Refuses to demote the present representative admin (REPRESENTATIVE_REQUIRED: name a successor
    instead). Making someone representative admin demotes the previous one to admin (who keeps
    their explicit permissions). Demoting an admin to member drops their management permissions.
    Returns {"before", "after", "previous_representative", "dropped_permissions"}.
    """
    async with pool.connection() as conn, conn.transaction():
        before: dict[str, Any] | None = await (
            await conn.execute(
                "SELECT * FROM members WHERE workplace_id = %s AND member_id = %s FOR UPDATE",
                (workplace_id, member["member_id"]),
            )
        ).fetchone()
        present = before is not None and before["left_at"] is None
        if present and before is not None and before["role"] == "representative_admin":
            if role != "representative_admin":
                raise BizError("REPRESENTATIVE_REQUIRED", member_id=member["member_id"])
        previous_rep: str | None = None
        if role == "representative_admin":
            demoted = await (
                await conn.execute(
                    "UPDATE members SET role = 'admin' WHERE workplace_id = %s"
                    " AND role = 'representative_admin' AND member_id <> %s RETURNING member_id",
                    (workplace_id, member["member_id"]),
                )
            ).fetchone()
            previous_rep = demoted["member_id"] if demoted else None
        await _upsert_member(conn, workplace_id, member, role)
        dropped: list[dict[str, Any]] = []
        if role == "member" and present and before is not None and before["role"] != "member":
            dropped = await drop_management_on(conn, workplace_id, member["member_id"])
        after: dict[str, Any] | None = await (
            await conn.execute(
                "SELECT * FROM members WHERE workplace_id = %s AND member_id = %s",
                (workplace_id, member["member_id"]),
            )
        ).fetchone()
        return {
            "before": before,
            "after": after,
            "previous_representative": previous_rep,
            "dropped_permissions": dropped,
        }


async def leave(pool: Pool, workplace_id: str, member_id: str) -> dict[str, Any] | None:
    """A member leaves (R-PERM-7): left_at set and management permissions dropped, together.

    None when the member was never in the workplace. The representative admin cannot leave
    (REPRESENTATIVE_REQUIRED). Returns {"member", "left_now", "dropped_permissions"}; `left_now`
    is False when the member had already left (nothing changed).
    """
    async with pool.connection() as conn, conn.transaction():
        row: dict[str, Any] | None = await (
            await conn.execute(
                "SELECT * FROM members WHERE workplace_id = %s AND member_id = %s FOR UPDATE",
                (workplace_id, member_id),
            )
        ).fetchone()
        if row is None:
            return None
        if row["left_at"] is not None:
            return {"member": row, "left_now": False, "dropped_permissions": []}
        if row["role"] == "representative_admin":
            raise BizError("REPRESENTATIVE_REQUIRED", member_id=member_id)
        updated: dict[str, Any] | None = await (
            await conn.execute(
                "UPDATE members SET left_at = now() WHERE workplace_id = %s AND member_id = %s"
                " RETURNING *",
                (workplace_id, member_id),
            )
        ).fetchone()
        dropped = await drop_management_on(conn, workplace_id, member_id)
        return {"member": updated, "left_now": True, "dropped_permissions": dropped}


async def representative(pool: Pool, workplace_id: str) -> dict[str, Any] | None:
    """The present representative admin (exactly one, R-PERM-1)."""
    async with pool.connection() as conn:
        row: dict[str, Any] | None = await (
            await conn.execute(
                "SELECT * FROM members WHERE workplace_id = %s AND role = 'representative_admin'"
                " AND left_at IS NULL",
                (workplace_id,),
            )
        ).fetchone()
        return row


async def present_members(pool: Pool, workplace_id: str) -> list[dict[str, Any]]:
    """Present members, representative admin first, then admins, then members."""
    async with pool.connection() as conn:
        rows: list[dict[str, Any]] = await (
            await conn.execute(
                "SELECT member_id, login_id, name, role FROM members"
                " WHERE workplace_id = %s AND left_at IS NULL ORDER BY"
                " CASE role WHEN 'representative_admin' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END,"
                " member_id",
                (workplace_id,),
            )
        ).fetchall()
        return rows
