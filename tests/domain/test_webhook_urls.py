"""R-EVENT-2's URL rules: https to public addresses; loopback only on the local stack."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.webhook_urls import RefusedUrl, check_resolved, parse_target

PRIVATE_NETS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.5/hook",
        "https://172.20.1.1/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https://user:secret@example.com/hook",
        "https:///nohost",
        "https://example.com/hook#frag",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(RefusedUrl):
        parse_target(url, allow_loopback=False)


def test_public_https_is_accepted() -> None:
    target = parse_target("https://hooks.example.com:8443/in", allow_loopback=False)
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 8443)
    check_resolved(target, [ipaddress.ip_address("93.184.216.34")], allow_loopback=False)


def test_loopback_http_only_on_the_local_stack() -> None:
    target = parse_target("http://127.0.0.1:9000/in", allow_loopback=True)
    check_resolved(target, [ipaddress.ip_address("127.0.0.1")], allow_loopback=True)
    with pytest.raises(RefusedUrl):
        parse_target("http://127.0.0.1:9000/in", allow_loopback=False)
    # http to anything but loopback stays refused on the local stack
    with pytest.raises(RefusedUrl):
        check_resolved(
            parse_target("http://example.com/in", allow_loopback=True),
            [ipaddress.ip_address("93.184.216.34")],
            allow_loopback=True,
        )


@given(
    st.sampled_from(PRIVATE_NETS).flatmap(
        lambda net: st.integers(0, ipaddress.ip_network(net).num_addresses - 1).map(
            lambda i, net=net: ipaddress.ip_network(net)[i]  # type: ignore[misc]
        )
    ),
    st.booleans(),
)
def test_a_name_resolving_to_a_private_address_is_refused(
    address: ipaddress.IPv4Address, allow_loopback: bool
) -> None:
    target = parse_target("https://hooks.example.com/in", allow_loopback=allow_loopback)
    with pytest.raises(RefusedUrl):
        check_resolved(
            target, [ipaddress.ip_address("93.184.216.34"), address], allow_loopback=allow_loopback
        )


def test_a_name_that_does_not_resolve_is_refused() -> None:
    target = parse_target("https://nowhere.invalid/in", allow_loopback=False)
    with pytest.raises(RefusedUrl, match="does not resolve"):
        check_resolved(target, [], allow_loopback=False)
