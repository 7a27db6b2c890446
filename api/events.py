"""The event feed over HTTP (R-EVENT-3; docs/events.md, "The event feed").

    GET /v1/workplaces/{wp}/events?after=&limit=&type=   the workplace's (representative admin)
    GET /v1/events?after=&limit=&type=                   every workplace's (system token)

Thin, like api/v1.py: the caller is checked here, the rest is `services.events.EventService`.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from api.auth import Member, System, runtime_of, same_workplace
from api.errors import responses
from api.runtime import Runtime
from domain.event_types import EVENT_TYPES
from services.events import DEFAULT_LIMIT, MAX_LIMIT
from services.models import EventFeedOut

router = APIRouter(prefix="/v1")
tags: list[str | Enum] = ["events"]

Rt = Annotated[Runtime, Depends(runtime_of)]
PathId = Annotated[str, Path(min_length=1, max_length=200)]
After = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        description="The last event id you have (the previous page's `next_after`); "
        "omit to start from the first event.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Events per page.")]
Types = Annotated[
    list[str] | None,
    Query(
        alias="type",
        max_length=32,
        description="Only these event types; repeat for several (`type=a&type=b`). One of: "
        + ", ".join(f"`{t}`" for t in EVENT_TYPES)
        + ".",
    ),
]


@router.get(
    "/workplaces/{wp}/events",
    response_model=EventFeedOut,
    tags=tags,
    responses=responses(403, 404, 422),
)
async def workplace_events(
    wp: PathId,
    who: Member,
    rt: Rt,
    after: After = None,
    limit: Limit = DEFAULT_LIMIT,
    types: Types = None,
) -> Any:
    """The workplace's events, oldest first after `after` (representative admin)."""
    actor = same_workplace(who, wp)
    return await rt.events.workplace_feed(wp, actor, after=after, limit=limit, types=types)


@router.get("/events", response_model=EventFeedOut, tags=tags, responses=responses(403, 422))
async def all_events(
    who: System,
    rt: Rt,
    after: After = None,
    limit: Limit = DEFAULT_LIMIT,
    types: Types = None,
) -> Any:
    """Every workplace's events, oldest first after `after` (system token)."""
    return await rt.events.feed(after=after, limit=limit, types=types)
