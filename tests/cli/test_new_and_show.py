"""`tenantctl new` scaffolds an encrypted, commented tenant that validates; `show` masks every secret."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tenancy.loader import load_tenants
from tests.conftest import DEMO_KEY, EXAMPLES, RunCli


def test_new_then_validate_passes(cli: RunCli, tenant_dir: Path) -> None:
    r = cli("--tenants", str(tenant_dir), "new", "sunny-flats", env={"TENANTCTL_DOMAIN": "ops.test"})
    assert r.code == 0, r.all
    path = tenant_dir / "sunny-flats.yaml"
    text = path.read_text()
    assert "ENC[AES256_GCM," in text and "sops:" in text
    assert "https://ops.test/api/webhooks/hospitable/t/sunny-flats" in r.out
    assert "https://ops.test/api/webhooks/wa/t/sunny-flats" in r.out
    assert "https://ops.test/api/webhooks/beds24/t/sunny-flats" in r.out
    v = cli("--tenants", str(tenant_dir), "validate")
    assert v.code == 0, v.all
    assert "CHANGE-ME placeholder" in v.out  # reported as warnings until an admin fills them in


def test_new_generates_platform_secrets_and_never_prints_them(cli: RunCli, tenant_dir: Path) -> None:
    r = cli("--tenants", str(tenant_dir), "new", "sunny-flats")
    assert r.code == 0
    [lt] = load_tenants([tenant_dir]).tenants
    t = lt.tenant
    assert t.hospitable and len(t.hospitable.webhook_secret.get_secret_value()) == 64
    assert t.whatsapp and len(t.whatsapp.verify_token.get_secret_value()) >= 32
    for secret in (t.hospitable.webhook_secret, t.whatsapp.verify_token):
        assert secret.get_secret_value() not in r.all


def test_new_refuses_to_overwrite_a_tenant(cli: RunCli, tenant_dir: Path) -> None:
    assert cli("--tenants", str(tenant_dir), "new", "sunny-flats").code == 0
    before = (tenant_dir / "sunny-flats.yaml").read_bytes()
    r = cli("--tenants", str(tenant_dir), "new", "sunny-flats")
    assert r.code == 1 and "already exists" in r.all
    assert (tenant_dir / "sunny-flats.yaml").read_bytes() == before


def test_new_refuses_a_bad_slug(cli: RunCli, tenant_dir: Path) -> None:
    r = cli("--tenants", str(tenant_dir), "new", "Sunny_Flats")
    assert r.code == 1 and "invalid slug" in r.all
    assert [p.name for p in tenant_dir.iterdir()] == [".sops.yaml"]


def test_the_scaffold_keeps_its_comments_after_an_edit(cli: RunCli, tenant_dir: Path) -> None:
    assert cli("--tenants", str(tenant_dir), "new", "sunny-flats").code == 0
    path = tenant_dir / "sunny-flats.yaml"
    yaml = YAML(typ="rt")
    doc = yaml.load(path.read_text())
    doc["display_name"] = "Sunny Flats Ltd"  # a non-secret edit, as a reviewer would make it
    buf = io.StringIO()
    yaml.dump(doc, buf)
    path.write_text(buf.getvalue())
    edited = path.read_text()
    assert "# Personal access token: Hospitable" in edited
    assert "# Meta phone-number ID" in edited
    assert "yaml-language-server: $schema=" in edited
    # The MAC covers only encrypted values, so the hand-edited file is still valid...
    v = cli("--tenants", str(tenant_dir), "validate")
    assert v.code == 0, v.all
    # ...while touching a secret's ciphertext is still caught.
    doc["hospitable"]["api_key"] = doc["hospitable"]["webhook_secret"]
    buf = io.StringIO()
    yaml.dump(doc, buf)
    path.write_text(buf.getvalue())
    v = cli("--tenants", str(tenant_dir), "validate")
    assert v.code == 1 and "modified without sops" in v.out


def test_show_masks_every_secret_with_a_fingerprint(cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(DEMO_KEY))
    r = cli("--tenants", str(EXAMPLES), "show", "acme", env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY)})
    assert r.code == 0, r.all
    assert "api_key: '(sensitive) #" in r.out
    assert "keypad_code: '(sensitive) #" in r.out
    [lt] = [t for t in load_tenants([EXAMPLES]).tenants if t.tenant.slug == "acme"]
    from tenancy.redact import secret_values

    for s in secret_values(lt.tenant):
        assert s.get_secret_value() not in r.all
    assert "https://ops.example.com/api/webhooks/wa/t/acme" in r.out


def test_show_of_an_unknown_tenant_fails_clearly(cli: RunCli) -> None:
    r = cli("--tenants", str(EXAMPLES), "show", "nobody", env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY)})
    assert r.code == 1 and "no tenant 'nobody'" in r.all


def test_list_summarises_the_examples(cli: RunCli) -> None:
    r = cli("--tenants", str(EXAMPLES), "list", env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY)})
    assert r.code == 0, r.all
    for slug in ("acme", "blue-harbor", "casa-sol"):
        assert slug in r.out


def test_new_works_with_a_relative_tenant_directory(cli: RunCli, tenant_dir: Path) -> None:
    # As an admin runs it from the repository root: `tenantctl new SLUG` with the default tenants/.
    r = cli("--tenants", "tenants", "new", "sunny-flats", cwd=tenant_dir.parent)
    assert r.code == 0, r.all
    v = cli("--tenants", "tenants", "validate", cwd=tenant_dir.parent)
    assert v.code == 0, v.all


def test_new_refuses_rules_that_would_expose_the_secrets(cli: RunCli, tmp_path: Path) -> None:
    from tenancy.sops_config import DEMO_RECIPIENT
    from tests.conftest import write_sops_config

    d = tmp_path / "tenants"
    d.mkdir()
    write_sops_config(d, DEMO_RECIPIENT)  # the public demo key, without the demo key file beside it
    r = cli("--tenants", str(d), "new", "sunny-flats")
    assert r.code == 1 and "PUBLIC demo key" in r.all
    assert not (d / "sunny-flats.yaml").exists()
    v = cli("--tenants", str(d), "validate")
    assert v.code == 1 and ".sops.yaml:3:" in v.out


def test_the_repositorys_tenants_directory_waits_for_real_recipients(cli: RunCli) -> None:
    r = cli("validate")  # the default tenants/: empty, with a placeholder where the team's keys go
    assert r.code == 1
    assert "tenants/.sops.yaml:6:" in r.out and "no valid age recipient" in r.out


def test_with_a_platform_key_a_fingerprint_survives_other_secrets_changing(cli: RunCli, tenant_dir: Path) -> None:
    assert cli("--tenants", str(tenant_dir), "new", "sunny-flats").code == 0
    env = {"TENANTCTL_FINGERPRINT_KEY": "test-platform-fingerprint-key"}

    def verify_token_fingerprint() -> str:
        r = cli("--tenants", str(tenant_dir), "show", "sunny-flats", "--format", "json", env=env)
        assert r.code == 0, r.all
        import json

        return str(json.loads(r.out)["whatsapp"]["verify_token"])

    before = verify_token_fingerprint()
    from tenancy.sops import set_value

    set_value(tenant_dir / "sunny-flats.yaml", tenant_dir / ".sops.yaml", ["nuki", "api_token"], "a-new-nuki-token")
    assert verify_token_fingerprint() == before
