"""The Integrations page with a big webhook log on PostgreSQL: response times of /admin/ pages.

    .venv/bin/python -m benchmarks.admin_page --rows 1000000 --tenants 1000

Fills a private schema (dropped at the end) with generated log rows over 30 days (1 in 10 rejected,
bad-signature), then times each page through the Falcon app (median of 5, after one warm-up).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from datetime import UTC, datetime

import falcon.testing
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from store import health as store_health
from store import migrate
from store.engine import make_engine
from tenancy.settings import Settings
from webhook_server.app import create_app
from webhook_server.routing import build_routing
from webhook_server.storage import EngineLogReader

URL = os.environ.get("TENANTCTL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TOKEN = "bench-admin-token-000000"


class _NoStore:
    def record(self, rec: object) -> object:
        raise RuntimeError("read-only benchmark")

    def close(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=1000)
    args = ap.parse_args()
    schema = f"tenantctl_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{URL}?options=-csearch_path%3D{schema}"
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        started = time.monotonic()
        with engine.begin() as conn:
            conn.execute(text("""
                INSERT INTO webhook_log (received_at, tenant, provider, outcome, status_code, reason, event_id,
                                         body_size, latency_ms)
                SELECT now() - (g * interval '30 days' / :rows),
                       't' || lpad((g % :tenants)::text, 5, '0'),
                       (ARRAY['hospitable', 'whatsapp', 'nuki', 'beds24'])[1 + g % 4],
                       CASE WHEN g % 10 = 0 THEN 'rejected' ELSE 'accepted' END,
                       CASE WHEN g % 10 = 0 THEN 401 ELSE 200 END,
                       CASE WHEN g % 10 = 0 THEN 'bad-signature' END,
                       CASE WHEN g % 10 = 0 THEN NULL ELSE 'evt-' || g END, 100, 1.5
                FROM generate_series(1, :rows) AS g"""), {"rows": args.rows, "tenants": args.tenants})
            conn.execute(text("ANALYZE webhook_log"))
        now = datetime.now(UTC)
        store_health.record_run(engine, [
            store_health.HealthResult(f"t{i:05d}", p, f"{p}.token[t{i:05d}]", "healthy", None, "ok", "", 1.0, now,
                                      "active")
            for i in range(args.tenants) for p in ("hospitable", "whatsapp", "nuki", "beds24")])
        print(f"filled {args.rows} log rows and {args.tenants * 4} health rows in "
              f"{time.monotonic() - started:.1f} s")
        settings = Settings(_env_file=None, admin_token=SecretStr(TOKEN))  # type: ignore[call-arg]
        app = create_app(build_routing([]), _NoStore(), settings, reader=EngineLogReader(engine))  # type: ignore[arg-type]
        client = falcon.testing.TestClient(app)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        pages = {
            "/admin/logs": "",
            "/admin/logs (tenant+rejected)": "tenant=t00042&outcome=rejected",
            "/admin/logs (reason prefix)": "reason=bad-sig",
            "/admin/logs (page 20)": None,
            "/admin/tenants/t00042": "",
            "/admin/ (all tenants)": "",
        }
        cursor = None
        for _ in range(19):
            r = client.simulate_get("/admin/logs", query_string=f"cursor={cursor}" if cursor else "", headers=auth)
            cursor = r.text.split("cursor=")[-1].split('"')[0]
        pages["/admin/logs (page 20)"] = f"cursor={cursor}"
        for label, qs in pages.items():
            path = label.split(" ")[0]
            times = []
            for _ in range(6):
                t = time.monotonic()
                r = client.simulate_get(path, query_string=qs or "", headers=auth)
                times.append((time.monotonic() - t) * 1000)
                assert r.status_code == 200, (label, r.status_code)
            print(f"{label:35s} median {statistics.median(times[1:]):7.1f} ms  (max {max(times[1:]):.1f} ms)")
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
