"""Workplaces and members (R-PERM-1), kept by directory sync."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from domain.errors import BizError
from store import events
from store.access import ManagementGrant, drop_management_on
from store.db import Conn, Pool, columns, fetch_all, fetch_one


@dataclass(frozen=True, slots=True)
class WorkplaceRow:
    workplace_id: str
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MemberRow:
    """A member of a workplace; `left_at` is set once they leave (the row stays)."""

    workplace_id: str
    member_id: str
    login_id: str
    name: str
    role: str  # domain.permissions.ROLES
    joined_at: datetime
    left_at: datetime | None


@dataclass(frozen=True)
class MemberSync:
    """What `sync_member` changed: the row before (None: new) and after, the representative it
    demoted (if any), and the management permissions a demotion to member dropped."""

    before: MemberRow | None
    after: MemberRow
    previous_representative: str | None
    dropped_permissions: list[ManagementGrant] = field(default_factory=list)


@dataclass(frozen=True)
class Departure:
    """What `leave` did: the member's row, whether they left now (False: had already left), and
    the management permissions dropped with it."""

    member: MemberRow
    left_now: bool
    dropped_permissions: list[ManagementGrant] = field(default_factory=list)


WORKPLACE = columns(WorkplaceRow)
MEMBER = columns(MemberRow)


async def workplace(pool: Pool, workplace_id: str) -> WorkplaceRow | None:
    async with pool.connection() as conn:
        return await fetch_one(
            conn,
            WorkplaceRow,
            f"SELECT {WORKPLACE} FROM workplaces WHERE workplace_id = %s",
            (workplace_id,),
        )


async def member(pool: Pool, workplace_id: str, member_id: str) -> MemberRow | None:
    """A present member (one who left is not found)."""
    async with pool.connection() as conn:
        return await fetch_one(
            conn,
            MemberRow,
            f"SELECT {MEMBER} FROM members WHERE workplace_id = %s AND member_id = %s"
            " AND left_at IS NULL",
            (workplace_id, member_id),
        )


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


async def _demote_representative(conn: Conn, workplace_id: str, except_member: str) -> None:
    await conn.execute(
        "UPDATE members SET role = 'admin' WHERE workplace_id = %s"
        " AND role = 'representative_admin' AND member_id <> %s",
        (workplace_id, except_member),
    )


async def _upsert_member(conn: Conn, workplace_id: str, m: dict[str, str], role: str) -> None:
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
    pool: Pool, workplace_id: str, member: dict[str, str], role: str, *, at: datetime
) -> MemberSync:
    """Directory sync of one member, in one transaction (R-PERM-1, -3).

    Refuses to demote the present representative admin (REPRESENTATIVE_REQUIRED: name a successor
    instead). Making someone representative admin demotes the previous one to admin (who keeps
    their explicit permissions). Demoting an admin to member drops their management permissions
    (audited and announced at `at`, in this transaction).
    """
    async with pool.connection() as conn, conn.transaction():
        await events.lock_stream(conn, events.stream_of(None, workplace_id))  # may drop some
        before = await fetch_one(
            conn,
            MemberRow,
            f"SELECT {MEMBER} FROM members WHERE workplace_id = %s AND member_id = %s FOR UPDATE",
            (workplace_id, member["member_id"]),
        )
        present = before is not None and before.left_at is None
        if present and before is not None and before.role == "representative_admin":
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
        dropped: list[ManagementGrant] = []
        if role == "member" and present and before is not None and before.role != "member":
            dropped = await drop_management_on(
                conn, workplace_id, member["member_id"], at=at, reason="demoted"
            )
        after = await fetch_one(
            conn,
            MemberRow,
            f"SELECT {MEMBER} FROM members WHERE workplace_id = %s AND member_id = %s",
            (workplace_id, member["member_id"]),
        )
        assert after is not None  # upserted just now, in this transaction
        return MemberSync(before, after, previous_rep, dropped)


async def leave(pool: Pool, workplace_id: str, member_id: str, *, at: datetime) -> Departure | None:
    """A member leaves (R-PERM-7): left_at set and management permissions dropped (audited and
    announced at `at`), together.

    None when the member was never in the workplace. The representative admin cannot leave
    (REPRESENTATIVE_REQUIRED). `left_now` is False when the member had already left (nothing
    changed).
    """
    async with pool.connection() as conn, conn.transaction():
        await events.lock_stream(conn, events.stream_of(None, workplace_id))  # may drop some
        row = await fetch_one(
            conn,
            MemberRow,
            f"SELECT {MEMBER} FROM members WHERE workplace_id = %s AND member_id = %s FOR UPDATE",
            (workplace_id, member_id),
        )
        if row is None:
            return None
        if row.left_at is not None:
            return Departure(row, left_now=False)
        if row.role == "representative_admin":
            raise BizError("REPRESENTATIVE_REQUIRED", member_id=member_id)
        updated = await fetch_one(
            conn,
            MemberRow,
            "UPDATE members SET left_at = now() WHERE workplace_id = %s AND member_id = %s"
            f" RETURNING {MEMBER}",
            (workplace_id, member_id),
        )
        assert updated is not None  # locked above
        dropped = await drop_management_on(
            conn, workplace_id, member_id, at=at, reason="member_left"
        )
        return Departure(updated, left_now=True, dropped_permissions=dropped)


async def representative(pool: Pool, workplace_id: str) -> MemberRow | None:
    """The present representative admin (exactly one, R-PERM-1)."""
    async with pool.connection() as conn:
        return await fetch_one(
            conn,
            MemberRow,
            f"SELECT {MEMBER} FROM members WHERE workplace_id = %s"
            " AND role = 'representative_admin' AND left_at IS NULL",
            (workplace_id,),
        )


async def present_members(pool: Pool, workplace_id: str) -> list[MemberRow]:
    """Present members, representative admin first, then admins, then members."""
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            MemberRow,
            f"SELECT {MEMBER} FROM members WHERE workplace_id = %s AND left_at IS NULL ORDER BY"
            " CASE role WHEN 'representative_admin' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END,"
            " member_id",
            (workplace_id,),
        )
