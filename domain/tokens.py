"""Bearer tokens and single-sign-on launch tokens: pure, no I/O (docs/rules.md, R-PERM-8 and
"HTTP contract").

Both are HS256 JWTs signed with the same secret, and neither can stand in for the other:

- a bearer (access) token carries `"typ": "access"`, `"aud": "bizsupport"`, `sub` (member id),
  `wp` (workplace id), `iat` and `exp`, and lives at most `MAX_ACCESS_TTL_SECONDS`; a system token
  carries `"role": "system"` and may omit `sub`/`wp`. A token without its own `typ`/`aud` (one
  minted for another purpose with the same secret) is refused. The member's role is never read
  from a token (only `"role": "system"` is), it always comes from the directory.
- a launch token carries `"typ": "launch"`, `aud` = the service id, `sub`, `wp`, a `jti` (spent in
  PostgreSQL on first verification, see `store.access.spend_launch_token`) and a short `exp`.

Expiry is checked against the `now` the caller passes: wall-clock time, also in sandbox mode
(the sandbox clock is business time, not token time). PyJWT's own clock checks are switched off
so that `now` is the only clock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict

from domain.errors import BizError

ALGORITHM = "HS256"
ACCESS_TYPE = "access"
ACCESS_AUDIENCE = "bizsupport"
LAUNCH_TYPE = "launch"
SYSTEM_ROLE = "system"
DEFAULT_ACCESS_TTL_SECONDS = 3600
DEFAULT_LAUNCH_TTL_SECONDS = 60
# A bearer token lives at most this long (exp - iat); a longer-lived one is refused even when its
# signature is good, so a leaked token is not a key for days.
MAX_ACCESS_TTL_SECONDS = 12 * 3600
# HS256 with a short secret can be brute-forced offline from any one token.
MIN_SECRET_BYTES = 32

_DECODE_OPTIONS: Any = {
    "verify_signature": True,
    "verify_exp": False,  # checked against the caller's `now` below
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,  # launch tokens: `aud` is read and checked below
    "verify_iss": False,
    "require": [],
}


class AccessClaims(BaseModel):
    model_config = ConfigDict(frozen=True)

    member_id: str | None
    workplace_id: str | None
    system: bool = False


class LaunchClaims(BaseModel):
    model_config = ConfigDict(frozen=True)

    member_id: str
    workplace_id: str
    service_id: str
    jti: str
    expires_at: datetime


class WeakSecretError(ValueError):
    """The token-signing secret is too short to sign with."""


def check_secret(secret: str) -> str:
    """`secret` if it is at least `MIN_SECRET_BYTES` bytes long, else `WeakSecretError`."""
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise WeakSecretError(
            f"the auth secret (BIZSUPPORT_AUTH_SECRET) must be at least {MIN_SECRET_BYTES} bytes "
            f"long, it is {len(secret.encode('utf-8'))}; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    return secret


def _refused(reason: str) -> BizError:
    """UNAUTHENTICATED with no details: which check failed is not the caller's business (it is
    attached as a note, for the server's log)."""
    err = BizError("UNAUTHENTICATED")
    err.add_note(reason)
    return err


def refusal_reason(err: BaseException) -> str:
    """Why a token was refused, for logging only."""
    notes = getattr(err, "__notes__", None) or ()
    return "; ".join(str(note) for note in notes) or str(err)


def _timestamp(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("token times must be timezone-aware")
    return int(at.timestamp())


def _decode(secret: str, token: str, now: datetime) -> dict[str, Any]:
    """Signature (HS256 only) and expiry against `now`; anything wrong → UNAUTHENTICATED."""
    if not isinstance(token, str) or not token:
        raise _refused("missing token")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options=_DECODE_OPTIONS
        )
    except jwt.PyJWTError as err:
        raise _refused("invalid token") from err
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise _refused("token without expiry")
    if _timestamp(now) >= exp:
        raise _refused("expired token")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and _timestamp(now) < nbf:
        raise _refused("token not yet valid")
    return claims


