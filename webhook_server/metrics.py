"""Prometheus metrics: requests by provider, tenant and outcome; a latency histogram; and, read from the
database at scrape (cached `STORE_TTL_S`), the last health status per tenant/provider and the newest
accepted event's time per tenant/provider (so "no Hospitable event in 24 h" is one alert rule:
`time() - tenantctl_last_accepted_event_timestamp_seconds{provider="hospitable"} > 86400`); refusals by
reason class (the reason before its first ':', e.g. `bad-signature`, `unknown-tenant`: a bounded label,
never the free text after it); the last routing reload's outcome and time; and build info. Every family
is declared from the first scrape (HELP and TYPE, samples once there are any).

Under gunicorn every worker is its own process, so metrics use prometheus_client's multiprocess mode:
gunicorn.conf.py sets ``PROMETHEUS_MULTIPROC_DIR`` (under the state directory) before any worker imports
prometheus_client, and ``/metrics`` aggregates the files of every worker. Without that variable (tests,
a single process) each :class:`Metrics` keeps its own registry.
"""

from __future__ import annotations

import os
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from store import health as store_health
from store.bounded import SCRAPE_DEADLINE_S, read_within
from webhook_server import reload_status
from webhook_server.server_config import MULTIPROC_ENV

UNKNOWN_TENANT = "(unknown)"  # bounded label cardinality: unknown slugs are not labels
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STORE_TTL_S = 15.0
HEALTH_STATUSES = ("healthy", "progressing", "degraded", "missing", "unknown", "suspended")
PROVIDERS = ("hospitable", "whatsapp", "nuki", "beds24")  # latency series exist for each from the start
OTHER_REASON = "other"
MAX_REASON_CLASSES = 64  # a guard: reasons are composed by our code from a few dozen fixed classes
_REASON_CLASS = re.compile(r"[a-z][a-z0-9-]{0,39}")
_SEVERITY = {"degraded": 0, "missing": 1, "unknown": 2, "progressing": 3, "suspended": 4, "healthy": 5}


def _version() -> str:
    try:
        return metadata.version("tenantctl")
    except metadata.PackageNotFoundError:
        return "unknown"


def reason_class(reason: str | None) -> str:
    """The bounded label of a refusal reason: the part before the first ':' (what follows may be outside
    text: a slug, an ID), or `other` when that is not a short lowercase identifier. Pure."""
    head = (reason or "").split(":", 1)[0]
    return head if _REASON_CLASS.fullmatch(head) else OTHER_REASON


class ReloadCollector:
    """`tenantctl_routing_reload_ok` (1: the last (re)load of the tenant files was installed; 0: refused, the
    previous routing kept) and `tenantctl_routing_reload_timestamp_seconds` (when it was attempted)."""

    def collect(self) -> Iterator[Any]:
        status = reload_status.last()
        ok = GaugeMetricFamily("tenantctl_routing_reload_ok", "1 when the last routing (re)load was installed, "
                               "0 when it was refused and the previous routing kept.")
        at = GaugeMetricFamily("tenantctl_routing_reload_timestamp_seconds",
                               "Unix time of the last routing (re)load attempt.")
        tenants = GaugeMetricFamily("tenantctl_routing_tenants", "Tenants in the routing in force.")
        if status is not None:
            ok.add_metric([], 1.0 if status.ok else 0.0)
            at.add_metric([], status.at)
            tenants.add_metric([], float(status.tenants))
        yield from (ok, at, tenants)


class BuildInfoCollector:
    """`tenantctl_build_info{version, python}` 1: present from the first scrape."""

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("tenantctl_build", "The running tenantctl's version and Python.")
        info.add_metric([], {"version": _version(), "python": platform.python_version()})
        yield info


