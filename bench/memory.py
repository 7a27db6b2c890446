"""Worker memory per cached subscription (issues 12, 22): N SubscriptionWorkflows vs N no-logic
ones.

    python bench/memory.py [--n 1000] [--sample 50] [--frames 20] [--concurrency 10]

Two measurements, each printing ours, no-logic and the ratio:

A. RSS of the worker processes alone (issue 22's figure): a real `python worker.py` and a
   no-logic worker process (`bench/admin_latency.py --serve-noop`: bench/floors.py's workflow,
   the same runner and task slots), each in its own process, both on uvloop with their start-up
   heap frozen, no tracemalloc, on the Temporal dev server; this process only drives them (it
   applies for the subscriptions and starts the no-logic workflows), so its own memory is not
   counted. RSS is read from /proc after a warm-up and again with N more of each cached.

Ours' worker calls partners over HTTP: the sandbox partner server runs as a process of its own
(not counted), every service wired to it. A subscription counts once its current run waits on
its invoice timer.

B. Traced memory (tracemalloc), and where it was allocated: each kind runs in a fresh child
   process of this script (no-logic first), with its worker in that process, on Temporal's
   time-skipping server and embedded PostgreSQL (or DATABASE_URL), both removed at the end; so
   neither kind's RSS reuses memory the other freed (that process's RSS includes the client side
   that drives the worker, so A is the RSS figure to compare):

1. OURS: N `cartax` subscriptions applied for through SubscriptionService, each an active, quiet
   SubscriptionWorkflow waiting on its invoice timer, all in the worker's cache.
2. NO-LOGIC: N workflows (bench/floors.py: issue 22's floor, two activities and then one timer,
   nothing decided; until 2026-12-07 a condition-only workflow), each counted once it waits on
   its timer, in the cache of a worker with the SDK's stock sandbox runner (a fixed floor,
   whichever runner ours uses).

Before each kind, one workflow of that kind runs first (imports, first sandbox). Then N more are
cached with tracemalloc on (one frame per allocation) and, after a full `gc.collect()`, the
traced memory that grew, over N, is the cost per cached workflow. RSS is read at the same two
points and reported without the growth of tracemalloc's own bookkeeping (which RSS includes).
Deep tracebacks slow the worker several times over, so the breakdown comes from a further
sample (`--sample`, default 50) traced with `--frames` frames, grouped by the first meaningful
frame of each allocation's traceback:

- `sandbox import: FILE` — a module the sandbox executed again for this workflow (its globals,
  functions, classes): the per-workflow module copies;
- `python-statemachine`, `pydantic`, `temporalio (workflow instance)`, `temporalio (sandbox)`,
  `temporalio (other)` — allocations made inside those libraries;
- a project file (`workflows/subscription.py`, `domain/…`) — allocations made by our code;
- anything else by its file.

The ratio printed is ours / no-logic per cached workflow; the issue's goal is ≤ 100 KiB per
cached subscription.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

if not workflow.unsafe.in_sandbox():
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import loadavg, machine_line, postgres, sandbox_partner, seed, tag, time_skipping
from floors import NoLogicWorkflow, floor_step
from month_close import bounded, rss_mb

ROOT = Path(__file__).resolve().parents[1]
KIB = 1024


# ── the no-logic floor ───────────────────────────────────────────────────────────────────────


# ── measuring ────────────────────────────────────────────────────────────────────────────────


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost",
        )
    ]  # fmt: skip


def malloc_bytes() -> tuple[int, int]:
    """(in use, free but held) by glibc's malloc in this process: Python's larger objects, and
    everything native code allocates — the SDK's Rust core, pydantic-core, libpq — which
    tracemalloc does not see. (0, 0) where glibc's mallinfo2 is not available."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return 0, 0
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd, info.fordblks