def _text(claims: dict[str, Any], key: str) -> str | None:
    value = claims.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _refused(f"malformed claim {key}")
    return value


# ── bearer tokens ────────────────────────────────────────────────────────────────────────────


def mint_access_token(
    secret: str,
    *,
    member_id: str | None,
    workplace_id: str | None,
    role: str | None = None,
    ttl_seconds: int = DEFAULT_ACCESS_TTL_SECONDS,
    now: datetime,
) -> str:
    """A bearer token as the suite's identity provider would mint it (and the CLI does).

    `ttl_seconds` is at most `MAX_ACCESS_TTL_SECONDS`: a longer one would be refused anyway.
    """
    if not 0 < ttl_seconds <= MAX_ACCESS_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be in (0, {MAX_ACCESS_TTL_SECONDS}]")
    if role not in (None, SYSTEM_ROLE):
        raise ValueError("the only role a token may carry is 'system'")
    if role is None and (not member_id or not workplace_id):
        raise ValueError("a member token needs member_id and workplace_id")
    claims: dict[str, Any] = {
        "typ": ACCESS_TYPE,
        "aud": ACCESS_AUDIENCE,
        "iat": _timestamp(now),
        "exp": _timestamp(now + timedelta(seconds=ttl_seconds)),
    }
    if member_id is not None:
        claims["sub"] = member_id
    if workplace_id is not None:
        claims["wp"] = workplace_id
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_access_token(secret: str, token: str, *, now: datetime) -> AccessClaims:
    """A bearer token's claims; launch tokens, tokens of any other type or audience, forged,
    expired, too long-lived or incomplete ones are refused."""
    claims = _decode(secret, token, now)
    if claims.get("typ") != ACCESS_TYPE:
        raise _refused("not a bearer token")
    if claims.get("aud") != ACCESS_AUDIENCE:
        raise _refused("token for another audience")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise _refused("token without issue time")
    if claims["exp"] - iat > MAX_ACCESS_TTL_SECONDS or (
        claims["exp"] - _timestamp(now) > MAX_ACCESS_TTL_SECONDS
    ):
        raise _refused("token lives too long")
    member_id = _text(claims, "sub")
    workplace_id = _text(claims, "wp")
    system = claims.get("role") == SYSTEM_ROLE
    if not system and (member_id is None or workplace_id is None):
        raise _refused("token without member or workplace")
    return AccessClaims(member_id=member_id, workplace_id=workplace_id, system=system)


# ── single-sign-on launch tokens ─────────────────────────────────────────────────────────────


def mint_launch_token(
    secret: str,
    *,
    member_id: str,
    workplace_id: str,
    service_id: str,
    now: datetime,
    ttl_seconds: int = DEFAULT_LAUNCH_TTL_SECONDS,
) -> tuple[str, str, datetime]:
    """(token, jti, expires_at) for one member opening one service of one workplace."""
    jti = uuid.uuid4().hex
    expires_at = datetime.fromtimestamp(_timestamp(now) + ttl_seconds, tz=UTC)
    claims = {
        "typ": LAUNCH_TYPE,
        "sub": member_id,
        "wp": workplace_id,
        "aud": service_id,
        "jti": jti,
        "iat": _timestamp(now),
        "exp": int(expires_at.timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), jti, expires_at


def verify_launch_token(secret: str, token: str, *, now: datetime) -> LaunchClaims:
    """Signature and expiry only; spending the jti is the caller's job (it needs PostgreSQL)."""
    claims = _decode(secret, token, now)
    if claims.get("typ") != LAUNCH_TYPE:
        raise _refused("a bearer token is not a launch token")
    member_id = _text(claims, "sub")
    workplace_id = _text(claims, "wp")
    service_id = _text(claims, "aud")
    jti = _text(claims, "jti")
    if member_id is None or workplace_id is None or service_id is None or jti is None:
        raise _refused("incomplete launch token")
    return LaunchClaims(
        member_id=member_id,
        workplace_id=workplace_id,
        service_id=service_id,
        jti=jti,
        expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
    )
