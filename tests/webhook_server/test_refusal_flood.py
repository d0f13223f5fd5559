"""A flood of refused requests is counted in full but writes a bounded number of rows, while every
accepted event of the same time is stored: through the real server and `tenantctl webhooks stats`."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import RunCli

from .helpers import tenant_dicts
from .server_harness import accepted_events, hosp, make_tenants_dir, start_server

SAMPLE = 5
WORKERS = 2
REFUSED = 400
ACCEPTED = 40


def test_a_refusal_flood_keeps_the_table_bounded_and_loses_no_accepted_event(tmp_path: Path,
                                                                             cli: RunCli) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]),
                          TENANTCTL_REFUSAL_ROWS_PER_MINUTE=str(SAMPLE), TENANTCTL_ACCESS_LOG="off")
    try:
        with httpx.Client(base_url=server.url, timeout=20) as c, ThreadPoolExecutor(8) as pool:
            def bad(i: int) -> int:  # a wrong signature: 401
                return hosp(c, f"forged-{i}", secret="not-the-secret").status_code

            def unknown(i: int) -> int:  # a made-up tenant slug each time: still one kind of refusal
                return c.post(f"/api/webhooks/hospitable/t/nobody-{i}", content=b"{}").status_code

            refused = list(pool.map(bad, range(REFUSED // 2))) + list(pool.map(unknown, range(REFUSED // 2)))
            accepted = list(pool.map(lambda i: hosp(c, f"real-{i}").status_code, range(ACCEPTED)))
        assert refused == [401] * (REFUSED // 2) + [404] * (REFUSED // 2)
        assert accepted == [200] * ACCEPTED
    finally:
        server.stop()  # the workers write their folded counts on the way out

    assert sorted(accepted_events(server)) == sorted(f"real-{i}" for i in range(ACCEPTED))
    with sqlite3.connect(server.state / "tenantctl.db") as conn:
        rows, represented = conn.execute(
            "SELECT count(*), sum(1 + repeats) FROM webhook_log WHERE outcome = 'rejected'").fetchone()
    assert represented == REFUSED  # every refusal is counted
    # (sample rows + one folded row) per kind, worker and minute; two kinds, a minute boundary at most.
    assert rows <= 2 * WORKERS * (SAMPLE + 1) * 2, rows

    env = {"TENANTCTL_STATE_DIR": str(server.state), "TENANTCTL_TENANTS": str(server.tenants)}
    out = cli("webhooks", "stats", "--format", "json", env=env)
    assert out.code == 0, out.all
    counted = {(s["tenant"], s["provider"]): s for s in json.loads(out.out)}
    assert counted[("acme", "hospitable")]["rejected"] == REFUSED // 2
    assert counted[(None, "hospitable")]["rejected"] == REFUSED // 2
    assert counted[("acme", "hospitable")]["accepted"] == ACCEPTED
