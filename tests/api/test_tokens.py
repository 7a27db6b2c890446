"""Bearer tokens carry and require their own type and audience, live at most 12 h, are signed with
a secret of at least 32 bytes, and every 401 says the same thing (security issue, item 7)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

import settings as settings_module
from api.runtime import Runtime
from domain.errors import BizError
from domain.tokens import (
    ACCESS_AUDIENCE,
    ACCESS_TYPE,
    MAX_ACCESS_TTL_SECONDS,
    WeakSecretError,
    check_secret,
    mint_access_token,
    mint_launch_token,
    refusal_reason,
    verify_access_token,
)
from tests.api.conftest import bearer, token
from tests.conftest import Workplace

SECRET = "sec-test-secret-0123456789abcdef0123456789"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def refused(raw: str, at: datetime) -> None:
    with pytest.raises(BizError) as caught:
        verify_access_token(SECRET, raw, now=at)
    assert caught.value.code == "UNAUTHENTICATED"


def claims(at: datetime, **extra: object) -> dict[str, object]:
    return {
        "typ": ACCESS_TYPE,
        "aud": ACCESS_AUDIENCE,
        "sub": "m1",
        "wp": "wp1",
        "iat": int(at.timestamp()),
        "exp": int(at.timestamp()) + 600,
        **extra,
    }


def test_minted_tokens_carry_type_audience_and_issue_time() -> None:
    at = now()
    raw = mint_access_token(SECRET, member_id="m1", workplace_id="wp1", now=at)
    decoded = jwt.decode(raw, SECRET, algorithms=["HS256"], audience=ACCESS_AUDIENCE)
    assert decoded["typ"] == "access" and decoded["aud"] == "bizsupport"
    assert decoded["exp"] - decoded["iat"] <= MAX_ACCESS_TTL_SECONDS
    assert verify_access_token(SECRET, raw, now=at).member_id == "m1"
    assert verify_access_token(SECRET, jwt.encode(claims(at), SECRET), now=at).member_id == "m1"


def test_tokens_for_another_purpose_are_refused() -> None:
    at = now()
    exp = int(at.timestamp()) + 600
    # the shape every bearer token had before: no typ, no aud
    refused(jwt.encode({"sub": "m1", "wp": "wp1", "exp": exp}, SECRET), at)
    refused(jwt.encode({"sub": "m1", "wp": "wp1", "iat": exp - 600, "exp": exp}, SECRET), at)
    no_typ = claims(at)
    del no_typ["typ"]
    refused(jwt.encode(no_typ, SECRET), at)
    no_aud = claims(at)
    del no_aud["aud"]
    refused(jwt.encode(no_aud, SECRET), at)
    refused(jwt.encode(claims(at, typ="refresh"), SECRET), at)
    refused(jwt.encode(claims(at, aud="ubob"), SECRET), at)
    refused(jwt.encode(claims(at, aud=[ACCESS_AUDIENCE, "ubob"]), SECRET), at)
    refused(jwt.encode(claims(at, typ="launch", jti="x"), SECRET), at)
    launch, _, _ = mint_launch_token(
        SECRET, member_id="m1", workplace_id="wp1", service_id=ACCESS_AUDIENCE, now=at
    )
    refused(launch, at)
    system = claims(at, role="system")
    del system["aud"]
    refused(jwt.encode(system, SECRET), at)


def test_lifetime_is_bounded() -> None:
    at = now()
    stamp = int(at.timestamp())
    too_long = claims(at, exp=stamp + MAX_ACCESS_TTL_SECONDS + 1)
    refused(jwt.encode(too_long, SECRET), at)
    no_iat = claims(at)
    del no_iat["iat"]
    refused(jwt.encode(no_iat, SECRET), at)
    refused(jwt.encode(claims(at, iat="yesterday"), SECRET), at)
    # issued "in the future" to stretch its life past the maximum from now
    future = claims(at, iat=stamp + 86_400, exp=stamp + 86_400 + 600)
    refused(jwt.encode(future, SECRET), at)
    longest = claims(at, exp=stamp + MAX_ACCESS_TTL_SECONDS)
    assert verify_access_token(SECRET, jwt.encode(longest, SECRET), now=at).member_id == "m1"
    with pytest.raises(ValueError):
        mint_access_token(
            SECRET,
            member_id="m1",
            workplace_id="wp1",
            now=at,
            ttl_seconds=MAX_ACCESS_TTL_SECONDS + 1,
        )
    with pytest.raises(ValueError):
        mint_access_token(SECRET, member_id="m1", workplace_id="wp1", now=at, ttl_seconds=0)


def test_short_secrets_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WeakSecretError):
        check_secret("x" * 31)
    with pytest.raises(WeakSecretError):
        check_secret("é" * 15)  # 30 bytes, 15 characters
    assert check_secret("x" * 32) == "x" * 32

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BIZSUPPORT_AUTH_SECRET", "short-secret")
    loaded = settings_module.load_settings()
    with pytest.raises(SystemExit) as caught:
        settings_module.auth_secret(loaded)
    message = str(caught.value)
    assert "BIZSUPPORT_AUTH_SECRET" in message and "32 bytes" in message
    assert "short-secret" not in message

    monkeypatch.setenv("BIZSUPPORT_AUTH_SECRET", "s" * 32)
    assert settings_module.auth_secret(loaded) == "s" * 32

    monkeypatch.delenv("BIZSUPPORT_AUTH_SECRET")
    made = settings_module.auth_secret(loaded)  # made once, long enough, private
    assert len(made.encode()) >= 32
    assert os.stat(loaded.secret_file).st_mode & 0o777 == 0o600
    loaded.secret_file.write_text("tooshort")
    with pytest.raises(SystemExit, match="32 bytes"):
        settings_module.auth_secret(loaded)


# ── over HTTP: every 401 is the same 401 ─────────────────────────────────────────────────────


async def test_every_401_body_is_the_same(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    at = datetime.now(UTC)
    stamp = int(at.timestamp())
    secret = api_runtime.secret
    member = {"sub": workplace.rep, "wp": workplace.id}
    good = token(api_runtime, workplace.id, workplace.rep)
    assert (await api.get("/v1/me/menu", headers=bearer(good))).status_code == 200
    launch, _, _ = mint_launch_token(
        secret, member_id=workplace.rep, workplace_id=workplace.id, service_id="ubob", now=at
    )
    attempts = {
        "no header": {},
        "basic": {"Authorization": "Basic dTpw"},
        "garbage": bearer("not.a.jwt"),
        "expired": bearer(token(api_runtime, workplace.id, workplace.rep, now=at - timedelta(1))),
        "forged": bearer(jwt.encode(claims(at, **member), "x" * 40)),
        "no typ/aud": bearer(jwt.encode({**member, "exp": stamp + 60}, secret)),
        "launch": bearer(launch),
        "too long": bearer(jwt.encode(claims(at, **member, exp=stamp + 13 * 3600), secret)),
        "unknown member": bearer(token(api_runtime, workplace.id, "nobody-here")),
    }
    bodies = {}
    for name, headers in attempts.items():
        answer = await api.get("/v1/me/menu", headers=headers)
        assert answer.status_code == 401, (name, answer.text)
        body = answer.json()
        assert body["error"]["code"] == "UNAUTHENTICATED"
        assert body["error"]["details"] == {}, (name, body)
        bodies[name] = answer.text
    assert len(set(bodies.values())) == 1, bodies


def test_refusals_carry_no_reason_but_log_one() -> None:
    at = now()
    with pytest.raises(BizError) as caught:
        verify_access_token(SECRET, jwt.encode({"sub": "m1", "wp": "wp1"}, SECRET), now=at)
    assert caught.value.details == {}
    assert refusal_reason(caught.value) == "token without expiry"


async def test_sso_verify_401s_do_not_say_which_check_failed(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    at = datetime.now(UTC)
    secret = api_runtime.secret
    expired, _, _ = mint_launch_token(
        secret,
        member_id=workplace.rep,
        workplace_id=workplace.id,
        service_id="ubob",
        now=at - timedelta(hours=1),
    )
    forged, _, _ = mint_launch_token(
        "x" * 40, member_id=workplace.rep, workplace_id=workplace.id, service_id="ubob", now=at
    )
    bodies = set()
    for raw in (expired, forged, token(api_runtime, workplace.id, workplace.rep), "a.b.c"):
        answer = await api.post("/v1/sso/verify", json={"token": raw})
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["details"] == {}, answer.text
        bodies.add(answer.text)
    assert len(bodies) == 1, bodies
