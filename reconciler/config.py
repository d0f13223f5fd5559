"""Where providers live (the real APIs or the local sandbox), which hosts we may talk to, and the limits.

Everything here is data: the HTTP client and the engine read it, nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from reconciler.retry import RetryPolicy
from tenancy.model import Tenant

# The real APIs (PROVIDERS.md). Keys are provider names as the registry knows them.
REAL_BASE_URLS: Mapping[str, str] = {
    "whatsapp": "https://graph.facebook.com/v23.0",
    "nuki": "https://api.nuki.io",
    "hospitable": "https://public.api.hospitable.com/v2",
    "beds24": "https://api.beds24.com/v2",
    # 2N devices have one host each (from the tenant file): providers build `https://<host>/api/...`.
    "twon": "https://{host}",
}

# Where each provider's emulator is mounted inside the sandbox app.
SANDBOX_PATHS: Mapping[str, str] = {
    "whatsapp": "/meta/v23.0",
    "nuki": "/nuki",
    "hospitable": "/hospitable/v2",
    "beds24": "/beds24/v2",
    # The sandbox emulates every device under one host, addressed by device ID.
    "twon": "/2n/{device_id}",
}

# Hosts any tenant may reach. 2N device hosts are added per tenant file (`allowed_hosts`).
PROVIDER_HOSTS = frozenset({"graph.facebook.com", "api.nuki.io", "public.api.hospitable.com",
                            "api.beds24.com"})


def base_urls(*, sandbox: bool, sandbox_url: str) -> dict[str, str]:
    if not sandbox:
        return dict(REAL_BASE_URLS)
    root = sandbox_url.rstrip("/")
    return {name: root + path for name, path in SANDBOX_PATHS.items()}


def host_of(url: str) -> str:
    """`host` or `host:port` as it appears in a URL (lower-case), the unit of the allow-list."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def allowed_hosts(tenants: Iterable[Tenant], *, sandbox: bool, sandbox_url: str) -> frozenset[str]:
    """The provider APIs and the 2N devices declared in tenant files; in sandbox mode only the sandbox."""
    if sandbox:
        # Nothing real is reachable while rehearsing: a mistake cannot touch a live account.
        return frozenset({host_of(sandbox_url)})
    devices = {p.intercom.host.lower() for t in tenants for p in t.properties if p.intercom is not None}
    return PROVIDER_HOSTS | frozenset(devices)


@dataclass(frozen=True)
class ProviderLimit:
    """At most `concurrency` requests in flight, `rate` requests per second (None: no rate limit)."""

    concurrency: int = 8
    rate: float | None = None
    burst: int = 10


@dataclass(frozen=True)
class Limits:
    tenant_workers: int = 16  # tenants reconciled at once
    providers: Mapping[str, ProviderLimit] = field(default_factory=lambda: dict(REAL_LIMITS))
    default: ProviderLimit = ProviderLimit()
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Safety (octoDNS-style): a tenant's plan that updates+deletes more than this share of its live
    # resources, and more than `safety_min_changes` of them, needs --force.
    safety_share: float = 0.30
    safety_min_changes: int = 3

    def for_provider(self, name: str) -> ProviderLimit:
        return self.providers.get(name, self.default)

    def replace(self, **changes: object) -> Limits:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# Conservative guesses where vendors publish nothing (PROVIDERS.md): Beds24 allows 100 credits per 5 min.
REAL_LIMITS: Mapping[str, ProviderLimit] = {
    "whatsapp": ProviderLimit(concurrency=8, rate=20.0, burst=20),
    "nuki": ProviderLimit(concurrency=4, rate=5.0, burst=10),
    "hospitable": ProviderLimit(concurrency=4, rate=5.0, burst=10),
    "beds24": ProviderLimit(concurrency=1, rate=0.3, burst=5),
    "twon": ProviderLimit(concurrency=2, rate=None),
}

# The sandbox emulates vendors' own rate-limit answers (429, Meta code 4); no client-side cap needed.
SANDBOX_LIMITS: Mapping[str, ProviderLimit] = {
    name: ProviderLimit(concurrency=16, rate=None) for name in (*REAL_LIMITS, "default")
}


def limits_for(*, sandbox: bool) -> Limits:
    if sandbox:
        return Limits(tenant_workers=16, providers=dict(SANDBOX_LIMITS), default=ProviderLimit(16, None))
    return Limits()


@dataclass(frozen=True)
class ReconcileConfig:
    """What the engine and the HTTP client need to know about the world outside."""

    base_urls: Mapping[str, str]
    allowed_hosts: frozenset[str]
    sandbox: bool
    limits: Limits
    domain: str

    @property
    def https_only(self) -> bool:
        return not self.sandbox


def make_config(tenants: Iterable[Tenant], *, sandbox: bool, sandbox_url: str, domain: str,
                limits: Limits | None = None) -> ReconcileConfig:
    tenants = list(tenants)
    return ReconcileConfig(
        base_urls=base_urls(sandbox=sandbox, sandbox_url=sandbox_url),
        allowed_hosts=allowed_hosts(tenants, sandbox=sandbox, sandbox_url=sandbox_url),
        sandbox=sandbox,
        limits=limits or limits_for(sandbox=sandbox),
        domain=domain,
    )


# Providers whose every write is an idempotent "set" (Meta's subscribe and override calls): a write that
# may or may not have been applied (5xx, lost answer) is safe to send again. Nuki's creates are not.
IDEMPOTENT_WRITE_PROVIDERS = frozenset({"whatsapp", "twon"})  # 2N writes are set-by-uuid: a retry cannot duplicate


def limits_from_env(base: Limits, environ: Mapping[str, str]) -> Limits:
    """Operator overrides: TENANTCTL_TENANT_WORKERS, TENANTCTL_RETRY_BASE_S, TENANTCTL_RETRY_ATTEMPTS."""
    out = base
    if environ.get("TENANTCTL_TENANT_WORKERS"):
        out = out.replace(tenant_workers=max(1, int(environ["TENANTCTL_TENANT_WORKERS"])))
    retry = out.retry
    if environ.get("TENANTCTL_RETRY_BASE_S"):
        retry = dataclasses.replace(retry, base_delay_s=float(environ["TENANTCTL_RETRY_BASE_S"]))
    if environ.get("TENANTCTL_RETRY_ATTEMPTS"):
        retry = dataclasses.replace(retry, max_attempts=max(1, int(environ["TENANTCTL_RETRY_ATTEMPTS"])))
    return out.replace(retry=retry)
