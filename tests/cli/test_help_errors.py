"""Errors that teach: an unreachable database and a missing tenants directory say what to check."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import DEMO_KEY, EXAMPLES, RunCli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on exit: nothing listens there


@pytest.mark.parametrize("command", [
    ["plan"], ["apply", "--auto-approve"], ["health"], ["db", "upgrade"], ["db", "current"], ["lock", "list"],
    ["webhooks", "log"], ["webhooks", "stats"],
])
def test_an_unreachable_database_names_host_and_port_and_what_to_check(cli: RunCli, command: list[str]) -> None:
    port = _closed_port()
    env = {"DATABASE_URL": f"postgresql+psycopg://ops:s3cretpw@127.0.0.1:{port}/tenantctl",
           "SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_SANDBOX": "1"}
    r = cli("--tenants", str(EXAMPLES), *command, env=env)
    assert r.code == 1, r.all
    assert f"error: cannot reach the database at 127.0.0.1:{port} (database tenantctl, user ops): " \
           "nothing listens there (connection refused)" in r.err
    assert "DATABASE_URL" in r.err and "tenantctl db current" in r.err
    assert "Traceback" not in r.all and "sqlalche.me" not in r.all and "OperationalError" not in r.all
    assert "s3cretpw" not in r.all


@pytest.mark.postgres
def test_a_database_the_server_does_not_have_is_named_with_how_to_create_it_in_any_spelling_of_the_url(
        cli: RunCli, pg_url: str) -> None:
    """The server answered: "cannot reach" would send the operator after the network. `postgres://` (libpq's and
    Heroku's spelling) and `postgresql://` both mean the one driver installed."""
    server = make_url(pg_url).set(database="tenantctl_no_such_db")
    host, port = server.host, server.port or 5432
    # Heroku's spelling (the others: tests/cli/test_settings.py).
    url = "postgres://" + server.render_as_string(hide_password=False).partition("://")[2]
    r = cli("webhooks", "stats", env={"DATABASE_URL": url})
    assert r.code == 1, r.all
    says = (f"error: the PostgreSQL server at {host}:{port} answered, but it has no database "
            f"tenantctl_no_such_db: create it (`createdb -h {host} -p {port} tenantctl_no_such_db`)")
    assert says in r.err, r.err
    assert "cannot reach" not in r.err and "ValueError" not in r.err
    r = cli("webhooks", "stats", env={"DATABASE_URL": server.set(username="tenantctl_no_such_role", database=(
        make_url(pg_url).database)).render_as_string(hide_password=False)})
    assert (f"error: the PostgreSQL server at {host}:{port} answered, but it has no role tenantctl_no_such_role: "
            f"create it (`createuser -h {host} -p {port} tenantctl_no_such_role`)") in r.err, r.err


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["list"], ["state", "list"], ["sandbox", "seed"]])
def test_a_missing_tenants_directory_says_so_and_names_the_option_and_variable(
        cli: RunCli, tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nowhere"
    by_option = cli("--tenants", str(missing), *command)
    assert by_option.code == 1
    assert by_option.err.strip() == (
        f"error: the tenants directory {missing} does not exist. Point --tenants or TENANTCTL_TENANTS at the "
        "directory that holds the tenant files (default: tenants/ in the current directory).")
    by_env = cli(*command, env={"TENANTCTL_TENANTS": str(missing)})
    assert by_env.code == 1 and f"the tenants directory {missing} does not exist" in by_env.err
    assert ":1:1:" not in by_option.all + by_env.all


def test_a_sqlite_database_that_opens_but_refuses_a_statement_is_not_called_unopenable(cli: RunCli,
                                                                                          tmp_path: Path) -> None:
    import sqlite3

    from store.migrate import upgrade

    db = tmp_path / "t.db"
    upgrade(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX ix_webhook_log_queue")
    r = cli("webhooks", "stats", env={"DATABASE_URL": f"sqlite:///{db}"})
    assert r.code == 1
    assert f"the SQLite database {db} refused a statement (OperationalError: no such index" in r.err
    assert "cannot open" not in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("command", [["webhooks", "log"], ["db", "upgrade"]])
def test_a_database_url_naming_a_directory_says_so(cli: RunCli, tmp_path: Path, command: list[str]) -> None:
    """It said to check that the directory exists and is writable: it did, and was the problem."""
    (tmp_path / "state.db").mkdir()
    r = cli(*command, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}"})
    assert r.code == 1, r.all
    assert f"cannot open the SQLite database {tmp_path / 'state.db'}: it is a directory" in " ".join(r.err.split())


def test_a_root_option_given_after_the_command_is_refused_with_where_it_goes(cli: RunCli) -> None:
    r = cli("list", "--tenants", str(EXAMPLES))
    assert r.code == 1
    assert "No such option: --tenants" in r.err
    assert "hint: --tenants is an option of tenantctl itself: put it before the command" in r.err
    assert "hint" not in cli("list", "--bogus").err  # only for the root's own options


def test_dash_h_is_help_everywhere(cli: RunCli) -> None:
    for args in (["-h"], ["webhooks", "log", "-h"]):
        r = cli(*args)
        assert r.code == 0 and r.out.startswith("Usage: tenantctl"), args


@pytest.mark.parametrize(("bind", "says"), [
    ("nonsense", "the host 'nonsense' does not resolve"),
    ("127.0.0.1:99999", "the port '99999' is not a number from 0 to 65535"),
    ("unix:/nonexistent-dir/tenantctl.sock", "the socket's directory '/nonexistent-dir' does not exist"),
    ("fd://987", "file descriptor 987 is not open"),
    ("[::1:8000", "a bracket left open"),
    ("::1", "an IPv6 address is written in brackets: [ADDRESS]:PORT, like [::1]:8000"),  # gunicorn: "'' is no port"
])
def test_serve_refuses_an_address_it_cannot_listen_on_before_loading_any_tenant(cli: RunCli, bind: str,
                                                                                 says: str) -> None:
    r = cli("--tenants", str(EXAMPLES), "serve", "--bind", bind, env={"SOPS_AGE_KEY_FILE": str(DEMO_KEY)})
    assert r.code == 1, r.all
    assert f"error: cannot listen on '{bind}' (--bind, TENANTCTL_BIND): {says}" in r.err and "use HOST:PORT" in r.err
    assert "tenant files" not in r.all and "Booting worker" not in r.all


@pytest.mark.parametrize(("args", "said"), [
    (["webhooks", "replay", "5", "x7"], "Invalid value for 'ids': 'x7' is not a whole number"),
    (["webhooks", "log", "--limit", "abc"], "Invalid value for '--limit': 'abc' is not a whole number"),
    (["webhooks", "log", "--limit", "\x1b[2J9"], "Invalid value for '--limit': '\\x1b[2J9' is not a whole number"),
    (["webhooks", "log", "--limit", "-5"], "Invalid value for '--limit': '-5' is out of range: at least 1"),
    (["deliver", "--metrics-port", "99999"],
     "Invalid value for '--metrics-port': '99999' is out of range: at most 65535"),
    (["simulate", "booking", "acme", "--timeout", "nan"],
     "Invalid value for '--timeout': 'nan' is not a finite number"),
    (["webhooks", "log", "--state", "DEAD"],
     "Invalid value for '--state': 'DEAD' is not one of 'pending', 'retrying', 'delivered', 'dead'."),
])
def test_a_value_of_the_wrong_type_is_named_in_plain_words(cli: RunCli, args: list[str], said: str) -> None:
    """Not pydantic's wording, which typer passes on ("Input should be a valid integer, unable to parse string as
    an integer", "Value error, ..."): it named neither the value nor what it should be in the CLI's terms."""
    r = cli(*args)
    assert r.code == 1, r.all
    assert said in " ".join(r.err.split()), r.err
    assert "Input should be" not in r.err and "Value error" not in r.err and "\x1b" not in r.err


@pytest.mark.parametrize("command", [["serve"], ["deliver"]])
def test_a_service_at_a_mistyped_state_directory_creates_no_database_there(
        cli: RunCli, tmp_path: Path, command: list[str]) -> None:
    """It created the directory and an empty database, then said to migrate it; the events sat in the real one."""
    (tmp_path / "tenants").mkdir()
    r = cli(*command, env={"TENANTCTL_STATE_DIR": str(tmp_path / "sate"),
                           "TENANTCTL_TENANTS": str(tmp_path / "tenants"),
                           "TENANTCTL_DELIVERY_SECRETS": "whsec_YmVuY2gtZGVsaXZlcnktc2VjcmV0LTAxMjM0NTY3",
                           "TENANTCTL_DELIVERY_URL_HOSPITABLE": "https://platform.example.com/in"})
    assert r.code == 1, r.all
    assert f"no database at {tmp_path / 'sate' / 'tenantctl.db'}: `tenantctl db upgrade` creates it" in " ".join(
        r.err.split())
    assert not (tmp_path / "sate").exists()
