"""Billing arithmetic (R-BILL-1..4, R-BILL-7, R-PLAN-9, R-CANCEL-3, R-LIFE-5).

The property tests compare ``compute_invoice`` with an independent oracle written here. The
oracle shares no code with domain/billing.py or domain/calendar.py: it reads Seoul time as a
fixed +09:00 offset (Seoul has had no daylight saving since 1988), walks the period day by day
over the raw event lists, and does its own exact arithmetic and rounding.
"""

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.billing import (
    BillingHistory,
    Invoice,
    PlanChange,
    PlanFees,
    SeatEvent,
    compute_invoice,
    first_billable_day,
    invoice_delay,
)
from domain.calendar import SEOUL

# --- the oracle -------------------------------------------------------------------------------

KST = timedelta(hours=9)
ONE_DAY = timedelta(days=1)


def kst_date(instant: datetime) -> date:
    return (instant.astimezone(UTC) + KST).date()


def kst_midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC) - KST


@dataclass(frozen=True)
class OracleLine:
    plan_id: str
    from_day: date
    to_day: date
    days: int
    seats: int
    amount: int


def oracle_day_limit(history: BillingHistory, day: date) -> tuple[datetime, bool]:
    """The instant that ends the day's billing window and whether it belongs to the day."""
    if history.ended_at is not None and kst_date(history.ended_at) == day:
        return history.ended_at, True
    return kst_midnight(day + ONE_DAY), False


def in_window(at: datetime, limit: datetime, inclusive: bool) -> bool:
    return at <= limit if inclusive else at < limit


def oracle_plan(history: BillingHistory, day: date) -> str:
    limit, inclusive = oracle_day_limit(history, day)
    chosen = None
    for change in history.plan_changes:
        if in_window(change.at, limit, inclusive):
            chosen = change.plan_id
    assert chosen is not None, "test histories always start with a plan"
    return chosen


def oracle_seats(history: BillingHistory, day: date) -> int:
    start = kst_midnight(day)
    limit, inclusive = oracle_day_limit(history, day)
    count = history.base_seats + sum(e.delta for e in history.seat_events if e.at < start)
    today = [e for e in history.seat_events if e.at >= start and in_window(e.at, limit, inclusive)]
    peak = count
    for instant in sorted({e.at.astimezone(UTC) for e in today}):
        same = [e.delta for e in today if e.at == instant]
        count += sum(d for d in same if d < 0)  # revocations first ...
        after_revocations = count
        count += sum(d for d in same if d > 0)  # ... then grants
        # Only the count between instants is a real state; the revocations-first order is an
        # accounting rule, so its intermediate may dip below zero (a grant and its revocation
        # recorded at one instant from no holders).
        assert count >= 0
        peak = max(peak, after_revocations, count)
    return peak


def oracle_half_up(amount: Fraction) -> int:
    return math.floor(amount + Fraction(1, 2))


def oracle_invoice(
    history: BillingHistory, period: str, fees: dict[str, PlanFees]
) -> tuple[list[OracleLine], int, int, int] | None:
    year, month = int(period[:4]), int(period[5:])
    month_days = calendar.monthrange(year, month)[1]
    first = max(date(year, month, 1), history.first_billable_day)
    last = date(year, month, month_days)
    if history.ended_at is not None:
        last = min(last, kst_date(history.ended_at))
    if first > last:
        return None
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    runs: list[list[tuple[date, str, int]]] = []
    for day in days:
        billed = (day, oracle_plan(history, day), oracle_seats(history, day))
        if runs and runs[-1][-1][1:] == billed[1:]:
            runs[-1].append(billed)
        else:
            runs.append([billed])
    lines = []
    for run in runs:
        _, plan, seats = run[0]
        monthly = Fraction(fees[plan].base_fee) + Fraction(fees[plan].seat_fee) * seats
        amount = oracle_half_up(monthly * len(run) / month_days)
        lines.append(OracleLine(plan, run[0][0], run[-1][0], len(run), seats, amount))
    subtotal = sum(line.amount for line in lines)
    vat = math.floor(Fraction(subtotal, 10))
    return lines, subtotal, vat, subtotal + vat


