"""The sender: POSTs under an :class:`~outbound.policy.OutboundPolicy`, on asyncio with aiohttp.

It keeps the rules the policy module lists: the URL is checked first (allow-list, https, no credentials);
redirects are answers, never followed; connect and read timeouts, and a total deadline of connect + read
timeout per request; at most ``max_response_bytes`` of an answer are read (a longer one closes its
connection instead of being drained). No proxy, ``.netrc`` or cookie is taken from the environment.

Why aiohttp: a delivery is one small POST, and the sender's CPU per POST is what a worker on a shared host
takes from the webhook server. Measured here against the sandbox's fake platform (benchmarks/delivery.py,
issue 12 note): aiohttp ~250 us per POST; httpx 630 us sequentially and 1,300-2,300 us concurrently.

Errors: ``OutboundBlocked`` (nothing sent), :class:`SendTimeout`, :class:`SendFailed` (the request may or
may not have reached the peer; delivery is at least once, so both mean "try again later").
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import yarl

from outbound.policy import Answer, OutboundPolicy, check_url


class SendError(Exception):
    """Sending failed: no answer was read."""


class SendTimeout(SendError):
    """The connect, read or total deadline passed."""


class SendFailed(SendError):
    """The connection failed (refused, reset, a malformed answer); the message is the error's class name."""


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

    def __init__(self, policy: OutboundPolicy, *, max_connections: int = 64) -> None:
        self.policy = policy
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds a session to the running loop.
        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
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
                body = await _read_capped(response, policy.max_response_bytes)
                return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, body,
                              time.monotonic() - started)
        except TimeoutError as exc:  # aiohttp's timeouts are asyncio's (ServerTimeoutError included)
            raise SendTimeout("timeout") from exc
        except aiohttp.ClientError as exc:
            raise SendFailed(type(exc).__name__) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@functools.lru_cache(maxsize=4096)
def _checked(policy: OutboundPolicy, url: str) -> yarl.URL:
    """``url`` checked under ``policy`` and parsed, once per pair: a worker posts to a few URLs all day."""
    check_url(policy, url)
    return yarl.URL(url)


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    body = bytearray()
    while len(body) < cap:
        chunk = await response.content.read(cap - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    if not response.content.at_eof():
        response.close()  # more than the cap: drop the connection rather than read the rest
    return bytes(body)


__all__ = ["PostSender", "SendError", "SendFailed", "SendTimeout", "Sender"]
