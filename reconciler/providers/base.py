"""The Provider port: what every provider module implements, and what it may and may not do.

Contract
- `desired(tenant, ctx)` is pure: the resources the tenant file implies. No I/O.
- `observe(tenant, ctx, http)` only reads (GET, or the provider's read-only query calls) and returns the
  live resources in the same address space, with `owned` telling ours from foreign ones. It raises
  `ProviderError` subclasses (reconciler.errors) for failures; it never writes.
- `plan(tenant, ctx, live)` is pure: changes from desired x live (usually `diff`), plus MANUAL steps and
  REPORTs. A test runs it with an HTTP client that fails on any request.
- `apply(tenant, ctx, change, http)` performs exactly the one change given (a CREATE, UPDATE or DELETE from
  the plan), then reads back until the provider shows it (some providers apply writes later), and returns
  what was done. It writes nothing the change does not list. It may return `write_back` values that must be
  stored in the tenant file (encrypted), e.g. Nuki's webhook secret that is shown only once.
- `health(tenant, ctx, http)` read-only checks, as the platform's "verify health" steps: one HealthCheck per
  resource, named by its address, with a `status` in the operators' vocabulary (reconciler.health_status)
  and, when it is not healthy, a `hint` saying what to do. Checks that set only `ok` still work: their
  status is healthy or degraded.
Credentials go in headers (the HTTP client adds none by itself); secrets never enter messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from reconciler.errors import AuthError, InvalidRequest, NotFound, PermissionDenied, ProviderError
from reconciler.health_status import Health, Sync
from reconciler.model import Action, Change, Resource
from tenancy.model import Tenant


@dataclass(frozen=True)
class StatusEvidence:
    """What the webhook log holds about one sent WhatsApp message (health `--active`)."""

    statuses: Mapping[str, datetime]  # status (sent, delivered, read, failed) → when it was recorded
    refusals: Sequence[str] = ()  # reasons of the tenant's WhatsApp webhooks refused since the send


@dataclass(frozen=True)
class ProviderContext:
    """What a provider needs besides the tenant: where things live, and what the platform knows."""

    domain: str  # public domain of the webhook server (tenant.domain overrides)
    base_urls: Mapping[str, str]  # provider name → base URL (the real API, or the sandbox)
    # Last verified webhook per (tenant, provider) from the webhook log, when a database is configured.
    last_verified_event: Mapping[tuple[str, str], datetime] = field(default_factory=dict)
    # `--prune`: plan foreign resources as deletions, where the provider can and may delete them.
    prune: bool = False
    # Health only: the evidence window, its end, and what the webhook log saw in it per (tenant, provider).
    # `inbound_counts` is None when no database was read (the checks then say "unknown").
    now: datetime | None = None
    window: timedelta = timedelta(hours=24)
    inbound_counts: Mapping[tuple[str, str], int] | None = None
    account_events: Mapping[str, Sequence[str]] = field(default_factory=dict)  # slug → WhatsApp alerts
    # Sandbox mode: the emulated SMTP server (host, port, CA file of its certificate) instead of smtp.host.
    smtp_endpoint: tuple[str, int, str | None] | None = None
    mail_to: str | None = None  # `--active`: where the SMTP test mail goes (else the tenant's from_address)
    slow_s: float = 2.0  # a listing slower than this is degraded (Nuki's "within a second or two")
    # `--active`: (tenant, message ID, sent at) → the webhook log's evidence; None without a database.
    message_evidence: Callable[[str, str, datetime], StatusEvidence] | None = None
    status_wait_s: float = 15.0  # how long the WhatsApp round trip waits for its status webhooks

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)
    # Addresses of foreign live resources the operator asked to take over (`tenantctl adopt`): a provider
    # plans an adoption (an UPDATE with `adoption=True`) for one that matches what the file declares.
    adopt: frozenset[str] = frozenset()


class Http(Protocol):
    """The one outbound client (reconciler.http): allow-listed hosts, timeouts, retries, redaction."""

    def request(
        self,
        provider: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        secrets: Sequence[str] = (),
        tenant: str | None = None,  # the tenant whose own device is called (2N): its hosts are its own
    ) -> httpx.Response: ...


@dataclass(frozen=True)
class ApplyResult:
    change: Change
    write_back: Mapping[tuple[str | int, ...], str] = field(default_factory=dict)  # tenant-file path → secret
    detail: str = ""


@dataclass(frozen=True)
class HealthCheck:
    """One checked resource: `name` is its address (or a step, e.g. `smtp.login[acme]`). `status` None means
    healthy when `ok`, degraded otherwise; `sync` None when no plan speaks about it; `duration_s` seconds,
    None when the caller times the provider call as a whole."""

    provider: str
    tenant: str
    name: str
    ok: bool
    detail: str = ""
    status: Health | None = None
    sync: Sync | None = None
    hint: str = ""
    duration_s: float | None = None

    @property
    def health(self) -> Health:
        if self.status is not None:
            return self.status
        return Health.HEALTHY if self.ok else Health.DEGRADED


def check(provider: str, tenant: str, name: str, status: Health, detail: str, hint: str = "", *,
          sync: Sync | None = None, duration_s: float | None = None) -> HealthCheck:
    """A HealthCheck from a status (`ok` is `status is healthy`)."""
    return HealthCheck(provider, tenant, name, status is Health.HEALTHY, detail, status, sync, hint, duration_s)


def error_check(provider: str, tenant: str, name: str, err: BaseException,
                duration_s: float | None = None) -> HealthCheck:
    """A failed call as a row: a refused credential is degraded, an unknown ID missing, anything else
    (unreachable, 5xx, timeouts, not emulated) unknown: we could not look, which is not a failure."""
    text = str(err) if isinstance(err, ProviderError) else f"{type(err).__name__}: {err}"
    if isinstance(err, AuthError | PermissionDenied):
        return check(provider, tenant, name, Health.DEGRADED, text,
                     f"the {provider} credential was refused: issue a new one at {provider}, replace it in the "
                     "tenant file with sops, merge, and run `tenantctl health` again", duration_s=duration_s)
    if isinstance(err, NotFound):
        return check(provider, tenant, name, Health.MISSING, text,
                     f"{provider} does not know an ID the tenant file names: check it in the file",
                     duration_s=duration_s)
    return check(provider, tenant, name, Health.UNKNOWN, text,
                 f"{provider} could not be reached or did not answer: try again later; if it persists, check "
                 f"{provider}'s status page and the network", duration_s=duration_s)


class Provider(Protocol):
    name: str

    def applies_to(self, tenant: Tenant) -> bool: ...

    def desired(self, tenant: Tenant, ctx: ProviderContext) -> list[Resource]: ...

    def observe(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Resource]: ...

    def plan(self, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]: ...

    def apply(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult: ...

    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]: ...


def default_check(change: Change) -> tuple[bool, str] | None:
    if change.action is Action.REPORT and not change.is_error:
        return None  # information, not a failed check
    ok = change.action is Action.NOOP or (change.action is Action.MANUAL and change.done)
    return ok, change.note or ("ok" if ok else f"out of sync: {change.action.value} pending (run apply)")


_APPLY_HINT = "run `tenantctl plan` to review the change, then `tenantctl apply`"


def change_status(change: Change, ok: bool, detail: str) -> tuple[Health, Sync, str, str]:
    """(health, sync, detail, hint) for a plan's change: in sync when nothing is left to do; a resource the
    file wants and the provider lacks is missing; a difference or an error the provider reports degraded.
    Notes read "error: what is wrong: what to do", so the last clause becomes the hint."""
    if ok:
        return Health.HEALTHY, Sync.IN_SYNC, detail, ""
    if change.action is Action.CREATE:
        return Health.MISSING, Sync.OUT_OF_SYNC, detail, _APPLY_HINT + " to create it"
    if change.action is Action.MANUAL:
        return Health.MISSING, Sync.OUT_OF_SYNC, "a manual step is not done yet", detail
    if change.action in (Action.UPDATE, Action.DELETE):
        return Health.DEGRADED, Sync.OUT_OF_SYNC, detail, _APPLY_HINT
    text = detail.removeprefix("error: ")
    what, sep, todo = text.rpartition(": ")
    if not sep:
        what, todo = text, "fix it at the provider as the detail says"
    health = Health.MISSING if change.live is None and change.desired is not None else Health.DEGRADED
    return health, Sync.OUT_OF_SYNC, what, todo


def plan_health(
    provider: Provider,
    tenant: Tenant,
    ctx: ProviderContext,
    http: Http,
    token_detail: str,
    check: Callable[[Change], tuple[bool, str] | None] = default_check,
) -> list[HealthCheck]:
    """Health as a fresh plan sees it: the credentials work, and every change is a check that passes when
    nothing is left to do. `check` turns a change into (ok, detail), or None to leave it out."""
    token_address = f"{provider.name}.token[{tenant.slug}]"
    started = time.monotonic()
    try:
        live = provider.observe(tenant, ctx, http)
    except ProviderError as err:
        return [error_check(provider.name, tenant.slug, token_address, err, time.monotonic() - started)]
    took = time.monotonic() - started
    checks = [HealthCheck(provider.name, tenant.slug, token_address, True, token_detail, Health.HEALTHY,
                          duration_s=took)]
    for change in provider.plan(tenant, ctx, live):
        verdict = check(change)
        if verdict is not None:
            health, sync, detail, hint = change_status(change, *verdict)
            checks.append(HealthCheck(provider.name, tenant.slug, change.address, verdict[0], detail, health,
                                      sync, hint, took))
    return checks


class HealthOnly:
    """Base of providers that are checked, never changed (Beds24 is read-only; SMTP has nothing to set)."""

    name: str
    reason: str = "is checked, never changed"

    def desired(self, tenant: Tenant, ctx: ProviderContext) -> list[Resource]:
        return []

    def observe(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Resource]:
        return []

    def plan(self, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]:
        return []

    def apply(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult:
        raise InvalidRequest(self.name, f"{change.address}: {self.reason}")


def _ago(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _span(window: timedelta) -> str:
    s = window.total_seconds()
    return f"{s / 86400:g} d" if s >= 2 * 86400 and s % 86400 == 0 else f"{s / 3600:g} h"


def inbound_check(provider: str, tenant: Tenant, ctx: ProviderContext, *, address: str | None = None,
                  stale_hint: str, never_hint: str) -> list[HealthCheck]:
    """`<provider>.inbound[slug]` (or `address`): a verified webhook arrived within `ctx.window`, from the
    webhook log's evidence. None ever: missing (`never_hint`); the last one older than the window: degraded
    (`stale_hint`). No row when the log was not read (`ctx.inbound_counts` None)."""
    if ctx.inbound_counts is None:
        return []
    return [_inbound(provider, tenant, ctx, address or f"{provider}.inbound[{tenant.slug}]", ctx.inbound_counts,
                     stale_hint, never_hint)]


def _inbound(provider: str, tenant: Tenant, ctx: ProviderContext, address: str, counts: Mapping[tuple[str, str], int],
             stale_hint: str, never_hint: str) -> HealthCheck:
    key = (tenant.slug, provider)
    span = _span(ctx.window)
    last = ctx.last_verified_event.get(key)
    n = counts.get(key, 0)
    if last is None:
        return check(provider, tenant.slug, address, Health.MISSING, "no verified webhook has ever arrived",
                     never_hint, duration_s=0.0)
    age = (ctx.clock() - last).total_seconds()
    when = f"last verified webhook {_ago(age)} ({last.isoformat(timespec='seconds')})"
    if age > ctx.window.total_seconds():
        return check(provider, tenant.slug, address, Health.DEGRADED, f"none in {span}: {when}", stale_hint,
                     duration_s=0.0)
    return check(provider, tenant.slug, address, Health.HEALTHY, f"{n} accepted in {span}; {when}",
                 duration_s=0.0)
