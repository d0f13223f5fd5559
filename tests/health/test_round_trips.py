"""`--active` round trips leave nothing behind: a temporary Nuki maintenance code is issued, listed and
deleted (and cleaned up when a step fails); an SMTP test mail reaches the sandbox's server."""

from __future__ import annotations

import json
from typing import Any

import httpx

from reconciler.errors import TemporaryError
from reconciler.providers.nuki import ROUND_TRIP_NAME, NukiProvider
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tests.health.conftest import Rehearsal, row
from tests.reconciler.conftest import SimpleHttp
from tests.reconciler.providers.helpers import LOCKS, SLUG, make_ctx, make_tenant, make_world

LOCK = LOCKS["p1"][0]


def _codes_named(world: World, lock: int, name: str) -> list[Any]:
    on_lock = [a for acct in world.nuki.accounts.values() if lock in acct.smartlocks
               for a in acct.smartlocks[lock].auths.values()]
    pending = [op for op in world.nuki.pending if op.auth is not None and op.auth.name == name]
    return [a for a in on_lock if a.name == name] + pending


class _FailFirstDelete(SimpleHttp):
    """The sandbox, except that the first DELETE of an auth fails like a 503 (a step failing mid-way)."""

    def __init__(self, world: World) -> None:
        super().__init__(sandbox_transport(world))
        self.failed = False

    def request(self, provider: str, method: str, url: str, **kw: Any) -> httpx.Response:
        if method == "DELETE" and "/auth/" in url and not self.failed:
            self.failed = True
            raise TemporaryError(provider, "DELETE failed", status=503)
        return super().request(provider, method, url, **kw)


def test_a_maintenance_code_is_issued_listed_and_deleted() -> None:
    world = make_world()
    provider = NukiProvider(readback_delays=(0.0,) * 4)
    [check] = provider.round_trip(make_tenant(), make_ctx(), SimpleHttp(sandbox_transport(world)))
    assert (check.name, check.health.value) == (f"nuki.maintenance_code[{SLUG}/{LOCK}]", "healthy")
    assert "issued in" in check.detail and "listed after" in check.detail and "deleted after" in check.detail
    assert _codes_named(world, LOCK, ROUND_TRIP_NAME) == []


def test_a_failed_delete_still_leaves_nothing_behind_and_says_so() -> None:
    world = make_world()
    http = _FailFirstDelete(world)
    [check] = NukiProvider(readback_delays=(0.0,) * 4).round_trip(make_tenant(), make_ctx(), http)
    assert http.failed
    assert check.health.value == "unknown" and check.detail.startswith("the delete step failed")
    assert check.detail.endswith("clean-up: nothing left on the lock")
    assert _codes_named(world, LOCK, ROUND_TRIP_NAME) == []


def test_active_runs_the_round_trips_through_the_cli(rehearsal: Rehearsal) -> None:
    _, doc = rehearsal.health_json("-t", "acme", "-p", "nuki", "-p", "smtp", "--active",
                                      "--mail-to", "ops@example.org")
    nuki = row(doc, "nuki.maintenance_code[acme/17010001]")
    assert nuki["health"] == "healthy" and "deleted after" in nuki["detail"]
    mail = row(doc, "smtp.test_mail[acme]")
    assert mail["health"] == "healthy" and "sent to ops@example.org" in mail["detail"]
    world = rehearsal.world()
    assert [(m.recipients, m.subject) for m in world.smtp.mailbox] == [
        (["ops@example.org"], "tenantctl health: test mail for acme")]
    assert _codes_named(world, 17010001, ROUND_TRIP_NAME) == []
    assert "maintenance" not in json.dumps([r for r in doc["rows"] if r["health"] != "healthy"])
