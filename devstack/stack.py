"""`make run`: the whole dev stack in the foreground, persisted under DATA_DIR (./.data).

embedded PostgreSQL (or DATABASE_URL) → Temporal dev server with its Web UI → worker → API and
console → demo data. Ctrl-C (SIGINT) or SIGTERM, at any moment from its first line, stops every
process this started so far, the last started first, and ends the launcher by that signal within
10 s (devstack/stopping.py). A second run finds every subscription and pending timer where it
was (Temporal's SQLite file and PostgreSQL's data directory both live under DATA_DIR).

`SANDBOX=1 make run` runs the same stack on Temporal's time-skipping server instead (see
devstack/sandbox.py): a rehearsal with its own database under DATA_DIR/sandbox.
"""

from __future__ import annotations

from devstack.stopping import StopSignals

if __name__ == "__main__":
    # First, before the imports below (about a second): from here on SIGINT and SIGTERM are the
    # launcher's, also when it was started with SIGINT ignored (a shell's background job).
    STOP = StopSignals.install()

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.demo import DEMO_WORKPLACE, seed_demo
from devstack.embedded import EmbeddedPostgres
from devstack.partner import partner_port, sandbox_partner
from devstack.process import (
    STOP_TIME,
    Children,
    close_pool,
    identity,
    require_ports,
    running,
    say,
    share_of,
    stop_leftovers,
    wait_for_port,
    wait_for_signal,
)
from devstack.stopping import Stopped, run
from domain.catalog import CatalogError, default_catalog
from services.root import build_services
from settings import Settings, load_settings, write_private
from starter.temporal import binary, connect, ensure_search_attributes
from store.db import Pool, migrate, open_pool
from workflows import search_attributes as sa

# How each child stops cleanly: PostgreSQL's fast shutdown is SIGINT (SIGTERM would wait for
# every client to disconnect); the others stop on SIGTERM.
STOP_SIGNALS = {"postgres": signal.SIGINT}


class StackFile:
    """DATA_DIR/stack.json (0600, it holds the database password): how to reach the running
    stack (the CLI, tests) and which processes are its own: the launcher and each child as
    `{"pid", "started"}` (devstack.process.identity), in start order. Rewritten whenever a child
    starts or is started again, so a test can kill exactly one process; removed at a clean stop.
    A launcher killed outright leaves it behind, and the next launcher on the same DATA_DIR
    stops the children it lists that still run (they hold the ports and the cluster) before it
    starts its own."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self.fields: dict[str, Any] = {
            "temporal_address": settings.temporal_address,
            "api_port": settings.api_port,
            "temporal_ui_port": settings.temporal_ui_port,
            "launcher": identity(os.getpid()),
            "children": {},
        }

    def take_over(self) -> None:
        """Stop what a dead launcher left running on this DATA_DIR; refuse if it still runs."""
        try:
            previous = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if "launcher" not in previous:
            return  # the sandbox's (devstack/sandbox.py, no children): left as it is
        if running(previous["launcher"]):
            raise SystemExit(
                f"[bizsupport] cannot start: another launcher (pid {previous['launcher']['pid']})"
                f" runs on {self.path.parent}. Stop it first, or set DATA_DIR."
            )
        stop_leftovers(previous.get("children") or {}, STOP_SIGNALS)
        self.path.unlink(missing_ok=True)

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        self.write()

    def children_now(self, children: Children, postgres: EmbeddedPostgres | None) -> None:
        """Record the children's current pids; written only when one changed."""
        pids = {}
        if postgres is not None and postgres.process is not None:
            pids["postgres"] = postgres.process.pid
        pids.update(children.pids())
        recorded = {name: (who or {}).get("pid") for name, who in self.fields["children"].items()}
        if recorded != pids:
            self.update(children={name: identity(pid) for name, pid in pids.items()})

    def write(self) -> None:
        write_private(self.path, json.dumps(self.fields))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def dev_server_argv(
    *, host: str, port: int, ui_port: int | None, namespace: str, db_file: Path | None
) -> list[str]:
    """The Temporal dev server's command line, with our search attributes registered. Without
    `db_file` it keeps its history in memory, without `ui_port` it has no Web UI (benchmarks)."""
    return [
        str(binary("temporal")),
        "server",
        "start-dev",
        *(["--db-filename", str(db_file)] if db_file is not None else []),
        "--ip",
        host,
        "--port",
        str(port),
        *(["--ui-port", str(ui_port)] if ui_port is not None else ["--headless"]),
        "--namespace",
        namespace,
        "--log-level",
        "warn",
        *[arg for key in sa.ALL_KEYS for arg in ("--search-attribute", f"{key.name}=Keyword")],
    ]


