"""The Integrations page's resources: login, the tenants' cards, one tenant, the Webhook Logs. Read-only.

Every page needs the admin session cookie (set by the login form: Secure, HttpOnly, SameSite=Strict, path
/admin) or `Authorization: Bearer <admin token>`; without a configured token the pages do not exist (404).
Outside text (slugs, reasons, event IDs from the log) reaches the page only through Jinja2's autoescape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import falcon
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from store import health as store_health
from store.bounded import SCRAPE_DEADLINE_S, read_within
from store.errors import DatabaseUnavailable, short_error
from store.schema import DELIVERY_STATES, OUTCOMES
from store.webhook_log import LogRow
from tenancy.escape import printable
from webhook_server import log_filters
from webhook_server.admin import data, reasons, session
from webhook_server.admin.login_limit import LoginLimiter
from webhook_server.client_address import TrustedProxies, addresses
from webhook_server.storage import LogReader

log = logging.getLogger(__name__)
T = TypeVar("T")
READ_DEADLINE_S = SCRAPE_DEADLINE_S  # a page's reads, all together (store/bounded.py)


def _read(engine: Engine, read: Callable[[], T]) -> T:
    """What a page shows, read within READ_DEADLINE_S: a database that fails or does not answer is a 503 saying
    so (the reason in the server's log), never a page that hangs or a 500."""
    try:
        return read_within(engine, read, READ_DEADLINE_S)
    except (DatabaseUnavailable, SQLAlchemyError) as exc:
        log.warning("admin page: the database could not be read: %s", short_error(exc))
        raise falcon.HTTPServiceUnavailable(
            title="Database unavailable",
            description="The database could not be read (the server's log says why); the page works again as "
                        "soon as it answers.", retry_after=5) from None
_FORWARDED = ("x-forwarded-for", "x-real-ip")

PAGE = 50
TENANTS_PER_PAGE = 25
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True))
_env.filters["explain"] = reasons.explain
# Outside text (event IDs, reasons) shows its control, bidi and format characters as escapes.
_env.filters["printable"] = printable