def as_plain(invoice: Invoice) -> tuple[list[OracleLine], int, int, int]:
    """The invoice in the oracle's shape, after checking every amount is whole won."""
    amounts = [line.amount for line in invoice.lines]
    for amount in [*amounts, invoice.subtotal, invoice.vat, invoice.total]:
        assert isinstance(amount, Decimal)
        assert amount.as_tuple().exponent == 0
    lines = [
        OracleLine(
            line.plan_id, line.from_day, line.to_day, line.days, line.seats, int(line.amount)
        )
        for line in invoice.lines
    ]
    return lines, int(invoice.subtotal), int(invoice.vat), int(invoice.total)


# --- generated histories ---------------------------------------------------------------------

PLANS = ("lite", "standard", "premium")


def period_after(d: date, months: int) -> str:
    index = d.year * 12 + d.month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


# Application instants anywhere in 2026-2028, often right at or just before a Seoul midnight.
application_instants = st.one_of(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31, 14, 59, 59)).map(
        lambda naive: naive.replace(tzinfo=UTC)
    ),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)).flatmap(
        lambda d: st.sampled_from([0, -1, 30 * 60]).map(
            lambda seconds: kst_midnight(d) + timedelta(seconds=seconds)
        )
    ),
)


def instants_after(applied: datetime, horizon_days: int) -> st.SearchStrategy[datetime]:
    """Instants from the application on, biased to the Seoul midnights where days turn."""
    midnights = st.tuples(st.integers(1, horizon_days), st.sampled_from([0, -1])).map(
        lambda kd: (
            kst_midnight(kst_date(applied) + timedelta(days=kd[0])) + timedelta(microseconds=kd[1])
        )
    )
    anywhere = st.integers(0, horizon_days * 86400).map(lambda s: applied + timedelta(seconds=s))
    return st.one_of(midnights, anywhere)


def shown_in_some_zone(instant: datetime) -> st.SearchStrategy[datetime]:
    # The same instant in UTC or in Seoul wall time: billing must group by instant, not by label.
    return st.sampled_from([instant.astimezone(UTC), instant.astimezone(SEOUL)])


def never_negative(raw: list[tuple[datetime, int]], base: int) -> list[SeatEvent]:
    """Turn revocations into grants where the holders would otherwise go negative."""
    ordered = sorted(raw, key=lambda event: event[0])
    events: list[SeatEvent] = []
    count, i = base, 0
    while i < len(ordered):
        group = [e for e in ordered[i:] if e[0] == ordered[i][0]]
        if count + sum(delta for _, delta in group) < 0:
            group = [(at, abs(delta)) for at, delta in group]
        count += sum(delta for _, delta in group)
        events.extend(SeatEvent(at=at, delta=delta) for at, delta in group)
        i += len(group)
    return events


@st.composite
def histories(draw: st.DrawFn) -> BillingHistory:
    applied = draw(application_instants)
    # R-BILL-2: applied on the day the predecessor was cancelled -> billing starts the next day.
    starts_next_day = draw(st.booleans())
    # A short horizon crowds events into few days and months; a long one spans many periods.
    later = instants_after(applied, draw(st.sampled_from([2, 45, 200])))
    # Seats are often granted at the application instant itself.
    pool = draw(st.lists(later, min_size=1, max_size=8)) + [applied] * draw(st.integers(0, 1))
    moments = st.one_of(st.sampled_from(pool), later).flatmap(shown_in_some_zone)
    base = draw(st.integers(0, 3))
    deltas = st.sampled_from([-3, -2, -1, -1, -1, 1, 1, 1, 2, 3])
    raw_seats = draw(st.lists(st.tuples(moments, deltas), max_size=40))
    raw_plans = draw(st.lists(st.tuples(moments, st.sampled_from(PLANS)), max_size=6))
    plans = [PlanChange(at=applied, plan_id=draw(st.sampled_from(PLANS)))]
    plans += [PlanChange(at=at, plan_id=p) for at, p in sorted(raw_plans, key=lambda c: c[0])]
    ended = draw(st.one_of(st.none(), moments))
    return BillingHistory(
        first_billable_day=kst_date(applied) + (ONE_DAY if starts_next_day else timedelta(0)),
        base_seats=base,
        plan_changes=plans,
        seat_events=never_negative(raw_seats, base),
        ended_at=ended,
    )


