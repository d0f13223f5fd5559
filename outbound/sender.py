"""The sender: POSTs under an :class:`~outbound.policy.OutboundPolicy`, on asyncio with aiohttp.

It keeps the rules the policy module lists: the URL is checked first (allow-list, https, no credentials);
redirects are answers, never followed; connect and read timeouts, and a total deadline of connect + read
timeout per request; at most ``max_response_bytes`` of an answer are read (a longer one closes its
connection instead of being drained). No proxy, ``.netrc`` or cookie is taken from the environment.

An attempt counts only the answer to its own request. Connections are kept alive (a TCP+TLS connect per POST
would cost more CPU than the POST itself), so: a pooled connection that took in an answer while idle (an
unsolicited one, complete or begun, or bytes that are not HTTP) is closed, never handed to the next request
(:class:`_Connector`; a fragment shorter than a status line and headers is dropped with the parser aiohttp
replaces at each request), and a connection whose answer was not 2xx is not reused (:class:`_Response`), so a
late extra answer written after an error is never read as the answer to the request sent next.

A destination named by a DNS name connects only to the addresses of that name that a destination may have
(:class:`_CheckedResolver`, ``tenancy.hosts.check_destination_address``): a name that resolves to a metadata
or link-local address is refused as its literal would be, whatever the allow-list says.

Once a 2xx status line and headers have been read, the attempt is a success whatever happens to the body: a
body that fails (a reset, a malformed chunk) or does not end within the deadline is dropped with its connection
(the answer's body is what was read of it). Non-2xx answers are read as before: a failure reading them is an
error.

Why aiohttp: a delivery is one small POST, and the sender's CPU per POST is what a worker on a shared host
takes from the webhook server. Measured here against the sandbox's fake platform (benchmarks/delivery.py,
issue 12 note): aiohttp ~250 us per POST; httpx 630 us sequentially and 1,300-2,300 us concurrently.

Errors: ``OutboundBlocked`` (nothing sent), :class:`SendTimeout`, :class:`SendFailed` (the request may or
may not have reached the peer; delivery is at least once, so both mean "try again later").
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from outbound.policy import Answer, OutboundPolicy, check_url
from tenancy.escape import printable
from tenancy.hosts import check_destination_address


class SendError(Exception):
    """Sending failed: no answer was read."""


class SendTimeout(SendError):
    """The connect, read or total deadline passed."""


class SendFailed(SendError):
    """The connection failed (refused, reset, a malformed answer). The message says what failed in plain words
    and where (``connection refused (127.0.0.1:8080)``, ``DNS lookup failed (platform.example.com)``), from
    the local error only: never the peer's own text (an answer, a parser's quote of it)."""


class PostSender(Protocol):
    """What a worker needs of a sender (the tests script one): the policy it checks, and async POST."""

    policy: OutboundPolicy

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> Answer: ...

    async def close(self) -> None: ...


class Sender:
    """One connection pool for the life of a worker's event loop; :meth:`close` it in the same loop.

    ``policy`` may be replaced between requests (a reload): each request is checked and timed under the
    policy current when it starts.
    """

    def __init__(self, policy: OutboundPolicy, *, max_connections: int = 64,
                 resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._max_connections = max_connections
        self._resolver = resolver  # the names' resolver before the check (the system's by default)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds a session to the running loop.
        connector = _Connector(limit=self._max_connections, ttl_dns_cache=60,
                               resolver=_CheckedResolver(self._resolver or aiohttp.DefaultResolver()))
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, response_class=_Response,
                                              cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        return self._session

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> Answer:
        """POST ``content`` to ``url``; returns the status, headers (lower-case names), the capped body and
        the seconds it took. Raises OutboundBlocked, SendTimeout, SendFailed."""
        policy = self.policy
        target = _checked(policy, url)
        session = self._session or self._open()
        timeout = aiohttp.ClientTimeout(total=policy.connect_timeout_s + policy.timeout_s,
                                        connect=policy.connect_timeout_s, sock_read=policy.timeout_s)
        started = time.monotonic()
        try:
            async with session.post(target, data=content, headers=dict(headers), allow_redirects=False,
                                    timeout=timeout) as response:
                status = response.status
                body = bytearray()
                if 200 <= status < 300:
                    try:
                        await _read_capped(response, policy.max_response_bytes, body)
                    except (TimeoutError, aiohttp.ClientError):
                        # Accepted: the platform said so before the body failed (a reset, a trickle cut by the
                        # deadline). The body is not needed; the connection, in an unknown state, is dropped.
                        response.close()
                else:
                    await _read_capped(response, policy.max_response_bytes, body)
                return Answer(status, {k.lower(): v for k, v in response.headers.items()}, bytes(body),
                              time.monotonic() - started)
        except TimeoutError as exc:  # aiohttp's timeouts are asyncio's (ServerTimeoutError included)
            raise SendTimeout("timeout") from exc
        except aiohttp.ClientError as exc:
            raise SendFailed(describe_failure(exc, target)) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# errno → plain words, for the failures a platform's operator meets (the rest: os.strerror, the local C library's).
_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.ETIMEDOUT: "connect timed out",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.EPIPE: "connection closed while sending",
}
_SSL_REASON = re.compile(r"^[A-Z0-9_]{1,64}$")  # OpenSSL's reason codes (WRONG_VERSION_NUMBER): local, fixed words
MAX_WHERE = 120  # of the host shown: the error column holds 255 characters


def describe_failure(exc: BaseException, target: yarl.URL) -> str:
    """What failed, in plain words, and where (host:port): ``connection refused (127.0.0.1:18791)``.

    Built from the error's class and errno and the URL we sent to, never from its message: aiohttp's messages
    of a malformed answer quote the answer, which the platform controls. Runs on the error path only."""
    host = printable(target.raw_host or "?")[:MAX_WHERE]
    where = f"{host}:{target.port}" if target.port is not None else host
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        own = exc.os_error
        if isinstance(own, OSError) and not isinstance(own, socket.gaierror) and own.args and \
                "resolves to no address a destination may have" in str(own.args[0]):
            return f"DNS: {host} resolves to no address a destination may have"
        return f"DNS lookup failed ({host})"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        detail = getattr(cert, "verify_message", None)
        why = f": {printable(str(detail))[:60]}" if detail else ""
        return f"TLS certificate not accepted ({where}){why}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        reason = getattr(exc.os_error, "reason", None)
        why = f": {reason}" if isinstance(reason, str) and _SSL_REASON.match(reason) else ""
        return f"TLS handshake failed ({where}){why}"
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return f"TLS certificate fingerprint mismatch ({where})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"the platform closed the connection without an answer ({where})"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the answer's body broke off ({where})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"malformed answer ({where})"
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return f"connection reset ({where})"
    if isinstance(exc, OSError):  # ClientConnectorError and ClientOSError: the socket's own error
        own = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        code = own.errno
        if code is None and isinstance(own.__cause__, OSError):
            code = own.__cause__.errno
        if code is not None:
            words = _ERRNO_WORDS.get(code) or os.strerror(code).lower()
            return f"{words} ({where})"
        return f"connection failed ({where})"
    return f"connection failed: {type(exc).__name__} ({where})"


@functools.lru_cache(maxsize=4096)
def _checked(policy: OutboundPolicy, url: str) -> yarl.URL:
    """``url`` checked under ``policy`` and parsed, once per pair: a worker posts to a few URLs all day."""
    check_url(policy, url)
    return yarl.URL(url)


async def _read_capped(response: aiohttp.ClientResponse, cap: int, body: bytearray) -> None:
    """Read at most ``cap`` bytes of the answer into ``body`` (what was read stays there if reading fails)."""
    while len(body) < cap:
        chunk = await response.content.read(cap - len(body))
        if not chunk:
            return
        body += chunk
    if not response.content.at_eof():
        response.close()  # more than the cap: drop the connection rather than read the rest


class _CheckedResolver(AbstractResolver):
    """``inner``'s addresses of a name, without those a destination may not have; OSError if none is left
    (aiohttp reports it as a failed connection, and the attempt is retried). Literal addresses never come here:
    ``check_url`` has checked them. Results are cached by the connector (``ttl_dns_cache``)."""

    def __init__(self, inner: AbstractResolver) -> None:
        self._inner = inner

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if check_destination_address(ipaddress.ip_address(r["host"])) is None]
        if not allowed:
            raise OSError(f"{printable(host)} resolves to no address a destination may have "
                          f"({', '.join(printable(r['host']) for r in found[:4])})")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class _Connector(aiohttp.TCPConnector):
    """A pool that never hands over a connection which took in an answer while it was idle.

    aiohttp keeps parsing what arrives on a pooled keep-alive connection and queues a complete answer (or the
    head of one) for whoever reads it next: the next request on that connection, which would take an
    unsolicited answer for its own (aio-libs/aiohttp#13656, not fixed in 3.14.5). The connection already
    knows it: ``ResponseHandler.should_close`` is true once anything is queued, an answer's body is unfinished
    or a parse error is set; but the pool checks it only when the connection is returned, not when it is
    handed out. No public hook runs there (trace signals get no connection), so this overrides the private
    ``BaseConnector._get(key, traces)``; tests/outbound/test_sender.py fails if that method or what it
    returns changes. Cost: one attribute check per reuse, no syscall.
    """

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        while (conn := await super()._get(key, traces)) is not None:
            protocol = conn.protocol
            if protocol is not None and not protocol.should_close:
                return conn
            conn.close()  # closes it (should_close=True), frees its slot; try the next pooled one
        return None


class _Response(aiohttp.ClientResponse):
    """An answer that marks its connection not to be reused unless it is 2xx.

    A platform that writes a late extra answer after an error (a 500, then a 204 on the idle connection) would
    otherwise have it read as the answer to the request sent next on that connection, when that request goes
    out before the extra answer arrives (a worker starts its next attempt at once). Errors are the rare path:
    the 2xx answers of the hot path keep their connection. An answer without a body has already put its
    connection back in the pool when ``start`` returns (nothing ran in between): it is closed there; one with
    a body is closed when it is released (``force_close``, public, makes ``should_close`` true).
    ``ClientSession(response_class=...)`` is public; ``start(connection)`` is what aiohttp calls on it
    (tests/outbound/test_sender.py fails if that changes).
    """

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        protocol = connection.protocol
        await super().start(connection)
        if protocol is not None and not 200 <= self.status < 300:
            protocol.force_close()
            if self.connection is None:  # released already: idle in the pool
                protocol.close()
        return self


__all__ = ["PostSender", "SendError", "SendFailed", "SendTimeout", "Sender"]
