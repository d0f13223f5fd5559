"""`tenantctl new` tells the admin where each WhatsApp event arrives: the tenant's URL for messages and
statuses, the app's one callback URL for template, quality and account events."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import RunCli


def test_new_prints_the_app_callback_url_and_what_arrives_where(cli: RunCli, tenant_dir: Path) -> None:
    r = cli("--tenants", str(tenant_dir), "new", "sunny-flats", env={"TENANTCTL_DOMAIN": "ops.test"})
    assert r.code == 0, r.all
    [tenant_step] = [line for line in r.out.splitlines() if "https://ops.test/api/webhooks/wa/t/sunny-flats" in line]
    assert "messages and message statuses" in tenant_step
    [app_step] = [line for line in r.out.splitlines() if re.search(r"https://ops\.test/api/webhooks/wa(?!/)", line)]
    assert "TENANTCTL_META_VERIFY_TOKEN" in app_step
    for events in ("template status/category", "phone-number quality", "account events", "business_account_id"):
        assert events in app_step
    assert "docs/whatsapp-webhooks.md" in app_step