async def run_stack(settings: Settings, stop: StopSignals) -> None:
    """Start the stack step by step and supervise it until a stop signal. Between steps and in
    every wait it looks at `stop`; whatever point it reached, the `finally` stops what was started
    (the pool, then the children last started first, then PostgreSQL) by STOP_TIME after the
    signal."""
    data = settings.data_dir
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack_file = StackFile(data / "stack.json", settings)
    stack_file.take_over()
    host, _, tport = settings.temporal_address.rpartition(":")
    require_ports(
        {
            "Temporal": int(tport),
            "Temporal UI": settings.temporal_ui_port,
            "API": settings.api_port,
            "sandbox partner": partner_port(),
        }
    )

    postgres: EmbeddedPostgres | None = None
    children = Children(logs)
    pool: Pool | None = None
    try:
        stop.check()
        if settings.database_url:
            database_url = settings.database_url
            say("using DATABASE_URL")
        else:
            postgres = EmbeddedPostgres(data / "postgres")
            database_url = postgres.start(stop=stop)
            say(f"embedded PostgreSQL on {postgres.display_url}")
        stack_file.update(database_url=database_url)
        stack_file.children_now(children, postgres)
        stop.check()
        migrate(database_url)

        stop.check()
        temporal = children.start(
            "temporal",
            dev_server_argv(
                host=host or "127.0.0.1",
                port=int(tport),
                ui_port=settings.temporal_ui_port,
                namespace=settings.temporal_namespace,
                db_file=data / "temporal.db",
            ),
            dict(os.environ),
        )
        stack_file.children_now(children, postgres)
        wait_for_port(int(tport), "Temporal dev server", temporal, stop=stop)
        say(f"Temporal dev server on {settings.temporal_address}")

        stop.check()
        partner = sandbox_partner(data, database_url)
        partner_proc = children.start("partner", partner.argv, partner.server_env)
        stack_file.children_now(children, postgres)
        stack_file.update(partner_config=str(partner.config_file))
        wait_for_port(partner.port, "sandbox partner", partner_proc, stop=stop)
        say(f"sandbox partner on {partner.base} for {', '.join(partner.sandboxed) or 'no service'}")

        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "DATA_DIR": str(data),
            **partner.stack_env(),
        }
        if postgres is not None and "BIZSUPPORT_DEMO_LOGIN" not in os.environ:
            # The newcomer's embedded stack on loopback: the console offers "pick a demo
            # member" of the demo workplace. With DATABASE_URL it stays off unless asked for.
            env["BIZSUPPORT_DEMO_LOGIN"] = "1"
            env["BIZSUPPORT_DEMO_WORKPLACE"] = DEMO_WORKPLACE
            say("console demo login is ON (demo workplace only, loopback only, no password)")
        stop.check()
        worker = children.start("worker", [sys.executable, "worker.py"], env)
        stack_file.children_now(children, postgres)
        say(f"worker started (pid {worker.pid}, log {logs / 'worker.log'})")
        stop.check()
        api = children.start(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(settings.api_port),
            ],
            env,
        )
        stack_file.children_now(children, postgres)

        client = await stop.guard(connect(settings.temporal_address, settings.temporal_namespace))
        await stop.guard(ensure_search_attributes(client, settings.temporal_namespace))
        pool = await stop.guard(open_pool(database_url), undo=close_pool)
        wait_for_port(settings.api_port, "API", api, stop=stop)
        say(f"API on http://127.0.0.1:{settings.api_port} (pid {api.pid})")
        login = await stop.guard(
            seed_demo(
                build_services(
                    pool,
                    client,
                    default_catalog(),
                    settings.task_queue,
                    invoice_spread=settings.invoice_spread,
                ).subscriptions
            )
        )
        if postgres is not None:
            children.watch("postgres", postgres.poll, lambda: postgres.restart(stop))
        stack_file.update(ready=True)
        announce(settings, login, partner.lines())
        await wait_until_stopped(
            stop, children, lambda: stack_file.children_now(children, postgres)
        )
    finally:
        if stop.requested:
            say(f"{stop.name}: stopping what it started…")
        if pool is not None:
            await close_pool(pool)
        until = stop.deadline(STOP_TIME)
        postgres_runs = postgres is not None and postgres.poll() is None
        children.stop(until, lambda: stop.hurried, after=int(postgres_runs))
        if postgres is not None and postgres_runs:
            how = postgres.stop(share_of(until, 1), lambda: stop.hurried)
            say(f"stopped PostgreSQL{how}")
        stack_file.remove()