@dataclass
class Grown:
    name: str
    n: int
    traced: int  # bytes tracemalloc saw grow
    rss: float  # bytes RSS grew, tracemalloc's own growth taken out
    rss_raw: float
    seconds: float
    malloc_used: int = 0  # glibc malloc in use grew (tracemalloc's own growth taken out)
    malloc_free: int = 0  # glibc malloc free-but-held grew (fragmentation)
    tracked: int = 0  # objects the cyclic collector tracks grew (a full collection visits each)
    where: Counter[str] = field(default_factory=Counter)
    files: Counter[str] = field(default_factory=Counter)

    @property
    def per(self) -> float:
        return self.traced / self.n

    @property
    def rss_per(self) -> float:
        return self.rss / self.n


def _short(filename: str) -> str:
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        parts = path.parts
        if "site-packages" in parts:
            return "/".join(parts[parts.index("site-packages") + 1 :])
        return path.name


def owner(trace: tracemalloc.Traceback) -> str:
    """Who an allocation belongs to (see the module docstring)."""
    frames = list(reversed(trace))  # a Traceback runs oldest first: innermost first here
    for i, frame in enumerate(frames):
        if "workflow_sandbox/_importer.py" in frame.filename:
            # the sandbox is importing: the module it is executing is the nearest frame above
            # that is not import machinery
            for inner in reversed(frames[:i]):
                if not inner.filename.startswith("<frozen") and "workflow_sandbox" not in (
                    inner.filename
                ):
                    return f"sandbox import: {_short(inner.filename)}"
            return "sandbox import: (import machinery)"
    for frame in frames:
        name = frame.filename
        if name.startswith("<frozen"):
            continue
        short = _short(name)
        if short.startswith("statemachine/"):
            return "python-statemachine"
        if short.startswith(("pydantic/", "pydantic_core/")):
            return "pydantic"
        if short.startswith("temporalio/worker/_workflow_instance"):
            return "temporalio (workflow instance)"
        if short.startswith("temporalio/worker/workflow_sandbox"):
            return "temporalio (sandbox)"
        if short.startswith("temporalio/"):
            return "temporalio (other)"
        if not Path(name).is_absolute() or str(Path(name).resolve()).startswith(str(ROOT)):
            if ".venv" not in name:
                return short
    return _short(frames[0].filename) if frames else "?"


async def waiting_on_timer(client: Any, seeded: list[Any], in_flight: int) -> None:
    """Wait until each subscription's run is cached and waiting: its history ends with the
    invoice timer's start. An application is answered once the read model says `active`, before
    the activation's workflow task has ended."""
    from temporalio.api.enums.v1 import EventType

    from workflows.subscription import workflow_id

    async def one(sub: Any) -> None:
        handle = client.get_workflow_handle(workflow_id(sub.subscription_id))
        for _ in range(3000):
            events = (await handle.fetch_history()).events
            if events and events[-1].event_type == EventType.EVENT_TYPE_TIMER_STARTED:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{handle.id} is not waiting on its timer")

    await bounded(one, seeded, in_flight)


async def floor_waiting(client: Any, key: str) -> None:
    """Wait until the no-logic workflow `key` has run its two activities and waits on its timer:
    then it sits in its worker's cache as it will stay."""
    handle = client.get_workflow_handle(key)
    for _ in range(3000):
        if await handle.query(NoLogicWorkflow.ready):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{key} is not waiting on its timer")


Fill = Callable[[int, int], Awaitable[None]]  # (workflows, in flight)


