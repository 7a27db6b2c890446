"""Invoices issued by the REAL workflow equal the independent oracle, to the won (R-BILL, R-PLAN-9).

Whole lifecycles — application, usage-permission grants and revocations, ubob member joins and
leaves, plan changes now and in the next window, withdrawals, cancellation, re-application — run
through SubscriptionService on the time-skipping server and real PostgreSQL. Nothing is mocked.
What the test observes from outside (the server clock right before and after each action, the
instants the read model reports) feeds ``tests/billing_oracle.py``, which shares no code with
``domain/billing.py`` or ``domain/calendar.py``; every invoice in the ledger must equal the
oracle's, lines included, and each subscription must have exactly one invoice per billed month.

The server clock only moves forward and is shared by the whole session. Generated lifecycles
(``tests/billing_lifecycles.py``) are laid on it a batch at a time from 00:00 Seoul on January 1st
of a leap year; the clock moves once per distinct instant and everything due at it runs together
(each lifecycle has its own workplace), stopping at every 1st until the month-close has landed.
A lifecycle that disagrees with the oracle is a mismatch: it is recorded with its timeline and
dropped, the others go on, and the test fails at the end listing every mismatch. The suite runs
``BIZSUPPORT_ORACLE_EXAMPLES`` lifecycles (default 200); ``make soak`` runs 10,000
(``tests/soak.py``, README "Soak").
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
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
from starter.temporal import binary, build_worker, ensure_search_attributes, partner_gateway
from store import ledger, subscriptions
from store.db import Pool
from store.ledger import InvoiceRow
from tests import billing_oracle as oracle
from tests.billing_lifecycles import (
    CI_LIFECYCLES,
    CI_SEED,
    PLANS,
    UBOB,
    Act,
    Lifecycle,
    generate,
)
from tests.conftest import Workplace, advance_to, eventually
from workflows.subscription import SubscriptionWorkflow

CATALOG = default_catalog()
FEES = oracle.fees_from(
    [(p.plan_id, int(p.base_fee), int(p.seat_fee)) for s in CATALOG.services for p in s.plans]
)
TERMS = {s.service_id: s.terms.version for s in CATALOG.services}

# The generated lifecycles: how many (CI runs 200; `make soak` runs 10,000 over shards), from
# which seed (CI: a fixed one), laid on one clock this many at a time (BATCH: each batch after
# the first on a time-skipping server of its own, whose CPU grows with the histories it holds;
# at 1,500 a batch's two servers used as much CPU as the two shards' Python by its end, so
# smaller batches cost less per lifecycle, though each walks its own months),
# at most CONCURRENCY actions at once, and where progress goes (`make soak` reads it).
LIFECYCLES = int(os.environ.get("BIZSUPPORT_ORACLE_EXAMPLES", CI_LIFECYCLES))
SEED = int(os.environ.get("BIZSUPPORT_SOAK_SEED", CI_SEED))
BATCH = int(os.environ.get("BIZSUPPORT_SOAK_BATCH", "500"))
CONCURRENCY = 32
PROGRESS = os.environ.get("BIZSUPPORT_SOAK_PROGRESS")


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
    patience: float = 15.0  # seconds a month-close may go without anything landing
    reading: datetime | None = None  # see perform

    @property
    def people(self) -> list[str]:
        return [self.wp.rep, self.wp.admin, *self.wp.members]

    @property
    def sub(self) -> oracle.Observed:
        return self.subs[-1]

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def perform(self, act: Act, reading: datetime | None = None) -> None:
        """Do ``act`` now. ``reading``: a clock reading taken before it by a caller that reads
        the clock again after it (and checks both are on one Seoul day), for a group of acts."""
        self.reading = reading
        handler: Callable[[Act], Awaitable[None]] = getattr(self, f"_{act.kind}")
        await handler(act)

    async def _before(self) -> datetime:
        return self.reading or await self.now()

    async def _same_day(self, before: datetime) -> None:
        if self.reading is None:
            after = await self.now()
            assert oracle.seoul_day(before) == oracle.seoul_day(after), (before, after)

    def _common(self) -> dict[str, str]:
        return {"workplace_id": self.wp.id, "service_id": self.service_id, "actor_id": self.wp.rep}

    async def _timed(self, call: Awaitable[Any]) -> tuple[datetime, Any]:
        """Run an action; its workflow time lies between the two clock readings, which must be
        on one Seoul day, so the event is billed on a known day (and recorded at the first)."""
        before = await self._before()
        try:
            result: Any = await call
        except BizError as refusal:
            result = refusal
        await self._same_day(before)
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
        before = await self._before()
        status = await self.service.apply(
            **self._common(),
            plan_id=str(act.arg) if self.service_id == UBOB else None,
            terms_version=TERMS[self.service_id],
            agree_terms=True,
        )
        if status.state == "applied":
            # The application answers after a few seconds even when the partner has not: on a
            # loaded machine the activation lands later (R-LIFE-2). Wait for it, then compare.
            status = await eventually(
                lambda: self._activated(), within=120.0, what="activation after a slow answer"
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

    async def _activated(self) -> SubscriptionOut | None:
        status = await self.service.status(**self._common())
        return status if status.state != "applied" else None

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
            expected = oracle.next_change_at(
                at, self.sub.applied_at, self.last_change_month, self.scheduled_month()
            )
            assert datetime.fromisoformat(refusal.details["next_plan_change_at"]) == expected
            return
        self.sub.plans.append((at, plan_id))
        self.last_change_month = oracle.month_of(oracle.seoul_day(at))
        assert self._accepted(result).plan_id == plan_id

    def scheduled_month(self) -> str | None:
        """The month a pending scheduled change takes (R-PLAN-8), if one is pending."""
        if self.scheduled is None:
            return None
        return oracle.month_of(oracle.seoul_day(self.scheduled.at))

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
        before = await self._before()
        await self.service.handle(self.sub_ids[-1]).signal(name, MemberEvent(member_id=member))

        async def landed() -> bool:
            row = await subscriptions.by_id(self.pool, self.sub_ids[-1])
            return row is not None and row.usage_permission_count == len(self.holders)

        await eventually(landed, what=f"{name} {member}")
        await self._same_day(before)
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

    def due_change(self, first: datetime) -> str | None:
        """00:00 Seoul on a 1st has passed: a scheduled change due then fired (R-PLAN-8). Record
        it, and return the plan the read model must show (None: nothing due)."""
        scheduled = self.scheduled
        if not self.live or scheduled is None or scheduled.at != first:
            return None
        self.scheduled = None
        if scheduled.plan_id != self.sub.current_plan():  # else dropped: nothing to change
            self.sub.plans.append((first, scheduled.plan_id))
            self.last_change_month = oracle.month_of(oracle.seoul_day(first))
        return scheduled.plan_id

    async def verify(self, through: str) -> tuple[int, int]:
        """Every issued invoice equals the oracle's; exactly one per subscription and month.
        Returns how many invoices were compared and their total in won."""
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
        return len(expected), sum(found.total for found in expected.values())


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


Problems = list[tuple[Run, str]]


async def month_began(runs: list[Run], first: datetime) -> Problems:
    """00:00 Seoul on a 1st has passed: a due scheduled change fired first (R-PLAN-8), then
    each subscription got last month's invoice (R-BILL-5). Wait, one query for all runs, until
    both have landed; return the runs where something did not land or landed once too often."""
    if not runs:
        return []
    through = oracle.month_of(oracle.seoul_day(first) - timedelta(days=1))
    changes = {run.sub_ids[-1]: (run, plan) for run in runs if (plan := run.due_change(first))}
    invoices = {
        sub_id: (run, len(oracle.billed_months(sub, through)))
        for run in runs
        for sub, sub_id in zip(run.subs, run.sub_ids, strict=True)
    }
    problems: dict[str, tuple[Run, str]] = {}
    patience = max(run.patience for run in runs)
    loop = asyncio.get_running_loop()
    waiting, since = len(changes) + len(invoices) + 1, loop.time()
    pool = runs[0].pool
    # Each look asks only about what has not landed yet (a batch holds up to 1,500 runs, looked
    # at every 50 ms while the month closes); once all has, one look at every count below.
    pending_changes, pending_invoices = changes, invoices
    while True:
        shown = await _plans(pool, list(pending_changes))
        issued = await _invoice_counts(pool, list(pending_invoices))
        late = {
            sub_id: (run, f"the scheduled change to {plan} on {first}")
            for sub_id, (run, plan) in pending_changes.items()
            if shown[sub_id]["plan_id"] != plan or shown[sub_id]["scheduled_plan_change"]
        }
        for sub_id, (run, expected) in pending_invoices.items():
            if issued.get(sub_id, 0) > expected:
                problems[sub_id] = (run, f"{issued[sub_id]} invoices of {sub_id}, not {expected}")
            elif issued.get(sub_id, 0) < expected:
                late.setdefault(sub_id, (run, f"{sub_id}'s invoices through {through}"))
        late = {sub_id: why for sub_id, why in late.items() if sub_id not in problems}
        if not late:
            break
        if len(late) < waiting:
            waiting, since = len(late), loop.time()
        elif loop.time() - since > patience:
            for sub_id, (run, what) in late.items():
                problems[sub_id] = (run, f"timed out waiting for {what}")
            break
        pending_changes = {k: v for k, v in pending_changes.items() if k in late}
        pending_invoices = {k: v for k, v in pending_invoices.items() if k in late}
        await asyncio.sleep(0.05)
    # An invoice issued once too often after its subscription's count had landed.
    issued = await _invoice_counts(pool, list(invoices))
    for sub_id, (run, expected) in invoices.items():
        if issued.get(sub_id, 0) > expected and sub_id not in problems:
            problems[sub_id] = (run, f"{issued[sub_id]} invoices of {sub_id}, not {expected}")
    return list(problems.values())


async def _by_subscription(pool: Pool, query: str, sub_ids: list[str]) -> dict[str, Any]:
    """`query`'s rows (it takes the ids as its one parameter), by subscription id."""
    if not sub_ids:
        return {}
    async with pool.connection() as conn:
        cur = await conn.execute(query, (sub_ids,))
        return {row["subscription_id"]: row for row in await cur.fetchall()}


