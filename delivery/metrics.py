"""The delivery worker's Prometheus metrics, on its own port (`tenantctl deliver --metrics-port`).

Why the worker and not the webhook server: attempts, outcomes and latencies happen in the worker, and a
server that computed them would have to read them back from the database. Queue depth and the oldest
pending age are facts of the database, not of one worker: they are read from it on each scrape (one
indexed query), so every worker reports the same true value, a stuck worker loop cannot freeze them, and
nothing is queried when nobody scrapes. When the database cannot be read, ``tenantctl_delivery_queue_up``
is 0 and the queue gauges are left out rather than stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from store.delivery import QueueStats
from store.errors import short_error

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class _QueueCollector(Collector):
    def __init__(self, read: Callable[[], QueueStats], now: Callable[[], datetime]) -> None:
        self._read, self._now = read, now

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("tenantctl_delivery_queue_up", "1 when the queue could be read on this scrape.")
        try:
            q = self._read()
        except Exception as exc:  # a scrape reports the failure; it never raises
            log.warning("delivery metrics: queue not readable: %s", short_error(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("tenantctl_delivery_queue_depth", "Events by delivery state (undelivered).",
                                  labels=["state"])
        for state, n in (("pending", q.pending), ("retrying", q.retrying), ("dead", q.dead)):
            depth.add_metric([state], n)
        yield depth
        age = 0.0 if q.oldest_due_at is None else max(0.0, (self._now() - q.oldest_due_at).total_seconds())
        yield GaugeMetricFamily("tenantctl_delivery_oldest_pending_age_seconds",
                                "Age of the oldest event not yet delivered (pending or retrying); 0 when none.",
                                value=age)


class DeliveryMetrics:
    def __init__(self, read_queue: Callable[[], QueueStats] | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.attempts = Counter("tenantctl_delivery_attempts", "Delivery attempts by provider and outcome "
                                "(delivered, failed: a non-2xx answer, error: no answer).",
                                ["provider", "outcome"], registry=self.registry)
        self.dead = Counter("tenantctl_delivery_dead_lettered", "Events dead-lettered, by provider.",
                            ["provider"], registry=self.registry)
        self.latency = Histogram("tenantctl_delivery_latency_seconds", "Duration of one delivery attempt.",
                                 ["provider"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.lag = Histogram("tenantctl_delivery_lag_seconds",
                             "From the event's receipt to the platform's 2xx.", ["provider"],
                             buckets=LAG_BUCKETS, registry=self.registry)
        if read_queue is not None and now is not None:
            self.registry.register(_QueueCollector(read_queue, now))

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on ``addr:port`` (0: any free port) in a daemon thread; returns the port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(server.server_port)