async def grow(name: str, n: int, frames: int, fill: Fill, in_flight: int) -> Grown:
    """What ``fill(n, in_flight)`` (n more workflows in the worker's cache) added to this
    process, traced with ``frames`` frames per allocation."""
    gc.collect()
    tracked0 = len(gc.get_objects())
    rss0 = rss_mb() * 1024 * 1024
    used0, free0 = malloc_bytes()
    tracemalloc.start(frames)
    tm0 = tracemalloc.get_tracemalloc_memory()
    before = tracemalloc.take_snapshot()
    start = time.perf_counter()
    await fill(n, in_flight)
    seconds = time.perf_counter() - start
    gc.collect()
    tracked = len(gc.get_objects()) - tracked0
    after = tracemalloc.take_snapshot()
    rss_raw = (rss_mb() * 1024 * 1024) - rss0
    tm_growth = tracemalloc.get_tracemalloc_memory() - tm0
    used1, free1 = malloc_bytes()
    tracemalloc.stop()
    grown = Grown(
        name,
        n,
        0,
        rss_raw - tm_growth,
        rss_raw,
        seconds,
        used1 - used0 - tm_growth,
        free1 - free0,
        tracked,
    )
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    for stat in after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback"):
        grown.traced += stat.size_diff
        grown.where[owner(stat.traceback)] += stat.size_diff
        grown.files[_short(stat.traceback[-1].filename)] += stat.size_diff
    print(
        f"  {name}: {n} more cached in {seconds:.0f} s (tracemalloc, {frames} frame(s)):"
        f" {grown.per / KIB:.1f} KiB traced, {grown.rss_per / KIB:.1f} KiB RSS per workflow",
        flush=True,
    )
    return grown


@dataclass
class Kind:
    """One kind of workflow measured: the totals over N (1 frame per allocation: tracemalloc
    with deep tracebacks slows the worker several times over) and the breakdown over a sample
    (deep tracebacks, to tell which module or library allocated)."""

    total: Grown
    sample: Grown


async def measure(name: str, args: argparse.Namespace, fill: Fill) -> Kind:
    # Imports, the first sandbox, the database pool's connections: outside the measurement.
    await fill(args.warmup, args.concurrency)
    total = await grow(name, args.n, 1, fill, args.concurrency)
    # Deep tracebacks make every workflow task several times slower: two at a time, so none
    # runs into its task timeout on a loaded machine (one run with 10 in flight never finished).
    sample = await grow(name, args.sample, args.frames, fill, 2)
    return Kind(total, sample)


async def measure_kind(args: argparse.Namespace) -> Kind:
    """One kind, in a process of its own (so neither kind reuses memory the other freed)."""
    from temporalio.worker import Worker

    from domain.catalog import default_catalog
    from services.root import build_services
    from starter.temporal import build_worker

    run_tag = tag()
    cache = args.n + args.sample + args.warmup + 100
    async with postgres() as (url, pool), sandbox_partner(url), time_skipping() as env:
        if args.kind == "ours":
            # active, quiet subscriptions waiting on their invoice timer
            queue = f"bench-mem-{run_tag}"
            service = build_services(
                pool, env.client, default_catalog(), queue, clock=env.get_current_time
            ).subscriptions
            batches = iter(range(1_000_000))

            async def subscribe(count: int, in_flight: int) -> None:
                seeded = await seed(
                    service,
                    pool,
                    f"mem-{run_tag}-{next(batches)}",
                    count,
                    "cartax",
                    concurrency=in_flight,
                    wait_seconds=600,
                )
                await waiting_on_timer(env.client, seeded, in_flight)

            async with build_worker(env.client, pool, queue, max_cached_workflows=cache):
                return await measure("ours", args, subscribe)

        # no-logic: the SDK's stock sandbox, nothing else (a fixed floor, whatever runner
        # starter/temporal.py chooses for ours)
        nl_queue = f"bench-mem-nl-{run_tag}"
        started = 0

        async def start_no_logic(count: int, in_flight: int) -> None:
            nonlocal started
            keys = [f"nl-{run_tag}-{started + i:05d}" for i in range(count)]
            started += count

            async def start(key: str) -> None:
                await env.client.start_workflow(NoLogicWorkflow.run, id=key, task_queue=nl_queue)

            await bounded(start, keys, in_flight)
            await bounded(lambda key: floor_waiting(env.client, key), keys, in_flight)

        async with Worker(
            env.client,
            task_queue=nl_queue,
            workflows=[NoLogicWorkflow],
            activities=[floor_step],
            workflow_runner=SandboxedWorkflowRunner(),
            max_cached_workflows=cache,
            graceful_shutdown_timeout=timedelta(seconds=5),
        ):
            return await measure("no-logic", args, start_no_logic)