async def _plans(pool: Pool, sub_ids: list[str]) -> dict[str, dict[str, Any]]:
    return await _by_subscription(
        pool,
        "SELECT subscription_id, plan_id, scheduled_plan_change FROM subscriptions"
        " WHERE subscription_id = ANY(%s)",
        sub_ids,
    )


async def _invoice_counts(pool: Pool, sub_ids: list[str]) -> dict[str, int]:
    rows = await _by_subscription(
        pool,
        "SELECT subscription_id, count(*) AS n FROM invoices"
        " WHERE subscription_id = ANY(%s) GROUP BY subscription_id",
        sub_ids,
    )
    return {sub_id: row["n"] for sub_id, row in rows.items()}


MonthClosed = Callable[[datetime, Problems], Awaitable[None]]


async def must_land(first: datetime, problems: Problems) -> None:
    assert not problems, [why for _, why in problems]


async def cross_to(
    env: WorkflowEnvironment,
    runs: list[Run],
    target: datetime,
    month_closed: MonthClosed = must_land,
) -> None:
    """Move the clock to ``target``, stopping at every 00:00 Seoul on a 1st on the way until
    what it fires has landed, so no later action can overtake it."""
    now = await env.get_current_time()
    while (first := oracle.first_of_next_month(now)) <= target:
        await env.sleep(first - now)
        await month_closed(first, await month_began(runs, first))
        now = await env.get_current_time()
    if target > now:
        await env.sleep(target - now)


