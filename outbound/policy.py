"""The rules an outbound request meets before and while it is sent.

0. The URL must be a destination at all (tenancy.hosts.check_destination_url: never a metadata, link-local,
   unspecified, multicast or disguised address, nor text with control characters), whichever its source.
1. The host must be allow-listed (destinations come from settings, never from a payload): ``OutboundBlocked``.
2. https only; plain http only to a loopback address and only when the policy allows it (sandbox, dev).
3. Redirects are never followed (they could carry a signed body elsewhere): a 3xx is an answer, not a hop.
4. Connect and read timeouts on every request, and a total deadline while the response is read.
5. At most ``max_response_bytes`` of a response are read; the rest is left unread.

Rules 0 to 2 are checked here (pure); rules 3 to 5 are kept by the sender (outbound/sender.py).
Errors: ``OutboundBlocked`` (refused before sending).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from tenancy.escape import printable
from tenancy.hosts import check_destination_url, is_loopback_name


class OutboundBlocked(Exception):
    """A request the policy refuses to send (host not allow-listed, plain http, bad URL)."""


@dataclass(frozen=True)
class OutboundPolicy:
    allowed_hosts: frozenset[str]
    allow_loopback_http: bool = False
    connect_timeout_s: float = 5.0
    timeout_s: float = 10.0  # read timeout, and the total deadline of reading one response
    max_response_bytes: int = 65_536


@dataclass(frozen=True)
class Answer:
    """What came back: status, headers (lower-case names), at most the policy's cap of the body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_s: float


def host_of(url: str) -> str:
    """The lower-case host (with :port when given) of ``url``, an IPv6 address in brackets; '' when none, or
    when the URL cannot be split (a port out of range or not a number, an unclosed bracket: the destination rule
    says which, :func:`check_url`)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # as written: `::1:8000` would read as an address, not ::1 port 8000
    return f"{host}:{port}" if host and port else host


def is_loopback(host: str) -> bool:
    return is_loopback_name(urlsplit(f"//{host}").hostname or "")


def allow_list(urls: Iterable[str]) -> frozenset[str]:
    """The allow-list of a set of configured destination URLs."""
    return frozenset(host_of(u) for u in urls if host_of(u))


def check_url(policy: OutboundPolicy, url: str) -> None:
    """Raise OutboundBlocked unless ``url`` may be requested under ``policy``. First the destination rule
    (tenancy.hosts.check_destination_url: printable ASCII, http(s), no credentials, no metadata, link-local,
    unspecified, multicast or disguised address), the same a tenant file's override meets when validated, so
    a destination from the settings meets it too; then the allow-list and the http rule. A message quotes
    the URL's host only escaped (tenancy.escape.printable)."""
    why = check_destination_url(url)
    if why is not None:
        raise OutboundBlocked(why)
    parts = urlsplit(url)
    host = host_of(url)
    if parts.scheme not in ("https", "http") or not host:
        raise OutboundBlocked(f"not an http(s) URL with a host: {printable(parts.scheme) or '(no scheme)'}://"
                              f"{printable(host)}")
    if host not in policy.allowed_hosts:
        raise OutboundBlocked(f"host {printable(host)} is not allow-listed")
    if parts.scheme == "http" and not (policy.allow_loopback_http and is_loopback(host)):
        raise OutboundBlocked(f"http:// refused for {printable(host)}: use https (plain http only to loopback in "
                              "sandbox/dev)")
    if parts.username or parts.password:
        raise OutboundBlocked("credentials in the URL are refused")
