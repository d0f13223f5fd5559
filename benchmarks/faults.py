"""Fault suite: the real webhook server under load while its dependencies and processes fail.

    .venv/bin/python benchmarks/faults.py [--only NAME ...] [--rate 40] [--seconds 12]   (or: make faults)

Each scenario starts `tenantctl serve` (2 gevent workers) on a free 127.0.0.1 port, sends signed
Hospitable events with distinct ids from 4 keep-alive clients at about --rate requests/s in total, injects
its fault, and afterwards compares every answer with the database:

  pg-refused          PostgreSQL behind our TCP proxy refuses connections (and resets open ones), then heals
  pg-hung-healed      the proxy stops forwarding (a partition: no reset, no FIN), then heals
  pg-hung-forever     the proxy stops forwarding until the end
  kill-9-worker       SIGKILL of one gunicorn worker (SQLite)
  sighup              two SIGHUP reloads under load (SQLite)
  sigterm             SIGTERM under load: a graceful stop (SQLite)
  sqlite-disk-full    the SQLite database on a small tmpfs that fills up, then space is freed (needs root
                      and mount; skipped with a message otherwise)

Columns: events sent; answers 200, 503 and other (another status, or no answer: reset, refused, timeout);
ack-no-row: answered 200 but no row (must be 0); dup: an event id with more than one accepted row (must be
0); recover: seconds from the fault's end (or start, for a kill) to the first 200 after which no 503 or
error followed ("-" when the fault never ends). Loopback only, bounded: about 2 minutes in all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import webhooks as wh  # noqa: E402  # bench_database

from tests.webhook_server.helpers import tenant_dicts  # noqa: E402
from tests.webhook_server.server_harness import Server, hosp, make_tenants_dir, start_server  # noqa: E402
from tests.webhook_server.tcp_proxy import TcpProxy  # noqa: E402

DEFAULT_PG = os.environ.get("TENANTCTL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CLIENTS = 4


@dataclass
class Answer:
    event: str
    at: float
    status: int | str


@dataclass
class Load:
    """CLIENTS threads posting distinct events at RATE requests/s in total until stopped."""

    server: Server
    rate: float
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(CLIENTS):
            t = threading.Thread(target=self._client, args=(n,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(40)

    def _client(self, n: int) -> None:
        pause = CLIENTS / self.rate
        with httpx.Client(base_url=self.server.url, timeout=15) as c:
            i = 0
            while not self._stop.is_set():
                event = f"f{n}-{i}-{uuid.uuid4().hex[:6]}"
                started = time.monotonic()
                try:
                    status: int | str = hosp(c, event).status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                self.answers.append(Answer(event, time.monotonic(), status))
                i += 1
                self._stop.wait(max(0.0, pause - (time.monotonic() - started)))


@dataclass
class Result:
    name: str
    sent: int = 0
    ok: int = 0
    unavailable: int = 0
    other: int = 0
    ack_no_row: int = 0
    dup: int = 0
    recover_s: float | None = None
    note: str = ""

    def line(self) -> str:
        rec = "-" if self.recover_s is None else f"{self.recover_s:.1f}s"
        return (f"{self.name:<18} {self.sent:>6} {self.ok:>6} {self.unavailable:>6} {self.other:>6} "
                f"{self.ack_no_row:>10} {self.dup:>4} {rec:>8}  {self.note}")


HEADER = (f"{'scenario':<18} {'sent':>6} {'200':>6} {'503':>6} {'other':>6} {'ack-no-row':>10} {'dup':>4} "
          f"{'recover':>8}  note")


def _accepted(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text(
                "SELECT event_id FROM webhook_log WHERE outcome = 'accepted' AND event_id IS NOT NULL"))]
    finally:
        engine.dispose()


def _judge(name: str, load: Load, db_url: str, healed_at: float | None, note: str = "") -> Result:
    answers = sorted(load.answers, key=lambda a: a.at)
    r = Result(name, sent=len(answers), note=note)
    r.ok = sum(a.status == 200 for a in answers)
    r.unavailable = sum(a.status == 503 for a in answers)
    r.other = r.sent - r.ok - r.unavailable
    stored = _accepted(db_url)
    seen = set(stored)
    r.ack_no_row = sum(1 for a in answers if a.status == 200 and a.event not in seen)
    r.dup = len(stored) - len(seen)
    if healed_at is not None:
        bad = [a.at for a in answers if a.status != 200]
        last_bad = max(bad) if bad else healed_at
        first_good = next((a.at for a in answers if a.status == 200 and a.at > max(last_bad, healed_at)), None)
        if first_good is not None:
            r.recover_s = max(0.0, first_good - healed_at)
    return r


def _run(name: str, work: Path, rate: float, seconds: float, server_env: dict[str, str], db_url: str | None,
         fault: Callable[[Server], float | None], note: str = "", *, migrate: bool = True) -> Result:
    root = work / name
    root.mkdir()
    server = start_server(root, make_tenants_dir(root, tenant_dicts()[:1]), migrate=migrate,
                          env={"TENANTCTL_ACCESS_LOG": "off", **server_env})
    load = Load(server, rate)
    try:
        load.start()
        started = time.monotonic()
        time.sleep(2)
        healed_at = fault(server)
        time.sleep(max(3.0, seconds - (time.monotonic() - started)))
    finally:
        load.stop()
        server.stop()
    return _judge(name, load, db_url or f"sqlite:///{server.state / 'tenantctl.db'}", healed_at, note)


def pg_scenario(name: str, mode: str, work: Path, rate: float, seconds: float, pg: str) -> Result:
    with wh.bench_database("postgres", work, pg) as url:  # a throw-away schema, dropped afterwards
        parsed = make_url(url)
        proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        proxied = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)

        def fault(_: Server) -> float | None:
            proxy.refuse() if mode == "refused" else proxy.hang()
            if mode == "forever":
                return None
            time.sleep(8)  # longer than the commit deadline (5 s)
            proxy.heal()
            return time.monotonic()

        try:
            return _run(name, work, rate, seconds, {"TENANTCTL_DATABASE_URL": proxied}, url, fault,
                        migrate=False)
        finally:
            proxy.close()


def _workers(master: int) -> list[int]:
    """The gunicorn master's worker processes (procps `pgrep -P`)."""
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in out.split()]


