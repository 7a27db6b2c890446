"""R-EVENT-4: the deletion notices 7 days and 1 day before a cancelled subscription's data is
deleted (R-CANCEL-2), as pure decisions (domain/decisions.py). The workflow sends the notice
`deletion_notice_due` names at each wake-up and sleeps until `next_due`; these tests play that
loop without Temporal (tests/workflows/test_deletion_notices.py runs the real one)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain import decisions as decide
from domain.subscription import DATA_RETENTION, DELETION_NOTICE_DAYS, SubscriptionData
from tests.domain.test_decisions import APPLIED, active, subscription

CANCELLED = APPLIED + timedelta(days=3, hours=5)
DELETION = CANCELLED + DATA_RETENTION


def cancelled() -> SubscriptionData:
    """Cancelled, its final invoice issued: only the deletion (and its notices) are ahead."""
    data = active()
    decide.cancel(data, CANCELLED)
    while (period := data.next_invoice_period) is not None:
        decide.close_period(data, period)
    return data


def send_due(data: SubscriptionData, now: datetime) -> int | None:
    """One wake-up of the workflow: the notice due now, recorded as sent."""
    notice = decide.deletion_notice_due(data, now)
    if notice is None:
        return None
    decide.record_deletion_notice(data, notice)
    return notice.days_left


def test_the_notices_come_7_days_and_1_day_before_the_deletion_each_once() -> None:
    data = cancelled()
    assert data.data_deletion_at == DELETION
    seven, one = DELETION - timedelta(days=7), DELETION - timedelta(days=1)
    assert decide.deletion_notice_due(data, seven - timedelta(seconds=1)) is None
    assert decide.next_due(data, None, notices=True) == seven
    assert send_due(data, seven) == 7
    assert send_due(data, seven) is None  # sent once
    assert decide.next_due(data, None, notices=True) == one
    assert send_due(data, one) == 1
    assert send_due(data, one + timedelta(hours=1)) is None
    assert data.deletion_notices_sent == [7, 1]
    assert decide.next_due(data, None, notices=True) == DELETION  # only the deletion is left


def test_the_notice_says_how_many_days_and_when_in_seoul_time() -> None:
    notice = decide.deletion_notice_due(cancelled(), DELETION - timedelta(days=7))
    assert notice is not None
    assert notice.details() == {
        "days_left": 7,
        "data_deletion_at": DELETION.astimezone(decide.SEOUL).isoformat(),
    }
    assert notice.details()["data_deletion_at"].endswith("+09:00")


def test_a_run_without_notices_is_due_only_at_the_deletion() -> None:
    """Versions 1–3 (unpatched) keep their timers: the notices are no due instant of theirs."""
    data = cancelled()
    assert decide.next_due(data, None) == DELETION


def test_a_late_wake_sends_the_notice_late_not_never() -> None:
    data = cancelled()
    three_days_before = DELETION - timedelta(days=3)
    assert decide.next_due(data, None, notices=True) == DELETION - timedelta(days=7)
    assert send_due(data, three_days_before) == 7  # late, once
    assert send_due(data, three_days_before) is None
    assert send_due(data, DELETION - timedelta(days=1)) == 1


def test_a_wake_after_both_instants_sends_one_notice_the_latest() -> None:
    data = cancelled()
    assert send_due(data, DELETION - timedelta(hours=5)) == 1
    assert decide.next_deletion_notice(data) is None  # the 7-day one is never sent after it
    assert decide.next_due(data, None, notices=True) == DELETION


def test_never_at_or_after_the_deletion() -> None:
    data = cancelled()
    assert decide.deletion_notice_due(data, DELETION) is None
    assert decide.deletion_notice_due(data, DELETION + timedelta(days=3)) is None
    decide.purge(data, DELETION)
    assert decide.next_deletion_notice(data) is None
    assert decide.deletion_notice_due(data, DELETION - timedelta(days=1)) is None


def test_no_notice_without_a_deletion_ahead() -> None:
    live = active()
    assert decide.next_deletion_notice(live) is None
    assert decide.deletion_notice_due(live, DELETION - timedelta(days=1)) is None
    refused = subscription()
    refused.applied_at = APPLIED
    decide.refuse_application(refused, CANCELLED, "no")  # never active: nothing to delete
    assert refused.data_deletion_at is None
    assert decide.next_deletion_notice(refused) is None


def test_data_recorded_before_version_4_decodes_with_no_notice_sent() -> None:
    recorded = cancelled().model_dump(mode="json")
    del recorded["deletion_notices_sent"]
    data = SubscriptionData.model_validate(recorded)
    assert data.deletion_notices_sent == []
    assert decide.next_deletion_notice(data) is not None


offsets = st.lists(
    st.timedeltas(min_value=timedelta(0), max_value=DATA_RETENTION + timedelta(days=2)),
    max_size=12,
).map(sorted)


@given(offsets)
def test_whenever_the_run_wakes_each_notice_goes_at_most_once_and_never_late_twice(
    wakes: list[timedelta],
) -> None:
    """Wake-ups at any instants after the cancellation (a late worker, a clock jump): notices
    go in order (7 before 1), each at most once, only once due and before the deletion; a wake
    between an instant and the deletion sends a notice at least as urgent."""
    data = cancelled()
    sent: list[tuple[int, datetime]] = []
    for offset in wakes:
        now = CANCELLED + offset
        days = send_due(data, now)
        if days is not None:
            sent.append((days, now))
    assert [d for d, _ in sent] == sorted({d for d, _ in sent}, reverse=True)
    for days, at in sent:
        assert DELETION - timedelta(days=days) <= at < DELETION
    for days in DELETION_NOTICE_DAYS:
        if any(DELETION - timedelta(days=days) <= CANCELLED + o < DELETION for o in wakes):
            assert any(d <= days for d, _ in sent)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)))
def test_a_run_that_sleeps_until_next_due_sends_both_on_time(late: timedelta) -> None:
    """The workflow's loop: sleep until `next_due` (woken `late` after it at most once, at the
    first wake), fire what is due, until the deletion."""
    data = cancelled()
    sent: list[tuple[int, datetime]] = []
    extra = late
    while (due := decide.next_due(data, None, notices=True)) is not None and due < DELETION:
        now, extra = due + extra, timedelta(0)
        days = send_due(data, now)
        if days is None:
            break  # woken at or past the deletion: it fires instead
        sent.append((days, now))
    if late == timedelta(0):
        assert sent == [(d, DELETION - timedelta(days=d)) for d in DELETION_NOTICE_DAYS]
    assert len(sent) == len({d for d, _ in sent}) <= len(DELETION_NOTICE_DAYS)
    assert all(at < DELETION for _, at in sent)