won = st.one_of(st.integers(0, 300_000), st.integers(0, 10**15)).map(Decimal)
fee_tables = st.tuples(*[st.builds(PlanFees, base_fee=won, seat_fee=won) for _ in PLANS]).map(
    lambda table: dict(zip(PLANS, table, strict=True))
)


@st.composite
def billing_cases(draw: st.DrawFn) -> tuple[BillingHistory, str, dict[str, PlanFees]]:
    history = draw(histories())
    # Mostly a month where something happened; sometimes any month around the subscription.
    events: list[PlanChange | SeatEvent] = [*history.plan_changes, *history.seat_events]
    end = history.ended_at or events[-1].at
    eventful = [kst_date(e.at) for e in events if e.at <= end] + [kst_date(end)]
    around = st.integers(-1, 8).map(lambda n: period_after(kst_date(events[0].at), n))
    period = draw(st.one_of(st.sampled_from(eventful).map(lambda d: period_after(d, 0)), around))
    return history, period, draw(fee_tables)


@settings(max_examples=1500, deadline=None)
@given(billing_cases())
def test_r_bill_2_3_4_invoice_matches_the_independent_oracle(
    case: tuple[BillingHistory, str, dict[str, PlanFees]],
) -> None:
    """R-BILL-2..4, R-BILL-7: every line and total equals the day-by-day oracle, to the won."""
    history, period, fees = case
    expected = oracle_invoice(history, period, fees)
    invoice = compute_invoice(history, period, fees)
    if expected is None:
        assert invoice is None
        return
    assert invoice is not None
    assert invoice.period == period
    assert as_plain(invoice) == expected


@settings(max_examples=300, deadline=None)
@given(billing_cases())
def test_r_bill_6_invoice_survives_a_json_round_trip_of_the_history(
    case: tuple[BillingHistory, str, dict[str, PlanFees]],
) -> None:
    """R-BILL-6: the state handed over by continue-as-new (JSON) bills exactly the same."""
    history, period, fees = case
    restored = BillingHistory.model_validate_json(history.model_dump_json())
    assert compute_invoice(restored, period, fees) == compute_invoice(history, period, fees)


@settings(max_examples=500, deadline=None)
@given(histories(), st.integers(-3, 220), st.integers(0, 4), fee_tables)
def test_r_life_5_compaction_never_changes_a_later_invoice(
    history: BillingHistory, cut_offset: int, months: int, fees: dict[str, PlanFees]
) -> None:
    """R-LIFE-5: folding old events into the state leaves every later invoice unchanged."""
    before = kst_date(history.plan_changes[0].at) + timedelta(days=cut_offset)
    compacted = history.compacted(before)
    cut = kst_midnight(before)
    assert all(e.at >= cut for e in compacted.seat_events)
    assert all(c.at >= cut for c in compacted.plan_changes)
    # Periods that start on or after the cut, and the one containing it when it is the 1st.
    period = period_after(before, months if before.day == 1 else months + 1)
    assert compute_invoice(compacted, period, fees) == compute_invoice(history, period, fees)
    again = compacted.compacted(before + timedelta(days=40))
    later = period_after(before + timedelta(days=40), months + 1)
    assert compute_invoice(again, later, fees) == compute_invoice(history, later, fees)


# --- named edge cases ----------------------------------------------------------------------

FEES = {
    "lite": PlanFees(base_fee=Decimal(10_000), seat_fee=Decimal(1_000)),
    "premium": PlanFees(base_fee=Decimal(30_000), seat_fee=Decimal(5_000)),
}


def seoul(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=SEOUL)


def subscription(
    applied: datetime, plan: str = "lite", seats: int = 0, first_day: date | None = None
) -> BillingHistory:
    history = BillingHistory(
        first_billable_day=first_day or applied.astimezone(SEOUL).date(),
        plan_changes=[PlanChange(at=applied, plan_id=plan)],
    )
    return history.with_seat_event(applied, seats) if seats else history


