"""Webhooks do not slow the month-close (issue 20): the month-close rate of N subscriptions with
two webhook endpoints per workplace against none, in one run.

    python bench/webhook_month_close.py [--n 1000]

Starts embedded PostgreSQL (or uses DATABASE_URL), Temporal's time-skipping server and the
sandbox partner server; in this process the worker as worker.py makes it (build_worker, and
build_webhook_worker on its own task queue with the webhook dispatcher beside it) and one local
receiver answering 200 (tests/webhook_receiver.py; signatures are checked by the tests, not
here). Seeds N live `cartax` subscriptions, one per workplace, then closes three months, each
with one clock jump to the next 1st 00:00 Asia/Seoul, timing how long until all N invoices are in
PostgreSQL and every month-close is published (its `invoice_issued` audit entry):

1. first: no endpoints, the first close after seeding (faster than any later one: by the next,
   the runs have continued as new, as bench/partner_stall.py found), shown but not compared;
   then two endpoints per workplace are made and their 2N workflows started (idle);
2. none: the endpoints disabled (no pokes, nothing delivered);
3. hooks: the endpoints enabled: every month-close's `invoice.issued` event is delivered twice,
   while the close runs and after;
4. none again: the endpoints disabled.
The three compared closes have the same workflows on the server, so the difference is the
deliveries (the time-skipping server's work grows with the workflows it holds).

The goal is hooks ≥ 0.8 × the mean of its neighbours 2 and 4. Also printed: how long after the
close began the 2N deliveries had all succeeded, and the CPU seconds each process used.

Every close writes its `invoice.issued` events in the month-close's own commits (R-EVENT-1), with
endpoints or without: what differs is only whether they are delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from common import (
    bounded,
    loadavg,
    machine_line,
    postgres,
    sandbox_partner,
    seed,
    tag,
    time_skipping,
)
from month_close import count, cpu_seconds


@dataclass
class Close:
    name: str
    n: int
    invoices_s: float
    done_s: float
    delivered_s: float | None = None
    cpu: dict[str, float] | None = None

    @property
    def rate(self) -> float:
        return self.n / self.done_s


async def close_month(env: Any, pool: Any, n: int, like: str, name: str, hooks: bool) -> Close:
    from datetime import timedelta

    from domain.calendar import first_instant_of_next_month, period_of

    now = await env.get_current_time()
    first = first_instant_of_next_month(now)
    period = period_of(now)
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    sleeping = asyncio.create_task(env.sleep(first - now + timedelta(seconds=1)))
    invoices_s = None
    while True:
        landed = await count(
            pool,
            "SELECT count(*) AS n FROM invoices WHERE period = %s AND workplace_id LIKE %s",
            period,
            like,
        )
        if landed >= n and invoices_s is None:
            invoices_s = time.perf_counter() - started
        if invoices_s is not None:
            done = await count(
                pool,
                "SELECT count(*) AS n FROM audit_log WHERE action = 'invoice_issued'"
                " AND details->>'period' = %s AND workplace_id LIKE %s",
                period,
                like,
            )
            if done >= n:
                break
        if time.perf_counter() - started > 900:
            raise TimeoutError(f"{name}: {landed}/{n} invoices after 15 minutes")
        await asyncio.sleep(0.02)
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_seconds().items()}
    result = Close(name, n, invoices_s, time.perf_counter() - started, cpu=cpu)
    print(f"{name}: month-close {result.rate:.1f}/s", flush=True)
    if hooks:
        while (
            await count(
                pool,
                "SELECT count(*) AS n FROM webhook_deliveries d JOIN events e USING (event_no)"
                " WHERE e.type = 'invoice.issued' AND e.data->>'period' = %s"
                " AND e.workplace_id LIKE %s AND d.status = 'succeeded'",
                period,
                like,
            )
            < 2 * n
        ):
            if time.perf_counter() - started > 900:
                raise TimeoutError(f"{name}: deliveries unfinished after 15 minutes")
            await asyncio.sleep(0.1)
        result.delivered_s = time.perf_counter() - started
        print(f"{name}: {2 * n} deliveries done {result.delivered_s:.1f} s", flush=True)
    try:
        await sleeping
    except Exception as err:  # the server may give up waiting while the close goes on
        print(f"  ({name}: env.sleep answered {err!r})")
    return result


async def add_endpoints(pool: Any, workplaces: list[str], url: str) -> list[str]:
    import base64

    ids = []
    async with pool.connection() as conn, conn.transaction():
        for wp in workplaces:
            for k in range(2):
                endpoint_id = f"we_{wp}_{k}"
                await conn.execute(
                    "INSERT INTO webhook_endpoints (endpoint_id, workplace_id, url, created_by,"
                    " created_at) VALUES (%s, %s, %s, 'bench', now())",
                    (endpoint_id, wp, url),
                )
                await conn.execute(
                    "INSERT INTO webhook_secrets (endpoint_id, secret, created_at)"
                    " VALUES (%s, %s, now())",
                    (endpoint_id, "whsec_" + base64.b64encode(os.urandom(24)).decode()),
                )
                ids.append(endpoint_id)
    return ids


async def set_endpoints(pool: Any, endpoints: list[str], status: str) -> None:
    """Enable or disable the endpoints; enabled again, they start from the feed's end (what
    the API's create does: no backlog of the months they were off)."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE webhook_endpoints SET status = %s, (cursor_txid, cursor_event_no) = ("
            " SELECT txid, event_no FROM events ORDER BY txid DESC, event_no DESC LIMIT 1)"
            " WHERE endpoint_id = ANY(%s)",
            (status, endpoints),
        )


