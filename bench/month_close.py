"""Month-close benchmark: N subscriptions reach 00:00 Seoul on the 1st together (R-BILL-5).

    python bench/month_close.py [--n 1000] [--max-concurrent 200] [--pool 40]

Starts embedded PostgreSQL in a temporary folder (or uses DATABASE_URL) and Temporal's
time-skipping test server, applies for N subscriptions through SubscriptionService (so each is a
real, active SubscriptionWorkflow), then moves the clock with ONE `env.sleep` to exactly the
next 1st 00:00 Seoul after seeding (one month boundary, whatever today's date): every
subscription's invoice timer fires at the same instant. It measures invoices per second from that
moment until all N invoices are in PostgreSQL, and until every month-close has been published
(the `invoice_issued` audit entry, the last write of the month-close), and checks that each
subscription issued exactly one invoice, for the month that just closed.

Then two floors in the same run, on workers with the same settings:
- BASELINE: N workflows defined here with the same timer and the same number of activities per
  month-close as ours (counted from a real history), but no business logic: each activity
  writes one row. Ours / baseline is what the product's own logic costs over the bare
  Temporal + PostgreSQL round trips of the same shape.
- TIMER-ONLY: N workflows that only sleep to the same kind of instant and return. Ours /
  timer-only is what a month-close costs over the cheapest thing a timer can do.

Warnings are counted from two places: Python logging (the SDK's Python side, e.g. the deadlock
detector TMPRL1101 when a workflow task holds the event loop for 2 s) and the process's console,
where the SDK's Rust core writes its own warnings (TMPRL1104: a workflow task took over 5 s) —
to stdout in temporalio 1.35, not stderr. fds 1 and 2 are both redirected to a temporary file
for the whole run and counted per phase; the bench's own lines still reach the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

# Run as a script from anywhere: the project is imported from the checkout this file lives in
# (not from whatever copy of it is installed).
# (The sandbox re-runs this module for every workflow; by then the path is set.)
if not workflow.unsafe.in_sandbox():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with workflow.unsafe.imports_passed_through():
    from domain.calendar import SEOUL, first_instant_of_next_month, period_of
    from starter import process

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# The 2-activity floor: the shape of a version-1 month-close (issue_invoice, publish)
# with no logic. Kept fixed, so the ratio shows what version 2's one local commit buys.
BASELINE_ACTIVITIES = 2


# ── the baseline: the same timers and activities, no business logic ─────────────────────────


class BaselineInput(BaseModel):
    key: str
    first: datetime  # 00:00 Seoul on the 1st, like the invoice timer
    activities: int  # as many as one month-close of SubscriptionWorkflow runs


@activity.defn(name="bench_write_row")
async def write_row(key: str, seq: int, at: datetime) -> None:
    pool = BASELINE_POOL[0]
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO bench_rows (key, seq, at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (key, seq, at),
        )


BASELINE_POOL: list[Any] = []


@workflow.defn(name="BenchBaselineWorkflow")
class BaselineWorkflow:
    @workflow.run
    async def run(self, job: BaselineInput) -> None:
        await workflow.sleep(job.first - workflow.now())
        for seq in range(job.activities):
            await workflow.execute_activity(
                write_row,
                args=[job.key, seq, workflow.now()],
                start_to_close_timeout=ACTIVITY_TIMEOUT,
            )


# ── the timer-only floor: a workflow that only sleeps to the same instant ───────────────────


@workflow.defn(name="BenchTimerOnlyWorkflow")
class TimerOnlyWorkflow:
    @workflow.run
    async def run(self, first: datetime) -> None:
        await workflow.sleep(first - workflow.now())


# Workflow ids whose run returned. A timer-only workflow writes nothing anywhere, so the worker
# tells us: this interceptor class is created outside the sandbox, so the set it fills is this
# process's own (a set, so a replay would not count a workflow twice).
TIMER_ONLY_DONE: set[str] = set()


class _CountReturns(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        result = await super().execute_workflow(input)
        TIMER_ONLY_DONE.add(workflow.info().workflow_id)
        return result


class CountReturns(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _CountReturns


# ── measuring ────────────────────────────────────────────────────────────────────────────────


class LogTally(logging.Handler):
    """Every warning and error the SDK logs in Python, by kind; TMPRL1101 called out."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.kinds: Counter[str] = Counter()
        self.deadlocks = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        if "TMPRL1101" in text or "deadlock" in text.lower():
            self.deadlocks += 1
        self.kinds[f"{record.levelname} {record.name}"] += 1
        if len(self.samples) < 5:
            self.samples.append(text[:300])


