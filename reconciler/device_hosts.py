"""Which IP addresses a device host (a tenant's 2N intercom) may resolve to. Pure: no I/O.

The rule (issue 9.13): an intercom is on the public internet or on a private LAN, so an address is
allowed when it is global or private (RFC 1918, RFC 4193, CGNAT), and refused when it is loopback,
link-local (169.254/16, fe80::/10: cloud metadata lives there), unspecified, multicast, reserved, or a
known metadata address (AWS/GCP/Azure 169.254.169.254, AWS IPv6 fd00:ec2::254, Alibaba 100.100.100.200,
Oracle 192.0.0.192). IPv4-mapped and 6to4/NAT64 IPv6 forms are judged by the IPv4 address inside.

This is the reconciler's private copy; tenancy/hosts.py (branch h3-tenancy) carries the same rule for
validating tenant files, and the two are to be folded into one at merge.
"""

from __future__ import annotations

import ipaddress

METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def check_device_address(ip: str) -> str | None:
    """None when a device may be reached at `ip`, else why not (e.g. "a link-local address")."""
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(addr, ipaddress.IPv6Address):
        inner = addr.ipv4_mapped or addr.sixtofour or (
            ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF) if addr in NAT64 else None)
        if inner is not None:
            addr = inner
    if addr in METADATA:
        return "a cloud metadata address"
    checks = (("loopback", addr.is_loopback), ("link-local", addr.is_link_local),
              ("unspecified", addr.is_unspecified), ("multicast", addr.is_multicast),
              ("reserved", addr.is_reserved))
    for name, hit in checks:
        if hit:
            return f"a {name} address"
    return None
