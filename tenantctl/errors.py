"""Error messages that teach: what went wrong, where, and what to check; no driver traceback.

`explain(exc)` turns the failures a user can fix (an unreachable database, a missing tenants directory)
into one message; `main` prints it instead of the exception (`--debug` still shows the traceback).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from store.errors import short_error
from tenancy.redact import REDACTOR


class Taught(Exception):
    """A failure whose message already says what to do."""


def missing_tenants_dir(path: Path) -> Taught:
    return Taught(f"the tenants directory {path} does not exist. Point --tenants or TENANTCTL_TENANTS at "
                  "the directory that holds the tenant files (default: tenants/ in the current directory).")


def database_to_create(path: str) -> str:
    """Why `serve` or `deliver` will not start on a SQLite file that does not exist (they never create one: a
    mistyped TENANTCTL_STATE_DIR would get a second, empty database)."""
    return (f"no database at {path}: `tenantctl db upgrade` creates it (or is TENANTCTL_STATE_DIR / DATABASE_URL "
            "mistyped?)")


# The driver's words → what happened, most specific first (psycopg, pg8000 and sqlite3 wordings).
_REASONS = (
    ("password authentication failed", "the password was refused"),
    ("no password supplied", "the server wants a password and the URL has none"),
    ("does not exist", "the server answered, but the database or role does not exist"),
    ("connection refused", "nothing listens there (connection refused)"),
    ("could not translate host name", "the host name does not resolve"),
    ("name or service not known", "the host name does not resolve"),
    ("timeout", "the server did not answer in time"),
    ("timed out", "the server did not answer in time"),
    ("no route to host", "no route to that host"),
    ("unable to open database file", "the SQLite file cannot be opened"),
)


def _reason(exc: BaseException) -> str | None:
    text = str(getattr(exc, "orig", None) or exc).lower()
    return next((why for needle, why in _REASONS if needle in text), None)


def database_unreachable(url: str, exc: BaseException) -> Taught:
    """Which database (host, port, name; never the password), why, and what to check."""
    try:
        u = make_url(url)
    except ArgumentError:
        return Taught("DATABASE_URL is not a database URL (like postgresql+psycopg://user@host:5432/db): "
                      "fix DATABASE_URL or TENANTCTL_DATABASE_URL")
    why = _reason(exc)
    if u.get_backend_name() == "sqlite":
        where = u.database or "(in memory)"
        if why is None:  # the file opened and a statement failed: a schema this tenantctl does not expect
            return Taught(f"the SQLite database {where} refused a statement ({short_error(exc)}); "
                          "`tenantctl db current` shows its schema revision")
        if u.database and Path(u.database).expanduser().is_dir():
            return Taught(f"cannot open the SQLite database {where}: it is a directory; DATABASE_URL names the "
                          "database file (sqlite:///PATH/tenantctl.db), or unset it to use TENANTCTL_STATE_DIR's.")
        return Taught(f"cannot open the SQLite database {where}: {why}. Check that its directory exists and "
                      "is writable (TENANTCTL_STATE_DIR), or set DATABASE_URL.")
    host, port = u.host or "localhost", u.port or 5432
    if why is not None and why.startswith("the server answered") and "role" in str(getattr(exc, "orig", exc)):
        return Taught(
            f"the PostgreSQL server at {host}:{port} answered, but it has no role {u.username or '(none)'}: create it "
            f"(`createuser -h {host} -p {port} {u.username or 'NAME'}`) or fix the user in DATABASE_URL (or "
            "TENANTCTL_DATABASE_URL)")
    if why is not None and why.startswith("the server answered"):  # reached: the database's name is wrong
        return Taught(
            f"the PostgreSQL server at {host}:{port} answered, but it has no database {u.database or '(default)'!s}: "
            f"create it (`createdb -h {host} -p {port} {u.database or 'NAME'}`) or fix the name in DATABASE_URL (or "
            "TENANTCTL_DATABASE_URL)")
    return Taught(
        f"cannot reach the database at {host}:{port} (database {u.database or '(default)'!s}, "
        f"user {u.username or '(none)'}): {why or 'the connection failed'}. Check that the server runs there and "
        "accepts TCP connections, and that DATABASE_URL (or TENANTCTL_DATABASE_URL) names the right host, port, "
        "database and user; `tenantctl db current` tests the connection.")


def explain(exc: BaseException, database_url: str | None) -> str | None:
    """The teaching message for `exc`, or None when it is not one we can explain."""
    if isinstance(exc, Taught):
        return REDACTOR.scrub(str(exc))
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        from tenancy.settings import describe_error

        return REDACTOR.scrub(describe_error(exc))
    if isinstance(exc, DBAPIError) and database_url is not None and exc.connection_invalidated is False \
            and _is_connect_failure(exc):
        return REDACTOR.scrub(str(database_unreachable(database_url, exc)))
    return None


def _is_connect_failure(exc: DBAPIError) -> bool:
    # OperationalError and InterfaceError are how every driver reports a connection it could not make.
    return type(exc).__name__ in ("OperationalError", "InterfaceError")