class ConsoleTally:
    """The process's fds 1 and 2, captured in one temporary file for the run.

    The SDK's Rust core writes its own warnings (TMPRL1104 among them) straight to the console,
    not through Python logging, and in temporalio 1.35 to stdout (sdk-core's `telemetry_init`
    uses `std::io::stdout`), not stderr. Both descriptors are redirected with `os.dup2`, so it
    is counted wherever it goes, with whatever the child processes (test server, PostgreSQL)
    write; the bench's own lines reach the real stdout through a new `sys.stdout`.
    """

    CODES = ("TMPRL1104", "TMPRL1101")
    _LEVEL = re.compile(r"\b(WARN|WARNING|ERROR)\b")

    def __init__(self) -> None:
        handle, path = tempfile.mkstemp(prefix="bizsupport-bench-console-")
        # O_APPEND: the two descriptors and the children never overwrite each other's lines.
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND)
        os.close(handle)
        os.unlink(path)
        self.marks: list[tuple[str, int]] = []

    @contextmanager
    def captured(self) -> Iterator[ConsoleTally]:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        real_stdout = sys.stdout
        sys.stdout = open(os.dup(saved[1]), "w", buffering=1, encoding="utf-8")
        for fd in saved:
            os.dup2(self.fd, fd)
        try:
            yield self
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sys.stdout.close()
            sys.stdout = real_stdout

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def mark(self, name: str) -> None:
        """Everything written since the previous mark belongs to the phase ``name``."""
        sys.stderr.flush()
        self.marks.append((name, self.size()))

    def lines(self, start: int, end: int) -> list[str]:
        return os.pread(self.fd, end - start, start).decode(errors="replace").splitlines()

    def segments(self) -> list[tuple[str, Counter[str]]]:
        counted: list[tuple[str, Counter[str]]] = []
        start = 0
        for name, end in self.marks:
            tally: Counter[str] = Counter()
            for line in self.lines(start, end):
                for code in self.CODES:
                    if code in line:
                        tally[code] += 1
                if self._LEVEL.search(line):
                    tally["warn/error lines"] += 1
            counted.append((name, tally))
            start = end
        return counted

    def tail(self, lines: int = 40) -> list[str]:
        size = self.size()
        return self.lines(max(0, size - 64_000), size)[-lines:]

    def samples(self, code: str, limit: int = 2) -> list[str]:
        found = [line for line in self.lines(0, self.size()) if code in line]
        return [line[:300] for line in found[:limit]]


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) of this process and its descendants, by program name: the
    worker (python), the time-skipping server, PostgreSQL (when embedded)."""
    used: dict[str, float] = {}
    for pid, (name, seconds) in descendants_cpu().items():
        kind = "worker" if pid == os.getpid() else name.split()[0].split("-")[0]
        used[kind] = used.get(kind, 0.0) + seconds
    return used


def descendants_cpu() -> dict[int, tuple[str, float]]:
    """CPU time (user + system) so far of this process and each of its descendants:
    pid → (program name, seconds)."""
    ticks = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / ticks)
    mine = {os.getpid()}
    grew = True
    while grew:
        found = {pid for pid, (ppid, _, _) in table.items() if ppid in mine} - mine
        grew = bool(found)
        mine |= found
    return {pid: (table[pid][1], table[pid][2]) for pid in mine if pid in table}


@dataclass
class Phase:
    name: str
    n: int
    first_row_s: float
    all_rows_s: float
    done_s: float
    cpu: dict[str, float]
    note: str
    tasks: TaskLatency | None = None

    @property
    def rate(self) -> float:
        return self.n / self.all_rows_s

    @property
    def done_rate(self) -> float:
        return self.n / self.done_s


@dataclass
class TaskLatency:
    """Workflow tasks one task queue's worker completed, from the SDK core's own histogram
    `temporal_workflow_task_execution_latency` (milliseconds from the task's poll to its
    completion; buckets up to 1,000 ms), and how many of them took over 1 s."""

    tasks: int = 0
    over_1s: int = 0
    over_100ms: int = 0

    def __sub__(self, other: TaskLatency) -> TaskLatency:
        return TaskLatency(
            self.tasks - other.tasks,
            self.over_1s - other.over_1s,
            self.over_100ms - other.over_100ms,
        )

    def __str__(self) -> str:
        slow = f"{self.over_100ms} over 100 ms, {self.over_1s} over 1 s"
        return f"{self.tasks} workflow tasks, {slow}"


def task_latency(metrics_url: str, queue: str) -> TaskLatency:
    """The SDK's histogram for `queue` as the worker's metrics endpoint serves it now."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    name = "temporal_workflow_task_execution_latency"
    total = within_1s = within_100ms = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or f'task_queue="{queue}"' not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith(f"{name}_count"):
            total += value
        elif 'le="1000"' in line:
            within_1s += value
        elif 'le="100"' in line:
            within_100ms += value
    return TaskLatency(int(total), int(total - within_1s), int(total - within_100ms))


