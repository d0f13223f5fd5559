"""Where providers live (the real APIs or the local sandbox), which hosts we may talk to, and the limits.

Everything here is data: the HTTP client and the engine read it, nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from reconciler.errors import OutboundBlocked
from reconciler.retry import RetryPolicy
from tenancy.hosts import is_loopback_name
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

# Each provider's own API host: a provider may reach only its own (a bug or a hostile tenant file cannot
# send one provider's token to another's host). 2N device hosts are per tenant (`tenant_hosts`).
PROVIDER_HOSTS: Mapping[str, frozenset[str]] = {
    "whatsapp": frozenset({"graph.facebook.com"}),
    "nuki": frozenset({"api.nuki.io"}),
    "hospitable": frozenset({"public.api.hospitable.com"}),
    "beds24": frozenset({"api.beds24.com"}),
}
ANY_PROVIDER = "*"  # key of `allowed_hosts` for hosts every provider may reach (the sandbox)
DEVICE_PROVIDERS = frozenset({"twon"})  # hosts from tenant files: the connected address is checked


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


def is_loopback_url(url: str) -> bool:
    """Whether `url` names this machine: localhost, 127.0.0.0/8 or ::1 (the only sandbox addresses)."""
    return is_loopback_name(urlsplit(url).hostname or "")


def check_sandbox_url(url: str) -> None:
    """Sandbox mode sends every tenant's real tokens to the sandbox: only ever to this machine."""
    if not is_loopback_url(url):
        raise OutboundBlocked(
            f"TENANTCTL_SANDBOX_URL={host_of(url) or url!r} is not a loopback address: sandbox mode only "
            "talks to a sandbox on this machine (http://127.0.0.1:PORT); check TENANTCTL_SANDBOX_URL in the "
            "environment and in ./.env")


def allowed_hosts(*, sandbox: bool, sandbox_url: str) -> dict[str, frozenset[str]]:
    """Provider → the hosts it may reach; in sandbox mode only the (loopback) sandbox, for every one."""
    if sandbox:
        # Nothing real is reachable while rehearsing: a mistake cannot touch a live account.
        check_sandbox_url(sandbox_url)
        return {ANY_PROVIDER: frozenset({host_of(sandbox_url)})}
    return dict(PROVIDER_HOSTS)


def tenant_hosts(tenants: Iterable[Tenant], *, sandbox: bool) -> dict[tuple[str, str], frozenset[str]]:
    """(provider, tenant) → hosts only that tenant's calls of that provider may reach: its 2N intercoms."""
    if sandbox:
        return {}
    out: dict[tuple[str, str], frozenset[str]] = {}
    for t in tenants:
        hosts = frozenset(p.intercom.host.lower() for p in t.properties if p.intercom is not None)
        if hosts:
            out[("twon", t.slug)] = hosts
    return out


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
    # Per call (one attempt): the whole answer within this many seconds, and at most this many bytes
    # (decoded). Provider answers are small JSON; a slow or huge one is an error, not a stall or a OOM.
    total_deadline_s: float = 60.0
    max_response_bytes: int = 10 * 1024 * 1024
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
    allowed_hosts: Mapping[str, frozenset[str]]  # provider → hosts ("*": any provider)
    sandbox: bool
    limits: Limits
    domain: str
    tenant_hosts: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    @property
    def https_only(self) -> bool:
        return not self.sandbox

    def may_reach(self, provider: str, host: str, tenant: str | None) -> bool:
        """Whether `provider` (on behalf of `tenant`, when the call is a tenant's own device) may call `host`."""
        if host in self.allowed_hosts.get(provider, frozenset()) or \
                host in self.allowed_hosts.get(ANY_PROVIDER, frozenset()):
            return True
        return tenant is not None and host in self.tenant_hosts.get((provider, tenant), frozenset())


def make_config(tenants: Iterable[Tenant], *, sandbox: bool, sandbox_url: str, domain: str,
                limits: Limits | None = None) -> ReconcileConfig:
    """Raises OutboundBlocked when sandbox mode is asked for with a sandbox URL that is not loopback."""
    tenants = list(tenants)
    return ReconcileConfig(
        base_urls=base_urls(sandbox=sandbox, sandbox_url=sandbox_url),
        allowed_hosts=allowed_hosts(sandbox=sandbox, sandbox_url=sandbox_url),
        sandbox=sandbox,
        limits=limits or limits_for(sandbox=sandbox),
        domain=domain,
        tenant_hosts=tenant_hosts(tenants, sandbox=sandbox),
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
