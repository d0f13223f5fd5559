"""The delivery-destination rule: which URLs the platform's settings and a tenant file's `delivery:` may name.

A destination is where signed events are POSTed. It may be this machine (loopback: the sandbox's fake
platform, a platform on the same host) or the operator's own network (private ranges), never a cloud
metadata service, a link-local, unspecified, multicast or broadcast address, nor an address in disguise
(IPv4 inside IPv6; hex, octal, decimal-integer or shortened IPv4), and never text that is not a URL.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
import yaml

from tenancy.hosts import check_destination_address, check_destination_host, check_destination_url
from tenancy.model import DELIVERY_URL_PATTERN, Delivery

ALLOWED = [
    "https://platform.example.com/in/hospitable",
    "https://Platform.Example.com./in?source=tenantctl",  # case, the root dot and a query
    "https://platform.example.com:8443/in",
    "https://platform.example.com?source=tenantctl",  # a query without a path
    "https://platform.example.com/in%2Fhospitable",
    "http://127.0.0.1:8000/platform/hospitable",  # loopback: the sandbox's fake platform
    "http://127.0.0.2:9/x",
    "http://[::1]:8000/in",
    "http://localhost:8000/in",
    "https://10.0.0.5/in",  # private ranges: a platform inside the operator's network
    "https://172.16.5.9:8443/in",
    "https://192.168.1.50/in",
    "https://100.101.102.103/in",  # shared address space: overlay VPNs
    "https://[fd12:3456:789a::1]:8443/in",
    "https://93.184.216.34/in",
    "https://[2a00:1450:4001:80b::200e]/in",
    "https://platform.example.com/in/%C3%A9t%C3%A9",  # non-ASCII, percent-encoded
]

REFUSED = [
    # The attacker's list (tenant file and settings alike).
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://0.0.0.0:19103/", "this network"),
    ("https://[::ffff:127.0.0.1]:19103/", "IPv4 address written inside an IPv6 address"),
    ("https://[::ffff:7f00:1]:19103/", "IPv4 address written inside an IPv6 address"),
    ("https://[::]:19103/", "unspecified"),
    ("https://0x7f000001:19103/", "four decimal numbers"),
    ("https://2130706433/", "four decimal numbers"),
    ("https://0177.0.0.1/", "four decimal numbers"),
    ("https://127.1/", "four decimal numbers"),
    # Metadata, link-local, multicast, broadcast, reserved.
    ("https://[fe80::1]/", "link-local"),
    ("https://[fe80::1%25eth0]/", "zone"),
    ("https://[fd00:ec2::254]/", "metadata"),
    ("https://100.100.100.200/", "metadata"),
    ("https://168.63.129.16/", "metadata"),
    ("https://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("https://224.0.0.1/", "multicast"),
    ("https://[ff02::1]/", "multicast"),
    ("https://255.255.255.255/", "reserved"),
    ("https://0.1.2.3/", "this network"),
    # IPv4 inside IPv6, whatever the IPv4 address: a destination writes it as a dotted quad.
    ("https://[::ffff:10.0.0.5]/", "IPv4 address written inside an IPv6 address"),
    ("https://[::127.0.0.1]/", "IPv4 address written inside an IPv6 address"),
    ("https://[::ffff:0:7f00:1]/", "IPv4 address written inside an IPv6 address"),
    ("https://[2002:a9fe:a9fe::]/", "link-local"),  # 6to4 of the metadata address
    ("https://[2002:7f00:1::]/", "loopback"),  # loopback is allowed as written, not in disguise
    ("https://[64:ff9b::7f00:1]/", "loopback"),
    # Not a URL a destination can be.
    ("http://evil\x1bc\x07.example/x", "printable ASCII"),
    ("http://evil\x08\x08\x08.example/x", "printable ASCII"),
    ("https://platform.example.com/in\x1b[2J", "printable ASCII"),
    ("https://platform.example.com/ in", "printable ASCII"),
    ("https://pl\u0430tform.example.com/in", "printable ASCII"),  # a Cyrillic a
    ("https://platform.example.com/\u202ein", "printable ASCII"),
    ("https://user:pw@platform.example.com/in", "credentials"),
    ("ftp://platform.example.com/in", "not an http(s) URL"),
    ("http://platform.example.com/in", "plain http is refused except to loopback"),  # the worker never sends it
    ("http://10.1.2.3:8000/in", "plain http is refused except to loopback"),
    ("https:///in", "not an http(s) URL"),
    ("platform.example.com/in", "not an http(s) URL"),
    ("https://::1/in", "brackets"),
    ("https://platform_1.example.com/in", "not a host name"),
    ("https://platform.example.com:0/in", "port"),
    # What the schema's pattern refuses, said in a sentence rather than the pattern quoted (review finding).
    ("https://platform.example.com/h#frag", "a fragment (#...) is never sent to a server"),
    ("https://platform.example.com/<x>", "'<' is not allowed in a URL's path or query: percent-encode it (%3C)"),
    ("https://platform.example.com/a\\b", "is not allowed in a URL's path or query: percent-encode it (%5C)"),
    ("HTTPS://platform.example.com/in", "in lower case"),
    ("https://platform.example.com/a%zz", "a '%' in a URL starts a percent-encoding of two hex digits"),
    ("https://platform.example.com/%", "a '%' in a URL starts a percent-encoding"),
    ("https://platform.example.com:08443/in", "without leading zeros"),
]


@pytest.mark.parametrize("url", ALLOWED)
def test_a_destination_may_be_a_public_name_a_private_address_or_loopback(url: str) -> None:
    assert check_destination_url(url) is None


@pytest.mark.parametrize("url", ALLOWED)
def test_the_schemas_pattern_for_editors_accepts_what_the_rule_accepts(url: str) -> None:
    """An editor checking a tenant file against schemas/tenant.schema.json must not flag a URL tenantctl takes."""
    assert re.fullmatch(DELIVERY_URL_PATTERN, url), url


@pytest.mark.parametrize(("url", "reason"), REFUSED, ids=[repr(u) for u, _ in REFUSED])
def test_a_destination_that_is_never_a_platform_is_refused_with_a_reason(url: str, reason: str) -> None:
    why = check_destination_url(url)
    assert why is not None and reason.lower() in why.lower(), why


@pytest.mark.parametrize("url", [u for u, _ in REFUSED])
def test_the_reason_is_plain_text_whatever_the_url_holds(url: str) -> None:
    why = check_destination_url(url) or ""
    assert why.isprintable() and why.isascii()


@pytest.mark.parametrize(("host", "refused"), [
    ("127.0.0.1", False), ("[::1]:8000", False), ("localhost", False), ("10.0.0.1", False),
    ("169.254.169.254", True), ("[::ffff:127.0.0.1]", True), ("0x7f000001", True), ("metadata", True),
    ("api.nuki.io", False),  # a provider's domain is a device's concern, not a destination's
])
def test_the_host_rule_shares_the_device_syntax_and_allows_loopback(host: str, refused: bool) -> None:
    assert (check_destination_host(host) is not None) is refused


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.53", False), ("::1", False), ("10.20.30.40", False), ("8.8.8.8", False),
    ("169.254.169.254", True), ("0.0.0.0", True), ("::", True), ("fe80::abcd", True), ("239.1.1.1", True),
    ("::ffff:127.0.0.1", True), ("::ffff:8.8.8.8", True), ("::7f00:1", True), ("2002:7f00:1::", True),
])
def test_the_address_rule(address: str, refused: bool) -> None:
    assert (check_destination_address(ipaddress.ip_address(address)) is not None) is refused


def test_the_documented_delivery_examples_pass_and_the_documented_refusals_are_refused() -> None:
    """docs/tenant-file.md's `delivery:` example and the README's are valid overrides; the forms those docs
    name as refused are refused."""
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "tenant-file.md").read_text(encoding="utf-8")
    section = doc.split("## Delivery overrides (`delivery:`)", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    Delivery.model_validate(yaml.safe_load(block.group(1))["delivery"])
    readme = (root / "README.md").read_text(encoding="utf-8")
    line = re.search(r"^delivery: +(\{.*?\})", readme, re.M)
    assert line is not None
    Delivery.model_validate(yaml.safe_load(line.group(1)))
    for url in ("http://platform.example.com/in", "https://user:pass@platform.example.com/in",
                "https://169.254.169.254/in", "https://metadata.google.internal/in", "https://0.0.0.0/in",
                "https://[::]/in", "https://0x7f000001/in", "https://127.1/in", "https://[::ffff:127.0.0.1]/in"):
        assert check_destination_url(url) is not None, url