async def bounded(
    job: Callable[[str], Awaitable[Any]], items: Iterable[str], limit: int
) -> list[Any]:
    """``job(item)`` for every item, at most ``limit`` at a time."""
    gate = asyncio.Semaphore(limit)

    async def one(item: str) -> Any:
        async with gate:
            return await job(item)

    return await asyncio.gather(*(one(item) for item in items))


async def count(pool: Any, sql: str, *params: Any) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    return int(row["n"])


async def watch(
    env: WorkflowEnvironment,
    target: datetime,
    n: int,
    rows: Callable[[], Awaitable[int]],
    done: Callable[[], Awaitable[int]],
    name: str,
    metrics: tuple[str, str],
) -> Phase:
    """Move the clock to ``target`` in one sleep and time the rows landing; ``metrics`` is the
    worker's metrics URL and task queue, for the workflow tasks' latency."""
    tasks_before = await asyncio.to_thread(task_latency, *metrics)
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    # The sleep runs beside the polling: the server may hold its answer until the tasks the
    # timers caused are done, and under load it can give up waiting ("Timeout expired") while
    # the month-close goes on; the rows in PostgreSQL are what is measured either way.
    sleeping = asyncio.create_task(env.sleep(target - await env.get_current_time()))
    first_row = all_rows = None
    while True:
        landed = await rows()
        now = time.perf_counter() - start
        if landed and first_row is None:
            first_row = now
        if landed >= n and all_rows is None:
            all_rows = now
        if all_rows is not None and await done() >= n:
            assert first_row is not None
            elapsed = time.perf_counter() - start
            after = cpu_seconds()
            cpu = {kind: sec - cpu_before.get(kind, 0.0) for kind, sec in after.items()}
            try:
                await sleeping
                note = ""
            except RPCError as err:
                note = f"env.sleep answered {err.message!r}"
            tasks = await asyncio.to_thread(task_latency, *metrics) - tasks_before
            return Phase(name, n, first_row, all_rows, elapsed, cpu, note, tasks)
        if now > 600:
            raise TimeoutError(f"{name}: {landed}/{n} rows after 10 minutes")
        await asyncio.sleep(0.02)


# ── the run ──────────────────────────────────────────────────────────────────────────────────


@dataclass
class InvoiceCheck:
    """What ours issued at the one boundary: each subscription exactly one invoice, for the
    month that just closed (two would mean the clock crossed two month boundaries)."""

    period: str
    n: int
    per_subscription: Counter[int] = field(default_factory=Counter)  # invoices → subscriptions
    other_periods: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.per_subscription == Counter({1: self.n}) and not self.other_periods


