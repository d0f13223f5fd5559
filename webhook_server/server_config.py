"""gunicorn knobs from the environment (documented in `.env.example`).

Kept apart from ``tenancy.settings`` because only the server process reads them; the benchmark reads
them too, so the bare Falcon baseline runs on exactly the same gunicorn settings.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


WORKER_CLASSES = ("gevent", "gthread")


def bind_problem(bind: str) -> str | None:
    """Why gunicorn could not listen on BIND (``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH``, ``fd://N``; a
    missing port is gunicorn's 8000), or None. Checked before the tenants load: with 10,000 of them that takes
    seconds, after which gunicorn would retry a bad address for five more."""
    bind = bind.removeprefix("tcp://")  # gunicorn's own spelling of HOST:PORT
    if bind.startswith("unix:"):
        path = bind.removeprefix("unix:")
        if not path.strip():
            return "unix: names no socket path"
        if not Path(path).parent.is_dir():
            return f"the socket's directory {str(Path(path).parent)!r} does not exist"
        if Path(path).exists() and not Path(path).is_socket():
            return f"{path!r} exists and is not a socket"
        return None
    if bind.startswith("fd://"):
        fd = bind.removeprefix("fd://")
        if not (fd.isascii() and fd.isdigit()):
            return f"{bind!r} names no file descriptor (fd://N)"
        try:
            os.fstat(int(fd))
        except OSError:
            return f"file descriptor {fd} is not open"
        return None
    if bind.startswith("[") and bind.endswith("]"):  # [IPv6] without a port
        bind += ":8000"
    host, sep, port = bind.rpartition(":")
    if host.count(":") and not host.startswith("["):  # gunicorn reads its last group as the port, and fails
        return "an IPv6 address is written in brackets: [ADDRESS]:PORT, like [::1]:8000"
    if not sep:  # no port: gunicorn's 8000
        host, port = bind, "8000"
    if host.startswith("[") != host.endswith("]"):
        return "a bracket left open: an IPv6 address is written [ADDRESS]:PORT"
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        return f"the port {port!r} is not a number from 0 to 65535"
    host = host.removeprefix("[").removesuffix("]")
    try:
        socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        return f"the host {host!r} does not resolve ({getattr(e, 'strerror', None) or e})"
    return None


def default_workers(worker_class: str) -> int:
    """gevent: one worker per core, each serving every connection it holds from one event loop (measured
    on 2 cores: 2 workers served ~15 % more than 3 or 5). gthread: gunicorn's 2 x cores + 1, since a
    thread blocked on its commit leaves the core to another worker."""
    cores = os.cpu_count() or 1
    return cores if worker_class == "gevent" else 2 * cores + 1


@dataclass(frozen=True)
class ServerConfig:
    bind: str = "127.0.0.1:8000"
    # gevent: a request waiting for its group commit is a parked greenlet, not a blocked thread, and a
    # worker holds worker_connections connections (slow clients cannot exhaust a pool of 16 threads).
    # benchmarks/webhooks.py on 2 cores: the full pipeline reaches 0.54x (SQLite) / 0.45x (PostgreSQL) of
    # a bare Falcon app under gevent, 0.47-0.49x / 0.31-0.37x under gthread; in absolute requests/s the two are
    # about even, bare gthread being the faster ceiling. gthread stays selectable.
    worker_class: str = "gevent"
    workers: int = 2
    threads: int = 16  # gthread only
    worker_connections: int = 1000  # gevent only: concurrent connections per worker
    timeout: int = 30
    graceful_timeout: int = 30
    keepalive: int = 5
    access_log: str | None = "-"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerConfig:
        env = os.environ if env is None else env
        access = env.get("TENANTCTL_ACCESS_LOG", "-").strip()
        worker_class = env.get("TENANTCTL_WORKER_CLASS", "").strip() or cls.worker_class
        if worker_class not in WORKER_CLASSES:
            raise ValueError(f"TENANTCTL_WORKER_CLASS must be one of {', '.join(WORKER_CLASSES)}, got {worker_class!r}")
        return cls(
            bind=env.get("TENANTCTL_BIND", "").strip() or cls.bind,
            worker_class=worker_class,
            workers=_int(env, "TENANTCTL_WORKERS", default_workers(worker_class)),
            threads=_int(env, "TENANTCTL_THREADS", cls.threads),
            worker_connections=_int(env, "TENANTCTL_WORKER_CONNECTIONS", cls.worker_connections),
            timeout=_int(env, "TENANTCTL_TIMEOUT", cls.timeout),
            graceful_timeout=_int(env, "TENANTCTL_GRACEFUL_TIMEOUT", cls.graceful_timeout),
            keepalive=_int(env, "TENANTCTL_KEEPALIVE", cls.keepalive, minimum=0),
            access_log=None if access.lower() in ("", "off", "none") else access,
        )

    def gunicorn_args(self) -> list[str]:
        """The same settings as command-line flags (for a server without our config file)."""
        args = ["--bind", self.bind, "--workers", str(self.workers), "--threads", str(self.threads),
                "--worker-class", self.worker_class, "--worker-connections", str(self.worker_connections),
                "--timeout", str(self.timeout),
                "--graceful-timeout", str(self.graceful_timeout), "--keep-alive", str(self.keepalive)]
        if self.access_log:
            args += ["--access-logfile", self.access_log, "--access-logformat", ACCESS_LOG_FORMAT]
        return args
