"""Billing arithmetic (R-BILL): the billing state of one subscription and its monthly invoice.

Pure and deterministic: it runs inside Temporal workflows. All money arithmetic is done on
integers and ``Fraction`` and only turned into ``Decimal`` at the end, so a result never depends
on the ambient decimal context (a ``sum`` of Decimals would round at its precision).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import groupby, pairwise
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.calendar import (
    SEOUL,
    Period,
    day_start,
    days_in_month,
    period_end_date,
    period_start_date,
    seoul_date,
)

_ONE_DAY = timedelta(days=1)


class PlanFees(BaseModel):
    """Monthly fees of one plan, in whole won (R-CAT-4)."""

    model_config = ConfigDict(frozen=True)

    base_fee: Decimal
    seat_fee: Decimal

    @field_validator("base_fee", "seat_fee")
    @classmethod
    def _whole_non_negative_won(cls, fee: Decimal) -> Decimal:
        if not fee.is_finite() or fee < 0 or fee != fee.to_integral_value():
            raise ValueError(f"a fee must be a non-negative whole number of won, got {fee}")
        return fee


class SeatEvent(BaseModel):
    """A change in the number of usage-permission holders: +1 grant, -1 revoke (or more)."""

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime
    delta: int = Field(..., description="holders added (positive) or removed (negative)")

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("a seat event must change the number of holders")
        return delta


class PlanChange(BaseModel):
    """From ``at`` on, the subscription is on ``plan_id``."""

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime
    plan_id: str


class BillingHistory(BaseModel):
    """Everything billing needs about one subscription (R-BILL-3), kept with its billing state.

    Both event lists are in recording order, which must be non-decreasing in ``at``; events at
    the same instant keep their order (for plan changes the later one wins). ``plan_changes[0]``
    is the plan chosen at application. Events after ``ended_at`` are kept but never billed.
    ``compacted_before`` is set by ``compacted``: days before it can no longer be billed.
    """

    model_config = ConfigDict(frozen=True)

    first_billable_day: date
    base_seats: int = 0
    plan_changes: list[PlanChange] = Field(min_length=1)
    seat_events: list[SeatEvent] = Field(default_factory=list)
    ended_at: AwareDatetime | None = None
    compacted_before: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _require_chronological("plan_changes", [change.at for change in self.plan_changes])
        _require_chronological("seat_events", [event.at for event in self.seat_events])
        if self.base_seats < 0:
            raise ValueError(f"base_seats must not be negative, got {self.base_seats}")
        count = self.base_seats
        for instant, group in _instant_groups(self.seat_events):
            count += sum(event.delta for event in group)
            _require_non_negative(count, instant)
        return self

    def with_seat_event(self, at: datetime, delta: int) -> BillingHistory:
        events = [*self.seat_events, SeatEvent(at=at, delta=delta)]
        return self._validated_copy(seat_events=events)

    def with_plan_change(self, at: datetime, plan_id: str) -> BillingHistory:
        changes = [*self.plan_changes, PlanChange(at=at, plan_id=plan_id)]
        return self._validated_copy(plan_changes=changes)

    def ended(self, at: datetime) -> BillingHistory:
        """The history closed by the cancellation at ``at``, billed through its day (R-CANCEL-3)."""
        if self.ended_at is not None:
            raise ValueError(f"billing already ended at {self.ended_at.isoformat()}")
        return self._validated_copy(ended_at=at)

    def compacted(self, before: date) -> BillingHistory:
        """The same history with events before 00:00 Seoul of ``before`` folded into its state.

        Every invoice whose billable days are all on or after ``before`` is unchanged; that keeps
        a years-long subscription's state bounded (R-LIFE-5). Billing a day before ``before``
        from the result is refused rather than answered wrongly.
        """
        cut = day_start(before)
        seats_cut = bisect_left(self.seat_events, cut, key=_at)
        plans_cut = bisect_left(self.plan_changes, cut, key=_at)
        folded_seats = self.base_seats + sum(e.delta for e in self.seat_events[:seats_cut])
        kept_changes = self.plan_changes[plans_cut:]
        if plans_cut > 0:
            # The plan in effect at the cut, restated at the cut. A kept change at exactly the
            # cut comes after it in the list, so it still wins, as it did before.
            in_effect = self.plan_changes[plans_cut - 1].plan_id
            kept_changes = [PlanChange(at=cut, plan_id=in_effect), *kept_changes]
        horizon = before if self.compacted_before is None else max(before, self.compacted_before)
        return self._validated_copy(
            base_seats=folded_seats,
            plan_changes=kept_changes,
            seat_events=self.seat_events[seats_cut:],
            compacted_before=horizon,
        )

    def _validated_copy(self, **changes: object) -> BillingHistory:
        # model_copy(update=...) skips validation; every copy must pass the same checks.
        return BillingHistory.model_validate({**dict(self), **changes})


class InvoiceLine(BaseModel):
    """One run of consecutive days billed with the same plan and seats (R-BILL-4)."""

    model_config = ConfigDict(frozen=True)

    plan_id: str
    from_day: date
    to_day: date
    days: int
    seats: int
    amount: Decimal


class Invoice(BaseModel):
    """A month's bill; every amount is a Decimal of whole won (R-BILL-1, R-BILL-4)."""

    model_config = ConfigDict(frozen=True)

    period: Period
    lines: list[InvoiceLine]
    subtotal: Decimal
    vat: Decimal
    total: Decimal