async def check_invoices(pool: Any, like: str, period: str, sub_ids: list[str]) -> InvoiceCheck:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT subscription_id, period FROM invoices WHERE workplace_id LIKE %s", (like,)
            )
        ).fetchall()
    issued = Counter(r["subscription_id"] for r in rows)
    check = InvoiceCheck(period, len(sub_ids))
    check.per_subscription = Counter(issued.get(sub_id, 0) for sub_id in sub_ids)
    check.other_periods = sorted({r["period"] for r in rows} - {period})
    return check


async def run(args: argparse.Namespace, console: ConsoleTally) -> int:
    from devstack.embedded import EmbeddedPostgres, free_port
    from domain.catalog import default_catalog
    from services.root import build_services
    from starter.temporal import binary, build_worker, connect, ensure_search_attributes
    from store import directory
    from store.db import migrate, open_pool

    load_at_start = os.getloadavg()
    tally = LogTally()
    sdk_log = logging.getLogger("temporalio")
    sdk_log.setLevel(logging.WARNING)  # failed activations, TMPRL1101 are warnings
    sdk_log.addHandler(tally)
    folder: Path | None = None
    server: EmbeddedPostgres | None = None
    url = os.environ.get("DATABASE_URL")
    if not url:
        folder = Path(tempfile.mkdtemp(prefix="bizsupport-bench-pg-"))
        server = EmbeddedPostgres(folder / "pgdata")
        url = server.start()
    migrate(url)
    # Ours provisions each subscription at its partner over HTTP: the sandbox partner server.
    from common import sandbox_partner

    partner = AsyncExitStack()
    await partner.enter_async_context(sandbox_partner(url))
    pool = await open_pool(url, max_size=args.pool)
    BASELINE_POOL.append(pool)
    async with pool.connection() as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_rows (key text NOT NULL, seq int NOT NULL,"
            " at timestamptz NOT NULL, PRIMARY KEY (key, seq))"
        )
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    await ensure_search_attributes(env.client)
    # The workers' client runs on an SDK runtime serving Prometheus metrics, for the workflow
    # tasks' latency (the core's own histogram; TMPRL1104 on the console only counts over 5 s).
    metrics_address = f"127.0.0.1:{free_port()}"
    metrics_url = f"http://{metrics_address}/metrics"
    workers_client = await connect(
        env.client.service_client.config.target_host, metrics_address=metrics_address
    )
    tag = uuid.uuid4().hex[:6]
    n = args.n
    console.mark("setup")
    process.freeze_startup_heap()  # start-up is done, as worker.py does before it serves
    try:
        # ── ours ──
        queue = f"bench-{tag}"
        spread = timedelta(minutes=args.spread_minutes)
        service = build_services(
            pool,
            env.client,
            default_catalog(),
            queue,
            clock=env.get_current_time,
            invoice_spread=spread,
        ).subscriptions
        workplaces = [f"bench-{tag}-{i:05d}" for i in range(n)]
        async with build_worker(
            workers_client,
            pool,
            queue,
            max_concurrent=args.max_concurrent,
            max_workflow_tasks=args.workflow_tasks,
            max_cached_workflows=args.cache,
        ):
            seed_start = time.perf_counter()

            async def subscribe(wp: str) -> str:
                rep = {"member_id": f"{wp}-rep", "login_id": f"{wp}@bench", "name": "대표"}
                await directory.put_workplace(pool, wp, wp, rep)
                status = await service.apply(
                    workplace_id=wp,
                    service_id="cartax",
                    actor_id=f"{wp}-rep",
                    plan_id=None,
                    terms_version=service.authz.service("cartax").terms.version,
                    agree_terms=True,
                    wait_seconds=300,  # provisioning over HTTP on a busy machine
                )
                assert status.state == "active", status
                return status.subscription_id

            sub_ids = await bounded(subscribe, workplaces, args.seed_concurrency)
            seeded = time.perf_counter() - seed_start
            print(
                f"seeded {n} active subscriptions in {seeded:.1f} s"
                f" ({n / seeded:.0f}/s); worker process RSS {rss_mb():.0f} MB",
                flush=True,
            )
            console.mark("ours: seeding")
            # Exactly ONE month boundary: the next 1st 00:00 Seoul after the clock's now, so every
            # subscription closes the month it was applied in, and only that one (adding a day
            # first, as this bench once did, crossed two boundaries on a month's last day).
            now = await env.get_current_time()
            first = first_instant_of_next_month(now)
            period = period_of(now)
            like = f"bench-{tag}-%"
            print(
                f"clock {now.astimezone(SEOUL).isoformat(timespec='seconds')} → target"
                f" {first.astimezone(SEOUL).isoformat(timespec='seconds')}: closes {period}",
                flush=True,
            )
            if spread:
                print(
                    f"month-end spread over {args.spread_minutes} min: ours sleeps to"
                    f" {(first + spread).astimezone(SEOUL).isoformat(timespec='seconds')};"
                    " the floors still fire together at 00:00",
                    flush=True,
                )
            ours = await watch(
                env,
                first + spread,
                n,
                lambda: count(
                    pool,
                    "SELECT count(*) AS n FROM invoices WHERE period = %s AND workplace_id LIKE %s",
                    period,
                    like,
                ),
                lambda: count(
                    pool,
                    "SELECT count(*) AS n FROM audit_log WHERE action = 'invoice_issued'"
                    " AND details->>'period' = %s AND workplace_id LIKE %s",
                    period,
                    like,
                ),
                "ours",
                (metrics_url, queue),
            )
            # Wait until every month-close's workflow task has completed (the run waits on its
            # next timer) before terminating: terminating a run whose task is in flight leaves
            # the time-skipping server's clock locked, and the floors would never fire (seen as
            # "Task not found when completing: Completed workflow").
            waited = time.perf_counter()
            await bounded(
                lambda s: waiting_again(service.handle(s)), sub_ids, args.seed_concurrency
            )
            ours.note = (ours.note + "; " if ours.note else "") + (
                f"every run was waiting on its next timer {time.perf_counter() - waited:.2f} s"
                " after the last month-close was done"
            )
            console.mark("ours: month-close")
            invoices = await check_invoices(pool, like, period, sub_ids)
            per_close = await month_close_activities(service, sub_ids[0])
            # Our workflows would invoice again next month: end them before the floors run.

            async def terminate(sub_id: str) -> None:
                await service.handle(sub_id).terminate("benchmark done")

            await bounded(terminate, sub_ids, args.seed_concurrency)

        # ── baseline: the same timer and activities, no logic ──
        base_queue = f"bench-baseline-{tag}"
        async with Worker(
            workers_client,
            task_queue=base_queue,
            workflows=[BaselineWorkflow],
            activities=[write_row],
            max_concurrent_activities=args.max_concurrent,
            max_concurrent_workflow_tasks=args.workflow_tasks,
            max_cached_workflows=args.cache,
            graceful_shutdown_timeout=timedelta(seconds=5),
        ):
            first = first_instant_of_next_month(await env.get_current_time())
            keys = [f"base-{tag}-{i:05d}" for i in range(n)]

            async def start(key: str) -> None:
                await env.client.start_workflow(
                    BaselineWorkflow.run,
                    BaselineInput(key=key, first=first, activities=BASELINE_ACTIVITIES),
                    id=key,
                    task_queue=base_queue,
                )

            await bounded(start, keys, args.seed_concurrency)
            # Measure from the same point as ours: every workflow started and waiting on its timer.
            await bounded(
                lambda key: timer_started(env.client.get_workflow_handle(key)),
                keys,
                args.seed_concurrency,
            )
            console.mark("baseline: start")
            like = f"base-{tag}-%"
            base = await watch(
                env,
                first,
                n,
                lambda: count(
                    pool, "SELECT count(*) AS n FROM bench_rows WHERE key LIKE %s AND seq = 0", like
                ),
                lambda: count(
                    pool,
                    "SELECT count(*) AS n FROM bench_rows WHERE key LIKE %s AND seq = %s",
                    like,
                    BASELINE_ACTIVITIES - 1,
                ),
                "baseline",
                (metrics_url, base_queue),
            )
            console.mark("baseline: month-close")

        # ── timer-only: the same timer, nothing after it ──
        timer_queue = f"bench-timer-{tag}"
        async with Worker(
            workers_client,
            task_queue=timer_queue,
            workflows=[TimerOnlyWorkflow],
            interceptors=[CountReturns()],
            max_concurrent_workflow_tasks=args.workflow_tasks,
            max_cached_workflows=args.cache,
            graceful_shutdown_timeout=timedelta(seconds=5),
        ):
            first = first_instant_of_next_month(await env.get_current_time())
            keys = [f"timer-{tag}-{i:05d}" for i in range(n)]

            async def start_timer(key: str) -> None:
                await env.client.start_workflow(
                    TimerOnlyWorkflow.run, first, id=key, task_queue=timer_queue
                )

            await bounded(start_timer, keys, args.seed_concurrency)
            await bounded(
                lambda key: timer_started(env.client.get_workflow_handle(key)),
                keys,
                args.seed_concurrency,
            )
            console.mark("timer-only: start")

            async def returned() -> int:
                return len(TIMER_ONLY_DONE)

            timer = await watch(
                env, first, n, returned, returned, "timer-only", (metrics_url, timer_queue)
            )
            console.mark("timer-only: month-close")
    finally:
        await env.shutdown()
        await pool.close()
        await partner.aclose()
        if server is not None:
            server.destroy()  # the cluster too (as root it lives outside the folder)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        console.mark("teardown")

    report(args, load_at_start, ours, base, timer, per_close, invoices, tally, console)
    return 0 if invoices.ok else 1


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def timer_started(handle: Any) -> None:
    while True:
        async for event in handle.fetch_history_events():
            if event.HasField("timer_started_event_attributes"):
                return
        await asyncio.sleep(0.05)


