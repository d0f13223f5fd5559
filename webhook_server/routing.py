"""Routing: slug → the tenant's verified secrets and routing keys, per provider; and for the app-level
WhatsApp callback, phone-number ID → tenant and WABA ID → tenants. Built once, immutable.

A worker builds (or inherits from the gunicorn master, see gunicorn.conf.py) one :class:`Routing` at start
and never per request. Secrets are held as bytes inside :class:`Keys`, whose repr shows nothing.

The process-wide holder (:func:`current` / :func:`install`) lets the gunicorn master load and validate the
tenants once (at start and on SIGHUP) and hand the result to the workers it forks: a tenant set that fails
validation is refused and the previous routing stays installed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from pydantic import SecretStr

from tenancy.identity_memo import IdentityMemo
from tenancy.loader import load_tenants
from tenancy.model import Tenant

# URL segment → provider name as recorded (the tenant model's name).
log = logging.getLogger("webhook_server.routing")

URL_PROVIDERS: Mapping[str, str] = MappingProxyType(
    {"hospitable": "hospitable", "wa": "whatsapp", "beds24": "beds24", "nuki": "nuki"}
)


class Keys:
    """Secret byte strings, tried in order (newest first); never shown by repr or str."""

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[SecretStr | str | None]) -> None:
        out: list[bytes] = []
        for v in values:
            raw = v.get_secret_value() if isinstance(v, SecretStr) else v
            if raw:
                out.append(raw.encode("utf-8"))
        self._values = tuple(out)

    @property
    def values(self) -> tuple[bytes, ...]:
        return self._values

    def __bool__(self) -> bool:
        return bool(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Keys(({len(self._values)} sensitive))"

    __str__ = __repr__


@dataclass(frozen=True)
class ProviderRoute:
    """What one provider's webhooks for one tenant are checked against."""

    provider: str
    keys: Keys
    routing_keys: frozenset[str] = frozenset()
    verify_token: Keys = field(default_factory=lambda: Keys(()))
    # WhatsApp: the tenant's WhatsApp Business Account IDs (`entry[].id` of every change Meta sends).
    accounts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TenantRoute:
    slug: str
    providers: Mapping[str, ProviderRoute]


@dataclass(frozen=True)
class Routing:
    tenants: Mapping[str, TenantRoute]
    # phone_number_id → slug of every tenant: names the victim of a cross-tenant attempt in the log.
    owners: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    loaded: bool = True
    # WABA ID → the slugs of the tenants that name it (sorted; validation does not forbid sharing one).
    account_owners: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    # The Meta app secret(s) that sign what arrives at the app-level WhatsApp callback.
    meta_app_keys: Keys = field(default_factory=lambda: Keys(()))

    def tenant(self, slug: str, provider: str | None = None) -> TenantRoute | None:
        """The tenant's routes; PROVIDER (the one the request is for) lets a routing that follows the
        provider state store (state_refresh.StateRouting) look for a route it does not have yet."""
        return self.tenants.get(slug)

    def __len__(self) -> int:
        return len(self.tenants)

    def whatsapp_refusal(self, route: ProviderRoute, account: str | None, phone: str | None) -> str | None:
        """Why one WhatsApp change may not be accepted at this tenant's own URL, or None when it may.

        A change naming a phone-number ID must name one of the tenant's, under the tenant's WABA (when
        the tenant names its WABA); a change naming none (account-level fields: templates, quality,
        account) must come from the tenant's WABA. The reason names the owner when another tenant owns
        the key, like ``cross-tenant:blue-harbor``; ``cross-tenant:unknown-…`` when nobody does.
        """
        if phone is None and account is None:
            return "missing-routing-key"
        if phone is not None and phone not in route.routing_keys:
            owner = self.owners.get(phone)
            return f"cross-tenant:{owner}"[:64] if owner else "cross-tenant:unknown-phone-number-id"
        if phone is not None and not route.accounts:
            return None  # the tenant names no WABA: its phone-number ID is the only key to check
        if account is None:
            return "missing-routing-key"
        if account not in route.accounts:
            owners = self.account_owners.get(account)
            return f"cross-tenant:{owners[0]}"[:64] if owners else "cross-tenant:unknown-waba"
        return None

    def whatsapp_targets(self, account: str | None, phone: str | None) -> tuple[tuple[str, ...], str | None]:
        """The tenants one change belongs to at the app-level callback, or ``((), reason)`` when none.

        By phone-number ID where the change names one (it must also come from that tenant's WABA, as
        at the tenant's own URL); else by WABA ID, to every tenant that names the WABA. Reasons:
        ``unknown-phone-number-id``, ``waba-mismatch``, ``unknown-waba``, ``missing-routing-key``.
        """
        if phone is not None:
            owner = self.owners.get(phone)
            tenant = self.tenants.get(owner) if owner is not None else None
            route = tenant.providers.get("whatsapp") if tenant is not None else None
            if owner is None or route is None:
                return (), "unknown-phone-number-id"
            if route.accounts and account not in route.accounts:
                return (), "waba-mismatch"
            return (owner,), None
        if account is None:
            return (), "missing-routing-key"
        owners = self.account_owners.get(account)
        return (owners, None) if owners else ((), "unknown-waba")


EMPTY = Routing(tenants=MappingProxyType({}), loaded=False)


