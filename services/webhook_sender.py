"""One webhook attempt over HTTP, signed by Standard Webhooks (R-EVENT-2; docs/webhooks.md,
"Delivery").

One pooled `httpx.AsyncClient` per worker process and event loop (made on first use, like the
partner gateway's, partners/http.py); no redirect is followed (a 3xx is a failed attempt). The
URL is judged again before every attempt (services/webhook_targets.py), so a name re-pointed at
a private address is refused; a refusal is a failed attempt naming it. The attempt then connects
to the address judged, not to a second lookup of the name (`PinnedBackend`): a name that
changes its answer between the check and the connect (DNS rebinding) cannot send it anywhere
else. URL, `Host` header, TLS server name and certificate check keep the name.

Headers: `webhook-id` (the event id: the same on every retry and resend), `webhook-timestamp`
(this attempt's wall-clock Unix seconds: receivers compare it with their own clock) and
`webhook-signature`, one `v1,…` per secret not yet retired, space-separated, computed afresh for
every attempt. Success is a 2xx answered within `ANSWER_TIMEOUT` seconds of the attempt's start.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import ssl
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime

import httpcore
import httpx
from standardwebhooks.webhooks import Webhook

from activities.webhooks import Sent
from domain.webhook_schedule import RETRY_AFTER_STATUSES, retry_after
from domain.webhook_urls import IPAddress
from services.webhook_targets import RefusedUrl, checked_target
from store.events import EventRow

CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 15.0  # API.md: a 2xx within 15 s is success


def signature(event_id: str, at: datetime, body: bytes, secrets: list[str]) -> str:
    """The `webhook-signature` header: every secret's `v1,…` signature, space-separated."""
    return " ".join(Webhook(secret).sign(event_id, at, body) for secret in secrets)


def body_of(event: EventRow) -> bytes:
    return json.dumps(event.body(), ensure_ascii=False, separators=(",", ":")).encode()


# The attempt running in this task: (host as the connection names it, port, the address judged
# for it). Set around each send; a connection opened for anything else fails.
_JUDGED: contextvars.ContextVar[tuple[str, int, IPAddress] | None] = contextvars.ContextVar(
    "webhook_judged_address", default=None
)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend for webhook connections: a new connection to a name goes to
    the address judged for this attempt, without resolving the name again; the TLS handshake
    that follows still names (and verifies) the host. Pooled connections were opened the same
    way by an earlier attempt."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        judged = _JUDGED.get()
        if judged is None or judged[:2] != (host, port):
            raise httpcore.ConnectError(f"{host}:{port} was not judged for this attempt")
        return await self.inner.connect_tcp(
            str(judged[2]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def pinned_client(answer_timeout: float, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """A pooled client whose new connections go through PinnedBackend. httpx has no public
    setting for the network backend, so its connection pool's is wrapped; the sender's tests
    send to a name no resolver knows, so a client that looked names up again would fail them."""
    transport = httpx.AsyncHTTPTransport(
        verify=verify, limits=httpx.Limits(max_connections=None, max_keepalive_connections=64)
    )
    pool = transport._pool
    pool._network_backend = PinnedBackend(pool._network_backend)
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(answer_timeout, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: it would look the name up itself
    )


class WebhookSender:
    """The delivery round's `Sender` (activities/webhooks.py)."""

    def __init__(
        self,
        *,
        allow_loopback: bool,
        answer_timeout: float = ANSWER_TIMEOUT,
        verify: ssl.SSLContext | bool = True,  # the system's CAs; tests pass their own CA's
    ) -> None:
        self.allow_loopback = allow_loopback
        self.answer_timeout = answer_timeout
        self.verify = verify
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def client(self) -> httpx.AsyncClient:
        """The process's pooled client for the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = self._clients[loop] = pinned_client(self.answer_timeout, self.verify)
        return client

    async def send(self, url: str, event: EventRow, secrets: list[str]) -> Sent:
        if not secrets:
            return Sent("no_secret", error="the endpoint has no signing secret")
        try:
            checked = await checked_target(url, allow_loopback=self.allow_loopback)
        except RefusedUrl as refused:
            return Sent("refused_url", error=f"URL refused ({refused.reason}): {refused}")
        # The host as the connection will name it (IDNA, no brackets), and the resolver's first
        # choice among the addresses judged.
        host = httpx.URL(url).raw_host.decode("ascii")
        judged = _JUDGED.set((host, checked.target.port, checked.addresses[0]))
        try:
            return await self._post(url, event, secrets)
        finally:
            _JUDGED.reset(judged)

    async def _post(self, url: str, event: EventRow, secrets: list[str]) -> Sent:
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
        asked = None
        if response.status_code in RETRY_AFTER_STATUSES:
            asked = retry_after(response.headers.get("retry-after"), datetime.now(UTC))
        error = f"answered HTTP {response.status_code}"
        if asked is not None:
            error += f", Retry-After {int(asked.total_seconds())} s"
        return Sent("status", response.status_code, error, retry_after=asked)
