"""The dev stack's wiring of services to its sandbox partner (devstack/partner.py): every
service the user did not set goes to the sandbox, one the user set goes where they said, the
secrets survive a restart and live in 0600 files only."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from devstack.partner import sandbox_partner
from domain.catalog import default_catalog
from partners.config import load_partner_endpoints
from partners.sandbox_server import ADMIN_TOKEN_SETTING, DATABASE_URL_SETTING
from tests.partner_sandbox import new_secret

SERVICES = default_catalog().service_ids
DB = "postgresql://u:pw@127.0.0.1:5/db"


def test_every_unset_service_goes_to_the_sandbox(tmp_path: Path) -> None:
    wired = sandbox_partner(tmp_path, DB, {"SANDBOX_PARTNER_PORT": "8711"})
    assert wired.sandboxed == SERVICES and wired.elsewhere == {}
    endpoints = load_partner_endpoints(SERVICES, wired.stack_env())
    assert endpoints["ubob"].url == "http://127.0.0.1:8711/ubob"
    # the server checks with the very secrets the stack signs with
    for sid in SERVICES:
        assert wired.server_env[f"BIZSUPPORT_PARTNER_SECRET_{sid.upper()}"] == endpoints[sid].secret
    assert wired.server_env[DATABASE_URL_SETTING] == DB and DB not in " ".join(wired.argv)
    assert wired.server_env[ADMIN_TOKEN_SETTING]
    for name in ("partners.json", "sandbox-partner.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert any("http://127.0.0.1:8711/<service>" in line for line in wired.lines())
    # a restart keeps the secrets and the admin token
    again = sandbox_partner(tmp_path, DB, {"SANDBOX_PARTNER_PORT": "8711"})
    assert again.server_env == wired.server_env


def test_a_service_the_user_set_goes_where_they_said(tmp_path: Path) -> None:
    secret = new_secret()
    env = {
        "BIZSUPPORT_PARTNER_URL_CARTAX": "https://cartax.example/bizsupport",
        "BIZSUPPORT_PARTNER_SECRET_CARTAX": secret,
    }
    wired = sandbox_partner(tmp_path, DB, env)
    assert "cartax" not in wired.sandboxed
    assert wired.elsewhere == {"cartax": "https://cartax.example/bizsupport"}
    endpoints = load_partner_endpoints(SERVICES, {**env, **wired.stack_env()})
    assert endpoints["cartax"].url == "https://cartax.example/bizsupport"
    assert endpoints["cartax"].secret == secret
    assert endpoints["tudy"].url.startswith("http://127.0.0.1:")
    assert any("cartax → https://cartax.example/bizsupport" in line for line in wired.lines())
    assert secret not in "\n".join(wired.lines())


def test_a_users_config_file_is_kept(tmp_path: Path) -> None:
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"juju": {"url": "https://juju.example", "secret": new_secret()}}))
    data = tmp_path / "data"
    data.mkdir()
    wired = sandbox_partner(data, DB, {"BIZSUPPORT_PARTNER_CONFIG": str(own)})
    assert wired.elsewhere == {"juju": "https://juju.example"}
    endpoints = load_partner_endpoints(SERVICES, wired.stack_env())
    assert endpoints["juju"].url == "https://juju.example"
    assert len(endpoints) == 7
