"""Fixtures shared by every test package: a throwaway age key, a tenant directory, the CLI as a user runs it."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyrage
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tenancy.model import encrypted_regex
from tenancy.sops import encrypt_text

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DEMO_KEY = EXAMPLES / "demo.agekey"
# For the harnesses' httpx calls to loopback (verify=POLL_TLS): a call without one builds an SSL context with
# the CA bundle each time, 40 ms of CPU here, and the harnesses poll every 50-100 ms while a server starts.
POLL_TLS = ssl.create_default_context()


def in_tenantctls_imports(pid: int) -> bool:
    """Whether PID is past the interpreter's own start-up, in tenantctl's imports: over 25 MB resident (Linux:
    VmRSS in /proc/PID/status; a bare interpreter is ~10 MB, the CLI's imports ~60). Before that no Python
    code of tenantctl's has run, and nothing can hold a SIGHUP."""
    with open(f"/proc/{pid}/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss_kb > 25_000


@dataclass(frozen=True)
class ThrowawayKey:
    secret: str
    recipient: str
    file: Path


@pytest.fixture(scope="session")
def throwaway_key(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayKey:
    ident = pyrage.x25519.Identity.generate()
    f = tmp_path_factory.mktemp("keys") / "test.agekey"
    f.write_text(f"# throwaway test key\n{ident}\n")
    return ThrowawayKey(str(ident), str(ident.to_public()), f)


def write_sops_config(directory: Path, recipient: str, regex: str | None = None) -> Path:
    cfg = directory / ".sops.yaml"
    cfg.write_text(
        "creation_rules:\n"
        "  - path_regex: ^[a-z0-9-]+\\.yaml$\n"
        f"    age: {recipient}\n"
        "    mac_only_encrypted: true\n"
        f"    encrypted_regex: {regex or encrypted_regex()}\n"
    )
    return cfg


@pytest.fixture
def tenant_dir(tmp_path: Path, throwaway_key: ThrowawayKey, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "tenants"
    d.mkdir()
    write_sops_config(d, throwaway_key.recipient)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(throwaway_key.file))
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    return d


WriteTenant = Callable[..., Path]


@pytest.fixture
def write_tenant(tenant_dir: Path) -> WriteTenant:
    """Write a tenant file encrypted by the real sops binary (or in plaintext with encrypt=False)."""

    def write(text: str, name: str = "acme", *, encrypt: bool = True) -> Path:
        path = tenant_dir / f"{name}.yaml"
        body = encrypt_text(text, path.name, tenant_dir / ".sops.yaml") if encrypt else text
        path.write_text(body)
        return path

    return write


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def all(self) -> str:
        return self.out + self.err


RunCli = Callable[..., CliResult]


@pytest.fixture
def cli(tmp_path: Path) -> RunCli:
    """Run `tenantctl` in a subprocess, exactly as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            cwd: Path | None = None) -> CliResult:
        full_env = {**os.environ, "TENANTCTL_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200",
                    **(env or {})}
        p = subprocess.run([sys.executable, "-m", "tenantctl", *args], capture_output=True, text=True,
                           env=full_env, input=input, cwd=cwd or REPO, timeout=120, check=False)
        return CliResult(p.returncode, p.stdout, p.stderr)

    return run


# -- PostgreSQL ---------------------------------------------------------------------------------------
# From TENANTCTL_TEST_POSTGRES_URL (default: the local server, database ``test``). When it cannot be
# reached the postgres tests are skipped, unless CI is set: then they fail. Tests work in schemas of their
# own, selected through ``search_path`` and dropped at the end of the session.

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def with_schema(url: str, schema: str) -> str:
    return (
        make_url(url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The server URL, checked reachable (skip or, under CI, fail)."""
    url = os.environ.get("TENANTCTL_TEST_POSTGRES_URL", DEFAULT_PG_URL)
    probe = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        msg = f"PostgreSQL unreachable ({type(exc.orig).__name__}); set TENANTCTL_TEST_POSTGRES_URL"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    finally:
        probe.dispose()
    return url


class PgSchemas:
    """Creates schemas private to this test process and drops them all at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = create_engine(url)
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.created: list[str] = []

    def new(self) -> str:
        name = f"tenantctl_test_{self.worker}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        self.created.append(name)
        return with_schema(self.url, name)

    def drop_all(self) -> None:
        with self.admin.begin() as conn:
            for name in self.created:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_schemas(pg_url: str) -> Iterator[PgSchemas]:
    schemas = PgSchemas(pg_url)
    yield schemas
    schemas.drop_all()