def announce(settings: Settings, login: str, partners: list[str]) -> None:
    base = f"http://127.0.0.1:{settings.api_port}"
    say("ready:")
    say(f"  console      {base}/console/login   (demo login: {login})")
    say(f"  API docs     {base}/docs")
    say(f"  Temporal UI  http://127.0.0.1:{settings.temporal_ui_port}   (filter: ServiceId='ubob')")
    say("  CLI          .venv/bin/python -m starter.cli list --workplace demo")
    for line in [*partners, *metrics_lines(settings)]:
        say(line)
    say("Ctrl-C stops everything.")


def metrics_lines(settings: Settings) -> list[str]:
    """Where Prometheus finds the API's and the worker's metrics (README, "Metrics")."""
    base = f"http://127.0.0.1:{settings.api_port}"
    who = "open: METRICS_PUBLIC=1" if settings.metrics_public else "bearer: CLI `token --system`"
    lines = [f"  API metrics  {base}/metrics   ({who})"]
    worker = settings.worker_metrics_address
    if worker:
        lines.append(f"  SDK metrics  http://{worker}/metrics   (the worker's Temporal SDK)")
    else:
        lines.append("  SDK metrics  off (WORKER_METRICS_PORT=0)")
    return lines


async def wait_until_stopped(
    stop: StopSignals, children: Children, restarted: Callable[[], None]
) -> None:
    def crashed() -> bool:
        children.check()  # restarts whatever died, with backoff
        restarted()
        return False

    await wait_for_signal(stop, crashed)


def main(stop: StopSignals) -> int:
    """The launcher; `stop` holds the signals taken since its first line. Ends this process by
    the stop signal (a shell reports 130 for Ctrl-C, 143 for SIGTERM) once all is stopped."""
    # A local stack: webhook endpoints on this machine (http://127.0.0.1:…) are accepted, by
    # this process's sandbox and by the API and worker it starts (docs/webhooks.md).
    os.environ.setdefault("WEBHOOK_ALLOW_LOOPBACK", "1")
    settings = load_settings()
    try:
        default_catalog()  # R-CAT-6: a malformed catalog stops start-up before anything starts
    except CatalogError as err:
        print(f"[bizsupport] cannot start: {err}", file=sys.stderr)
        return 2
    try:
        if settings.sandbox:
            from devstack.sandbox import run_sandbox

            run(run_sandbox(settings, stop))
        else:
            run(run_stack(settings, stop))
    except Stopped:
        pass
    except Exception as err:
        if not stop.requested:
            raise
        # e.g. the Ctrl-C also reached an initdb the launcher was running: the stop is the news
        say(f"start-up ended by {stop.name}: {err.__class__.__name__}: {err}")
    if stop.requested:
        say(f"stopped by {stop.name}: every process it started has ended")
        stop.exit()
    return 0


if __name__ == "__main__":
    sys.exit(main(STOP))
