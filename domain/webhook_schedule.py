"""When a webhook delivery is tried again, when it is given up, and when its endpoint is
disabled (R-EVENT-2, API.md "Events and webhooks"). Pure: business time in, business time out.

A delivery's first attempt is made as soon as its event is claimed; each failed attempt waits
the next delay of `RETRY_DELAYS` (about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), and the
attempt after the last delay that fails too makes the delivery `failed`: 1 + 7 attempts over
about 28 hours. A receiver that answers 429 or 503 with `Retry-After` is given at least the time
it asks for (at most `MAX_RETRY_AFTER`): the schedule's delay is the floor, never shortened. An
endpoint whose deliveries have kept failing for `DISABLE_AFTER` (no success since the first
failure) is disabled.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = 1 + len(RETRY_DELAYS)
DISABLE_AFTER = timedelta(days=3)
MAX_RETRY_AFTER = timedelta(hours=24)
RETRY_AFTER_STATUSES = (429, 503)  # the answers whose `Retry-After` is honoured


def retry_at(attempts: int, failed_at: datetime, asked: timedelta | None = None) -> datetime | None:
    """When to try again after the `attempts`-th attempt (1, 2, …) failed at `failed_at`;
    None when that was the last attempt (the delivery is `failed`). `asked`: the receiver's
    `Retry-After`, which can make the wait longer (up to MAX_RETRY_AFTER), never shorter."""
    if attempts < 1:
        raise ValueError(f"attempts counts from 1, not {attempts}")
    if attempts >= MAX_ATTEMPTS:
        return None
    delay = RETRY_DELAYS[attempts - 1]
    if asked is not None:
        delay = max(delay, min(asked, MAX_RETRY_AFTER))
    return failed_at + delay


def retry_after(value: str | None, received_at: datetime) -> timedelta | None:
    """A `Retry-After` header as a wait: delay-seconds, or an HTTP date counted from
    `received_at` (the wall clock when the answer came); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # any length: more than the cap is the cap
        return MAX_RETRY_AFTER if len(value) > 9 else timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - received_at, timedelta(0))


def failing_since_after(
    failing_since: datetime | None, *, ok: bool, at: datetime
) -> datetime | None:
    """The endpoint's `failing_since` after an attempt at `at`: cleared by a success, set by the
    first failure after one, kept by later failures."""
    if ok:
        return None
    return failing_since if failing_since is not None else at


def should_disable(failing_since: datetime | None, now: datetime) -> bool:
    """True once the endpoint has been failing, without a success, for DISABLE_AFTER."""
    return failing_since is not None and now - failing_since >= DISABLE_AFTER