def first_billable_day(applied_at: datetime, predecessor_ended_at: datetime | None) -> date:
    """The application day, or the next one if the predecessor was cancelled that day (R-BILL-2)."""
    applied_day = seoul_date(applied_at)
    if predecessor_ended_at is not None and seoul_date(predecessor_ended_at) == applied_day:
        return applied_day + _ONE_DAY
    return applied_day


def compute_invoice(
    history: BillingHistory, period: Period, fees: Mapping[str, PlanFees]
) -> Invoice | None:
    """The invoice for ``period`` (R-BILL-2..4), or None when the period has no billable day.

    With ``ended_at`` unset the subscription is billed through the period's last day, which is
    also the current month's estimate (R-BILL-7).
    """
    days = _billable_days(history, period)
    if not days:
        return None
    if history.compacted_before is not None and days[0] < history.compacted_before:
        raise ValueError(
            f"history is compacted before {history.compacted_before}; cannot bill {period}"
        )
    billed = zip(days, _plans_by_day(history, days), _seats_by_day(history, days), strict=True)
    lines = [
        _line(run, fees, days_in_month(period))
        for _, run in groupby(billed, key=lambda day: (day[1], day[2]))
    ]
    subtotal = sum(int(line.amount) for line in lines)
    vat = subtotal // 10  # 10% rounded down to the won; amounts are never negative
    return Invoice(
        period=period,
        lines=lines,
        subtotal=Decimal(subtotal),
        vat=Decimal(vat),
        total=Decimal(subtotal + vat),
    )


def _billable_days(history: BillingHistory, period: Period) -> list[date]:
    first = max(history.first_billable_day, period_start_date(period))
    last = period_end_date(period)
    if history.ended_at is not None:
        last = min(last, seoul_date(history.ended_at))
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _day_end(history: BillingHistory, day: date) -> tuple[datetime, bool]:
    """Where ``day``'s billing window ends, and whether that end is included.

    A whole day is [00:00, next 00:00); the cancellation day ends at the cancellation instant,
    inclusive, so what happens at that instant still counts (R-BILL-3).
    """
    ended = history.ended_at
    if ended is not None and seoul_date(ended) == day:
        return ended, True
    return day_start(day + _ONE_DAY), False


def _plans_by_day(history: BillingHistory, days: Sequence[date]) -> list[str]:
    """The plan in effect at the end of each day (at cancellation on the cancellation day)."""
    plans = []
    for day in days:
        end, inclusive = _day_end(history, day)
        find = bisect_right if inclusive else bisect_left
        index = find(history.plan_changes, end, key=_at) - 1
        if index < 0:
            raise ValueError(f"no plan is in effect on {day}: the first plan change is later")
        plans.append(history.plan_changes[index].plan_id)
    return plans


def _seats_by_day(history: BillingHistory, days: Sequence[date]) -> list[int]:
    """The most holders at any one moment of each day (R-BILL-3).

    The count at the day's start is a moment of the day; so is each instant with events, where
    revocations count before grants: the count after only the revocations is never higher than
    the count after the whole instant, so the instant's peak is the count after all its events.
    """
    events = history.seat_events
    cursor = bisect_left(events, day_start(days[0]), key=_at)
    count = history.base_seats + sum(event.delta for event in events[:cursor])
    seats = []
    for day in days:
        end, inclusive = _day_end(history, day)
        stop = (bisect_right if inclusive else bisect_left)(events, end, key=_at)
        peak = count
        for instant, group in _instant_groups(events[cursor:stop]):
            count += sum(event.delta for event in group)
            _require_non_negative(count, instant)
            peak = max(peak, count)
        seats.append(peak)
        cursor = stop
    return seats


