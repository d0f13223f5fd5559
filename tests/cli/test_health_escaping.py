"""`tenantctl health` shows a provider's error text as text: its rich markup is not interpreted and its
terminal escapes are made visible (the provider here is a hostile HTTP server on loopback)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import DEMO_KEY, EXAMPLES, RunCli

HOSTILE = "[link=http://evil.example]pwn[/link] \x1b[2J"


class _Hostile(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = json.dumps({"message": HOSTILE, "error": {"message": HOSTILE}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hostile_provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_health_prints_provider_error_text_escaped(tmp_path: Path, hostile_provider: str, cli: RunCli) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    out = cli("--tenants", str(tmp_path / "examples"), "health", "--sandbox",
              env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_SANDBOX_URL": hostile_provider})
    assert out.code == 1, out.all
    assert "\x1b" not in out.all
    assert "[link=http://evil.example]pwn[/link]" in out.out  # shown, not made a hyperlink
    assert "\\x1b[2J" in out.out
