"""A reload rebuilds the routes of the tenants that changed only; the others keep theirs."""

from __future__ import annotations

from pydantic import SecretStr

from webhook_server.routing import build_routing

from .helpers import app_secrets, tenants


def test_a_reload_with_the_same_tenant_objects_keeps_their_routes() -> None:
    acme, blue = tenants()[:2]
    first = build_routing([acme, blue], app_secrets())
    changed_blue = blue.model_copy(update={"display_name": "Blue (renamed)"})
    second = build_routing([acme, changed_blue], app_secrets())
    assert second.tenants[acme.slug] is first.tenants[acme.slug]
    assert second.tenants[blue.slug] is not first.tenants[blue.slug]
    assert set(second.tenants[blue.slug].providers) == set(first.tenants[blue.slug].providers)


def test_new_meta_app_secrets_rebuild_every_route() -> None:
    acme = tenants()[0]
    first = build_routing([acme], app_secrets())
    rotated = [SecretStr("a-brand-new-app-secret")]
    second = build_routing([acme], rotated)
    assert second.tenants[acme.slug] is not first.tenants[acme.slug]
    assert second.tenants[acme.slug].providers["whatsapp"].keys.values == (b"a-brand-new-app-secret",)
