"""The Meta app's webhook subscription through the CLI: a platform-level item in plan, apply and health."""

from __future__ import annotations

import pytest

from reconciler.providers.meta_app import APP_FIELDS
from tests.cli.test_reconcile_cli import Rehearsal, assert_no_secret, rehearsal, run

__all__ = ["rehearsal"]  # the fixture, shared with the rehearsal tests

APP = "900000000000001"
APP_TOKEN = f"{APP}|app-secret-cli"
VERIFY = "platform-verify-token-cli"
ADDRESS = "whatsapp.app_subscription[(platform)]"
URL = "https://ops.example.com/api/webhooks/wa"


def test_the_app_subscription_is_planned_applied_from_a_reviewed_plan_and_checked(
        rehearsal: Rehearsal, monkeypatch: pytest.MonkeyPatch) -> None:
    world = rehearsal.world()
    world.meta.add_app_token(APP_TOKEN, APP)
    rehearsal.save(world)
    monkeypatch.setenv("TENANTCTL_META_APP_ID", APP)
    monkeypatch.setenv("TENANTCTL_META_APP_TOKEN", APP_TOKEN)
    monkeypatch.setenv("TENANTCTL_META_VERIFY_TOKEN", VERIFY)

    code, first = run("plan", "--sandbox", "--out", "reviewed.json")
    assert code == 2, first
    assert f"+ {ADDRESS}" in first
    code, one_tenant = run("plan", "--sandbox", "--tenant", "acme")
    assert ADDRESS not in one_tenant  # a run limited to some tenants leaves the platform alone
    code, applied = run("apply", "reviewed.json")
    assert code == 0, applied
    sub = rehearsal.world().meta.apps[APP].subscriptions["whatsapp_business_account"]
    assert (sub.callback_url, sub.fields, sub.verify_token) == (URL, list(APP_FIELDS), VERIFY)
    code, again = run("plan", "--sandbox")
    assert code == 0, again
    code, health = run("health", "--sandbox")
    assert "(platform)" in health and "app_subscription" in health
    for text in (first, applied, again, health):
        assert_no_secret(text, [*rehearsal.secrets, APP_TOKEN, VERIFY])


def test_without_an_app_token_the_plan_carries_the_manual_step_and_calls_nothing(
        rehearsal: Rehearsal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTCTL_META_APP_ID", APP)
    code, out = run("plan", "--sandbox")
    assert code == 2, out
    assert f"! {ADDRESS}" in out
    assert "/api/webhooks/wa" in out
    calls = rehearsal.calls()
    assert "subscriptions" not in str(calls)


def test_without_an_app_id_plans_are_as_before(rehearsal: Rehearsal) -> None:
    code, out = run("plan", "--sandbox")
    assert code == 2
    assert "app_subscription" not in out