def _line(
    run: Iterator[tuple[date, str, int]], fees: Mapping[str, PlanFees], month_days: int
) -> InvoiceLine:
    billed = list(run)
    _, plan_id, seats = billed[0]
    if plan_id not in fees:
        raise ValueError(f"no fees for plan {plan_id!r}")
    plan = fees[plan_id]
    monthly = Fraction(plan.base_fee) + Fraction(plan.seat_fee) * seats
    amount = _round_half_up(monthly * len(billed) / month_days)
    return InvoiceLine(
        plan_id=plan_id,
        from_day=billed[0][0],
        to_day=billed[-1][0],
        days=len(billed),
        seats=seats,
        amount=Decimal(amount),
    )


def _round_half_up(amount: Fraction) -> int:
    """Nearest whole won, halves up; exact because ``amount`` is an exact non-negative fraction."""
    return (2 * amount.numerator + amount.denominator) // (2 * amount.denominator)


def _instant_groups(events: Sequence[SeatEvent]) -> Iterator[tuple[datetime, list[SeatEvent]]]:
    """Consecutive events at the same instant (aware datetimes compare as instants)."""
    for instant, group in groupby(events, key=_at):
        yield instant, list(group)


def _require_non_negative(count: int, instant: datetime) -> None:
    if count < 0:
        raise ValueError(f"usage-permission holders would be {count} at {instant.isoformat()}")


def _require_chronological(name: str, instants: Sequence[datetime]) -> None:
    for earlier, later in pairwise(instants):
        if later < earlier:
            raise ValueError(f"{name} must be recorded in time order: {later} after {earlier}")


def _at(event: SeatEvent | PlanChange) -> datetime:
    return event.at


def invoice_id(subscription_id: str, period: Period) -> str:
    """The invoice's id: one invoice per subscription and period (R-BILL-5), so a retried or
    replayed issue names the same row."""
    return f"inv-{subscription_id}-{period}"


def invoice_delay(subscription_id: str, spread: timedelta) -> timedelta:
    """How long after 00:00 on the 1st this subscription issues its invoice, when month-end is
    spread over ``spread`` (issue 12): fixed by the subscription id alone, so every month and
    every replay picks the same instant and the subscriptions land evenly over the window. The
    invoice still covers the same days; only the moment it is issued moves. No spread: 00:00."""
    return stable_offset(subscription_id, spread)


def stable_offset(key: str, window: timedelta) -> timedelta:
    """A whole number of seconds in [0, window), the same for the same key on every machine and
    in every replay (a hash, not a random draw); 0 for an empty window."""
    seconds = int(window.total_seconds())
    if seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(key.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % seconds)


# ── the invoice as it is shown ───────────────────────────────────────────────────────────────


def whole_won(value: Decimal | int | str) -> str:
    """Whole won as a string, as the API shows money; anything else is a bug worth a loud
    failure."""
    amount = Decimal(value)
    if amount != amount.to_integral_value():
        raise ValueError(f"money must be whole won, got {value!r}")
    return str(int(amount))


def _day(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else date.fromisoformat(value).isoformat()


def lines_json(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Invoice lines (``InvoiceLine`` dumped, or as the ledger stores them) in the API's shape:
    inclusive Seoul days ``from`` and ``to``, money as whole-won strings."""
    return [
        {
            "plan_id": line["plan_id"],
            "from": _day(line["from_day"]),
            "to": _day(line["to_day"]),
            "days": int(line["days"]),
            "seats": int(line["seats"]),
            "amount": whole_won(line["amount"]),
        }
        for line in lines
    ]


def issued_invoice_json(
    *,
    invoice_id: str,
    subscription_id: str,
    period: Period,
    issued_at: datetime,
    lines: Iterable[Mapping[str, Any]],
    subtotal: Decimal,
    vat: Decimal,
    total: Decimal,
) -> dict[str, Any]:
    """An issued invoice exactly as ``GET …/invoices`` lists it and an ``invoice.issued`` event
    carries it (one shape for both): instants in Seoul time with their offset."""
    return {
        "invoice_id": invoice_id,
        "subscription_id": subscription_id,
        "period": period,
        "issued_at": issued_at.astimezone(SEOUL).isoformat(),
        "lines": lines_json(lines),
        "subtotal": whole_won(subtotal),
        "vat": whole_won(vat),
        "total": whole_won(total),
    }
