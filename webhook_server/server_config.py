"""gunicorn knobs from the environment (documented in `.env.example`).

Kept apart from ``tenancy.settings`` because only the server process reads them; the benchmark reads
them too, so the bare Falcon baseline runs on exactly the same gunicorn settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Where prometheus_client's multiprocess mode keeps each worker's values; must be set before the first
# import of prometheus_client in the process (it decides its value class at import time).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The access log never shows query strings: Meta's handshake carries the verify token in one.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value


def default_workers() -> int:
    """gunicorn's rule of thumb, 2 x cores + 1: a worker waiting for its commit leaves the core to another
    (measured on 2 cores: 5 workers x 16 threads served ~1.5x the requests of 2 x 16, at a lower p99)."""
    return 2 * (os.cpu_count() or 1) + 1


@dataclass(frozen=True)
class ServerConfig:
    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int = 16
    timeout: int = 30
    graceful_timeout: int = 30
    keepalive: int = 5
    access_log: str | None = "-"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerConfig:
        env = os.environ if env is None else env
        access = env.get("TENANTCTL_ACCESS_LOG", "-").strip()
        return cls(
            bind=env.get("TENANTCTL_BIND", "").strip() or cls.bind,
            workers=_int(env, "TENANTCTL_WORKERS", default_workers()),
            threads=_int(env, "TENANTCTL_THREADS", cls.threads),
            timeout=_int(env, "TENANTCTL_TIMEOUT", cls.timeout),
            graceful_timeout=_int(env, "TENANTCTL_GRACEFUL_TIMEOUT", cls.graceful_timeout),
            keepalive=_int(env, "TENANTCTL_KEEPALIVE", cls.keepalive, minimum=0),
            access_log=None if access.lower() in ("", "off", "none") else access,
        )

    def gunicorn_args(self) -> list[str]:
        """The same settings as command-line flags (for a server without our config file)."""
        args = ["--bind", self.bind, "--workers", str(self.workers), "--threads", str(self.threads),
                "--worker-class", "gthread", "--timeout", str(self.timeout),
                "--graceful-timeout", str(self.graceful_timeout), "--keep-alive", str(self.keepalive)]
        if self.access_log:
            args += ["--access-logfile", self.access_log, "--access-logformat", ACCESS_LOG_FORMAT]
        return args
