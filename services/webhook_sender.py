"""One webhook attempt over HTTP, signed by Standard Webhooks (R-EVENT-2; docs/webhooks.md,
"Delivery").

One pooled `httpx.AsyncClient` per worker process and event loop (made on first use, like the
partner gateway's, partners/http.py); no redirect is followed (a 3xx is a failed attempt). The
URL is judged again before every attempt (services/webhook_targets.py), so a name re-pointed at
a private address is refused; a refusal is a failed attempt naming it.

Headers: `webhook-id` (the event id: the same on every retry and resend), `webhook-timestamp`
(this attempt's wall-clock Unix seconds: receivers compare it with their own clock) and
`webhook-signature`, one `v1,…` per secret not yet retired, space-separated, computed afresh for
every attempt. Success is a 2xx answered within `ANSWER_TIMEOUT` seconds of the attempt's start.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from activities.webhooks import Sent
from services.webhook_targets import RefusedUrl, checked_target
from store.events import EventRow

CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 15.0  # API.md: a 2xx within 15 s is success


def signature(event_id: str, at: datetime, body: bytes, secrets: list[str]) -> str:
    """The `webhook-signature` header: every secret's `v1,…` signature, space-separated."""
    return " ".join(Webhook(secret).sign(event_id, at, body) for secret in secrets)


def body_of(event: EventRow) -> bytes:
    return json.dumps(event.body(), ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSender:
    """The delivery round's `Sender` (activities/webhooks.py)."""

    def __init__(self, *, allow_loopback: bool, answer_timeout: float = ANSWER_TIMEOUT) -> None:
        self.allow_loopback = allow_loopback
        self.answer_timeout = answer_timeout
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def client(self) -> httpx.AsyncClient:
        """The process's pooled client for the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(
                    self.answer_timeout, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT
                ),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                follow_redirects=False,
            )
            self._clients[loop] = client
        return client

    async def send(self, url: str, event: EventRow, secrets: list[str]) -> Sent:
        if not secrets:
            return Sent("no_secret", error="the endpoint has no signing secret")
        try:
            await checked_target(url, allow_loopback=self.allow_loopback)
        except RefusedUrl as refused:
            return Sent("refused_url", error=f"URL refused ({refused.reason}): {refused}")
        body = body_of(event)
        now = datetime.now(UTC)
        headers = {
            "webhook-id": event.event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature(event.event_id, now, body, secrets),
            "content-type": "application/json",
            "user-agent": "bizsupport-webhooks",
        }
        try:
            async with asyncio.timeout(self.answer_timeout):
                response = await self.client().post(url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return Sent("timeout", error=f"no answer within {self.answer_timeout:g} s")
        except httpx.HTTPError as err:
            return Sent("unreachable", error=f"unreachable ({type(err).__name__})")
        if 200 <= response.status_code < 300:
            return Sent("ok", response.status_code)
        return Sent("status", response.status_code, f"answered HTTP {response.status_code}")
