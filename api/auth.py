"""Who is calling (docs/rules.md, "HTTP contract"): HS256 bearer tokens, roles from the directory.

- missing, expired, forged, or launch token → 401; a member who is unknown or has left → 401;
- a system token is read only for `"role": "system"` and only opens directory sync (and the
  sandbox clock); on anything else it is a valid token acting outside its rights → 403;
- a member token on another workplace's path → 404 NOT_FOUND, whether that workplace exists or
  not, so nothing is revealed.

Token expiry is wall-clock time, also in sandbox mode. Every 401 from here has the same body
(no `reason`): which check failed is logged, never told to the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.runtime import Runtime
from domain.errors import BizError
from domain.tokens import refusal_reason, verify_access_token

log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False,
    description='HS256 JWT: `typ` = "access", `aud` = "bizsupport", `sub`, `wp`, `iat`, `exp`.',
)


def unauthorized(reason: str) -> BizError:
    """The one 401 every failed check answers with; `reason` goes to the log only."""
    log.info("401: %s", reason)
    return BizError("UNAUTHENTICATED")


@dataclass(frozen=True)
class Caller:
    """A verified caller: a present member of a workplace, or the system."""

    member_id: str | None
    workplace_id: str | None
    role: str  # "system", or the member's role in the directory

    @property
    def system(self) -> bool:
        return self.role == "system"

    @property
    def scope(self) -> str:
        """Who owns an Idempotency-Key."""
        return "system" if self.system else f"{self.workplace_id}/{self.member_id}"


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def authenticate(runtime: Runtime, token: str | None) -> Caller:
    """The caller behind a bearer token (also used by the console's cookie)."""
    if not token:
        raise unauthorized("missing token")
    try:
        claims = verify_access_token(runtime.secret, token, now=datetime.now(UTC))
    except BizError as err:
        if err.code != "UNAUTHENTICATED":
            raise
        raise unauthorized(refusal_reason(err)) from None
    if claims.system:
        return Caller(member_id=None, workplace_id=None, role="system")
    assert claims.workplace_id is not None and claims.member_id is not None
    member = await runtime.directory.member(claims.workplace_id, claims.member_id)
    if member is None:
        raise unauthorized("unknown member")
    return Caller(member_id=claims.member_id, workplace_id=claims.workplace_id, role=member.role)


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Any valid caller: a present member or the system."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized("missing bearer token")
    return await authenticate(runtime_of(request), credentials.credentials)


AnyCaller = Annotated[Caller, Depends(caller)]


async def member(who: AnyCaller) -> Caller:
    if who.system:
        raise BizError("FORBIDDEN", needs="a member token")
    return who


async def system(who: AnyCaller) -> Caller:
    if not who.system:
        raise BizError("FORBIDDEN", needs="a system token")
    return who


Member = Annotated[Caller, Depends(member)]
System = Annotated[Caller, Depends(system)]


def same_workplace(who: Caller, wp: str) -> str:
    """The member acting in this workplace (their id); another workplace is not found."""
    if who.workplace_id != wp:
        raise BizError("NOT_FOUND")
    assert who.member_id is not None
    return who.member_id
