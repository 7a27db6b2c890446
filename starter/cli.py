"""Command line for operators: `python -m starter.cli COMMAND …`.

Talks to the same service layer as the API. Finds the running dev stack through
DATA_DIR/stack.json (written by `make run`), or DATABASE_URL and TEMPORAL_ADDRESS.

    apply        --workplace demo --service ubob --plan ubob-basic [--as demo-rep]
    cancel       --workplace demo --service ubob
    status       --workplace demo --service ubob
    list         --workplace demo
    change-plan  --workplace demo --service ubob --plan ubob-premium [--when next_window]
    invoices     --workplace demo --service ubob
    token        --workplace demo --member demo-rep   |   token --system
    reconcile    [--older-than 60] [--workplace demo] [--all]   one reconciliation pass: start
                 workflows of reservations that have none, repair read-model rows behind their
                 workflow (--all: compare every row, e.g. after a restore), suspend partner
                 accounts of ended subscriptions; prints the counts, audits each repair
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import to_jsonable_python

from domain.catalog import default_catalog
from domain.errors import BizError
from partners.config import CONFIG_FILE_SETTING
from services.root import Services, build_services
from settings import auth_secret, load_settings
from starter.temporal import connect, partner_gateway
from store.db import open_pool


def _connection() -> tuple[str, str]:
    settings = load_settings()
    stack_file = settings.data_dir / "stack.json"
    if settings.database_url:
        return settings.database_url, settings.temporal_address
    if stack_file.exists():
        stack = json.loads(stack_file.read_text())
        return stack["database_url"], stack["temporal_address"]
    raise SystemExit(
        "No running stack found: start one with `make run`, or set DATABASE_URL and "
        "TEMPORAL_ADDRESS."
    )


def _partner_config() -> None:
    """The running stack's partner wiring (its sandbox partner for the services not set), unless
    BIZSUPPORT_PARTNER_CONFIG is set here (docs/partners.md)."""
    stack_file = load_settings().data_dir / "stack.json"
    if CONFIG_FILE_SETTING in os.environ or not stack_file.exists():
        return
    wiring = json.loads(stack_file.read_text()).get("partner_config")
    if wiring:
        os.environ[CONFIG_FILE_SETTING] = wiring


def _json(value: Any) -> str:
    """Service models as JSON: times in Seoul time with their offset, money as whole won."""
    return json.dumps(to_jsonable_python(value, by_alias=True), ensure_ascii=False, indent=2)


async def _with_services(action: Callable[[Services], Awaitable[Any]]) -> Any:
    database_url, temporal_address = _connection()
    settings = load_settings()
    pool = await open_pool(database_url, max_size=4)
    try:
        client = await connect(temporal_address, settings.temporal_namespace)
        services = build_services(
            pool,
            client,
            default_catalog(),
            settings.task_queue,
            invoice_spread=settings.invoice_spread,
        )
        return await action(services)
    finally:
        await pool.close()


async def _run(args: argparse.Namespace) -> Any:
    if args.command == "token":
        return _token(args)
    if args.command == "reconcile":
        from services.reconcile import reconcile

        _partner_config()
        older_than = timedelta(seconds=args.older_than)
        return await _with_services(
            lambda services: reconcile(
                services.subscriptions,
                partner_gateway(services.pool),
                older_than=older_than,
                workplace_id=args.workplace,
                everything=args.all,
            )
        )

    async def act(services: Services) -> Any:
        service = services.subscriptions
        actor = args.actor or (await services.directory.representative(args.workplace)).member_id
        common = {"workplace_id": args.workplace, "actor_id": actor}
        if args.command == "list":
            return await service.list_for(args.workplace)
        if args.command == "apply":
            svc = service.authz.service(args.service)
            return await service.apply(
                **common,
                service_id=args.service,
                plan_id=args.plan,
                terms_version=svc.terms.version,
                agree_terms=True,
            )
        if args.command == "cancel":
            return await service.cancel(**common, service_id=args.service)
        if args.command == "status":
            return await service.status(**common, service_id=args.service)
        if args.command == "change-plan":
            return await service.change_plan(
                **common,
                service_id=args.service,
                plan_id=args.plan,
                when=args.when,
                confirm_course_reset=args.confirm,
            )
        if args.command == "invoices":
            return await services.billing.invoices(**common, service_id=args.service)
        raise AssertionError(args.command)

    return await _with_services(act)


def _token(args: argparse.Namespace) -> str:
    from domain.tokens import mint_access_token

    secret = auth_secret(load_settings())
    now = datetime.now(UTC)
    if args.system:
        return mint_access_token(secret, member_id=None, workplace_id=None, role="system", now=now)
    if not (args.workplace and args.member):
        raise SystemExit("token needs --workplace and --member (or --system)")
    return mint_access_token(secret, member_id=args.member, workplace_id=args.workplace, now=now)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m starter.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, *, service: bool = True, plan: bool = False) -> argparse.ArgumentParser:
        c = sub.add_parser(name)
        c.add_argument("--workplace", required=True)
        if service:
            c.add_argument("--service", required=True)
        if plan:
            c.add_argument("--plan")
        c.add_argument("--as", dest="actor", help="acting member (default: representative admin)")
        return c

    command("apply", plan=True)
    command("cancel")
    command("status")
    command("list", service=False)
    change = command("change-plan", plan=True)
    change.add_argument("--when", choices=["now", "next_window"], default="now")
    change.add_argument("--confirm", action="store_true", help="stop courses in progress")
    command("invoices")
    token = sub.add_parser("token", help="mint an API token for local use")
    token.add_argument("--workplace")
    token.add_argument("--member")
    token.add_argument("--system", action="store_true")
    reconcile = sub.add_parser(
        "reconcile",
        help="repair reservations without a workflow, read-model drift, orphaned partner accounts",
    )
    reconcile.add_argument(
        "--older-than", type=float, default=60.0, help="reservations older than (s, default 60)"
    )
    reconcile.add_argument("--workplace", help="only this workplace's subscriptions and accounts")
    reconcile.add_argument(
        "--all",
        action="store_true",
        help="compare every published row with its workflow, not only the suspect ones",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "change-plan" and not args.plan:
        print("change-plan needs --plan", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_run(args))
    except BizError as refused:
        print(_json(refused.body()), file=sys.stderr)
        return 1
    print(result if isinstance(result, str) else _json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
