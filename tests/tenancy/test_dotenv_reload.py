"""A changed .env applies on the server's SIGHUP as on a restart (tenancy.settings.reload_dotenv): what
load_dotenv copied into the environment does not hide the file's new values; the real environment wins."""

from __future__ import annotations

from pathlib import Path

from tenancy.settings import load_dotenv, reload_dotenv


def test_a_changed_dotenv_value_replaces_the_one_copied_at_start(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("TENANTCTL_META_APP_SECRETS=old-secret-1\nTENANTCTL_ADMIN_TOKEN=token-1\n")
    env = {"TENANTCTL_ADMIN_TOKEN": "from-the-real-environment"}
    load_dotenv(dotenv, env)
    dotenv.write_text("TENANTCTL_META_APP_SECRETS=new-secret-2,old-secret-1\nTENANTCTL_ADMIN_TOKEN=token-2\n"
                      "TENANTCTL_LOG_FORMAT=json\n")
    reload_dotenv(dotenv, env)
    assert env["TENANTCTL_META_APP_SECRETS"] == "new-secret-2,old-secret-1"
    assert env["TENANTCTL_ADMIN_TOKEN"] == "from-the-real-environment"
    assert env["TENANTCTL_LOG_FORMAT"] == "json"


def test_a_name_removed_from_dotenv_is_gone_after_a_reload(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("TENANTCTL_LOG_FORMAT=json\n")
    env: dict[str, str] = {}
    load_dotenv(dotenv, env)
    dotenv.write_text("")
    reload_dotenv(dotenv, env)
    assert "TENANTCTL_LOG_FORMAT" not in env
