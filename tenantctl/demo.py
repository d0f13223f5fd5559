"""`make demo`: the main job on embedded defaults, run step by step as a new user would.

The example tenants (copied to .state/demo/tenants, since `apply` writes Nuki's webhook secret back into
them) with their public demo key, SQLite under .state/demo, and the local sandbox in place of every
provider. Each step is a real `tenantctl` command in a subprocess, printed before it runs; the servers are
real gunicorn processes on free loopback ports, stopped at the end.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("TENANTCTL_STATE_DIR", ".state/demo")).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def step(args: list[str], ok: frozenset[int] = frozenset({0}), env: dict[str, str] | None = None) -> int:
    print(f"\n$ tenantctl {shlex.join(args)}", flush=True)
    code = subprocess.call([sys.executable, "-m", "tenantctl", *args], env={**os.environ, **(env or {})})
    if code not in ok:
        print(f"demo step failed with exit code {code}", file=sys.stderr)
        sys.exit(code or 1)
    return code


@contextmanager
def background(args: list[str], ready_url: str) -> Iterator[None]:
    print(f"\n$ tenantctl {shlex.join(args)} &", flush=True)
    log = (STATE / f"{args[0]}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(ready_url, timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                print((STATE / f"{args[0]}.log").read_text()[-3000:], file=sys.stderr)
                sys.exit(f"{args[0]} did not start")
            time.sleep(0.2)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def send_webhooks(base: str, tenants_dir: Path) -> None:
    """Deliver what the providers would: signed, forged, replayed and cross-tenant events."""
    sys.path.insert(0, str(REPO))
    from tenancy.loader import load_tenants

    tenants = {lt.tenant.slug: lt.tenant for lt in load_tenants([tenants_dir]).tenants}
    acme, blue = tenants["acme"], tenants["blue-harbor"]
    if not (acme.hospitable and acme.whatsapp and blue.whatsapp):
        sys.exit("the example tenants changed: acme needs hospitable and whatsapp, blue-harbor whatsapp")
    secret = acme.hospitable.webhook_secret.get_secret_value().encode()
    app_secret = os.environ["TENANTCTL_META_APP_SECRETS"].split(",")[0].encode()

    def hospitable(body: bytes, sig: str) -> int:
        return httpx.post(f"{base}/api/webhooks/hospitable/t/acme", content=body,
                          headers={"Signature": sig, "Content-Type": "application/json"}).status_code

    event = json.dumps({"id": str(uuid.uuid4()), "action": "reservation.created", "version": "v2",
                        "created": "2026-11-27T10:00:00Z", "data": {"id": "res-1"}}).encode()
    good = hmac.new(secret, event, hashlib.sha256).hexdigest()
    wa = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": blue.whatsapp.business_account_id,
                     "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {
                         "display_phone_number": "15550001111", "phone_number_id": blue.whatsapp.phone_number_id},
                         "messages": [{"id": "wamid.demo1", "from": "15550002222", "timestamp": "1764237600",
                                       "type": "text", "text": {"body": "hi"}}]}}]}]}).encode()
    wa_sig = "sha256=" + hmac.new(app_secret, wa, hashlib.sha256).hexdigest()
    blue_secret = blue.hospitable.webhook_secret.get_secret_value().encode() if blue.hospitable else b""
    blue_event = event.replace(b"res-1", b"res-2")
    results = [
        ("Hospitable event, signed", hospitable(event, good)),
        ("Hospitable event for blue-harbor, signed",
         httpx.post(f"{base}/api/webhooks/hospitable/t/blue-harbor", content=blue_event,
                    headers={"Signature": hmac.new(blue_secret, blue_event, hashlib.sha256).hexdigest()}
                    ).status_code),
        ("the same event again (replay)", hospitable(event, good)),
        ("Hospitable event, forged signature", hospitable(event, "0" * 64)),
        ("WhatsApp message for blue-harbor posted to acme's URL",
         httpx.post(f"{base}/api/webhooks/wa/t/acme", content=wa,
                    headers={"X-Hub-Signature-256": wa_sig, "Content-Type": "application/json"}).status_code),
        ("WhatsApp message for blue-harbor at its own URL",
         httpx.post(f"{base}/api/webhooks/wa/t/blue-harbor", content=wa,
                    headers={"X-Hub-Signature-256": wa_sig, "Content-Type": "application/json"}).status_code),
        ("an unknown tenant", httpx.post(f"{base}/api/webhooks/hospitable/t/nobody", content=b"{}").status_code),
    ]
    if blue.beds24 is not None:
        results.append(("Beds24 booking for blue-harbor, with its secret header", httpx.post(
            f"{base}/api/webhooks/beds24/t/blue-harbor", content=b'{"booking": {"id": 1}}',
            headers={"X-Tenantctl-Secret": blue.beds24.webhook_secret.get_secret_value(),
                     "Content-Type": "application/json"}).status_code))
    print("\n# webhooks sent to the server as the providers would send them, and its answers:")
    for what, status in results:
        print(f"  {status}  {what}")


DEMO_DELIVERY_SECRET = "whsec_ZGVtby1vbmx5LWRlbGl2ZXJ5LXNlY3JldC0wMDAx"  # noqa: S105  # demo only, public


def _admin() -> dict[str, str]:
    """The sandbox's admin token (the fake platform's /_platform/* needs it), written by `sandbox serve`."""
    return {"Authorization": f"Bearer {(STATE / 'sandbox-admin-token').read_text().strip()}"}


def _platform(sandbox: str) -> list[dict[str, object]]:
    return list(httpx.get(f"{sandbox}/_platform/received", headers=_admin(), timeout=5).json())


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"demo: {what} did not happen within {timeout:.0f}s (see {STATE}/deliver.log)")
        time.sleep(0.2)


def _print_received(sandbox: str) -> None:
    print("\n# what the fake platform received (every attempt, signature checked):")
    for r in _platform(sandbox):
        print(f"  {r['status']}  {r['webhook_id']:<8} attempt {r['attempt']}  {r['tenant']}/{r['provider']}  "
              f"event {r['event_id']}  signature {'ok' if r['signature_ok'] else 'BAD'}")


def show_delivery(base: str, sandbox: str, tenants_dir: Path) -> None:
    """The accepted events reach the fake platform; a failing delivery is retried; a replay delivers again."""
    _wait_for("delivery of the accepted events", lambda: sum(r["status"] == 204 for r in _platform(sandbox)) >= 3)
    _print_received(sandbox)
    print("\n# the platform fails every request for 3 s; a new booking arrives meanwhile", flush=True)
    httpx.put(f"{sandbox}/_platform/mode", json={"fail_percent": 100}, headers=_admin(), timeout=5)
    sys.path.insert(0, str(REPO))
    from tenancy.loader import load_tenants

    acme = next(lt.tenant for lt in load_tenants([tenants_dir]).tenants if lt.tenant.slug == "acme")
    if acme.hospitable is None:
        sys.exit("the example tenants changed: acme needs hospitable")
    event_id = str(uuid.uuid4())
    event = json.dumps({"id": event_id, "action": "reservation.created", "version": "v2",
                        "created": "2026-11-27T11:00:00Z", "data": {"id": "res-3"}}).encode()
    sig = hmac.new(acme.hospitable.webhook_secret.get_secret_value().encode(), event, hashlib.sha256).hexdigest()
    status = httpx.post(f"{base}/api/webhooks/hospitable/t/acme", content=event,
                        headers={"Signature": sig, "Content-Type": "application/json"}).status_code
    print(f"  {status}  Hospitable booking res-3 for acme (event {event_id})")
    _wait_for("a failed attempt", lambda: any(r["status"] == 500 for r in _platform(sandbox)))
    failed = next(r["webhook_id"] for r in _platform(sandbox) if r["status"] == 500)
    time.sleep(3)
    httpx.put(f"{sandbox}/_platform/mode", json={}, headers=_admin(), timeout=5)
    _wait_for("the retry", lambda: any(r["webhook_id"] == failed and r["status"] == 204 for r in _platform(sandbox)))
    _print_received(sandbox)
    step(["webhooks", "attempts", str(failed).removeprefix("msg_")])  # the failures, the backoff, the success
    step(["webhooks", "log"])
    first = next(r for r in _platform(sandbox) if r["status"] == 204)
    log_id = str(first["webhook_id"]).removeprefix("msg_")
    step(["webhooks", "replay", log_id])
    _wait_for("the replay", lambda: sum(r["webhook_id"] == first["webhook_id"] and r["status"] == 204
                                        for r in _platform(sandbox)) >= 2)
    _print_received(sandbox)
    step(["webhooks", "attempts", log_id])
    # Every provider has a destination here, so every accepted event is delivered: none stays pending.
    _wait_for("delivery of every accepted event", lambda: _undelivered() == 0)
    step(["webhooks", "stats"])
    print("# every accepted event delivered: none pending, retrying or dead", flush=True)


def _undelivered() -> int:
    """Events of the demo's database not delivered yet (pending or retrying) or dead-lettered."""
    sys.path.insert(0, str(REPO))
    from store.delivery import queue_stats
    from store.engine import make_engine
    from tenancy.settings import load_settings

    engine = make_engine(load_settings().resolved_database_url)
    try:
        q = queue_stats(engine)
    finally:
        engine.dispose()
    return q.pending + q.retrying + q.dead


# What the demo sets for every step, printed before the steps (the secrets by name only: they are public
# demo values, in this file).
DEMO_SECRETS = ("TENANTCTL_META_APP_SECRETS", "TENANTCTL_ADMIN_TOKEN", "TENANTCTL_DELIVERY_SECRETS")


def print_env(names: list[str], title: str) -> None:
    print(f"\n# {title}", flush=True)
    for name in names:
        value = "(a demo-only value, in tenantctl/demo.py)" if name in DEMO_SECRETS else os.environ.get(name, "")
        print(f"#   {name}={value}", flush=True)


def main() -> None:
    examples = REPO / "examples"
    tenants_dir = STATE / "tenants"
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    shutil.copytree(examples, tenants_dir)
    sandbox_port, server_port = free_port(), free_port()
    demo_settings = {
        "TENANTCTL_TENANTS": str(tenants_dir),
        "TENANTCTL_STATE_DIR": str(STATE),
        "SOPS_AGE_KEY_FILE": str(examples / "demo.agekey"),
        "TENANTCTL_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
        # Demo-only platform secrets; real ones come from the environment or .env.
        "TENANTCTL_META_APP_SECRETS": "demo-meta-app-secret",
        "TENANTCTL_ADMIN_TOKEN": "demo-admin-token",
        # Delivery to the sandbox's fake platform, signed with a demo-only secret; short backoff to watch.
        "TENANTCTL_DELIVERY_SECRETS": DEMO_DELIVERY_SECRET,
        "TENANTCTL_DELIVERY_URL_HOSPITABLE": f"http://127.0.0.1:{sandbox_port}/platform/hospitable",
        "TENANTCTL_DELIVERY_URL_WHATSAPP": f"http://127.0.0.1:{sandbox_port}/platform/whatsapp",
        "TENANTCTL_DELIVERY_URL_NUKI": f"http://127.0.0.1:{sandbox_port}/platform/nuki",
        "TENANTCTL_DELIVERY_URL_BEDS24": f"http://127.0.0.1:{sandbox_port}/platform/beds24",
        "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP": "true",
        "TENANTCTL_DELIVERY_BASE_DELAY_S": "1",
        "TENANTCTL_DELIVERY_MAX_DELAY_S": "2",
        # The sandbox's Meta sends its status webhooks to the local server (loopback only).
        "TENANTCTL_SANDBOX_WEBHOOK_TARGET": f"http://127.0.0.1:{server_port}",
    }
    os.environ.update(demo_settings)
    print(f"demo: tenants copied to {tenants_dir}; state, SQLite and logs in {STATE}")
    print_env(list(demo_settings), "every step below runs with these settings (and the rest of your environment):")
    step(["validate"])
    step(["list"])
    base = f"http://127.0.0.1:{server_port}"
    with background(["sandbox", "serve", "--port", str(sandbox_port)],
                    f"http://127.0.0.1:{sandbox_port}/_sandbox/healthz"):
        step(["sandbox", "seed"])
        step(["plan", "--sandbox"], ok=frozenset({2}))
        step(["apply", "--sandbox", "--auto-approve"])
        step(["plan", "--sandbox"], ok=frozenset({0}))
        step(["db", "upgrade"])
        with background(["serve", "--bind", f"127.0.0.1:{server_port}"], f"{base}/healthz"):
            send_webhooks(base, tenants_dir)
            step(["simulate", "booking", "acme", "--server", base])
            # The WhatsApp round trip: a template to acme's test recipient, awaiting its status webhooks
            # in the log (~1 s here; --timeout 10 bounds the wait at 5 s).
            started = time.monotonic()
            step(["health", "--sandbox", "--active", "--tenant", "acme", "--provider", "whatsapp", "--timeout", "10"],
                 ok=frozenset({0, 1}))
            print(f"# health --active took {time.monotonic() - started:.1f} s", flush=True)
            step(["webhooks", "stats"])
            step(["webhooks", "log", "--rejected"])
            metrics_port = free_port()
            print_env([n for n in demo_settings if "_DELIVERY_" in n],
                      "the worker's settings (set above for every step; docs/delivery.md, .env.example):")
            with background(["deliver", "--metrics-port", str(metrics_port)],
                            f"http://127.0.0.1:{metrics_port}/metrics"):
                show_delivery(base, f"http://127.0.0.1:{sandbox_port}", tenants_dir)
        # Verified Hospitable events have now arrived: the manual webhook steps show as done.
        step(["health", "--sandbox", "--tenant", "acme", "--tenant", "blue-harbor",
              *[a for p in ("hospitable", "whatsapp", "nuki", "twon", "beds24") for a in ("--provider", p)]])
    print("\ndemo finished: validated, reconciled against the sandbox, served webhooks and delivered them.")


if __name__ == "__main__":
    main()
