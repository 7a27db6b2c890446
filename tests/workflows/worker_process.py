"""A worker in its own process, so a test can SIGKILL it: `python -m tests.worker_process
TARGET_HOST TASK_QUEUE DATABASE_URL [--max-cached N] [--pool N]`. Prints `ready` once it polls."""

from __future__ import annotations

import argparse
import asyncio

from starter.temporal import build_worker, connect
from store.db import open_pool


async def main(args: argparse.Namespace) -> None:
    pool = await open_pool(args.database_url, max_size=args.pool)
    client = await connect(args.target)
    async with build_worker(client, pool, args.task_queue, max_cached_workflows=args.max_cached):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("task_queue")
    parser.add_argument("database_url")
    parser.add_argument("--max-cached", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
