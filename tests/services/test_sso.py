"""Tokens and single sign-on (docs/rules.md: "HTTP contract", R-PERM-8, R-CANCEL-1, R-PERM-7).

Token expiry is wall-clock time: these tests pass `datetime.now(UTC)` (and past instants to get
expired tokens), never the time-skipping server's clock.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from domain.errors import BizError
from domain.tokens import (
    AccessClaims,
    mint_access_token,
    mint_launch_token,
    verify_access_token,
    verify_launch_token,
)
from services.access import AccessService
from services.directory import DirectoryService
from services.models import VerifiedOut
from services.subscriptions import SubscriptionService
from store.db import Pool
from tests.conftest import TEST_SECRET as SECRET
from tests.conftest import Workplace
from tests.conftest import apply_for as apply

OTHER_SECRET = "another-secret-0123456789abcdef0123456789"


def wall() -> datetime:
    return datetime.now(UTC)


def refused(call, *args, **kwargs) -> BizError:
    with pytest.raises(BizError) as caught:
        call(*args, **kwargs)
    return caught.value


async def arefused(awaitable) -> BizError:
    with pytest.raises(BizError) as caught:
        await awaitable
    return caught.value


# ── pure token rules ─────────────────────────────────────────────────────────────────────────


def test_access_token_round_trip_and_system_token() -> None:
    now = wall()
    token = mint_access_token(SECRET, member_id="m1", workplace_id="wp1", now=now)
    assert verify_access_token(SECRET, token, now=now) == AccessClaims(
        member_id="m1", workplace_id="wp1", system=False
    )
    system = mint_access_token(SECRET, member_id=None, workplace_id=None, role="system", now=now)
    assert verify_access_token(SECRET, system, now=now).system is True
    with pytest.raises(ValueError):
        mint_access_token(SECRET, member_id="m1", workplace_id="wp1", role="admin", now=now)


def test_access_token_refusals() -> None:
    now = wall()
    good = mint_access_token(SECRET, member_id="m1", workplace_id="wp1", now=now)
    expired = mint_access_token(
        SECRET, member_id="m1", workplace_id="wp1", now=now - timedelta(hours=2)
    )
    forged = mint_access_token(OTHER_SECRET, member_id="m1", workplace_id="wp1", now=now)
    launch, _, _ = mint_launch_token(
        SECRET, member_id="m1", workplace_id="wp1", service_id="ubob", now=now
    )
    none_alg = jwt.encode(
        {"sub": "m1", "wp": "wp1", "exp": int(now.timestamp()) + 60}, key=None, algorithm="none"
    )
    no_exp = jwt.encode({"sub": "m1", "wp": "wp1"}, SECRET, algorithm="HS256")
    no_member = jwt.encode({"wp": "wp1", "exp": int(now.timestamp()) + 60}, SECRET)
    for token in ("", "not-a-jwt", expired, forged, launch, none_alg, no_exp, no_member):
        error = refused(verify_access_token, SECRET, token, now=now)
        assert error.code == "UNAUTHENTICATED" and error.status == 401
    # the good one expires at `now` + ttl, measured on the clock the caller passes
    assert verify_access_token(SECRET, good, now=now + timedelta(seconds=3599)).member_id == "m1"
    assert refused(verify_access_token, SECRET, good, now=now + timedelta(seconds=3600))


def test_a_role_claim_other_than_system_is_ignored() -> None:
    """R-TOKEN: the role always comes from the directory, never from the token."""
    now = wall()
    token = jwt.encode(
        {
            "typ": "access",
            "aud": "bizsupport",
            "sub": "m1",
            "wp": "wp1",
            "role": "representative_admin",
            "iat": int(now.timestamp()),
            "exp": now.timestamp() + 60,
        },
        SECRET,
    )
    claims = verify_access_token(SECRET, token, now=now)
    assert claims.system is False and claims.member_id == "m1"


def test_launch_token_claims_and_refusals() -> None:
    now = wall()
    token, jti, expires_at = mint_launch_token(
        SECRET, member_id="m1", workplace_id="wp1", service_id="ubob", now=now
    )
    raw = jwt.decode(token, SECRET, algorithms=["HS256"], audience="ubob")
    assert raw["typ"] == "launch" and raw["aud"] == "ubob" and raw["jti"] == jti
    assert raw["sub"] == "m1" and raw["wp"] == "wp1"
    assert expires_at - now <= timedelta(seconds=60)
    claims = verify_launch_token(SECRET, token, now=now)
    assert (claims.member_id, claims.workplace_id, claims.service_id) == ("m1", "wp1", "ubob")
    bearer = mint_access_token(SECRET, member_id="m1", workplace_id="wp1", now=now)
    forged, _, _ = mint_launch_token(
        OTHER_SECRET, member_id="m1", workplace_id="wp1", service_id="ubob", now=now
    )
    for bad in (bearer, forged, "", token + "x"):
        assert refused(verify_launch_token, SECRET, bad, now=now).code == "UNAUTHENTICATED"
    late = now + timedelta(seconds=61)
    assert refused(verify_launch_token, SECRET, token, now=late).code == "UNAUTHENTICATED"


# ── launch and verify against the real stack ─────────────────────────────────────────────────


async def test_launch_once_then_replay_is_refused(
    access: AccessService, service: SubscriptionService, workplace: Workplace
) -> None:
    wp = workplace
    await apply(service, wp, "ubob", "ubob-basic")
    launched = await access.launch(wp.id, wp.members[0], "ubob", wall())
    assert launched.expires_at > wall()
    url = urlsplit(launched.launch_url)
    assert url.netloc == "sso.test"
    assert parse_qs(url.query) == {"service": ["ubob"]}  # the token is POSTed, never in a URL
    verified = await access.verify_launch(launched.token, wall())
    assert verified.member_id == wp.members[0]
    assert verified.workplace_id == wp.id and verified.service_id == "ubob"
    replay = await arefused(access.verify_launch(launched.token, wall()))
    assert replay.code == "UNAUTHENTICATED"
    # a launch token is not a bearer token, nor a bearer token a launch token
    bearer = mint_access_token(SECRET, member_id=wp.members[0], workplace_id=wp.id, now=wall())
    assert (await arefused(access.verify_launch(bearer, wall()))).code == "UNAUTHENTICATED"
    fresh = await access.launch(wp.id, wp.members[0], "ubob", wall())
    assert refused(verify_access_token, SECRET, fresh.token, now=wall()).code == ("UNAUTHENTICATED")


async def test_concurrent_replays_let_exactly_one_through(
    access: AccessService, service: SubscriptionService, workplace: Workplace
) -> None:
    await apply(service, workplace, "ubob", "ubob-basic")
    launched = await access.launch(workplace.id, workplace.rep, "ubob", wall())
    results = await asyncio.gather(
        *(access.verify_launch(launched.token, wall()) for _ in range(8)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, VerifiedOut) for r in results) == 1
    assert all(r.code == "UNAUTHENTICATED" for r in results if isinstance(r, BizError))


async def test_expired_and_forged_launch_tokens_are_refused(
    access: AccessService, service: SubscriptionService, workplace: Workplace
) -> None:
    wp = workplace
    await apply(service, wp, "ubob", "ubob-basic")
    stale = await access.launch(wp.id, wp.members[0], "ubob", wall() - timedelta(minutes=5))
    assert (await arefused(access.verify_launch(stale.token, wall()))).code == ("UNAUTHENTICATED")
    forged, _, _ = mint_launch_token(
        OTHER_SECRET, member_id=wp.members[0], workplace_id=wp.id, service_id="ubob", now=wall()
    )
    assert (await arefused(access.verify_launch(forged, wall()))).code == "UNAUTHENTICATED"
    # a refused (expired) token did not spend anything a valid one needs
    good = await access.launch(wp.id, wp.members[0], "ubob", wall())
    assert (await access.verify_launch(good.token, wall())).member_id == wp.members[0]


async def test_without_usage_permission_no_launch(
    access: AccessService, service: SubscriptionService, workplace: Workplace
) -> None:
    wp = workplace
    await apply(service, wp, "miricanvas")
    for member_id in (wp.members[0], wp.rep):  # the representative too needs a seat
        denied = await arefused(access.launch(wp.id, member_id, "miricanvas", wall()))
        assert denied.code == "FORBIDDEN" and denied.status == 403
    assert (await arefused(access.launch(wp.id, wp.rep, "cartax", wall()))).code == "FORBIDDEN"
    assert (await arefused(access.launch(wp.id, wp.rep, "netflix", wall()))).code == (
        "UNKNOWN_SERVICE"
    )
    # a correctly signed token for a member without the seat is refused by verification too
    token, _, _ = mint_launch_token(
        SECRET, member_id=wp.members[0], workplace_id=wp.id, service_id="miricanvas", now=wall()
    )
    assert (await arefused(access.verify_launch(token, wall()))).code == "UNAUTHENTICATED"
    await service.set_usage(
        workplace_id=wp.id,
        service_id="miricanvas",
        actor_id=wp.rep,
        member_id=wp.members[0],
        grant=True,
    )
    launched = await access.launch(wp.id, wp.members[0], "miricanvas", wall())
    assert (await access.verify_launch(launched.token, wall())).service_id == "miricanvas"
    # revoked again: refused at once
    pending = await access.launch(wp.id, wp.members[0], "miricanvas", wall())
    await service.set_usage(
        workplace_id=wp.id,
        service_id="miricanvas",
        actor_id=wp.rep,
        member_id=wp.members[0],
        grant=False,
    )
    assert (await arefused(access.verify_launch(pending.token, wall()))).code == ("UNAUTHENTICATED")
    assert (await arefused(access.launch(wp.id, wp.members[0], "miricanvas", wall()))).code == (
        "FORBIDDEN"
    )


async def test_cancellation_refuses_launch_at_once(
    access: AccessService, service: SubscriptionService, workplace: Workplace
) -> None:
    """R-CANCEL-1: a token issued before the cancellation no longer verifies."""
    wp = workplace
    await apply(service, wp, "ubob", "ubob-basic")
    before = await access.launch(wp.id, wp.members[1], "ubob", wall())
    await service.cancel(workplace_id=wp.id, service_id="ubob", actor_id=wp.rep)
    assert (await arefused(access.verify_launch(before.token, wall()))).code == ("UNAUTHENTICATED")
    assert (await arefused(access.launch(wp.id, wp.members[1], "ubob", wall()))).code == (
        "FORBIDDEN"
    )
    assert (await access.menu(wp.id, wp.members[1])).services == []


async def test_member_who_left_cannot_launch(
    access: AccessService,
    dirs: DirectoryService,
    service: SubscriptionService,
    workplace: Workplace,
) -> None:
    """R-PERM-7: refused at once, before the workflow has even dropped the seat."""
    wp = workplace
    await apply(service, wp, "ubob", "ubob-basic")
    before = await access.launch(wp.id, wp.members[2], "ubob", wall())
    await dirs.remove_member(wp.id, wp.members[2])
    assert (await arefused(access.verify_launch(before.token, wall()))).code == ("UNAUTHENTICATED")
    gone = await arefused(access.launch(wp.id, wp.members[2], "ubob", wall()))
    assert gone.code == "UNKNOWN_MEMBER"


async def test_other_workplace_tokens_are_refused(
    access: AccessService, service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """R-PERM-10: a token naming another workplace than its member's is worthless."""
    a = workplace
    b = await Workplace(pool).create()
    await apply(service, a, "ubob", "ubob-basic")
    await apply(service, b, "ubob", "ubob-basic")
    crossed, _, _ = mint_launch_token(
        SECRET, member_id=a.members[0], workplace_id=b.id, service_id="ubob", now=wall()
    )
    assert (await arefused(access.verify_launch(crossed, wall()))).code == "UNAUTHENTICATED"
    denied = await arefused(access.launch(b.id, a.members[0], "ubob", wall()))
    assert denied.code == "UNKNOWN_MEMBER" and denied.status == 404
    # the audience binds the token to its service: a ubob token never opens another service
    launched = await access.launch(a.id, a.members[0], "ubob", wall())
    claims = verify_launch_token(SECRET, launched.token, now=wall())
    assert claims.service_id == "ubob" and claims.workplace_id == a.id
