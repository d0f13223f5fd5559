"""Reconciler fault runs: apply against the in-process sandbox under injected faults until it converges.

    .venv/bin/python -m benchmarks.reconcile_faults               # 10 % and 35 %, seeds 1-5, 12 tenants
    .venv/bin/python -m benchmarks.reconcile_faults --rates 0.35 --seeds 3 --tenants 4

Each tenant (WhatsApp + Nuki + Hospitable, 5 properties x 2 locks, one teammate) starts from an account
where nothing tenantctl manages is set up yet, plus a former teammate's code to revoke: every run has
creates (keypad codes, the Nuki webhook whose secret is written back, WhatsApp subscriptions) and
deletions. Faults: every kind the sandbox injects (429, 500, timeout, reset, lost-response: the write
happens, its answer is lost), on every provider, drawn afresh for each run.

After each apply, a fault-free plan is the truth: every report line is checked against it.
- applied / confirmed: the address has nothing left to do;
- failed / not applied / not attempted: the address is still to do;
- unknown and unobserved make no claim (they say so), so they cannot be false.
A seed converges at run N when the fault-free plan after run N has no writes and no errors.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from benchmarks.reconcile import tenant as make_tenant
from benchmarks.reconcile import unconfigured
from reconciler.config import Limits, limits_for, make_config
from reconciler.engine import DONE, ApplyReport, Outcome, apply_plan, make_context, make_plan
from reconciler.http import HttpClient
from reconciler.plan import Plan
from reconciler.providers.nuki import NukiProvider
from reconciler.providers.registry import get_providers
from sandbox.faults import KINDS, FaultConfig
from sandbox.seed import seed_world
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tenancy.model import Tenant

SANDBOX_URL = "http://127.0.0.1:8790"
DOMAIN = "ops.example.com"
FORMER = "tc:Former teammate"
UNDONE = frozenset({Outcome.FAILED, Outcome.NOT_APPLIED, Outcome.NOT_ATTEMPTED})


@dataclass(frozen=True)
class SeedResult:
    rate: float
    seed: int
    runs: int | None  # runs needed to converge; None: not within max_runs
    lines: int  # report lines checked
    false_lines: list[str]
    outcomes: dict[str, int]
    seconds: float


def _world(tenants: Sequence[Tenant]) -> World:
    world = unconfigured(seed_world(tenants, domain=DOMAIN, drift=False))
    for t in tenants:  # a former teammate's code on the first lock: access to revoke
        assert t.nuki is not None
        lock = t.properties[0].nuki_lock_ids[0]
        world.nuki.add_keypad_code(t.nuki.api_token.get_secret_value(), lock, FORMER, 987654)
    return world


def _with_secret(t: Tenant, value: str) -> Tenant:
    assert t.nuki is not None
    return t.model_copy(update={"nuki": t.nuki.model_copy(update={"webhook_secret": SecretStr(value)})})


def _plan(tenants: Sequence[Tenant], world: World, faults: FaultConfig | None, limits: Limits) -> tuple[
        Plan, HttpClient, Any]:
    config = make_config(tenants, sandbox=True, sandbox_url=SANDBOX_URL, domain=DOMAIN, limits=limits)
    http = HttpClient(config, transport=sandbox_transport(world, faults=faults), sleep=lambda s: None)
    providers = [NukiProvider(sleep=lambda s: None) if p.name == "nuki" else p for p in get_providers()]
    ctx = make_context(config)
    plan = make_plan(tenants, providers, ctx, http, workers=config.limits.tenant_workers, sandbox=True)
    return plan, http, (providers, ctx, config)


def false_lines(report: ApplyReport, truth: Plan) -> list[str]:
    """The report lines the fault-free plan made after it contradicts."""
    still = {c.address for c in truth.writes}
    unseen = {(i.tenant, i.provider) for i in truth.errors}
    out = []
    for r in report.results:
        if (r.change.tenant, r.change.provider) in unseen or r.outcome is Outcome.UNKNOWN:
            continue
        if r.outcome in DONE and r.change.address in still:
            out.append(f"{r.change.address}: reported {r.outcome.value}, still to do")
        if r.outcome in UNDONE and r.change.address not in still:
            out.append(f"{r.change.address}: reported {r.outcome.value}, but nothing is left to do")
    return out


def run_seed(n_tenants: int, rate: float, seed: int, *, max_runs: int = 5) -> SeedResult:
    tenants = [make_tenant(i) for i in range(n_tenants)]
    world = _world(tenants)
    limits = limits_for(sandbox=True)
    started = time.perf_counter()
    lines, wrong = 0, []
    outcomes: dict[str, int] = {}
    for attempt in range(1, max_runs + 1):
        faults = FaultConfig(rate=rate, kinds=KINDS, retry_after_s=0, seed=seed * 1000 + attempt)
        plan, http, (providers, ctx, config) = _plan(tenants, world, faults, limits)
        secrets: dict[str, str] = {}

        def keep(slug: str, path: tuple[str | int, ...], value: str, into: dict[str, str] = secrets) -> str:
            return into.setdefault(slug, value) and f"{path} of {slug}"

        with http:
            report = apply_plan(plan, {t.slug: t for t in tenants}, {p.name: p for p in providers}, ctx, http,
                                workers=config.limits.tenant_workers, write_back=keep)
        tenants = [_with_secret(t, secrets[t.slug]) if t.slug in secrets else t for t in tenants]
        for k, v in report.counts().items():
            outcomes[k] = outcomes.get(k, 0) + v
        truth, check, _ = _plan(tenants, world, None, limits)
        check.close()
        lines += len(report.results)
        wrong += false_lines(report, truth)
        if not truth.writes and not truth.errors:
            return SeedResult(rate, seed, attempt, lines, wrong, outcomes, time.perf_counter() - started)
    return SeedResult(rate, seed, None, lines, wrong, outcomes, time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", type=float, nargs="+", default=[0.10, 0.35])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--tenants", type=int, default=12)
    args = ap.parse_args()
    print(f"{args.tenants} tenants per seed; faults: {', '.join(sorted(KINDS))} on every provider")
    print(f"{'rate':>5} {'seed':>4} {'runs':>5} {'lines':>6} {'false':>6}  outcomes (all runs)")
    for rate in args.rates:
        for seed in range(1, args.seeds + 1):
            r = run_seed(args.tenants, rate, seed)
            shown = {k: v for k, v in r.outcomes.items() if v}
            print(f"{rate:>5.0%} {seed:>4} {r.runs or '>5':>5} {r.lines:>6} {len(r.false_lines):>6}  {shown} "
                  f"({r.seconds:.1f} s)")
            for line in r.false_lines:
                print(f"      false: {line}")


if __name__ == "__main__":
    main()