def lines_of(invoice: Invoice | None) -> list[tuple[str, date, date, int, int, Decimal]]:
    assert invoice is not None
    return [
        (li.plan_id, li.from_day, li.to_day, li.days, li.seats, li.amount) for li in invoice.lines
    ]


def totals_of(invoice: Invoice | None) -> tuple[Decimal, Decimal, Decimal]:
    assert invoice is not None
    return invoice.subtotal, invoice.vat, invoice.total


def test_r_bill_4_single_full_month() -> None:
    history = subscription(seoul(2026, 2, 20, 10), "premium", seats=3)
    invoice = compute_invoice(history, "2026-03", FEES)
    assert lines_of(invoice) == [
        ("premium", date(2026, 3, 1), date(2026, 3, 31), 31, 3, Decimal(45_000))
    ]
    assert totals_of(invoice) == (Decimal(45_000), Decimal(4_500), Decimal(49_500))


def test_r_bill_2_application_on_the_last_day_of_a_month_at_2330() -> None:
    # 23:30 KST on January 31st is 14:30 UTC: one billable January day, 12,000 × 1/31 = 387.09.
    applied = datetime(2026, 1, 31, 14, 30, tzinfo=UTC)
    history = subscription(applied, "lite", seats=2)
    invoice = compute_invoice(history, "2026-01", FEES)
    assert lines_of(invoice) == [("lite", date(2026, 1, 31), date(2026, 1, 31), 1, 2, Decimal(387))]
    assert totals_of(invoice) == (Decimal(387), Decimal(38), Decimal(425))
    assert lines_of(compute_invoice(history, "2026-02", FEES))[0][1:4] == (
        date(2026, 2, 1),
        date(2026, 2, 28),
        28,
    )


def test_r_bill_2_0030_seoul_application_bills_from_that_seoul_day() -> None:
    # 15:30 UTC on January 31st is 00:30 on February 1st in Seoul: nothing in January.
    history = subscription(datetime(2026, 1, 31, 15, 30, tzinfo=UTC))
    assert compute_invoice(history, "2026-01", FEES) is None
    assert lines_of(compute_invoice(history, "2026-02", FEES))[0][3] == 28


def test_r_cancel_3_cancellation_on_the_first_bills_that_day() -> None:
    # Cancelled at 00:00:00 KST on March 1st: March 1st is a billable day, April has none.
    history = subscription(seoul(2026, 1, 10), "lite").ended(seoul(2026, 3, 1))
    assert lines_of(compute_invoice(history, "2026-03", FEES)) == [
        ("lite", date(2026, 3, 1), date(2026, 3, 1), 1, 0, Decimal(323))  # 10,000/31 = 322.58
    ]
    assert compute_invoice(history, "2026-04", FEES) is None


def test_r_cancel_3_cancellation_on_the_last_day_bills_the_whole_month() -> None:
    history = subscription(seoul(2026, 1, 10), "lite", seats=1).ended(
        seoul(2026, 4, 30, 23, 59, 59)
    )
    assert lines_of(compute_invoice(history, "2026-04", FEES)) == [
        ("lite", date(2026, 4, 1), date(2026, 4, 30), 30, 1, Decimal(11_000))
    ]
    assert compute_invoice(history, "2026-05", FEES) is None


@pytest.mark.parametrize(
    ("applied", "period", "days", "amount"),
    [
        (seoul(2027, 2, 15), "2027-02", 14, Decimal(14_000)),  # 28,000 × 14/28
        (seoul(2028, 2, 15), "2028-02", 15, Decimal(15_000)),  # 29,000 × 15/29
    ],
)
def test_r_bill_4_february_prorates_by_its_own_length(
    applied: datetime, period: str, days: int, amount: Decimal
) -> None:
    month_days = 28 if period == "2027-02" else 29
    fees = {"lite": PlanFees(base_fee=Decimal(month_days * 1_000), seat_fee=Decimal(0))}
    invoice = compute_invoice(subscription(applied), period, fees)
    assert lines_of(invoice) == [
        ("lite", applied.date(), applied.date().replace(day=month_days), days, 0, amount)
    ]


