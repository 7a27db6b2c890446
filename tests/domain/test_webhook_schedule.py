"""R-EVENT-2's retry schedule and endpoint health, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.webhook_schedule import (
    DISABLE_AFTER,
    MAX_ATTEMPTS,
    MAX_RETRY_AFTER,
    RETRY_DELAYS,
    failing_since_after,
    retry_after,
    retry_at,
    should_disable,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


def test_the_contract_delays() -> None:
    # API.md: about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; then failed.
    assert [d.total_seconds() for d in RETRY_DELAYS] == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert MAX_ATTEMPTS == 8


def test_walking_the_schedule_gives_up_after_the_last_delay() -> None:
    at, attempts, waits = T0, 1, []
    while (nxt := retry_at(attempts, at)) is not None:
        waits.append(nxt - at)
        at, attempts = nxt, attempts + 1
    assert waits == list(RETRY_DELAYS)
    assert attempts == MAX_ATTEMPTS
    assert timedelta(hours=27) < at - T0 < timedelta(hours=28)


@given(st.integers(min_value=1, max_value=MAX_ATTEMPTS - 1), times)
def test_every_retry_is_later_and_grows(attempts: int, at: datetime) -> None:
    nxt = retry_at(attempts, at)
    assert nxt is not None and nxt > at
    if attempts > 1:
        before = retry_at(attempts - 1, at)
        assert before is not None and before <= nxt


@given(st.integers(min_value=MAX_ATTEMPTS, max_value=100), times)
def test_no_retry_after_the_last_attempt(attempts: int, at: datetime) -> None:
    assert retry_at(attempts, at) is None


@given(
    st.integers(min_value=1, max_value=MAX_ATTEMPTS),
    times,
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
)
def test_retry_after_lengthens_the_wait_never_shortens_it(
    attempts: int, at: datetime, asked: timedelta
) -> None:
    """A receiver's Retry-After (429, 503) is honoured up to 24 h; the schedule stays the floor,
    and the last attempt stays the last."""
    scheduled, honoured = retry_at(attempts, at), retry_at(attempts, at, asked)
    if scheduled is None:
        assert honoured is None
        return
    assert honoured is not None
    assert honoured - at == max(scheduled - at, min(asked, MAX_RETRY_AFTER))


def test_retry_after_headers() -> None:
    now = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)
    assert retry_after("120", now) == timedelta(seconds=120)
    assert retry_after(" 0 ", now) == timedelta(0)
    assert retry_after("Mon, 07 Dec 2026 09:10:00 GMT", now) == timedelta(minutes=10)
    assert retry_after("Mon, 07 Dec 2026 08:00:00 GMT", now) == timedelta(0)  # already past
    assert retry_after("soon", now) is None
    assert retry_after("-5", now) is None
    assert retry_after(None, now) is None
    assert retry_after("9" * 5000, now) == MAX_RETRY_AFTER  # a receiver cannot break the round
    assert retry_after("٣", now) is None  # digits, but not ASCII ones


@given(st.text(max_size=60))
def test_any_retry_after_header_reads_as_a_wait_or_nothing(value: str) -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    wait = retry_after(value, now)
    assert wait is None or wait >= timedelta(0)
    if wait is not None:
        assert retry_at(1, now, wait) is not None


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        retry_at(0, T0)


@given(st.lists(st.tuples(st.booleans(), st.timedeltas(timedelta(0), timedelta(hours=30)))))
def test_failing_since_is_the_first_failure_after_the_last_success(
    outcomes: list[tuple[bool, timedelta]],
) -> None:
    since, at, expected = None, T0, None
    for ok, gap in outcomes:
        at += gap
        since = failing_since_after(since, ok=ok, at=at)
        expected = None if ok else (expected or at)
        assert since == expected


def test_disabled_after_three_days_of_failures_only() -> None:
    assert not should_disable(None, T0 + timedelta(days=30))
    assert not should_disable(T0, T0 + DISABLE_AFTER - timedelta(seconds=1))
    assert should_disable(T0, T0 + DISABLE_AFTER)
    assert DISABLE_AFTER == timedelta(days=3)
