"""A stalled partner stalls nothing else (issue 19): admin-action latency and month-close rate
with one partner answering after 30 s, against the same with every partner healthy, in one run.

    python bench/partner_stall.py [--n 200] [--ops 40] [--stalled 20] [--stall-seconds 30]
                                  [--rounds 2]

Starts embedded PostgreSQL (or uses DATABASE_URL), Temporal's time-skipping server and the
sandbox partner server as its own process (partners/sandbox_server.py), every service wired to it
over HTTP; the worker (starter/temporal.py build_worker, the HTTP partner gateway) runs in this
process. Seeds N live `cartax` subscriptions. Phases: healthy, then `--rounds` times stalled
and healthy again (H0 S1 H2 S3 H4), so each stalled phase sits between two healthy ones and slow
drift or a busy minute of the machine falls on both kinds; the stalled phases pooled are
compared with the healthy ones pooled. Measured:

- admin actions, a warm-up round and then one round per phase: `--ops`
  grants/revokes of a seat on cartax subscriptions and `--ops / 4` applications for `wishket` in
  new workplaces (their partner call included), one at a time;
- month-closes, a warm-up close and then one per phase: one clock jump to the
  next 1st 00:00 Asia/Seoul, then the time until the N cartax invoices of the closed month are in
  PostgreSQL: month-closes per second.

The compared runs are alike: every measured close is of a full month after an earlier close, of
the same subscriptions (all the admin rounds' applications exist before the first close), and
starts 12 hours before the 1st, once the previous close's continue-as-new (1-7 h after it: a new
run, a fresh sandbox, per subscription) is over. (Before, the measurement started right after
the previous close and took in N continue-as-new: the first close after seeding, which had none,
came out 5.6× faster than the later healthy one.)

Stalled: the sandbox partner answers every `loai` call after `--stall-seconds` (a scripted
`slow` fault). Before a stalled admin round `--stalled` new workplaces apply for loai, so their
provisioning activities hang at the partner. A running activity stops the time-skipping server's
clock (and terminating its run leaves it stopped), so those applications are let through before
the month-closes, and during the stalled close as many calls to the stalled partner hang on the
worker's own gateway instead (its event loop, its HTTP client), again and again until the close
is over. The issue's goal: stalled within 1.2× of healthy for the admin p50 and the month-close
rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from common import (
    loadavg,
    machine_line,
    percentile,
    postgres,
    sandbox_partner,
    seed,
    tag,
    time_skipping,
)
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


async def admin_round(
    services: Any, pool: Any, subs: list[Any], args: argparse.Namespace, name: str
) -> tuple[list[float], list[float]]:
    """Grants/revokes on the seeded subscriptions and applications in new workplaces, one at a
    time: their latencies in seconds."""
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
        await seed(service, pool, f"{args.prefix}-{name}-apply-{i}", 1, "wishket")
        applies.append(time.perf_counter() - started)
    print(f"  {name}: {len(applies)} applications in {sum(applies):.1f} s", flush=True)
    return grants, applies


BEFORE_CLOSE = timedelta(hours=12)  # after the previous close's continue-as-new (1-7 h)


async def close_month(
    env: Any,
    pool: Any,
    subs: list[Any],
    name: str,
    before_close: Callable[[], Awaitable[None]] | None = None,
) -> tuple[str, float]:
    """Move the clock to 12 hours before the next 1st (outside the measurement), then to the
    1st: the closed period and the seconds until every seeded subscription's invoice landed."""
    from domain.calendar import first_instant_of_next_month, period_of

    now = await env.get_current_time()
    first = first_instant_of_next_month(now)
    await env.sleep(first - BEFORE_CLOSE - now)
    if before_close is not None:
        await before_close()
    now = await env.get_current_time()
    period = period_of(now)
    workplaces = [s.workplace_id for s in subs]
    started = time.perf_counter()
    sleeping = asyncio.create_task(env.sleep(first - now + timedelta(seconds=1)))
    while True:
        landed = await count(
            pool,
            "SELECT count(*) AS n FROM invoices WHERE period = %s AND workplace_id = ANY(%s)",
            period,
            workplaces,
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
    print(f"  {name}: month-close of {period} {len(subs) / elapsed:.1f}/s", flush=True)
    return period, elapsed


async def stuck_subscriptions(pool: Any, prefix: str) -> list[str]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT subscription_id FROM subscriptions WHERE workplace_id LIKE %s",
                (f"{prefix}-%",),
            )
        ).fetchall()
    return [r["subscription_id"] for r in rows]


