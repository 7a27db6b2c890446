"""The event feed (R-EVENT-3; docs/events.md): every event again, for a receiver that lost
deliveries or reads instead of receiving webhooks.

A page is the committed events after the cursor (`after`: the last event id the reader has),
oldest first in commit order; `store.events.read_feed` holds back whatever a transaction still
running could commit behind it, so reading page after page gives every event exactly once.
"""

from __future__ import annotations

from domain.errors import BizError
from domain.event_types import EVENT_TYPES
from services.authz import Authz
from services.models import EventFeedOut, EventOut
from store import events
from store.db import Pool

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class EventService:
    def __init__(self, pool: Pool, authz: Authz) -> None:
        self.pool = pool
        self.authz = authz

    async def workplace_feed(
        self,
        workplace_id: str,
        actor_id: str,
        *,
        after: str | None = None,
        limit: int = DEFAULT_LIMIT,
        types: list[str] | None = None,
    ) -> EventFeedOut:
        """The workplace's events (its representative admin only)."""
        await self.authz.representative(workplace_id, actor_id)
        return await self._page(workplace_id, after, limit, types)

    async def feed(
        self,
        *,
        after: str | None = None,
        limit: int = DEFAULT_LIMIT,
        types: list[str] | None = None,
    ) -> EventFeedOut:
        """Every workplace's events (the suite, with a system token)."""
        return await self._page(None, after, limit, types)

    async def _page(
        self, workplace_id: str | None, after: str | None, limit: int, types: list[str] | None
    ) -> EventFeedOut:
        if not 1 <= limit <= MAX_LIMIT:
            raise BizError("VALIDATION_ERROR", problem=f"limit must be 1 to {MAX_LIMIT}")
        for type in types or ():
            if type not in EVENT_TYPES:
                raise BizError("UNKNOWN_EVENT_TYPE", event_type=type, known=list(EVENT_TYPES))
        async with self.pool.connection() as conn:
            cursor = None
            if after is not None:
                cursor = await events.cursor_of(conn, after, workplace_id)
                if cursor is None:
                    raise BizError("UNKNOWN_EVENT", event_id=after)
            # one more than asked: whether there is more to read now
            rows = await events.read_feed(
                conn,
                after=cursor,
                limit=limit + 1,
                workplace_id=workplace_id,
                types=sorted(set(types)) if types else None,
            )
        page = rows[:limit]
        return EventFeedOut(
            events=[EventOut.model_validate(row.body()) for row in page],
            next_after=page[-1].event_id if page else after,
            has_more=len(rows) > limit,
        )
