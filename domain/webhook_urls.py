"""Where a webhook may be sent (R-EVENT-2; docs/webhooks.md, "Endpoint URLs").

Only `https://` URLs, and on the local stack (`allow_loopback`) also loopback `http://`. No
address that is not globally routable: private (10/8, 172.16/12, 192.168/16, fc00::/7), shared
(100.64/10), link-local (169.254/16, fe80::/10, cloud metadata), unspecified, multicast, reserved
and loopback (unless allowed). A host name is judged by every address it resolves to: the API
checks at creation, the delivery activity again before each attempt (a name can be re-pointed).

Pure: resolving is the caller's (services/webhook_targets.py); these functions judge what it found.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A syntactically acceptable URL's parts."""

    url: str
    scheme: str
    host: str
    port: int


class RefusedUrl(ValueError):
    """Why a URL may not receive webhooks; `reason` is a stable code, the message English."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_target(url: str, *, allow_loopback: bool) -> Target:
    """The URL's scheme, host and port, or RefusedUrl for a URL no address could make acceptable."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedUrl("too_long", f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as bad:
        raise RefusedUrl("malformed", f"The URL is malformed: {bad}.") from bad
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise RefusedUrl("scheme", "Only https:// URLs can receive webhooks.")
    if not parts.hostname:
        raise RefusedUrl("malformed", "The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("credentials", "The URL must not carry a user name or password.")
    if parts.fragment:
        raise RefusedUrl("malformed", "The URL must not have a #fragment.")
    host = parts.hostname.lower()
    if scheme == "http" and not allow_loopback:
        raise RefusedUrl("scheme", "Only https:// URLs can receive webhooks.")
    literal = _literal_address(host)
    if literal is not None:
        refused_address(literal, scheme=scheme, allow_loopback=allow_loopback)
    elif host == "localhost" or host.endswith(".localhost"):
        if not allow_loopback:
            raise RefusedUrl("address", "Loopback addresses cannot receive webhooks.")
    return Target(
        url=url, scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80)
    )


def refused_address(address: IPAddress, *, scheme: str, allow_loopback: bool) -> None:
    """RefusedUrl unless `address` may receive webhooks sent with `scheme`."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        if allow_loopback:
            return
        raise RefusedUrl("address", "Loopback addresses cannot receive webhooks.")
    if scheme != "https":
        raise RefusedUrl("scheme", "Only https:// URLs can receive webhooks (http: loopback only).")
    if address.is_multicast or address.is_unspecified or not address.is_global:
        raise RefusedUrl(
            "address",
            f"{address} is a private, link-local or reserved address: webhooks go to public"
            " addresses only.",
        )


def check_resolved(target: Target, addresses: list[IPAddress], *, allow_loopback: bool) -> None:
    """RefusedUrl unless the host resolved and every address it resolved to is acceptable."""
    if not addresses:
        raise RefusedUrl("unresolvable", f"The host {target.host} does not resolve.")
    for address in addresses:
        refused_address(address, scheme=target.scheme, allow_loopback=allow_loopback)


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
