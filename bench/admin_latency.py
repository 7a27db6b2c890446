"""Admin update latency through the API, against a no-op workflow update (issue 12).

    python bench/admin_latency.py [--n 1000] [--ops 200] [--levels 1,10,50] [--workers 1]

Starts embedded PostgreSQL (or uses DATABASE_URL) and the Temporal dev server (the pinned
`temporal` binary, history in memory, free ports), then real `python worker.py` processes for
SubscriptionWorkflow and one process running the no-op worker (bench/floors.py, the same
workflow runner and concurrency settings). The API is the real FastAPI app (api/app.py) in this
process, driven through httpx's ASGI transport with bearer tokens, like an HTTP client without
the socket. Everything started is stopped and removed at the end.

1. Seeds N live `cartax` subscriptions (manual usage permissions) and a few `ubob` ones (the
   service with a plan choice) through SubscriptionService.
2. At each concurrency c: c clients, each on its own subscription (no two on one workflow),
   time `--ops` requests of each kind:
   - grant:    PUT    /v1/workplaces/{wp}/services/cartax/usage-permissions/{member}
   - revoke:   DELETE the same
   - schedule: POST   /v1/workplaces/{wp}/services/ubob/subscription/plan-change (next_window)
   - withdraw: DELETE the same
   - no-op:    POST   /bench/noop/{workflow}, a route added to the same app that sends a
     workflow update returning at once (`NoLogicWorkflow.noop`) through the same Temporal client:
     the floor — the HTTP app, the client, the server and a worker round trip, and nothing else.
3. Prints p50/p95/p99 of each, and the ratios to the no-op at the same c. The issue's goals:
   p50(grant) ≤ 3× p50(no-op) at c=1; p99 ≤ 150 ms at c=10 with 1,000 live.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Processes,
    Seeded,
    dev_server,
    loadavg,
    machine_line,
    percentile,
    postgres,
    sandbox_partner,
    seed,
    start_workers,
    tag,
    worker_env,
)
from floors import NoLogicWorkflow, floor_step
from month_close import bounded, descendants_cpu

from starter import process

UBOB_PLANS = ("ubob-basic", "ubob-standard")
MEMBER = "bench-member"


# ── the no-op worker process ─────────────────────────────────────────────────────────────────


async def serve_noop(address: str, queue: str, cache: int) -> int:
    """A worker process for the floor: NoLogicWorkflow, built like build_worker's."""
    from temporalio.worker import Worker

    from starter.temporal import WORKFLOW_TASK_SLOTS, connect, workflow_runner

    client = await connect(address)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[NoLogicWorkflow],
        activities=[floor_step],
        workflow_runner=workflow_runner(),
        max_concurrent_workflow_tasks=WORKFLOW_TASK_SLOTS,  # as worker.py's
        max_cached_workflows=cache,
        graceful_shutdown_timeout=timedelta(seconds=5),
    )
    process.freeze_startup_heap()  # as worker.py does
    async with worker:
        await stop.wait()
    return 0


# ── driving the API ──────────────────────────────────────────────────────────────────────────


Call = Callable[[int], Awaitable[Any]]


async def timed(calls: list[Call], ops: int) -> list[float]:
    """``ops`` requests spread over the clients (one coroutine each, calls in sequence); the
    latency of each, in seconds. A request that does not answer 2xx stops the bench."""
    latencies: list[float] = []
    per_client = max(1, ops // len(calls))

    async def client(call: Call) -> None:
        for seq in range(per_client):
            start = time.perf_counter()
            await call(seq)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(client(call) for call in calls))
    return latencies


def workers_rss_mb(procs: Processes) -> float:
    """The resident memory of the worker.py processes, together."""
    total = 0.0
    for name, proc in procs.children.procs:
        if name.startswith("worker"):
            status = Path(f"/proc/{proc.pid}/status").read_text()
            kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
            total += int(kib) / 1024
    return total


def cpu_seconds(procs: Processes) -> dict[str, float]:
    """CPU time (user + system) so far of each part of the stack: this process (the API and the
    bench's clients), the workers, the no-op worker, the Temporal server and PostgreSQL (the
    embedded server's processes; nothing when DATABASE_URL names another). Differences between
    two readings, per request, say where a request's CPU goes."""
    parts = {proc.pid: name for name, proc in procs.children.procs}
    parts[os.getpid()] = "api+bench"
    spent: dict[str, float] = {}
    for pid, (program, seconds) in descendants_cpu().items():
        part = parts.get(pid, program)
        part = "worker" if part.startswith("worker") else part
        spent[part] = spent.get(part, 0.0) + seconds
    return spent


def ok(response: Any, what: str) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


