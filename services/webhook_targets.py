"""Resolve a webhook URL's host and judge every address (domain/webhook_urls.py).

The API calls `checked_target` when an endpoint is created and the delivery activity before
each attempt, so a name re-pointed at a private address after creation is refused too; the
attempt then connects to an address judged here, never resolving the name again
(services/webhook_sender.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from domain.webhook_urls import IPAddress, RefusedUrl, Target, check_resolved, parse_target

RESOLVE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Checked:
    """A URL whose host and every address it resolved to may receive webhooks."""

    target: Target
    addresses: list[IPAddress]  # in the resolver's order of preference


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order of preference (empty when it
    does not resolve in time). An address literal resolves to itself."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
        )
    except (OSError, TimeoutError):
        return []
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0])) for info in infos))


async def checked_target(url: str, *, allow_loopback: bool) -> Checked:
    """The URL's target and addresses when it and every address its host resolves to may
    receive webhooks; RefusedUrl otherwise."""
    target = parse_target(url, allow_loopback=allow_loopback)
    addresses = await resolve(target.host, target.port)
    check_resolved(target, addresses, allow_loopback=allow_loopback)
    return Checked(target, addresses)


__all__ = ["Checked", "RefusedUrl", "Target", "checked_target", "resolve"]
