"""Prometheus metrics: requests by provider, tenant and outcome; a latency histogram.

Under gunicorn every worker is its own process, so metrics use prometheus_client's multiprocess mode:
gunicorn.conf.py sets ``PROMETHEUS_MULTIPROC_DIR`` (under the state directory) before any worker imports
prometheus_client, and ``/metrics`` aggregates the files of every worker. Without that variable (tests,
a single process) each :class:`Metrics` keeps its own registry.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from webhook_server.server_config import MULTIPROC_ENV

UNKNOWN_TENANT = "(unknown)"  # bounded label cardinality: unknown slugs are not labels
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self._multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self._registry = CollectorRegistry()
        self.requests = Counter(
            "tenantctl_webhook_requests",
            "Webhook requests by provider, tenant and outcome (accepted, duplicate, rejected, error).",
            ["provider", "tenant", "outcome"],
            registry=self._registry,
        )
        self.latency = Histogram(
            "tenantctl_webhook_latency_seconds",
            "Time from the request's arrival to its answer (recording included).",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=self._registry,
        )

        # labels() takes a lock and builds its key on every call; the label sets are few, so the
        # children are looked up once (a measurable share of a worker's time under load).
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def observe(self, provider: str, tenant: str | None, outcome: str, seconds: float) -> None:
        key = (provider, tenant or UNKNOWN_TENANT, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters.setdefault(key, self.requests.labels(*key))
        counter.inc()
        hist = self._histograms.get(provider)
        if hist is None:
            hist = self._histograms.setdefault(provider, self.latency.labels(provider))
        hist.observe(seconds)

    def render(self) -> bytes:
        if self._multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self._registry))
