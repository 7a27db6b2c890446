"""The Asia/Seoul business calendar: days, billing periods and the plan-change window.

Every function takes explicit instants (no wall clock), so it is safe inside Temporal workflows.
An instant is a timezone-aware ``datetime``; a naive one is refused because its meaning would
depend on the machine it runs on. A billing period is the Seoul calendar month, written "YYYY-MM"
(R-BILL-1).
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import re
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

SEOUL = ZoneInfo("Asia/Seoul")

Period = str
"""A Seoul calendar month, "YYYY-MM"."""

PlanChangeRefusal = Literal["APPLICATION_DAY", "MONTHLY_LIMIT"]

_PERIOD_PATTERN = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
_ONE_DAY = timedelta(days=1)


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"instant must be timezone-aware, got naive {instant!r}")


def seoul_date(instant: datetime) -> date:
    """The Seoul calendar day that contains ``instant``."""
    _require_aware(instant)
    return instant.astimezone(SEOUL).date()


def day_start(d: date) -> datetime:
    """00:00 Asia/Seoul on day ``d`` (a day is [00:00, 24:00) Seoul, R-BILL-2)."""
    # A datetime is also a date; accepting one here would silently drop its time and zone.
    if isinstance(d, datetime):
        raise TypeError("day_start takes a date, not a datetime")
    return datetime(d.year, d.month, d.day, tzinfo=SEOUL)


def next_day_start(instant: datetime) -> datetime:
    """00:00 Seoul of the day after the one containing ``instant``."""
    return day_start(seoul_date(instant) + _ONE_DAY)


def _parse_period(period: Period) -> tuple[int, int]:
    match = _PERIOD_PATTERN.fullmatch(period)
    if match is None:
        raise ValueError(f"period must be 'YYYY-MM', got {period!r}")
    return int(match.group(1)), int(match.group(2))


def period_of(moment: datetime | date) -> Period:
    """The period of an instant (by its Seoul day) or of a calendar date."""
    d = seoul_date(moment) if isinstance(moment, datetime) else moment
    return f"{d.year:04d}-{d.month:02d}"


def period_start_date(period: Period) -> date:
    """The 1st day of ``period``."""
    year, month = _parse_period(period)
    return date(year, month, 1)


def period_start(period: Period) -> datetime:
    """00:00 Seoul on the 1st of ``period``."""
    return day_start(period_start_date(period))


def days_in_month(period: Period) -> int:
    year, month = _parse_period(period)
    return _stdlib_calendar.monthrange(year, month)[1]


def period_end_date(period: Period) -> date:
    """The last day of ``period``."""
    year, month = _parse_period(period)
    return date(year, month, days_in_month(period))


def next_period(period: Period) -> Period:
    return period_of(period_end_date(period) + _ONE_DAY)


def days_of(period: Period) -> list[date]:
    """Every day of ``period``, in order."""
    first = period_start_date(period)
    return [first + timedelta(days=i) for i in range(days_in_month(period))]


def first_instant_of_next_month(instant: datetime) -> datetime:
    """00:00 Seoul on the 1st of the month after the one containing ``instant``."""
    return period_start(next_period(period_of(instant)))


def plan_change_refusal(
    now: datetime, applied_at: datetime, last_change_period: Period | None
) -> PlanChangeRefusal | None:
    """Why a plan change at ``now`` is refused, or None when it is allowed.

    R-PLAN-3: never on (or, defensively, before) the Seoul day of the first application.
    R-PLAN-2: at most one change per Seoul calendar month. When both apply, the application day
    is named, since it is the rule the admin meets first.
    """
    if seoul_date(now) <= seoul_date(applied_at):
        return "APPLICATION_DAY"
    if last_change_period is not None and last_change_period == period_of(now):
        return "MONTHLY_LIMIT"
    return None


def plan_change_available_at(
    now: datetime,
    applied_at: datetime,
    last_change_period: Period | None,
    scheduled_at: datetime | None = None,
) -> datetime:
    """The earliest instant >= ``now`` at which a plan change is allowed (R-PLAN-2, -3, -4).

    Returns ``now`` itself when a change is allowed now; otherwise a Seoul midnight. A change
    scheduled for ``scheduled_at`` (R-PLAN-8) takes that month's change, so an answer on or after
    it moves on to the month after; withdrawing the schedule frees the month again.
    """
    if scheduled_at is not None:
        found = plan_change_available_at(now, applied_at, last_change_period)
        if found < scheduled_at:
            return found
        return plan_change_available_at(max(now, scheduled_at), applied_at, period_of(scheduled_at))
    candidate = now
    # Each step moves past one refusal; re-checking covers the case where leaving the
    # application day lands in a month that already had its change. It ends after at most
    # two steps, because each rule can only refuse one stretch of time.
    while (refusal := plan_change_refusal(candidate, applied_at, last_change_period)) is not None:
        if refusal == "APPLICATION_DAY":
            candidate = next_day_start(applied_at)
        else:
            candidate = first_instant_of_next_month(candidate)
    return candidate


def month_taken_by_schedule(
    now: datetime,
    applied_at: datetime,
    last_change_period: Period | None,
    scheduled_at: datetime | None,
) -> bool:
    """Whether the change scheduled for ``scheduled_at`` is what makes the next possible change
    a month later (R-PLAN-8): without it, a change would be allowed in the scheduled month."""
    if scheduled_at is None:
        return False
    return plan_change_available_at(now, applied_at, last_change_period) >= scheduled_at