def kill_worker(server: Server) -> float | None:
    os.kill(_workers(server.proc.pid)[0], signal.SIGKILL)
    return time.monotonic()


def sighup(server: Server) -> float | None:
    server.hup()
    time.sleep(2)
    server.hup()
    return time.monotonic()


def sigterm(server: Server) -> float | None:
    server.proc.send_signal(signal.SIGTERM)
    return None


def disk_full(work: Path, rate: float, seconds: float) -> Result:
    name = "sqlite-disk-full"
    mount = work / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return Result(name, note="skipped: needs root and mount(8) for a small tmpfs")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True,
                       capture_output=True)
    except (subprocess.CalledProcessError, OSError) as e:
        return Result(name, note=f"skipped: cannot mount a tmpfs here ({type(e).__name__})")
    try:
        filler = mount / "filler"

        def fault(server: Server) -> float | None:
            # Fill every free byte; a disk already full refuses even the filler's creation (seen once in CI):
            # the fault is then in effect all the same.
            with contextlib.suppress(OSError), filler.open("wb") as f:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            time.sleep(4)
            filler.unlink(missing_ok=True)
            return time.monotonic()

        # The scenario's directory, so the server's state and SQLite database, is on the small filesystem.
        return _run(name, mount, rate, seconds, {}, None, fault, note="8 MB tmpfs")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    p.add_argument("--rate", type=float, default=40.0, help="requests per second in total (default 40)")
    p.add_argument("--seconds", type=float, default=12.0, help="length of each scenario (default 12)")
    p.add_argument("--postgres", default=DEFAULT_PG, help="PostgreSQL URL (a throw-away schema is used)")
    args = p.parse_args()
    os.environ.setdefault("SOPS_AGE_KEY_FILE", str(ROOT / "examples" / "demo.agekey"))
    rate, secs = args.rate, args.seconds
    scenarios: dict[str, Callable[[Path], Result]] = {
        "pg-refused": lambda w: pg_scenario("pg-refused", "refused", w, rate, secs, args.postgres),
        "pg-hung-healed": lambda w: pg_scenario("pg-hung-healed", "hang", w, rate, secs, args.postgres),
        "pg-hung-forever": lambda w: pg_scenario("pg-hung-forever", "forever", w, rate, secs, args.postgres),
        "kill-9-worker": lambda w: _run("kill-9-worker", w, rate, secs, {}, None, kill_worker),
        "sighup": lambda w: _run("sighup", w, rate, secs, {}, None, sighup),
        "sigterm": lambda w: _run("sigterm", w, rate, secs, {}, None, sigterm, "no recovery: a stop"),
        "sqlite-disk-full": lambda w: disk_full(w, rate, secs),
    }
    chosen = args.only or list(scenarios)
    print(HEADER)
    failed = False
    with tempfile.TemporaryDirectory(prefix="tenantctl-faults-") as tmp:
        for name in chosen:
            result = scenarios[name](Path(tmp))
            print(result.line(), flush=True)
            failed = failed or result.ack_no_row > 0 or result.dup > 0
    if failed:
        print("FAILED: an acknowledged event has no row, or an event was stored twice")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
