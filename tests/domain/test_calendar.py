"""The Asia/Seoul calendar (R-BILL-1, R-BILL-2) and the plan-change window (R-PLAN-2, -3, -4)."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.calendar import (
    SEOUL,
    day_start,
    days_in_month,
    days_of,
    first_instant_of_next_month,
    next_day_start,
    next_period,
    period_end_date,
    period_of,
    period_start,
    period_start_date,
    plan_change_available_at,
    plan_change_refusal,
    seoul_date,
)

# Seoul has kept +09:00 without daylight saving since 1988, so a fixed offset is an
# independent way to state the expected answers.
KST_OFFSET = timedelta(hours=9)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def seoul(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=SEOUL)


def is_seoul_midnight(instant: datetime) -> bool:
    local = instant.astimezone(UTC) + KST_OFFSET
    return (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0)


# --- days -------------------------------------------------------------------------------


def test_r_bill_2_2330_seoul_is_still_the_same_seoul_day() -> None:
    # 14:30 UTC on the 31st is 23:30 on the 31st in Seoul.
    assert seoul_date(utc(2026, 1, 31, 14, 30)) == date(2026, 1, 31)


def test_r_bill_2_0030_seoul_is_the_next_seoul_day_though_utc_is_the_previous_day() -> None:
    # 15:30 UTC on the 31st is 00:30 on February 1st in Seoul: a new day and a new period.
    instant = utc(2026, 1, 31, 15, 30)
    assert seoul_date(instant) == date(2026, 2, 1)
    assert period_of(instant) == "2026-02"


def test_r_bill_2_midnight_boundary_is_exact() -> None:
    assert seoul_date(utc(2026, 3, 9, 15, 0)) == date(2026, 3, 10)
    assert seoul_date(utc(2026, 3, 9, 14, 59, 59, 999999)) == date(2026, 3, 9)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError):
        seoul_date(datetime(2026, 1, 1, 12, 0))
    with pytest.raises(ValueError):
        period_of(datetime(2026, 1, 1, 12, 0))


def test_day_start_is_seoul_midnight_and_refuses_datetimes() -> None:
    assert day_start(date(2026, 5, 5)) == utc(2026, 5, 4, 15, 0)
    with pytest.raises(TypeError):
        day_start(seoul(2026, 5, 5, 10))


def test_next_day_start_from_late_evening_and_from_midnight() -> None:
    assert next_day_start(seoul(2026, 12, 31, 23, 59, 59)) == seoul(2027, 1, 1)
    assert next_day_start(seoul(2026, 12, 31)) == seoul(2027, 1, 1)


# --- periods -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "days"),
    [
        ("2027-02", 28),
        ("2028-02", 29),
        ("2026-01", 31),
        ("2026-03", 31),
        ("2026-12", 31),
        ("2026-04", 30),
    ],
)
def test_r_bill_1_days_in_month(period: str, days: int) -> None:
    assert days_in_month(period) == days
    assert len(days_of(period)) == days
    assert days_of(period)[0] == period_start_date(period)
    assert days_of(period)[-1] == period_end_date(period)


def test_period_end_dates() -> None:
    assert period_end_date("2027-02") == date(2027, 2, 28)
    assert period_end_date("2028-02") == date(2028, 2, 29)
    assert period_end_date("2026-07") == date(2026, 7, 31)


def test_period_start_is_seoul_midnight_on_the_first() -> None:
    assert period_start("2026-03") == utc(2026, 2, 28, 15, 0)


def test_next_period_across_year_end() -> None:
    assert next_period("2026-12") == "2027-01"
    assert next_period("2026-01") == "2026-02"


def test_first_instant_of_next_month_across_year_end() -> None:
    # 23:59 on December 31st Seoul is still 2026 there; next month starts 2027-01-01 00:00 KST.
    assert first_instant_of_next_month(seoul(2026, 12, 31, 23, 59)) == utc(2026, 12, 31, 15, 0)
    # 15:00 UTC on December 31st is already January in Seoul, so the next month is February.
    assert first_instant_of_next_month(utc(2026, 12, 31, 15, 0)) == seoul(2027, 2, 1)


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", " 2026-01"])
def test_malformed_periods_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        period_start(bad)


def test_period_of_a_date() -> None:
    assert period_of(date(2028, 2, 29)) == "2028-02"


# --- plan-change window --------------------------------------------------------------------

APPLIED = seoul(2026, 3, 10, 14, 0)


def test_r_plan_3_no_change_on_the_application_day() -> None:
    now = seoul(2026, 3, 10, 23, 59)
    assert plan_change_refusal(now, APPLIED, None) == "APPLICATION_DAY"
    assert plan_change_available_at(now, APPLIED, None) == seoul(2026, 3, 11)


def test_r_plan_3_change_allowed_from_the_next_day() -> None:
    now = seoul(2026, 3, 11, 0, 0)
    assert plan_change_refusal(now, APPLIED, None) is None
    assert plan_change_available_at(now, APPLIED, None) == now


def test_r_plan_2_second_change_in_the_same_month_waits_for_the_first() -> None:
    now = seoul(2026, 3, 20, 9, 0)
    assert plan_change_refusal(now, APPLIED, "2026-03") == "MONTHLY_LIMIT"
    assert plan_change_available_at(now, APPLIED, "2026-03") == seoul(2026, 4, 1)


def test_r_plan_2_change_last_month_does_not_block_this_month() -> None:
    now = seoul(2026, 4, 1, 0, 0)
    assert plan_change_available_at(now, APPLIED, "2026-03") == now


def test_r_plan_2_month_is_the_seoul_month_not_the_utc_month() -> None:
    # 15:30 UTC on March 31st is April 1st in Seoul: a March change no longer blocks.
    now = utc(2026, 3, 31, 15, 30)
    assert plan_change_available_at(now, APPLIED, "2026-03") == now
    # 14:30 UTC on March 31st is still March in Seoul.
    assert plan_change_available_at(utc(2026, 3, 31, 14, 30), APPLIED, "2026-03") == seoul(
        2026, 4, 1
    )


def test_r_plan_2_3_application_on_the_last_day_of_a_month() -> None:
    applied = seoul(2026, 1, 31, 23, 30)
    assert plan_change_available_at(applied, applied, None) == seoul(2026, 2, 1)


def test_r_plan_2_3_both_rules_combine_to_the_later_instant() -> None:
    # Leaving the application day lands on the 1st, in a month that already had its change
    # (e.g. a next_window change scheduled for that month, R-PLAN-8).
    applied = seoul(2026, 1, 31, 10, 0)
    assert plan_change_available_at(applied, applied, "2026-02") == seoul(2026, 3, 1)


def test_r_plan_2_december_change_waits_for_january() -> None:
    now = seoul(2026, 12, 15)
    assert plan_change_available_at(now, APPLIED, "2026-12") == seoul(2027, 1, 1)


# Instants from 2026 through 2028, with a bias to the Seoul midnights where the rules turn.
instants = st.one_of(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31, 23, 59, 59)).map(
        lambda naive: naive.replace(tzinfo=UTC)
    ),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)).flatmap(
        lambda d: st.sampled_from(
            [timedelta(0), timedelta(microseconds=-1), timedelta(hours=1)]
        ).map(lambda shift: datetime(d.year, d.month, d.day, tzinfo=UTC) - KST_OFFSET + shift)
    ),
)


@st.composite
def window_cases(draw: st.DrawFn) -> tuple[datetime, datetime, str | None]:
    applied = draw(instants)
    now = applied + draw(
        st.one_of(
            st.just(timedelta(0)),
            st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
        )
    )
    local_now = (now.astimezone(UTC) + KST_OFFSET).date()
    this_month = f"{local_now.year:04d}-{local_now.month:02d}"
    prev_month = (local_now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    next_month = (local_now.replace(day=28) + timedelta(days=5)).strftime("%Y-%m")
    last = draw(st.sampled_from([None, this_month, prev_month, next_month]))
    return now, applied, last


@given(window_cases())
def test_r_plan_4_available_at_properties(case: tuple[datetime, datetime, str | None]) -> None:
    """R-PLAN-4: the answer is never in the past, is `now` iff allowed, else a Seoul midnight."""
    now, applied, last = case
    available = plan_change_available_at(now, applied, last)
    assert available >= now
    assert (available == now) == (plan_change_refusal(now, applied, last) is None)
    assert plan_change_refusal(available, applied, last) is None
    if available != now:
        assert is_seoul_midnight(available)
        # Minimal: the instant just before is still refused.
        assert plan_change_refusal(available - timedelta(microseconds=1), applied, last)


@given(window_cases())
def test_r_plan_2_3_refusal_matches_a_fixed_offset_reading(
    case: tuple[datetime, datetime, str | None],
) -> None:
    now, applied, last = case
    local_now = (now.astimezone(UTC) + KST_OFFSET).date()
    local_applied = (applied.astimezone(UTC) + KST_OFFSET).date()
    expected_refused = local_now == local_applied or last == local_now.strftime("%Y-%m")
    assert (plan_change_refusal(now, applied, last) is not None) == expected_refused


@given(instants)
def test_r_bill_1_seoul_reading_matches_the_fixed_offset(instant: datetime) -> None:
    local = instant.astimezone(UTC) + KST_OFFSET
    assert seoul_date(instant) == local.date()
    assert period_of(instant) == local.strftime("%Y-%m")
    assert next_day_start(instant) == day_start(local.date() + timedelta(days=1))
    assert is_seoul_midnight(first_instant_of_next_month(instant))
    assert first_instant_of_next_month(instant) > instant


def test_r_plan_8_a_scheduled_change_uses_up_its_month() -> None:
    """R-PLAN-4, -8: before the schedule, this month's rules; from it on, the month after."""
    applied = seoul(2027, 3, 10, 9)
    free = seoul(2027, 3, 15, 9)
    first = seoul(2027, 4, 1)
    assert plan_change_available_at(free, applied, None, first) == free
    assert plan_change_available_at(free, applied, "2027-03", first) == seoul(2027, 5, 1)
    assert plan_change_available_at(first, applied, "2027-03", first) == seoul(2027, 5, 1)
