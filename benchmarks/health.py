"""Health benchmark: `run_health` for N generated tenants (benchmarks/reconcile.py's) against the in-process
sandbox with added latency per call; the webhook log is not read (no inbound rows).

    .venv/bin/python -m benchmarks.health --tenants 1000 --latency-ms 20

Reports wall time, rows, calls per tenant and the rows' statuses.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from benchmarks.reconcile import SANDBOX_URL, tenant
from reconciler.config import limits_for, make_config
from reconciler.engine import make_context
from reconciler.health import run_health
from reconciler.http import HttpClient
from reconciler.providers.registry import get_providers
from sandbox.seed import seed_world
from sandbox.transport import sandbox_transport


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()
    tenants = [tenant(i) for i in range(args.tenants)]
    world = seed_world(tenants, domain="ops.example.com", drift=False)
    config = make_config(tenants, sandbox=True, sandbox_url=SANDBOX_URL, domain="ops.example.com",
                         limits=limits_for(sandbox=True))
    transport = sandbox_transport(world, latency_s=args.latency_ms / 1000)
    providers = [p for p in get_providers(None) if p.name != "smtp"]
    with HttpClient(config, transport=transport) as http:
        world.calls.clear()
        started = time.monotonic()
        rows = run_health(tenants, providers, make_context(config), http, workers=config.limits.tenant_workers,
                          timeout_s=60)
        wall = time.monotonic() - started
    calls = len(world.calls.to_dict().get("calls", []))
    print(f"{args.tenants} tenants, {args.latency_ms:g} ms per call, {config.limits.tenant_workers} tenant workers: "
          f"{wall:.1f} s wall, {len(rows)} rows, {calls / args.tenants:.1f} calls per tenant, "
          f"statuses {dict(Counter(r.health.value for r in rows))}")


if __name__ == "__main__":
    main()
