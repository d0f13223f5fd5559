"""A webhook accepted by the real server reaches the fake platform through the real worker: whole, byte for
byte, signed so that the published Standard Webhooks verifier accepts it, once per accepted event."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from pathlib import Path

import httpx
import standardwebhooks

from tests.webhook_server.helpers import SECRETS, dumps, sign_hex, tenant_dicts
from tests.webhook_server.server_harness import DEMO_KEY, make_tenants_dir, start_server, write_tenant

from .harness import (
    OLD_SECRET,
    SECRET,
    Proc,
    Stack,
    accepted,
    deliver_env,
    insert,
    spawn,
    start_deliver,
    start_platform,
    wait_until,
)


def test_an_accepted_webhook_is_delivered_whole_and_signed(tmp_path: Path) -> None:
    dicts = tenant_dicts()
    tenants = make_tenants_dir(tmp_path, dicts)
    server = start_server(tmp_path, tenants, TENANTCTL_MAX_BODY_BYTES="262144")
    # The platform still accepts the old secret during a rotation; the worker signs with both. This one is the
    # platform the full sandbox mounts (`sandbox serve`, as `make demo` runs it); the other tests use it alone.
    platform = start_platform(tmp_path, secrets=SECRET, in_sandbox=True)
    procs: list[Proc] = []
    try:
        big = {"id": "evt-big", "action": "reservation.created", "data": {"notes": "é" * 40_000}}
        body = json.dumps(big, ensure_ascii=False).encode()  # > 64 KB of UTF-8: stored and delivered whole
        assert len(body) > 65_536
        secret = SECRETS["acme"]["hospitable"]
        with httpx.Client(base_url=server.url, timeout=10) as client:
            def post(payload: bytes, signature: str) -> int:
                return client.post("/api/webhooks/hospitable/t/acme", content=payload, headers={
                    "Signature": signature, "Content-Type": "application/json; charset=utf-8"}).status_code

            assert post(body, sign_hex(secret, body)) == 200
            assert post(body, sign_hex(secret, body)) == 200  # a duplicate: never delivered again
            assert post(body, "0" * 64) == 401  # refused: never delivered
        env = deliver_env(platform, f"sqlite:///{server.state / 'tenantctl.db'}", server.state,
                          TENANTCTL_TENANTS=str(tenants), SOPS_AGE_KEY_FILE=server.env["SOPS_AGE_KEY_FILE"],
                          TENANTCTL_DELIVERY_SECRETS=f"{SECRET},{OLD_SECRET}")
        procs.append(start_deliver(tmp_path, env))
        wait_until(lambda: len(platform.delivered_ids()) == 1, 20, procs[0].logs)

        received = platform.received()
        assert len(received) == 1
        r = received[0]
        assert r["signature_ok"] and r["status"] == 204
        assert (r["tenant"], r["provider"], r["event_id"]) == ("acme", "hospitable", "evt-big")
        assert r["content_type"] == "application/json; charset=utf-8"
        assert datetime.fromisoformat(r["received_at"]).tzinfo is not None
        delivered = platform.body(r["webhook_id"])
        assert delivered == body

        # An independent verifier (the `standardwebhooks` package) accepts the request as delivered.
        headers = {"webhook-id": r["webhook_id"], "webhook-timestamp": r["timestamp"],
                   "webhook-signature": r["signature"]}
        for s in (SECRET, OLD_SECRET):
            assert standardwebhooks.Webhook(s).verify(delivered, headers) == json.loads(body)

        # The log shows the delivery; the duplicate and the refusal were never queued.
        out = _cli(tmp_path, env, "webhooks", "log")
        lines = [line for line in out.splitlines() if "evt-big" in line or "bad-signature" in line]
        assert sum("delivered 1x 204" in line for line in lines) == 1
        assert out.count("duplicate") == 1 and "bad-signature" in out
    finally:
        for p in procs:
            p.stop()
        platform.proc.stop()
        server.stop()


def _cli(root: Path, env: dict[str, str], *args: str) -> str:
    proc = spawn(list(args), root / "cli.log", env, root)
    assert proc.proc.wait(60) == 0, proc.logs()
    return proc.logs()


def test_a_per_tenant_destination_overrides_the_platform_one(tmp_path: Path) -> None:
    dicts = tenant_dicts()
    platform = start_platform(tmp_path)
    dicts[0]["delivery"] = {"hospitable": f"{platform.url}/platform/acme-own"}
    tenants = make_tenants_dir(tmp_path, dicts)
    server = start_server(tmp_path, tenants)
    procs: list[Proc] = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for slug in ("acme", "blue-harbor"):
                body = dumps({"id": f"evt-{slug}", "action": "reservation.created", "data": {}})
                assert client.post(f"/api/webhooks/hospitable/t/{slug}", content=body, headers={
                    "Signature": sign_hex(SECRETS[slug]["hospitable"], body)}).status_code == 200
        env = deliver_env(platform, f"sqlite:///{server.state / 'tenantctl.db'}", server.state,
                          TENANTCTL_TENANTS=str(tenants), SOPS_AGE_KEY_FILE=server.env["SOPS_AGE_KEY_FILE"])
        procs.append(start_deliver(tmp_path, env))
        wait_until(lambda: len(platform.delivered_ids()) == 2, 20, procs[0].logs)
        paths = {r["tenant"]: r["path"] for r in platform.received()}
        assert paths == {"acme": "/platform/acme-own", "blue-harbor": "/platform/hospitable"}
    finally:
        for p in procs:
            p.stop()
        platform.proc.stop()
        server.stop()


def test_nothing_is_sent_without_a_secret_or_a_destination(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()  # no tenant file, so no tenant's own destination either
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TENANTCTL_STATE_DIR": str(tmp_path),
           "TENANTCTL_TENANTS": str(tmp_path / "none")}
    proc = spawn(["deliver"], tmp_path / "a.log", env, tmp_path)
    assert proc.proc.wait(60) == 1
    assert "TENANTCTL_DELIVERY_SECRETS" in proc.logs()
    env["TENANTCTL_DELIVERY_SECRETS"] = SECRET
    proc = spawn(["deliver"], tmp_path / "b.log", env, tmp_path)
    assert proc.proc.wait(60) == 1
    assert "TENANTCTL_DELIVERY_URL_" in proc.logs()
    env["TENANTCTL_DELIVERY_URL_HOSPITABLE"] = "http://platform.example.com/hooks"  # plain http, not loopback
    proc = spawn(["deliver"], tmp_path / "c.log", env, tmp_path)
    assert proc.proc.wait(60) == 1
    assert "use https" in proc.logs()
    assert SECRET not in proc.logs() + (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()


def test_a_refused_tenant_destination_names_its_file_line_and_field(tmp_path: Path) -> None:
    dicts = tenant_dicts()
    dicts[0]["delivery"] = {"hospitable": "http://platform.example.com/acme"}  # plain http, not loopback
    tenants = make_tenants_dir(tmp_path, dicts)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TENANTCTL_STATE_DIR": str(tmp_path),
           "TENANTCTL_TENANTS": str(tenants), "TENANTCTL_DELIVERY_SECRETS": SECRET,
           "SOPS_AGE_KEY_FILE": str(Path(__file__).resolve().parents[2] / "examples" / "demo.agekey"),
           "TENANTCTL_DELIVERY_URL_WHATSAPP": "https://platform.example.com/wa"}
    proc = spawn(["deliver"], tmp_path / "d.log", env, tmp_path)
    assert proc.proc.wait(60) == 1
    line = next(i for i, text in enumerate((tenants / "acme.yaml").read_text().splitlines(), 1)
                if text.strip().startswith("hospitable: http://"))
    assert f"acme.yaml:{line}:5: delivery.hospitable: not a delivery destination: plain http is refused except " \
           "to loopback" in proc.logs()  # the tenant file's own finding, as `validate` gives it


def test_sighup_reloads_the_tenant_destinations_and_refuses_a_bad_set(sqlite_stack: Stack, tmp_path: Path) -> None:
    stack = sqlite_stack
    dicts = tenant_dicts()
    tenants = make_tenants_dir(tmp_path, dicts)
    worker = stack.deliver("deliver", TENANTCTL_TENANTS=str(tenants), SOPS_AGE_KEY_FILE=str(DEMO_KEY))
    insert(stack.engine, accepted(1))
    wait_until(lambda: len(stack.platform.delivered_ids()) == 1, 20, worker.logs)

    dicts[0]["delivery"] = {"hospitable": "http://platform.example.com/acme"}  # refused: plain http
    write_tenant(tenants, dicts[0])
    worker.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in worker.logs(), 20, worker.logs)
    dicts[0]["delivery"] = {"hospitable": stack.platform.destination("acme-own")}
    write_tenant(tenants, dicts[0])
    worker.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded: 1 tenant destination(s)" in worker.logs(), 20, worker.logs)
    insert(stack.engine, accepted(1, start=1))
    wait_until(lambda: len(stack.platform.delivered_ids()) == 2, 20, worker.logs)
    assert [r["path"] for r in stack.platform.received()] == ["/platform/hospitable", "/platform/acme-own"]
    # The directory gone (a deploy that lost its volume): refused as well, the tenants' own destinations kept.
    tenants.rename(tmp_path / "moved")
    worker.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: worker.logs().count("reload refused") == 2, 20, worker.logs)
    assert "does not exist" in worker.logs()
    insert(stack.engine, accepted(1, start=2))
    wait_until(lambda: len(stack.platform.delivered_ids()) == 3, 20, worker.logs)
    assert [r["path"] for r in stack.platform.received()][-1] == "/platform/acme-own"


def test_sighup_refuses_a_tenant_destination_that_is_never_a_platform_and_logs_it_escaped(
    sqlite_stack: Stack, tmp_path: Path,
) -> None:
    stack = sqlite_stack
    dicts = tenant_dicts()
    tenants = make_tenants_dir(tmp_path, dicts)
    worker = stack.deliver("deliver", TENANTCTL_TENANTS=str(tenants), SOPS_AGE_KEY_FILE=str(DEMO_KEY))

    def reload_with(url: str, refusals: int) -> None:
        dicts[0]["delivery"] = {"hospitable": url}
        write_tenant(tenants, dicts[0])
        worker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: worker.logs().count("reload refused") == refusals, 20, worker.logs)

    # The attacker's reload: backspaces and ESC c (a terminal reset) in the host, then the metadata service.
    reload_with("http://evil\b\b\b\b\bok\x1bc.example/x", 1)
    reload_with("https://169.254.169.254/latest/meta-data/", 2)
    logs = worker.logs()
    assert "acme.yaml" in logs and "delivery.hospitable: not a delivery destination: a URL is printable ASCII" in logs
    assert "delivery.hospitable: not a delivery destination: its host is refused: a link-local address" in logs
    assert not any(ch in logs for ch in "\x1b\x08"), "a control character reached the log"
    # The worker keeps the destinations it had: the platform's.
    insert(stack.engine, accepted(1))
    wait_until(lambda: len(stack.platform.delivered_ids()) == 1, 20, worker.logs)
    assert [r["path"] for r in stack.platform.received()] == ["/platform/hospitable"]
