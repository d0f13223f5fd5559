"""`tenantctl deliver --until-idle` tells by its exit code whether the queue was delivered, and a refused
plain-http destination names the setting that allows it. Through the CLI in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, update

from store.migrate import upgrade
from store.schema import webhook_log
from tests.conftest import RunCli, in_tenantctls_imports

from .harness import SECRET, accepted, free_port, insert


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    (tmp_path / "no-tenant-files").mkdir(exist_ok=True)  # an empty tenants directory: the platform's destinations
    return {"TENANTCTL_DELIVERY_SECRETS": SECRET, "TENANTCTL_TENANTS": str(tmp_path / "no-tenant-files"),
            "TENANTCTL_DELIVERY_URL_HOSPITABLE": url, "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP": "true",
            "TENANTCTL_DELIVERY_TIMEOUT_S": "1", "TENANTCTL_DELIVERY_POLL_S": "0.05"}


def _worker_env(tmp_path: Path) -> dict[str, str]:
    """A subprocess worker's environment: a migrated SQLite database and an empty queue."""
    url = f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}"
    (tmp_path / "state").mkdir()
    upgrade(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
    env.update(_env(tmp_path, f"http://127.0.0.1:{free_port()}/hooks"), DATABASE_URL=url)
    return env


def _two_events_for_nobody(tmp_path: Path) -> str:
    """Two accepted events queued; returns a destination where nothing listens: every attempt fails."""
    url = f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}"
    (tmp_path / "state").mkdir()
    upgrade(url)
    engine = create_engine(url)
    insert(engine, accepted(2))
    engine.dispose()
    return f"http://127.0.0.1:{free_port()}/hooks"


def test_until_idle_exits_1_when_its_attempts_failed(tmp_path: Path, cli: RunCli) -> None:
    out = cli("deliver", "--until-idle", env=_env(tmp_path, _two_events_for_nobody(tmp_path)))
    assert out.code == 1, out.all
    assert "2 delivery attempt(s) failed; 2 wait for a retry (see" in out.err


def test_until_idle_says_which_failed_events_were_dead_lettered(tmp_path: Path, cli: RunCli) -> None:
    nobody = _two_events_for_nobody(tmp_path)
    out = cli("deliver", "--until-idle", env={**_env(tmp_path, nobody), "TENANTCTL_DELIVERY_MAX_ATTEMPTS": "1"})
    assert out.code == 1, out.all
    assert ("2 delivery attempt(s) failed; 2 event(s) dead-lettered (`tenantctl webhooks replay --dead` queues "
            "them again)") in " ".join(out.err.split())
    assert "wait for a retry" not in out.err


def test_until_idle_does_not_call_a_queue_drained_while_a_dead_workers_claims_hold_events(
        tmp_path: Path, cli: RunCli) -> None:
    """A worker killed mid-batch leaves its claims to their lease: nothing is due, yet nothing of them is delivered
    either. A script draining with `--until-idle` read exit 0 as "all delivered"."""
    nobody = _two_events_for_nobody(tmp_path)
    engine = create_engine(f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}")
    with engine.begin() as conn:  # as `cycle` claims them, for a worker that then died (lease: 40 s)
        conn.execute(update(webhook_log).values(claimed_by="dead-worker:1", attempts=1,
                                                next_attempt_at=datetime.now(UTC) + timedelta(seconds=40)))
    engine.dispose()
    out = cli("deliver", "--until-idle", env=_env(tmp_path, nobody))
    assert out.code == 1, out.all
    said = " ".join(out.err.split())
    assert "nothing is due now, but not everything is delivered: 2 held by another worker's claim until " in said
    assert "(a worker that died: delivered once its lease ends)" in said


def test_until_idle_names_the_dead_letters_left_from_before_and_exits_0(tmp_path: Path, cli: RunCli) -> None:
    nobody = _two_events_for_nobody(tmp_path)
    first = cli("deliver", "--until-idle", env={**_env(tmp_path, nobody), "TENANTCTL_DELIVERY_MAX_ATTEMPTS": "1"})
    assert first.code == 1, first.all  # this run's attempts failed and dead-lettered them
    again = cli("deliver", "--until-idle", env=_env(tmp_path, nobody))
    assert again.code == 0, again.all  # not a failure of this run
    assert "2 dead-lettered event(s) wait for a replay (`tenantctl webhooks replay --dead`)" in " ".join(
        again.err.split())


