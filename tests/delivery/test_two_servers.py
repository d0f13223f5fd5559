"""Two `serve` instances on one PostgreSQL: the same events posted to both at once are accepted once each,
and the worker delivers each of them once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from store.schema import webhook_log
from tests.webhook_server.helpers import SECRETS, dumps, sign_hex, tenant_dicts
from tests.webhook_server.server_harness import make_tenants_dir, start_server

from .harness import Stack, wait_until


@pytest.mark.postgres
def test_two_servers_on_one_postgresql_keep_de_duplication_exact(pg_stack: Stack, tmp_path: Path) -> None:
    stack = pg_stack
    tenants = make_tenants_dir(tmp_path, tenant_dicts())
    servers = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        servers.append(start_server(tmp_path / name, tenants, migrate=False, DATABASE_URL=stack.database_url))
    try:
        bodies = [dumps({"id": f"evt-{i}", "action": "reservation.created", "data": {}}) for i in range(40)]
        secret = SECRETS["acme"]["hospitable"]

        def post(job: tuple[int, bytes]) -> int:
            n, body = job
            url = servers[n % 2].url
            return httpx.post(f"{url}/api/webhooks/hospitable/t/acme", content=body, timeout=10,
                              headers={"Signature": sign_hex(secret, body)}).status_code

        jobs = [(n, body) for body in bodies for n in range(4)]  # each event 4 times, 2 per server
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, jobs)) == {200}
        c = webhook_log.c
        with stack.engine.connect() as conn:
            counts = dict(conn.execute(select(c.outcome, func.count()).group_by(c.outcome)).all())
        assert counts == {"accepted": 40, "duplicate": 120}

        worker = stack.deliver()
        wait_until(lambda: len(stack.platform.delivered_ids()) == 40, 30, worker.logs)
        received = stack.platform.received()
        assert len(received) == 40 and sorted(r["event_id"] for r in received) == sorted(f"evt-{i}" for i in range(40))
    finally:
        for s in servers:
            s.stop()
