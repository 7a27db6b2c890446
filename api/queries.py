"""Read-only directory listings the console needs (the demo login, member pickers)."""

from __future__ import annotations

from typing import Any

from store.db import Pool


async def recent_workplaces(pool: Pool, limit: int = 20) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        rows: list[dict[str, Any]] = await (
            await conn.execute(
                "SELECT workplace_id, name FROM workplaces ORDER BY created_at DESC LIMIT %s",
                (limit,),
            )
        ).fetchall()
        return rows


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
