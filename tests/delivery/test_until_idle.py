"""`tenantctl deliver --until-idle` tells by its exit code whether the queue was delivered, and a refused
plain-http destination names the setting that allows it. Through the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine

from store.migrate import upgrade
from tests.conftest import RunCli

from .harness import SECRET, accepted, free_port, insert


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    return {"TENANTCTL_DELIVERY_SECRETS": SECRET, "TENANTCTL_TENANTS": str(tmp_path / "no-tenants"),
            "TENANTCTL_DELIVERY_URL_HOSPITABLE": url, "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP": "true",
            "TENANTCTL_DELIVERY_TIMEOUT_S": "1", "TENANTCTL_DELIVERY_POLL_S": "0.05"}


def test_until_idle_exits_1_when_its_attempts_failed(tmp_path: Path, cli: RunCli) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}"
    (tmp_path / "state").mkdir()
    upgrade(url)
    engine = create_engine(url)
    insert(engine, accepted(2))
    engine.dispose()
    nobody = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there: every attempt fails
    out = cli("deliver", "--until-idle", env=_env(tmp_path, nobody))
    assert out.code == 1, out.all
    assert "2 delivery attempt(s) failed" in out.err


def test_until_idle_with_nothing_to_deliver_exits_0(tmp_path: Path, cli: RunCli) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}"
    (tmp_path / "state").mkdir()
    upgrade(url)
    out = cli("deliver", "--until-idle", env=_env(tmp_path, f"http://127.0.0.1:{free_port()}/hooks"))
    assert out.code == 0, out.all


def test_a_refused_http_destination_names_the_setting_that_allows_loopback_http(tmp_path: Path,
                                                                                cli: RunCli) -> None:
    env = {**_env(tmp_path, "http://platform.example.com/hooks"), "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP": "false"}
    out = cli("deliver", "--until-idle", env=env)
    assert out.code == 1 and "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP" in out.err, out.all


def test_the_worker_yields_the_cpu_to_the_server_and_keeps_a_lower_priority_it_was_given(tmp_path: Path) -> None:
    """Niceness 10 by default (TENANTCTL_DELIVERY_NICE), and never raised back: `nice -n 15` stays 15."""
    url = f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}"
    (tmp_path / "state").mkdir()
    upgrade(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
    env.update(_env(tmp_path, f"http://127.0.0.1:{free_port()}/hooks"), DATABASE_URL=url)
    for prefix, nice in (([], 10), (["nice", "-n", "15"], 15)):
        run = subprocess.run([*prefix, sys.executable, "-m", "tenantctl", "deliver", "--until-idle"], env=env,
                             check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert f"at a time, nice {nice};" in run.stderr
