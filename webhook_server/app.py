"""The Falcon app: ``create_app`` builds it from collaborators, ``get_app`` builds the real ones.

gunicorn serves ``webhook_server.app:get_app()``; it runs in each worker, after the fork (no preload), so
the group-commit store's writer thread and connection pool belong to that worker. The routing is the one
the gunicorn master loaded and validated (see gunicorn.conf.py); without a master (e.g. a plain
``gunicorn webhook_server.app:get_app()`` or a test) get_app loads the tenants itself.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import falcon

from store.engine import make_engine
from store.migrate import require_up_to_date
from store.webhook_log import EventStore, GroupCommitEventStore
from tenancy.redact import REDACTOR
from tenancy.settings import Settings, load_settings
from webhook_server import admin
from webhook_server import routing as routing_holder
from webhook_server.client_address import TrustedProxies
from webhook_server.metrics import Metrics
from webhook_server.pipeline import Clock, Limits, Pipeline, SystemClock
from webhook_server.resources import (
    HealthResource,
    MetricsResource,
    ReadyResource,
    WebhookResource,
    WhatsAppAppResource,
    WhatsAppResource,
)
from webhook_server.routing import URL_PROVIDERS, Keys, Routing, load_routing
from webhook_server.state_refresh import following_state
from webhook_server.storage import EngineLogReader, LogReader

log = logging.getLogger(__name__)


class _NoSniff:
    """Every answer says ``X-Content-Type-Options: nosniff``: a handshake echoes the sender's
    ``hub.challenge`` as text/plain, and no browser may guess it is HTML."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        resp.set_header("X-Content-Type-Options", "nosniff")


def create_app(
    routing: Routing,
    store: EventStore,
    settings: Settings,
    clock: Clock | None = None,
    *,
    reader: LogReader | None = None,
    metrics: Metrics | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    metrics = metrics or Metrics()
    limits = Limits(settings.max_body_bytes)
    pipeline = Pipeline(routing, store, clock or SystemClock(), limits, metrics,
                        meta_verify_token=Keys([settings.meta_verify_token]))
    # Plain-text errors from Falcon itself (405, unparsable params): nothing echoes request data.
    app = falcon.App(cors_enable=False, middleware=[_NoSniff()])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    trusted = TrustedProxies.parse(settings.forwarded_allow_ips)
    for segment in URL_PROVIDERS:
        resource = (WhatsAppResource if segment == "wa" else WebhookResource)(pipeline, segment, trusted)
        app.add_route(f"/api/webhooks/{segment}/t/{{slug}}", resource)
    # Meta's app default callback: the only URL Meta sends template, quality and account events to.
    app.add_route("/api/webhooks/wa", WhatsAppAppResource(pipeline, trusted))
    app.add_route("/healthz", HealthResource())
    app.add_route("/readyz", ReadyResource(routing, reader, store, settings.ready_timeout_s))
    app.add_route("/metrics", MetricsResource(metrics))
    token = settings.admin_token.get_secret_value().encode("utf-8") if settings.admin_token else None
    admin.register(app, token, reader, lambda: sorted(routing.tenants), trusted)
    return app


_stores: list[EventStore] = []
_stores_lock = threading.Lock()


GIL_SWITCH_INTERVAL_S = 0.001


def get_app() -> falcon.App[falcon.Request, falcon.Response]:
    """The production app: settings from the environment, the master's routing, a group-commit store."""
    settings = load_settings()
    REDACTOR.add(*settings.meta_app_secrets, settings.admin_token, settings.meta_verify_token)
    routing = routing_holder.current()
    if not routing.loaded:
        routing = load_routing(Path(settings.tenants), settings.meta_app_secrets)
        routing_holder.install(routing)
    engine = make_engine(settings.resolved_database_url,
                         statement_timeout_ms=settings.db_statement_timeout_ms or None)
    require_up_to_date(engine)
    routing = following_state(routing, engine, settings.state_refresh_s)  # provider-issued secrets
    # Under gthread, request threads hand each record to the store's writer thread and wait for its
    # commit; with CPython's default 5 ms GIL switch interval every hand-over can stall that long. 1 ms
    # measured +25 % throughput under load there (benchmarks/webhooks.py); gevent has one thread.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    store = GroupCommitEventStore(
        engine, commit_deadline_s=settings.db_commit_timeout_s, timeout_s=2 * settings.db_commit_timeout_s,
        max_queue=settings.db_queue_max, refusal_sample=settings.refusal_rows_per_minute)
    store.start()
    with _stores_lock:
        _stores.append(store)
    log.info("webhook app ready: %d tenant(s)", len(routing))
    metrics = Metrics()
    metrics.attach_store(engine, settings.metrics_store_ttl_s)
    return create_app(routing, store, settings, reader=EngineLogReader(engine), metrics=metrics)


def shutdown() -> None:
    """Drain and stop this process's stores (gunicorn's worker_exit): queued records are committed."""
    with _stores_lock:
        stores, _stores[:] = list(_stores), []
    for s in stores:
        s.close()
