"""Console sessions (store/sessions.py): opened at login, found on every request, ended at logout.

The browser's cookie holds a random session id; only its SHA-256 is stored, so reading the table
reveals no usable cookie. Each session carries the CSRF token its forms must send back, and has a
bounded lifetime. A session whose member has left the workplace is not found.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from services.directory import DirectoryService
from services.models import SessionOut
from store import sessions


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionService:
    def __init__(self, directory: DirectoryService) -> None:
        self.pool = directory.pool
        self.directory = directory

    async def open(
        self,
        workplace_id: str,
        member_id: str,
        *,
        lifetime: timedelta,
        replacing: str | None = None,
    ) -> str:
        """A new session for a verified member; its id (for the cookie). `replacing`: the
        session id this browser had, ended now."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await sessions.forget_expired(self.pool, now)
        if replacing:
            await sessions.end(self.pool, _hash(replacing))
        await sessions.create(
            self.pool,
            session_hash=_hash(session_id),
            workplace_id=workplace_id,
            member_id=member_id,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=now + lifetime,
        )
        return session_id

    async def find(self, session_id: str) -> SessionOut | None:
        """The session and its member, read from the directory now; None when it expired or
        ended, or when the member has left."""
        row = await sessions.find(self.pool, _hash(session_id), datetime.now(UTC))
        if row is None:
            return None
        member = await self.directory.member(row.workplace_id, row.member_id)
        if member is None:
            return None
        return SessionOut(member=member, csrf_token=row.csrf_token)

    async def end(self, session_id: str) -> None:
        await sessions.end(self.pool, _hash(session_id))