@pytest.mark.parametrize("revoke_recorded_first", [True, False])
def test_r_bill_3_revoke_and_grant_at_the_same_instant_is_one_seat(
    revoke_recorded_first: bool,
) -> None:
    # One holder; at 12:00 member A loses the permission and member B gets it.
    history = subscription(seoul(2026, 5, 1, 9), "lite", seats=1)
    swap = seoul(2026, 5, 20, 12)
    for delta in (-1, +1) if revoke_recorded_first else (+1, -1):
        history = history.with_seat_event(swap, delta)
    invoice = compute_invoice(history, "2026-05", FEES)
    assert {line[4] for line in lines_of(invoice)} == {1}
    assert totals_of(invoice)[0] == Decimal(11_000)


def test_r_bill_3_grant_and_its_revocation_at_one_instant_bill_no_seat() -> None:
    # Both recorded in one workflow task (same workflow time) from no holders: by the
    # revocations-first rule nobody held the permission at any moment, and it is no error.
    history = subscription(seoul(2026, 5, 1, 9), "lite")
    history = history.with_seat_event(seoul(2026, 5, 20, 12), +1)
    history = history.with_seat_event(seoul(2026, 5, 20, 12), -1)
    assert {line[4] for line in lines_of(compute_invoice(history, "2026-05", FEES))} == {0}


def test_r_bill_3_same_instant_in_another_zone_is_the_same_instant() -> None:
    history = subscription(seoul(2026, 5, 1, 9), "lite", seats=1)
    history = history.with_seat_event(seoul(2026, 5, 20, 12), +1)
    history = history.with_seat_event(datetime(2026, 5, 20, 3, tzinfo=UTC), -1)
    assert {line[4] for line in lines_of(compute_invoice(history, "2026-05", FEES))} == {1}


def test_r_bill_3_peak_within_a_day_is_billed() -> None:
    history = subscription(seoul(2026, 6, 1, 9), "lite", seats=1)
    history = history.with_seat_event(seoul(2026, 6, 10, 10), +3)
    history = history.with_seat_event(seoul(2026, 6, 10, 11), -3)
    assert [line[1:5] for line in lines_of(compute_invoice(history, "2026-06", FEES))] == [
        (date(2026, 6, 1), date(2026, 6, 9), 9, 1),
        (date(2026, 6, 10), date(2026, 6, 10), 1, 4),
        (date(2026, 6, 11), date(2026, 6, 30), 20, 1),
    ]


def test_r_bill_3_seats_at_the_day_start_count_even_if_revoked_at_once() -> None:
    history = subscription(seoul(2026, 6, 1, 9), "lite", seats=2)
    history = history.with_seat_event(seoul(2026, 6, 10), -2)  # exactly 00:00 on the 10th
    seats = [(line[1], line[4]) for line in lines_of(compute_invoice(history, "2026-06", FEES))]
    assert seats == [(date(2026, 6, 1), 2), (date(2026, 6, 11), 0)]


def test_r_plan_9_plan_change_mid_month_gives_two_lines() -> None:
    history = subscription(seoul(2026, 4, 20), "lite")
    history = history.with_plan_change(seoul(2026, 5, 15, 13), "premium")
    assert lines_of(compute_invoice(history, "2026-05", FEES)) == [
        ("lite", date(2026, 5, 1), date(2026, 5, 14), 14, 0, Decimal(4_516)),  # 140,000/31
        ("premium", date(2026, 5, 15), date(2026, 5, 31), 17, 0, Decimal(16_452)),  # 510,000/31
    ]


def test_r_plan_8_change_at_midnight_of_the_first_belongs_to_the_new_month() -> None:
    history = subscription(seoul(2026, 4, 20), "lite")
    history = history.with_plan_change(seoul(2026, 5, 1), "premium")
    assert {line[0] for line in lines_of(compute_invoice(history, "2026-04", FEES))} == {"lite"}
    assert {line[0] for line in lines_of(compute_invoice(history, "2026-05", FEES))} == {"premium"}


