"""What must hold once the stack has recovered from a kill, read from PostgreSQL and Temporal
directly (not through the API under test), and how each request of a burst turned out.

Counts per request (`tally`):
- accepted   the client got a definitive success (2xx);
- lost       accepted, but its effect is not there;
- duplicated its effect is there more than once;
- stuck      no definitive answer within the client's bound (still 503 / errors);
- ambiguous  some attempt failed (503, timeout, dropped connection), the change was in fact made,
             and the answer the retry finally got was not the first outcome (not a success);
- refused    a definitive refusal whose change was not made (the script never expects one).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.faults.burst import Outcome
from tests.faults.stack import PartnerAdmin
from workflows.subscription import SubscriptionWorkflow, workflow_id

TRANSIENT = ("applied", "plan_changing")
LIVE = ("applied", "active", "plan_changing")
COLUMNS = ("requests", "accepted", "lost", "duplicated", "stuck", "ambiguous", "refused", "retried")


@dataclass
class Facts:
    """The rows of the burst's workplaces, read once after recovery."""

    subscriptions: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    usage: list[dict[str, Any]]
    accounts: list[dict[str, Any]]
    invoices: list[dict[str, Any]]
    open_keys: list[dict[str, Any]]


async def read_facts(database_url: str, partner: PartnerAdmin, workplaces: list[str]) -> Facts:
    async with await psycopg.AsyncConnection.connect(
        database_url, row_factory=dict_row, connect_timeout=5
    ) as conn:

        async def rows(sql: str, *params: Any) -> list[dict[str, Any]]:
            return await (await conn.execute(sql, params)).fetchall()

        callers = [f"{wp}/%" for wp in workplaces]
        return Facts(
            subscriptions=await rows(
                "SELECT * FROM subscriptions WHERE workplace_id = ANY(%s)", workplaces
            ),
            audit=await rows(
                "SELECT subscription_id, workplace_id, service_id, actor, action,"
                " details::text AS details_text, details"
                " FROM audit_log WHERE workplace_id = ANY(%s)",
                workplaces,
            ),
            usage=await rows(
                "SELECT u.subscription_id, u.member_id FROM usage_permissions u"
                " JOIN subscriptions s USING (subscription_id) WHERE s.workplace_id = ANY(%s)",
                workplaces,
            ),
            accounts=await partner.accounts(workplaces),  # from the sandbox partner server
            invoices=await rows(
                "SELECT i.subscription_id, i.period FROM invoices i"
                " JOIN subscriptions s USING (subscription_id) WHERE s.workplace_id = ANY(%s)",
                workplaces,
            ),
            open_keys=await rows(
                "SELECT caller, key, owner, lease_until, attempts FROM idempotency_keys"
                " WHERE status IS NULL AND caller LIKE ANY(%s)",
                callers,
            ),
        )


async def violations(client: Client, facts: Facts) -> list[str]:
    """Every invariant the recovered stack breaks (empty: all hold)."""
    found: list[str] = []
    found += await _workflows_match_read_model(client, facts)
    found += _partner_accounts(facts)
    duplicates = Counter(
        (a["subscription_id"], a["action"], a["actor"], a["details_text"]) for a in facts.audit
    )
    found += [
        f"audit entry {entry[:3]} recorded {n} times" for entry, n in duplicates.items() if n > 1
    ]
    invoices = Counter((i["subscription_id"], i["period"]) for i in facts.invoices)
    found += [
        f"{n} invoices for {sub} in {period}" for (sub, period), n in invoices.items() if n > 1
    ]
    found += [
        f"Idempotency-Key {k['key']} of {k['caller']} left in progress (owner {k['owner']},"
        f" lease until {k['lease_until']}, {k['attempts']} attempts)"
        for k in facts.open_keys
    ]
    return found


