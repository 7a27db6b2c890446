"""A real local webhook receiver for tests and benches: a small HTTP/1.1 server on loopback that
checks every delivery's Standard Webhooks signature against the endpoint's secrets and records
what it saw. It can answer an error status, answer late, or be down (its port closed).
`problems` checks what it saw against the delivery contract; the webhook tests and the kill
matrix (tests/faults/hooks.py) share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Seen:
    """One request as the receiver got it and answered it."""

    webhook_id: str
    body: dict[str, Any]
    signatures: list[str]
    verified_by: list[str]  # which of the receiver's known secrets verify it
    status: int  # what the receiver answered (0: it did not answer in time for the sender)
    host: str = ""  # the Host header

    @property
    def stream(self) -> str:
        return self.body["subscription_id"] or f"workplace:{self.body['workplace_id']}"


@dataclass
class Receiver:
    """`secrets`: every secret a delivery may be signed with (the test adds the new one at a
    rotation); `script` shapes the next answers one by one, then `status` and `delay` every
    later one; `down()` / `up()` close and reopen the port."""

    secrets: list[str] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    answer_limit: float = 15.0  # the sender's: an answer later than this is not a delivery
    script: list[tuple[int, float]] = field(default_factory=list)  # (status, delay) to use first
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    answering: int = 0  # requests received and not answered yet (held by `delay`)
    tls: ssl.SSLContext | None = None  # serve https with it (the URL is the sender's to make)
    headers: dict[str, str] = field(default_factory=dict)  # added to every answer
    _server: asyncio.Server | None = None
    _connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def up(self) -> Receiver:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            handlers = list(self._connections.values())
            for handler in handlers:
                handler.cancel()  # also one holding its answer (`delay`)
            await asyncio.gather(*handlers)
            await self._server.wait_closed()
            self._server = None

    def delivered(self) -> list[Seen]:
        """The requests answered 2xx."""
        return [s for s in self.seen if 200 <= s.status < 300]

    def ids(self) -> list[str]:
        """Each delivered event once (deduplicated by webhook-id), in order of first delivery."""
        return list(dict.fromkeys(s.webhook_id for s in self.delivered()))

    def redelivered(self, among: set[str]) -> int:
        """How many of the events `among` were delivered more than once (allowed: deliveries
        are at least once, and the receiver deduplicates by webhook-id)."""
        times = Counter(s.webhook_id for s in self.delivered() if s.webhook_id in among)
        return sum(n > 1 for n in times.values())

    def problems(self, expected: dict[str, list[str]]) -> list[str]:
        """What the requests seen break of the delivery contract (docs/webhooks.md), given each
        stream's event ids in seq order: every request is signed by one of the endpoint's
        secrets; after dedup by webhook-id, every expected event was delivered (answered 2xx)
        and no other event arrived; per stream, events first arrived in seq order."""
        found = [
            f"{s.webhook_id}: no secret of the endpoint verifies {s.signatures}"
            for s in self.seen
            if not s.verified_by
        ]
        wanted = {i for ids in expected.values() for i in ids}
        delivered = set(self.ids())
        found += [f"{i}: never delivered" for i in sorted(wanted - delivered)]
        unknown = {s.webhook_id for s in self.seen} - wanted
        found += [f"{i}: delivered, but no such event was expected" for i in sorted(unknown)]
        for stream, ids in expected.items():
            first = list(dict.fromkeys(s.webhook_id for s in self.seen if s.stream == stream))
            if first != [i for i in ids if i in first]:
                found.append(f"stream {stream}: events first arrived as {first}, not as {ids}")
        return found

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._connections[writer] = handler
        try:
            while True:
                request = await reader.readline()
                if not request:
                    return
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, delay = self.script.pop(0) if self.script else (self.status, self.delay)
                late = delay >= self.answer_limit
                self.seen.append(self._check(headers, body, 0 if late else status))
                self.answering += 1
                try:
                    if delay:
                        await asyncio.sleep(delay)
                    extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
                    head = f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n{extra}\r\n"
                    writer.write(head.encode())
                    await writer.drain()
                finally:
                    self.answering -= 1
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # down(), or the end of the test's event loop: a handler that ended cancelled is
            # logged as an unhandled error by asyncio's stream server (Python 3.11)
            return
        finally:
            self._connections.pop(writer, None)
            with contextlib.suppress(Exception):
                writer.close()

    def _check(self, headers: dict[str, str], body: bytes, status: int) -> Seen:
        verified = []
        for secret in self.secrets:
            with contextlib.suppress(WebhookVerificationError):
                Webhook(secret).verify(body, headers)
                verified.append(secret)
        return Seen(
            webhook_id=headers.get("webhook-id", ""),
            body=json.loads(body),
            signatures=headers.get("webhook-signature", "").split(" "),
            verified_by=verified,
            status=status,
            host=headers.get("host", ""),
        )
