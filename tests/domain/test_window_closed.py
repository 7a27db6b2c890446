"""PLAN_CHANGE_WINDOW_CLOSED's details and words when a scheduled change takes the next month
(R-PLAN-4, R-PLAN-8), and the calendar rule that decides it."""

from __future__ import annotations

from datetime import datetime

from domain.calendar import SEOUL, month_taken_by_schedule, plan_change_available_at
from domain.errors import BizError, window_closed_details


def seoul(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=SEOUL)


APPLIED = seoul(2121, 5, 20, 10)


def test_r_plan_8_the_scheduled_change_takes_the_next_month_and_withdrawing_frees_it() -> None:
    """June's change made, a change scheduled for July 1: the next change is from August 1;
    without the schedule (withdrawn) it is from July 1."""
    now, july = seoul(2121, 6, 25, 12), seoul(2121, 7, 1)
    assert plan_change_available_at(now, APPLIED, "2121-06", july) == seoul(2121, 8, 1)
    assert month_taken_by_schedule(now, APPLIED, "2121-06", july)
    assert plan_change_available_at(now, APPLIED, "2121-06") == july
    assert not month_taken_by_schedule(now, APPLIED, "2121-06", None)


def test_r_plan_8_a_schedule_does_not_take_a_month_nobody_was_waiting_for() -> None:
    """A change allowed now, or refused only on the application day mid-month, is not moved."""
    july = seoul(2121, 7, 1)
    assert not month_taken_by_schedule(seoul(2121, 6, 25, 12), APPLIED, None, july)
    applied = seoul(2121, 6, 10, 9)
    assert not month_taken_by_schedule(seoul(2121, 6, 10, 11), applied, None, july)


def test_r_plan_8_applied_on_a_months_last_day_with_a_schedule_on_that_day() -> None:
    """Applied on June 30 and a change scheduled for July 1 that same day: the application day's
    refusal names August 1, because July is the scheduled change's."""
    applied, july = seoul(2121, 6, 30, 9), seoul(2121, 7, 1)
    now = seoul(2121, 6, 30, 15)
    assert plan_change_available_at(now, applied, None, july) == seoul(2121, 8, 1)
    assert month_taken_by_schedule(now, applied, None, july)


def test_r_plan_4_the_refusal_names_the_scheduled_change_in_both_languages() -> None:
    details = window_closed_details(
        "MONTHLY_LIMIT", seoul(2121, 8, 1).isoformat(), seoul(2121, 7, 1).isoformat()
    )
    assert details["reason"] == "monthly_limit"
    assert details["next_plan_change_at"] == "2121-08-01T00:00:00+09:00"
    assert details["scheduled_plan_change_at"] == "2121-07-01T00:00:00+09:00"
    refusal = BizError("PLAN_CHANGE_WINDOW_CLOSED", **details)
    assert "scheduled for 2121-07-01 is 2121-07's change" in refusal.message
    assert "withdraw it to change the plan in 2121-07" in refusal.message
    assert refusal.message.endswith("Next change from 2121-08-01T00:00:00+09:00.")
    assert "2121년 7월 1일로 예약된 상품 변경이 2121년 7월의 변경입니다" in refusal.message_ko
    assert "예약을 철회하면 2121년 7월에 변경할 수 있습니다" in refusal.message_ko


def test_r_plan_4_without_a_schedule_the_refusal_is_as_before() -> None:
    details = window_closed_details("MONTHLY_LIMIT", seoul(2121, 7, 1).isoformat())
    assert details == {
        "reason": "monthly_limit",
        "why": "A plan can be changed once per month.",
        "why_ko": "상품은 월 1회만 변경할 수 있습니다.",
        "next_plan_change_at": "2121-07-01T00:00:00+09:00",
    }
