"""A stalled partner stalls nothing else (issue 19): admin-action latency and month-close rate
with one partner answering after 30 s, against the same with every partner healthy, in one run.

    python bench/partner_stall.py [--n 200] [--ops 40] [--stalled 10] [--stall-seconds 30]

Starts embedded PostgreSQL (or uses DATABASE_URL), Temporal's time-skipping server and the
sandbox partner server as its own process (partners/sandbox_server.py), every service wired to it
over HTTP; the worker (starter/temporal.py build_worker, the HTTP partner gateway) runs in this
process. Seeds N live `cartax` subscriptions, then measures three times: healthy, stalled,
healthy again (a later month's close differs from the first one after seeding: by then the runs
have continued as new, so the stalled month is compared with its healthy neighbour too):

- admin actions: `--ops` grants/revokes of a seat on cartax subscriptions and `--ops / 4`
  applications for `wishket` in new workplaces (their partner call included), one at a time;
- month-close: one clock jump to the next 1st 00:00 Asia/Seoul, then the time until all N
  invoices of the closed month are in PostgreSQL: month-closes per second.

Stalled: the sandbox partner answers every `loai` call after `--stall-seconds` (a scripted
`slow` fault) and `--stalled` workplaces apply for loai, so their provisioning activities hang at
the partner during the admin actions. A running activity stops the time-skipping server's clock
(and terminating its run leaves it stopped), so before the month-close those applications are
let through and as many calls to the stalled partner hang on the worker's own gateway instead
(its event loop, its HTTP client), again and again until the close is over. The issue's goal:
stalled within 1.2× of healthy for the admin p50 and the month-close rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from common import loadavg, machine_line, percentile, postgres, seed, tag, time_skipping
from month_close import count

STALLED_SERVICE = "loai"


@dataclass
class Measured:
    grants: list[float]
    applies: list[float]
    month_close_s: float
    n: int

    @property
    def rate(self) -> float:
        return self.n / self.month_close_s


async def measure(
    env: Any,
    services: Any,
    pool: Any,
    subs: list[Any],
    args: argparse.Namespace,
    name: str,
    before_close: Callable[[], Awaitable[None]] | None = None,
) -> Measured:
    from datetime import timedelta

    from domain.calendar import first_instant_of_next_month, period_of

    service = services.subscriptions
    grants: list[float] = []
    for i in range(args.ops):
        wp = subs[i % len(subs)]
        started = time.perf_counter()
        await service.set_usage(
            workplace_id=wp.workplace_id,
            service_id="cartax",
            actor_id=wp.rep,
            member_id=wp.rep,
            grant=(i // len(subs)) % 2 == 0,
        )
        grants.append(time.perf_counter() - started)
    print(f"  {name}: {len(grants)} grants/revokes in {sum(grants):.1f} s", flush=True)
    applies: list[float] = []
    for i in range(max(1, args.ops // 4)):
        started = time.perf_counter()
        await seed(service, pool, f"{name}-apply-{i}", 1, "wishket")
        applies.append(time.perf_counter() - started)

    print(f"  {name}: {len(applies)} applications in {sum(applies):.1f} s", flush=True)
    if before_close is not None:
        await before_close()
    now = await env.get_current_time()
    first = first_instant_of_next_month(now)
    period = period_of(now)
    like = f"{args.prefix}-%"
    started = time.perf_counter()
    sleeping = asyncio.create_task(env.sleep(first - now + timedelta(seconds=1)))
    while True:
        landed = await count(
            pool,
            "SELECT count(*) AS n FROM invoices WHERE period = %s AND workplace_id LIKE %s",
            period,
            like,
        )
        if landed >= len(subs):
            break
        if time.perf_counter() - started > 600:
            raise TimeoutError(f"{name}: {landed}/{len(subs)} invoices after 10 minutes")
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    try:
        await sleeping
    except Exception as err:  # the server may give up waiting while the close goes on
        print(f"  ({name}: env.sleep answered {err!r})")
    return Measured(grants, applies, elapsed, len(subs))


async def stuck_subscriptions(pool: Any, prefix: str) -> list[str]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT subscription_id FROM subscriptions WHERE workplace_id LIKE %s",
                (f"{prefix}-stuck-%",),
            )
        ).fetchall()
    return [r["subscription_id"] for r in rows]


async def hang_instead(
    pool: Any, partner: Any, gateway: Any, stuck: list[str], hangers: list[Any]
) -> None:
    """Before the month-close: a running activity stops the time-skipping server's clock (and a
    run terminated with one in flight leaves it stopped), so the stalled partner lets the
    applications through now and stalls another call instead: as many calls to it as there were
    stuck applications, on the worker's own gateway (its event loop, its HTTP client), each
    answered only after the stall, again and again until the close is over."""
    await partner.clear_faults()
    await partner.fault("slow", STALLED_SERVICE, operation="courses", seconds=partner.stall)
    deadline = time.perf_counter() + 180
    while await count(
        pool,
        "SELECT count(*) AS n FROM subscriptions WHERE subscription_id = ANY(%s)"
        " AND state <> 'active'",
        stuck,
    ):
        if time.perf_counter() > deadline:
            raise TimeoutError("the stalled applications did not activate once let through")
        await asyncio.sleep(0.2)

    async def hang(sub: str) -> None:
        while True:
            try:
                await gateway.courses_in_progress(subscription_id=sub)
            except Exception:
                pass

    hangers.extend(asyncio.create_task(hang(sub)) for sub in stuck)
    await asyncio.sleep(1)


async def stuck_application(services: Any, pool: Any, prefix: str) -> None:
    """An application for the stalled partner's service: it stays `applied` while provisioning
    hangs at the partner (seed says so after a second; that is expected here)."""
    try:
        await seed(services.subscriptions, pool, prefix, 1, STALLED_SERVICE, wait_seconds=1)
    except RuntimeError:
        pass


async def run(args: argparse.Namespace) -> int:
    from domain.catalog import default_catalog
    from services.root import build_services
    from starter.temporal import build_worker, partner_gateway
    from tests.partner_sandbox import SandboxPartnerProcess

    load_start = loadavg()
    args.prefix = f"stall-{tag()}"
    async with postgres(pool_size=40) as (url, pool), time_skipping() as env:
        logs = Path(tempfile.mkdtemp(prefix="bizsupport-bench-partner-"))
        partner = SandboxPartnerProcess(url, logs / "sandbox-partner.log")
        partner.start()
        partner.stall = args.stall_seconds  # type: ignore[attr-defined]
        try:
            os.environ.update(partner.bizsupport_env())
            queue = f"stall-{tag()}"
            services = build_services(pool, env.client, default_catalog(), queue)
            gateway = partner_gateway(pool, env.client)  # the worker's, shared with the hangers
            async with build_worker(
                env.client, pool, queue, max_cached_workflows=args.n + 500, partner=gateway
            ):
                began = time.perf_counter()
                subs = await seed(services.subscriptions, pool, args.prefix, args.n, "cartax")
                print(
                    f"seeded {args.n} cartax subscriptions in {time.perf_counter() - began:.0f} s"
                )
                healthy = await measure(env, services, pool, subs, args, "healthy")
                print(f"healthy: month-close {healthy.rate:.1f}/s", flush=True)

                await partner.fault("slow", STALLED_SERVICE, seconds=args.stall_seconds)
                stalled_apps = [
                    asyncio.create_task(
                        stuck_application(services, pool, f"{args.prefix}-stuck-{i}")
                    )
                    for i in range(args.stalled)
                ]
                await asyncio.sleep(3)  # their provisioning calls are now hanging at the partner
                calls_before = (await partner.calls()).get(f"{STALLED_SERVICE}.provision", 0)
                await asyncio.gather(*stalled_apps)
                stuck = await stuck_subscriptions(pool, args.prefix)
                hangers: list[asyncio.Task[None]] = []
                stalled = await measure(
                    env,
                    services,
                    pool,
                    subs,
                    args,
                    "stalled",
                    before_close=lambda: hang_instead(pool, partner, gateway, stuck, hangers),
                )
                calls = (await partner.calls()).get(f"{STALLED_SERVICE}.provision", 0)
                for h in hangers:
                    h.cancel()
                await asyncio.gather(*hangers, return_exceptions=True)
                hung = (await partner.calls()).get(f"{STALLED_SERVICE}.courses", 0)
                print(f"stalled: month-close {stalled.rate:.1f}/s", flush=True)
                await partner.clear_faults()
                # The same again, healthy: a later month's close differs from the first one
                # after seeding (the runs have continued as new), so the stalled month is
                # compared with its healthy neighbours, not only with the first.
                again = await measure(env, services, pool, subs, args, "healthy-again")
                print(f"healthy again: month-close {again.rate:.1f}/s", flush=True)
        finally:
            partner.stop()
    report(args, healthy, stalled, again, calls_before, calls, hung, load_start)
    return 0


def report(
    args: argparse.Namespace,
    healthy: Measured,
    stalled: Measured,
    again: Measured,
    calls_before: int,
    calls: int,
    hung: int,
    load_start: str,
) -> None:
    print()
    print(machine_line())
    print(f"load average {load_start} → {loadavg()}")
    print(
        f"N = {args.n} cartax subscriptions; stalled: {args.stalled} {STALLED_SERVICE}"
        f" applications whose partner answers after {args.stall_seconds:.0f} s"
        f" ({calls} provisioning calls reached it, {calls - calls_before} during the stalled"
        f" admin actions; during the stalled month-close {hung} calls to it hung on the"
        f" worker's gateway instead)"
    )
    both = Measured(
        healthy.grants + again.grants,
        healthy.applies + again.applies,
        healthy.month_close_s + again.month_close_s,
        healthy.n + again.n,
    )
    rows = [
        (
            "grant/revoke p50 ms",
            [1000 * percentile(m.grants, 50) for m in (healthy, stalled, again, both)],
        ),
        (
            "grant/revoke p95 ms",
            [1000 * percentile(m.grants, 95) for m in (healthy, stalled, again, both)],
        ),
        (
            "application p50 ms",
            [1000 * percentile(m.applies, 50) for m in (healthy, stalled, again, both)],
        ),
        ("month-closes/s", [m.rate for m in (healthy, stalled, again, both)]),
    ]
    print(f"{'':22}{'healthy':>10}{'stalled':>10}{'healthy 2':>10}{'stalled/healthy(1+2)':>22}")
    for name, (a, b, c, h) in rows:
        print(f"{name:22}{a:10.1f}{b:10.1f}{c:10.1f}{b / h:22.2f}")
    admin = percentile(stalled.grants, 50) / percentile(both.grants, 50)
    same_shape = again.rate / stalled.rate
    verdict = "within" if admin <= 1.2 and same_shape <= 1.2 else "NOT within"
    print(
        f"admin p50 ×{admin:.2f} (against both healthy runs); month-close rate ÷{same_shape:.2f}"
        f" against the healthy month of the same shape (after continue-as-new; ÷"
        f"{healthy.rate / stalled.rate:.2f} against the first close after seeding, where the"
        f" healthy runs themselves differ ÷{healthy.rate / again.rate:.2f}): {verdict} 1.2×"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--ops", type=int, default=40)
    parser.add_argument("--stalled", type=int, default=20)
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
