"""The registry names every provider explicitly; unknown names are refused."""

from __future__ import annotations

import pytest

from reconciler.providers.registry import PROVIDERS, get_providers
from tests.reconciler.providers.helpers import make_tenant


def test_every_provider_is_registered_under_its_own_name() -> None:
    assert {"whatsapp", "nuki", "hospitable", "beds24"} <= set(PROVIDERS)
    assert all(name == p.name for name, p in PROVIDERS.items())


def test_get_providers_picks_by_name_and_refuses_unknown_ones() -> None:
    assert [p.name for p in get_providers(["nuki", "whatsapp"])] == ["whatsapp", "nuki"]
    assert get_providers() == list(PROVIDERS.values())
    with pytest.raises(KeyError, match="smtpx"):
        get_providers(["smtpx"])


def test_providers_apply_to_tenants_with_their_section() -> None:
    tenant = make_tenant(whatsapp=None)
    assert {p.name for p in get_providers() if p.applies_to(tenant)} >= {"nuki", "hospitable"}
    assert not PROVIDERS["whatsapp"].applies_to(tenant)
