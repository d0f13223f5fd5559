"""Outside text never forges a log line or reaches a terminal raw: the access log escapes the decoded
path (``%0a``, ``%1b``, ``%00``), the server can log JSON lines, and `tenantctl webhooks log` prints
sender-controlled event ids escaped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunCli

from .helpers import SECRETS, sign_hex, tenant_dicts
from .server_harness import Server, make_tenants_dir, start_server

FORGED = "FORGED-LINE"
# A path whose decoded form holds a newline, a terminal escape (clear screen) and a NUL.
EVIL_PATH = f"/api/webhooks/hospitable/t/acme%0a127.0.0.1%20%22GET%20/{FORGED}%22%20200%1b[2J%00x"


@pytest.fixture(params=["text", "json"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]),
                     TENANTCTL_LOG_FORMAT=request.param)
    yield s
    s.stop()


def test_the_access_log_escapes_the_decoded_path(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.post(EVIL_PATH, content=b"{}").status_code == 404
    server.wait_for_log(FORGED)
    raw = server.log.read_bytes()
    assert b"\x1b" not in raw and b"\x00" not in raw
    lines = raw.decode("utf-8").splitlines()
    assert not any(line.startswith(("127.0.0.1 \"GET /FORGED", f"127.0.0.1 \"GET /{FORGED}")) for line in lines)
    [line] = [ln for ln in lines if FORGED in ln]  # one request, one line
    if server.env["TENANTCTL_LOG_FORMAT"] == "json":
        for ln in lines:
            if ln.strip():
                json.loads(ln)  # every line of the server's output is a JSON object
        entry = json.loads(line)
        assert entry["status"] == "404" and "\\n127.0.0.1" in entry["path"]
    else:
        assert "\\n127.0.0.1" in line and "\\x1b[2J\\x00x" in line


def test_webhooks_log_prints_event_ids_escaped(server: Server, cli: RunCli) -> None:
    evil = r"evt\u001b[2J\u001b]0;pwned\u0007\nforged line"
    body = ('{"id": "' + evil + '", "action": "reservation.created"}').encode()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.post("/api/webhooks/hospitable/t/acme", content=body,
                   headers={"Signature": sign_hex(SECRETS["acme"]["hospitable"], body)})
        assert r.status_code == 200
    env = {"TENANTCTL_STATE_DIR": str(server.state), "TENANTCTL_TENANTS": str(server.tenants)}
    out = cli("webhooks", "log", env=env)
    assert out.code == 0, out.all
    assert "\x1b" not in out.out and "\x07" not in out.out
    assert "event evt\\x1b[2J\\x1b]0;pwned\\x07\\nforged line" in out.out
    assert not any(line.startswith("forged line") for line in out.out.splitlines())
