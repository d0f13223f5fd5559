"""The real server: gunicorn on a loopback port, SQLite, driven over HTTP; SIGHUP reloads under load."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import (
    ACME_PHONE,
    ADMIN_TOKEN,
    APP_SECRET,
    BLUE_PHONE,
    OLD_APP_SECRET,
    SECRETS,
    dumps,
    sign_hex,
    sign_meta,
    tenant_dicts,
    wa_payload,
)
from .server_harness import (
    Server,
    accepted_events,
    hosp,
    make_tenants_dir,
    server_env,
    start_server,
    write_tenant,
)

pytestmark = pytest.mark.slow

A = SECRETS["acme"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:2]))
    yield s
    s.stop()


def test_serves_every_provider_over_http(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        assert hosp(c, "e-1").status_code == 200
        assert hosp(c, "e-1").json() == {"status": "duplicate"}
        assert hosp(c, "e-2", secret="not-the-secret").status_code == 401
        assert hosp(c, "e-3", slug="nobody").status_code == 404

        body = dumps(wa_payload(ACME_PHONE, "wamid.S1"))
        assert c.post("/api/webhooks/wa/t/acme", content=body,
                      headers={"X-Hub-Signature-256": sign_meta(body, OLD_APP_SECRET)}).status_code == 200
        body = dumps(wa_payload(BLUE_PHONE, "wamid.S2"))
        assert c.post("/api/webhooks/wa/t/acme", content=body,
                      headers={"X-Hub-Signature-256": sign_meta(body)}).status_code == 403
        r = c.get("/api/webhooks/wa/t/acme",
                  params={"hub.mode": "subscribe", "hub.verify_token": A["verify_token"], "hub.challenge": "777"})
        assert (r.status_code, r.text) == (200, "777")

        body = dumps({"feature": "DEVICE_STATUS", "smartlockId": 17010001})
        assert c.post("/api/webhooks/nuki/t/acme", content=body,
                      headers={"X-Nuki-Signature-SHA256": sign_hex(A["nuki"], body)}).status_code == 200
        assert c.post("/api/webhooks/beds24/t/acme", content=b'{"booking":{"id":1}}',
                      headers={"X-Tenantctl-Secret": A["beds24"]}).status_code == 200
        assert c.post("/api/webhooks/hospitable/t/acme", content=b"x" * 10_000,
                      headers={"Signature": "0" * 64}).status_code == 413

        # Metrics are summed over both workers: 10 more accepted requests, whichever worker took them.
        for i in range(10):
            assert hosp(c, f"m-{i}").status_code == 200
        metrics = c.get("/metrics").text
        line = 'tenantctl_webhook_requests_total{outcome="accepted",provider="hospitable",tenant="acme"}'
        assert f"{line} 11.0" in metrics

        logs = c.get("/admin/webhook-logs", params={"tenant": "acme", "outcome": "rejected"},
                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        assert {i["reason"] for i in logs["items"]} == {"bad-signature", "cross-tenant:blue-harbor",
                                                         "body-too-large"}
    assert accepted_events(server).count("e-1") == 1


def _load(server: Server, stop: threading.Event, results: list[tuple[str, int | str]], worker: int) -> None:
    # No keep-alive: each request gets its own connection, as a provider's delivery would.
    with httpx.Client(base_url=server.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        n = 0
        while not stop.is_set():
            event = f"load-{worker}-{n}"
            n += 1
            try:
                results.append((event, hosp(c, event).status_code))
            except httpx.HTTPError as e:
                results.append((event, type(e).__name__))


def test_sighup_under_load_drops_nothing_and_reloads_tenants(server: Server, tmp_path: Path) -> None:
    newcomer: dict[str, Any] = {"slug": "delta", "display_name": "Delta",
                                "hospitable": {"api_key": "delta-api-key-1", "webhook_secret": "delta-hosp-secret-1"}}
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert hosp(c, "d-0", slug="delta", secret="delta-hosp-secret-1").status_code == 404
    write_tenant(server.tenants, newcomer)

    stop = threading.Event()
    results: list[tuple[str, int | str]] = []
    threads = [threading.Thread(target=_load, args=(server, stop, results, i)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.6)
    server.hup()
    time.sleep(1.6)
    stop.set()
    for t in threads:
        t.join(15)

    server.wait_for_log("routing reloaded: 3 tenant(s)")
    failed = [r for r in results if r[1] != 200]
    assert len(results) > 50
    assert failed == []
    # Every 200 was committed before it was sent.
    assert {e for e, _ in results} <= set(accepted_events(server))

    deadline = time.monotonic() + 10
    with httpx.Client(base_url=server.url, timeout=10) as c:
        while hosp(c, "d-1", slug="delta", secret="delta-hosp-secret-1").status_code != 200:
            assert time.monotonic() < deadline, "the new tenant was never served"
            time.sleep(0.1)


def test_a_reload_with_a_broken_tenant_file_keeps_the_old_routing(server: Server) -> None:
    write_tenant(server.tenants, {"slug": "delta", "display_name": "Delta",
                                  "hospitable": {"api_key": "delta-api-key-1",
                                                 "webhook_secret": "delta-hosp-secret-1"}})
    (server.tenants / "acme.yaml").write_text("slug: acme\nhospitable: [\n", encoding="utf-8")
    server.hup()
    server.wait_for_log("reload refused")
    time.sleep(1.0)  # let the re-forked workers take over
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for i in range(6):
            assert hosp(c, f"after-{i}").status_code == 200  # acme still routed, with its secret
        assert hosp(c, "d-1", slug="delta", secret="delta-hosp-secret-1").status_code == 404
    assert server.proc.poll() is None


def test_no_secret_reaches_the_database_or_the_logs(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        hosp(c, "s-1")
        hosp(c, "s-2", secret=SECRETS["blue-harbor"]["hospitable"])
        c.get("/api/webhooks/wa/t/acme",
              params={"hub.mode": "subscribe", "hub.verify_token": A["verify_token"], "hub.challenge": "5"})
        c.get("/api/webhooks/wa/t/acme",
              params={"hub.mode": "subscribe", "hub.verify_token": SECRETS["blue-harbor"]["verify_token"],
                      "hub.challenge": "5"})
        c.post("/api/webhooks/beds24/t/acme", content=b"{}", headers={"X-Tenantctl-Secret": A["beds24"]})
        c.post("/api/webhooks/beds24/t/blue-harbor", content=b"{}", headers={"X-Tenantctl-Secret": A["beds24"]})
        c.get("/admin/webhook-logs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        c.get("/admin/webhook-logs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}-wrong"})
    server.hup()
    server.wait_for_log("routing reloaded")
    server.stop()
    with sqlite3.connect(server.state / "tenantctl.db") as conn:
        dump = "\n".join(conn.iterdump())
    logs = server.logs()
    assert "GET /api/webhooks/wa/t/acme " in logs  # the access log is on, without its query string
    secrets = [v for t in tenant_dicts()[:2] for v in _secret_values(t)] + [APP_SECRET, OLD_APP_SECRET, ADMIN_TOKEN]
    assert len(secrets) > 15
    for value in secrets:
        assert value not in dump
        assert value not in logs


def _secret_values(node: Any) -> Iterator[str]:
    from tenancy.model import secret_field_names

    names = secret_field_names()
    if isinstance(node, dict):
        for k, v in node.items():
            if k in names and isinstance(v, str):
                yield v
            else:
                yield from _secret_values(v)
    elif isinstance(node, list):
        for v in node:
            yield from _secret_values(v)


def test_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    tenants = make_tenants_dir(tmp_path, tenant_dicts()[:1])
    state = tmp_path / "state"
    env = server_env(state, tenants, 0)
    cli = subprocess.run([sys.executable, "-m", "tenantctl", "serve", "--bind", "127.0.0.1:1"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 1
    assert "tenantctl db upgrade" in cli.stderr
    # gunicorn started without the CLI refuses too (the master checks before forking workers).
    from tenantctl.commands.serve import server_command

    direct = subprocess.run(server_command(), env={**env, "TENANTCTL_BIND": "127.0.0.1:1"}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert direct.returncode != 0
    assert "refusing to start" in direct.stderr and "tenantctl db upgrade" in direct.stderr
