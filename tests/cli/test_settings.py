"""Settings: `.env.example` lists exactly what the code reads, and `.env` reaches every command, `serve` too."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from store.migrate import upgrade
from tenancy.settings import ENV_ONLY, Settings
from tests.conftest import DEMO_KEY, EXAMPLES, REPO, RunCli
from tests.webhook_server.server_harness import free_port

CODE_DIRS = ("tenantctl", "tenancy", "store", "reconciler", "webhook_server", "sandbox", "delivery", "outbound")


def _settings_model_names() -> set[str]:
    names: set[str] = set()
    for name, f in Settings.model_fields.items():
        alias = f.validation_alias
        choices = getattr(alias, "choices", None)
        names.update(str(c) for c in choices) if choices else names.add(f"TENANTCTL_{name.upper()}")
    return names


def _names_in_code() -> set[str]:
    found: set[str] = set()
    for d in CODE_DIRS:
        for py in (REPO / d).rglob("*.py"):
            found.update(re.findall(r"[\"'](TENANTCTL_[A-Z0-9_]+)[\"']", py.read_text(encoding="utf-8")))
    return found


def _names_in_example() -> set[str]:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^#?\s*((?:TENANTCTL_|DATABASE_URL)[A-Z0-9_]*)=", text, re.MULTILINE))


def test_env_example_lists_every_setting_the_code_reads_and_nothing_else() -> None:
    code = _settings_model_names() | _names_in_code() | set(ENV_ONLY)
    example = _names_in_example()
    assert sorted(code - example) == [], "settings the code reads but .env.example does not list"
    assert sorted(example - code) == [], "settings .env.example lists but no code reads"
    assert "TENANTCTL_STATE_REFRESH_S" in example and "TENANTCTL_BIND" in example


def test_dot_env_is_read_by_commands(tmp_path: Path, cli: RunCli) -> None:
    (tmp_path / ".env").write_text(f"TENANTCTL_TENANTS={EXAMPLES}\nSOPS_AGE_KEY_FILE={DEMO_KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTCTL_", "SOPS_"))}
    p = subprocess.run([sys.executable, "-m", "tenantctl", "show", "acme", "--format", "json"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert '"slug": "acme"' in p.stdout


def test_serve_binds_where_dot_env_says(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    upgrade(f"sqlite:///{state / 'tenantctl.db'}")
    (tmp_path / ".env").write_text(
        f"TENANTCTL_BIND=127.0.0.1:{port}\nTENANTCTL_WORKERS=1\nTENANTCTL_TENANTS={EXAMPLES}\n"
        f"TENANTCTL_STATE_DIR={state}\nSOPS_AGE_KEY_FILE={DEMO_KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTCTL_", "SOPS_", "PROMETHEUS_"))}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "serve"], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        text = (tmp_path / "serve.log").read_text()
        assert f"Listening at: http://127.0.0.1:{port}" in text
        assert text.count("Booting worker") == 1  # TENANTCTL_WORKERS=1 from .env
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()


# -- a bad setting: named as the operator sets it, for every command --------------------------------------------

@pytest.mark.parametrize(("command", "env", "says"), [
    (["deliver"], {"TENANTCTL_DELIVERY_MAX_ATTEMPTS": "0"},
     "TENANTCTL_DELIVERY_MAX_ATTEMPTS (set in the environment) must be at least 1, not '0'"),
    (["webhooks", "log"], {"TENANTCTL_DELIVERY_NICE": "25"},
     "TENANTCTL_DELIVERY_NICE (set in the environment) must be at most 19, not '25'"),
    (["list"], {"TENANTCTL_MAX_BODY_BYTES": "1mb"},
     "TENANTCTL_MAX_BODY_BYTES (set in the environment) must be a whole number, not '1mb'"),
    (["webhooks", "log"], {"TENANTCTL_LOG_FORMAT": "xml"}, "TENANTCTL_LOG_FORMAT (set in the environment) must be "
                                                            "text or json"),
    (["webhooks", "log"], {"TENANTCTL_DELIVERY_MAX_DELAY_S": "1", "TENANTCTL_DELIVERY_BASE_DELAY_S": "5"},
     "TENANTCTL_DELIVERY_MAX_DELAY_S (1) is below TENANTCTL_DELIVERY_BASE_DELAY_S (5)"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_bad_setting_names_its_variable_in_plain_words(cli: RunCli, command: list[str], env: dict[str, str],
                                                          says: str) -> None:
    r = cli(*command, env=env)
    assert r.code == 1, r.all
    assert r.err.startswith("error: bad setting: ") and says in r.err, r.err
    assert "pydantic" not in r.err and "ValidationError" not in r.err and "type=" not in r.err


def test_a_bad_setting_from_dot_env_says_so(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TENANTCTL_DELIVERY_MAX_ATTEMPTS=0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
    p = subprocess.run([sys.executable, "-m", "tenantctl", "webhooks", "log"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1, p.stderr
    assert "TENANTCTL_DELIVERY_MAX_ATTEMPTS (set in the .env file) must be at least 1" in p.stderr


def test_a_bad_secret_setting_is_named_but_its_value_never_shown(cli: RunCli) -> None:
    r = cli("webhooks", "log", env={"TENANTCTL_ADMIN_TOKEN": "hunter2-short"})
    assert r.code == 1, r.all
    assert "TENANTCTL_ADMIN_TOKEN (set in the environment) must be at least 16 characters (it has 13)" in r.err
    assert "hunter2" not in r.all


def test_an_empty_delivery_secret_is_refused_with_advice_that_is_not_masked(cli: RunCli) -> None:
    good = "whsec_" + base64.b64encode(b"a-real-delivery-key-0123456789").decode()
    r = cli("deliver", "--until-idle", env={"TENANTCTL_DELIVERY_SECRETS": f"{good},whsec_"})
    assert r.code == 1, r.all
    assert "shorter than 24 bytes (it has 0); use whsec_ + base64" in r.err, r.err
    assert good not in r.all and good.removeprefix("whsec_") not in r.all


def test_an_empty_database_url_as_env_example_ships_it_leaves_tenantctl_database_url_in_charge(
        tmp_path: Path) -> None:
    """`.env.example` has the line `DATABASE_URL=`: left empty, it must not hide TENANTCTL_DATABASE_URL (the server
    and the worker would run on a local SQLite file beside the shared database, silently)."""
    shared = tmp_path / "shared.db"
    (tmp_path / ".env").write_text(f"DATABASE_URL=\nTENANTCTL_DATABASE_URL=sqlite:///{shared}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_") and k != "DATABASE_URL"}
    p = subprocess.run([sys.executable, "-m", "tenantctl", "db", "current"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert f"database: sqlite:///{shared}" in p.stdout + p.stderr, p.stdout + p.stderr
    assert not (tmp_path / ".state").exists()  # no local database made on the side


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "POSTGRESQL", "postgresql+psycopg"])
def test_every_spelling_of_a_postgresql_url_means_psycopg_3(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tenancy.settings import Settings

    monkeypatch.setenv("DATABASE_URL", f"{scheme}://ops@db.internal:5432/tenantctl")
    assert Settings(_env_file=None).resolved_database_url == "postgresql+psycopg://ops@db.internal:5432/tenantctl"