async def let_through(pool: Any, partner: Any, stuck: list[str]) -> None:
    """The stalled partner answers again; wait until the stuck applications are active (a
    running activity would stop the time-skipping clock during the month-closes)."""
    await partner.clear_faults()
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


async def hang_instead(partner: Any, gateway: Any, stuck: list[str], hangers: list[Any]) -> None:
    """Before the stalled month-close: the partner stalls again, and as many calls to it as
    there were stuck applications hang on the worker's own gateway (its event loop, its HTTP
    client), each answered only after the stall, again and again until the close is over."""
    await partner.fault("slow", STALLED_SERVICE, operation="courses", seconds=partner.stall)

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


async def stall_applications(
    services: Any, pool: Any, partner: Any, args: argparse.Namespace, prefix: str
) -> list[str]:
    """The partner stalls, and `--stalled` workplaces apply for its service: their provisioning
    calls hang at it. Returns their subscriptions."""
    await partner.fault("slow", STALLED_SERVICE, seconds=args.stall_seconds)
    applying = [
        asyncio.create_task(stuck_application(services, pool, f"{prefix}-{i}"))
        for i in range(args.stalled)
    ]
    await asyncio.sleep(3)  # their provisioning calls are now hanging at the partner
    await asyncio.gather(*applying)
    return await stuck_subscriptions(pool, prefix)


async def run(args: argparse.Namespace) -> int:
    from domain.catalog import default_catalog
    from services.root import build_services
    from starter.temporal import build_worker, partner_gateway

    load_start = loadavg()
    args.prefix = f"stall-{tag()}"
    phases = ["healthy", *["stalled", "healthy"] * args.rounds]
    async with (
        postgres(pool_size=40) as (url, pool),
        sandbox_partner(url) as partner,
        time_skipping() as env,
    ):
        partner.stall = args.stall_seconds
        queue = f"stall-{tag()}"
        services = build_services(pool, env.client, default_catalog(), queue)
        gateway = partner_gateway(pool, env.client)  # the worker's, shared with the hangers
        async with build_worker(
            env.client, pool, queue, max_cached_workflows=args.n + 500, partner=gateway
        ):
            began = time.perf_counter()
            subs = await seed(services.subscriptions, pool, args.prefix, args.n, "cartax")
            print(f"seeded {args.n} cartax subscriptions in {time.perf_counter() - began:.0f} s")

            # ── admin actions: a warm-up round, then the phases ──
            await admin_round(services, pool, subs, args, "warm-up")
            admin: list[tuple[list[float], list[float]]] = []
            stuck: list[str] = []
            for i, phase in enumerate(phases):
                name = f"{phase}-{i}"
                if phase == "stalled":
                    round_stuck = await stall_applications(
                        services, pool, partner, args, f"{args.prefix}-stuck{i}"
                    )
                    admin.append(await admin_round(services, pool, subs, args, name))
                    await let_through(pool, partner, round_stuck)
                    stuck += round_stuck
                else:
                    admin.append(await admin_round(services, pool, subs, args, name))
            provisioned = (await partner.calls()).get(f"{STALLED_SERVICE}.provision", 0)

            # ── month-closes of the same subscriptions: a warm-up close, then the phases ──
            await close_month(env, pool, subs, "warm-up")
            closes: list[tuple[str, float]] = []
            for i, phase in enumerate(phases):
                name = f"{phase}-{i}"
                if phase == "stalled":
                    hangers: list[asyncio.Task[None]] = []
                    hanging = stuck[: args.stalled]
                    closes.append(
                        await close_month(
                            env,
                            pool,
                            subs,
                            name,
                            before_close=partial(hang_instead, partner, gateway, hanging, hangers),
                        )
                    )
                    for h in hangers:
                        h.cancel()
                    await asyncio.gather(*hangers, return_exceptions=True)
                    await partner.clear_faults()
                else:
                    closes.append(await close_month(env, pool, subs, name))
            hung = (await partner.calls()).get(f"{STALLED_SERVICE}.courses", 0)
    runs = [
        Measured(grants, applies, seconds, args.n)
        for (grants, applies), (_, seconds) in zip(admin, closes, strict=True)
    ]
    report(args, phases, runs, [period for period, _ in closes], provisioned, hung, load_start)
    return 0


