"""The real engine, HTTP client and Nuki provider against the sandbox: a 409 fails only its change and
revoked access is deleted first; under 35 % faults (lost answers included) apply converges in 2 runs and
every report line is true."""

from __future__ import annotations

import httpx
import pytest

from benchmarks.reconcile_faults import run_seed
from reconciler.config import limits_for, make_config
from reconciler.engine import Outcome, apply_plan, make_context, make_plan
from reconciler.http import HttpClient
from reconciler.providers.nuki import NukiProvider
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tests.reconciler.providers.helpers import LOCKS, NUKI_TOKEN, make_tenant, make_world, tenant_data

LOCK = LOCKS["p1"][0]
ANA_CODE = "567812"


class Conflict(httpx.BaseTransport):
    """The sandbox, except that creating a keypad code on LOCK answers 409 (Nuki's code conflict)."""

    def __init__(self, world: World) -> None:
        self.inner = sandbox_transport(world)
        self.order: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            self.order.append(f"{request.method} {request.url.path}")
        if request.method == "PUT" and request.url.path == f"/nuki/smartlock/{LOCK}/auth":
            return httpx.Response(409, json={"detailMessage": "Parameter 'code' conflicts"}, request=request)
        return self.inner.handle_request(request)


def test_a_conflict_fails_only_its_change_and_revoked_access_goes_first() -> None:
    world = make_world()
    nuki = NukiProvider(readback_delays=(0.0, 0.0), sleep=lambda s: None)
    data = tenant_data()
    data["nuki"] = {"api_token": NUKI_TOKEN, "webhook_secret": "whsec"}
    for lock in (lk for locks in LOCKS.values() for lk in locks):  # Tom's codes exist: he has left since
        world.nuki.add_keypad_code(NUKI_TOKEN, lock, "tc:Tom Berg", 456789)
    data["teammates"] = [{"key": "ana", "name": "Ana Diaz", "role": "cleaner", "properties": ["p1", "p2"],
                          "access": {"keypad_code": ANA_CODE}}]
    tenant = make_tenant(**data)
    config = make_config([tenant], sandbox=True, sandbox_url="http://127.0.0.1:8790", domain="ops.example.com",
                         limits=limits_for(sandbox=True))
    transport = Conflict(world)
    ctx = make_context(config)
    with HttpClient(config, transport=transport, sleep=lambda s: None) as http:
        plan = make_plan([tenant], [nuki], ctx, http, workers=1, sandbox=True)
        report = apply_plan(plan, {tenant.slug: tenant}, {"nuki": nuki}, ctx, http, workers=1,
                            write_back=lambda *a: "tenant file")
    codes = {r.change.address: r for r in report.results if r.change.kind == "keypad_code"}
    failed = [a for a, r in codes.items() if r.outcome is Outcome.FAILED]
    assert failed == [f"nuki.keypad_code[acme/{LOCK}/ana]"]
    assert "HTTP 409" in (codes[failed[0]].error or "")
    assert all(r.outcome is Outcome.APPLIED for a, r in codes.items() if a not in failed)
    deletions = [a for a, r in codes.items() if r.change.action.value == "delete"]
    assert len(deletions) == 10  # Tom's code on every lock: revoked
    assert all(op.startswith("DELETE") for op in transport.order[:10])  # before any creation
    left = {a.name for lock in world.nuki.accounts[NUKI_TOKEN].smartlocks.values() for a in lock.auths.values()}
    assert "tc:Tom Berg" not in left


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_under_35_percent_faults_apply_converges_in_two_runs_and_reports_the_truth(seed: int) -> None:
    result = run_seed(3, 0.35, seed, max_runs=2)
    assert result.runs is not None and result.runs <= 2, result
    assert result.false_lines == []
    assert result.outcomes["applied"] > 0
