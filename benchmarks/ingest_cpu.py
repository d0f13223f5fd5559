"""CPU time per accepted webhook of the server processes at peak load, for A/B comparisons of the request
path on a shared machine (less noisy than requests/s, though a loaded machine still inflates it).

    .venv/bin/python benchmarks/ingest_cpu.py [--database sqlite|postgres|both] [--seconds 6]
        [--connections 64] [--repeat 3] [--bare] [--profile DIR] [--access-log] [--root DIR]

The real server (gunicorn with webhook_server/gunicorn.conf.py, settings from the environment, access log
off unless --access-log), no delivery worker. wrk sends distinct signed Hospitable events (as
benchmarks/webhooks.py builds them) over --connections connections, closed loop, for --seconds.
Measured: utime + stime (/proc/<pid>/stat, all threads) of the gunicorn master and its workers across
the run, divided by the accepted rows the run added. ``--bare`` measures the bare Falcon app of
webhooks.py the same way (divided by 2xx answers). ``--profile DIR`` records each worker with py-spy (raw
folded stacks, DIR/<db>-<pid>.txt) during the last repetition. ``--root DIR`` serves another checkout's
code (`git archive <commit> | tar -x -C DIR`), so before and after can be run in alternation.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import webhooks as wh  # noqa: E402

from store.migrate import upgrade  # noqa: E402

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")

def cpu_us(pid: int, system: bool = False) -> float:
    """utime + stime (or stime alone) of one process (all its threads), in microseconds; 0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[12]) + (0 if system else int(fields[11]))) * TICK_US


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def accepted(db_url: str | None) -> int:
    if db_url is None:
        return 0
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM webhook_log WHERE outcome = 'accepted'")).scalar_one())
    finally:
        engine.dispose()


def drive(url: str, script: Path, requests: Path, seconds: int, connections: int, threads: int) -> wh.Run:
    return wh.wrk(url, script, requests, duration=seconds, connections=connections, threads=threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--postgres", default=wh.DEFAULT_PG)
    ap.add_argument("--seconds", type=int, default=6, help="per run (wrk is timed, not counted)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bare", action="store_true", help="also measure the bare Falcon app of webhooks.py")
    ap.add_argument("--profile", type=Path, help="py-spy each worker during the last repetition, into DIR")
    ap.add_argument("--access-log", action="store_true", help="the access log on (to stdout, discarded)")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="serve the code of another checkout (e.g. an exported older commit), for A/B runs")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tenantctl-cpu-"))
    tenants, script = wh.bench_files(work)
    access = "-" if args.access_log else "off"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTCTL_", "PROMETHEUS_"))}
    env.update({"SOPS_AGE_KEY_FILE": str(ROOT / "examples" / "demo.agekey"), "TENANTCTL_TENANTS": str(tenants),
                "TENANTCTL_ACCESS_LOG": access, "PYTHONPATH": str(args.root),
                "TENANTCTL_STATE_DIR": str(work / "state")})
    for key in ("TENANTCTL_WORKER_CLASS", "TENANTCTL_WORKERS", "TENANTCTL_WORKER_CONNECTIONS", "TENANTCTL_THREADS"):
        if key in os.environ:
            env[key] = os.environ[key]
    pg_admin = create_engine(args.postgres) if args.database in ("postgres", "both") else None
    schema = f"cpu_{uuid.uuid4().hex[:8]}"
    targets: list[tuple[str, str | None]] = [("bare", None)] if args.bare else []
    if args.database in ("sqlite", "both"):
        targets.append(("sqlite", f"sqlite:///{work}/state/tenantctl.db"))
    if pg_admin is not None:
        with pg_admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        targets.append(("postgres", wh.with_schema(args.postgres, schema)))
    try:
        for name, db_url in targets:
            measure(name, db_url, work, env, script, args)
    finally:
        if pg_admin is not None:
            with pg_admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            pg_admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


def measure(name: str, db_url: str | None, work: Path, env: dict[str, str], script: Path,
            args: argparse.Namespace) -> None:
    port = wh.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**env, "TENANTCTL_BIND": f"127.0.0.1:{port}"}
    if db_url is None:
        from webhook_server.server_config import ServerConfig

        server = ServerConfig.from_env(env)
        cmd = [sys.executable, "-m", "gunicorn", *server.gunicorn_args(), "--pythonpath", str(ROOT / "benchmarks"),
               "webhooks:bare_app()"]
    else:
        (work / "state").mkdir(exist_ok=True)
        env["DATABASE_URL"] = db_url
        upgrade(db_url)
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(args.root / "webhook_server" / "gunicorn.conf.py"),
               "webhook_server.app:get_app()"]
    wh.ROOT = args.root  # the server's working directory: its code comes first on sys.path
    proc = wh.start(cmd, env, url, work / f"{name}.log")
    per_request: list[float] = []
    try:
        warm = work / f"{name}-warm.txt"
        wh.write_requests(warm, f"{name}-warm", 20_000)
        drive(url, script, warm, 1, args.connections, args.wrk_threads)
        for rep in range(args.repeat):
            reqs = work / f"{name}-{rep}.txt"
            wh.write_requests(reqs, f"{name}-{rep}", 20_000 * args.seconds)
            pids = [proc.pid, *children(proc.pid)]
            spies = []
            if args.profile is not None and rep == args.repeat - 1:
                args.profile.mkdir(parents=True, exist_ok=True)
                for pid in pids[1:]:
                    spies.append(subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", "-f", "raw", "-r", "200",
                         "--nonblocking", "-o", str(args.profile / f"{name}-{pid}.txt"), "--pid", str(pid)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                time.sleep(1.0)
            sys0 = sum(cpu_us(p, system=True) for p in pids)
            rows0, cpu0, t0 = accepted(db_url), sum(cpu_us(p) for p in pids), time.monotonic()
            r = drive(url, script, reqs, args.seconds, args.connections, args.wrk_threads)
            cpu1, t1 = sum(cpu_us(p) for p in pids), time.monotonic()
            sys1 = sum(cpu_us(p, system=True) for p in pids)
            for spy in spies:
                spy.send_signal(2)
            for spy in spies:
                spy.wait(30)
            time.sleep(0.2)
            done = accepted(db_url) - rows0 if db_url is not None else r.requests - r.non2xx
            us = (cpu1 - cpu0) / max(done, 1)
            per_request.append(us)
            print(f"  {name:8} rep {rep + 1}: {done} accepted of {r.requests} sent "
                  f"(non-2xx {r.non2xx}, errors {r.errors}) in {t1 - t0:.2f} s = {done / (t1 - t0):.0f}/s; "
                  f"server CPU {(cpu1 - cpu0) / 1e6:.2f} s = {us:.0f} us per request "
                  f"({(sys1 - sys0) / max(done, 1):.0f} of them in the kernel)", flush=True)
    finally:
        wh.stop(proc)
    print(f"{name}: median {statistics.median(per_request):.0f} us CPU per accepted request "
          f"({len(per_request)} runs of {args.seconds} s, {args.connections} connections)", flush=True)


if __name__ == "__main__":
    main()
