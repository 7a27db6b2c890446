"""Invoices issued by the REAL workflow equal the independent oracle, to the won (R-BILL, R-PLAN-9).

Whole lifecycles — application, usage-permission grants and revocations, ubob member joins and
leaves, plan changes now and in the next window, withdrawals, cancellation, re-application — run
through SubscriptionService on the time-skipping server and real PostgreSQL. Nothing is mocked.
What the test observes from outside (the server clock right before and after each action, the
instants the read model reports) feeds ``tests/billing_oracle.py``, which shares no code with
``domain/billing.py`` or ``domain/calendar.py``; every invoice in the ledger must equal the
oracle's, lines included, and each subscription must have exactly one invoice per billed month.

The server clock only moves forward and is shared by the whole session, so every example starts
from "now": its lifecycles are laid out on the Seoul days after the current one. Several
lifecycles (``PER_EXAMPLE``) share one example and one timeline, to save month-ends. The suite
runs ``BIZSUPPORT_ORACLE_EXAMPLES`` lifecycles in total (default 200; raise it for a soak).
"""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.subscription import SubscriptionActivities
from domain.catalog import default_catalog
from domain.errors import BizError
from domain.subscription import MemberEvent
from services.billing import BillingService
from services.models import SubscriptionOut
from services.root import build_services
from services.subscriptions import SubscriptionService
from starter.temporal import partner_gateway
from store import ledger, subscriptions
from store.db import Pool
from store.ledger import InvoiceRow
from tests import billing_oracle as oracle
from tests.conftest import Workplace, advance_to, eventually
from workflows.subscription import SubscriptionWorkflow

CATALOG = default_catalog()
FEES = oracle.fees_from(
    [(p.plan_id, int(p.base_fee), int(p.seat_fee)) for s in CATALOG.services for p in s.plans]
)
PLANS = {s.service_id: [p.plan_id for p in s.plans] for s in CATALOG.services}
TERMS = {s.service_id: s.terms.version for s in CATALOG.services}
MANUAL_SERVICES = sorted(s for s, plans in PLANS.items() if len(plans) == 1)
UBOB = "ubob"

PER_EXAMPLE = 8
LIFECYCLES = int(os.environ.get("BIZSUPPORT_ORACLE_EXAMPLES", "200"))
EXAMPLES = math.ceil(LIFECYCLES / PER_EXAMPLE)

# Seconds after 00:00 Seoul. Edges: the day's first instant, 00:30, 08:59/09:00 (where the UTC
# date turns), 23:30 and 23:59. Nothing is later than 23:59:00, so an action and its answer
# always fall on one Seoul day and the day each event belongs to is known from outside.
LATEST = 23 * 3600 + 59 * 60
EDGE_SECONDS = [0, 1800, 8 * 3600 + 59 * 60, 9 * 3600, 12 * 3600, 23 * 3600 + 1800, LATEST]


# ── a lifecycle, as generated ────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Act:
    kind: str  # apply grant revoke change_now change_next withdraw join leave cancel
    arg: str | int | None = None
    day: int = 0  # generated lifecycles: Seoul days after the example's first day ...
    second: int = 0  # ... and seconds after 00:00 Seoul

    def instant(self, first_day: date) -> datetime:
        return oracle.seoul_at(first_day + timedelta(days=self.day), self.second)


@dataclass(frozen=True)
class Lifecycle:
    service_id: str
    acts: tuple[Act, ...]


seconds = st.one_of(st.sampled_from(EDGE_SECONDS), st.integers(0, LATEST))


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


