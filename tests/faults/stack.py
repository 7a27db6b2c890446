"""The real dev stack (`python -m devstack.stack`, what `make run` starts) on free ports and a
temporary DATA_DIR, for the kill matrix: start it, find one of its processes in stack.json, kill
exactly that one, wait for the launcher to bring it back, stop everything, destroy the cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from devstack.embedded import EmbeddedPostgres, free_port
from devstack.process import identity, running, stop_leftovers
from devstack.stack import STOP_SIGNALS
from settings import REPO_ROOT

START_TIMEOUT = 120.0


class StackError(RuntimeError):
    """The stack did not come up, or not back; the message carries the logs' tails."""

    def __init__(self, message: str, stack: DevStack) -> None:
        super().__init__(f"{message}\n{stack.log_tail()}")


class PartnerAdmin:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    async def accounts(self, workplaces: list[str]) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(
                f"{self.base}/sandbox/accounts",
                params={"workplace_id": workplaces},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found

    async def get(self, path: str, **params: Any) -> Any:
        """Any of the admin endpoint's reads (`calls`, `answers`, `objects`…)."""
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(
                f"{self.base}/sandbox/{path}",
                params=params,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        answer.raise_for_status()
        return answer.json()

    async def send(self, path: str, body: dict[str, Any], method: str = "POST") -> Any:
        """A change through the admin endpoint (`faults`, `documents`…)."""
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.request(
                method,
                f"{self.base}/sandbox/{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        answer.raise_for_status()
        return answer.json()


class DevStack:
    """`make run` on free ports; with `sandbox`, `SANDBOX=1 make run` (the time-skipping server
    and its sandbox clock, one process with the sandbox partner server as its supervised child),
    for the scenarios that need business time to pass."""

    def __init__(self, *, sandbox: bool = False) -> None:
        self.sandbox = sandbox
        self.data = Path(tempfile.mkdtemp(prefix="bizsupport-faults-"))
        # where the stack keeps its cluster and its sandbox partner's secrets
        self.root = self.data / "sandbox" if sandbox else self.data
        self.api_port = free_port()
        self.temporal_port = free_port()
        self.partner_port = free_port()
        self.env = {
            **os.environ,
            "DATA_DIR": str(self.data),
            "API_PORT": str(self.api_port),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
            "TEMPORAL_UI_PORT": str(free_port()),
            "SANDBOX_PARTNER_PORT": str(self.partner_port),
            "WORKER_METRICS_PORT": "0",  # the worker's SDK metrics would take the fixed 9464
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("DATABASE_URL", "SANDBOX", "BIZSUPPORT_AUTH_SECRET"):
            self.env.pop(name, None)
        for name in [n for n in self.env if n.startswith("BIZSUPPORT_PARTNER_")]:
            self.env.pop(name)  # every service goes to the stack's own sandbox partner
        if sandbox:
            self.env["SANDBOX"] = "1"
        self.launcher: subprocess.Popen[bytes] | None = None
        self.launches = 0

    @property
    def stack_file(self) -> Path:
        return self.data / "stack.json"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def launcher_log(self) -> Path:
        return self.data / f"launcher-{self.launches}.log"

    def auth_secret(self) -> str:
        """The secret the stack signs and checks access tokens with (made at its first start)."""
        return (self.data / "auth-secret").read_text().strip()

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.stack_file.read_text())
        return info

    def partner(self) -> PartnerAdmin:
        """The stack's sandbox partner server, through its admin endpoint."""
        token = json.loads((self.root / "sandbox-partner.json").read_text())["admin_token"]
        return PartnerAdmin(f"http://127.0.0.1:{self.partner_port}", token)

    def start(self) -> None:
        """Start the launcher (again, on the same DATA_DIR, as `make run` would) and wait until
        it says it is ready and the API answers."""
        self.launches += 1
        with open(self.launcher_log, "wb") as log:
            self.launcher = subprocess.Popen(
                [sys.executable, "-m", "devstack.stack"],
                env=self.env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if self.launcher.poll() is not None:
                raise StackError(f"the launcher exited with {self.launcher.returncode}", self)
            if time.monotonic() > deadline:
                raise StackError(f"the stack was not ready in {START_TIMEOUT:.0f} s", self)
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            info = self.info()
        except (OSError, ValueError):
            return False
        if not info.get("ready"):
            return False
        # A sandbox's stack.json names no launcher; its DATA_DIR is this stack's alone.
        if not self.sandbox and info.get("launcher", {}).get("pid") != self.launcher_pid():
            return False
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def launcher_pid(self) -> int | None:
        return None if self.launcher is None else self.launcher.pid

    def child(self, name: str) -> dict[str, int]:
        """The identity (pid, start time) of one of the launcher's children as it runs now."""
        who: dict[str, int] = self.info()["children"][name]
        return who

    def kill(self, name: str) -> dict[str, int]:
        """SIGKILL exactly one process: a child by name, or "launcher". Returns what was killed."""
        if name == "launcher":
            assert self.launcher is not None
            victim = identity(self.launcher.pid)
            assert victim is not None, "the launcher is not running"
            self.launcher.kill()
            self.launcher.wait()
            return victim
        victim = self.child(name)
        assert running(victim), f"{name} is not running: {victim}"
        os.kill(victim["pid"], signal.SIGKILL)
        return victim

    def wait_restarted(self, name: str, victim: dict[str, int], timeout: float = 60.0) -> None:
        """Until the launcher has started `name` again (a new process in stack.json)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                now = self.child(name)
                if now != victim and running(now):
                    return
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise StackError(f"{name} was not started again within {timeout:.0f} s", self)
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the launcher (it stops its children); if it was killed, stop what it left."""
        if self.launcher is not None and self.launcher.poll() is None:
            self.launcher.send_signal(signal.SIGTERM)
            try:
                self.launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.launcher.kill()
                self.launcher.wait()
        try:
            stop_leftovers(self.info().get("children") or {}, STOP_SIGNALS)
        except (OSError, ValueError):
            pass  # no stack.json: the launcher stopped cleanly

    def destroy(self) -> None:
        """Stop everything and remove DATA_DIR with its embedded cluster."""
        try:
            self.stop()
        finally:
            EmbeddedPostgres(self.root / "postgres").destroy()
            shutil.rmtree(self.data, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for log in [self.launcher_log, *sorted((self.data / "logs").glob("*.log"))]:
            try:
                parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
            except OSError:
                continue
        return "\n".join(parts)
