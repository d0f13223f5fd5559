"""Delivery throughput and lag, and what the worker costs the ingest, in one run on one machine.

    .venv/bin/python benchmarks/delivery.py [--duration 6] [--connections 64] [--database sqlite|postgres]

The real server (as in benchmarks/webhooks.py: gunicorn settings from the environment, wrk over loopback,
every request a distinct signed Hospitable event), the fake platform (`tenantctl sandbox platform`) answering every
delivery in 5 ms, and one `tenantctl deliver` worker, all on the same database:
  1. ingest peak without the worker (closed loop);
  2. the worker starts (the backlog of step 1 is its work) and the ingest peak is measured again;
  3. once the ingest of step 2 stops: delivery throughput = the events left / the time to deliver them
     (also shown: the whole backlog over the time from the worker's start, step 2 included);
  4. ingest at half the peak of step 1 with the worker running; lag = receipt to the platform's 2xx
     (delivered_at - received_at of those events), p50 and p99.
Targets (issue 12): throughput >= the ingest peak; lag p99 < 1 s; the worker costs < 10 % of the peak.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import webhooks as wh  # noqa: E402  # the server benchmark's wrk driver, requests and helpers

SECRET = "whsec_YmVuY2gtZGVsaXZlcnktc2VjcmV0LTAxMjM0NTY3"  # a benchmark's throw-away key


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"exited {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer; see {log}")
        time.sleep(0.1)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tenantctl", *args], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def undelivered(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM webhook_log WHERE delivery_state IN ('pending', 'retrying')")).scalar_one())
    finally:
        engine.dispose()


def lags(db_url: str, prefix: str) -> list[float]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT received_at, delivered_at FROM webhook_log WHERE event_id LIKE :p "
                "AND delivery_state = 'delivered'"), {"p": f"{prefix}-%"}).all()
    finally:
        engine.dispose()
    from datetime import datetime

    def t(v: object) -> datetime:
        return v if isinstance(v, datetime) else datetime.fromisoformat(str(v))

    return sorted((t(d) - t(r)).total_seconds() for r, d in rows)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--postgres", default=wh.DEFAULT_PG)
    ap.add_argument("--platform-ms", type=float, default=5.0, help="the fake platform's answer time")
    ap.add_argument("--nice", type=int, default=None,
                    help="the worker's TENANTCTL_DELIVERY_NICE (default: the setting's default, 10)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="tenantctl-delivery-bench-"))
    tenants, script = wh.bench_files(work)

    cleanup = contextlib.ExitStack()  # closed in the finally below: the throw-away schema is dropped
    db_url = cleanup.enter_context(wh.bench_database(args.database, work, args.postgres))

    port, platform_port, metrics_port = wh.free_port(), wh.free_port(), wh.free_port()
    url, platform = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{platform_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTCTL_", "PROMETHEUS_"))}
    env.update({"SOPS_AGE_KEY_FILE": str(ROOT / "examples" / "demo.agekey"), "TENANTCTL_TENANTS": str(tenants),
                "TENANTCTL_ACCESS_LOG": "off", "TENANTCTL_STATE_DIR": str(work / "state"), "DATABASE_URL": db_url,
                "TENANTCTL_BIND": f"127.0.0.1:{port}", "TENANTCTL_DELIVERY_SECRETS": SECRET,
                "TENANTCTL_DELIVERY_URL_HOSPITABLE": f"{platform}/platform/hospitable",
                "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP": "true"})
    if args.nice is not None:
        env["TENANTCTL_DELIVERY_NICE"] = str(args.nice)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sandbox = spawn([*wh.PLATFORM, "--port", str(platform_port)], env,
                        work / "sandbox.log")
        procs.append(sandbox)
        wh.stand_for_another_machine(sandbox.pid)
        wait_http(f"{platform}/_sandbox/healthz", sandbox, work / "sandbox.log")
        admin = {"Authorization": f"Bearer {(work / 'state' / 'platform-admin-token').read_text().strip()}"}
        httpx.put(f"{platform}/_platform/mode", json={"delay_s": args.platform_ms / 1000}, headers=admin,
                  timeout=5).raise_for_status()
        server = spawn(["serve"], env, work / "server.log")
        procs.append(server)
        wait_http(f"{url}/readyz", server, work / "server.log")

        files = {}
        for name, count in (("peak-alone", 150_000), ("peak-worker", 150_000), ("half", 80_000)):
            files[name] = work / f"{name}.txt"
            wh.write_requests(files[name], name, count)

        def drive(name: str, delay_ms: float = 0) -> wh.Run:
            return wh.wrk(url, script, files[name], duration=args.duration, connections=args.connections,
                          threads=args.wrk_threads, delay_ms=delay_ms)

        alone = drive("peak-alone")
        print(f"ingest peak without the worker: {alone.rps:7.0f} req/s (p99 {alone.p99_ms:.1f} ms)", flush=True)
        worker = spawn(["deliver", "--metrics-port", str(metrics_port)], env, work / "deliver.log")
        procs.append(worker)
        wait_http(f"http://127.0.0.1:{metrics_port}/metrics", worker, work / "deliver.log")
        backlog = undelivered(db_url)
        started = time.monotonic()
        with_worker = drive("peak-worker")
        print(f"ingest peak with the worker:    {with_worker.rps:7.0f} req/s (p99 {with_worker.p99_ms:.1f} ms)",
              flush=True)
        backlog += with_worker.requests - with_worker.non2xx
        # The drain proper starts when the ingest stops: during step 2 the worker yields the CPU to the server
        # (TENANTCTL_DELIVERY_NICE), and counting those seconds would measure the server, not the worker.
        rest, rest_started = undelivered(db_url), time.monotonic()
        while (left := undelivered(db_url)) > 0:
            if time.monotonic() - started > 600:
                raise SystemExit(f"backlog not delivered within 10 minutes ({left} left)")
            time.sleep(0.2)
        drained = time.monotonic() - started
        throughput = rest / max(time.monotonic() - rest_started, 1e-9)
        print(f"delivery: {backlog} events in {drained:.1f} s from the worker's start ({backlog / drained:.0f}/s); "
              f"the {rest} left when the ingest stopped at {throughput:.0f} events/s", flush=True)
        half = drive("half", delay_ms=args.connections / (alone.rps / 2) * 1000)
        time.sleep(2)
        while undelivered(db_url) > 0:
            time.sleep(0.2)
        lag = lags(db_url, "half")
        print(f"half-peak ingest ({half.rps:.0f} req/s, p99 {half.p99_ms:.1f} ms) with delivery: lag p50 "
              f"{pct(lag, 50) * 1000:.0f} ms, p99 {pct(lag, 99) * 1000:.0f} ms over {len(lag)} events", flush=True)
        cost = 1 - with_worker.rps / alone.rps
        print(f"\n{args.database}: throughput {throughput:.0f}/s vs ingest peak {alone.rps:.0f}/s "
              f"({'ok' if throughput >= alone.rps else 'BELOW TARGET'}); lag p99 {pct(lag, 99):.2f} s "
              f"({'ok' if pct(lag, 99) < 1 else 'BELOW TARGET'}); worker cost {cost:.0%} of the peak "
              f"({'ok' if cost < 0.10 else 'BELOW TARGET'}); median lag {statistics.median(lag):.3f} s")
    finally:
        for proc in reversed(procs):
            stop(proc)
        cleanup.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
