"""Outbound rules: allow-list, https only (plain http to loopback only when allowed), no redirects, a cap,
timeouts; the sender keeps them against a real loopback peer."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from outbound.policy import Answer, OutboundBlocked, OutboundPolicy, allow_list, check_url
from outbound.sender import Sender, SendFailed, SendTimeout

POLICY = OutboundPolicy(allowed_hosts=allow_list(["https://platform.example.com/in", "http://127.0.0.1:9/x"]),
                        allow_loopback_http=True, max_response_bytes=10)


@pytest.mark.parametrize(("url", "error"), [
    ("https://platform.example.com/in/hospitable", None),
    ("http://127.0.0.1:9/x", None),
    ("https://evil.example.com/in", "not allow-listed"),
    ("http://platform.example.com/in", "use https"),
    ("https://user:pw@platform.example.com/in", "credentials"),
    ("ftp://platform.example.com/in", "not an http"),
    ("https://127.0.0.1:10/x", "not allow-listed"),  # the port is part of the allow-listed host
])
def test_check_url(url: str, error: str | None) -> None:
    if error is None:
        check_url(POLICY, url)
    else:
        with pytest.raises(OutboundBlocked, match=error):
            check_url(POLICY, url)


def test_loopback_http_needs_the_policy_to_allow_it() -> None:
    strict = OutboundPolicy(allowed_hosts=POLICY.allowed_hosts)
    with pytest.raises(OutboundBlocked, match="use https"):
        check_url(strict, "http://127.0.0.1:9/x")


class _Peer(BaseHTTPRequestHandler):
    """A loopback platform: /moved redirects, /big answers 1,000 bytes, /slow answers after 2 s, /ok 204."""

    seen: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).seen.append(self.path)
        if self.path == "/moved":
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
        else:
            if self.path == "/slow":
                time.sleep(2)
            self.send_response(204)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Peer)
    _Peer.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _send(policy: OutboundPolicy, url: str) -> Answer:
    async def go() -> Answer:
        sender = Sender(policy)
        try:
            return await sender.post(url, content=b"{}", headers={"content-type": "application/json"})
        finally:
            await sender.close()

    return asyncio.run(go())


def test_a_redirect_is_an_answer_not_a_hop_and_the_body_is_capped(peer: str) -> None:
    policy = OutboundPolicy(allowed_hosts=allow_list([peer]), allow_loopback_http=True, max_response_bytes=10)
    moved = _send(policy, f"{peer}/moved")
    big = _send(policy, f"{peer}/big")
    assert moved.status == 307 and moved.headers["location"] == "http://127.0.0.1:9/elsewhere"
    assert _Peer.seen == ["/moved", "/big"]  # the redirect was not followed
    assert big.status == 200 and big.body == b"x" * 10


def test_the_sender_checks_the_url_before_sending_and_times_out(peer: str) -> None:
    policy = OutboundPolicy(allowed_hosts=allow_list([peer]), allow_loopback_http=True, timeout_s=0.5,
                            connect_timeout_s=0.5)
    with pytest.raises(OutboundBlocked, match="not allow-listed"):
        _send(policy, "http://127.0.0.2:9/x")
    started = time.monotonic()
    with pytest.raises(SendTimeout):
        _send(policy, f"{peer}/slow")
    assert time.monotonic() - started < 1.5
    port = _closed_port()
    with pytest.raises(SendFailed, match=rf"^connection refused \(127\.0\.0\.1:{port}\)$"):
        closed = f"http://127.0.0.1:{port}"
        _send(OutboundPolicy(allowed_hosts=allow_list([closed]), allow_loopback_http=True), f"{closed}/x")
    assert _Peer.seen == ["/slow"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: nothing listens there
