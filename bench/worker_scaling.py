"""Worker scaling (issue 12): the same work with 1, 2 and 4 worker processes on one task queue.

    python bench/worker_scaling.py [--n 400] [--workers 1,2,4] [--concurrency 50]

Starts embedded PostgreSQL (or uses DATABASE_URL) and the Temporal dev server (the pinned
`temporal` binary, history in memory, free ports); for each worker count k it starts k real
`python worker.py` processes on a fresh task queue and, through SubscriptionService as the API
would call it, with `--concurrency` requests in flight:

1. applies for N `cartax` subscriptions (application, provisioning, activation: applications/s);
2. a burst of admin updates: every one of the N grants usage permission to a member, then
   revokes it (2N workflow updates: updates/s).

Then it stops those k workers and goes on to the next k. Prints throughput per k and the ratio
to 1 worker, with the CPU seconds each process family used. Everything started is stopped and
removed at the end. (Month-close itself needs the time-skipping server, which one process
drives; a burst of updates is the same shape of work — workflow tasks and activities — on the
server the workers really run on.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Processes,
    Seeded,
    dev_server,
    loadavg,
    machine_line,
    postgres,
    sandbox_partner,
    seed,
    start_workers,
    tag,
    worker_env,
)
from month_close import bounded, cpu_seconds

MEMBER = "bench-member"
# cpu_seconds() names this process "worker" (month_close runs its worker in-process); here it is
# the client, and the worker.py children are "python".
FAMILY = {"worker": "bench (client)", "python": "worker.py processes"}


@dataclass
class Step:
    seconds: float
    cpu: dict[str, float]


@dataclass
class Level:
    workers: int
    apply: Step
    burst: Step


async def timed_step(work: Awaitable[object]) -> Step:
    before = cpu_seconds()
    start = time.perf_counter()
    await work
    seconds = time.perf_counter() - start
    after = cpu_seconds()
    return Step(seconds, {k: v - before.get(k, 0.0) for k, v in after.items()})


async def run(args: argparse.Namespace) -> int:
    from domain.catalog import default_catalog
    from services.directory import DirectoryService
    from services.root import build_services
    from services.subscriptions import SubscriptionService
    from starter.temporal import connect

    load_start = loadavg()
    print(machine_line(), flush=True)
    counts = [int(k) for k in args.workers.split(",")]
    run_tag = tag()
    procs = Processes()
    levels: list[Level] = []
    try:
        async with (
            postgres(pool_size=40) as (url, pool),
            sandbox_partner(url),
            dev_server(procs) as address,
        ):
            client = await connect(address)
            for k in counts:
                queue = f"bench-scale-{run_tag}-{k}"
                names = start_workers(
                    procs, k, worker_env(url, address, queue, args.n + 500), tag=f"-{k}"
                )
                # Throughput, not latency: a call may wait longer than the API's 10 s before
                # it counts as failed (a 503 would end the run on a loaded machine).
                services = build_services(
                    pool, client, default_catalog(), queue, temporal_deadline=args.deadline
                )
                service, directory = services.subscriptions, services.directory
                seeded: list[Seeded] = []

                async def apply(
                    service: SubscriptionService = service,
                    seeded: list[Seeded] = seeded,
                    k: int = k,
                ) -> None:
                    seeded.extend(
                        await seed(
                            service,
                            pool,
                            f"scale-{run_tag}-{k}",
                            args.n,
                            "cartax",
                            concurrency=args.concurrency,
                        )
                    )

                # The workers start cold (imports, connections, first sandbox): a few
                # applications first, untimed, so the timing starts with them polling.
                await seed(service, pool, f"scale-{run_tag}-{k}-warm", 5 * k, "cartax")
                applied = await timed_step(apply())
                procs.check_alive()

                async def member(wp: str, directory: DirectoryService = directory) -> None:
                    await directory.put_member(
                        wp,
                        MEMBER,
                        login_id=f"{MEMBER}@bench",
                        name="구성원",
                        role="member",
                    )

                by_id = {s.workplace_id: s for s in seeded}
                await bounded(member, by_id, args.concurrency)

                async def grant_then_revoke(
                    wp_id: str,
                    service: SubscriptionService = service,
                    by_id: dict[str, Seeded] = by_id,
                ) -> None:
                    wp = by_id[wp_id]
                    for grant in (True, False):
                        await service.set_usage(
                            workplace_id=wp.workplace_id,
                            service_id="cartax",
                            actor_id=wp.rep,
                            member_id=MEMBER,
                            grant=grant,
                        )

                burst = await timed_step(bounded(grant_then_revoke, by_id, args.concurrency))
                procs.check_alive()
                procs.stop(names)
                levels.append(Level(k, applied, burst))
                print(
                    f"{k} worker(s): {args.n / applied.seconds:.1f} applications/s,"
                    f" {2 * args.n / burst.seconds:.1f} updates/s",
                    flush=True,
                )
    finally:
        procs.close()
    report(args, levels, load_start)
    return 0


def report(args: argparse.Namespace, levels: list[Level], load_start: str) -> None:
    print()
    print(
        f"worker scaling, N={args.n} cartax subscriptions per worker count,"
        f" {args.concurrency} requests in flight, Temporal dev server"
    )
    print(f"load average (1, 5, 15 min): {load_start} at the start, {loadavg()} at the end")
    base = levels[0]
    for level in levels:
        apps = args.n / level.apply.seconds
        updates = 2 * args.n / level.burst.seconds
        print(
            f"  {level.workers} worker(s): applications {apps:6.1f}/s"
            f" (×{apps / (args.n / base.apply.seconds):.2f} vs {base.workers})"
            f" | updates {updates:6.1f}/s (×{updates / (2 * args.n / base.burst.seconds):.2f})"
        )
        for name, step in (("applications", level.apply), ("updates", level.burst)):
            ranked = sorted(step.cpu.items(), key=lambda item: -item[1])
            spent = ", ".join(
                f"{FAMILY.get(kind, kind)} {sec:.1f}" for kind, sec in ranked if sec > 0.05
            )
            busy = sum(step.cpu.values()) / step.seconds
            print(f"      {name:12s} CPU seconds: {spent} (= {busy:.2f} cores busy)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="subscriptions per worker count")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument(
        "--concurrency", type=int, default=50, help="requests in flight (default 50)"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=60.0,
        help="seconds one Temporal call may take before it fails the run (default 60)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
