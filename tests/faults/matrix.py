"""One scenario of the kill matrix: a burst through the API, SIGKILL of one process of the stack
in the middle of it, recovery, then the invariants and the per-request counts (docs/faults.md)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from temporalio.service import RPCError

from settings import REPO_ROOT
from starter.temporal import connect
from tests.faults.burst import SCRIPT, Burst
from tests.faults.hooks import COLUMNS as HOOK_COLUMNS
from tests.faults.hooks import AtKill, MatrixHooks
from tests.faults.invariants import COLUMNS, Facts, read_facts, tally, violations
from tests.faults.stack import DevStack

DEFAULT_BURST = 24  # requests per scenario; FAULTS_BURST=200 for the larger run
RECOVERY_BOUND = 120.0  # seconds for the invariants to hold once the burst is over
ARTIFACT = REPO_ROOT / "test-artifacts" / "faults.json"
TABLE: dict[str, dict[str, Any]] = {}


def burst_workplaces(per_workplace: int = len(SCRIPT)) -> int:
    requests = int(os.environ.get("FAULTS_BURST") or DEFAULT_BURST)
    return max(1, math.ceil(requests / per_workplace))


def record(name: str, row: dict[str, Any]) -> None:
    """A scenario's row of the table, also written to test-artifacts/faults.json."""
    TABLE[name] = row
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(TABLE, indent=2))


@dataclass
class Matrix:
    """The stack under test, its webhook receiver, and every workplace a scenario made on it:
    each scenario checks them all, so a later kill that broke an earlier scenario's
    subscriptions or resent its events out of order is caught too."""

    stack: DevStack
    hooks: MatrixHooks | None = None  # None: no receiver (the sandbox's scenarios, clocked.py)
    workplaces: list[str] = field(default_factory=list)


async def run_scenario(matrix: Matrix, name: str, target: str, kills: int = 1) -> list[str]:
    """Run the burst, kill `target` `kills` times while it runs, wait for recovery; record the
    scenario's row of the table and return what went wrong (empty: nothing). The webhook
    receiver answers slowly until the last kill, so deliveries queue up and every kill falls
    while some are under way."""
    stack, hooks = matrix.stack, matrix.hooks
    assert hooks is not None, "the kill matrix registers its webhook receiver first"
    burst = Burst(stack.base_url, stack.auth_secret(), name, burst_workplaces())
    matrix.workplaces += burst.workplaces
    await burst.create_workplaces()
    began = time.monotonic()
    driving = asyncio.create_task(burst.run())
    in_burst = 0
    kill_times: list[float] = []
    at_kill: list[AtKill] = []
    hooks.slow(True)
    try:
        for i in range(kills):
            await burst.wait_in_flight(math.ceil(burst.total * (i + 1) / (kills + 1)))
            at_kill.append(await hooks.at_kill(stack, matrix.workplaces))
            in_burst += burst.done < burst.total
            kill_times.append(time.monotonic())
            victim = stack.kill(target)
            if target == "launcher":  # `make run` again, on the same DATA_DIR
                await asyncio.to_thread(stack.start)
            else:
                await asyncio.to_thread(stack.wait_restarted, target, victim)
        hooks.slow(False)
        outcomes = await driving
    finally:
        hooks.slow(False)
        if not driving.done():
            driving.cancel()
    burst_seconds = time.monotonic() - began
    facts, broken, first_look = await settle(stack, matrix.workplaces)
    recovery_seconds = time.monotonic() - began - burst_seconds
    delivered = await hooks.wait_delivered(stack, matrix.workplaces, RECOVERY_BOUND)
    counts, notes = tally(outcomes, facts)
    record(
        name,
        {
            "killed": target,
            "kills": kills,
            "kills_during_burst": in_burst,
            **counts,
            "hit": sum(any(o.first_sent <= t <= o.answered for t in kill_times) for o in outcomes),
            # reservations whose workflow start a retry, an application or the reconciler made
            "resumed": sum(
                a["action"] == "reservation_resumed" and a["workplace_id"] in burst.workplaces
                for a in facts.audit
            ),
            "burst_s": round(burst_seconds, 1),
            "recovery_s": round(recovery_seconds, 1),
            **hooks.row(delivered, burst.workplaces, at_kill),
            "invariants_broken": len(broken),
            "broken_at_first_look": first_look[:5],
            "slowest": [
                f"{o.workplace} {o.step.describe()}:"
                f" {o.answered - o.first_sent:.1f} s, {o.attempts}"
                for o in sorted(outcomes, key=lambda o: o.first_sent - o.answered)[:3]
            ],
        },
    )
    problems = broken + notes + hooks.problems(delivered, at_kill)
    if in_burst < kills:
        problems.append(f"only {in_burst} of {kills} kills fell inside the burst")
    return problems


async def settle(stack: DevStack, workplaces: list[str]) -> tuple[Facts, list[str], list[str]]:
    """Poll until every invariant holds (the stack has recovered) or the bound runs out; the
    facts and the violations of the last look, and those of the first (what recovery took)."""
    deadline = time.monotonic() + RECOVERY_BOUND
    first_look: list[str] | None = None
    while True:
        try:
            info = stack.info()
            client = await connect(info["temporal_address"])
            facts = await read_facts(info["database_url"], stack.partner(), workplaces)
            broken = await violations(client, facts)
        except (psycopg.OperationalError, RPCError, RuntimeError, httpx.HTTPError) as err:
            if time.monotonic() > deadline:
                raise
            print(f"recovery check: stack not reachable yet: {err!r}")
        else:
            first_look = broken if first_look is None else first_look
            if not broken or time.monotonic() > deadline:
                return facts, broken, first_look
        await asyncio.sleep(1.0)


def format_table(table: dict[str, dict[str, Any]]) -> str:
    columns = ["killed", "kills", *COLUMNS, "hit", "resumed", "burst_s", "recovery_s"]
    columns += HOOK_COLUMNS
    columns.append("invariants_broken")
    rows = [["scenario", *columns]] + [
        [name, *(str(row.get(c, "-")) for c in columns)] for name, row in table.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows)
