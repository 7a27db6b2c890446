"""A worker in its own process, so a test can SIGKILL it: `python -m tests.worker_process
TARGET_HOST TASK_QUEUE DATABASE_URL [--max-cached N] [--pool N] [--webhooks]`. Prints `ready`
once it polls. `--webhooks`: the webhook worker (its `-webhooks` queue) instead."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from typing import Any

from temporalio.testing import WorkflowEnvironment

from starter.temporal import build_webhook_worker, build_worker, connect
from store.db import open_pool


async def main(args: argparse.Namespace) -> None:
    pool = await open_pool(args.database_url, max_size=args.pool)
    client = await connect(args.target)
    if args.webhooks:
        worker = build_webhook_worker(client, pool, args.task_queue, allow_loopback=True)
    else:
        worker = build_worker(client, pool, args.task_queue, max_cached_workflows=args.max_cached)
    async with worker:
        print("ready", flush=True)
        await asyncio.Event().wait()


async def spawn_worker(env: WorkflowEnvironment, queue: str, database_url: str, *flags: str) -> Any:
    """A worker process polling `queue`, once it says it is ready."""
    target = env.client.service_client.config.target_host
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.workflows.worker_process",
        target,
        queue,
        database_url,
        *flags,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    assert line.strip() == b"ready"
    return proc


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("task_queue")
    parser.add_argument("database_url")
    parser.add_argument("--max-cached", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--webhooks", action="store_true")
    asyncio.run(main(parser.parse_args()))
