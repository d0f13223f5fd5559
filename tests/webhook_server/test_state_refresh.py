"""A worker follows the provider state store: new secrets are served without a restart, newest first,
and a failing database or key keeps the last good routing."""

from __future__ import annotations

from pathlib import Path

import pyrage
import pytest
from sqlalchemy import Engine

from store import provider_state
from store.engine import make_engine
from store.migrate import upgrade
from webhook_server.routing import build_routing, with_provider_state
from webhook_server.state_refresh import StateRefresher, StateRouting

from .helpers import tenants


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(url)
    return make_engine(url)


@pytest.fixture
def key() -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.generate()


def test_state_secrets_go_first_and_the_files_stay_behind_them() -> None:
    base = build_routing(tenants())
    slug = next(s for s, t in base.tenants.items() if "hospitable" in t.providers)
    file_keys = base.tenants[slug].providers["hospitable"].keys.values
    merged = with_provider_state(base, {(slug, "hospitable"): ["new"], ("nobody", "nuki"): ["x"]})
    assert merged.tenants[slug].providers["hospitable"].keys.values == (b"new", *file_keys)
    assert merged.tenant("nobody") is None  # the state never creates a tenant
    assert base.tenants[slug].providers["hospitable"].keys.values == file_keys  # the base is untouched


def test_a_new_secret_is_served_after_the_interval_without_a_reload(db: Engine, key: pyrage.x25519.Identity) -> None:
    base = build_routing(tenants())
    slug = next(iter(base.tenants))
    clock = Clock()
    refresher = StateRefresher(base, db, [key], interval_s=2.0, clock=clock)
    routing = StateRouting(base.tenants, base.owners, base.loaded, refresher=refresher)
    had_nuki = "nuki" in (routing.tenant(slug) or base.tenants[slug]).providers

    provider_state.put(db, slug, "nuki", "nuki.webhook_secret", "s1", [str(key.to_public())], "t")
    clock.t = 0.1
    route = routing.tenant(slug)
    assert route is not None
    if had_nuki:  # within the interval the last routing stands...
        assert b"s1" not in route.providers["nuki"].keys.values
        clock.t = 2.5
        route = routing.tenant(slug)
        assert route is not None
    # ...a tenant without a Nuki route yet is checked at once (its first webhook may follow at once)
    assert route.providers["nuki"].keys.values[0] == b"s1"

    provider_state.put(db, slug, "nuki", "nuki.webhook_secret", "s2", [str(key.to_public())], "t")
    clock.t = 5.0
    route = routing.tenant(slug)
    assert route is not None and route.providers["nuki"].keys.values[:2] == (b"s2", b"s1")  # old one kept


def test_a_failing_database_or_key_keeps_the_last_routing(db: Engine, key: pyrage.x25519.Identity,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    base = build_routing(tenants())
    slug = next(iter(base.tenants))
    provider_state.put(db, slug, "nuki", "nuki.webhook_secret", "s1", [str(key.to_public())], "t")
    clock = Clock()
    refresher = StateRefresher(base, db, [key], interval_s=1.0, clock=clock)
    assert refresher.routing().tenants[slug].providers["nuki"].keys.values[0] == b"s1"

    other = pyrage.x25519.Identity.generate()  # a value this worker's key cannot open
    provider_state.put(db, slug, "nuki", "nuki.webhook_secret", "s2", [str(other.to_public())], "t")
    clock.t = 2.0
    assert refresher.routing().tenants[slug].providers["nuki"].keys.values[0] == b"s1"
    assert "provider state not read" in caplog.text and "s2" not in caplog.text

    db.dispose()
    (Path(str(db.url.database))).unlink()  # the database goes away
    clock.t = 4.0
    assert refresher.routing().tenants[slug].providers["nuki"].keys.values[0] == b"s1"


def test_a_forget_then_a_new_value_between_two_checks_is_not_missed(db: Engine,
                                                                     key: pyrage.x25519.Identity) -> None:
    base = build_routing(tenants())
    slug = next(iter(base.tenants))
    recipients = [str(key.to_public())]
    provider_state.put(db, slug, "nuki", "nuki.webhook_secret", "s1", recipients, "t")
    clock = Clock()
    refresher = StateRefresher(base, db, [key], interval_s=1.0, clock=clock)
    assert refresher.routing().tenants[slug].providers["nuki"].keys.values[0] == b"s1"

    assert provider_state.forget(db, slug, "nuki", "nuki.webhook_secret")  # rotation...
    assert not provider_state.forget(db, slug, "nuki", "nuki.webhook_secret")
    assert provider_state.list_entries(db) == []
    provider_state.put(db, slug, "nuki", "nuki.webhook_secret", "s2", recipients, "t")  # ...and the new one
    clock.t = 2.0
    assert refresher.routing().tenants[slug].providers["nuki"].keys.values[:2] == (b"s2", b"s1")


class CountingRefresher(StateRefresher):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reads = 0

    def _refresh(self) -> None:
        self.reads += 1
        super()._refresh()


def test_only_a_request_for_a_state_issued_provider_looks_for_a_missing_route_early(
        db: Engine, key: pyrage.x25519.Identity) -> None:
    base = build_routing(tenants())
    slug = next(s for s, t in base.tenants.items() if "hospitable" in t.providers and "nuki" not in t.providers)
    clock = Clock()
    refresher = CountingRefresher(base, db, [key], interval_s=60.0, clock=clock)
    routing = StateRouting(base.tenants, base.owners, base.loaded, refresher=refresher)
    routing.tenant(slug, "hospitable")
    reads = refresher.reads
    for t in (1.0, 2.0, 3.0):  # each past MISS_GAP_S, within the interval
        clock.t = t
        assert routing.tenant(slug, "hospitable") is not None
    assert refresher.reads == reads  # a Hospitable webhook never waits for the state store

    provider_state.put(db, slug, "nuki", "nuki.webhook_secret", "s1", [str(key.to_public())], "t")
    clock.t = 4.0
    route = routing.tenant(slug, "nuki")  # the tenant's first Nuki webhook: checked at once
    assert route is not None and route.providers["nuki"].keys.values[0] == b"s1"
    assert refresher.reads == reads + 1


def test_without_provider_state_the_routing_is_used_as_it_is() -> None:
    base = build_routing([])
    assert with_provider_state(base, {}) is base
