"""The CI loop against the sandbox: what a provider hands back during apply survives the runner.

plan on a clean checkout → apply → the runner throws the working tree away → plan again: no changes, and
the webhook server verifies a Nuki webhook signed with the secret Nuki issued during that apply.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from sandbox.world import World
from store import provider_state
from store.engine import make_engine
from tests.cli.ci_repo import git, make_ci_repo
from tests.conftest import DEMO_KEY
from tests.webhook_server.helpers import sign_hex
from tests.webhook_server.server_harness import start_server


def _live_nuki_secret(world_file: Path, db_url: str, slug: str) -> str:
    """The secret Nuki holds for SLUG's webhook (the one the state store must have kept)."""
    world = World.from_json(world_file.read_text())
    live = [h.secret for a in world.nuki.accounts.values() for h in a.webhooks.values()
            if h.webhook_url.endswith(f"/nuki/t/{slug}")]
    assert len(live) == 1, "one webhook per tenant"
    db = make_engine(db_url)
    try:
        stored = provider_state.decrypt_all(db, provider_state.identities_from_env({"SOPS_AGE_KEY_FILE": str(
            DEMO_KEY)}))
    finally:
        db.dispose()
    assert stored[(slug, "nuki.webhook_secret")][0] == live[0]
    return live[0]


@pytest.mark.slow
def test_a_secret_issued_during_apply_survives_a_discarded_working_tree(tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    server = start_server(tmp_path, ci.tenants, TENANTCTL_STATE_REFRESH_S="0.5",
                          TENANTCTL_META_APP_SECRETS="x" * 32)
    try:
        body = b'{"feature": "DEVICE_STATUS", "smartlockId": 17010001}'
        with httpx.Client(base_url=server.url, timeout=5) as client:
            before = client.post("/api/webhooks/nuki/t/acme", content=body,
                                 headers={"X-Nuki-Signature-SHA256": sign_hex("x" * 32, body)})
            assert before.status_code == 404  # no webhook, no secret yet

            first = ci.run("plan")
            assert first.code == 2, first.all
            assert "+ nuki.decentral_webhook[acme]" in first.out
            applied = ci.run("apply", "--auto-approve")
            assert applied.code == 0, applied.all
            assert "nuki.webhook_secret in the provider state store" in applied.out

            ci.discard_working_tree()
            assert git(ci.repo, "status", "--porcelain") == ""
            again = ci.run("plan")
            assert again.code == 0, again.all  # the webhook is not replaced again

            secret = _live_nuki_secret(tmp_path / "world.json", ci.db_url, "acme")
            assert secret not in applied.all + again.all
            # The running server picked the new secret up by itself: no SIGHUP, no restart.
            signed = client.post("/api/webhooks/nuki/t/acme", content=body,
                                 headers={"X-Nuki-Signature-SHA256": sign_hex(secret, body)})
            assert signed.status_code == 200, signed.text
            forged = client.post("/api/webhooks/nuki/t/acme", content=body,
                                 headers={"X-Nuki-Signature-SHA256": sign_hex("y" * 32, body)})
            assert forged.status_code == 401

            # show and validate know the value exists; neither prints it.
            shown = ci.run("show", "acme")
            assert shown.code == 0, shown.all
            assert "webhook_secret: (sensitive) in the provider state store" in shown.out
            valid = ci.run("validate")
            assert "acme: nuki.webhook_secret is kept in the provider state store" in valid.out, valid.all
            assert secret not in shown.all + valid.all

            # Rotation: forget the value; the next apply replaces the webhook and the server follows.
            assert ci.run("provider-state", "forget", "acme", "nuki.webhook_secret").code == 0
            rotate = ci.run("apply", "--auto-approve")
            assert rotate.code == 0 and "nuki.decentral_webhook[acme]" in rotate.out, rotate.all
            new = _live_nuki_secret(tmp_path / "world.json", ci.db_url, "acme")
            assert new != secret
            deadline = time.monotonic() + 5
            while True:
                r = client.post("/api/webhooks/nuki/t/acme", content=body,
                                headers={"X-Nuki-Signature-SHA256": sign_hex(new, body)})
                if r.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status_code == 200
    finally:
        server.stop()
    db = make_engine(ci.db_url)
    try:
        with db.connect() as conn:
            raw = "\n".join(repr(r) for r in conn.exec_driver_sql("SELECT * FROM provider_state"))
        assert secret not in raw and "acme" in raw  # stored, and only as ciphertext
    finally:
        db.dispose()
