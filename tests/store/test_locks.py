"""Per-tenant locks: one holder at a time, visible, breakable, and expiring."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from store.engine import begin_write, make_engine
from store.errors import LockHeld
from store.locks import (
    acquire,
    advisory_key,
    default_holder,
    list_locks,
    lock_state,
    reap_stale,
    release,
    tenant_lock,
)
from store.runs import get_run
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


HOLD = """
import sys, time
from store.engine import make_engine
from store import locks, runs
e = make_engine(sys.argv[1])
run_id = runs.start_run(e, "apply", "ana@laptop", ["acme"])
locks.acquire(e, "acme", "ana@laptop pid dying", run_id=run_id)
print(run_id, flush=True)
time.sleep(120)
"""


def _killed_holder(url: str) -> int:
    """A real process that takes acme's lock inside a running apply, then is killed -9; its run id."""
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}) as proc:
        assert proc.stdout is not None
        run_id = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    return run_id


def test_a_killed_holders_lock_is_stale_and_taken_over_naming_it(db_url: str) -> None:
    run_id = _killed_holder(db_url)
    engine = make_engine(db_url)
    try:
        for _ in range(50):  # PostgreSQL ends the killed session as soon as it sees the socket close
            [row] = list_locks(engine)
            if lock_state(engine, row) == "stale":
                break
            time.sleep(0.1)
        assert (row.holder, row.run_id, lock_state(engine, row)) == ("ana@laptop pid dying", run_id, "stale")
        assert [lk.tenant for lk in reap_stale(engine)] == ["acme"]  # anyone looking marks the run
        run = get_run(engine, run_id)
        assert run is not None and run.status == "aborted"
        got = acquire(engine, "acme", "bob@ci pid 2")
        assert got.took_over == "ana@laptop pid dying"
        [mine] = list_locks(engine)
        assert lock_state(engine, mine) == "live" and mine.holder == "bob@ci pid 2"
        release(engine, "acme", "bob@ci pid 2")
    finally:
        engine.dispose()


def test_a_live_holder_on_this_host_is_never_taken_over(engine: Engine) -> None:
    acquire(engine, "acme", "ana@laptop pid 1")  # this very process: alive
    with pytest.raises(LockHeld):
        acquire(engine, "acme", "bob@ci pid 2")
    [row] = list_locks(engine)
    assert lock_state(engine, row) == "live"
    release(engine, "acme", "ana@laptop pid 1")
