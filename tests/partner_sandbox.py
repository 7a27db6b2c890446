"""The sandbox partner server as a separate process for the suite, and its admin endpoint.

tests/conftest.py starts one per session and points every service at it through the
environment (BIZSUPPORT_PARTNER_URL_/SECRET_<SERVICE>), so every worker the suite builds, in
process or in a child process, calls it over real HTTP."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from domain.catalog import default_catalog
from partners.config import secret_setting, url_setting
from partners.sandbox_server import ADMIN_TOKEN_SETTING

REPO = Path(__file__).resolve().parents[1]

_session: SandboxPartnerProcess | None = None


def session_partner() -> SandboxPartnerProcess:
    """The session's server (tests/conftest.py: partner_server, which every test using `pool`
    has started), for helpers that look at the partner's side."""
    if _session is None:
        raise RuntimeError("no sandbox partner server: the test needs the `pool` fixture")
    return _session


def set_session_partner(server: SandboxPartnerProcess | None) -> None:
    global _session
    _session = server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class SandboxPartnerProcess:
    """`python -m partners.sandbox_server` on a free loopback port, with fresh secrets."""

    def __init__(self, database_url: str, log_path: Path, *, schema: str = "sandbox_partner"):
        self.database_url = database_url
        self.schema = schema
        self.port = free_port()
        self.token = secrets.token_urlsafe(24)
        self.services = default_catalog().service_ids
        self.secrets = {sid: new_secret() for sid in self.services}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, service_id: str) -> str:
        return f"{self.base}/{service_id}"

    def bizsupport_env(self) -> dict[str, str]:
        """What a worker needs to call this server for every service."""
        env = {}
        for sid in self.services:
            env[url_setting(sid)] = self.url(sid)
            env[secret_setting(sid)] = self.secrets[sid]
        return env

    def start(self) -> None:
        env = {
            **os.environ,
            **{secret_setting(sid): s for sid, s in self.secrets.items()},
            ADMIN_TOKEN_SETTING: self.token,
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "partners.sandbox_server",
                    "--port",
                    str(self.port),
                    "--database-url",
                    self.database_url,
                    "--schema",
                    self.schema,
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sandbox partner exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/sandbox/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("sandbox partner did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    # ── the admin endpoint ───────────────────────────────────────────────────────────────────

    async def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            response = await client.request(
                method, path, headers={"Authorization": f"Bearer {self.token}"}, **kwargs
            )
        response.raise_for_status()
        return response.json()

    async def fault(self, kind: str, service_id: str, **fields: Any) -> None:
        await self._admin(
            "PUT", "/sandbox/faults", json={"kind": kind, "service_id": service_id, **fields}
        )

    async def clear_faults(self, **where: str) -> None:
        await self._admin("DELETE", "/sandbox/faults", params=where)

    async def accounts(self, **where: str) -> list[dict[str, Any]]:
        return await self._admin("GET", "/sandbox/accounts", params=where)  # type: ignore[no-any-return]

    async def account(self, subscription_id: str) -> dict[str, Any] | None:
        found = await self.accounts(subscription_id=subscription_id)
        return found[0] if found else None

    async def set_account_status(self, subscription_id: str, status: str) -> None:
        await self._admin(
            "PUT", f"/sandbox/accounts/{subscription_id}/status", json={"status": status}
        )

    async def account_status(self, subscription_id: str) -> str | None:
        found = await self.account(subscription_id)
        return None if found is None else str(found["status"])

    async def objects(self, subscription_id: str) -> dict[str, int]:
        return await self._admin(  # type: ignore[no-any-return]
            "GET", "/sandbox/objects", params={"subscription_id": subscription_id}
        )

    async def add_learning_record(
        self,
        subscription_id: str,
        member_id: str,
        course_id: str,
        status: str = "in_progress",
        progress: int = 0,
    ) -> None:
        await self._admin(
            "POST",
            "/sandbox/learning-records",
            json={
                "subscription_id": subscription_id,
                "member_id": member_id,
                "course_id": course_id,
                "status": status,
                "progress": progress,
            },
        )

    async def learning_records(self, subscription_id: str) -> list[dict[str, Any]]:
        return await self._admin(  # type: ignore[no-any-return]
            "GET", "/sandbox/learning-records", params={"subscription_id": subscription_id}
        )

    async def add_document(self, subscription_id: str, member_id: str, title: str) -> None:
        await self._admin(
            "POST",
            "/sandbox/documents",
            json={"subscription_id": subscription_id, "member_id": member_id, "title": title},
        )

    async def calls(self) -> dict[str, int]:
        return await self._admin("GET", "/sandbox/calls")  # type: ignore[no-any-return]
