"""Every webhook example of Meta's WhatsApp spec: accepted when signed and addressed to the right tenant
(its phone_number_id rewritten to the tenant's), refused when addressed to another tenant."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
import yaml

from .helpers import ACME_PHONE, BLUE_PHONE, FakeStore, dumps, sign_meta

SPEC = Path("/work/shared/reference/meta-whatsapp-business-messaging-api_v23.0.yaml")
if not SPEC.is_file():  # the spec ships beside the project in the workspace
    SPEC = Path(__file__).resolve().parents[2] / "reference" / SPEC.name


@cache
def _examples() -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    content = spec["paths"]["/whatsapp/webhooks"]["post"]["requestBody"]["content"]
    found: dict[str, dict[str, Any]] = {}
    for media in content.values():
        for name, example in (media.get("examples") or {}).items():
            found[name] = example["value"]
    return found


def _readdress(payload: dict[str, Any], phone: str) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    for entry in out["entry"]:
        for change in entry["changes"]:
            change["value"]["metadata"]["phone_number_id"] = phone
    return out


NAMES = sorted(_examples()) if SPEC.is_file() else []


def test_the_spec_has_its_examples() -> None:
    assert len(NAMES) >= 16


@pytest.mark.parametrize("name", NAMES)
def test_example_is_accepted_for_its_tenant(client: falcon.testing.TestClient, store: FakeStore,
                                            name: str) -> None:
    body = dumps(_readdress(_examples()[name], ACME_PHONE))
    r = client.simulate_post("/api/webhooks/wa/t/acme", body=body,
                             headers={"X-Hub-Signature-256": sign_meta(body)})
    assert r.status_code == 200
    assert (store.last.outcome, store.last.tenant) == ("accepted", "acme")
    assert store.last.event_id and not store.last.event_id.startswith("sha256:")  # a real provider ID


@pytest.mark.parametrize("name", NAMES)
def test_example_addressed_to_another_tenant_is_refused(client: falcon.testing.TestClient, store: FakeStore,
                                                        name: str) -> None:
    body = dumps(_readdress(_examples()[name], BLUE_PHONE))
    r = client.simulate_post("/api/webhooks/wa/t/acme", body=body,
                             headers={"X-Hub-Signature-256": sign_meta(body)})
    assert r.status_code == 403
    assert (store.last.outcome, store.last.reason) == ("rejected", "cross-tenant:blue-harbor")