async def worker_processes(args: argparse.Namespace) -> dict[str, float]:
    """Measurement A: RSS growth per cached workflow of a real worker.py and of a no-logic worker
    process, each in its own process (bytes per workflow, by kind)."""
    from common import Processes, dev_server, start_workers, worker_env

    from domain.catalog import default_catalog
    from services.subscriptions import SubscriptionService
    from starter.temporal import connect

    run_tag = tag()
    queue, nl_queue = f"bench-memw-{run_tag}", f"bench-memw-nl-{run_tag}"
    cache = args.n + args.warmup + 100
    procs = Processes()
    try:
        async with postgres() as (url, pool), sandbox_partner(url), dev_server(procs) as address:
            [ours] = start_workers(procs, 1, worker_env(url, address, queue, cache))
            serve = [str(Path(__file__).with_name("admin_latency.py")), "--serve-noop"]
            argv = [sys.executable, *serve, address, nl_queue, str(cache)]
            procs.start("noop-worker", argv, dict(os.environ))
            client = await connect(address)
            service = SubscriptionService(pool, client, default_catalog(), queue)
            batches = iter(range(1_000_000))

            async def subscribe(count: int) -> None:
                prefix = f"memw-{run_tag}-{next(batches)}"
                seeded = await seed(
                    service, pool, prefix, count, "cartax", concurrency=args.concurrency
                )
                await waiting_on_timer(client, seeded, args.concurrency)

            async def no_logic(count: int) -> None:
                keys = [f"nlw-{run_tag}-{next(batches)}-{i:05d}" for i in range(count)]
                await bounded(
                    lambda key: client.start_workflow(
                        NoLogicWorkflow.run, id=key, task_queue=nl_queue
                    ),
                    keys,
                    args.concurrency,
                )
                await bounded(lambda key: floor_waiting(client, key), keys, args.concurrency)

            def rss() -> dict[str, float]:
                found: dict[str, float] = {}
                for name, proc in procs.children.procs:
                    if name in (ours, "noop-worker"):
                        status = Path(f"/proc/{proc.pid}/status").read_text()
                        line = next(x for x in status.splitlines() if x.startswith("VmRSS"))
                        found["ours" if name == ours else "no-logic"] = int(line.split()[1]) * KIB
                return found

            await subscribe(args.warmup)
            await no_logic(args.warmup)
            procs.check_alive()
            before = rss()
            start = time.perf_counter()
            await subscribe(args.n)
            await no_logic(args.n)
            procs.check_alive()
            after = rss()
            print(
                f"  worker processes: {args.n} more of each cached in"
                f" {time.perf_counter() - start:.0f} s",
                flush=True,
            )
            return {kind: (after[kind] - before[kind]) / args.n for kind in after}
    finally:
        procs.close()


RESULT = "RESULT "


def child(args: argparse.Namespace) -> int:
    kind = asyncio.run(measure_kind(args))

    def plain(g: Grown) -> dict[str, Any]:  # asdict() would rebuild the Counters wrongly
        fields = {f.name: getattr(g, f.name) for f in dataclasses.fields(g)}
        return {**fields, "where": dict(g.where), "files": dict(g.files)}

    print(RESULT + json.dumps({"total": plain(kind.total), "sample": plain(kind.sample)}))
    return 0


def from_json(raw: dict[str, Any]) -> Kind:
    def grown(d: dict[str, Any]) -> Grown:
        d = {**d, "where": Counter(d["where"]), "files": Counter(d["files"])}
        return Grown(**d)

    return Kind(grown(raw["total"]), grown(raw["sample"]))


