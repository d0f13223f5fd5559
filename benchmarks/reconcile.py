"""Reconcile benchmark: N generated tenants against the in-process sandbox with added latency per call.

    .venv/bin/python -m benchmarks.reconcile --tenants 1000 --latency-ms 20

Each tenant: WhatsApp (WABA + number), Nuki (5 properties x 2 locks, one teammate with a keypad code on
all 10), Hospitable (5 properties); in memory, no SOPS. Reports the calls per tenant for a no-op plan and
for a first apply (plan + apply from accounts where nothing is configured yet), and wall time against the
lower bound calls x latency / allowed concurrency (allowed concurrency = min(tenant workers, the sum of
the per-provider limits), since one tenant's calls run one after another).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from reconciler.config import limits_for, make_config
from reconciler.engine import apply_plan, make_context, make_plan
from reconciler.http import HttpClient
from reconciler.providers.registry import get_providers
from sandbox.seed import seed_world
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tenancy.model import Tenant

SANDBOX_URL = "http://127.0.0.1:8790"


def keypad(i: int) -> str:
    digits = []
    n = i
    for _ in range(6):
        digits.append(str(n % 9 + 1))
        n //= 9
    code = "".join(reversed(digits))
    return "3" + code[1:] if code.startswith("12") else code


def tenant(i: int) -> Tenant:
    slug = f"t{i:05d}"
    props: list[dict[str, Any]] = [
        {"key": f"p{j}", "name": f"Property {j}", "hospitable_property_id": f"{i:08x}-0000-4000-8000-{j:012x}",
         "nuki_lock_ids": [30_000_000 + i * 10 + j * 2, 30_000_000 + i * 10 + j * 2 + 1]}
        for j in range(5)
    ]
    return Tenant.model_validate({
        "slug": slug, "display_name": f"Tenant {i}", "status": "active",
        "hospitable": {"api_key": f"hosp-key-{slug}", "webhook_secret": f"hosp-hook-{slug}"},
        "whatsapp": {"phone_number_id": str(100_000_000_000_000 + i),
                     "business_account_id": str(200_000_000_000_000 + i),
                     "verify_token": f"verify-{slug}", "access_token": f"meta-token-{slug}"},
        "nuki": {"api_token": f"nuki-token-{slug}", "webhook_secret": f"nuki-hook-{slug}"},
        "properties": props,
        "teammates": [{"key": "clean", "name": "Cleaner", "role": "cleaner", "properties": [p["key"] for p in props],
                       "access": {"keypad_code": keypad(i)}}],
    })


def unconfigured(world: World) -> World:
    """The accounts exist, nothing tenantctl manages is set up yet."""
    for waba in world.meta.wabas.values():
        waba.subscriptions.clear()
    for account in world.nuki.accounts.values():
        account.webhooks.clear()
        for lock in account.smartlocks.values():
            lock.auths.clear()
    return world


def run(tenants: list[Tenant], world: World, latency: float, *, apply: bool) -> dict[str, Any]:
    config = make_config(tenants, sandbox=True, sandbox_url=SANDBOX_URL, domain="ops.example.com",
                         limits=limits_for(sandbox=True))
    providers = get_providers()
    ctx = make_context(config)
    world.nuki.apply_after_reads = 0  # writes visible at the first read-back (no provider back-off sleeps)
    with HttpClient(config, transport=sandbox_transport(world, latency_s=latency)) as http:
        t0 = time.perf_counter()
        plan = make_plan(tenants, providers, ctx, http, workers=config.limits.tenant_workers, sandbox=True)
        plan_s = time.perf_counter() - t0
        plan_calls = sum(http.calls.values())
        out: dict[str, Any] = {"plan_s": plan_s, "plan_calls": plan_calls, "writes": len(plan.writes),
                               "errors": len(plan.errors)}
        if apply:
            t1 = time.perf_counter()
            report = apply_plan(plan, {t.slug: t for t in tenants}, {p.name: p for p in providers}, ctx, http,
                                workers=config.limits.tenant_workers, write_back=lambda s, p, v: f"{s}:{p}")
            out["apply_s"] = time.perf_counter() - t1
            out["apply_calls"] = sum(http.calls.values()) - plan_calls
            out["report"] = report.counts()
        out["by_provider"] = dict(http.calls)
        out["retries"] = sum(http.retries.values())
    limits = config.limits
    concurrency = min(limits.tenant_workers,
                      sum(limits.for_provider(p.name).concurrency for p in providers))
    out["concurrency"] = concurrency
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()
    n, latency = args.tenants, args.latency_ms / 1000
    tenants = [tenant(i) for i in range(n)]

    noop = run(tenants, seed_world(tenants, domain="ops.example.com", drift=False), latency, apply=False)
    assert noop["writes"] == 0 and noop["errors"] == 0, noop
    bound = noop["plan_calls"] * latency / noop["concurrency"]
    print(f"no-op plan, {n} tenants: {noop['plan_calls']} calls ({noop['plan_calls'] / n:.1f}/tenant: "
          f"{ {k: v / n for k, v in noop['by_provider'].items()} }), {noop['plan_s']:.2f} s; lower bound "
          f"{bound:.2f} s (calls x {args.latency_ms:g} ms / {noop['concurrency']}): "
          f"{noop['plan_s'] / bound:.2f}x the bound")

    first = run(tenants, unconfigured(seed_world(tenants, domain="ops.example.com", drift=False)), latency,
                apply=True)
    total = first["plan_calls"] + first["apply_calls"]
    fbound = total * latency / first["concurrency"]
    print(f"first apply, {n} tenants: plan {first['plan_calls'] / n:.1f} + apply {first['apply_calls'] / n:.1f} "
          f"calls/tenant ({first['writes'] / n:.1f} writes/tenant), {first['plan_s'] + first['apply_s']:.2f} s; "
          f"lower bound {fbound:.2f} s: {(first['plan_s'] + first['apply_s']) / fbound:.2f}x; "
          f"report {first['report']}; retries {first['retries']}")
    calls = Counter(first["by_provider"])
    print(f"first apply calls by provider (plan+apply, per tenant): { {k: v / n for k, v in calls.items()} }")


if __name__ == "__main__":
    main()
