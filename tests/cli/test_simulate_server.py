"""`simulate booking` without --server goes where `tenantctl serve` binds: TENANTCTL_BIND from the environment
or .env (a wildcard address as loopback), else http://127.0.0.1:8000."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tenantctl.commands.simulate import DEFAULT_SERVER, server_from_bind
from tests.conftest import DEMO_KEY, EXAMPLES, RunCli


class _Server(ThreadingHTTPServer):
    paths: list[str]


class _Accepting(BaseHTTPRequestHandler):
    """A stand-in webhook server: every POST accepted, as `tenantctl serve` answers a committed event."""

    server: _Server

    def do_POST(self) -> None:  # http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.paths.append(self.path)
        body = json.dumps({"status": "accepted"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Accepting)
    srv.paths = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize(("bind", "url"), [
    (None, DEFAULT_SERVER), ("", DEFAULT_SERVER), ("127.0.0.1:18080", "http://127.0.0.1:18080"),
    ("0.0.0.0:18080", "http://127.0.0.1:18080"), ("[::]:18080", "http://[::1]:18080"),
    ("[::1]:9000", "http://[::1]:9000"), ("10.0.0.5", "http://10.0.0.5:8000"), (":8001", "http://127.0.0.1:8001"),
    ("tcp://localhost:8002", "http://localhost:8002"), ("unix:/run/tenantctl.sock", None),
])
def test_the_default_server_follows_the_bind(bind: str | None, url: str | None) -> None:
    assert server_from_bind(bind) == url


@pytest.fixture(autouse=True)
def _no_settings_from_the_test_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TENANTCTL_BIND", "TENANTCTL_TENANTS", "TENANTCTL_META_APP_SECRETS", "TENANTCTL_ADMIN_TOKEN",
                 "SOPS_AGE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_simulate_booking_finds_the_server_by_tenantctl_bind_in_dot_env(server: _Server, tmp_path: Path,
                                                                        cli: RunCli) -> None:
    """The reported case: the server on another port, set in .env; plain `simulate booking acme` reaches it."""
    port = server.server_address[1]
    shutil.copytree(EXAMPLES, tmp_path / "tenants")
    (tmp_path / ".env").write_text(f"TENANTCTL_BIND=0.0.0.0:{port}\nTENANTCTL_TENANTS={tmp_path / 'tenants'}\n"
                                   f"SOPS_AGE_KEY_FILE={DEMO_KEY}\nTENANTCTL_META_APP_SECRETS=an-app-secret\n")
    r = cli("simulate", "booking", "acme", "--timeout", "5", cwd=tmp_path)
    assert r.code == 0, r.all
    assert sorted(server.paths) == ["/api/webhooks/hospitable/t/acme", "/api/webhooks/wa/t/acme"]
    assert "hospitable: accepted" in r.out and "whatsapp: accepted" in r.out


def test_simulate_booking_server_option_wins_over_the_bind(server: _Server, cli: RunCli) -> None:
    r = cli("--tenants", str(EXAMPLES), "simulate", "booking", "acme", "--timeout", "5",
            "--server", f"http://127.0.0.1:{server.server_address[1]}",
            env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_BIND": "127.0.0.1:1"})
    assert r.code == 0, r.all
    assert server.paths == ["/api/webhooks/hospitable/t/acme"]


class _Slow(_Accepting):
    """A server that is up but answers late (its database held by a migration, say)."""

    def do_POST(self) -> None:  # http.server's name
        time.sleep(1.5)
        super().do_POST()


class _Unavailable(_Accepting):
    def do_POST(self) -> None:  # http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize(("handler", "said"), [
    (_Slow, "hospitable: no answer from the server at http://127.0.0.1:{port} within 0.5 s (ReadTimeout): it may "
            "be busy or its database slow"),
    (_Unavailable, "hospitable: not recorded, HTTP 503: the server could not commit it"),
])
def test_a_server_that_is_up_but_slow_or_unavailable_is_not_called_unreachable(
        cli: RunCli, handler: type[_Accepting], said: str) -> None:
    srv = _Server(("127.0.0.1", 0), handler)
    srv.paths = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        r = cli("--tenants", str(EXAMPLES), "simulate", "booking", "acme", "--timeout", "0.5",
                "--server", f"http://127.0.0.1:{port}", env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY)})
    finally:
        srv.shutdown()
        srv.server_close()
    assert r.code == 1, r.all
    assert said.format(port=port) in " ".join(r.out.split()), r.all
    assert "cannot reach" not in r.all


class _Html(_Accepting):
    """Some other server on that port: 200 and a page to every request."""

    def do_POST(self) -> None:  # http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def do_GET(self) -> None:  # http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b"<html></html>")


def test_a_server_that_is_not_tenantctl_answering_200_gives_no_raw_exception(cli: RunCli) -> None:
    srv = _Server(("127.0.0.1", 0), _Html)
    srv.paths = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        r = cli("--tenants", str(EXAMPLES), "simulate", "booking", "acme", "--timeout", "5",
                "--server", f"http://127.0.0.1:{srv.server_address[1]}",
                env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_ADMIN_TOKEN": "an-admin-token-0123456789"})
    finally:
        srv.shutdown()
        srv.server_close()
    assert "JSONDecodeError" not in r.all and "Traceback" not in r.all, r.all
    assert "hospitable: accepted" in r.out and "(the admin log could not be read)" in r.out, r.all


def test_simulate_booking_help_names_the_default(cli: RunCli) -> None:
    r = cli("simulate", "booking", "--help")
    assert r.code == 0 and "TENANTCTL_BIND" in " ".join(r.out.split())


def test_a_unix_socket_bind_asks_for_server_with_exit_1_like_every_usage_error(cli: RunCli) -> None:
    """Exit 2 means "the plan has changes" to CI scripts; an error is 1."""
    r = cli("--tenants", str(EXAMPLES), "simulate", "booking", "acme",
            env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_BIND": "unix:/run/tenantctl.sock"})
    assert r.code == 1, r.all
    assert "TENANTCTL_BIND=unix:/run/tenantctl.sock is no TCP address: pass --server URL" in " ".join(r.err.split())


@pytest.mark.parametrize(("bind", "why"), [
    ("127.0.0.1:80@evil.example", "the port '80@evil.example' is not a number"),  # a URL of it would go to evil
    ("::1", "an IPv6 address is written in brackets"),
    ("127.0.0.1:99999", "the port '99999' is not a number from 0 to 65535"),
])
def test_a_bind_serve_would_refuse_is_refused_and_named_not_turned_into_a_url(cli: RunCli, bind: str,
                                                                              why: str) -> None:
    r = cli("--tenants", str(EXAMPLES), "simulate", "booking", "acme",
            env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_BIND": bind})
    assert r.code == 1, r.all
    assert f"TENANTCTL_BIND={bind}: {why}" in " ".join(r.err.split()) and "hospitable:" not in r.out