async def finish(env: WorkflowEnvironment, runs: list[Run]) -> int:
    """Go to the month after the last cancellation and check every invoice of every run."""
    last = max(sub.cancelled_at for run in runs for sub in run.subs if sub.cancelled_at)
    await cross_to(env, runs, oracle.first_of_next_month(last))
    through = oracle.month_of(oracle.seoul_day(last))
    counts = await asyncio.gather(*(run.verify(through) for run in runs))
    return sum(invoices for invoices, _ in counts)


# ── the property ─────────────────────────────────────────────────────────────────────────────


@dataclass
class Tally:
    """What the generated lifecycles compared so far: the soak's progress and summary."""

    total: int
    total_acts: int
    lifecycles: int = 0  # done: every invoice compared, or a mismatch found
    invoices: int = 0
    won: int = 0
    acts: int = 0  # performed (the soak's estimate of time left goes by them)
    mismatches: list[str] = field(default_factory=list)
    reported: float = 0.0

    def report(self, now: float = 0.0) -> None:
        """A JSON line to BIZSUPPORT_SOAK_PROGRESS for `make soak` to show, at most one a
        second (``now``: the loop's time; 0 reports at once)."""
        if PROGRESS and (not now or now - self.reported >= 1.0):
            self.reported = now
            counts = {k: v for k, v in self.__dict__.items() if k not in ("mismatches", "reported")}
            with open(PROGRESS, "a", encoding="utf-8") as out:
                out.write(json.dumps({**counts, "mismatches": len(self.mismatches)}) + "\n")

    def mismatch(self, life: Lifecycle, day0: date, why: str) -> None:
        self.lifecycles += 1
        acts = "; ".join(
            f"{act.kind}({act.arg}) {oracle.seoul_iso(act.instant(day0))}" for act in life.acts
        )
        self.mismatches.append(f"{life.service_id}: {acts}\n  -> {why}")
        if PROGRESS:
            with open(PROGRESS, "a", encoding="utf-8") as out:
                out.write(json.dumps({"mismatch": self.mismatches[-1]}) + "\n")