def _routes(t: Tenant, meta_app_secrets: Sequence[SecretStr]) -> dict[str, ProviderRoute]:
    routes: dict[str, ProviderRoute] = {}
    if t.hospitable is not None:
        h = t.hospitable
        keys = Keys([h.webhook_secret, h.previous_webhook_secret])  # newest first
        routes["hospitable"] = ProviderRoute("hospitable", keys)
    if t.whatsapp is not None:
        w = t.whatsapp
        routes["whatsapp"] = ProviderRoute(
            "whatsapp",
            Keys(meta_app_secrets),
            frozenset([w.phone_number_id]) if w.phone_number_id else frozenset(),
            Keys([w.verify_token]),
            frozenset([w.business_account_id]) if w.business_account_id else frozenset(),
        )
    if t.beds24 is not None:
        routes["beds24"] = ProviderRoute("beds24", Keys([t.beds24.webhook_secret]))
    # A Nuki account without a webhook secret has no webhook yet: its URL does not exist.
    if t.nuki is not None and t.nuki.webhook_secret is not None:
        routes["nuki"] = ProviderRoute("nuki", Keys([t.nuki.webhook_secret]))
    return routes


class _RouteMemo:
    """Each tenant's TenantRoute, kept across reloads for the same Tenant objects (a SIGHUP rebuilds only
    the changed tenants' routes) while the Meta app secrets, which every WhatsApp route holds, are the same."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] | None = None
        self._memo: IdentityMemo[Tenant, TenantRoute] | None = None
        self._lock = threading.Lock()

    def routes(self, tenants: Sequence[Tenant], meta_app_secrets: Sequence[SecretStr]) -> list[TenantRoute]:
        secrets = tuple(s.get_secret_value() for s in meta_app_secrets)
        with self._lock:
            if self._memo is None or secrets != self._secrets:
                self._secrets = secrets
                self._memo = IdentityMemo(
                    lambda t: TenantRoute(t.slug, MappingProxyType(_routes(t, meta_app_secrets))))
            return self._memo.map(tenants)


_ROUTES = _RouteMemo()


def build_routing(tenants: Iterable[Tenant], meta_app_secrets: Sequence[SecretStr] = ()) -> Routing:
    by_slug: dict[str, TenantRoute] = {}
    owners: dict[str, str] = {}
    accounts: dict[str, list[str]] = {}
    tenants = list(tenants)
    for t, route in zip(tenants, _ROUTES.routes(tenants, meta_app_secrets), strict=True):
        by_slug[t.slug] = route
        if t.whatsapp is not None and t.whatsapp.phone_number_id:
            owners[t.whatsapp.phone_number_id] = t.slug
        if t.whatsapp is not None and t.whatsapp.business_account_id:
            accounts.setdefault(t.whatsapp.business_account_id, []).append(t.slug)
    return Routing(MappingProxyType(by_slug), MappingProxyType(owners),
                   account_owners=MappingProxyType({k: tuple(sorted(v)) for k, v in accounts.items()}),
                   meta_app_keys=Keys(meta_app_secrets))


class RoutingRefused(Exception):
    """The tenant files did not validate; carries the number of errors, never their values."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(errors)} error(s) in the tenant files: routing not (re)loaded; "
                         "run `tenantctl validate`")


def load_routing(tenants_dir: Path, meta_app_secrets: Sequence[SecretStr]) -> Routing:
    """Load and validate every tenant file; raise RoutingRefused when any has an error.

    Through the process's TenantCache (tenancy.loader.PROCESS_CACHE): in the gunicorn master, a SIGHUP
    decrypts and validates only the files whose bytes changed since the last load.
    """
    result = load_tenants([tenants_dir], check_config=False)
    log.info("tenant files: %d, decrypted and validated afresh: %d", result.files, result.fresh)
    if not result.ok:
        raise RoutingRefused([f.text() for f in result.errors])
    return build_routing([lt.tenant for lt in result.tenants], meta_app_secrets)


# -- the process-wide holder (see module docstring) ---------------------------------------------------

class _Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.routing = EMPTY


_holder = _Holder()


def current() -> Routing:
    return _holder.routing


def install(routing: Routing) -> None:
    with _holder.lock:
        _holder.routing = routing


# -- values providers issued once (store.provider_state) ----------------------------------------------

def with_provider_state(routing: Routing, secrets: Mapping[tuple[str, str], Sequence[str]]) -> Routing:
    """ROUTING with the webhook secrets kept in the provider state store put ahead of the file's.

    `secrets`: (slug, provider) → values, newest first (current, then the one it replaced). A tenant
    absent from ROUTING (not in the files) gets nothing: the state never creates a tenant.
    """
    if not secrets:
        return routing  # nothing to put ahead: no copy, which would touch (and so copy, after the fork) every route
    by_slug = dict(routing.tenants)
    for (slug, provider), values in secrets.items():
        tr = by_slug.get(slug)
        if tr is None or not any(values):
            continue
        old = tr.providers.get(provider)
        file_keys = [v.decode("utf-8") for v in old.keys.values] if old is not None else []
        keys = Keys([*values, *(k for k in file_keys if k not in values)])
        route = ProviderRoute(provider, keys, old.routing_keys, old.verify_token) if old is not None \
            else ProviderRoute(provider, keys)
        by_slug[slug] = TenantRoute(slug, MappingProxyType({**tr.providers, provider: route}))
    return replace(routing, tenants=MappingProxyType(by_slug))
