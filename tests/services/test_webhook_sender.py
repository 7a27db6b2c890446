"""One webhook attempt over real HTTP (services/webhook_sender.py) to a real local receiver
(tests/webhook_receiver.py): it connects to the address it judged, never to a second lookup of
the name (DNS rebinding), and its signature verifies only with the endpoint's own secret."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
import trustme

import services.webhook_targets
from services.webhook_sender import WebhookSender
from services.webhooks import new_secret
from store.events import EventRow
from tests.webhook_receiver import Receiver

# Not a name any resolver knows: only the patched lookup below answers it.
NAME = "hooks.rebinding.invalid"


def event(event_id: str = "evt_1") -> EventRow:
    return EventRow(
        event_no=1,
        txid=1,
        event_id=event_id,
        type="subscription.plan_changed",
        created_at=datetime(2026, 12, 7, tzinfo=UTC),
        workplace_id="wp-1",
        service_id="ubob",
        subscription_id="sub-1",
        stream="sub-1",
        seq=1,
        data={"plan_id": "basic"},
    )


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = await Receiver(secrets=[new_secret()]).up()
    yield found
    await found.down()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name the sender resolves; NAME resolves to loopback, where the receiver listens."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[ipaddress.IPv4Address]:
        asked.append(host)
        return [ipaddress.IPv4Address("127.0.0.1")] if host == NAME else []

    monkeypatch.setattr(services.webhook_targets, "resolve", resolve)
    return asked


async def test_an_attempt_connects_to_the_address_it_judged(
    receiver: Receiver, lookups: list[str]
) -> None:
    """The name is looked up once, for the check; the connection goes to that address with the
    name in the Host header. Had the client resolved the name again, it would not have found it
    (and a rebinding name could have sent it anywhere)."""
    url = f"http://{NAME}:{receiver.port}/hook"
    sender = WebhookSender(allow_loopback=True)
    sent = await sender.send(url, event(), receiver.secrets)
    assert (sent.outcome, sent.status_code) == ("ok", 200)
    assert lookups == [NAME]
    assert [(s.host, s.webhook_id) for s in receiver.seen] == [(f"{NAME}:{receiver.port}", "evt_1")]
    assert receiver.problems({"sub-1": ["evt_1"]}) == []
    await sender.client().aclose()


async def test_a_name_judged_private_is_never_connected(
    receiver: Receiver, lookups: list[str]
) -> None:
    sender = WebhookSender(allow_loopback=False)  # production: loopback is private
    sent = await sender.send(f"https://{NAME}:{receiver.port}/hook", event(), receiver.secrets)
    assert sent.outcome == "refused_url" and "Loopback" in (sent.error or "")
    assert receiver.seen == []


async def test_a_delivery_signed_with_another_secret_does_not_verify(
    receiver: Receiver, lookups: list[str]
) -> None:
    """What a receiver sees when the sender signs with a secret it does not hold (a rotation it
    missed): the request arrives, no secret of its own verifies it, and the contract check says
    so. With the old and the new secret both sent (a rotation), either verifies."""
    sender = WebhookSender(allow_loopback=True)
    other, url = new_secret(), f"http://{NAME}:{receiver.port}/hook"
    await sender.send(url, event("evt_1"), [other])
    assert receiver.seen[0].verified_by == []
    assert receiver.problems({"sub-1": ["evt_1"]}) == [
        f"evt_1: no secret of the endpoint verifies {receiver.seen[0].signatures}"
    ]
    await sender.send(url, event("evt_2"), [other, receiver.secrets[0]])
    assert receiver.seen[1].verified_by == receiver.secrets
    await sender.client().aclose()


async def test_https_to_the_judged_address_still_names_and_verifies_the_host(
    lookups: list[str],
) -> None:
    """Production's https: the TLS handshake with the judged address names the host (SNI), and
    the certificate must be the host's, not merely valid for some name."""
    ca = trustme.CA()
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    named: list[str | None] = []

    def serving(name: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(context)
        context.sni_callback = lambda _sock, server_name, _ctx: named.append(server_name)
        return context

    sender = WebhookSender(allow_loopback=True, verify=trusting)
    right = await Receiver(secrets=[new_secret()], tls=serving(NAME)).up()
    wrong = await Receiver(secrets=right.secrets, tls=serving("someone-else.invalid")).up()
    try:
        sent = await sender.send(f"https://{NAME}:{right.port}/hook", event(), right.secrets)
        assert (sent.outcome, sent.status_code) == ("ok", 200)
        assert [s.host for s in right.seen] == [f"{NAME}:{right.port}"]
        refused = await sender.send(f"https://{NAME}:{wrong.port}/hook", event(), right.secrets)
        assert refused.outcome == "unreachable" and wrong.seen == []
        assert named == [NAME, NAME]
    finally:
        await sender.client().aclose()
        await right.down()
        await wrong.down()
