"""The delivery worker's Prometheus metrics, on its own port (`tenantctl deliver --metrics-port`).

Why the worker and not the webhook server: attempts, outcomes and latencies happen in the worker, and a
server that computed them would have to read them back from the database. Queue depth and the oldest
pending age are facts of the database, not of one worker: they are read from it on each scrape (one grouped
statement over the queue's partial indexes, store/queue_depth.py), so every worker reports the same true
value, a stuck worker loop cannot freeze them, and nothing is queried when nobody scrapes. Both carry a
``provider`` label, so a rule can watch one provider's queue (WhatsApp messages stuck while bookings flow):
every webhook provider has its series from the first scrape, zero when it has nothing queued. When the
database cannot be read, ``tenantctl_delivery_queue_up`` is 0 and the queue gauges are left out rather than
stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from delivery.destinations import PROVIDERS
from store.delivery import AttemptOutcome
from store.errors import short_error
from store.queue_depth import QueueDepth

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


QueueRead = Callable[[], Mapping[str, QueueDepth]]  # provider → its queue (store.queue_depth.depth_by_provider)


class _QueueCollector(Collector):
    def __init__(self, read: QueueRead, now: Callable[[], datetime], providers: Sequence[str]) -> None:
        self._read, self._now, self._providers = read, now, providers

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("tenantctl_delivery_queue_up", "1 when the queue could be read on this scrape.")
        try:
            queue = self._read()
        except Exception as exc:  # a scrape reports the failure; it never raises
            log.warning("delivery metrics: queue not readable: %s", short_error(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("tenantctl_delivery_queue_depth",
                                  "Events by provider and delivery state (undelivered).", labels=["provider", "state"])
        age = GaugeMetricFamily("tenantctl_delivery_oldest_pending_age_seconds",
                                "How long the provider's oldest waiting event (pending or retrying) has waited, "
                                "since its receipt or last replay; 0 when none waits.", labels=["provider"])
        now = self._now()
        # The known providers always, so that a rule on one has its series before its first event; any other the
        # database holds as well (accepted rows only, so the label stays bounded).
        for provider in sorted({*self._providers, *queue}):
            q = queue.get(provider, QueueDepth())
            for state, n in (("pending", q.pending), ("retrying", q.retrying), ("dead", q.dead)):
                depth.add_metric([provider, state], n)
            oldest = q.oldest_pending_at
            age.add_metric([provider], 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
        yield depth
        yield age


class DeliveryMetrics:
    def __init__(self, read_queue: QueueRead | None = None, now: Callable[[], datetime] | None = None,
                 providers: Sequence[str] = PROVIDERS) -> None:
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
        # Every provider's counters from zero at start: `increase()` over a counter that appears with its first
        # event reads nothing for that event, so the first dead letter after a restart would page nobody.
        for provider in providers:
            self.dead.labels(provider)
            for outcome in get_args(AttemptOutcome):
                self.attempts.labels(provider, outcome)
        if read_queue is not None and now is not None:
            self.registry.register(_QueueCollector(read_queue, now, providers))
        self._server: WSGIServer | None = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on ``addr:port`` (0: any free port) in a daemon thread; returns the port.

        Raises OSError when the address cannot be bound (taken, or not this host's)."""
        self._server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop serving and free the port: before the SQLite worker slot is released, so that a worker taking
        over (`deliver --wait`) finds the port free."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
