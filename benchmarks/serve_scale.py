"""Benchmark: `tenantctl serve` with N encrypted tenants: start time and SIGHUP reload time.

    .venv/bin/python benchmarks/serve_scale.py [--sizes 1000,10000] [--repeat 1] [--workers 2]

The tenants are those of benchmarks/reload_tenants.py (5 properties, 2 locks, 2 teammates, 10 secrets
each; generated once under .state/bench/reload-N). For each N, on a fresh SQLite database:
  start:  from spawning `tenantctl serve` until GET /readyz answers 200 (the master has loaded and
          validated every tenant, a worker has forked and answers);
  reload: one new tenant file is written, the master gets SIGHUP, and the time runs until the new
          tenant's webhook URL routes (an unsigned POST gets 401 instead of 404): the master reloaded
          (only the changed file is decrypted and validated) and a new worker serves the new routing.
Targets (issue 12): start < 10 s and reload < 2 s for 10,000 tenants.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyrage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import reload_tenants as rt  # noqa: E402  # the tenant generator

from store.migrate import upgrade  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: object, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> float:
    """Poll CHECK (a callable returning bool) every 20 ms; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if check():  # type: ignore[operator]
                return time.monotonic()
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out; see {log}")
        time.sleep(0.02)


def cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every live process in the group PGID, plus the children they reaped:
    a figure the other jobs on a shared machine disturb much less than the wall-clock time."""
    ticks = 0
    for stat in Path("/proc/").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ...; utime is field 14
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(d: Path, n: int, key_file: Path, encrypted_template: str, workers: int, work: Path,
            round_no: int) -> tuple[float, float, float, float]:
    state = work / f"state-{n}-{round_no}"
    state.mkdir()
    db_url = f"sqlite:///{state / 'tenantctl.db'}"
    upgrade(db_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTCTL_", "PROMETHEUS_"))}
    env.update({"SOPS_AGE_KEY_FILE": str(key_file), "TENANTCTL_TENANTS": str(d), "DATABASE_URL": db_url,
                "TENANTCTL_STATE_DIR": str(state), "TENANTCTL_ACCESS_LOG": "off",
                "TENANTCTL_BIND": f"127.0.0.1:{port}", "TENANTCTL_WORKERS": str(workers)})
    log = state / "server.log"
    new_slug = f"t{n:05d}"
    new_file = d / f"{new_slug}.yaml"
    new_file.unlink(missing_ok=True)
    with log.open("ab") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "serve"], env=env, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    # One client for every poll: httpx.get builds a client, SSL context and all, each time (40 ms of CPU here),
    # and polling with it every 20 ms took most of a core from the server it was timing.
    poll = httpx.Client(timeout=2, trust_env=False)
    try:
        ready = wait_for(lambda: poll.get(f"{base}/readyz").status_code == 200, proc, log)
        start = ready - t0
        start_cpu = cpu_seconds(proc.pid)
        url = f"{base}/api/webhooks/hospitable/t/{new_slug}"
        assert poll.post(url, content=b"{}").status_code == 404
        new_file.write_text(rt.tenant_text(encrypted_template, n))
        t1 = time.monotonic()
        os.kill(proc.pid, signal.SIGHUP)
        routed = wait_for(lambda: poll.post(url, content=b"{}").status_code == 401, proc, log)
        reload = routed - t1
        reload_cpu = cpu_seconds(proc.pid) - start_cpu
    finally:
        poll.close()
        stop(proc)
        new_file.unlink(missing_ok=True)
    return start, reload, start_cpu, reload_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    key_file = REPO / ".state" / "bench" / "bench.agekey"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        key_file.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    key = pyrage.x25519.Identity.from_str(key_file.read_text().strip())
    os.environ["SOPS_AGE_KEY_FILE"] = str(key_file)
    print(f"cpus={os.cpu_count()}  load average {os.getloadavg()[0]:.2f}  workers={args.workers}  "
          f"best of {args.repeat}")
    print(f"{'N':>6} {'start until /readyz':>20} {'HUP until new tenant routes':>28}   "
          "CPU of the server's processes: start / reload")
    with tempfile.TemporaryDirectory(prefix="tenantctl-serve-scale-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            d = rt.generate(n, key)
            template = rt.encrypted_template(d)
            runs = [measure(d, n, key_file, template, args.workers, Path(tmp), r) for r in range(args.repeat)]
            start, reload, start_cpu, reload_cpu = (min(col) for col in zip(*runs, strict=True))
            print(f"{n:>6} {start:>18.2f} s {reload:>26.2f} s   CPU {start_cpu:.2f} s / {reload_cpu:.2f} s  "
                  f"(all: {', '.join(f'{r[0]:.2f}/{r[1]:.2f}' for r in runs)}; load {os.getloadavg()[0]:.2f})",
                  flush=True)


if __name__ == "__main__":
    main()