async def leap_year_start(env: WorkflowEnvironment) -> date:
    """Move the clock to 00:00 Seoul on the next January 1st of a leap year (the generated
    calendars' day 0, tests/billing_lifecycles.py) and return that day."""
    year = oracle.seoul_day(await env.get_current_time()).year + 1
    while not calendar.isleap(year):
        year += 1
    day0 = date(year, 1, 1)
    await cross_to(env, [], oracle.seoul_midnight(day0))
    return day0


async def run_generated(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    lives: list[Lifecycle],
    tally: Tally,
) -> None:
    """Lay ``lives`` on one clock and run them together. Each is verified, and let go, a month
    after the 1st that issued its final invoice (R-BILL-5), so that an invoice too many in the
    month after (its data deletion falls there too, R-CANCEL-2) is caught as well."""
    runs = list(
        await asyncio.gather(*(new_run(service, env, pool, life.service_id) for life in lives))
    )
    day0 = await leap_year_start(env)
    final = [oracle.first_of_next_month(life.acts[-1].instant(day0)) for life in lives]
    done_at = [oracle.first_of_next_month(first) for first in final]
    active = dict(enumerate(runs))
    gate = asyncio.Semaphore(CONCURRENCY)

    async def drop(index: int, why: str) -> None:
        run = active.pop(index, None)
        if run is None:
            return
        tally.mismatch(lives[index], day0, why)
        if run.live:  # no more month-ends for it
            with contextlib.suppress(Exception):
                await run.service.cancel(**run._common())

    async def step(index: int, act: Act, reading: datetime) -> None:
        async with gate:
            if index in active:
                try:
                    await active[index].perform(act, reading)
                except Exception as failure:  # every disagreement, whatever its kind, is a mismatch
                    await drop(index, f"{act}: {type(failure).__name__}: {failure}")

    async def month_closed(first: datetime, problems: Problems) -> None:
        index_of = {id(run): index for index, run in active.items()}
        for run, why in problems:
            await drop(index_of[id(run)], why)
        through = oracle.month_of(oracle.seoul_day(first) - timedelta(days=1))
        for index in [i for i in active if done_at[i] <= first]:
            try:
                invoices, won = await active[index].verify(through)
            except AssertionError as failure:
                await drop(index, f"invoices: {failure}")
                continue
            del active[index]
            tally.lifecycles += 1
            tally.invoices += invoices
            tally.won += won
        tally.report()

    timeline = sorted(
        (act.instant(day0), index, act) for index, life in enumerate(lives) for act in life.acts
    )
    for target, group in groupby(timeline, key=lambda item: item[0]):
        # Every act of the group happens between these two clock readings, which must be on
        # one Seoul day (nothing is due later than 23:59:00, tests/billing_lifecycles.py).
        await cross_to(env, list(active.values()), target, month_closed)
        due = [(index, act) for _, index, act in group]
        before = await env.get_current_time()
        await asyncio.gather(*(step(index, act, before) for index, act in due))
        after = await env.get_current_time()
        if oracle.seoul_day(after) != oracle.seoul_day(before):
            for index, _ in due:
                await drop(index, f"the acts at {before} ran on to {after}, past their day")
        tally.acts += len(due)
        tally.report(asyncio.get_running_loop().time())
    await cross_to(env, list(active.values()), max(done_at), month_closed)
    assert not active, "every lifecycle is verified or a mismatch"


