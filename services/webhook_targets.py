"""Resolve a webhook URL's host and judge every address (domain/webhook_urls.py).

The API calls `checked_target` when an endpoint is created and the delivery activity before
each attempt, so a name re-pointed at a private address after creation is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from domain.webhook_urls import IPAddress, RefusedUrl, Target, check_resolved, parse_target

RESOLVE_TIMEOUT = 5.0


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (empty when it does not resolve in time)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
        )
    except (OSError, TimeoutError):
        return []
    return sorted({ipaddress.ip_address(info[4][0]) for info in infos}, key=str)


async def checked_target(url: str, *, allow_loopback: bool) -> Target:
    """The URL's target when it and every address its host resolves to may receive webhooks;
    RefusedUrl otherwise."""
    target = parse_target(url, allow_loopback=allow_loopback)
    check_resolved(target, await resolve(target.host, target.port), allow_loopback=allow_loopback)
    return target


__all__ = ["RefusedUrl", "Target", "checked_target", "resolve"]
