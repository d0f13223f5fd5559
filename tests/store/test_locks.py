"""Per-tenant locks: one holder at a time, visible, breakable, and expiring."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert

from store.engine import begin_write
from store.errors import LockHeld
from store.locks import acquire, advisory_key, default_holder, list_locks, release, tenant_lock
from store.schema import tenant_locks
from tests.store.helpers import T0


def test_a_second_acquire_names_the_holder_and_since_when(engine: Engine) -> None:
    first = acquire(engine, "acme", "ana@laptop pid 1")
    with pytest.raises(LockHeld) as info:
        acquire(engine, "acme", "bob@ci pid 2")
    if engine.dialect.name == "sqlite":
        assert info.value.holder == "ana@laptop pid 1"
        assert info.value.acquired_at == first.acquired_at
        assert "ana@laptop pid 1" in str(info.value)
    else:  # PostgreSQL: refused by the live advisory lock, the row tells who
        assert info.value.holder in ("ana@laptop pid 1", None)
    release(engine, "acme", "ana@laptop pid 1")


def test_release_frees_the_tenant_and_other_tenants_are_independent(engine: Engine) -> None:
    acquire(engine, "acme", "ana")
    acquire(engine, "beta", "bob")
    assert [(lk.tenant, lk.holder) for lk in list_locks(engine)] == [("acme", "ana"), ("beta", "bob")]
    assert release(engine, "acme", "ana") is True
    acquire(engine, "acme", "carl")
    assert [(lk.tenant, lk.holder) for lk in list_locks(engine)] == [("acme", "carl"), ("beta", "bob")]
    release(engine, "acme", "carl")
    release(engine, "beta", "bob")
    assert list_locks(engine) == []


def test_releasing_someone_elses_lock_needs_force(engine: Engine) -> None:
    acquire(engine, "acme", "ana")
    assert release(engine, "acme", "mallory") is False
    assert [lk.holder for lk in list_locks(engine)] == ["ana"]
    assert release(engine, "acme") is True  # holder=None: `tenantctl lock release`
    assert list_locks(engine) == []
    if engine.dialect.name == "postgresql":
        # ana's session still holds the advisory lock until ana's process lets go.
        with pytest.raises(LockHeld):
            acquire(engine, "acme", "bob")
        assert release(engine, "acme", "ana") is False  # the row was already gone
    acquire(engine, "acme", "bob")
    release(engine, "acme", "bob")


def test_an_expired_lock_can_be_taken(engine: Engine) -> None:
    # A crashed holder's row (no live session), expired an hour ago.
    with begin_write(engine) as conn:
        conn.execute(
            insert(tenant_locks).values(
                tenant="acme", holder="gone pid 9", acquired_at=T0, expires_at=T0 + timedelta(hours=1)
            )
        )
    lock = acquire(engine, "acme", "ana", ttl=timedelta(minutes=5), now=T0 + timedelta(hours=2))
    assert lock.expires_at == T0 + timedelta(hours=2, minutes=5)
    assert [lk.holder for lk in list_locks(engine)] == ["ana"]
    release(engine, "acme", "ana")


def test_a_crashed_holders_unexpired_row(engine: Engine) -> None:
    with begin_write(engine) as conn:
        conn.execute(insert(tenant_locks).values(tenant="acme", holder="gone pid 9", acquired_at=T0))
    if engine.dialect.name == "sqlite":  # nothing can tell it crashed: blocks until forced
        with pytest.raises(LockHeld, match="gone pid 9"):
            acquire(engine, "acme", "ana")
        release(engine, "acme")
    acquire(engine, "acme", "ana")  # PostgreSQL: no live session holds it, so it is stale
    release(engine, "acme", "ana")


def test_the_context_manager_releases_even_on_error(engine: Engine) -> None:
    with pytest.raises(RuntimeError), tenant_lock(engine, "acme", "ana") as lock:
        assert lock.holder == "ana"
        assert [lk.tenant for lk in list_locks(engine)] == ["acme"]
        raise RuntimeError("apply failed")
    assert list_locks(engine) == []
    with tenant_lock(engine, "acme", "bob"):
        pass


def test_a_lock_with_a_run(engine: Engine) -> None:
    from store.runs import start_run

    run_id = start_run(engine, "apply", "ana", ["acme"])
    with tenant_lock(engine, "acme", "ana", run_id=run_id):
        assert [lk.run_id for lk in list_locks(engine)] == [run_id]


@pytest.mark.postgres
def test_postgres_force_release_cannot_break_a_live_session(pg_migrated_url: str) -> None:
    from store.engine import make_engine

    engine = make_engine(pg_migrated_url)
    other_process = make_engine(pg_migrated_url)
    try:
        acquire(other_process, "acme", "ana")
        # Someone forces the row away while ana's apply still runs: the tenant stays locked.
        assert release(engine, "acme") is True
        with pytest.raises(LockHeld, match="advisory lock"):
            acquire(engine, "acme", "bob")
        release(other_process, "acme", "ana")  # ana's process ends its session
        acquire(engine, "acme", "bob")
        release(engine, "acme", "bob")
    finally:
        other_process.dispose()
        engine.dispose()


@pytest.mark.parametrize("tenant", ["acme", "beta", "a-very-long-tenant-slug-0123456789"])
def test_advisory_keys_are_stable_signed_64_bit_and_per_schema(tenant: str) -> None:
    key = advisory_key(tenant, "public")
    assert key == advisory_key(tenant, "public")
    assert key != advisory_key(tenant, "other_install")
    assert -(2**63) <= key < 2**63


def test_default_holder_names_user_host_and_pid() -> None:
    import os

    assert default_holder().endswith(f" pid {os.getpid()}")
    assert "@" in default_holder()
