"""The partner process killed while business time passes (docs/faults.md, "The partner and
the clock"). On the sandbox stack (`SANDBOX=1 make run`: the time-skipping server, its sandbox
clock, the sandbox partner server as a supervised child process) one advance of the clock brings
many partner calls due at once, and the partner is SIGKILLed while they are at it:

- mid-plan-change: ubob plan changes scheduled for the next window (00:00 on the 1st, R-PLAN-8)
  reach it together with the month-close;
- mid-deletion: cancelled subscriptions reach their data deletion 30 days later (R-CANCEL-2).

Each call is a business action the partner owes exactly once. The sandbox partner keeps the
answer of every action it carried out by its `webhook-id` (`GET /sandbox/answers`), so the
actions it really carried out can be counted there, and compared with what bizsupport recorded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from starter.temporal import connect
from tests.faults.burst import APPLY, REQUEST_BOUND, Burst
from tests.faults.invariants import COLUMNS, read_facts, violations
from tests.faults.matrix import RECOVERY_BOUND, Matrix, burst_workplaces, record
from tests.faults.stack import PartnerAdmin

SERVICES = ("ubob", "miricanvas", "cartax")
NEW_PLAN = "ubob-premium"
# The partner answers workplace i's calls (1 + i % 4) × STAGGER late, so that at the kill some
# actions are done, some in flight and some not yet sent.
STAGGER = 0.3
ADVANCE_TIMEOUT = 600.0
DELETION_DELAY = 30 * 86_400  # R-CANCEL-2
# The calls struck by the kill are retried after Temporal's backoff, a timer on the sandbox
# clock: the advance skips its first steps at once, so the retry after the partner is back comes
# at the longest, 30 s (workflows/calls.py, ACTIVITY_RETRY). Recovery moves the clock on by as
# much, as a team waiting for it would, instead of waiting it out on the wall clock.
RETRY_NUDGE = 30.0


@dataclass
class Owed:
    """One action the partner owes: a plan change or a deletion of one subscription."""

    workplace: str
    service: str
    subscription_id: str
    accepted: bool  # the admin's request that made it due (schedule, cancel) got a 2xx
    objects: int = 0  # objects the partner holds for it before a deletion (the account too)


class Clocked:
    """The workplaces of the sandbox scenarios, their subscriptions, and the clock."""

    def __init__(self, matrix: Matrix) -> None:
        self.matrix = matrix
        self.stack = matrix.stack
        secret = (self.stack.data / "auth-secret").read_text().strip()
        self.burst = Burst(self.stack.base_url, secret, "clocked", burst_workplaces(len(SERVICES)))
        matrix.workplaces += self.burst.workplaces
        self.subs: dict[tuple[str, str], str] = {}  # (workplace, service) → subscription

    @property
    def partner(self) -> PartnerAdmin:
        return self.stack.partner()

    async def request(
        self, wp: str | None, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        """One admin request (the representative's, or the system's without `wp`), with an
        Idempotency-Key, retried on 503 and dropped connections like the burst's."""
        member = None if wp is None else f"{wp}-rep"
        headers = {
            "Authorization": f"Bearer {self.burst.token(wp, member)}",
            "Idempotency-Key": f"clocked-{uuid.uuid4().hex}",
        }
        deadline = time.monotonic() + REQUEST_BOUND
        async with httpx.AsyncClient(base_url=self.stack.base_url, timeout=ADVANCE_TIMEOUT) as http:
            while True:
                try:
                    answer = await http.request(method, path, json=body, headers=headers)
                    if answer.status_code != 503:
                        return answer
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{method} {path}: no answer in {REQUEST_BOUND:.0f} s")
                await asyncio.sleep(0.5)

    async def set_up(self) -> None:
        """Each workplace applies for every service and waits until all are active."""
        await self.burst.create_workplaces()

        async def apply(wp: str, service: str) -> None:
            body = {**APPLY, "plan_id": "ubob-basic"} if service == "ubob" else APPLY
            path = f"/v1/workplaces/{wp}/services/{service}/subscription"
            answer = await self.request(wp, "POST", path, body)
            assert answer.status_code in (200, 201, 202), answer.text
            self.subs[(wp, service)] = answer.json()["subscription_id"]
            deadline = time.monotonic() + REQUEST_BOUND
            while (await self.request(wp, "GET", path)).json()["state"] == "applied":
                assert time.monotonic() < deadline, f"{wp} {service} not active"
                await asyncio.sleep(0.2)

        await asyncio.gather(*(apply(wp, s) for wp in self.burst.workplaces for s in SERVICES))

    async def now(self) -> datetime:
        answer = await self.request(None, "GET", "/v1/sandbox/clock")
        return datetime.fromisoformat(answer.json()["now"])

    async def advance(self, seconds: float) -> None:
        """Move the clock; the answer comes once what it fired has settled."""
        answer = await self.request(None, "POST", "/v1/sandbox/clock/advance", {"seconds": seconds})
        assert answer.status_code == 200, answer.text

    async def stagger(self, operation: str) -> None:
        for i, wp in enumerate(self.burst.workplaces):
            for service in SERVICES:
                await self.partner.send(
                    "faults",
                    {
                        "kind": "slow",
                        "service_id": service,
                        "workplace_id": wp,
                        "operation": operation,
                        "seconds": (1 + i % 4) * STAGGER,
                    },
                    method="PUT",
                )

    async def answered(self, prefix: str, owed: list[Owed]) -> dict[str, list[dict[str, Any]]]:
        """The partner's kept answers of the owed actions, by subscription."""
        found: dict[str, list[dict[str, Any]]] = {o.subscription_id: [] for o in owed}
        for answer in await self.partner.get("answers", webhook_id_prefix=prefix):
            sub = answer["webhook_id"][len(prefix) :].split(":")[0]
            if sub in found:
                found[sub].append(answer)
        return found

    async def advance_and_kill(
        self, seconds: float, operation: str, prefix: str, owed: list[Owed]
    ) -> dict[str, Any]:
        """Move the clock by `seconds` and SIGKILL the partner once half of the owed calls of
        `operation` have reached it and one of them is still unanswered; wait for the sandbox
        to start it again and for the advance to answer. Returns what the kill struck."""
        before = await self.calls(operation)
        advancing = asyncio.create_task(self.advance(seconds))
        struck: dict[str, Any] = {"kills_during_burst": 0, "hit": 0}
        began = time.monotonic()
        try:
            while not advancing.done():
                arrived = await self.calls(operation) - before
                done = sum(bool(a) for a in (await self.answered(prefix, owed)).values())
                if arrived * 2 >= len(owed) and arrived > done:
                    victim = self.stack.kill("partner")
                    struck = {"kills_during_burst": 1, "hit": arrived - done, "done": done}
                    await asyncio.to_thread(self.stack.wait_restarted, "partner", victim)
                    break
                await asyncio.sleep(0.02)
            await advancing
            struck["arrived_before_kill"] = arrived if struck["kills_during_burst"] else 0
        finally:
            advancing.cancel()
        struck["burst_s"] = round(time.monotonic() - began, 1)
        return struck

    async def calls(self, operation: str) -> int:
        calls: dict[str, int] = await self.partner.get("calls")
        return sum(n for name, n in calls.items() if name.endswith(f".{operation}"))

    async def database(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(
            self.stack.info()["database_url"], row_factory=dict_row, connect_timeout=5
        ) as conn:
            return await (await conn.execute(sql, params)).fetchall()


Verdicts = tuple[dict[str, int], list[str]]


async def plan_change_scenario(clocked: Clocked) -> list[str]:
    """Every workplace schedules ubob → premium for the next window; the clock moves past it
    and the partner is killed mid-plan-change."""
    owed, windows = [], []
    for wp in clocked.burst.workplaces:
        path = f"/v1/workplaces/{wp}/services/ubob/subscription/plan-change"
        answer = await clocked.request(
            wp, "POST", path, {"plan_id": NEW_PLAN, "when": "next_window"}
        )
        owed.append(Owed(wp, "ubob", clocked.subs[(wp, "ubob")], answer.status_code == 200))
        assert answer.status_code == 200, answer.text
        windows.append(datetime.fromisoformat(answer.json()["scheduled_plan_change"]["at"]))
    window = max(windows)
    await clocked.stagger("change_plan")
    prefix = "change-plan:"
    seconds = (window - await clocked.now()).total_seconds() + 60
    struck = await clocked.advance_and_kill(seconds, "change_plan", prefix, owed)

    async def judge() -> Verdicts:
        answers = await clocked.answered(prefix, owed)
        accounts = {
            a["subscription_id"]: a
            for a in await clocked.partner.accounts(clocked.burst.workplaces)
        }
        audit = await clocked.database(
            "SELECT subscription_id, details FROM audit_log"
            " WHERE action = 'plan_changed' AND subscription_id = ANY(%s)",
            [o.subscription_id for o in owed],
        )
        rows = {
            r["subscription_id"]: r
            for r in await clocked.database(
                "SELECT subscription_id, state, plan_id FROM subscriptions"
                " WHERE subscription_id = ANY(%s)",
                [o.subscription_id for o in owed],
            )
        }

        def judge_one(o: Owed) -> tuple[list[str], str]:
            mine = answers[o.subscription_id]
            recorded = [a["details"] for a in audit if a["subscription_id"] == o.subscription_id]
            row = rows[o.subscription_id]
            account = accounts.get(o.subscription_id, {})
            verdicts = []
            if row["plan_id"] != NEW_PLAN or row["state"] != "active":
                verdicts.append("stuck")
            elif not mine or account.get("plan_id") != NEW_PLAN or not recorded:
                verdicts.append("lost")
            if len(mine) > 1 or len(recorded) > 1:
                verdicts.append("duplicated")
            if (
                mine
                and recorded
                and any(
                    r.get("stopped_courses") != mine[0]["body"].get("stopped_courses")
                    for r in recorded
                )
            ):
                verdicts.append("ambiguous")
            what = (
                f"{o.workplace} ubob: read model {row['state']}/{row['plan_id']}, partner plan"
                f" {account.get('plan_id')}, {len(mine)} partner answers, {len(recorded)}"
                " plan_changed entries"
            )
            return verdicts, what

        return _count(owed, judge_one)

    return await settle_and_record(clocked, "partner-plan-change", owed, struck, judge)


async def deletion_scenario(clocked: Clocked) -> list[str]:
    """Members leave documents at the partner, every subscription is cancelled, the clock moves
    30 days and an hour, and the partner is killed mid-deletion."""
    owed = []
    for i, (wp, service) in enumerate(sorted(clocked.subs)):
        sub = clocked.subs[(wp, service)]
        documents = 1 + i % 3
        for d in range(documents):
            await clocked.partner.send(
                "documents", {"subscription_id": sub, "member_id": f"{wp}-m1", "title": f"d{d}"}
            )
        owed.append(Owed(wp, service, sub, accepted=False, objects=documents + 1))

    async def cancel(o: Owed) -> None:
        answer = await clocked.request(o.workplace, "POST", _path(o) + "/cancel")
        o.accepted = answer.status_code == 200

    await asyncio.gather(*(cancel(o) for o in owed))
    await clocked.stagger("delete_data")
    prefix = "delete-data:"
    struck = await clocked.advance_and_kill(DELETION_DELAY + 3600, "delete_data", prefix, owed)

    async def judge() -> Verdicts:
        answers = await clocked.answered(prefix, owed)
        subs = [o.subscription_id for o in owed]
        records = await clocked.database(
            "SELECT subscription_id, partner_objects FROM deletion_records"
            " WHERE subscription_id = ANY(%s)",
            subs,
        )
        purged = await clocked.database(
            "SELECT subscription_id FROM audit_log WHERE action = 'purged'"
            " AND subscription_id = ANY(%s)",
            subs,
        )
        rows = {
            r["subscription_id"]: r["state"]
            for r in await clocked.database(
                "SELECT subscription_id, state FROM subscriptions WHERE subscription_id = ANY(%s)",
                subs,
            )
        }
        left = {
            o.subscription_id: await clocked.partner.get(
                "objects", subscription_id=o.subscription_id
            )
            for o in owed
        }

        def judge_one(o: Owed) -> tuple[list[str], str]:
            mine = answers[o.subscription_id]
            recorded = [r for r in records if r["subscription_id"] == o.subscription_id]
            audited = sum(p["subscription_id"] == o.subscription_id for p in purged)
            remaining = sum(left[o.subscription_id].values())
            verdicts = []
            if rows[o.subscription_id] != "purged":
                verdicts.append("stuck")
            elif not mine or remaining or not recorded or not audited:
                verdicts.append("lost")
            if len(mine) > 1 or len(recorded) > 1 or audited > 1:
                verdicts.append("duplicated")
            firsts = [a["body"]["partner_objects"] for a in mine]
            if mine and (
                firsts[0] != o.objects or any(r["partner_objects"] != firsts[0] for r in recorded)
            ):
                verdicts.append("ambiguous")
            what = (
                f"{o.workplace} {o.service}: read model {rows[o.subscription_id]}, partner"
                f" answers {firsts} (held {o.objects}), recorded"
                f" {[r['partner_objects'] for r in recorded]}, {audited} purged entries,"
                f" {remaining} objects left"
            )
            return verdicts, what

        return _count(owed, judge_one)

    return await settle_and_record(clocked, "partner-deletion", owed, struck, judge)


def _path(o: Owed) -> str:
    return f"/v1/workplaces/{o.workplace}/services/{o.service}/subscription"


def _count(owed: list[Owed], judge_one: Any) -> Verdicts:
    counts = dict.fromkeys(COLUMNS, 0)
    notes = []
    for o in owed:
        verdicts, what = judge_one(o)
        counts["requests"] += 1
        counts["accepted"] += o.accepted
        counts["refused"] += not o.accepted
        for verdict in verdicts:
            counts[verdict] += 1
            notes.append(f"{verdict}: {what}")
    return counts, notes


async def settle_and_record(
    clocked: Clocked, name: str, owed: list[Owed], struck: dict[str, Any], judge: Any
) -> list[str]:
    """Poll until every owed action is judged clean and the matrix's invariants hold, or the
    bound runs out, moving the clock on between looks (RETRY_NUDGE); record the scenario's row
    and return what went wrong."""
    began = time.monotonic()
    deadline = began + RECOVERY_BOUND
    info = clocked.stack.info()
    client = await connect(info["temporal_address"])
    while True:
        try:
            facts = await read_facts(
                info["database_url"], clocked.partner, clocked.matrix.workplaces
            )
            broken = await violations(client, facts)
            counts, notes = await judge()
        except httpx.HTTPError as err:  # the restarted partner is not listening yet
            if time.monotonic() > deadline:
                raise
            print(f"recovery check: the partner is not reachable yet: {err!r}")
        else:
            if (not broken and not notes) or time.monotonic() > deadline:
                break
        await asyncio.sleep(1.0)
        await clocked.advance(RETRY_NUDGE)
    # Attempts beyond one per action: the calls before the kill, and the restarted partner's.
    calls = struck.get("arrived_before_kill", 0) + await clocked.calls(_operation(name))
    counts["retried"] = max(0, calls - len(owed))
    record(
        name,
        {
            "killed": "partner",
            "kills": 1,
            **struck,
            **counts,
            "resumed": 0,
            "recovery_s": round(time.monotonic() - began, 1),
            "invariants_broken": len(broken),
            "broken_at_first_look": broken[:5],
        },
    )
    problems = broken + notes
    if not struck["kills_during_burst"]:
        problems.append("the kill did not fall while the partner's calls were due")
    return problems


def _operation(name: str) -> str:
    return {"partner-plan-change": "change_plan", "partner-deletion": "delete_data"}[name]
