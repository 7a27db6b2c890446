"""What a NOTIFY per event costs concurrent commits (docs/events.md; docs/architecture.md says
"every NOTIFY serialises its commit on one lock").

`store.events.append` ends with `pg_notify(EVENTS_CHANNEL, …)` to wake the webhook dispatcher.
PostgreSQL takes one database-wide lock from a notifying transaction's pre-commit until its commit
is done, so notifying transactions commit one at a time (no group commit of their WAL flushes).
This bench commits the same small event transactions from `--writers` connections at once, with
and without the NOTIFY, alternating the two modes `--rounds` times, and prints the commits per
second of each and their ratio (notify / plain) from the same run.

    .venv/bin/python bench/event_notify.py                  # 10 writers, 200 commits each
    .venv/bin/python bench/event_notify.py --writers 40
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from common import loadavg, machine_line, postgres
from psycopg.types.json import Jsonb

from store.events import EVENTS_CHANNEL, event_id


async def _writer(pool: Any, commits: int, notify: bool, run: str, index: int) -> None:
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        for n in range(commits):
            key = f"bench-{run}-{index}-{n}"
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO events (event_id, event_key, type, created_at, workplace_id,"
                    " stream, seq, data) VALUES (%s, %s, 'bench', %s, %s, %s, %s, %s)",
                    (event_id(key), key, now, f"bench-{run}", f"bench-{run}-{index}", n, Jsonb({})),
                )
                if notify:
                    await conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, "bench"))


async def _round(pool: Any, writers: int, commits: int, notify: bool) -> float:
    run = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    await asyncio.gather(*(_writer(pool, commits, notify, run, i) for i in range(writers)))
    return writers * commits / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--commits", type=int, default=200, help="per writer and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    print(f"load average at start: {loadavg()}")
    async with postgres(pool_size=args.writers + 2) as (_, pool):
        await _round(pool, args.writers, 20, False)  # warm-up
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for notify in (False, True):
                rates[notify].append(await _round(pool, args.writers, args.commits, notify))
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM events WHERE type = 'bench'")
    plain, notified = (sorted(rates[m])[len(rates[m]) // 2] for m in (False, True))
    print(f"{args.writers} writers x {args.commits} commits, median of {args.rounds} rounds:")
    print(f"  plain   {plain:8.0f} commits/s   {', '.join(f'{r:.0f}' for r in rates[False])}")
    print(f"  notify  {notified:8.0f} commits/s   {', '.join(f'{r:.0f}' for r in rates[True])}")
    print(f"  ratio notify/plain: {notified / plain:.2f}")
    print(f"load average at end: {loadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
