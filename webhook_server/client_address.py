"""Which address sent a request: the TCP peer always; forwarded headers only from trusted proxies.

``X-Forwarded-For`` and ``X-Real-IP`` are whatever the sender wrote, so they are believed only when the
peer is one of the configured proxies (``TENANTCTL_FORWARDED_ALLOW_IPS``, the same list gunicorn's
``forwarded_allow_ips`` uses). Then the client is the right-most ``X-Forwarded-For`` address that is not
itself a trusted proxy (each proxy appends the address it saw), else ``X-Real-IP``. Pure: no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    """Parsed ``forwarded_allow_ips``: addresses or networks, comma-separated; ``*`` trusts every peer."""

    everyone: bool
    networks: tuple[_Network, ...]

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        items = [i.strip() for i in text.split(",") if i.strip()]
        if "*" in items:
            return cls(True, ())
        networks: list[_Network] = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"TENANTCTL_FORWARDED_ALLOW_IPS: {item!r} is not an IP address or network") from None
        return cls(False, tuple(networks))

    def trusts(self, address: str | None) -> bool:
        if self.everyone:
            return True
        if address is not None and len(address) > MAX_CACHED_ADDRESS:
            return _trusts.__wrapped__(self.networks, address)  # no address: not worth a cache slot
        return _trusts(self.networks, address)


# Asked for every request's peer, mostly the same few proxies: parsing the address measured ~1 % of a
# worker's time. Bounded in entries and in their length, so made-up X-Forwarded-For hops cannot grow it.
MAX_CACHED_ADDRESS = 64
@functools.lru_cache(maxsize=1024)
def _trusts(networks: tuple[_Network, ...], address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return False
    return any(ip in n for n in networks)


def addresses(peer: str | None, headers: Mapping[str, str], trusted: TrustedProxies) -> dict[str, str]:
    """What the log keeps: ``peer`` (always), ``client`` (the sender as far as trusted proxies say), and
    the forwarded headers as sent only when the peer is trusted. HEADERS keys are lower-case."""
    peer = peer or "-"
    found = {"peer": peer, "client": peer}
    if not trusted.trusts(peer):
        return found
    for name in ("x-forwarded-for", "x-real-ip"):
        if name in headers:
            found[name] = headers[name]
    hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted.trusts(hop):
            if _is_ip(hop):  # anything else is no address (a forged "<script>", a name): keep the peer
                found["client"] = hop
            break
    else:
        real = headers.get("x-real-ip", "").strip()
        if real and _is_ip(real):
            found["client"] = real
    return found


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
