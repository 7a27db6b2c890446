"""The dev stack's sandbox partner server (partners/sandbox_server.py): its command line, its
secrets, and how every service the environment does not set is wired to it.

Secrets and the admin token are made once and kept in DATA_DIR/sandbox-partner.json (0600), so
a restart keeps them. The wiring the stack's processes use is DATA_DIR/partners.json (0600), a
BIZSUPPORT_PARTNER_CONFIG file: the services of a config file the user named, and the sandbox
for every other service the environment does not set (the environment wins over the file, so a
service set there goes where it says). stack.json names it, for the CLI.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from domain.catalog import default_catalog
from partners.config import CONFIG_FILE_SETTING, secret_setting, url_setting
from partners.sandbox_server import ADMIN_TOKEN_SETTING, DATABASE_URL_SETTING
from settings import write_private

PORT_SETTING = "SANDBOX_PARTNER_PORT"
DEFAULT_PORT = 8700


@dataclass(frozen=True)
class SandboxPartner:
    port: int
    argv: list[str]
    server_env: dict[str, str]  # the sandbox server's own environment
    config_file: Path  # BIZSUPPORT_PARTNER_CONFIG for the stack's processes
    sandboxed: list[str]  # services wired to the sandbox
    elsewhere: dict[str, str]  # service → the URL the user set

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stack_env(self) -> dict[str, str]:
        return {CONFIG_FILE_SETTING: str(self.config_file)}

    def lines(self) -> list[str]:
        out = [
            f"  partners     {self.base}/<service>   (sandbox partner, admin: {self.base}/sandbox/)"
        ]
        out += [
            f"  partner      {sid} → {url}   (set by you)" for sid, url in self.elsewhere.items()
        ]
        return out


def partner_port(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return int(env.get(PORT_SETTING) or DEFAULT_PORT)


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _kept(path: Path, services: list[str]) -> dict[str, object]:
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    made = dict(kept.get("secrets") or {})
    for sid in services:
        made.setdefault(sid, _new_secret())
    state = {"admin_token": kept.get("admin_token") or secrets.token_urlsafe(32), "secrets": made}
    if state != kept:
        write_private(path, json.dumps(state, indent=2))
    return state


def sandbox_partner(
    data_dir: Path, database_url: str, env: Mapping[str, str] | None = None
) -> SandboxPartner:
    env = os.environ if env is None else env
    services = default_catalog().service_ids
    port = partner_port(env)
    state = _kept(data_dir / "sandbox-partner.json", services)
    made: dict[str, str] = state["secrets"]  # type: ignore[assignment]
    user_file = env.get(CONFIG_FILE_SETTING)
    wiring: dict[str, dict[str, str]] = {}
    if user_file:
        wiring.update(json.loads(Path(user_file).read_text(encoding="utf-8")))
    base = f"http://127.0.0.1:{port}"
    sandboxed, elsewhere = [], {}
    for sid in services:
        if env.get(url_setting(sid)):
            elsewhere[sid] = env[url_setting(sid)]
        elif sid in wiring:
            elsewhere[sid] = wiring[sid].get("url", "?")
        else:
            wiring[sid] = {"url": f"{base}/{sid}", "secret": made[sid]}
            sandboxed.append(sid)
    config_file = data_dir / "partners.json"
    write_private(config_file, json.dumps(wiring, indent=2))
    server_env = {
        **env,
        **{secret_setting(sid): made[sid] for sid in services},
        ADMIN_TOKEN_SETTING: str(state["admin_token"]),
        DATABASE_URL_SETTING: database_url,  # in the environment, not on a `ps` line
    }
    argv = [sys.executable, "-m", "partners.sandbox_server", "--port", str(port)]
    return SandboxPartner(port, argv, server_env, config_file, sandboxed, elsewhere)