def test_r_bill_3_cancellation_day_bills_the_plan_and_seats_at_cancellation() -> None:
    ended_at = seoul(2026, 7, 10, 15)
    history = subscription(seoul(2026, 6, 20), "lite", seats=1)
    # Recorded at the same instant as the cancellation, so they are part of the billed day.
    history = history.with_plan_change(ended_at, "premium")
    history = history.with_seat_event(ended_at, +2)
    history = history.ended(ended_at)
    history = history.with_seat_event(seoul(2026, 7, 10, 16), +5)  # after cancellation: ignored
    assert lines_of(compute_invoice(history, "2026-07", FEES))[-1][:5] == (
        "premium",
        date(2026, 7, 10),
        date(2026, 7, 10),
        1,
        3,
    )


def test_r_bill_4_vat_is_rounded_down() -> None:
    fees = {"lite": PlanFees(base_fee=Decimal(12_349), seat_fee=Decimal(0))}
    invoice = compute_invoice(subscription(seoul(2026, 2, 20)), "2026-03", fees)
    assert totals_of(invoice) == (Decimal(12_349), Decimal(1_234), Decimal(13_583))


@pytest.mark.parametrize(("base_fee", "amount"), [(15_015, 501), (15_014, 500), (15_045, 502)])
def test_r_bill_4_line_rounds_half_up(base_fee: int, amount: int) -> None:
    # One April day of a 30-day month: 15,015/30 = 500.5 -> 501 (banker's rounding would say 500).
    fees = {"lite": PlanFees(base_fee=Decimal(base_fee), seat_fee=Decimal(0))}
    invoice = compute_invoice(subscription(seoul(2026, 4, 30, 18)), "2026-04", fees)
    assert lines_of(invoice)[0][5] == Decimal(amount)


def test_r_bill_4_no_per_day_rounding() -> None:
    # 10 days of 10,000/31 = 3,225.8 -> 3,226; rounding each day (323 × 10) would give 3,230.
    history = subscription(seoul(2026, 1, 22), "lite")
    assert totals_of(compute_invoice(history, "2026-01", FEES))[0] == Decimal(3_226)


def test_r_bill_4_month_without_billable_day_has_no_invoice() -> None:
    history = subscription(seoul(2026, 3, 10), "lite").ended(seoul(2026, 4, 2))
    assert compute_invoice(history, "2026-02", FEES) is None
    assert compute_invoice(history, "2026-05", FEES) is None


def test_r_bill_2_successor_applied_on_the_predecessors_cancellation_day() -> None:
    predecessor_ended = seoul(2026, 8, 10, 9)
    applied = seoul(2026, 8, 10, 23, 30)
    first_day = first_billable_day(applied, predecessor_ended)
    assert first_day == date(2026, 8, 11)
    assert first_billable_day(applied, seoul(2026, 8, 9, 23)) == date(2026, 8, 10)
    # Seats granted at 23:30 on the application day count from the first billable day's start.
    history = subscription(applied, "lite", seats=2, first_day=first_day)
    assert lines_of(compute_invoice(history, "2026-08", FEES))[0][1:5] == (
        date(2026, 8, 11),
        date(2026, 8, 31),
        21,
        2,
    )
    # Cancelled again the same day: no day is billed at all.
    assert compute_invoice(history.ended(seoul(2026, 8, 10, 23, 45)), "2026-08", FEES) is None


def test_r_bill_7_open_history_is_the_estimate_to_the_months_end() -> None:
    history = subscription(seoul(2026, 9, 1), "lite", seats=1)
    history = history.with_seat_event(seoul(2026, 9, 15, 10), +1)
    assert lines_of(compute_invoice(history, "2026-09", FEES))[-1][1:5] == (
        date(2026, 9, 15),
        date(2026, 9, 30),
        16,
        2,
    )


def test_r_bill_1_result_does_not_depend_on_the_decimal_context() -> None:
    fees = {"lite": PlanFees(base_fee=Decimal(10**15 + 7), seat_fee=Decimal(10**12 + 3))}
    history = subscription(seoul(2026, 1, 3, 5), "lite", seats=7)
    expected = compute_invoice(history, "2026-01", fees)
    with localcontext() as context:
        context.prec = 3
        context.rounding = ROUND_DOWN
        assert compute_invoice(history, "2026-01", fees) == expected


