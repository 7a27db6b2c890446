"""An independent day-by-day billing oracle for whole subscriptions (R-BILL-1..5, R-PLAN-2/3/9).

It shares no code with domain/billing.py or domain/calendar.py. It reads Asia/Seoul as a fixed
+09:00 offset (Seoul has had no daylight saving since 1988), takes month lengths from the
standard library's ``calendar.monthrange``, walks each month day by day over what was OBSERVED
from outside the system (when the subscription was applied for, who held a usage permission
after each change, which plan was chosen when, when it was cancelled), and does its own exact
arithmetic with ``fractions.Fraction``, its own half-up rounding and its own VAT floor.

The input is deliberately not ``BillingHistory``: seats are absolute holder counts observed
after each change, not the deltas the workflow records, and the first billable day comes from
the predecessor's cancellation instant, not from ``first_billable_day``.

It also states the plan-change window (R-PLAN-2, -3, -4) the same independent way, so lifecycle
tests can predict a refusal and the instant it names.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction

OFFSET = timedelta(hours=9)
DAY = timedelta(days=1)


# ── the Seoul calendar, by fixed offset ──────────────────────────────────────────────────────


def seoul_day(instant: datetime) -> date:
    if instant.tzinfo is None:
        raise ValueError("the oracle only reads aware instants")
    return (instant.astimezone(UTC) + OFFSET).date()


def seoul_midnight(day: date) -> datetime:
    """00:00 in Seoul on ``day``, as a UTC instant."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) - OFFSET


def seoul_at(day: date, seconds: int) -> datetime:
    """``seconds`` after 00:00 Seoul on ``day``."""
    return seoul_midnight(day) + timedelta(seconds=seconds)


def seoul_iso(instant: datetime) -> str:
    """ISO 8601 with the +09:00 offset, as the API writes instants."""
    return instant.astimezone(timezone(OFFSET)).isoformat()


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_length(period: str) -> int:
    return calendar.monthrange(int(period[:4]), int(period[5:7]))[1]


def month_first(period: str) -> date:
    return date(int(period[:4]), int(period[5:7]), 1)


def month_last(period: str) -> date:
    return date(int(period[:4]), int(period[5:7]), month_length(period))