async def waiting_again(handle: Any) -> None:
    """Until the latest run's last event is a started timer after a fired one: the month-close's
    workflow task is complete and the workflow sleeps again."""
    while True:
        events = (await handle.fetch_history()).events
        fired = any(e.HasField("timer_fired_event_attributes") for e in events)
        if fired and events[-1].HasField("timer_started_event_attributes"):
            return
        await asyncio.sleep(0.05)


async def month_close_activities(service: Any, sub_id: str) -> str:
    """What one SubscriptionWorkflow month-close ran after its timer fired: activities, local
    activities (marker events) and events, up to the run's next timer."""
    history = await service.handle(sub_id).fetch_history()
    activities = markers = events = 0
    fired = False
    for event in history.events:
        if event.HasField("timer_fired_event_attributes"):
            fired, activities, markers, events = True, 0, 0, 0
        if not fired:
            continue
        events += 1
        activities += event.HasField("activity_task_scheduled_event_attributes")
        markers += event.HasField("marker_recorded_event_attributes")
    return f"{activities} activities + {markers} local activities, {events} events"


def report(
    args: argparse.Namespace,
    load_at_start: tuple[float, float, float],
    ours: Phase,
    base: Phase,
    timer: Phase,
    per_close: str,
    invoices: InvoiceCheck,
    tally: LogTally,
    console: ConsoleTally,
) -> None:
    cpus = os.cpu_count()
    print()
    print(f"month close, N={ours.n}; one month-close of ours: {per_close}")
    if args.spread_minutes:
        print(f"month-end spread: {args.spread_minutes} min (ours only)")
    start, end = (", ".join(f"{x:.2f}" for x in load) for load in (load_at_start, os.getloadavg()))
    print(f"machine: {platform.platform()}, {cpus} cores, Python {platform.python_version()}")
    print(f"load average (1, 5, 15 min): {start} at the start, {end} at the end")
    print(
        f"settings: max_concurrent={args.max_concurrent} (activities),"
        f" workflow task slots={args.workflow_tasks},"
        f" max_cached_workflows={args.cache}, PostgreSQL pool={args.pool}"
    )
    spread = ", ".join(f"{k} invoice(s): {v}" for k, v in sorted(invoices.per_subscription.items()))
    verdict = "yes" if invoices.ok else "NO: the ratios below are not comparable"
    print(
        f"each subscription issued exactly one invoice, for {invoices.period}: {verdict}"
        f" ({spread}"
        + (f"; other periods {invoices.other_periods}" if invoices.other_periods else "")
        + ")"
    )
    for phase in (ours, base, timer):
        print(
            f"  {phase.name:10s} first {phase.first_row_s:6.2f} s | all {phase.n}"
            f" {phase.all_rows_s:6.2f} s = {phase.rate:7.1f}/s | month-close done"
            f" {phase.done_s:6.2f} s = {phase.done_rate:7.1f}/s"
        )
    for phase in (ours, base, timer):
        ranked = sorted(phase.cpu.items(), key=lambda item: -item[1])
        spent = ", ".join(f"{kind} {sec:.1f}" for kind, sec in ranked if sec > 0)
        busy = sum(phase.cpu.values()) / phase.done_s
        print(f"  {phase.name:10s} CPU seconds: {spent} (= {busy:.2f} cores busy on average)")
        if phase.note:
            print(f"  {phase.name:10s} note: {phase.note}")
    for phase in (ours, base, timer):
        print(f"  {phase.name:10s} month-close: {phase.tasks} (SDK core histogram)")
    print(
        f"ratio ours/timer-only: {ours.rate / timer.rate:.2f} (invoices/s),"
        f" {ours.done_rate / timer.done_rate:.2f} (month-closes/s)"
    )
    print(
        f"ratio ours/baseline:   {ours.rate / base.rate:.2f} (invoices/s),"
        f" {ours.done_rate / base.done_rate:.2f} (month-closes/s)"
    )
    print("SDK core warnings on the console (stdout and stderr), by phase:")
    totals: Counter[str] = Counter()
    for name, counted in console.segments():
        totals.update(counted)
        shown = ", ".join(f"{k} {counted[k]}" for k in (*ConsoleTally.CODES, "warn/error lines"))
        print(f"  {name:24s} {shown}")
    for code in ConsoleTally.CODES:
        for sample in console.samples(code):
            print(f"  e.g. {sample}")
    print(f"Python-logged deadlock detector (TMPRL1101): {tally.deadlocks}")
    if tally.kinds:
        print(f"Python-logged worker warnings/errors: {dict(tally.kinds)}")
        for sample in tally.samples:
            print(f"  e.g. {sample}")
    else:
        print("Python-logged worker warnings/errors: none")
    clean = not tally.kinds and not any(totals[k] for k in ConsoleTally.CODES)
    print(f"warnings overall: {'none' if clean else 'SEE ABOVE'}")
    print(f"(run at {datetime.now(UTC).astimezone(SEOUL).isoformat(timespec='seconds')})")


