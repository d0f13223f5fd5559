"""The outbound client's limits: each provider reaches only its own hosts (a tenant's intercom only for
that tenant's 2N calls), device hosts are checked on the address actually connected to, sandbox mode
only talks to loopback, and every call has a size cap and a total deadline (tested on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import http.server
import socketserver
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from reconciler import errors
from reconciler.config import Limits, ProviderLimit, ReconcileConfig, make_config
from reconciler.http import HttpClient, device_address_refusal
from reconciler.retry import RetryPolicy
from tenancy.model import Tenant


def _ok(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True})

    return httpx.MockTransport(handler)


def _tenant(slug: str, host: str) -> Tenant:
    return Tenant.model_validate({
        "slug": slug, "display_name": slug,
        "properties": [{"key": "p1", "name": "P1", "intercom": {
            "host": host, "device_id": "54-1234-5678", "username": "api", "password": "pw-123456"}}]})


def test_each_provider_reaches_only_its_own_hosts(config: ReconcileConfig) -> None:
    seen: list[httpx.Request] = []
    with HttpClient(config, transport=_ok(seen)) as http:
        http.request("nuki", "GET", "https://api.nuki.io/smartlock")
        with pytest.raises(errors.OutboundBlocked, match="not allow-listed for nuki"):
            http.request("nuki", "GET", "https://graph.facebook.com/v23.0/me")
    assert len(seen) == 1


def test_an_intercom_host_is_allowed_for_its_own_tenants_2n_calls_only() -> None:
    config = make_config([_tenant("acme", "door.acme.example"), _tenant("beta", "door.beta.example")],
                         sandbox=False, sandbox_url="http://127.0.0.1:8790", domain="ops.example.com")
    seen: list[httpx.Request] = []
    with HttpClient(config, transport=_ok(seen), resolver=lambda host, port: ["8.8.8.8"]) as http:
        http.request("twon", "GET", "https://door.acme.example/api/system/info", tenant="acme")
        for provider, tenant in (("twon", "beta"), ("twon", None), ("nuki", "acme"), ("whatsapp", "acme")):
            with pytest.raises(errors.OutboundBlocked, match="not allow-listed"):
                http.request(provider, "GET", "https://door.acme.example/api/system/info", tenant=tenant)
    assert len(seen) == 1


@pytest.mark.parametrize(("resolved", "reason"), [
    (["169.254.169.254"], "metadata"), (["127.0.0.1"], "loopback"), (["fe80::1"], "link-local"),
    (["10.0.0.5", "169.254.169.254"], "metadata"), (["::ffff:127.0.0.1"], "loopback"),
])
def test_a_device_host_resolving_to_a_forbidden_address_is_refused(resolved: list[str], reason: str) -> None:
    config = make_config([_tenant("acme", "door.acme.example")], sandbox=False,
                         sandbox_url="http://127.0.0.1:8790", domain="ops.example.com")
    seen: list[httpx.Request] = []
    with HttpClient(config, transport=_ok(seen), resolver=lambda host, port: resolved) as http, \
            pytest.raises(errors.OutboundBlocked, match=reason):
        http.request("twon", "GET", "https://door.acme.example/api/system/info", tenant="acme")
    assert seen == []


def test_a_device_call_is_pinned_to_the_checked_address_and_keeps_its_name() -> None:
    config = make_config([_tenant("acme", "door.acme.example")], sandbox=False,
                         sandbox_url="http://127.0.0.1:8790", domain="ops.example.com")
    seen: list[httpx.Request] = []
    with HttpClient(config, transport=_ok(seen), resolver=lambda host, port: ["192.168.1.20"]) as http:
        http.request("twon", "GET", "https://door.acme.example/api/system/info", tenant="acme")
    [req] = seen
    assert (req.url.host, req.headers["host"], req.extensions["sni_hostname"]) == (
        "192.168.1.20", "door.acme.example", "door.acme.example")


@pytest.mark.parametrize(("ip", "allowed"), [
    ("8.8.8.8", True), ("203.0.113.10", False), ("10.1.2.3", True), ("192.168.0.10", True), ("100.64.0.1", True),
    ("169.254.169.254", False), ("100.100.100.200", False), ("127.0.0.2", False), ("0.0.0.0", False),
    ("::1", False), ("fd00:ec2::254", False), ("64:ff9b::a9fe:a9fe", False), ("224.0.0.1", False),
])
def test_the_device_address_rule(ip: str, allowed: bool) -> None:
    assert (device_address_refusal(ip) is None) is allowed


@pytest.mark.parametrize("url", ["http://203.0.113.7:8790", "http://sandbox.example.com", "http://0.0.0.0:80",
                                 "http://169.254.169.254"])
def test_sandbox_mode_refuses_a_sandbox_url_that_is_not_loopback(url: str) -> None:
    with pytest.raises(errors.OutboundBlocked, match="not a loopback address"):
        make_config([], sandbox=True, sandbox_url=url, domain="ops.example.com")


# A real server on 127.0.0.1: a huge answer, a 1 byte/s answer. -----------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        try:
            if self.path == "/huge":  # 200 MB, no Content-Length: the cap must stop the reading
                self.end_headers()
                chunk = b"x" * 65536
                for _ in range(200 * 16):
                    self.wfile.write(chunk)
            elif self.path == "/huge-declared":
                self.send_header("content-length", str(200 * 1024 * 1024))
                self.end_headers()
                self.wfile.write(b"x" * 65536)
            else:  # /slow: one byte per second, for ever
                self.end_headers()
                for _ in range(120):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(1.0)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _local(host: str) -> ReconcileConfig:
    return ReconcileConfig(
        base_urls={}, allowed_hosts={"*": frozenset({host})}, sandbox=True, domain="ops.example.com",
        limits=dataclasses.replace(Limits(providers={}, default=ProviderLimit(4, None),
                                          retry=RetryPolicy(max_attempts=3, base_delay_s=0.01)),
                                   total_deadline_s=2.0, read_timeout_s=30.0, max_response_bytes=1024 * 1024))


@pytest.mark.parametrize("path", ["/huge", "/huge-declared"])
def test_a_huge_answer_fails_cleanly_at_the_cap(server: str, path: str) -> None:
    with HttpClient(_local(server)) as http:
        started = time.monotonic()
        with pytest.raises(errors.PermanentError, match="larger than 1048576 bytes"):
            http.request("nuki", "GET", f"http://{server}{path}")
    assert time.monotonic() - started < 5


def test_a_one_byte_per_second_answer_fails_at_the_total_deadline_and_is_not_retried(server: str) -> None:
    with HttpClient(_local(server)) as http:
        started = time.monotonic()
        with pytest.raises(errors.TemporaryError, match="no whole answer within 2 s"):
            http.request("nuki", "GET", f"http://{server}/slow")
        took = time.monotonic() - started
        assert http.calls["nuki"] == 1
    assert took < 4.5
