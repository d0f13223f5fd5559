"""A body over the limit gets a 413 that a plain stdlib client, which sends its whole body before reading,
can read (not a connection reset); the refusal is recorded. Through the real server."""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .helpers import tenant_dicts
from .server_harness import make_tenants_dir, start_server


def test_a_12_mb_post_from_urllib_reads_its_413(tmp_path: Path) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]))
    try:
        body = b"{" + b" " * (12 * 1024 * 1024) + b"}"
        req = urllib.request.Request(  # noqa: S310  (a loopback http URL of our own)
            f"{server.url}/api/webhooks/hospitable/t/acme", data=body, method="POST",
            headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=30)  # noqa: S310  (a loopback http URL of our own)
        assert caught.value.code == 413
        assert caught.value.read() == b'{"error":"payload too large"}'
    finally:
        server.stop()
    with sqlite3.connect(server.state / "tenantctl.db") as conn:
        assert conn.execute("SELECT outcome, status_code, reason FROM webhook_log").fetchall() == [
            ("rejected", 413, "body-too-large")]
