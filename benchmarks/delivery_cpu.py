"""CPU per delivered event, of the worker and of the fake platform, draining one backlog.

    .venv/bin/python benchmarks/delivery_cpu.py [--seconds 6] [--database sqlite|postgres] [--concurrency 64]
        [--profile FILE]

The real server takes wrk's signed Hospitable events for ``--seconds`` (as in benchmarks/delivery.py) and is
stopped; then `tenantctl deliver --until-idle` delivers the backlog to `tenantctl sandbox platform` (answering
in 5 ms) with nothing else running. Reported: events, wall time, the worker's CPU (its rusage) and the
platform's (from /proc) per event, in milliseconds. The worker's start-up (imports, settings, the database
check) is measured apart, by a first `deliver --until-idle` on the empty queue, and taken out of its figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import webhooks as wh  # noqa: E402

import delivery as dl  # noqa: E402  # the delivery benchmark's process helpers

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children still running (gunicorn-style trees)."""
    pids = [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def run_worker(env: dict[str, str], log_path: Path, concurrency: int, profile: Path | None = None) -> float:
    """`tenantctl deliver --until-idle` to the end; its CPU seconds. Exits if it failed or left events.
    ``profile``: a py-spy recording of the worker (raw folded stacks, all threads, idle left out) to that file."""
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "tenantctl", "deliver", "--until-idle", "--concurrency",
                                   str(concurrency)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        spy = None if profile is None else subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(worker.pid), "--format", "raw",
             "--output", str(profile), "--threads", "--nonblocking", "--rate", "250"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(worker.pid, 0)
        if spy is not None:
            spy.wait(timeout=30)
    if (left := dl.undelivered(env["DATABASE_URL"])) or status != 0:
        raise SystemExit(f"the worker exited {status} with {left} event(s) undelivered; see {log_path}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=6, help="how long wrk fills the backlog")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--profile", type=Path, help="record the draining worker with py-spy to this file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tenantctl-delivery-cpu-"))
    tenants, script = wh.bench_files(work)
    cleanup = contextlib.ExitStack()  # closed in the finally below: the throw-away schema is dropped
    db_url = cleanup.enter_context(wh.bench_database(args.database, work))
    port, platform_port = wh.free_port(), wh.free_port()
    platform = f"http://127.0.0.1:{platform_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTCTL_", "PROMETHEUS_"))}
    env.update({"SOPS_AGE_KEY_FILE": str(ROOT / "examples" / "demo.agekey"), "TENANTCTL_TENANTS": str(tenants),
                "TENANTCTL_ACCESS_LOG": "off", "TENANTCTL_STATE_DIR": str(work / "state"), "DATABASE_URL": db_url,
                "TENANTCTL_BIND": f"127.0.0.1:{port}", "TENANTCTL_DELIVERY_SECRETS": dl.SECRET,
                "TENANTCTL_DELIVERY_URL_HOSPITABLE": f"{platform}/platform/hospitable",
                "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP": "true"})
    sandbox = dl.spawn([*wh.PLATFORM, "--port", str(platform_port)], env, work / "platform.log")
    try:
        dl.wait_http(f"{platform}/_sandbox/healthz", sandbox, work / "platform.log")
        admin = {"Authorization": f"Bearer {(work / 'state' / 'platform-admin-token').read_text().strip()}"}
        httpx.put(f"{platform}/_platform/mode", json={"delay_s": 0.005}, headers=admin, timeout=5).raise_for_status()
        startup_s = run_worker(env, work / "startup.log", args.concurrency)
        server = dl.spawn(["serve"], env, work / "server.log")
        try:
            dl.wait_http(f"http://127.0.0.1:{port}/readyz", server, work / "server.log")
            requests = work / "requests.txt"
            wh.write_requests(requests, "cpu", 150_000)
            wh.wrk(f"http://127.0.0.1:{port}", script, requests, duration=args.seconds, connections=64, threads=2)
        finally:
            dl.stop(server)
        backlog = dl.undelivered(db_url)
        platform_before, started = cpu_s(sandbox.pid), time.monotonic()
        worker_cpu = run_worker(env, work / "deliver.log", args.concurrency, args.profile) - startup_s
        wall = time.monotonic() - started
        platform_cpu = cpu_s(sandbox.pid) - platform_before
        print(f"{args.database}: {backlog} events delivered in {wall:.1f} s ({backlog / wall:.0f}/s); CPU per event: "
              f"worker {worker_cpu / backlog * 1000:.3f} ms (its start-up, {startup_s:.2f} s, taken out), "
              f"platform {platform_cpu / backlog * 1000:.3f} ms")
    finally:
        dl.stop(sandbox)
        cleanup.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