def test_until_idle_with_nothing_to_deliver_exits_0(tmp_path: Path, cli: RunCli) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}"
    (tmp_path / "state").mkdir()
    upgrade(url)
    out = cli("deliver", "--until-idle", env=_env(tmp_path, f"http://127.0.0.1:{free_port()}/hooks"))
    assert out.code == 0, out.all


def test_a_refused_http_destination_names_the_setting_that_allows_loopback_http(tmp_path: Path,
                                                                                cli: RunCli) -> None:
    env = {**_env(tmp_path, "http://127.0.0.1:9/hooks"), "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP": "false"}
    out = cli("deliver", "--until-idle", env=env)
    assert out.code == 1 and "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP" in out.err, out.all


def test_the_worker_yields_the_cpu_to_the_server_and_keeps_a_lower_priority_it_was_given(tmp_path: Path) -> None:
    """Niceness 10 by default (TENANTCTL_DELIVERY_NICE), and never raised back: `nice -n 15` stays 15. The
    database thread keeps the priority the process was given (on SQLite it holds the server's write lock)."""
    env = _worker_env(tmp_path)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    for prefix, nice, given in (([], max(10, ours), ours), (["nice", "-n", "15"], max(15, ours), min(19, ours + 15))):
        run = subprocess.run([*prefix, sys.executable, "-m", "tenantctl", "deliver", "--until-idle"], env=env,
                             check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert f"at a time, nice {nice}; database thread nice {given};" in run.stderr


def test_a_worker_leading_its_own_session_lowers_its_session_too_and_one_sharing_a_session_leaves_it(
        tmp_path: Path) -> None:
    """Under autogroup the kernel shares the CPU between sessions first, and niceness orders threads only within
    one: a worker in a session of its own (Docker, setsid) lowers its session's niceness to 10; one started
    beside `serve` in a shared session leaves it, or it would lower the server with it."""
    from tenantctl.commands.deliver import autogroup_nice

    ours = autogroup_nice()
    if ours is None:
        pytest.skip("this kernel groups no sessions (sched_autogroup_enabled is 0)")
    env = _worker_env(tmp_path)
    for own_session, session in ((True, max(10, ours)), (False, ours)):
        run = subprocess.run([sys.executable, "-m", "tenantctl", "deliver", "--until-idle"], env=env, check=False,
                             capture_output=True, text=True, timeout=60, cwd=tmp_path, start_new_session=own_session)
        assert run.returncode == 0, run.stderr
        assert f"; session nice {session};" in run.stderr
    assert autogroup_nice() == ours  # the test's own session, shared by the second worker, is as it was


def test_a_worker_leading_a_session_it_shares_leaves_the_session_alone(tmp_path: Path) -> None:
    """`sh -c 'tenantctl serve & exec tenantctl deliver'` (a container's entry point, a setsid script): the worker
    is its session's leader, but the server started before it shares the session, and lowering the session
    would lower the server with it."""
    from tenantctl.commands.deliver import autogroup_nice

    if autogroup_nice() is None:
        pytest.skip("this kernel groups no sessions (sched_autogroup_enabled is 0)")
    env = _worker_env(tmp_path)
    beside = tmp_path / "beside"  # what the process beside the worker sees of its session, after the worker's start
    script = (f"(sleep 3; cat /proc/self/autogroup > {beside}) & "
              f'exec "{sys.executable}" -m tenantctl deliver --until-idle')
    run = subprocess.run(["sh", "-c", script], env=env, check=False, capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, start_new_session=True)
    assert run.returncode == 0, run.stderr
    assert "; session nice 0;" in run.stderr  # a new session's niceness, as it was
    deadline = time.monotonic() + 10
    while not (beside.exists() and beside.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert beside.read_text().split()[-1] == "0"


def test_a_sighup_during_the_workers_start_is_held_and_reloads_once_it_runs(tmp_path: Path) -> None:
    """`systemctl reload` right after a start used to kill the worker (SIGHUP's default action, before the
    worker had its handler); now it runs, and does the reload it was asked for."""
    env = _worker_env(tmp_path)
    log = tmp_path / "deliver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "deliver"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not in_tenantctls_imports(proc.pid):  # in the CLI's imports: the worker has no handler of its own yet
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.002)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "deliver: reloaded" not in log.read_text():
            assert proc.poll() is None, f"the SIGHUP ended the worker ({proc.returncode}):\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log.read_text()
