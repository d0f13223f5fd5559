"""`tenantctl health` against the sandbox, as an admin runs it: one status per resource, in Argo CD's words.

Each test runs the CLI in a subprocess on a cleanly seeded sandbox (the examples: acme and blue-harbor are
active, casa-sol is onboarding) and reads the versioned JSON report.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from junitparser import Failure, JUnitXml, Skipped

from store import health as store_health
from store.engine import make_engine
from tests.health.conftest import Rehearsal, row

PHONE = "106540352242922"
SEED_HINT = "if none in 24 h, Hospitable's webhook may have been disabled"


def test_a_30_day_old_hospitable_event_is_degraded_with_the_seeds_hint(rehearsal: Rehearsal) -> None:
    rehearsal.record("acme", "hospitable", age=timedelta(days=30))
    code, doc = rehearsal.health_json("-t", "acme", "-p", "hospitable")
    hook = row(doc, "hospitable.webhook[acme]")
    assert hook["health"] == "degraded"
    assert hook["detail"].startswith("none in 24 h: last verified webhook 30 days ago")
    assert hook["hint"].startswith(SEED_HINT)
    assert code == 1 and doc["exit_code"] == 1


def test_a_recent_hospitable_event_is_healthy_and_the_window_is_an_option(rehearsal: Rehearsal) -> None:
    rehearsal.record("acme", "hospitable", age=timedelta(hours=3))
    code, doc = rehearsal.health_json("-t", "acme", "-p", "hospitable")
    assert row(doc, "hospitable.webhook[acme]")["health"] == "healthy"
    assert "1 accepted in 24 h" in row(doc, "hospitable.webhook[acme]")["detail"]
    assert code == 0
    code, doc = rehearsal.health_json("-t", "acme", "-p", "hospitable", "--window", "1h")
    assert row(doc, "hospitable.webhook[acme]")["health"] == "degraded"
    assert doc["window_seconds"] == 3600 and code == 1


def test_an_onboarding_tenant_reads_progressing_and_does_not_fail(rehearsal: Rehearsal) -> None:
    code, doc = rehearsal.health_json("-t", "casa-sol", "-p", "hospitable")
    hook = row(doc, "hospitable.webhook[casa-sol]")
    assert (hook["health"], hook["tenant_status"]) == ("progressing", "onboarding")
    assert "Apps → Webhooks" in hook["hint"]  # what to do next in onboarding
    assert code == 0


def test_a_suspended_tenant_reads_suspended_and_is_not_called(rehearsal: Rehearsal) -> None:
    rehearsal.set_status("blue-harbor", "suspended")
    code, doc = rehearsal.health_json("-t", "blue-harbor")
    assert {r["health"] for r in doc["rows"]} == {"suspended"}
    assert {r["address"] for r in doc["rows"]} >= {"nuki[blue-harbor]", "whatsapp[blue-harbor]"}
    calls = json.loads(rehearsal.world_file.with_suffix(".calls.json").read_text())
    assert calls.get("calls", calls) in ([], {}), calls
    assert code == 0


def test_a_provider_that_is_down_reads_unknown_and_never_fails(rehearsal: Rehearsal) -> None:
    faults = json.dumps({"rate": 1.0, "kinds": ["500"], "providers": ["nuki"]})
    code, doc = rehearsal.health_json("-t", "acme", "-p", "nuki", env={"TENANTCTL_SANDBOX_FAULTS": faults})
    token = row(doc, "nuki.token[acme]")
    assert token["health"] == "unknown"
    assert "could not be reached" in token["hint"]
    assert code == 0


def test_a_slow_nuki_listing_is_degraded_with_the_time(rehearsal: Rehearsal) -> None:
    rehearsal.change_world(lambda w: w.nuki.slow_locks.update({"17010001": 2.2}))
    code, doc = rehearsal.health_json("-t", "acme", "-p", "nuki")
    slow = row(doc, "nuki.keypad_codes[acme/17010001]")
    assert slow["health"] == "degraded"
    assert "listed in 2.2" in slow["detail"] and "slower than 2 s" in slow["detail"]
    assert slow["duration_ms"] >= 2200
    fast = row(doc, "nuki.keypad_codes[acme/17010002]")
    assert fast["health"] == "healthy" and fast["duration_ms"] < 2000
    assert code == 1


def test_a_provider_slower_than_the_timeout_reads_unknown(rehearsal: Rehearsal) -> None:
    rehearsal.change_world(lambda w: w.nuki.slow_locks.update({"17010001": 3.0}))
    code, doc = rehearsal.health_json("-t", "acme", "-p", "nuki", "--timeout", "0.5")
    [only] = doc["rows"]
    assert (only["address"], only["health"]) == ("nuki.health[acme]", "unknown")
    assert only["detail"] == "no answer within 0.5 s" and 400 <= only["duration_ms"] < 2500
    assert code == 0


def test_a_flagged_number_is_degraded(rehearsal: Rehearsal) -> None:
    def flag(w: object) -> None:
        w.meta.phones[PHONE].quality_rating = "FLAGGED"  # type: ignore[attr-defined]

    rehearsal.change_world(flag)
    code, doc = rehearsal.health_json("-t", "acme", "-p", "whatsapp")
    quality = row(doc, f"whatsapp.phone_quality[acme/{PHONE}]")
    assert quality["health"] == "degraded" and "quality rating FLAGGED" in quality["detail"]
    assert "WhatsApp Manager" in quality["hint"]
    assert code == 1


def test_an_account_event_in_the_window_is_degraded(rehearsal: Rehearsal) -> None:
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "message_template_status_update", "value": {"event": "REJECTED", "message_template_id": 7}}]}]})
    rehearsal.record("acme", "whatsapp", age=timedelta(hours=1), body=body)
    code, doc = rehearsal.health_json("-t", "acme", "-p", "whatsapp")
    quality = row(doc, f"whatsapp.phone_quality[acme/{PHONE}]")
    assert quality["health"] == "degraded"
    assert "message_template_status_update: REJECTED" in quality["detail"]
    assert row(doc, "whatsapp.inbound[acme]")["health"] == "healthy"
    assert code == 1


def test_the_subscription_callback_is_checked_against_the_tenants_url(rehearsal: Rehearsal) -> None:
    def repoint(w: object) -> None:
        for waba in w.meta.wabas.values():  # type: ignore[attr-defined]
            for sub in waba.subscriptions.values():
                sub.override_callback_uri = "https://elsewhere.example/hook"

    rehearsal.change_world(repoint)
    _, doc = rehearsal.health_json("-t", "acme", "-p", "whatsapp")
    sub = row(doc, "whatsapp.waba_subscription[acme]")
    assert sub["health"] != "healthy" and sub["sync"] == "out of sync" and "tenantctl apply" in sub["hint"]


def test_smtp_connects_upgrades_and_logs_in_against_the_sandboxs_server(rehearsal: Rehearsal) -> None:
    code, doc = rehearsal.health_json("-t", "acme", "-p", "smtp")
    assert [(r["address"], r["health"]) for r in doc["rows"]] == [
        ("smtp.connect[acme]", "healthy"), ("smtp.starttls[acme]", "healthy"), ("smtp.login[acme]", "healthy")]
    assert code == 0


def test_a_refused_smtp_login_is_degraded_and_names_what_to_check(rehearsal: Rehearsal) -> None:
    rehearsal.change_world(lambda w: w.smtp.accounts.update({k: "changed" for k in w.smtp.accounts}))
    code, doc = rehearsal.health_json("-t", "acme", "-p", "smtp")
    login = row(doc, "smtp.login[acme]")
    assert login["health"] == "degraded" and "535" in login["detail"]
    assert "smtp.password" in login["hint"]
    assert code == 1


def test_every_run_is_stored_for_the_page_and_the_metrics(rehearsal: Rehearsal) -> None:
    rehearsal.record("acme", "hospitable", age=timedelta(days=30))
    rehearsal.health_json("-t", "acme", "-p", "hospitable")
    engine = make_engine(rehearsal.db_url)
    try:
        stored = {r.address: r.health for r in store_health.latest(engine, "acme")}
    finally:
        engine.dispose()
    assert stored["hospitable.webhook[acme]"] == "degraded"
    assert stored["hospitable.token[acme]"] == "healthy"


def test_junit_parses_as_ci_reporters_read_it(rehearsal: Rehearsal) -> None:
    rehearsal.record("acme", "hospitable", age=timedelta(days=30))
    out = rehearsal.root / "health.xml"
    r = rehearsal.run("health", "--sandbox", "--format", "junit", "--out", str(out), "-p", "hospitable")
    assert r.code == 1, r.all
    xml = JUnitXml.fromfile(str(out))
    suites = {s.name: s for s in xml}
    assert set(suites) == {"acme", "blue-harbor", "casa-sol"}
    cases = {c.name: c for c in suites["acme"]}
    [failure] = [res for res in cases["hospitable.webhook[acme]"].result if isinstance(res, Failure)]
    assert failure.type == "degraded" and SEED_HINT in (failure.text or "")
    assert suites["acme"].failures == 1 and suites["acme"].tests == len(cases)
    onboarding = {c.name: c for c in suites["casa-sol"]}["hospitable.webhook[casa-sol]"]
    assert any(isinstance(res, Skipped) for res in onboarding.result)  # progressing is not a failure
    assert all(float(c.time) >= 0 for c in cases.values())


def test_text_output_names_resources_and_never_shows_a_secret(rehearsal: Rehearsal) -> None:
    r = rehearsal.run("health", "--sandbox")
    assert "nuki.keypad_codes[acme/17010001]" in r.out and "healthy" in r.out and "check(s):" in r.out
    leaked = [s for s in rehearsal.secrets if len(s) >= 6 and s in r.all]
    assert not leaked, "a secret leaked"


@pytest.mark.parametrize(("args", "message"), [
    (("--format", "yaml"), "'yaml' is not one of 'text', 'json', 'junit'"),
    (("--window", "soon"), "is not a duration"),
    (("--timeout", "0"), "must be positive"),
])
def test_bad_options_are_refused_clearly(rehearsal: Rehearsal, args: tuple[str, ...], message: str) -> None:
    r = rehearsal.run("health", "--sandbox", *args)
    assert r.code == 1 and message in r.err and "Traceback" not in r.err


def _without_waba(rehearsal: Rehearsal, slug: str) -> None:
    """The state `tenantctl new` leaves: no WABA yet (the token is the placeholder, never sent)."""
    path = rehearsal.root / "examples" / f"{slug}.yaml"
    text = path.read_text()
    old = next(line for line in text.splitlines() if line.strip().startswith("business_account_id:"))
    path.write_text(text.replace(old, "    business_account_id: null", 1))


def test_a_whatsapp_token_that_was_never_sent_does_not_read_healthy(rehearsal: Rehearsal) -> None:
    _without_waba(rehearsal, "casa-sol")
    code, doc = rehearsal.health_json("-t", "casa-sol", "-p", "whatsapp")
    token = row(doc, "whatsapp.token[casa-sol]")
    assert token["health"] == "progressing"  # onboarding: a gap, not a failure
    assert "business_account_id" in token["hint"] and "access_token" in token["hint"]
    assert code == 0


def test_json_still_gets_a_document_when_the_database_is_unreachable(rehearsal: Rehearsal) -> None:
    r = rehearsal.run("health", "--sandbox", "--format", "json", "-t", "acme",
                      env={"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    doc = json.loads(r.out)  # a JSON consumer never crashes on an empty stdout
    assert doc["format_version"] and doc["exit_code"] == 1 and doc["rows"] == []
    assert "127.0.0.1:1" in doc["error"]
    assert r.code == 1


def test_json_still_gets_a_document_when_a_tenant_file_is_invalid(rehearsal: Rehearsal) -> None:
    path = rehearsal.root / "examples" / "casa-sol.yaml"
    path.write_text(path.read_text().replace("status: onboarding", "status: sleeping", 1))
    out_file = rehearsal.root / "report.json"
    r = rehearsal.run("health", "--sandbox", "--format", "json", "--out", str(out_file))
    doc = json.loads(r.out)
    assert "tenant files" in doc["error"] and doc["exit_code"] == 1
    assert json.loads(out_file.read_text()) == doc
    assert "casa-sol.yaml" in r.err  # the file's own error, on stderr
    assert r.code == 1


def test_out_writes_the_text_report_too_in_plain_text(rehearsal: Rehearsal) -> None:
    out_file = rehearsal.root / "health.txt"
    r = rehearsal.run("health", "--sandbox", "-t", "acme", "-p", "hospitable", "--out", str(out_file))
    text = out_file.read_text()
    assert "hospitable.token[acme]" in text and "check(s):" in text
    assert "\x1b[" not in text
    assert r.code in (0, 1), r.all


def test_a_missing_nuki_webhook_row_describes_health_not_the_plan(rehearsal: Rehearsal) -> None:
    _, doc = rehearsal.health_json("-t", "acme", "-p", "nuki")
    hook = row(doc, "nuki.decentral_webhook[acme]")
    assert (hook["health"], hook["detail"]) == ("missing", "no decentral webhook registered: run apply")
    assert "stored encrypted" not in hook["detail"]
