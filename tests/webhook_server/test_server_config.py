"""gunicorn settings from the environment: what `tenantctl serve` and the benchmark's bare baseline share."""

from __future__ import annotations

import os

import pytest

from tenantctl.commands.serve import WorkerClass
from webhook_server.server_config import WORKER_CLASSES, ServerConfig


def test_defaults_to_gevent_with_one_worker_per_core() -> None:
    config = ServerConfig.from_env({})
    assert config.worker_class == "gevent"
    assert config.workers == (os.cpu_count() or 1)
    assert config.worker_connections == 1000


def test_gthread_defaults_to_twice_the_cores_plus_one() -> None:
    config = ServerConfig.from_env({"TENANTCTL_WORKER_CLASS": "gthread", "TENANTCTL_THREADS": "8"})
    assert (config.worker_class, config.workers, config.threads) == ("gthread", 2 * (os.cpu_count() or 1) + 1, 8)


def test_an_unknown_worker_class_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="TENANTCTL_WORKER_CLASS must be one of gevent, gthread, got 'uvicorn'"):
        ServerConfig.from_env({"TENANTCTL_WORKER_CLASS": "uvicorn"})


def test_the_command_line_form_carries_the_same_settings() -> None:
    args = ServerConfig.from_env({"TENANTCTL_WORKERS": "3", "TENANTCTL_WORKER_CONNECTIONS": "200",
                                  "TENANTCTL_ACCESS_LOG": "off"}).gunicorn_args()
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--worker-class"] == "gevent"
    assert flags["--workers"] == "3"
    assert flags["--worker-connections"] == "200"
    assert "--access-logfile" not in flags


def test_serve_offers_exactly_the_worker_classes_the_server_supports() -> None:
    # The CLI keeps its own list (it never imports the server package); the two must not drift apart.
    assert {w.value for w in WorkerClass} == set(WORKER_CLASSES)