def _fmt(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


_env.filters["when"] = _fmt


def _age(seconds: float) -> str:
    """How long something has waited, in the largest unit that keeps it readable: 45 s, 12 min, 3.5 h, 2.1 d."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


_env.filters["age"] = _age


def render(resp: falcon.Response, template: str, **context: Any) -> None:
    resp.content_type = "text/html; charset=utf-8"
    resp.set_header("Cache-Control", "no-store")
    resp.set_header("Content-Security-Policy",
                    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                    "form-action 'self'; frame-ancestors 'none'")
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Referrer-Policy", "no-referrer")
    resp.text = _env.get_template(template).render(**context)


class _Page:
    """A page behind the admin token. Wrong tokens, from the login form or a Bearer header, count against
    the client address in one limiter shared by every page (admin/login_limit.py)."""

    def __init__(self, token: bytes | None, engine: Engine | None, slugs: Callable[[], Sequence[str]],
                 clock: Callable[[], float] = time.time, trusted: TrustedProxies | None = None,
                 limiter: LoginLimiter | None = None) -> None:
        self._token, self.engine, self.slugs, self.clock = token, engine, slugs, clock
        self.trusted = trusted or TrustedProxies.parse("127.0.0.1")
        self.limiter = limiter or LoginLimiter()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=(sensitive))"

    def _address(self, req: falcon.Request) -> str:
        return addresses(req.remote_addr, {k: v for k in _FORWARDED if (v := req.get_header(k)) is not None},
                         self.trusted)["client"]

    def _guard(self, req: falcon.Request) -> Engine:
        """The engine, for a request with the admin token as a Bearer header or a session cookie; else a redirect
        to the login form (404 when the pages are off, 401 or 429 for a wrong Bearer token)."""
        if self._token is None or self.engine is None:
            raise falcon.HTTPNotFound()
        scheme, _, given = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            self._bearer(req, self._token, given)
            return self.engine
        if session.valid(self._token, req.cookies.get(session.COOKIE), self.clock()):
            return self.engine
        raise falcon.HTTPSeeOther("/admin/login")

    def _bearer(self, req: falcon.Request, token: bytes, given: str) -> None:
        """Raises 429 (Retry-After) while the client address is refused, else 401 for a wrong token (counted)."""
        address = self._address(req)
        wait = self.limiter.retry_after(address, self.clock())
        if wait is not None:
            raise falcon.HTTPTooManyRequests(
                description=f"Too many wrong admin tokens from this address: try again in {wait} s.",
                retry_after=wait)
        if session.token_matches(token, given):
            return
        failures = self.limiter.failed(address, self.clock())
        log.warning("admin Bearer token refused from %s (%d in this window)", printable(address), failures)
        raise falcon.HTTPUnauthorized(description="That is not the admin token.",
                                      challenges=['Bearer realm="tenantctl admin"'])


class LoginResource(_Page):
    """The login form. Failed logins are limited per client address (admin/login_limit.py)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._token is None or self.engine is None:
            raise falcon.HTTPNotFound()
        render(resp, "login.html", error=None)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._token is None or self.engine is None:
            raise falcon.HTTPNotFound()
        address = self._address(req)
        wait = self.limiter.retry_after(address, self.clock())
        if wait is not None:
            resp.status = falcon.HTTP_429
            resp.set_header("Retry-After", str(wait))
            render(resp, "login.html", error=f"Too many failed logins from this address: try again in {wait} s.")
            return
        form = parse_qs(req.bounded_stream.read(4096).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        if not session.token_matches(self._token, given):
            failures = self.limiter.failed(address, self.clock())
            log.warning("admin login failed from %s (%d in this window)", printable(address), failures)
            resp.status = falcon.HTTP_401
            render(resp, "login.html", error="That is not the admin token.")
            return
        resp.set_cookie(session.COOKIE, session.issue(self._token, self.clock()), max_age=session.LIFETIME_S,
                        path="/admin", secure=True, http_only=True, same_site="Strict")
        raise falcon.HTTPSeeOther("/admin/")


class LogoutResource(_Page):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.unset_cookie(session.COOKIE, path="/admin")
        raise falcon.HTTPSeeOther("/admin/login")


class IntegrationsResource(_Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        engine = self._guard(req)
        now = datetime.now(UTC)
        routed = list(self.slugs())
        asked = req.get_param_as_int("page", min_value=1, default=1) or 1

        def read() -> tuple[list[str], int, int, list[data.TenantView]]:
            names = data.all_slugs(engine, routed)
            pages = max(1, -(-len(names) // TENANTS_PER_PAGE))
            page = min(asked, pages)
            shown = names[(page - 1) * TENANTS_PER_PAGE:page * TENANTS_PER_PAGE]
            return names, pages, page, data.tenants(engine, shown, now=now, routed=set(routed))

        names, pages, page, views = _read(engine, read)
        render(resp, "index.html", tenants=views, now=now, title="Integrations", page=page, pages=pages,
               total=len(names))


class TenantResource(_Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        engine = self._guard(req)
        if not log_filters.is_slug(slug):  # no tenant has it; and a NUL must not reach PostgreSQL (a 503)
            raise falcon.HTTPNotFound()
        routed = set(self.slugs())
        # A tenant no file routes any more still has its page while it has health results or queued events.
        now = datetime.now(UTC)

        def read() -> data.TenantView | None:
            if slug not in routed and not store_health.latest(engine, slug) and not data.has_queue(engine, slug):
                return None
            [view] = data.tenants(engine, [slug], now=now, routed=routed)
            return view

        view = _read(engine, read)
        if view is None:
            raise falcon.HTTPNotFound()
        render(resp, "tenant.html", t=view, now=now, title=f"Tenant {slug}")


_PAGE_PARAMS = ("tenant", "provider", "outcome", "state", "reason", "since", "until", "cursor")
_LOG_PARAMS = ("tenant", "provider", "outcome", "state", "since", "until", "limit", "cursor")


class LogsResource(_Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        engine = self._guard(req)
        filters, errors = log_filters.parse(req.params, _PAGE_PARAMS)
        if errors:
            resp.status = falcon.HTTP_400  # the page still renders, naming what to fix, with the filters that hold
        rows, next_cursor = _read(engine, lambda: store_health.log_page(
            engine, tenant=filters.tenant, provider=filters.provider, outcome=filters.outcome, reason=filters.reason,
            since=filters.since, until=filters.until, limit=PAGE, cursor=filters.cursor, states=filters.states))
        # The form shows what was asked (escaped by the template); the links carry only the filters that hold.
        f = {k: str(req.get_param(k) or "").strip() for k in _PAGE_PARAMS if k != "cursor"}
        kept = {k: v for k, v in {"tenant": filters.tenant, "provider": filters.provider, "outcome": filters.outcome,
                                  "state": list(filters.states), "reason": filters.reason,
                                  "since": f["since"] if filters.since else None,
                                  "until": f["until"] if filters.until else None}.items() if v}
        next_url = None if next_cursor is None else "/admin/logs?" + urlencode({**kept, "cursor": next_cursor},
                                                                               doseq=True)
        render(resp, "logs.html", rows=rows, f=f, errors=errors, next_url=next_url, first=filters.cursor is None,
               first_url="/admin/logs?" + urlencode(kept, doseq=True),
               outcomes=OUTCOMES, states=DELIVERY_STATES, providers=log_filters.PROVIDERS, slugs=sorted(self.slugs()),
               reasons=reasons.KNOWN, title="Webhook Logs")


# The store keeps accepted bodies whole (they are delivered on); a page of the log view shows their start.
VIEW_BODY_CHARS = 65_536


def _row_json(r: LogRow) -> dict[str, Any]:
    body = r.body
    return {
        "id": r.id, "received_at": r.received_at.isoformat(), "tenant": r.tenant, "provider": r.provider,
        "outcome": r.outcome, "status_code": r.status_code, "reason": r.reason, "event_id": r.event_id,
        "headers": r.headers, "body_size": r.body_size, "latency_ms": r.latency_ms,
        "body": body[:VIEW_BODY_CHARS] if body is not None else None,
        "body_truncated": body is not None and len(body) > VIEW_BODY_CHARS,
        "delivery_state": r.delivery_state, "delivery_attempts": r.attempts, "delivery_last_status": r.last_status,
        "repeats": r.repeats,
    }


_LOG_PARAMS = ("tenant", "provider", "outcome", "state", "since", "until", "limit", "cursor")


# The most rows one page of the JSON log returns.
MAX_PAGE = 1000


class LogApiResource(_Page):
    """`GET /admin/webhook-logs`: the webhook log as JSON, newest first, paged by an opaque cursor; each row with
    its headers (the safe ones) and body (the first VIEW_BODY_CHARS), unlike the pages.

    Filters (webhook_server/log_filters.py): tenant, provider, outcome, state (a delivery state, repeatable:
    ``state=pending&state=retrying``), since (inclusive), until (exclusive), limit (≤ 1000), cursor. An unknown
    parameter or a bad value is a 400 naming it. Needs `Authorization: Bearer <TENANTCTL_ADMIN_TOKEN>` (no
    cookie: it is for scripts), wrong tokens counted with the pages' (429 past the limit); when no token is
    configured the endpoint does not exist (404), so an unconfigured server exposes nothing.
    """

    def __init__(self, *args: Any, reader: LogReader | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._token is None or self.reader is None:
            raise falcon.HTTPNotFound()
        scheme, _, given = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            raise falcon.HTTPUnauthorized(challenges=['Bearer realm="tenantctl admin"'])
        self._bearer(req, self._token, given)
        f, errors = log_filters.parse(req.params, _LOG_PARAMS, MAX_PAGE)
        if errors:
            raise falcon.HTTPBadRequest(description="; ".join(errors))
        try:
            rows, next_cursor = self.reader.query(
                tenant=f.tenant, provider=f.provider,
                outcome=f.outcome,  # type: ignore[arg-type]  # one of OUTCOMES (log_filters.parse)
                since=f.since, until=f.until, limit=f.limit or 100, cursor=f.cursor, states=f.states,
            )
        except DatabaseUnavailable:
            raise falcon.HTTPServiceUnavailable(description="database unreachable") from None
        resp.content_type = "application/json"
        resp.text = json.dumps({"items": [_row_json(r) for r in rows], "next_cursor": next_cursor})


def register(app: falcon.App[falcon.Request, falcon.Response], token: bytes | None, reader: LogReader | None,
             slugs: Callable[[], Sequence[str]], trusted: TrustedProxies | None = None) -> None:
    """Mount the pages under /admin/ and the log's JSON at /admin/webhook-logs."""
    engine = getattr(reader, "engine", None)
    args = (token, engine, slugs)
    # One count of wrong tokens for the form, the pages' Bearer header and the JSON API (per worker process).
    guard: dict[str, Any] = {"trusted": trusted, "limiter": LoginLimiter()}
    app.add_route("/admin/webhook-logs", LogApiResource(*args, reader=reader, **guard))
    app.add_route("/admin", IntegrationsResource(*args, **guard))
    app.add_route("/admin/login", LoginResource(*args, **guard))
    app.add_route("/admin/logout", LogoutResource(*args, **guard))
    app.add_route("/admin/tenants/{slug}", TenantResource(*args, **guard))
    app.add_route("/admin/logs", LogsResource(*args, **guard))
