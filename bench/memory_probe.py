"""What a cached run's shape costs the worker (issue 22): N runs of bench/probe_flows.py's probe
workflow per shape, each shape in a fresh child process on the time-skipping server, with ours'
runner and the pydantic converter; prints traced, glibc in-use and RSS KiB per cached run.

    python bench/memory_probe.py [--n 300] [--shape NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from temporalio import workflow

if not workflow.unsafe.in_sandbox():
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory import KIB, grow
from month_close import bounded
from probe_flows import ProbeInput, ProbeWorkflow, probe_noop

BLOB = 2000  # about ours' start input (an Application with its fee table), in characters
SHAPES: dict[str, ProbeInput] = {
    "wait": ProbeInput(),
    "blob": ProbeInput(blob="x" * BLOB),
    "blob+timer": ProbeInput(blob="x" * BLOB, timer=True),
    "3 local": ProbeInput(locals=3),
    "10 local": ProbeInput(locals=10),
    "1 activity": ProbeInput(activities=1),
    "3 activities": ProbeInput(activities=3),
    "3 upserts": ProbeInput(upserts=3),
    "ours' first run": ProbeInput(blob="x" * BLOB, locals=3, activities=1, upserts=1, timer=True),
}


async def measure(shape: str, n: int) -> dict[str, float]:
    from common import tag, time_skipping
    from temporalio.service import RPCError
    from temporalio.worker import Worker

    from starter.sandbox_runner import workflow_runner

    run_tag = tag()
    queue = f"probe-{run_tag}"
    seq = iter(range(1_000_000))

    async with time_skipping() as env:

        async def fill(count: int, in_flight: int) -> None:
            keys = [f"probe-{run_tag}-{next(seq)}" for _ in range(count)]

            async def start(key: str) -> None:
                await env.client.start_workflow(
                    ProbeWorkflow.run, SHAPES[shape], id=key, task_queue=queue
                )

            async def ready(key: str) -> None:
                handle = env.client.get_workflow_handle(key)
                for _ in range(600):
                    try:
                        if await handle.query(ProbeWorkflow.ready):
                            return
                    except RPCError:  # a query timing out on a loaded machine: ask again
                        pass
                    await asyncio.sleep(0.1)
                raise RuntimeError(f"{key} never waited")

            await bounded(start, keys, in_flight)
            await bounded(ready, keys, in_flight)

        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[ProbeWorkflow],
            activities=[probe_noop],
            workflow_runner=workflow_runner(),
            max_cached_workflows=n + 100,
            max_concurrent_workflow_tasks=10,
            graceful_shutdown_timeout=timedelta(seconds=5),
        ):
            await fill(20, 10)
            g = await grow(shape, n, 1, fill, 10)
    return {
        "traced": g.per / KIB,
        "malloc": g.malloc_used / n / KIB,
        "free": g.malloc_free / n / KIB,
        "rss": g.rss_per / KIB,
        "tracked": g.tracked / n,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--shape", action="append", choices=list(SHAPES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(asyncio.run(measure(args.child, args.n))), flush=True)
        return 0
    print(f"{'shape':18s} traced  malloc-in-use  free-held  RSS  (KiB per cached run)  tracked")
    for shape in args.shape or list(SHAPES):
        argv = [sys.executable, __file__, "--n", str(args.n), "--child", shape]
        out = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False).stdout
        line = [x for x in out.splitlines() if x.startswith("RESULT ")]
        if not line:
            print(f"{shape:18s} failed")
            continue
        r = json.loads(line[-1].removeprefix("RESULT "))
        print(
            f"{shape:18s} {r['traced']:6.1f} {r['malloc']:13.1f} {r['free']:10.1f}"
            f" {r['rss']:6.1f} {r['tracked']:10.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
