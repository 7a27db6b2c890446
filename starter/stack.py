"""`make run`: the whole dev stack in the foreground, persisted under DATA_DIR (./.data).

embedded PostgreSQL (or DATABASE_URL) → Temporal dev server with its Web UI → worker → API and
console → demo data. Ctrl-C stops every process this started, in reverse order. A second run
finds every subscription and pending timer where it was (Temporal's SQLite file and PostgreSQL's
data directory both live under DATA_DIR).

`SANDBOX=1 make run` runs the same stack on Temporal's time-skipping server instead (see
starter/sandbox.py): a rehearsal with its own database under DATA_DIR/sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from domain.catalog import CatalogError, default_catalog
from settings import REPO_ROOT, Settings, load_settings
from starter.demo import seed_demo
from starter.subscriptions import SubscriptionService
from starter.temporal import binary, connect, ensure_search_attributes
from store.db import migrate, open_pool
from store.embedded import EmbeddedPostgres
from workflows import search_attributes as sa

UI_PORT = 8233


def say(message: str) -> None:
    print(f"[bizsupport] {message}", flush=True)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_ports(ports: dict[str, int]) -> None:
    busy = [
        f"{name} port {port}" for name, port in ports.items() if not port_free("127.0.0.1", port)
    ]
    if busy:
        raise SystemExit(
            f"[bizsupport] cannot start: {', '.join(busy)} already in use "
            "(another `make run`?). Stop it, or set API_PORT for the API."
        )


class Children:
    """Processes this launcher started; stopped in reverse order, only these."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.restartable: dict[str, tuple[list[str], dict[str, str]]] = {}

    def start(
        self, name: str, argv: list[str], env: dict[str, str], *, restart: bool = False
    ) -> subprocess.Popen[bytes]:
        proc = self._spawn(name, argv, env)
        self.procs.append((name, proc))
        if restart:
            self.restartable[name] = (argv, env)
        return proc

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")
        return subprocess.Popen(
            argv,
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check(self) -> None:
        """A crashed worker is started again (Temporal resumes its work); others end the stack."""
        for index, (name, proc) in enumerate(self.procs):
            code = proc.poll()
            if code is None:
                continue
            if name not in self.restartable:
                raise RuntimeError(f"{name} exited with {code}; see {self.logs / (name + '.log')}")
            say(f"{name} exited with {code}; starting it again")
            self.procs[index] = (name, self._spawn(name, *self.restartable[name]))

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                say(f"stopped {name}")


def wait_for_port(port: int, what: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start (code {proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not open port {port} in {timeout:.0f} s")
        time.sleep(0.2)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def run_stack(settings: Settings) -> None:
    data = settings.data_dir
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    host, _, tport = settings.temporal_address.rpartition(":")
    require_ports({"Temporal": int(tport), "Temporal UI": UI_PORT, "API": settings.api_port})

    postgres: EmbeddedPostgres | None = None
    children = Children(logs)
    try:
        if settings.database_url:
            database_url = settings.database_url
            say("using DATABASE_URL")
        else:
            postgres = EmbeddedPostgres(data / "postgres")
            database_url = postgres.start()
            say(f"embedded PostgreSQL on {database_url}")
        migrate(database_url)

        temporal = children.start(
            "temporal",
            [
                str(binary("temporal")),
                "server",
                "start-dev",
                "--db-filename",
                str(data / "temporal.db"),
                "--ip",
                host or "127.0.0.1",
                "--port",
                tport,
                "--ui-port",
                str(UI_PORT),
                "--namespace",
                settings.temporal_namespace,
                "--log-level",
                "warn",
                *[
                    arg
                    for key in sa.ALL_KEYS
                    for arg in ("--search-attribute", f"{key.name}=Keyword")
                ],
            ],
            dict(os.environ),
        )
        wait_for_port(int(tport), "Temporal dev server", temporal)
        say(f"Temporal dev server on {settings.temporal_address}")

        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "DATA_DIR": str(data),
            # a local stack: the console offers "pick a demo member" next to pasting a token
            "BIZSUPPORT_DEMO_LOGIN": "1",
        }
        (data / "stack.json").write_text(
            json.dumps(
                {
                    "database_url": database_url,
                    "temporal_address": settings.temporal_address,
                }
            )
        )
        children.start("worker", [sys.executable, "worker.py"], env, restart=True)
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

        async with AsyncExitStack() as stack:
            client = await connect(settings.temporal_address, settings.temporal_namespace)
            await ensure_search_attributes(client, settings.temporal_namespace)
            pool = await open_pool(database_url)
            stack.push_async_callback(pool.close)
            wait_for_port(settings.api_port, "API", api)
            login = await seed_demo(
                SubscriptionService(pool, client, default_catalog(), settings.task_queue)
            )
            announce(settings, login)
            await wait_until_stopped(children)
    finally:
        children.stop()
        if postgres is not None:
            postgres.stop()
            say("stopped PostgreSQL")
        (data / "stack.json").unlink(missing_ok=True)


def announce_sandbox(settings: Settings, login: str) -> None:
    base = f"http://127.0.0.1:{settings.api_port}"
    say("sandbox ready: business time runs at wall speed and jumps when you advance it")
    say(f"  console      {base}/console/login?wp=demo   (demo login: {login})")
    say(f"  API docs     {base}/docs")
    say(f"  clock        GET {base}/v1/sandbox/clock · POST {base}/v1/sandbox/clock/advance")
    say("Ctrl-C stops everything.")


def announce(settings: Settings, login: str) -> None:
    base = f"http://127.0.0.1:{settings.api_port}"
    say("ready:")
    say(f"  console      {base}/console/login?wp=demo   (demo login: {login})")
    say(f"  API docs     {base}/docs")
    say(f"  Temporal UI  http://127.0.0.1:{UI_PORT}   (filter: ServiceId='ubob')")
    say("  CLI          .venv/bin/python -m starter.cli list --workplace demo")
    say("Ctrl-C stops everything.")


async def wait_until_stopped(children: Children) -> None:
    def crashed() -> bool:
        children.check()  # raises when a process that is not restarted has died
        return False

    await wait_for_signal(crashed)


async def wait_for_signal(failed: Callable[[], bool]) -> None:
    """Until Ctrl-C or SIGTERM; `failed` is polled each second and ends the wait when true."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set() and not failed():
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            pass
    say("stopping…")


def main() -> int:
    settings = load_settings()
    try:
        default_catalog()  # R-CAT-6: a malformed catalog stops start-up before anything starts
    except CatalogError as err:
        print(f"[bizsupport] cannot start: {err}", file=sys.stderr)
        return 2
    if settings.sandbox:
        from starter.sandbox import run_sandbox

        asyncio.run(run_sandbox(settings))
    else:
        asyncio.run(run_stack(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