@contextlib.asynccontextmanager
async def own_server(pool: Pool) -> AsyncIterator[tuple[SubscriptionService, WorkflowEnvironment]]:
    """A time-skipping server of its own, with a worker and a service on it, for one batch.
    The test server keeps every history in memory and slows down as they pile up (a soak's
    shard spent more CPU in it than in Python after 4,000 lifecycles), so each batch after the
    first starts afresh; its lifecycles end before it does (run_generated)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    try:
        await ensure_search_attributes(env.client)
        queue = f"bizsupport-soak-{uuid.uuid4().hex[:8]}"
        async with build_worker(env.client, pool, queue):
            services = build_services(pool, env.client, CATALOG, queue, clock=env.get_current_time)
            yield services.subscriptions, env
    finally:
        await env.shutdown()


async def test_r_bill_every_invoice_of_generated_lifecycles_matches_the_oracle(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool
) -> None:
    """R-BILL-2..6, R-PLAN-2/3/4/8/9, R-CANCEL-3, R-LIFE-3: generated lifecycles through the
    real workflow; every invoice equals the oracle to the won, once per subscription and month,
    and every refusal is the one the oracle predicts."""
    lives = generate(LIFECYCLES, SEED)
    tally = Tally(total=len(lives), total_acts=sum(len(life.acts) for life in lives))
    tally.report()
    for number, start in enumerate(range(0, len(lives), BATCH)):
        batch = lives[start : start + BATCH]
        if number == 0:  # CI's 200 are one batch, on the session's server
            await run_generated(service, env, pool, batch, tally)
            continue
        async with own_server(pool) as (own, own_env):
            await run_generated(own, own_env, pool, batch, tally)
    tally.report()
    assert tally.lifecycles == len(lives)
    assert not tally.mismatches, "\n".join(
        [f"{len(tally.mismatches)} of {len(lives)} lifecycles (seed {SEED}):", *tally.mismatches]
    )


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


async def refused_change_now(run: Run, plan_id: str) -> BizError:
    """A change now that must be refused because the window is closed (R-PLAN-2, -3, -4)."""
    try:
        await run.service.change_plan(**run._common(), plan_id=plan_id, when="now")
    except BizError as refusal:
        assert refusal.code == "PLAN_CHANGE_WINDOW_CLOSED", refusal
        return refusal
    raise AssertionError(f"the change to {plan_id} was not refused")


async def test_r_plan_8_a_pending_scheduled_change_takes_next_month_until_withdrawn(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool
) -> None:
    """Issue 21's timeline (found by 2,000 generated lifecycles): this month's change made and a
    change scheduled for the 1st of the next month, a change now at 00:30 late in the month is
    refused until the 1st of the month AFTER next — the scheduled change is the next month's
    change (R-PLAN-8). Withdrawn, the next month is free again: from its 1st. The oracle, which
    named the next month's 1st in both cases, now agrees with the service; the invoices too."""
    start = await upcoming(env, 10 * 3600, lambda d: d.day == 5)
    month = oracle.month_of(oracle.seoul_day(start))
    next_first = oracle.seoul_midnight(oracle.month_first(oracle.month_after(month)))
    after_next = oracle.first_of_next_month(next_first)
    run = await new_run(service, env, pool, UBOB)
    for at, act in [
        (start, Act("apply", "ubob-basic")),
        (start + timedelta(days=2), Act("change_now", "ubob-standard")),  # this month's change
        (start + timedelta(days=3), Act("change_next", "ubob-premium")),  # the next month's
    ]:
        await cross_to(env, [run], at)
        await run.perform(act)
    await cross_to(env, [run], oracle.seoul_at(oracle.seoul_day(start) + timedelta(days=20), 1800))
    refusal = await refused_change_now(run, "ubob-premium")
    assert refusal.details["reason"] == "monthly_limit"
    assert datetime.fromisoformat(refusal.details["next_plan_change_at"]) == after_next
    assert refusal.details["scheduled_plan_change_at"] == oracle.seoul_iso(next_first)
    assert "withdraw it to change the plan in" in refusal.message
    await run.perform(Act("change_now", "ubob-premium"))  # the oracle predicts the same refusal

    await run.perform(Act("withdraw"))  # R-PLAN-8: withdrawing frees the next month
    refusal = await refused_change_now(run, "ubob-premium")
    assert refusal.details["reason"] == "monthly_limit"
    assert datetime.fromisoformat(refusal.details["next_plan_change_at"]) == next_first
    assert "scheduled_plan_change_at" not in refusal.details
    await run.perform(Act("change_now", "ubob-premium"))

    for at, act in [
        (next_first + timedelta(hours=10), Act("change_now", "ubob-premium")),  # allowed now
        (next_first + timedelta(days=3), Act("cancel")),
    ]:
        await cross_to(env, [run], at)
        await run.perform(act)
    assert [plan for _, plan in run.sub.plans] == ["ubob-basic", "ubob-standard", "ubob-premium"]
    assert await finish(env, [run]) == 2


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
    does anyway; a task the stopped worker had taken is retried after its 10 s timeout (if
    one was in flight when it stopped).
    """
    activities = SubscriptionActivities(pool, partner_gateway(pool))
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[SubscriptionWorkflow],
        activities=activities.all(),
        max_cached_workflows=0,
        # One workflow task at a time: with no cache and several slots, each month-close task
        # the worker had started timed out (10 s) one to four times before it ran (41 timeouts,
        # 164 s for this test; with one slot none, 13 s).
        max_concurrent_workflow_tasks=1,
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
            await must_land(first, await month_began(runs, first))
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
