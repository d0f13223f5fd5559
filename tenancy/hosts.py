"""Which hosts a tenant file may name as a device (`properties[].intercom.host`) or a delivery destination: pure.

A tenant file sends credentials (2N Digest auth) to the host it names, so a host must be a device on a
site, never this machine, a cloud metadata service or another provider's API. The same rule runs twice:
on the text when a tenant file is validated (`check_device_host`), and on the address actually connected
to, after DNS, by the outbound client (`check_device_address`), since a name can resolve anywhere.

Accepted: a DNS name (RFC 1123 labels: letters, digits, hyphens; ≤ 63 per label, ≤ 253 in all; the last
label not numeric, RFC 3696 §2), a dotted-quad IPv4 address or a bracketed IPv6 address, each optionally
with `:port`. A port is allowed because sites reach a device through their router's port forward
(e.g. `https://site.example:8443` forwarded to the intercom's 443); the address rule still applies.

Refused, each with its reason:
- names: `localhost` and `*.localhost` (RFC 6761), cloud metadata names (`metadata`,
  `metadata.google.internal`, `metadata.goog`, `instance-data`, `instance-data.ec2.internal`, ...),
  the providers' API domains (facebook.com, nuki.io, hospitable.com, beds24.com and their subdomains);
- addresses: loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10), unspecified and
  "this network" (0.0.0.0/8, ::), multicast, broadcast, reserved (240.0.0.0/4), IETF protocol
  assignments (192.0.0.0/24), benchmarking (198.18.0.0/15), documentation ranges, the metadata
  addresses that live in other ranges (100.100.100.200, Azure's WireServer 168.63.129.16, fd00:ec2::254),
  and IPv6 forms embedding a refused IPv4 address: IPv4-mapped (::ffff:127.0.0.1), IPv4-compatible
  (::127.0.0.1), SIIT (::ffff:0:7f00:1), NAT64 (64:ff9b::7f00:1; the local-use 64:ff9b:1::/48 whole), 6to4
  (2002:7f00:1::) and Teredo;
- IPv4 written in any form but four decimal numbers: octal (0177.0.0.1), decimal (2130706433), hex
  (0x7f000001) and shortened (127.1) forms are read differently by different resolvers, so a check on
  the text could disagree with the address connected to.
Private LAN ranges (10/8, 172.16/12, 192.168/16, fc00::/7) and shared address space (100.64/10, used by
overlay VPNs) are allowed: a device on a site's network is the point.

Delivery destinations (`TENANTCTL_DELIVERY_URL_<PROVIDER>` and a tenant file's `delivery:`) meet the same
syntax and nearly the same addresses (`check_destination_url`, `check_destination_host`): on the text when
a tenant file is validated, and again by the outbound policy before every request, so a setting cannot
bypass it. The differences, each for a reason:
- loopback as written (127.0.0.0/8, ::1, `localhost`) is allowed: the sandbox's fake platform and a platform
  on the same host listen there (plain http to it still needs TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP);
- an IPv4 address written inside IPv6 (IPv4-mapped ::ffff:a.b.c.d, -compatible ::a.b.c.d, SIIT) is refused
  whatever it is: it only disguises an address a destination can write as a dotted quad;
- of the names only the cloud metadata names are refused (a platform may live under any domain);
- private ranges stay allowed: a platform inside the operator's network is the usual deployment, and the
  operator (settings) or an admin (tenant files) chooses it; what is refused is what never is a platform
  (metadata, link-local, unspecified, multicast, broadcast, reserved, disguised forms).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = [
    "LOOPBACK_NAMES",
    "check_destination_address",
    "check_destination_host",
    "check_destination_url",
    "check_device_address",
    "check_device_host",
    "is_loopback_name",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")  # what inet_aton would read as a number
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")

METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "metadata.azure.internal", "metadata.tencentyun.com", "metadata.platformequinix.com",
})
# The providers' API hosts are public.api.hospitable.com, graph.facebook.com, api.nuki.io and
# api.beds24.com (reconciler/config.py; a test keeps the two in step): a device never lives there.
PROVIDER_DOMAINS = frozenset({"facebook.com", "nuki.io", "hospitable.com", "beds24.com"})

_REFUSED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), why) for net, why in [
        ("0.0.0.0/8", "'this network' (0.0.0.0/8) reaches this machine"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (cloud metadata lives at 169.254.169.254)"),
        ("192.0.0.0/24", "an IETF protocol address (192.0.0.0/24; some clouds serve metadata there)"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address (240.0.0.0/4, broadcast included)"),
        ("100.100.100.200/32", "a cloud metadata address"),
        ("168.63.129.16/32", "a cloud metadata address (Azure WireServer)"),
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("fe80::/10", "a link-local address"),
        ("ff00::/8", "a multicast address"),
        ("2001:db8::/32", "a documentation address"),
        ("fd00:ec2::254/128", "a cloud metadata address"),
        # RFC 8215: the operator picks where the IPv4 address sits (RFC 6052 §2.2), so it cannot be judged.
        ("64:ff9b:1::/48", "a local-use NAT64 address (64:ff9b:1::/48; its IPv4 address cannot be told)"),
    ]
)


_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1 (deprecated, still routed by some)
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT, RFC 2765 §2.1


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and may be translated to: IPv4-mapped and -compatible,
    SIIT-translated, NAT64 (the well-known /96), 6to4 (RFC 3056) and Teredo's server and client (RFC 4380).
    Empty for an ordinary IPv6 address. (The local-use NAT64 /48 is refused whole: see the table.)"""
    n, found = int(ip), []
    low32 = ipaddress.IPv4Address(n & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _IPV4_COMPATIBLE or ip in _IPV4_TRANSLATED or ip in _NAT64_WELL_KNOWN:
        found.append(low32)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def check_device_address(ip: IPAddress) -> str | None:
    """Why a device may not be reached at IP (an address a name resolved to), or None when it may.
    An IPv6 address embedding an IPv4 address (see `embedded_ipv4`) is judged by that address too."""
    for net, why in _REFUSED_NETWORKS:
        if ip.version == net.version and ip in net:
            return why
    if ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_multicast:
        return "not a device address"  # the table above covers these; kept in case it drifts
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in embedded_ipv4(ip):
            if inner := check_device_address(embedded):
                return f"{inner} (inside an IPv6 address)"
    return None


def check_device_host(host: str) -> str | None:
    """Why HOST (`name`, `a.b.c.d`, `[v6]`, each optionally `:port`) may not be a device, or None.

    The reason is a short phrase for a finding ("a loopback address"); HOST itself is not repeated.
    """
    return _check_host(host, check_device_address, _device_name)


def _device_name(name: str) -> str | None:
    """Why the DNS name NAME (lower case, no root dot) may not be a device, or None."""
    if name == "localhost" or name.endswith(".localhost") or name in ("localhost.localdomain", "ip6-localhost",
                                                                       "ip6-loopback"):
        return "a name of this machine (localhost)"
    if name in METADATA_NAMES:
        return "a cloud metadata service"
    for domain in PROVIDER_DOMAINS:
        if name == domain or name.endswith("." + domain):
            return f"a provider's API domain ({domain}), not a device"
    return None


def _destination_name(name: str) -> str | None:
    """Why the DNS name NAME may not be a delivery destination: only the metadata services' names."""
    return "a cloud metadata service" if name in METADATA_NAMES else None


def check_destination_address(ip: IPAddress) -> str | None:
    """Why a delivery destination may not be IP, or None: the device rule, except that loopback as written
    (127.0.0.0/8, ::1) is allowed, and that an IPv4 address written inside IPv6 (IPv4-mapped, -compatible,
    SIIT) is refused whatever it is: a destination names its IPv4 address as a dotted quad."""
    if isinstance(ip, ipaddress.IPv6Address) and not ip.is_loopback and not ip.is_unspecified and (
            ip.ipv4_mapped is not None or ip in _IPV4_COMPATIBLE or ip in _IPV4_TRANSLATED):
        return "an IPv4 address written inside an IPv6 address (IPv4-mapped or -compatible): write the IPv4 address"
    if ip.is_loopback:
        return None  # this machine: the sandbox's fake platform, a platform on the same host
    return check_device_address(ip)


def check_destination_host(host: str) -> str | None:
    """Why HOST (`name`, `a.b.c.d`, `[v6]`, each optionally `:port`) may not be a delivery destination's host,
    or None. The same syntax as a device host; the address rule is `check_destination_address`, and of the
    names only the cloud metadata services are refused (`localhost` is loopback; a platform may share a
    domain with anything)."""
    return _check_host(host, check_destination_address, _destination_name)


# A URL is printable ASCII without spaces (RFC 3986 §2; anything else is percent-encoded), so a control
# character, an escape sequence or a look-alike letter never reaches a request, a terminal or a log.
_URL_TEXT = re.compile(r"[!-~]+")
# RFC 3986's characters of a path and query, as the tenant file schema's pattern has them (tenancy/model.py
# DELIVERY_URL_PATTERN); the host has its own rule (check_destination_host).
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~!$&'()*+,;=:@/?%-")


LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback_name(name: str) -> bool:
    """Whether NAME (a URL's host without port or brackets) names this machine as written: `localhost`,
    127.0.0.0/8 or ::1."""
    name = name.lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_destination_url(url: str) -> str | None:
    """Why URL (`TENANTCTL_DELIVERY_URL_<PROVIDER>` or a tenant file's `delivery:`) may not be a delivery
    destination, or None: printable ASCII only, http(s), no credentials, a host `check_destination_host`
    accepts, and plain http only to loopback (which the outbound policy allows only when told to,
    TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP: outbound/policy.py, with the allow-list). The reason never repeats
    URL."""
    if not _URL_TEXT.fullmatch(url):
        return ("a URL is printable ASCII without spaces: control characters, spaces and non-ASCII letters "
                "are refused (percent-encode them in a path)")
    scheme, sep, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0] if sep else ""
    if scheme not in ("http", "https") or not authority:
        return "not an http(s) URL with a host (http:// or https://, in lower case)"
    if "@" in authority:
        return "credentials in the URL are refused"
    why = check_destination_host(authority)
    if why is not None:
        return f"its host is refused: {why}"
    if "#" in rest:
        return "a fragment (#...) is never sent to a server: leave it out"
    if (bad := next((ch for ch in rest[len(authority):] if ch not in _PATH_CHARS), None)) is not None:
        return f"'{bad}' is not allowed in a URL's path or query: percent-encode it (%{ord(bad):02X})"
    if _BAD_PERCENT.search(rest):
        return "a '%' in a URL starts a percent-encoding of two hex digits (%2F); a '%' itself is %25"
    if scheme.lower() == "http" and not is_loopback_name(urlsplit(url).hostname or ""):
        return "plain http is refused except to loopback: use https"
    return None


