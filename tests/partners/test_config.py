"""Partner settings: every service needs a URL and a secret, a config file may add to the
environment, errors name the setting, and secrets never appear in messages or reprs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from domain.catalog import default_catalog
from partners.config import (
    CONFIG_FILE_SETTING,
    PartnerConfigError,
    load_partner_endpoints,
    secret_setting,
    url_setting,
)
from tests.partner_sandbox import new_secret

ROOT = Path(__file__).resolve().parents[2]
SERVICES = default_catalog().service_ids


def full_env() -> dict[str, str]:
    env = {}
    for sid in SERVICES:
        env[url_setting(sid)] = f"https://{sid}.partner.example/bizsupport/"
        env[secret_setting(sid)] = new_secret()
    return env


def test_every_service_from_the_environment() -> None:
    env = full_env()
    endpoints = load_partner_endpoints(SERVICES, env)
    assert sorted(endpoints) == sorted(SERVICES)
    cartax = endpoints["cartax"]
    assert url_setting("cartax") == "BIZSUPPORT_PARTNER_URL_CARTAX"
    assert cartax.url == "https://cartax.partner.example/bizsupport"  # no trailing slash
    assert cartax.secret == env["BIZSUPPORT_PARTNER_SECRET_CARTAX"]
    assert env["BIZSUPPORT_PARTNER_SECRET_CARTAX"] not in repr(cartax)


@pytest.mark.parametrize(
    "missing", ["BIZSUPPORT_PARTNER_URL_UBOB", "BIZSUPPORT_PARTNER_SECRET_UBOB"]
)
def test_a_missing_setting_is_named(missing: str) -> None:
    env = full_env()
    del env[missing]
    with pytest.raises(PartnerConfigError, match=f"{missing} is not set: service ubob"):
        load_partner_endpoints(SERVICES, env)


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("BIZSUPPORT_PARTNER_URL_TUDY", "ftp://tudy.example", "http"),
        ("BIZSUPPORT_PARTNER_URL_TUDY", "https://tudy.example/x?y=1", "without"),
        ("BIZSUPPORT_PARTNER_SECRET_TUDY", "plain-text-secret-0123456789abcdef", "whsec_"),
        ("BIZSUPPORT_PARTNER_SECRET_TUDY", "whsec_c2hvcnQ=", "at least 24 bytes"),
        ("BIZSUPPORT_PARTNER_SECRET_TUDY", "whsec_!!!not base64!!!", "base64"),
    ],
)
def test_a_malformed_setting_is_named_without_its_secret(
    setting: str, value: str, problem: str
) -> None:
    env = {**full_env(), setting: value}
    with pytest.raises(PartnerConfigError) as failed:
        load_partner_endpoints(SERVICES, env)
    message = str(failed.value)
    assert setting in message and "service tudy" in message and problem in message
    if "SECRET" in setting:
        assert value not in message


def test_a_config_file_adds_to_the_environment(tmp_path: Path) -> None:
    env = full_env()
    from_file = {
        "cartax": {"url": "https://file.example/cartax", "secret": new_secret()},
        "ubob": {"url": "https://file.example/ubob", "secret": new_secret()},
    }
    del env[url_setting("cartax")], env[secret_setting("cartax")]
    path = tmp_path / "partners.json"
    path.write_text(json.dumps(from_file))
    env[CONFIG_FILE_SETTING] = str(path)
    endpoints = load_partner_endpoints(SERVICES, env)
    assert endpoints["cartax"].url == "https://file.example/cartax"  # only in the file
    assert endpoints["ubob"].url == "https://ubob.partner.example/bizsupport"  # the env wins


def test_a_worker_with_a_service_unset_refuses_to_start() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIZSUPPORT_PARTNER_")}
    env.update(full_env())
    del env[secret_setting("loai")]
    env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"  # never reached
    done = subprocess.run(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "BIZSUPPORT_PARTNER_SECRET_LOAI is not set" in done.stderr
    assert all(env[secret_setting(s)] not in done.stderr for s in SERVICES if s != "loai")