# --- refused inputs ------------------------------------------------------------------------


def test_negative_holders_are_a_bug() -> None:
    history = subscription(seoul(2026, 1, 3), "lite", seats=1)
    with pytest.raises(ValueError):
        history.with_seat_event(seoul(2026, 1, 4), -2)
    with pytest.raises(ValueError):
        BillingHistory(
            first_billable_day=date(2026, 1, 3),
            base_seats=-1,
            plan_changes=[PlanChange(at=seoul(2026, 1, 3), plan_id="lite")],
        )


def test_events_must_be_recorded_in_time_order() -> None:
    history = subscription(seoul(2026, 1, 3), "lite", seats=1)
    history = history.with_seat_event(seoul(2026, 1, 10), +1)
    with pytest.raises(ValueError):
        history.with_seat_event(seoul(2026, 1, 9), +1)
    with pytest.raises(ValueError):
        history.with_plan_change(seoul(2026, 1, 2), "premium")


def test_naive_instants_zero_deltas_and_fractional_fees_are_refused() -> None:
    with pytest.raises(ValidationError):
        SeatEvent(at=datetime(2026, 1, 1), delta=1)
    with pytest.raises(ValidationError):
        SeatEvent(at=seoul(2026, 1, 1), delta=0)
    with pytest.raises(ValidationError):
        PlanFees(base_fee=Decimal("100.5"), seat_fee=Decimal(0))
    with pytest.raises(ValidationError):
        PlanFees(base_fee=Decimal(-1), seat_fee=Decimal(0))
    with pytest.raises(ValidationError):
        BillingHistory(first_billable_day=date(2026, 1, 1), plan_changes=[])


def test_a_history_ends_once() -> None:
    history = subscription(seoul(2026, 1, 3)).ended(seoul(2026, 2, 1))
    with pytest.raises(ValueError):
        history.ended(seoul(2026, 2, 2))


def test_unknown_plan_fees_are_an_error() -> None:
    with pytest.raises(ValueError):
        compute_invoice(subscription(seoul(2026, 1, 3), "ghost"), "2026-01", FEES)


def test_r_life_5_compacted_history_refuses_days_before_the_cut() -> None:
    history = subscription(seoul(2026, 1, 3), "lite", seats=1).with_seat_event(seoul(2026, 2, 5), 1)
    compacted = history.compacted(date(2026, 3, 1))
    assert compacted.seat_events == []
    assert compacted.base_seats == 2
    assert compacted.plan_changes == [PlanChange(at=seoul(2026, 3, 1), plan_id="lite")]
    assert compute_invoice(compacted, "2026-03", FEES) == compute_invoice(history, "2026-03", FEES)
    with pytest.raises(ValueError):
        compute_invoice(compacted, "2026-02", FEES)


# ── month-end spread (issue 12) ──────────────────────────────────────────────────────────────


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=24 * 3600))
def test_invoice_delay_is_a_whole_second_inside_the_window_and_fixed_by_the_id(
    subscription_id: str, seconds: int
) -> None:
    spread = timedelta(seconds=seconds)
    delay = invoice_delay(subscription_id, spread)
    assert timedelta(0) <= delay < spread
    assert delay.microseconds == 0
    assert invoice_delay(subscription_id, spread) == delay  # every month, every replay


def test_invoice_delay_without_a_spread_is_midnight_sharp() -> None:
    assert invoice_delay("sub_x", timedelta(0)) == timedelta(0)
    assert invoice_delay("sub_x", timedelta(seconds=-5)) == timedelta(0)


def test_invoice_delays_spread_evenly_over_the_window() -> None:
    """1,000 subscriptions over 60 minutes: every 10-minute slice gets a fair share."""
    spread = timedelta(minutes=60)
    slices = [0] * 6
    for i in range(1000):
        slices[int(invoice_delay(f"sub_{i:05d}", spread).total_seconds() // 600)] += 1
    assert min(slices) > 1000 / 6 * 0.7, slices