def run(args: argparse.Namespace) -> int:
    """Each kind in a child process of this script, no-logic first; then the report."""
    load_start = loadavg()
    print(machine_line(), flush=True)
    kinds: dict[str, Kind] = {}
    for kind in () if args.only_processes else ("no-logic", "ours"):
        argv = [sys.executable, __file__, *sys.argv[1:], "--kind", kind]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
        lines = proc.stdout.splitlines()
        for line in lines:
            if not line.startswith(RESULT):
                print(line, flush=True)
        found = [line for line in lines if line.startswith(RESULT)]
        if proc.returncode != 0 or not found:
            print(f"the {kind} process failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        kinds[kind] = from_json(json.loads(found[-1].removeprefix(RESULT)))
    load_a = loadavg()
    processes = asyncio.run(worker_processes(args))
    if kinds:
        report(args, kinds["ours"], kinds["no-logic"], load_start)
    o, f = processes["ours"], processes["no-logic"]
    print(
        f"A. worker processes' RSS per cached workflow, N={args.n} (load {load_a} at the start"
        f" of A, {loadavg()} at its end): ours (worker.py) {o / KIB:.1f} KiB, no-logic"
        f" {f / KIB:.1f} KiB; ratio ours/no-logic {o / f:.2f} (issue 22's goal: ≤ 1.3)"
    )
    return 0


def report(args: argparse.Namespace, ours: Kind, floor: Kind, load_start: str) -> None:
    from starter.temporal import workflow_runner

    print()
    print(f"B. worker memory per cached workflow, traced, N={args.n} (worker and driver in one")
    print("   process)")
    doc = " ".join((workflow_runner.__doc__ or "").split(".")[0].split())
    print(f"  ours' runner (starter/temporal.py workflow_runner): {doc}")
    print("  no-logic's runner: the SDK's stock SandboxedWorkflowRunner()")
    print(f"load average (1, 5, 15 min): {load_start} at the start, {loadavg()} at the end")
    for kind in (ours, floor):
        g = kind.total
        print(
            f"  {g.name:9s} traced {g.per / KIB:7.1f} KiB/workflow"
            f" | RSS {g.rss_per / KIB:7.1f} KiB/workflow (raw {g.rss_raw / g.n / KIB:.1f},"
            f" less tracemalloc's own growth) | sample of {kind.sample.n}:"
            f" {kind.sample.per / KIB:.1f} KiB traced"
        )
        print(f"  {'':9s} objects the cyclic collector tracks: +{g.tracked / g.n:.0f} per workflow")
        print(
            f"  {'':9s} glibc malloc: in use +{g.malloc_used / g.n / KIB:.1f} KiB/workflow,"
            f" free but held +{g.malloc_free / g.n / KIB:.1f} KiB/workflow"
        )
    o, f = ours.total, floor.total
    print(
        f"ratio ours/no-logic: {o.per / f.per:.2f} (traced), {o.rss_per / f.rss_per:.2f} (RSS);"
        f" ours over no-logic: {(o.per - f.per) / KIB:.1f} KiB traced per workflow"
    )
    met = "met" if o.per <= 100 * KIB else "NOT met"
    print(f"goal ≤ 100 KiB per cached subscription (traced): {met}")
    for kind in (ours, floor):
        g = kind.sample
        print(f"where {g.name}'s growth was allocated, sample of {g.n} (KiB per workflow):")
        for where, size in g.where.most_common(args.top):
            print(f"  {size / g.n / KIB:7.1f}  {where}")
        rest = g.traced - sum(size for _, size in g.where.most_common(args.top))
        print(f"  {rest / g.n / KIB:7.1f}  (the rest)")
    g = ours.sample
    print(f"{g.name}: by allocating file, innermost frame (KiB per workflow):")
    for name, size in g.files.most_common(args.top):
        print(f"  {size / g.n / KIB:7.1f}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="cached workflows of each kind")
    parser.add_argument(
        "--frames",
        type=int,
        default=20,
        help="traceback depth for the sample's breakdown (default 20)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="applications (starts) in flight while filling the cache (default 10)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=50,
        help="workflows of each kind traced with deep tracebacks for the breakdown (default 50)",
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="workflows of each kind run before measuring"
    )
    parser.add_argument("--top", type=int, default=12, help="lines of each breakdown")
    parser.add_argument(
        "--only-processes", action="store_true", help="measurement A only (no tracemalloc)"
    )
    parser.add_argument("--kind", choices=("ours", "no-logic"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    return child(args) if args.kind else run(args)


if __name__ == "__main__":
    sys.exit(main())