def pooled(runs: list[Measured]) -> Measured:
    return Measured(
        [g for m in runs for g in m.grants],
        [a for m in runs for a in m.applies],
        sum(m.month_close_s for m in runs),
        sum(m.n for m in runs),
    )


def spread(values: list[float]) -> float:
    return max(values) / min(values)


def report(
    args: argparse.Namespace,
    phases: list[str],
    runs: list[Measured],
    periods: list[str],
    provisioned: int,
    hung: int,
    load_start: str,
) -> None:
    print()
    print(machine_line())
    print(f"load average {load_start} → {loadavg()}")
    print(
        f"N = {args.n} cartax subscriptions; each stalled phase: {args.stalled}"
        f" {STALLED_SERVICE} applications whose partner answers after"
        f" {args.stall_seconds:.0f} s hang during its admin round ({provisioned} provisioning"
        f" calls reached it in all), and as many calls to it hang on the worker's gateway during"
        f" its month-close ({hung} in all)"
    )
    print(
        f"months closed: {', '.join(periods)} (after a warm-up close; each timed from 12 h"
        " before the 1st, the same subscriptions closing)"
    )
    healthy = [m for p, m in zip(phases, runs, strict=True) if p == "healthy"]
    stalled = [m for p, m in zip(phases, runs, strict=True) if p == "stalled"]
    h, st = pooled(healthy), pooled(stalled)
    rows: list[tuple[str, Callable[[Measured], float]]] = [
        ("grant/revoke p50 ms", lambda m: 1000 * percentile(m.grants, 50)),
        ("grant/revoke p95 ms", lambda m: 1000 * percentile(m.grants, 95)),
        ("application p50 ms", lambda m: 1000 * percentile(m.applies, 50)),
        ("month-closes/s", lambda m: m.rate),
    ]
    heads = [f"{p[0].upper()}{i}" for i, p in enumerate(phases)]
    print(f"{'':22}" + "".join(f"{x:>9}" for x in heads) + f"{'stalled / healthy':>20}")
    for name, value in rows:
        cells = "".join(f"{value(m):9.1f}" for m in runs)
        print(f"{name:22}{cells}{value(st) / value(h):20.2f}")
    admin = percentile(st.grants, 50) / percentile(h.grants, 50)
    close = h.rate / st.rate
    verdict = "within" if admin <= 1.2 and close <= 1.2 else "NOT within"
    print(
        f"admin p50 ×{admin:.2f}, month-close rate ÷{close:.2f}, stalled phases pooled against"
        f" healthy ones pooled: {verdict} 1.2×. The healthy phases alone differ"
        f" ×{spread([percentile(m.grants, 50) for m in healthy]):.2f} in admin p50,"
        f" ×{spread([m.rate for m in healthy]):.2f} in month-close rate."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--ops", type=int, default=40)
    parser.add_argument("--stalled", type=int, default=20)
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    parser.add_argument(
        "--rounds", type=int, default=2, help="stalled phases, each between two healthy ones"
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