def month_after(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def first_of_next_month(instant: datetime) -> datetime:
    """00:00 Seoul on the 1st after the Seoul month of ``instant`` (R-BILL-5, R-PLAN-8)."""
    return seoul_midnight(month_first(month_after(month_of(seoul_day(instant)))))


# ── the plan-change window (R-PLAN-2, -3, -4) ─────────────────────────────────────────────────


def window_refusal(
    now: datetime, applied_at: datetime, last_change_month: str | None
) -> str | None:
    """ "application_day", "monthly_limit" or None (allowed), as the product names them."""
    if seoul_day(now) <= seoul_day(applied_at):
        return "application_day"
    if last_change_month == month_of(seoul_day(now)):
        return "monthly_limit"
    return None


def next_change_at(
    now: datetime,
    applied_at: datetime,
    last_change_month: str | None,
    scheduled_month: str | None = None,
) -> datetime:
    """The first instant from ``now`` on at which a change is allowed: past the application day,
    in a month whose change is neither made (``last_change_month``) nor taken by a change
    scheduled for its 1st (``scheduled_month``, R-PLAN-8)."""
    taken = {last_change_month, scheduled_month} - {None}
    candidate = now
    if seoul_day(candidate) <= seoul_day(applied_at):
        candidate = seoul_midnight(seoul_day(applied_at) + DAY)
    while month_of(seoul_day(candidate)) in taken:
        candidate = first_of_next_month(candidate)
    return candidate


# ── what was observed of one subscription ─────────────────────────────────────────────────────


@dataclass(frozen=True)
class Fees:
    base: int
    seat: int


@dataclass
class Observed:
    """One subscription as seen from outside, events in the order they happened.

    ``seats`` holds (instant, holders after the change); ``plans`` holds (instant, plan from
    then on), the first one being the application's plan at ``applied_at``.
    """

    applied_at: datetime
    plan: str
    predecessor_cancelled_at: datetime | None = None
    seats: list[tuple[datetime, int]] = field(default_factory=list)
    plans: list[tuple[datetime, str]] = field(default_factory=list)
    cancelled_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.plans:
            self.plans = [(self.applied_at, self.plan)]

    def holders(self) -> int:
        return self.seats[-1][1] if self.seats else 0

    def current_plan(self) -> str:
        return self.plans[-1][1]


@dataclass(frozen=True)
class Line:
    plan_id: str
    from_day: date
    to_day: date
    days: int
    seats: int
    amount: int


@dataclass(frozen=True)
class Bill:
    period: str
    lines: tuple[Line, ...]
    subtotal: int
    vat: int
    total: int

    def as_ledger(self) -> dict[str, object]:
        """The shape store.ledger keeps (InvoiceLine dumped as JSON, totals as integers)."""
        return {
            "period": self.period,
            "lines": [
                {
                    "plan_id": line.plan_id,
                    "from_day": line.from_day.isoformat(),
                    "to_day": line.to_day.isoformat(),
                    "days": line.days,
                    "seats": line.seats,
                    "amount": str(line.amount),
                }
                for line in self.lines
            ],
            "subtotal": self.subtotal,
            "vat": self.vat,
            "total": self.total,
        }

    def as_api(self) -> dict[str, object]:
        """The API's shape: money as strings of whole won, inclusive ISO dates."""
        return {
            "period": self.period,
            "lines": [
                {
                    "plan_id": line.plan_id,
                    "from": line.from_day.isoformat(),
                    "to": line.to_day.isoformat(),
                    "days": line.days,
                    "seats": line.seats,
                    "amount": str(line.amount),
                }
                for line in self.lines
            ],
            "subtotal": str(self.subtotal),
            "vat": str(self.vat),
            "total": str(self.total),
        }


# ── the day-by-day walk ──────────────────────────────────────────────────────────────────────


def first_day(sub: Observed) -> date:
    """R-BILL-2: the application day, or the next one after a same-day predecessor cancellation."""
    applied = seoul_day(sub.applied_at)
    before = sub.predecessor_cancelled_at
    return applied + DAY if before is not None and seoul_day(before) == applied else applied


def last_day(sub: Observed) -> date | None:
    return None if sub.cancelled_at is None else seoul_day(sub.cancelled_at)


def _counts(at: datetime, day_end: datetime, inclusive: bool) -> bool:
    return at <= day_end if inclusive else at < day_end


def _day_window(sub: Observed, day: date) -> tuple[datetime, bool]:
    """Where the day's billing ends: the next midnight (excluded), or the cancellation (kept)."""
    if sub.cancelled_at is not None and seoul_day(sub.cancelled_at) == day:
        return sub.cancelled_at, True
    return seoul_midnight(day + DAY), False


def plan_on(sub: Observed, day: date) -> str:
    """R-BILL-3: the plan in effect at the end of the day (on the cancellation day: at it)."""
    end, inclusive = _day_window(sub, day)
    chosen = [plan for at, plan in sub.plans if _counts(at, end, inclusive)]
    if not chosen:
        raise AssertionError(f"no plan chosen by the end of {day}")
    return chosen[-1]


def seats_on(sub: Observed, day: date) -> int:
    """R-BILL-3: the most holders at any one moment of the day.

    The count at the day's start is one moment; so is each instant with changes. Several
    changes at one instant are one moment whose count is the last one observed there (for
    absolute counts that is the "revocations before grants" rule: nothing in between counts).
    """
    start = seoul_midnight(day)
    end, inclusive = _day_window(sub, day)
    before = [count for at, count in sub.seats if at < start]
    peak = before[-1] if before else 0
    during = [(at, count) for at, count in sub.seats if at >= start and _counts(at, end, inclusive)]
    for index, (at, count) in enumerate(during):
        last_at_instant = index + 1 == len(during) or during[index + 1][0] != at
        if last_at_instant:
            peak = max(peak, count)
    return peak


def half_up(amount: Fraction) -> int:
    whole, rest = divmod(amount.numerator, amount.denominator)
    return whole + (1 if 2 * rest >= amount.denominator else 0)


def vat_of(subtotal: int) -> int:
    """10 % rounded down to the won (subtotals are never negative)."""
    return int(Fraction(subtotal) * Fraction(1, 10))


def bill(sub: Observed, period: str, fees: Mapping[str, Fees]) -> Bill | None:
    """The invoice for ``period`` (R-BILL-2..4), or None when the month has no billable day.

    A live subscription is billed to the month's end, which is also the estimate (R-BILL-7).
    """
    first = max(first_day(sub), month_first(period))
    last = month_last(period)
    ended = last_day(sub)
    if ended is not None:
        last = min(last, ended)
    if first > last:
        return None
    days_in_month = month_length(period)
    runs: list[list[tuple[date, str, int]]] = []
    day = first
    while day <= last:
        billed = (day, plan_on(sub, day), seats_on(sub, day))
        if runs and runs[-1][-1][1:] == billed[1:]:
            runs[-1].append(billed)
        else:
            runs.append([billed])
        day += DAY
    lines = []
    for run in runs:
        _, plan, seats = run[0]
        monthly = Fraction(fees[plan].base) + Fraction(fees[plan].seat) * seats
        lines.append(
            Line(
                plan,
                run[0][0],
                run[-1][0],
                len(run),
                seats,
                half_up(monthly * len(run) / days_in_month),
            )
        )
    subtotal = sum(line.amount for line in lines)
    vat = vat_of(subtotal)
    return Bill(period, tuple(lines), subtotal, vat, subtotal + vat)


def billed_months(sub: Observed, through: str) -> list[str]:
    """The months with a billable day (so with an invoice), through ``through``."""
    first, ended = first_day(sub), last_day(sub)
    if ended is not None and ended < first:
        return []  # re-applied and cancelled on its predecessor's cancellation day
    final = through if ended is None else min(through, month_of(ended))
    months, period = [], month_of(first)
    while period <= final:
        months.append(period)
        period = month_after(period)
    return months


def bills(sub: Observed, fees: Mapping[str, Fees], through: str) -> dict[str, Bill]:
    """Every invoice from the first billable month through ``through`` (or the final month)."""
    found: dict[str, Bill] = {}
    for period in billed_months(sub, through):
        issued = bill(sub, period, fees)
        assert issued is not None, (period, sub)
        found[period] = issued
    return found


def fees_from(plans: Sequence[tuple[str, int, int]]) -> dict[str, Fees]:
    return {plan_id: Fees(base, seat) for plan_id, base, seat in plans}
