"""Generated subscription lifecycles for the billing oracle test and the soak (`make soak`).

A lifecycle is one workplace × service: an application, actions, a cancellation, and often a
re-application (R-LIFE-3). Its acts are placed on a calendar whose day 0 is January 1st of a leap
year, so the generator knows which days are the 29th–31st, February 29th, a month's first and
last day; the runner lays that calendar on the server clock from 00:00 Seoul on January 1st of a
leap year (a leap year and the year after have the same months as 2028 and 2029).

An act happens at one of a few Seoul times of day (SLOTS), chosen at the edges that matter: the
first minute of a day (and so of a month, on a 1st), the UTC date turn at 09:00, the last minute.
Many lifecycles laid on one clock then share instants: the runner advances the clock once per
distinct instant and performs everything due at it together.

Pure: no servers, no clock. ``generate`` draws with Hypothesis from a seed; CI runs
CI_LIFECYCLES of them from CI_SEED (tests/test_billing_lifecycles.py checks what those cover).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from domain.catalog import default_catalog
from tests import billing_oracle as oracle

CATALOG = default_catalog()
PLANS = {s.service_id: [p.plan_id for p in s.plans] for s in CATALOG.services}
CI_LIFECYCLES, CI_SEED = 200, 21
MANUAL_SERVICES = sorted(s for s, plans in PLANS.items() if len(plans) == 1)
UBOB = "ubob"

# Day 0 of a generated calendar. A leap year and the three years after it read the same as
# 2028–2031 (the next leap year is 4 years on, or 8 at a century), which covers every act.
REFERENCE = date(2028, 1, 1)
SPAN = 4 * 365 + 1

# Seconds after 00:00 Seoul. 00:00:00 and 00:00:30 are the first minute of a day (a month's on a
# 1st), 08:59/09:00 where the UTC date turns, 03:00 inside the hours after a month-close when
# each subscription continues as new, 23:59:00 the last minute. Nothing is later than 23:59:00,
# so an action and its answer always fall on one Seoul day and the day each event belongs to is
# known from outside.
LATEST = 23 * 3600 + 59 * 60
SLOTS = (0, 30, 1800, 3 * 3600, 8 * 3600 + 59 * 60, 9 * 3600, 12 * 3600, 23 * 3600 + 1800, LATEST)
FIRST_MINUTE = (0, 30)

Moment = tuple[int, int]  # (day after day 0, seconds after 00:00 Seoul)


@dataclass(frozen=True)
class Act:
    kind: str  # apply grant revoke change_now change_next withdraw join leave cancel
    arg: str | int | None = None
    day: int = 0  # generated lifecycles: Seoul days after day 0 ...
    second: int = 0  # ... and seconds after 00:00 Seoul

    def instant(self, day0: date) -> datetime:
        return oracle.seoul_at(day0 + timedelta(days=self.day), self.second)

    @property
    def moment(self) -> Moment:
        return (self.day, self.second)


@dataclass(frozen=True)
class Lifecycle:
    service_id: str
    acts: tuple[Act, ...]


# ── the calendar of day 0 ───────────────────────────────────────────────────────────────────


def calendar_day(offset: int) -> date:
    return REFERENCE + timedelta(days=offset)


def offset_of(day: date) -> int:
    return (day - REFERENCE).days


def month_end(offset: int) -> int:
    """The last day of the month of ``offset``."""
    return offset_of(oracle.month_last(oracle.month_of(calendar_day(offset))))


def next_first(offset: int) -> int:
    """The 1st of the month after the one of ``offset``."""
    return month_end(offset) + 1


def days_where(accept: Callable[[date], bool]) -> list[int]:
    return [d for d in range(366) if accept(calendar_day(d))]


LATE_IN_MONTH = days_where(lambda d: d.day >= 29)  # the 29th–31st (February 29th included)
FEBRUARY_29 = offset_of(date(REFERENCE.year, 2, 29))
FIRSTS = days_where(lambda d: d.day == 1)
LAST_DAYS = [first - 1 for first in FIRSTS[1:]]

any_day = st.integers(0, 365)
application_days = st.one_of(
    any_day,
    any_day,
    any_day,
    st.sampled_from(LATE_IN_MONTH),
    st.sampled_from(LATE_IN_MONTH),
    st.just(FEBRUARY_29),
    st.sampled_from(FIRSTS),
    st.sampled_from(LAST_DAYS),
)
slots = st.sampled_from(SLOTS)


def later(at: Moment, day: int, second: int) -> Moment:
    """(day, second) if it is after ``at``; else the next slot after ``at`` on ``day`` (when
    ``day`` is ``at``'s), else the same second a day later."""
    if (day, second) > at:
        return (day, second)
    if day == at[0]:
        after = [s for s in SLOTS if s > at[1]]
        if after:
            return (day, after[0])
    return (max(day, at[0]) + 1, second)


@st.composite
def next_moment(draw: st.DrawFn, at: Moment, far: bool = False) -> Moment:
    """A moment after ``at``: the same day, the next, some days on, the month's last day (often
    in its last minute) or the next 1st (often in its first minute)."""
    day = at[0]
    how = draw(st.sampled_from(["same", "next", "days", "days", "month_end", "first"]))
    if how == "same":
        target = day
    elif how == "next":
        target = day + 1
    elif how == "days":
        target = day + draw(st.sampled_from([3, 12, 20, 35]) if far else st.integers(1, 20))
    elif how == "month_end":
        target = month_end(day)
    else:
        target = next_first(day)
    edge = {"month_end": st.just(LATEST), "first": st.sampled_from(FIRST_MINUTE)}.get(how)
    second = draw(st.one_of(edge, slots) if edge is not None else slots)
    return later(at, target, second)


def _kinds(service_id: str) -> st.SearchStrategy[tuple[str, str | int | None]]:
    if service_id != UBOB:
        member = st.integers(0, 4)
        return st.one_of(
            member.map(lambda i: ("grant", i)),
            member.map(lambda i: ("grant", i)),
            st.integers(0, 9).map(lambda i: ("revoke", i)),
        )
    plan = st.sampled_from(PLANS[UBOB])
    return st.one_of(
        plan.map(lambda p: ("change_now", p)),
        plan.map(lambda p: ("change_now", p)),
        plan.map(lambda p: ("change_next", p)),
        st.just(("withdraw", None)),
        st.just(("join", None)),
        st.integers(0, 9).map(lambda i: ("leave", i)),
    )


@st.composite
def _pending_schedule(draw: st.DrawFn, at: Moment) -> list[Act]:
    """R-PLAN-8 (issue 21): this month's change, a change scheduled for the next 1st, a change
    now refused while it is pending, sometimes withdrawn and tried again — all in one month."""
    plan = st.sampled_from(PLANS[UBOB])
    acts = []
    for kind in ["change_now", "change_next", "change_now", "withdraw", "change_now"]:
        if kind == "withdraw" and draw(st.booleans()):
            break
        at = later(at, at[0] + draw(st.sampled_from([0, 0, 1, 2])), draw(slots))
        acts.append(Act(kind, None if kind == "withdraw" else draw(plan), *at))
    return acts


@st.composite
def _episode(
    draw: st.DrawFn, service_id: str, applied: Moment, max_acts: int, same_month: bool
) -> list[Act]:
    """One subscription: application, a few actions, cancellation. ``same_month``: the actions
    end with a change scheduled for the next 1st and the cancellation follows in the same month
    (which drops the schedule, R-PLAN-8), where possible."""
    acts = [Act("apply", draw(st.sampled_from(PLANS[service_id])), *applied)]
    if service_id == UBOB and draw(st.integers(0, 3)) == 0:
        # R-PLAN-3: the day after the application is the first a change may be made.
        acts.append(Act("change_now", draw(st.sampled_from(PLANS[UBOB])), applied[0] + 1, 0))
    for _ in range(draw(st.integers(0, max_acts))):
        at = draw(next_moment(acts[-1].moment))
        acts.append(Act(*draw(_kinds(service_id)), *at))
    if service_id == UBOB and draw(st.integers(0, 5)) == 0:
        acts += draw(_pending_schedule(acts[-1].moment))
    if same_month:
        at = later(acts[-1].moment, acts[-1].day, draw(slots))
        acts.append(Act("change_next", draw(st.sampled_from(PLANS[UBOB])), *at))
        end = month_end(at[0])
        cancel = later(at, draw(st.integers(at[0], max(at[0], end))), draw(slots))
    else:
        cancel = draw(next_moment(acts[-1].moment, far=True))
    return [*acts, Act("cancel", None, *cancel)]


@st.composite
def lifecycles(draw: st.DrawFn) -> Lifecycle:
    service_id = draw(st.sampled_from([*MANUAL_SERVICES, UBOB, UBOB, UBOB]))
    same_month = service_id == UBOB and draw(st.integers(0, 4)) == 0
    applied = (draw(application_days), draw(slots))
    acts = draw(_episode(service_id, applied, 7, same_month))
    if same_month or draw(st.integers(0, 2)) == 0:
        # R-LIFE-3, R-BILL-2: a new subscription, often on the day of the cancellation (always in
        # its month after a scheduled change was dropped), or on the next 1st.
        cancelled = acts[-1].moment
        gaps = [0] if same_month else [0, 0, 0, 1, 9]
        day = cancelled[0] + draw(st.sampled_from(gaps))
        if not same_month and draw(st.integers(0, 5)) == 0:
            day = next_first(cancelled[0])
        again = later(cancelled, day, draw(slots))
        acts += draw(_episode(service_id, again, 3, False))
    assert acts[-1].day < SPAN, acts
    return Lifecycle(service_id, tuple(acts))


def generate(count: int, seed: int) -> list[Lifecycle]:
    """``count`` lifecycles drawn from ``seed`` (the same seed, the same lifecycles)."""
    drawn: list[Lifecycle] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(lifecycles())
    def collect(life: Lifecycle) -> None:
        drawn.append(life)

    collect()
    assert len(drawn) >= count, f"Hypothesis drew {len(drawn)} of {count} lifecycles"
    return drawn[:count]
