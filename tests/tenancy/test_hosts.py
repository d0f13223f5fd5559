"""The device-host rule: which `intercom.host` values a tenant file may name, and which addresses after DNS."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest

from tenancy.hosts import PROVIDER_DOMAINS, check_device_address, check_device_host

ALLOWED = [
    "intercom-old-town.acme.example",
    "door.example",
    "Door.Example.",  # case and the root dot do not matter
    "site-7.example.com:8443",  # a router's port forward
    "10.0.0.12",
    "172.16.5.9",
    "192.168.1.50:443",
    "100.101.102.103",  # shared address space: overlay VPNs
    "93.184.216.34",
    "[2a00:1450:4001:80b::200e]",
    "[2002:5db8:d822::1]",  # 6to4 of a public address
    "[::ffff:0:a00:1]",  # SIIT of a LAN address
    "[fd12:3456:789a::1]:8443",
]

REFUSED = [
    ("localhost", "localhost"),
    ("LOCALHOST.", "localhost"),
    ("door.localhost", "localhost"),
    ("127.0.0.1", "loopback"),
    ("127.0.0.1:8080", "loopback"),
    ("127.255.0.3", "loopback"),
    ("[::1]", "loopback"),
    ("[::1]:443", "loopback"),
    ("169.254.169.254", "link-local"),
    ("[fe80::1]", "link-local"),
    ("0.0.0.0", "this network"),
    ("[::]", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("[ff02::1]", "multicast"),
    ("255.255.255.255", "reserved"),
    ("100.100.100.200", "metadata"),
    ("[fd00:ec2::254]", "metadata"),
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[::ffff:169.254.169.254]", "link-local"),
    ("[64:ff9b::7f00:1]", "loopback"),
    ("[::127.0.0.1]", "loopback"),  # IPv4-compatible (::/96)
    ("[::7f00:1]", "loopback"),
    ("[::a9fe:a9fe]", "link-local"),
    ("[::ffff:0:7f00:1]", "loopback"),  # SIIT (::ffff:0:0:0/96)
    ("[2002:7f00:1::]", "loopback"),  # 6to4 (2002::/16)
    ("[2002:a9fe:a9fe::]", "link-local"),
    ("[2002:a9fe:a9fe::1]:443", "link-local"),
    ("[64:ff9b:1::a9fe:a9fe]", "NAT64"),  # RFC 8215 local-use
    ("[64:ff9b:1:7f00:1::]", "NAT64"),
    ("[2001:0:a9fe:a9fe::1]", "link-local"),  # Teredo: the server's address
    ("168.63.129.16", "metadata"),  # Azure WireServer
    ("168.63.129.16:80", "metadata"),
    ("metadata.google.internal", "metadata"),
    ("metadata", "metadata"),
    ("metadata.goog", "metadata"),
    ("instance-data", "metadata"),
    ("instance-data.ec2.internal", "metadata"),
    ("graph.facebook.com", "provider"),
    ("api.nuki.io", "provider"),
    ("public.api.hospitable.com", "provider"),
    ("api.beds24.com", "provider"),
    ("evil.graph.facebook.com", "provider"),
    ("0177.0.0.1", "four decimal numbers"),
    ("2130706433", "four decimal numbers"),
    ("0x7f000001", "four decimal numbers"),
    ("0x7f.0.0.1", "four decimal numbers"),
    ("127.1", "four decimal numbers"),
    ("10.1", "four decimal numbers"),
    ("1.2.3.04", "four decimal numbers"),
    ("::1", "brackets"),
    ("fe80::1%eth0", "brackets"),
    ("[fe80::1%eth0]", "zone"),
    ("[not-v6]", "IPv6"),
    ("door.example:0", "port"),
    ("door.example:65536", "port"),
    ("door.example:08443", "port"),
    ("door.example:", "port"),
    ("door_1.example", "host name"),
    ("-door.example", "host name"),
    ("door..example", "host name"),
    ("a" * 64 + ".example", "host name"),
    ("", "empty"),
    (" door.example", "spaces"),
    ("user@door.example", "host name"),
    ("door.example/path", "host name"),
]


@pytest.mark.parametrize("host", ALLOWED)
def test_a_device_may_be_a_name_or_a_site_address(host: str) -> None:
    assert check_device_host(host) is None


@pytest.mark.parametrize(("host", "reason"), REFUSED, ids=[h or "empty" for h, _ in REFUSED])
def test_hosts_that_are_not_a_site_device_are_refused_with_a_reason(host: str, reason: str) -> None:
    why = check_device_host(host)
    assert why is not None and reason.lower() in why.lower(), why


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.53", True), ("169.254.169.254", True), ("0.0.0.0", True), ("::1", True), ("fe80::abcd", True),
    ("::ffff:10.0.0.1", False), ("::ffff:127.0.0.1", True), ("239.1.1.1", True), ("fd00:ec2::254", True),
    ("10.20.30.40", False), ("192.168.0.10", False), ("8.8.8.8", False), ("2a00:1450::1", False),
    ("::127.0.0.1", True), ("::7f00:1", True), ("::ffff:0:7f00:1", True), ("2002:7f00:1::", True),
    ("2002:a9fe:a9fe::", True), ("64:ff9b:1::a9fe:a9fe", True), ("64:ff9b::a9fe:a9fe", True),
    ("168.63.129.16", True), ("::ffff:168.63.129.16", True), ("2001:0:a9fe:a9fe::1", True),
    ("2002:5db8:d822::1", False), ("::ffff:0:a00:1", False), ("64:ff9b::a00:1", False),
])
def test_a_resolved_address_is_checked_by_the_same_rule(address: str, refused: bool) -> None:
    assert (check_device_address(ipaddress.ip_address(address)) is not None) is refused


def test_every_provider_api_host_is_refused_as_a_device() -> None:
    from reconciler.config import PROVIDER_HOSTS, REAL_BASE_URLS

    hosts = {h for per_provider in PROVIDER_HOSTS.values() for h in per_provider}
    hosts |= {urlsplit(u).hostname or "" for u in REAL_BASE_URLS.values() if "{" not in u}
    for host in hosts:
        assert any(host == d or host.endswith("." + d) for d in PROVIDER_DOMAINS), host
        assert check_device_host(host) is not None
