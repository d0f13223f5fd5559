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
- `health(tenant, ctx, http)` read-only checks, as the platform's "verify health" steps.
Credentials go in headers (the HTTP client adds none by itself); secrets never enter messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from reconciler.errors import InvalidRequest, ProviderError
from reconciler.model import Action, Change, Resource
from tenancy.model import Tenant


@dataclass(frozen=True)
class ProviderContext:
    """What a provider needs besides the tenant: where things live, and what the platform knows."""

    domain: str  # public domain of the webhook server (tenant.domain overrides)
    base_urls: Mapping[str, str]  # provider name → base URL (the real API, or the sandbox)
    # Last verified webhook per (tenant, provider) from the webhook log, when a database is configured.
    last_verified_event: Mapping[tuple[str, str], datetime] = field(default_factory=dict)
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
    ) -> httpx.Response: ...


@dataclass(frozen=True)
class ApplyResult:
    change: Change
    write_back: Mapping[tuple[str | int, ...], str] = field(default_factory=dict)  # tenant-file path → secret
    detail: str = ""


@dataclass(frozen=True)
class HealthCheck:
    provider: str
    tenant: str
    name: str
    ok: bool
    detail: str = ""


class Provider(Protocol):
    name: str

    def applies_to(self, tenant: Tenant) -> bool: ...

    def desired(self, tenant: Tenant, ctx: ProviderContext) -> list[Resource]: ...

    def observe(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Resource]: ...

    def plan(self, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]: ...

    def apply(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult: ...

    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]: ...


def _default_check(change: Change) -> tuple[bool, str] | None:
    if change.action is Action.REPORT and not change.is_error:
        return None  # information, not a failed check
    ok = change.action is Action.NOOP or (change.action is Action.MANUAL and change.done)
    return ok, change.note or ("ok" if ok else f"out of sync: {change.action.value} pending (run apply)")


def plan_health(
    provider: Provider,
    tenant: Tenant,
    ctx: ProviderContext,
    http: Http,
    token_detail: str,
    check: Callable[[Change], tuple[bool, str] | None] = _default_check,
) -> list[HealthCheck]:
    """Health as a fresh plan sees it: the credentials work, and every change is a check that passes when
    nothing is left to do. `check` turns a change into (ok, detail), or None to leave it out."""
    try:
        live = provider.observe(tenant, ctx, http)
    except ProviderError as err:
        return [HealthCheck(provider.name, tenant.slug, "api", False, str(err))]
    checks = [HealthCheck(provider.name, tenant.slug, "token", True, token_detail)]
    for change in provider.plan(tenant, ctx, live):
        verdict = check(change)
        if verdict is not None:
            checks.append(HealthCheck(provider.name, tenant.slug, change.address, *verdict))
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