async def _workflows_match_read_model(client: Client, facts: Facts) -> list[str]:
    found = []
    usage: dict[str, set[str]] = {}
    for u in facts.usage:
        usage.setdefault(u["subscription_id"], set()).add(u["member_id"])
    for row in facts.subscriptions:
        sub = row["subscription_id"]
        where = f"{sub} ({row['workplace_id']}, {row['service_id']})"
        if row["state"] in TRANSIENT:
            found.append(f"{where} is left {row['state']!r} in the read model")
        handle = client.get_workflow_handle_for(SubscriptionWorkflow.run, workflow_id(sub))
        try:
            status = await handle.query(SubscriptionWorkflow.status)
            data = await handle.query(SubscriptionWorkflow.data_query)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                found.append(f"{where}: a reservation without a workflow ({row['state']})")
            else:
                found.append(f"{where}: its workflow cannot be queried: {err}")
            continue
        if status.state in TRANSIENT:
            found.append(f"{where}: the workflow is left {status.state!r}")
        workflow_side = (status.state, status.plan_id, status.usage_permission_count, status.seq)
        read_side = (row["state"], row["plan_id"], row["usage_permission_count"], row["status_seq"])
        if workflow_side != read_side:
            found.append(
                f"{where}: workflow (state, plan, seats, seq) {workflow_side} != read model"
                f" {read_side}"
            )
        if status.state != "purged" and set(data.usage_holders) != usage.get(sub, set()):
            found.append(
                f"{where}: workflow seats {sorted(data.usage_holders)} != usage_permissions"
                f" {sorted(usage.get(sub, set()))}"
            )
    return found


def _partner_accounts(facts: Facts) -> list[str]:
    found = []
    accounts: dict[str, list[dict[str, Any]]] = {}
    for a in facts.accounts:
        accounts.setdefault(a["subscription_id"], []).append(a)
    known = {row["subscription_id"]: row for row in facts.subscriptions}
    found += [
        f"partner account for unknown subscription {sub}" for sub in accounts if sub not in known
    ]
    for sub, row in known.items():
        mine = accounts.get(sub, [])
        if row["state"] in LIVE:
            if [a["status"] for a in mine] != ["active"]:
                found.append(f"live {sub} ({row['service_id']}) has partner accounts {mine}")
        elif any(a["status"] == "active" for a in mine):
            found.append(f"{row['state']} {sub} ({row['service_id']}) has an active account")
    active = Counter(
        (a["workplace_id"], a["service_id"]) for a in facts.accounts if a["status"] == "active"
    )
    found += [f"{n} active partner accounts for {slot}" for slot, n in active.items() if n > 1]
    return found


def effects(outcome: Outcome, facts: Facts) -> int:
    """How many times the request's change is present."""
    step, wp = outcome.step, outcome.workplace
    if step.kind == "apply":
        return sum(
            1
            for s in facts.subscriptions
            if s["workplace_id"] == wp and s["service_id"] == step.service
        )
    action = {
        "grant": "usage_granted",
        "revoke": "usage_revoked",
        "plan_change": "plan_change_scheduled",
        "cancel": "cancelled",
    }[step.kind]
    member = f"{wp}-{step.member}" if step.member else None
    return sum(
        1
        for a in facts.audit
        if a["workplace_id"] == wp
        and a["service_id"] == step.service
        and a["action"] == action
        and a["actor"] == f"{wp}-rep"
        and (member is None or a["details"].get("member_id") == member)
        and (step.plan is None or a["details"].get("plan_id") == step.plan)
    )


def tally(outcomes: list[Outcome], facts: Facts) -> tuple[dict[str, int], list[str]]:
    """The counts of the module docstring, and one line per request that was not clean."""
    counts = dict.fromkeys(COLUMNS, 0)
    notes = []
    for o in outcomes:
        n = effects(o, facts)
        counts["requests"] += 1
        counts["retried"] += o.retried
        what = f"{o.workplace} {o.step.describe()}: attempts {o.attempts}, effect x{n}"
        verdicts = []
        if o.accepted:
            counts["accepted"] += 1
            if n == 0:
                verdicts.append("lost")
        if n > 1:
            verdicts.append("duplicated")
        if o.status is None:
            verdicts.append("stuck")
        elif not o.accepted:
            verdicts.append("ambiguous" if n >= 1 and o.retried else "refused")
            what += f", answer {o.body}"
        for verdict in verdicts:
            counts[verdict] += 1
            notes.append(f"{verdict}: {what}")
    return counts, notes
