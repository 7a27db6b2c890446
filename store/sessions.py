"""Console sessions (migrations/004): created at login, looked up per request, deleted at logout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from store.db import Pool, columns, fetch_one


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A console session: found by the SHA-256 of the cookie's id, never by the id itself."""

    session_hash: str
    workplace_id: str
    member_id: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime


ROW = columns(SessionRow)


async def create(
    pool: Pool,
    *,
    session_hash: str,
    workplace_id: str,
    member_id: str,
    csrf_token: str,
    expires_at: datetime,
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO console_sessions (session_hash, workplace_id, member_id, csrf_token,"
            " expires_at) VALUES (%s, %s, %s, %s, %s)",
            (session_hash, workplace_id, member_id, csrf_token, expires_at),
        )


async def find(pool: Pool, session_hash: str, now: datetime) -> SessionRow | None:
    """The session, unless it has expired or ended."""
    async with pool.connection() as conn:
        return await fetch_one(
            conn,
            SessionRow,
            f"SELECT {ROW} FROM console_sessions WHERE session_hash = %s AND expires_at > %s",
            (session_hash, now),
        )


async def end(pool: Pool, session_hash: str) -> None:
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM console_sessions WHERE session_hash = %s", (session_hash,))


async def forget_expired(pool: Pool, now: datetime) -> None:
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM console_sessions WHERE expires_at <= %s", (now,))