def _later(start: tuple[int, int], moments: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The moments strictly after ``start``, in order, without repeats."""
    return sorted({m if m > start else (start[0] + 1, m[1]) for m in moments})


@st.composite
def _episode(
    draw: st.DrawFn, service_id: str, applied: tuple[int, int], max_acts: int, span: int
) -> list[Act]:
    """One subscription: application, a few actions, cancellation."""
    plan = draw(st.sampled_from(PLANS[service_id]))
    acts = [Act("apply", plan, *applied)]
    raw = draw(
        st.lists(
            st.tuples(st.integers(applied[0], applied[0] + span), seconds, _kinds(service_id)),
            max_size=max_acts,
        )
    )
    moments = _later(applied, [(d, s) for d, s, _ in raw])
    acts += [Act(*kind, d, s) for (d, s), (_, _, kind) in zip(moments, raw, strict=False)]
    last = (acts[-1].day, acts[-1].second)
    cancel_day = last[0] + draw(st.sampled_from([0, 0, 1, 3, 12, 20, 35]))
    cancel = (cancel_day, draw(seconds))
    if cancel <= last:
        cancel = (last[0] + 1, cancel[1])
    return [*acts, Act("cancel", None, *cancel)]


@st.composite
def lifecycles(draw: st.DrawFn) -> Lifecycle:
    service_id = draw(st.sampled_from([*MANUAL_SERVICES, UBOB, UBOB, UBOB]))
    applied = (draw(st.integers(0, 40)), draw(seconds))
    acts = draw(_episode(service_id, applied, 7, 70))
    if draw(st.integers(0, 2)) == 0:
        # R-LIFE-3, R-BILL-2: a new subscription, often on the day of the cancellation.
        cancelled = (acts[-1].day, acts[-1].second)
        again_day = cancelled[0] + draw(st.sampled_from([0, 0, 0, 1, 9]))
        again = (again_day, draw(seconds))
        if again <= cancelled:
            again = (
                (cancelled[0], LATEST) if cancelled[1] < LATEST else (cancelled[0] + 1, again[1])
            )
        acts += draw(_episode(service_id, again, 3, 40))
    return Lifecycle(service_id, tuple(acts))


# ── what the test sees of one lifecycle ──────────────────────────────────────────────────────


@dataclass
class Scheduled:
    plan_id: str
    at: datetime


@dataclass
class Run:
    """One workplace × service over its subscriptions: drives the service, records what it saw,
    and predicts every answer from the oracle's rules."""

    service: SubscriptionService
    env: WorkflowEnvironment
    pool: Pool
    wp: Workplace
    service_id: str
    subs: list[oracle.Observed] = field(default_factory=list)
    sub_ids: list[str] = field(default_factory=list)
    holders: set[str] = field(default_factory=set)
    last_change_month: str | None = None
    scheduled: Scheduled | None = None
    joined: int = 0
    live: bool = False
    patience: float = 15.0  # seconds to wait for a month-close to land

    @property
    def people(self) -> list[str]:
        return [self.wp.rep, self.wp.admin, *self.wp.members]

    @property
    def sub(self) -> oracle.Observed:
        return self.subs[-1]

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def perform(self, act: Act) -> None:
        handler: Callable[[Act], Awaitable[None]] = getattr(self, f"_{act.kind}")
        await handler(act)

    def _common(self) -> dict[str, str]:
        return {"workplace_id": self.wp.id, "service_id": self.service_id, "actor_id": self.wp.rep}

    async def _timed(self, call: Awaitable[Any]) -> tuple[datetime, Any]:
        """Run an action; its workflow time lies between the two clock readings, which must be
        on one Seoul day, so the event is billed on a known day (and recorded at the first)."""
        before = await self.now()
        try:
            result: Any = await call
        except BizError as refusal:
            result = refusal
        after = await self.now()
        assert oracle.seoul_day(before) == oracle.seoul_day(after), (before, after)
        return before, result

    def _record_seats(self, at: datetime) -> None:
        assert not self.sub.seats or self.sub.seats[-1][0] < at
        self.sub.seats.append((at, len(self.holders)))

    def _refused(self, result: Any, code: str) -> BizError:
        assert isinstance(result, BizError), f"expected {code}, got {result!r}"
        assert result.code == code, result
        return result

    def _accepted(self, result: Any) -> SubscriptionOut:
        assert isinstance(result, SubscriptionOut), f"expected success, got {result!r}"
        assert result.usage_permission_count == len(self.holders)
        return result

    async def _apply(self, act: Act) -> None:
        assert not self.live
        before = await self.now()
        status = await self.service.apply(
            **self._common(),
            plan_id=str(act.arg) if self.service_id == UBOB else None,
            terms_version=TERMS[self.service_id],
            agree_terms=True,
        )
        assert status.state == "active", status
        applied_at, activated_at = status.applied_at, status.activated_at
        assert before <= applied_at <= activated_at
        assert oracle.seoul_day(applied_at) == oracle.seoul_day(activated_at)
        predecessor = self.subs[-1].cancelled_at if self.subs else None
        self.subs.append(oracle.Observed(applied_at, status.plan_id, predecessor))
        self.sub_ids.append(status.subscription_id)
        self.live, self.scheduled, self.last_change_month = True, None, None
        self.holders = set(self.people) if self.service_id == UBOB else set()
        if self.holders:
            self._record_seats(activated_at)  # R-PERM-6: everyone, at activation
        self._accepted(status)

    async def _grant(self, act: Act) -> None:
        assert isinstance(act.arg, int)
        member = self.people[act.arg]
        at, result = await self._timed(
            self.service.set_usage(**self._common(), member_id=member, grant=True)
        )
        if member not in self.holders:
            self.holders.add(member)
            self._record_seats(at)
        self._accepted(result)

    async def _revoke(self, act: Act) -> None:
        """0..4: that person, held or not; 5..9: one of the holders (if none, a person)."""
        assert isinstance(act.arg, int)
        holders = sorted(self.holders)
        if act.arg >= 5 and holders:
            member = holders[act.arg % len(holders)]
        else:
            member = self.people[act.arg % 5]
        at, result = await self._timed(
            self.service.set_usage(**self._common(), member_id=member, grant=False)
        )
        if member not in self.holders:
            self._refused(result, "PERMISSION_NOT_HELD")
            return
        self.holders.discard(member)
        self._record_seats(at)
        self._accepted(result)

    async def _change_now(self, act: Act) -> None:
        plan_id = str(act.arg)
        at, result = await self._timed(
            self.service.change_plan(**self._common(), plan_id=plan_id, when="now")
        )
        if plan_id == self.sub.current_plan():
            self._refused(result, "SAME_PLAN")
            return
        why = oracle.window_refusal(at, self.sub.applied_at, self.last_change_month)
        if why is not None:  # R-PLAN-2, -3, -4
            refusal = self._refused(result, "PLAN_CHANGE_WINDOW_CLOSED")
            assert refusal.details["reason"] == why
            expected = oracle.next_change_at(at, self.sub.applied_at, self.last_change_month)
            assert datetime.fromisoformat(refusal.details["next_plan_change_at"]) == expected
            return
        self.sub.plans.append((at, plan_id))
        self.last_change_month = oracle.month_of(oracle.seoul_day(at))
        assert self._accepted(result).plan_id == plan_id

    async def _change_next(self, act: Act) -> None:
        plan_id = str(act.arg)
        at, result = await self._timed(
            self.service.change_plan(**self._common(), plan_id=plan_id, when="next_window")
        )
        if plan_id == self.sub.current_plan():
            self._refused(result, "SAME_PLAN")
            return
        self.scheduled = Scheduled(plan_id, oracle.first_of_next_month(at))  # R-PLAN-8
        shown = self._accepted(result).scheduled_plan_change
        assert shown.plan_id == plan_id
        assert shown.at == self.scheduled.at

    async def _withdraw(self, act: Act) -> None:
        _, result = await self._timed(self.service.withdraw_plan_change(**self._common()))
        if self.scheduled is None:
            self._refused(result, "NO_SCHEDULED_PLAN_CHANGE")
            return
        self.scheduled = None
        assert self._accepted(result).scheduled_plan_change is None

    async def _signal(self, name: str, member: str) -> datetime:
        """A directory signal has no answer: its time lies between sending and its effect."""
        before = await self.now()
        await self.service.handle(self.sub_ids[-1]).signal(name, MemberEvent(member_id=member))

        async def landed() -> bool:
            row = await subscriptions.by_id(self.pool, self.sub_ids[-1])
            return row is not None and row.usage_permission_count == len(self.holders)

        await eventually(landed, what=f"{name} {member}")
        assert oracle.seoul_day(await self.now()) == oracle.seoul_day(before)
        return before

    async def _join(self, act: Act) -> None:
        self.joined += 1
        member = f"{self.wp.id}-joiner{self.joined}"
        self.holders.add(member)
        self._record_seats(await self._signal("member_joined", member))

    async def _leave(self, act: Act) -> None:
        if not self.holders:
            return
        assert isinstance(act.arg, int)
        member = sorted(self.holders)[act.arg % len(self.holders)]
        self.holders.discard(member)
        self._record_seats(await self._signal("member_left", member))

    async def _cancel(self, act: Act) -> None:
        status = await self.service.cancel(**self._common())
        assert status.state == "cancelled"
        self.sub.cancelled_at = status.cancelled_at
        self.live, self.scheduled = False, None  # R-PLAN-8: cancellation drops the schedule

    # ── month-ends ───────────────────────────────────────────────────────────────────────────

    async def month_began(self, first: datetime) -> None:
        """00:00 Seoul on a 1st has passed: a due scheduled change fired first (R-PLAN-8), then
        each subscription got last month's invoice (R-BILL-5). Wait for both to land."""
        scheduled = self.scheduled
        if self.live and scheduled is not None and scheduled.at == first:
            self.scheduled = None
            if scheduled.plan_id != self.sub.current_plan():  # else dropped: nothing to change
                self.sub.plans.append((first, scheduled.plan_id))
                self.last_change_month = oracle.month_of(oracle.seoul_day(first))

            async def changed() -> bool:
                row = await subscriptions.by_id(self.pool, self.sub_ids[-1])
                assert row is not None
                return row.plan_id == scheduled.plan_id and row.scheduled_plan_change is None

            await eventually(changed, within=self.patience, what="the scheduled plan change")
        through = oracle.month_of(oracle.seoul_day(first) - timedelta(days=1))
        expected = sum(len(oracle.bills(sub, FEES, through)) for sub in self.subs)

        async def issued() -> bool:
            rows = await ledger.invoices_for(self.pool, self.wp.id, self.service_id)
            assert len(rows) <= expected, "an invoice nobody expected"
            return len(rows) == expected

        await eventually(issued, within=self.patience, what=f"invoices through {through}")

    async def verify(self, through: str) -> int:
        """Every issued invoice equals the oracle's; exactly one per subscription and month."""
        rows = await ledger.invoices_for(self.pool, self.wp.id, self.service_id)
        seen: dict[tuple[str, str], InvoiceRow] = {}
        for row in rows:
            key = (row.subscription_id, row.period)
            assert key not in seen, f"two invoices for {key}"  # R-BILL-6
            seen[key] = row
        expected = {
            (sub_id, period): found
            for sub, sub_id in zip(self.subs, self.sub_ids, strict=True)
            for period, found in oracle.bills(sub, FEES, through).items()
        }
        assert set(seen) == set(expected), (sorted(seen), sorted(expected), self.subs)
        for key, found in expected.items():
            assert ledger_shape(seen[key]) == found.as_ledger(), (key, self.subs)
            issued = oracle.seoul_day(seen[key].issued_at)  # R-BILL-5: on the next 1st
            assert issued == oracle.month_first(oracle.month_after(key[1]))
        return len(expected)


def ledger_shape(row: InvoiceRow) -> dict[str, Any]:
    return {
        "period": row.period,
        "lines": row.lines,
        "subtotal": int(row.subtotal),
        "vat": int(row.vat),
        "total": int(row.total),
    }


async def new_run(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, service_id: str
) -> Run:
    return Run(service, env, pool, await Workplace(pool).create(), service_id)


async def cross_to(env: WorkflowEnvironment, runs: list[Run], target: datetime) -> None:
    """Move the clock to ``target``, stopping at every 00:00 Seoul on a 1st on the way until
    what it fires has landed, so no later action can overtake it."""
    while True:
        first = oracle.first_of_next_month(await env.get_current_time())
        if first > target:
            break
        await advance_to(env, first)
        await asyncio.gather(*(run.month_began(first) for run in runs))
    await advance_to(env, target)


async def finish(env: WorkflowEnvironment, runs: list[Run]) -> int:
    """Go to the month after the last cancellation and check every invoice of every run."""
    last = max(sub.cancelled_at for run in runs for sub in run.subs if sub.cancelled_at)
    await cross_to(env, runs, oracle.first_of_next_month(last))
    through = oracle.month_of(oracle.seoul_day(last))
    counts = await asyncio.gather(*(run.verify(through) for run in runs))
    return sum(counts)


# ── the property ─────────────────────────────────────────────────────────────────────────────


PHASES = [Phase.explicit, Phase.generate]
if os.environ.get("BIZSUPPORT_ORACLE_SHRINK"):
    PHASES.append(Phase.shrink)  # shrinking replays months of server time: opt in


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(lifecycles(), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
async def test_r_bill_every_invoice_of_generated_lifecycles_matches_the_oracle(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    generated: list[Lifecycle],
) -> None:
    """R-BILL-2..6, R-PLAN-2/3/4/8/9, R-CANCEL-3, R-LIFE-3: generated lifecycles through the
    real workflow; every invoice equals the oracle to the won, once per subscription and month."""
    runs = [await new_run(service, env, pool, life.service_id) for life in generated]
    first_day = oracle.seoul_day(await env.get_current_time()) + timedelta(days=1)
    timeline = sorted(
        (act.instant(first_day), index, act)
        for index, life in enumerate(generated)
        for act in life.acts
    )
    for target, group in groupby(timeline, key=lambda item: item[0]):
        await cross_to(env, runs, target)
        await asyncio.gather(*(runs[index].perform(act) for _, index, act in group))
    await finish(env, runs)


# ── named edge cases ─────────────────────────────────────────────────────────────────────────


def is_first(day: date) -> bool:
    return day.day == 1


def is_last(day: date) -> bool:
    return (day + timedelta(days=1)).day == 1


async def upcoming(
    env: WorkflowEnvironment,
    seconds_of_day: int,
    when: Callable[[date], bool],
    ahead: timedelta = timedelta(0),
) -> datetime:
    """The first instant at ``seconds_of_day`` Seoul, on a day ``when`` accepts, that is at
    least ``ahead`` from now (the session's clock only moves forward)."""
    earliest = await env.get_current_time() + ahead
    day = oracle.seoul_day(earliest)
    while not (when(day) and oracle.seoul_at(day, seconds_of_day) > earliest):
        day += timedelta(days=1)
    return oracle.seoul_at(day, seconds_of_day)


Step = tuple[datetime, Act]


async def play(env: WorkflowEnvironment, run: Run, steps: list[Step]) -> int:
    """Perform the steps at their instants, then check every invoice against the oracle."""
    for at, act in steps:
        await cross_to(env, [run], at)
        await run.perform(act)
    return await finish(env, [run])


def lines_of(rows: list[InvoiceRow], subscription_id: str | None = None) -> list[Any]:
    return [
        (line["plan_id"], line["from_day"], line["to_day"], line["days"], line["seats"])
        for row in rows
        if subscription_id in (None, row.subscription_id)
        for line in row.lines
    ]


@pytest.mark.parametrize(("hour", "minute"), [(23, 30), (0, 30)])
async def test_r_bill_2_application_at_2330_and_at_0030_seoul(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, hour: int, minute: int
) -> None:
    """R-BILL-2: the Seoul application day is billed in full, at 23:30 (14:30 UTC, the same UTC
    date) as at 00:30 (15:30 UTC of the previous UTC date), here on a month's last day."""
    applied = await upcoming(env, hour * 3600 + minute * 60, is_last)
    day = oracle.seoul_day(applied)
    run = await new_run(service, env, pool, "juju")
    issued = await play(
        env,
        run,
        [
            (applied, Act("apply")),
            (applied + timedelta(minutes=10), Act("grant", 2)),
            (applied + timedelta(days=3), Act("cancel")),
        ],
    )
    assert issued == 2  # the application month (one day) and the next one
    rows = await ledger.invoices_for(pool, run.wp.id, "juju")
    next_day = day + timedelta(days=1)
    assert lines_of(rows) == [
        ("juju-standard", day.isoformat(), day.isoformat(), 1, 1),
        ("juju-standard", next_day.isoformat(), (day + timedelta(days=3)).isoformat(), 3, 1),
    ]


@pytest.mark.parametrize("when", [is_first, is_last], ids=["first", "last"])
async def test_r_cancel_3_cancellation_on_the_first_and_on_the_last_day_of_a_month(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    when: Callable[[date], bool],
) -> None:
    """R-CANCEL-3, R-BILL-5, R-PLAN-9: fees through the cancellation day, on the next 1st."""
    cancel_at = await upcoming(env, 10 * 3600, when, ahead=timedelta(days=20))
    start = cancel_at - timedelta(days=19, hours=3)
    run = await new_run(service, env, pool, "ubob")
    await play(
        env,
        run,
        [
            (start, Act("apply", "ubob-standard")),
            (start + timedelta(days=2), Act("change_now", "ubob-premium")),
            (cancel_at, Act("cancel")),
        ],
    )
    cancel_day = oracle.seoul_day(cancel_at).isoformat()
    final = (await ledger.invoices_for(pool, run.wp.id, "ubob"))[-1]
    assert final.period == cancel_day[:7]
    assert final.lines[-1]["to_day"] == cancel_day
    if when is is_first:
        assert lines_of([final]) == [("ubob-premium", cancel_day, cancel_day, 1, 5)]


async def test_r_bill_4_february_is_prorated_over_its_own_days(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool
) -> None:
    """R-BILL-4: February's lines are (fees × days ÷ 28 or 29), the next month's ÷ 31."""
    applied = await upcoming(env, 11 * 3600, lambda d: d.month == 2 and d.day == 10)
    run = await new_run(service, env, pool, "miricanvas")
    await play(
        env,
        run,
        [
            (applied, Act("apply")),
            (applied + timedelta(days=5), Act("grant", 1)),
            (applied + timedelta(days=30), Act("cancel")),
        ],
    )
    rows = await ledger.invoices_for(pool, run.wp.id, "miricanvas")
    february = oracle.month_of(oracle.seoul_day(applied))
    assert [row.period for row in rows] == [february, oracle.month_after(february)]
    assert [line["days"] for line in rows[0].lines] == [5, oracle.month_length(february) - 14]


async def test_r_bill_2_reapplication_on_the_cancellation_day_bills_from_the_next_day(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool
) -> None:
    """R-BILL-2, R-LIFE-3: the old subscription is billed through its cancellation day, the new
    one from the next day, so no day is billed twice; each gets its own invoices."""
    start = await upcoming(env, 9 * 3600, lambda d: d.day == 5)
    cancel_at = start + timedelta(days=10)
    run = await new_run(service, env, pool, "cartax")
    await play(
        env,
        run,
        [
            (start, Act("apply")),
            (start + timedelta(hours=1), Act("grant", 0)),
            (cancel_at, Act("cancel")),
            (cancel_at + timedelta(hours=2), Act("apply")),
            (cancel_at + timedelta(hours=3), Act("grant", 3)),
            (cancel_at + timedelta(days=2), Act("cancel")),
        ],
    )
    old, new = run.sub_ids
    rows = await ledger.invoices_for(pool, run.wp.id, "cartax")
    cancel_day = oracle.seoul_day(cancel_at)
    assert lines_of(rows, old)[-1][2] == cancel_day.isoformat()
    assert lines_of(rows, new)[0][1] == (cancel_day + timedelta(days=1)).isoformat()
    assert lines_of(rows, new)[-1][2] == (cancel_day + timedelta(days=2)).isoformat()


async def test_r_life_deletion_before_the_final_invoice_in_a_31_day_month(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool
) -> None:
    """R-LIFE, R-CANCEL-2, R-BILL-5: cancelled on the 1st of a 31-day month, the data goes on
    the 31st, before the final invoice on the next 1st. The invoice still comes and is correct,
    and the workflow completes only after both."""
    cancel_at = await upcoming(
        env,
        12 * 3600,
        lambda d: d.day == 1 and oracle.month_length(oracle.month_of(d)) == 31,
        ahead=timedelta(days=4),
    )
    run = await new_run(service, env, pool, "loai")
    for at, act in [
        (cancel_at - timedelta(days=3), Act("apply")),
        (cancel_at - timedelta(days=1), Act("grant", 4)),
        (cancel_at, Act("cancel")),
    ]:
        await cross_to(env, [run], at)
        await run.perform(act)
    sub_id = run.sub_ids[0]
    handle = service.handle(sub_id)
    deletion = cancel_at + timedelta(days=30)
    assert oracle.seoul_day(deletion).day == 31
    await cross_to(env, [run], deletion + timedelta(hours=1))
    await eventually(lambda: ledger.deletion_record(pool, sub_id), what="the deletion")
    row = await subscriptions.by_id(pool, sub_id)
    assert row is not None and row.state == "purged"
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert len(await ledger.invoices_for(pool, run.wp.id, "loai")) == 1  # the month before
    assert await finish(env, [run]) == 2

    async def completed() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    await eventually(completed, what="the workflow to complete")


def uncached_worker(env: WorkflowEnvironment, pool: Pool, queue: str) -> Worker:
    """build_worker's make-up without a workflow cache, hence without a sticky task queue.

    The time-skipping server never moves a task off a stopped worker's sticky queue (the real
    server does, after a timeout), so a cached worker's successor would wait forever. Without
    a cache every workflow task is a full replay of the history, which is what a successor
    does anyway; a task the stopped worker had taken is retried after its 10 s timeout.
    """
    activities = SubscriptionActivities(pool, partner_gateway(pool))
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[SubscriptionWorkflow],
        activities=activities.all(),
        max_cached_workflows=0,
        graceful_shutdown_timeout=timedelta(seconds=5),
    )


async def test_r_bill_6_exactly_one_invoice_across_worker_restarts(
    env: WorkflowEnvironment, pool: Pool
) -> None:
    """R-BILL-6, R-LIFE-5: a worker stopped in the middle of month-closes and a fresh one that
    takes over (replaying the histories) issue each month's invoice exactly once, correctly.

    It runs on a task queue of its own, with its own SubscriptionService, so the session's
    worker is untouched; the time-skipping server cannot move time while a task waits for a
    worker, so the clock only moves while one of ours is running.
    """
    queue = f"bizsupport-restart-{uuid.uuid4().hex[:8]}"
    own = build_services(pool, env.client, CATALOG, queue, clock=env.get_current_time).subscriptions
    runs = [await new_run(own, env, pool, s) for s in ["cartax", UBOB, "tudy", UBOB, "wishket"]]
    start = await upcoming(env, 15 * 3600, lambda d: d.day == 20)
    for run in runs:
        # A task the stopped worker had taken is retried after the workflow task timeout (10 s).
        run.patience = 60.0
    worker = uncached_worker(env, pool, queue)
    await worker.__aenter__()

    async def restart() -> None:
        nonlocal worker
        await worker.__aexit__(None, None, None)
        worker = uncached_worker(env, pool, queue)
        await worker.__aenter__()

    async def issued() -> int:
        return sum([len(await ledger.invoices_for(pool, r.wp.id, r.service_id)) for r in runs])

    try:
        await cross_to(env, runs, start)
        for index, run in enumerate(runs):
            await run.perform(Act("apply", "ubob-basic"))
            if run.service_id != UBOB:
                await run.perform(Act("grant", index))
        for month, stop in enumerate(["as the 1st fires", "mid-month", "half-way"]):
            first = oracle.first_of_next_month(await env.get_current_time())
            before = await issued()
            if stop == "mid-month":
                await restart()  # idle: the month-close runs on a worker that never saw it
            await advance_to(env, first)
            if stop == "as the 1st fires":
                await restart()  # the 1st's timers have fired and their tasks are in flight
            if stop == "half-way":

                async def some_issued(before: int = before) -> bool:
                    return await issued() > before

                await eventually(some_issued, within=60.0, what="a first invoice of the month")
                await restart()
            await asyncio.gather(*(run.month_began(first) for run in runs))
            await cross_to(env, runs, first + timedelta(days=1, hours=10))
            await runs[1].perform(Act("change_now", PLANS[UBOB][(month + 1) % 3]))
            await runs[0].perform(Act("grant" if month % 2 else "revoke", 0))
        for run in runs:
            await run.perform(Act("cancel"))
        assert await finish(env, runs) == 5 * 4
        # Let every workflow of this queue finish (deletion 30 days on) while our worker runs.
        await cross_to(env, runs, await env.get_current_time() + timedelta(days=31))
        for sub_id in (sub_id for run in runs for sub_id in run.sub_ids):
            handle = own.handle(sub_id)

            async def completed(handle: Any = handle) -> bool:
                return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

            await eventually(completed, what=f"{sub_id} to complete")
    finally:
        for sub_id in (sub_id for run in runs for sub_id in run.sub_ids):
            # Never leave a workflow whose queue nobody polls: it would stop the session's clock.
            description = await own.handle(sub_id).describe()
            if description.status == WorkflowExecutionStatus.RUNNING:
                await own.handle(sub_id).terminate("test cleanup")
        await worker.__aexit__(None, None, None)


# ── 이용 요금 조회: GET …/invoices (R-BILL-7) ─────────────────────────────────────────────────


async def invoices_of(run: Run, actor: str | None = None) -> dict[str, Any]:
    """The answer as the API sends it (JSON: money as strings, times in Seoul time)."""
    found = await BillingService(run.service).invoices(
        workplace_id=run.wp.id,
        service_id=run.service_id,
        actor_id=actor or run.wp.rep,
    )
    answer: dict[str, Any] = found.model_dump(mode="json", by_alias=True)
    return answer


def api_invoice(run: Run, row: InvoiceRow, sub_index: int) -> dict[str, Any]:
    """What the API must say about a ledger row: the oracle's bill, and the row's identity."""
    found = oracle.bill(run.subs[sub_index], row.period, FEES)
    assert found is not None
    return {
        "invoice_id": row.invoice_id,
        "subscription_id": run.sub_ids[sub_index],
        "issued_at": oracle.seoul_iso(row.issued_at),
        **found.as_api(),
    }


async def test_r_bill_7_issued_invoices_and_the_current_months_estimate(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool
) -> None:
    """R-BILL-7: the issued invoices (money as strings of whole won, inclusive Seoul
    dates) and the live subscription's estimate, the invoice the month would get if plan and
    seats stayed as they are; both equal the oracle's."""
    start = await upcoming(env, 10 * 3600, lambda d: 5 <= d.day <= 15)
    run = await new_run(service, env, pool, UBOB)
    for at, act in [
        (start, Act("apply", "ubob-basic")),
        (start + timedelta(days=1), Act("change_now", "ubob-premium")),
        (start + timedelta(days=3), Act("join")),
        (start + timedelta(days=4, hours=2), Act("leave", 0)),
    ]:
        await cross_to(env, [run], at)
        await run.perform(act)
    period = oracle.month_of(oracle.seoul_day(start))
    expected = oracle.bill(run.sub, period, FEES)
    assert expected is not None
    answer = await invoices_of(run)
    assert answer == {
        "invoices": [],
        "estimate": {"subscription_id": run.sub_ids[0], **expected.as_api()},
        "final_charge": None,  # nothing cancelled
    }
    assert [line["seats"] for line in answer["estimate"]["lines"]] == [5, 5, 6, 5]

    first = oracle.first_of_next_month(start)
    await cross_to(env, [run], first + timedelta(hours=8))
    answer = await invoices_of(run)
    rows = await ledger.invoices_for(pool, run.wp.id, UBOB)
    assert answer["invoices"] == [api_invoice(run, rows[0], 0)]
    assert answer["invoices"][0]["issued_at"].endswith("+09:00")
    estimate = oracle.bill(run.sub, oracle.month_after(period), FEES)
    assert estimate is not None
    assert answer["estimate"] == {"subscription_id": run.sub_ids[0], **estimate.as_api()}

    await run.perform(Act("cancel"))
    pending = await invoices_of(run)
    assert pending["estimate"] is None  # nothing live
    # until it is issued, the final charge (prorated to the cancellation day) is shown
    final = oracle.bill(run.sub, oracle.month_of(oracle.seoul_day(await run.now())), FEES)
    assert final is not None
    assert pending["final_charge"] == {"subscription_id": run.sub_ids[0], **final.as_api()}
    await finish(env, [run])
    answer = await invoices_of(run)
    assert answer["final_charge"] is None  # issued now
    rows = await ledger.invoices_for(pool, run.wp.id, UBOB)
    assert answer["invoices"] == [api_invoice(run, row, 0) for row in rows]
    assert len(rows) == 2


async def test_r_bill_7_no_estimate_without_a_billable_day_and_permission_needed(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool
) -> None:
    """R-BILL-7, R-BILL-2, R-PERM-3: re-applied on the month's last day, the day its predecessor
    was cancelled, the new subscription has no billable day this month, hence no estimate; the
    listing shows every subscription's invoices; `usage.view` is needed."""
    cancel_at = await upcoming(env, 12 * 3600, is_last, ahead=timedelta(days=10))
    run = await new_run(service, env, pool, "wishket")
    assert await invoices_of(run) == {"invoices": [], "estimate": None, "final_charge": None}
    for at, act in [
        (cancel_at - timedelta(days=9), Act("apply")),
        (cancel_at - timedelta(days=8), Act("grant", 3)),
        (cancel_at, Act("cancel")),
        (cancel_at + timedelta(hours=1), Act("apply")),
        (cancel_at + timedelta(hours=2), Act("grant", 1)),
    ]:
        await cross_to(env, [run], at)
        await run.perform(act)
    assert (await invoices_of(run))["estimate"] is None

    first = oracle.first_of_next_month(cancel_at)
    await cross_to(env, [run], first + timedelta(hours=1))
    answer = await invoices_of(run)
    rows = await ledger.invoices_for(pool, run.wp.id, "wishket")
    assert answer["invoices"] == [api_invoice(run, rows[0], 0)]
    estimate = answer["estimate"]
    assert estimate is not None and estimate["subscription_id"] == run.sub_ids[1]
    assert estimate["lines"][0]["from"] == oracle.seoul_day(first).isoformat()

    for outsider in (run.wp.admin, run.wp.members[0]):
        refusal = None
        try:
            await invoices_of(run, outsider)
        except BizError as caught:
            refusal = caught
        assert refusal is not None and refusal.code == "FORBIDDEN"
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO management_permissions (workplace_id, service_id, member_id, permission)"
            " VALUES (%s, 'wishket', %s, 'usage.view')",
            (run.wp.id, run.wp.admin),
        )
    assert await invoices_of(run, run.wp.admin) == answer
    await run.perform(Act("cancel"))
    await finish(env, [run])
