"""SMTP health: the server answers, offers STARTTLS when asked, accepts the login; the password never shows."""

from __future__ import annotations

import base64
import smtplib
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from reconciler.errors import InvalidRequest
from reconciler.model import Action, Change
from reconciler.providers.base import HealthCheck
from reconciler.providers.smtp import SmtpProvider
from tenancy.model import Tenant
from tests.reconciler.conftest import NoHttp
from tests.reconciler.providers.helpers import SLUG, make_ctx, make_tenant

USER = "mailer@acme.example"
PASSWORD = "smtp-pass-Secret42"


@dataclass
class Behaviour:
    mechanisms: str = "PLAIN LOGIN"
    echo_password: bool = False  # a careless server that repeats what it was sent in its refusal
    lines: list[str] = field(default_factory=list)


class _Handler(socketserver.StreamRequestHandler):
    """Just enough SMTP: EHLO, AUTH PLAIN / LOGIN, QUIT. No STARTTLS."""

    server: _Server

    def _send(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def _read(self) -> str:
        line = self.rfile.readline().decode().strip()
        self.server.behaviour.lines.append(line)
        return line

    def handle(self) -> None:
        self._send("220 localhost ESMTP test")
        while line := self._read():
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                self._send(f"250-localhost\r\n250 AUTH {self.server.behaviour.mechanisms}")
            elif verb == "AUTH":
                self._auth(*arg.split(" ", 1))
            elif verb == "QUIT":
                self._send("221 bye")
                return
            else:
                self._send("502 not implemented")

    def _auth(self, mechanism: str, initial: str = "") -> None:
        if mechanism.upper() == "PLAIN":
            _, user, password = base64.b64decode(initial).decode().split("\0")
        else:
            if not initial:
                self._send("334 VXNlcm5hbWU6")
                initial = self._read()
            user = base64.b64decode(initial).decode()
            self._send("334 UGFzc3dvcmQ6")
            password = base64.b64decode(self._read()).decode()
        if (user, password) == (USER, PASSWORD):
            self._send("235 authenticated")
        else:
            shown = f" (got {password})" if self.server.behaviour.echo_password else ""
            self._send(f"535 authentication failed{shown}")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(Behaviour())
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=2)


def smtp_tenant(*, starttls: bool = False, password: str = PASSWORD, port: int = 587) -> Tenant:
    return make_tenant(smtp={"host": "smtp.acme.example", "port": port, "username": USER, "password": password,
                             "from_address": "noreply@acme.example", "starttls": starttls})


def loopback(port: int, asked: list[tuple[str, int, float]]) -> SmtpProvider:
    """A provider whose connections go to 127.0.0.1:<port>, recording what it was asked to reach."""
    def connect(host: str, want_port: int, timeout: float) -> smtplib.SMTP:
        asked.append((host, want_port, timeout))
        return smtplib.SMTP("127.0.0.1", port, timeout=timeout)
    return SmtpProvider(connect=connect)


def run(provider: SmtpProvider, tenant: Tenant) -> list[HealthCheck]:
    checks = provider.health(tenant, make_ctx(), NoHttp())
    assert all(PASSWORD not in c.detail for c in checks)
    return checks


@pytest.mark.parametrize("mechanisms", ["PLAIN", "LOGIN"])
def test_a_server_that_accepts_the_login_is_healthy(server: _Server, mechanisms: str) -> None:
    server.behaviour.mechanisms = mechanisms
    asked: list[tuple[str, int, float]] = []
    checks = run(loopback(server.server_address[1], asked), smtp_tenant())
    assert [(c.name, c.ok) for c in checks] == [("smtp.connect[acme]", True), ("smtp.login[acme]", True)]
    assert "without TLS" in checks[-1].detail
    assert asked == [("smtp.acme.example", 587, 10.0)]
    assert server.behaviour.lines[-1].upper() == "QUIT"
    assert f"AUTH {mechanisms}" in " ".join(server.behaviour.lines)


def test_a_refused_login_fails_with_the_reply_code_and_never_the_password(server: _Server) -> None:
    server.behaviour.echo_password = True  # what the server says back is not shown either
    wrong = "wrong-password-1"
    checks = run(loopback(server.server_address[1], []), smtp_tenant(password=wrong))
    assert all(wrong not in c.detail for c in checks)
    [failed] = [c for c in checks if not c.ok]
    assert failed.name == "smtp.login[acme]"
    assert "refused the login" in failed.detail and "535" in failed.detail
    assert server.behaviour.lines[-1].upper() == "QUIT"


def test_starttls_required_but_not_offered_fails_before_any_credential_is_sent(server: _Server) -> None:
    checks = run(loopback(server.server_address[1], []), smtp_tenant(starttls=True))
    assert [(c.name, c.ok) for c in checks] == [("smtp.connect[acme]", True), ("smtp.starttls[acme]", False)]
    assert "does not offer STARTTLS" in checks[-1].detail
    assert not [line for line in server.behaviour.lines if line.upper().startswith("AUTH")]


def test_a_refused_connection_is_a_failed_check() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    checks = run(loopback(port, []), smtp_tenant())
    [failed] = checks
    assert (failed.name, failed.ok) == ("smtp.connect[acme]", False)
    assert "cannot connect to smtp.acme.example:587" in failed.detail
    assert "ConnectionRefusedError" in failed.detail


def test_smtp_is_health_only(no_http: NoHttp) -> None:
    provider, tenant, ctx = SmtpProvider(), smtp_tenant(), make_ctx()
    assert provider.applies_to(tenant) and not provider.applies_to(make_tenant())
    assert provider.health(make_tenant(), ctx, no_http) == []
    assert (provider.desired(tenant, ctx), provider.observe(tenant, ctx, no_http),
            provider.plan(tenant, ctx, [])) == ([], [], [])
    with pytest.raises(InvalidRequest):
        provider.apply(tenant, ctx, Change(Action.CREATE, "smtp", "server", SLUG, "smtp.server[acme]"), no_http)