async def run(args: argparse.Namespace) -> int:
    import httpx

    from api.app import create_app
    from api.runtime import Runtime
    from domain.catalog import default_catalog
    from domain.tokens import mint_access_token
    from services.root import build_services
    from starter.temporal import connect

    load_start = loadavg()
    print(machine_line(), flush=True)
    levels = [int(c) for c in args.levels.split(",")]
    top = max(levels)
    run_tag = tag()
    queue, noop_queue = f"bench-lat-{run_tag}", f"bench-lat-noop-{run_tag}"
    procs = Processes()
    results: dict[tuple[int, str], list[float]] = {}
    cpu: dict[tuple[int, str], dict[str, float]] = {}

    async def measured(c: int, kinds: tuple[str, ...], batch: Awaitable[Any]) -> Any:
        """Run one batch of requests, charging the CPU it took to its kinds (shared evenly
        between the two kinds of an alternating batch)."""
        before = cpu_seconds(procs)
        out = await batch
        after = cpu_seconds(procs)
        for kind in kinds:
            spent = cpu.setdefault((c, kind), {})
            for name, seconds in after.items():
                share = (seconds - before.get(name, seconds)) / len(kinds)
                spent[name] = spent.get(name, 0.0) + share
        return out

    try:
        async with (
            postgres(pool_size=20) as (url, pool),
            sandbox_partner(url),
            dev_server(procs) as address,
        ):
            cache = args.n + top + 500
            start_workers(procs, args.workers, worker_env(url, address, queue, cache))
            procs.start(
                "noop-worker",
                [sys.executable, __file__, "--serve-noop", address, noop_queue, str(cache)],
                dict(os.environ),
            )
            client = await connect(address)
            catalog = default_catalog()
            secret = secrets.token_urlsafe(32)
            services = build_services(
                pool,
                client,
                catalog,
                queue,
                secret=secret,
                launch_url="http://127.0.0.1/sso/launch",
            )
            subscriptions = services.subscriptions
            runtime = Runtime(services)
            app = create_app(runtime, metrics_public=True)

            @app.post("/bench/noop/{wid}", include_in_schema=False)
            async def noop(wid: str, seq: int) -> dict[str, int]:
                handle = client.get_workflow_handle(wid)
                return {"seq": await handle.execute_update(NoLogicWorkflow.noop, seq)}

            # Start-up is done: as the API process does in its lifespan (api/app.py).
            process.freeze_startup_heap()

            # The workers' own memory, no tracemalloc: after a few subscriptions (imports, first
            # sandbox, pool), then with all N + top cached.
            await seed(subscriptions, pool, f"latw-{run_tag}", 5, "cartax")
            rss_warm = workers_rss_mb(procs)
            seed_start = time.perf_counter()
            cartax = await seed(subscriptions, pool, f"lat-{run_tag}", args.n, "cartax")
            ubob = await seed(
                subscriptions, pool, f"latu-{run_tag}", top, "ubob", plan_id=UBOB_PLANS[0]
            )
            seeded = time.perf_counter() - seed_start
            rss_full = workers_rss_mb(procs)
            print(
                f"seeded {args.n + top} live subscriptions in {seeded:.0f} s; worker.py RSS"
                f" {rss_warm:.0f} MB → {rss_full:.0f} MB ="
                f" {(rss_full - rss_warm) * 1024 / (args.n + top):.0f} KiB per cached subscription",
                flush=True,
            )
            procs.check_alive()
            for wp in cartax[:top]:
                await runtime.directory.put_member(
                    wp.workplace_id,
                    MEMBER,
                    login_id=f"{MEMBER}@bench",
                    name="구성원",
                    role="member",
                )
            noop_ids = [f"noop-{run_tag}-{i:03d}" for i in range(top)]
            await bounded(
                lambda wid: client.start_workflow(
                    NoLogicWorkflow.run, id=wid, task_queue=noop_queue
                ),
                noop_ids,
                top,
            )
            now = datetime.now(UTC)

            def token(wp: Seeded) -> dict[str, str]:
                bearer = mint_access_token(
                    secret, member_id=wp.rep, workplace_id=wp.workplace_id, now=now
                )
                return {"Authorization": f"Bearer {bearer}"}

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                # Every workflow answered once before timing (the no-ops' first task included).
                for wid in noop_ids:
                    ok(await http.post(f"/bench/noop/{wid}", params={"seq": 0}), "no-op warm-up")
                for c in levels:
                    targets = list(zip(cartax[:c], ubob[:c], noop_ids[:c], strict=True))

                    def usage(grant: bool, wp: Seeded) -> Call:
                        path = (
                            f"/v1/workplaces/{wp.workplace_id}/services/cartax"
                            f"/usage-permissions/{MEMBER}"
                        )

                        async def call(_seq: int) -> Any:
                            method = http.put if grant else http.delete
                            return ok(await method(path, headers=token(wp)), path)

                        return call

                    def plan(schedule: bool, wp: Seeded) -> Call:
                        path = (
                            f"/v1/workplaces/{wp.workplace_id}/services/ubob/subscription"
                            "/plan-change"
                        )

                        async def call(_seq: int) -> Any:
                            if schedule:
                                body = {"plan_id": UBOB_PLANS[1], "when": "next_window"}
                                return ok(await http.post(path, json=body, headers=token(wp)), path)
                            return ok(await http.delete(path, headers=token(wp)), path)

                        return call

                    def noop_call(wid: str) -> Call:
                        async def call(seq: int) -> Any:
                            url = f"/bench/noop/{wid}"
                            return ok(await http.post(url, params={"seq": seq}), url)

                        return call

                    # Four rounds of every kind, so drift in the machine's load touches all of
                    # them alike. Grants and revokes alternate pass by pass (one request per
                    # client), so every grant finds the member without a seat and every revoke
                    # with one; likewise every withdrawal has a scheduled change to withdraw.
                    rounds = 4
                    per_round = max(c, args.ops // rounds)
                    for _ in range(rounds):
                        floor = await measured(
                            c, ("no-op",), timed([noop_call(w) for _, _, w in targets], per_round)
                        )
                        results.setdefault((c, "no-op"), []).extend(floor)
                        for (first, second), calls in (
                            (
                                ("grant", "revoke"),
                                (
                                    [usage(True, t) for t, _, _ in targets],
                                    [usage(False, t) for t, _, _ in targets],
                                ),
                            ),
                            (
                                ("schedule", "withdraw"),
                                (
                                    [plan(True, u) for _, u, _ in targets],
                                    [plan(False, u) for _, u, _ in targets],
                                ),
                            ),
                        ):
                            a, b = await measured(c, (first, second), alternate(*calls, per_round))
                            results.setdefault((c, first), []).extend(a)
                            results.setdefault((c, second), []).extend(b)
                    print(f"c={c} done", flush=True)
            procs.check_alive()
    finally:
        procs.close()
    report(args, levels, results, cpu, load_start)
    return 0


async def alternate(
    first: list[Call], second: list[Call], ops: int
) -> tuple[list[float], list[float]]:
    """``ops`` of each, in passes of one request per client: a pass of ``first``, then one of
    ``second``."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(max(1, ops // len(first))):
        a.extend(await timed(first, len(first)))
        b.extend(await timed(second, len(second)))
    return a, b


def report(
    args: argparse.Namespace,
    levels: list[int],
    results: dict[tuple[int, str], list[float]],
    cpu: dict[tuple[int, str], dict[str, float]],
    load_start: str,
) -> None:
    print()
    print(
        f"admin update latency through the API, {args.n} live cartax subscriptions"
        f" (+{max(levels)} ubob), {args.workers} worker process(es), Temporal dev server"
    )
    print(f"load average (1, 5, 15 min): {load_start} at the start, {loadavg()} at the end")
    kinds = ("no-op", "grant", "revoke", "schedule", "withdraw")
    for c in levels:
        floor = results[(c, "no-op")]
        f50 = percentile(floor, 50)
        print(f"c={c}:")
        for kind in kinds:
            got = results[(c, kind)]
            p50, p95, p99 = (percentile(got, q) * 1000 for q in (50, 95, 99))
            ratio = "" if kind == "no-op" else f" | p50 ratio to no-op {p50 / (f50 * 1000):.2f}"
            print(
                f"  {kind:9s} n={len(got):4d}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"
                f"  p99 {p99:7.1f} ms{ratio}"
            )
        print("  CPU ms per request (grant and revoke, schedule and withdraw: each pair's mean):")
        parts = ("api+bench", "worker", "noop-worker", "temporal", "postgres")
        print("  " + " " * 9 + "".join(f"{p:>12s}" for p in parts) + f"{'total':>9s}")
        for kind in kinds:
            spent, n = cpu[(c, kind)], len(results[(c, kind)])
            row = [spent.get(p, 0.0) * 1000 / n for p in parts]
            print(f"  {kind:9s}" + "".join(f"{v:12.2f}" for v in row) + f"{sum(row):9.2f}")
    if 1 in levels:
        g = percentile(results[(1, "grant")], 50) / percentile(results[(1, "no-op")], 50)
        print(f"goal p50(grant) ≤ 3× no-op at c=1: {g:.2f}× — {'met' if g <= 3 else 'NOT met'}")
    if 10 in levels:
        worst = max(percentile(results[(10, k)], 99) for k in kinds[1:]) * 1000
        verdict = "met" if worst <= 150 else "NOT met"
        print(f"goal p99 ≤ 150 ms at c=10: worst of the four {worst:.0f} ms — {verdict}")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-noop":
        return process.run(serve_noop(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="live cartax subscriptions seeded")
    parser.add_argument(
        "--ops", type=int, default=200, help="requests of each kind per concurrency level"
    )
    parser.add_argument("--levels", default="1,10,50", help="concurrency levels (default 1,10,50)")
    parser.add_argument("--workers", type=int, default=1, help="worker.py processes (default 1)")
    # The API process's event loop (uvicorn picks uvloop when it is installed).
    return process.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
