"""History events per busy subscription-year (issue 12): a ubob subscription through a year.

    python bench/history_events.py [--weeks 52] [--members 5] [--member-every 4]

Starts embedded PostgreSQL (or uses DATABASE_URL) and Temporal's time-skipping server, with a
worker built by starter/temporal.py in this process; removes both at the end. Everything goes
through the service layer, as the API would send it, never the workflow's internals:

- a workplace with a representative admin and `--members` members (DirectoryService), which
  applies for `ubob` (the e-learning service that grants every member automatically);
- every `--member-every` simulated weeks (default 4: the issue's "joins, leaves, plan changes
  monthly"; 1 for weekly; one `env.sleep` of 7 days per week): a new member joins and the
  longest-standing member leaves (DirectoryService.put_member / remove_member: the
  `member_joined` and `member_left` signals);
- once a Seoul month, where the rules allow it (R-PLAN-2, -3), a plan change `now` to the other
  ubob plan (SubscriptionService.change_plan); a week whose window is closed tries again the
  next week;
- the invoices, plan-change and other timers fire as they come due.

At the end it walks every run of the workflow (continue-as-new) with `fetch_history`, and prints
the events per run and in total, per simulated year, the events by type and the activities by
type. The issue's goal: ≤ 600 events per busy subscription-year.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import loadavg, machine_line, postgres, sandbox_partner, tag, time_skipping

PLANS = ("ubob-basic", "ubob-standard")


async def runs_of(client: Any, workflow_id: str, first_run: str) -> list[tuple[str, list[Any]]]:
    """(run id, events) of every run from ``first_run``, following continue-as-new."""
    runs = []
    run_id: str | None = first_run
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        events = list(history.events)
        runs.append((run_id, events))
        last = events[-1] if events else None
        run_id = None
        if last is not None and last.HasField(
            "workflow_execution_continued_as_new_event_attributes"
        ):
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs


async def run(args: argparse.Namespace) -> int:
    from temporalio.api.enums.v1 import EventType

    from domain.calendar import period_of
    from domain.catalog import default_catalog
    from domain.errors import BizError
    from services.root import build_services
    from starter.temporal import build_worker
    from workflows.subscription import workflow_id

    load_start = loadavg()
    print(machine_line(), flush=True)
    run_tag = tag()
    queue = f"bench-hist-{run_tag}"
    wp, rep = f"hist-{run_tag}", f"hist-{run_tag}-rep"
    counts: Counter[str] = Counter()
    wall = time.perf_counter()
    async with (
        postgres(pool_size=10) as (url, pool),
        sandbox_partner(url),
        time_skipping() as env,
    ):
        services = build_services(
            pool, env.client, default_catalog(), queue, clock=env.get_current_time
        )
        service, directory = services.subscriptions, services.directory
        async with build_worker(env.client, pool, queue):
            await directory.put_workplace(
                wp, wp, {"member_id": rep, "login_id": rep, "name": "대표"}
            )
            present = [f"{wp}-m{i:03d}" for i in range(args.members)]
            for member in present:
                await directory.put_member(
                    wp, member, login_id=member, name="구성원", role="member"
                )
            status = await service.apply(
                workplace_id=wp,
                service_id="ubob",
                actor_id=rep,
                plan_id=PLANS[0],
                terms_version=service.authz.service("ubob").terms.version,
                agree_terms=True,
                wait_seconds=60,
            )
            if status.state != "active":
                raise RuntimeError(f"the ubob subscription is {status.state}, not active")
            wid = workflow_id(status.subscription_id)
            first_run = (await service.handle(status.subscription_id).describe()).run_id
            assert first_run is not None
            started_at = await env.get_current_time()
            plan, changed_in = PLANS[0], None
            for week in range(args.weeks):
                await env.sleep(timedelta(days=7))
                if week % args.member_every == 0:
                    joining = f"{wp}-w{week:03d}"
                    await directory.put_member(
                        wp, joining, login_id=joining, name="신입", role="member"
                    )
                    present.append(joining)
                    await directory.remove_member(wp, present.pop(0))
                    counts["members joined"] += 1
                    counts["members left"] += 1
                month = period_of(await env.get_current_time())
                if changed_in != month:
                    other = PLANS[1] if plan == PLANS[0] else PLANS[0]
                    try:
                        await service.change_plan(
                            workplace_id=wp,
                            service_id="ubob",
                            actor_id=rep,
                            plan_id=other,
                            when="now",
                            confirm_course_reset=True,
                        )
                        plan, changed_in = other, month
                        counts["plan changes made"] += 1
                    except BizError as refusal:
                        counts[f"plan changes refused ({refusal.code})"] += 1
            # Let the last week's effects land before reading the history.
            await env.sleep(timedelta(hours=1))
            ended_at = await env.get_current_time()
            runs = await runs_of(env.client, wid, first_run)
    seconds = time.perf_counter() - wall
    report(args, runs, counts, (ended_at - started_at).days, seconds, load_start, EventType)
    return 0


def report(
    args: argparse.Namespace,
    runs: list[tuple[str, list[Any]]],
    counts: Counter[str],
    days: int,
    seconds: float,
    load_start: str,
    event_type: Any,
) -> None:
    events: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    signals: Counter[str] = Counter()
    updates: Counter[str] = Counter()
    for _, history in runs:
        for event in history:
            events[event_type.Name(event.event_type).removeprefix("EVENT_TYPE_")] += 1
            if event.HasField("activity_task_scheduled_event_attributes"):
                activities[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
            if event.HasField("workflow_execution_signaled_event_attributes"):
                signals[event.workflow_execution_signaled_event_attributes.signal_name] += 1
            if event.HasField("workflow_execution_update_accepted_event_attributes"):
                name = event.workflow_execution_update_accepted_event_attributes.accepted_request
                updates[name.input.name] += 1
    total = sum(events.values())
    per_year = total * 365 / max(days, 1)
    print()
    print(
        f"history events of one busy ubob subscription over {days} simulated days"
        f" ({args.weeks} weeks, {args.members} members at start, a member joins and one leaves"
        f" every {args.member_every} week(s)), run in {seconds:.0f} s"
    )
    print(f"load average (1, 5, 15 min): {load_start} at the start, {loadavg()} at the end")
    print("what happened: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"runs (continue-as-new): {len(runs)}")
    for run_id, history in runs:
        print(f"  run {run_id[:8]}…: {len(history)} events")
    print(f"events in total: {total}; per 365 days: {per_year:.0f}")
    verdict = "met" if per_year <= 600 else "NOT met"
    print(
        f"goal ≤ 600 events per busy subscription-year: {verdict} ({per_year / 600:.2f}× the goal)"
    )
    print(f"activities ({sum(activities.values())}) by type:")
    for name, n in activities.most_common():
        print(f"  {n:5d}  {name}")
    print(f"signals: {dict(signals)}; updates: {dict(updates)}")
    print("events by type:")
    for name, n in events.most_common():
        print(f"  {n:5d}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=52, help="simulated weeks (default 52)")
    parser.add_argument("--members", type=int, default=5, help="members at the start (default 5)")
    parser.add_argument(
        "--member-every",
        type=int,
        default=4,
        help="weeks between a member joining and one leaving: 4 (default) is the issue's busy"
        " subscription (joins, leaves, plan changes monthly); 1 is weekly",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
