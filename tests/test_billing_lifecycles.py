"""What the generated lifecycles CI runs cover (tests/billing_lifecycles.py, issue 21): the rare
combinations where billing bugs live must each occur, so that a change to the generator cannot
quietly stop testing them. Pure: no servers."""

from __future__ import annotations

from collections import Counter

from tests import billing_oracle as oracle
from tests.billing_lifecycles import (
    CI_LIFECYCLES,
    CI_SEED,
    FEBRUARY_29,
    FIRST_MINUTE,
    LATEST,
    SPAN,
    Act,
    Lifecycle,
    calendar_day,
    generate,
)


def month(act: Act) -> str:
    return oracle.month_of(calendar_day(act.day))


def one_month(*acts: Act) -> bool:
    return len({month(act) for act in acts}) == 1


def cases(life: Lifecycle) -> set[str]:
    found = set()
    acts = life.acts
    for index, act in enumerate(acts):
        day = calendar_day(act.day)
        on_last_day = calendar_day(act.day + 1).day == 1
        before = acts[index - 1] if index else None
        two_before = acts[index - 2] if index > 1 else None
        if act.kind == "apply" and day.day >= 29:
            found.add("applied on a 29th-31st")
        if act.kind == "apply" and act.day == FEBRUARY_29:
            found.add("applied on February 29")
        if act.second in FIRST_MINUTE and day.day == 1:
            found.add("in the first minute of a month")
        if act.second == LATEST and on_last_day:
            found.add("in the last minute of a month")
        if act.kind in ("join", "leave") and day.day == 1:
            found.add("joined or left on a 1st")
        if before and before.kind == "cancel" and act.kind == "apply" and before.day == act.day:
            found.add("re-applied on the cancellation day")
        if before and before.kind == "apply" and act.kind == "change_now":
            if act.day == before.day + 1:
                found.add("changed on the day after the application")
        if before and two_before and one_month(two_before, before, act):
            kinds = (two_before.kind, before.kind, act.kind)
            if kinds == ("change_next", "cancel", "apply"):
                found.add("scheduled, cancelled and re-applied in one month")
            if kinds == ("change_now", "change_next", "change_now"):
                found.add("a change while a scheduled one is pending, after the month's change")
    return found


def test_the_ci_lifecycles_cover_every_rare_combination() -> None:
    lives = generate(CI_LIFECYCLES, CI_SEED)
    assert len(lives) == CI_LIFECYCLES
    seen = Counter(case for life in lives for case in cases(life))
    assert set(seen) == {
        "applied on a 29th-31st",
        "applied on February 29",
        "in the first minute of a month",
        "in the last minute of a month",
        "joined or left on a 1st",
        "re-applied on the cancellation day",
        "changed on the day after the application",
        "scheduled, cancelled and re-applied in one month",
        "a change while a scheduled one is pending, after the month's change",
    }, seen


def test_every_lifecycle_is_in_order_and_within_the_calendar() -> None:
    for life in generate(CI_LIFECYCLES, CI_SEED):
        moments = [act.moment for act in life.acts]
        assert moments == sorted(set(moments)), life
        assert life.acts[0].kind == "apply" and life.acts[-1].kind == "cancel", life
        assert 0 <= moments[0][0] and moments[-1][0] < SPAN
        assert all(0 <= second <= LATEST for _, second in moments)


def test_the_same_seed_draws_the_same_lifecycles() -> None:
    assert generate(20, 7) == generate(20, 7)
    assert generate(20, 7) != generate(20, 8)