async def idle(env: Any, endpoint_id: str) -> None:
    """Until the endpoint's workflow has run a round and waits for a poke."""
    from workflows.webhooks import endpoint_workflow_id

    handle = env.client.get_workflow_handle(endpoint_workflow_id(endpoint_id))
    while True:
        try:
            described = await handle.describe()
            if described.history_length >= 10:
                return
        except Exception:
            pass
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> int:
    from domain.catalog import default_catalog
    from services.root import build_services
    from services.webhook_dispatch import WebhookDispatcher
    from starter.temporal import build_webhook_worker, build_worker, partner_gateway
    from tests.webhook_receiver import Receiver

    load_start = loadavg()
    prefix = f"hooks-{tag()}"
    like = f"{prefix}-%"
    async with (
        postgres(pool_size=40) as (url, pool),
        time_skipping() as env,
        sandbox_partner(url),
    ):
        receiver = await Receiver().up()
        stop = asyncio.Event()
        try:
            queue = f"hooks-{tag()}"
            services = build_services(
                pool, env.client, default_catalog(), queue, clock=env.get_current_time
            )
            gateway = partner_gateway(pool, env.client)
            dispatcher = WebhookDispatcher(
                pool,
                env.client,
                queue,
                clock=env.get_current_time,
                pokes_per_second=args.pokes_per_second or None,
            )
            async with (
                build_worker(
                    env.client, pool, queue, max_cached_workflows=args.n + 500, partner=gateway
                ),
                build_webhook_worker(
                    env.client,
                    pool,
                    queue,
                    allow_loopback=True,
                    max_cached_workflows=2 * args.n + 500,
                    max_rounds=args.rounds,
                    rounds_per_second=args.rounds_per_second or None,
                ),
            ):
                dispatching = asyncio.create_task(dispatcher.run(stop))
                began = time.perf_counter()
                subs = await seed(services.subscriptions, pool, prefix, args.n, "cartax")
                print(f"seeded {args.n} subscriptions in {time.perf_counter() - began:.0f} s")
                first = await close_month(env, pool, args.n, like, "first", hooks=False)

                endpoints = await add_endpoints(pool, [s.workplace_id for s in subs], receiver.url)
                began = time.perf_counter()
                # Start every endpoint's workflow at once (not paced): as they would be, idle,
                # long before a month-end.
                await WebhookDispatcher(pool, env.client, queue, pokes_per_second=None).poke(
                    endpoints
                )
                await bounded(lambda e: idle(env, e), endpoints, 50)
                print(
                    f"{len(endpoints)} endpoint workflows started and idle in"
                    f" {time.perf_counter() - began:.0f} s",
                    flush=True,
                )
                # The three compared closes run with the same workflows on the server (its
                # work grows with them): the endpoints disabled, enabled, disabled.
                await set_endpoints(pool, endpoints, "disabled")
                none = await close_month(env, pool, args.n, like, "none", hooks=False)
                await set_endpoints(pool, endpoints, "enabled")
                hooks = await close_month(env, pool, args.n, like, "hooks", hooks=True)
                await set_endpoints(pool, endpoints, "disabled")
                again = await close_month(env, pool, args.n, like, "none-again", False)
                stop.set()
                await dispatching
        finally:
            stop.set()
            await receiver.down()
    report(args, first, none, hooks, again, len(receiver.seen), load_start)
    return 0 if hooks.rate >= 0.8 * (none.rate + again.rate) / 2 else 1


def report(
    args: argparse.Namespace,
    first: Close,
    none: Close,
    hooks: Close,
    again: Close,
    received: int,
    load_start: str,
) -> None:
    print()
    print(machine_line())
    print(f"load average {load_start} → {loadavg()}")
    print(
        f"N = {args.n} cartax subscriptions, one per workplace; hooks: 2 endpoints per"
        f" workplace, one local receiver answering 200 ({received} requests in all);"
        f" webhook worker: {args.rounds} rounds at once,"
        f" {args.rounds_per_second or 'no limit of'} rounds/s;"
        f" dispatcher: {args.pokes_per_second or 'no limit of'} pokes/s"
    )
    for c in (first, none, hooks, again):
        delivered = f" | 2N deliveries done {c.delivered_s:6.1f} s" if c.delivered_s else ""
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted((c.cpu or {}).items()) if v >= 0.1)
        print(
            f"  {c.name:10s} invoices {c.invoices_s:6.1f} s | month-close done {c.done_s:6.1f} s"
            f" = {c.rate:6.1f}/s{delivered} | CPU s during the close: {cpu}"
        )
    both = (none.rate + again.rate) / 2
    print(
        f"ratio hooks/none: {hooks.rate / both:.2f} against the closes before and after"
        f" ({hooks.rate / none.rate:.2f}, {hooks.rate / again.rate:.2f}); goal ≥ 0.8"
        f" (the first close after seeding, {first.rate:.1f}/s, is of another shape)"
    )


def main() -> int:
    from services.webhook_dispatch import POKES_PER_SECOND
    from starter.temporal import WEBHOOK_ROUNDS, WEBHOOK_ROUNDS_PER_SECOND

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument(
        "--rounds", type=int, default=WEBHOOK_ROUNDS, help="rounds at once (build_webhook_worker's)"
    )
    parser.add_argument(
        "--pokes-per-second",
        type=float,
        default=POKES_PER_SECOND,
        help="the dispatcher's pokes per second; 0: no limit (WebhookDispatcher's)",
    )
    parser.add_argument(
        "--rounds-per-second",
        type=float,
        default=WEBHOOK_ROUNDS_PER_SECOND,
        help="rounds started per second per worker; 0: no limit (build_webhook_worker's)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