def _check_host(host: str, address_rule: Callable[[IPAddress], str | None],
                name_rule: Callable[[str], str | None]) -> str | None:
    """The syntax both host rules share (see the module's docstring); addresses and names are then judged
    by ADDRESS_RULE and NAME_RULE."""
    if not host or host != host.strip():
        return "empty, or surrounded by spaces"
    name, port = _split_port(host)
    if name is None:
        return "write an IPv6 address in brackets: [2001:db8::1] or [2001:db8::1]:8443"
    if port is not None and not (_PORT.match(port) and int(port) <= 65535):
        return "the port must be a number from 1 to 65535, without leading zeros"
    if name.startswith("["):
        if not name.endswith("]"):
            return "an IPv6 address in brackets is missing its closing ]"
        try:
            v6 = ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return "not an IPv6 address inside the brackets"
        if v6.scope_id:
            return "an IPv6 zone (%...) only names a link-local address"
        return address_rule(v6)
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]  # the root; `localhost.` is `localhost`
    try:
        return address_rule(ipaddress.IPv4Address(name))
    except ValueError:
        pass
    labels = name.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        return "an IPv4 address must be four decimal numbers (no octal, hex, decimal-integer or shortened forms)"
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return "not a host name (letters, digits and hyphens between dots)"
    return name_rule(name)


def _split_port(host: str) -> tuple[str | None, str | None]:
    """(name, port) from `name[:port]` or `[v6][:port]`; (None, None) for an unbracketed IPv6 address."""
    if host.startswith("["):
        end = host.find("]")
        if end != -1 and host[end + 1:].startswith(":"):
            return host[:end + 1], host[end + 2:]
        return host, None
    if host.count(":") > 1:
        return None, None
    name, sep, port = host.partition(":")
    return name, (port if sep else None)