class StoreCollector:
    """Health and last-event gauges from the database, at most one read per `ttl_s` (a scrape every few
    seconds from several Prometheus servers costs one GROUP BY each way). A database that cannot be read
    yields `tenantctl_store_read_ok 0` and the last values it had."""

    def __init__(self, engine: Engine, ttl_s: float = STORE_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.ttl_s, self._clock = engine, ttl_s, clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._ok = True
        self._health: dict[tuple[str, str], str] = {}
        self._last: dict[tuple[str, str], float] = {}

    def _refresh(self) -> None:
        with self._lock:
            now = self._clock()
            if self._at is not None and now - self._at < self.ttl_s:
                return
            self._at = now
            try:
                latest, accepted = read_within(self.engine, lambda: (store_health.latest(self.engine),
                                                                    store_health.last_accepted(self.engine)),
                                               SCRAPE_DEADLINE_S)
                worst: dict[tuple[str, str], str] = {}
                for r in latest:
                    key = (r.tenant, r.provider)
                    if key not in worst or _SEVERITY.get(r.health, 9) < _SEVERITY.get(worst[key], 9):
                        worst[key] = r.health
                last = {k: v.timestamp() for k, v in accepted.items()}
            except Exception:  # a scrape must answer whatever the database does
                self._ok = False
                return
            self._ok, self._health, self._last = True, worst, last

    def collect(self) -> Iterator[Any]:
        self._refresh()
        status = GaugeMetricFamily("tenantctl_health_status",
                                   "Last `tenantctl health` result per tenant and provider: 1 for its worst "
                                   "status, 0 for the others.", labels=["tenant", "provider", "status"])
        for (tenant, provider), worst in sorted(self._health.items()):
            for name in HEALTH_STATUSES:
                status.add_metric([tenant, provider, name], 1.0 if name == worst else 0.0)
        yield status
        last = GaugeMetricFamily("tenantctl_last_accepted_event_timestamp_seconds",
                                 "Unix time of the newest accepted webhook per tenant and provider.",
                                 labels=["tenant", "provider"])
        for (tenant, provider), when in sorted(self._last.items()):
            last.add_metric([tenant, provider], when)
        yield last
        yield GaugeMetricFamily("tenantctl_store_read_ok", "1 when the last database read for metrics worked.",
                                value=1.0 if self._ok else 0.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self._multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self._registry = CollectorRegistry()
        self._extra: list[Any] = [BuildInfoCollector()]
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

        self.refusals = Counter(
            "tenantctl_webhook_refusals",
            "Refused webhook requests by provider and reason class (the reason before its first ':').",
            ["provider", "reason"],
            registry=self._registry,
        )
        self._extra.append(ReloadCollector())

        # labels() takes a lock and builds its key on every call; the label sets are few, so the
        # children are looked up once (a measurable share of a worker's time under load).
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._histograms: dict[str, Any] = {p: self.latency.labels(p) for p in PROVIDERS}
        self._refusals: dict[tuple[str, str], Any] = {}

    def observe(self, provider: str, tenant: str | None, outcome: str, seconds: float,
                reason: str | None = None) -> None:
        """One answered request; `reason` (a refusal's) is counted by its class only (reason_class)."""
        key = (provider, tenant or UNKNOWN_TENANT, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters.setdefault(key, self.requests.labels(*key))
        counter.inc()
        hist = self._histograms.get(provider)
        if hist is None:
            hist = self._histograms.setdefault(provider, self.latency.labels(provider))
        hist.observe(seconds)
        if outcome == "rejected":
            rkey = (provider, reason_class(reason))
            refused = self._refusals.get(rkey)
            if refused is None:
                if len(self._refusals) >= MAX_REASON_CLASSES:
                    rkey = (provider, OTHER_REASON)
                refused = self._refusals.get(rkey) or self._refusals.setdefault(rkey, self.refusals.labels(*rkey))
            refused.inc()

    def attach_store(self, engine: Engine, ttl_s: float = STORE_TTL_S) -> None:
        """Serve the health and last-event gauges read from this database (see StoreCollector)."""
        self._extra.append(StoreCollector(engine, ttl_s))

    def render(self) -> bytes:
        registry = CollectorRegistry()
        if self._multiprocess:
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Forward(self._registry))
        for collector in self._extra:
            registry.register(collector)
        text = bytes(generate_latest(registry))
        if self._multiprocess:  # the workers' files hold only families with samples: declare the others
            seen = {f.name for f in text_string_to_metric_families(text.decode())}
            missing = _Declared(self._registry, seen)
            if missing.families:
                text += bytes(generate_latest(missing))
        return text


class _Declared:
    """The families of a registry that a scrape has not shown yet, without samples (HELP and TYPE only)."""

    def __init__(self, registry: CollectorRegistry, seen: set[str]) -> None:
        self.families: list[Any] = []
        for family in registry.collect():
            if family.name in seen:
                continue
            kind = {"counter": CounterMetricFamily, "histogram": HistogramMetricFamily}.get(family.type,
                                                                                          GaugeMetricFamily)
            self.families.append(kind(family.name, family.documentation, labels=[]))

    def collect(self) -> Iterator[Any]:
        yield from self.families


class _Forward:
    """Another registry's metrics inside the scrape's registry."""

    def __init__(self, inner: CollectorRegistry) -> None:
        self.inner = inner

    def collect(self) -> Iterator[Any]:
        yield from self.inner.collect()