def main() -> int:
    from starter.temporal import WORKFLOW_TASK_SLOTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="subscriptions (default 1000)")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=200,
        help="build_worker's max_concurrent: activities (default 200)",
    )
    parser.add_argument(
        "--workflow-tasks",
        type=int,
        default=WORKFLOW_TASK_SLOTS,
        help=f"workflow task slots of every worker (default {WORKFLOW_TASK_SLOTS}, build_worker's)",
    )
    parser.add_argument("--pool", type=int, default=40, help="PostgreSQL pool size (default 40)")
    parser.add_argument(
        "--cache",
        type=int,
        default=None,
        help="max_cached_workflows of both workers (default: N + 500, at least 1000)",
    )
    parser.add_argument(
        "--seed-concurrency", type=int, default=50, help="applications in flight while seeding"
    )
    parser.add_argument(
        "--spread-minutes",
        type=int,
        default=0,
        help="ours only: spread invoice issuing over this many minutes after 00:00 (default 0)",
    )
    args = parser.parse_args()
    if args.cache is None:
        args.cache = max(1000, args.n + 500)
    logging.basicConfig(level=logging.ERROR)
    console = ConsoleTally()
    try:
        with console.captured():
            return process.run(run(args, console))  # worker.py's event loop (uvloop)
    except BaseException:
        for line in console.tail():  # what the run wrote on the console, now that it is back
            print(line, file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())
