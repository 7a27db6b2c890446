"""A worker in its own process, so a test can SIGKILL it: `python -m tests.worker_process
TARGET_HOST TASK_QUEUE DATABASE_URL`. Prints `ready` once it polls."""

from __future__ import annotations

import asyncio
import sys

from starter.temporal import build_worker, connect
from store.db import open_pool


async def main(target: str, task_queue: str, database_url: str) -> None:
    pool = await open_pool(database_url, max_size=4)
    client = await connect(target)
    async with build_worker(client, pool, task_queue):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
