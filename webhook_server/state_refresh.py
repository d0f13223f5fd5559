"""A worker's routing that follows the provider state store: a new Nuki secret is served without a restart.

`apply` stores the secret a provider returns (store.provider_state) a few milliseconds after the provider
issued it; this worker must accept webhooks signed with it without anyone sending SIGHUP. A request asks
the table's version (one indexed MAX) at most every `interval_s` seconds, and at most every
`MISS_GAP_S` when the tenant has no Nuki route yet (its first webhook may follow the creation at once);
values are decrypted only when the version moved. Only a request for such a provider (Nuki) triggers the
early check. A failing database or key keeps the last good routing
(logged once per version), so the state store can never take webhook routing down; nor hold a request: each
read has REFRESH_DEADLINE_S (store/bounded.py), past which a stuck database's connection is shut down and the
request goes on with the last routing, its commit then bounded by the event store's own deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from store import provider_state
from store.bounded import read_within
from tenancy.redact import REDACTOR
from webhook_server.routing import Routing, TenantRoute, with_provider_state

log = logging.getLogger("webhook_server.state")

MISS_GAP_S = 0.25
# How long the request that found a check due waits for it: the usual read takes a millisecond.
REFRESH_DEADLINE_S = 1.0
PROVIDER_OF_PATH = {"nuki.webhook_secret": "nuki"}  # state paths that are webhook secrets
STATE_PROVIDERS = frozenset(PROVIDER_OF_PATH.values())  # providers whose secrets the state store issues


class StateRefresher:
    def __init__(self, base: Routing, engine: Engine, identities: Sequence[Any], interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base = base
        self.merged = base
        self._engine = engine
        self._identities = list(identities)
        self._interval = interval_s
        self._clock = clock
        self._checked = float("-inf")
        self._version = -1
        self._lock = threading.Lock()

    def routing(self, miss: bool = False) -> Routing:
        now = self._clock()
        due = now - self._checked >= (MISS_GAP_S if miss else self._interval)
        if due and self._lock.acquire(blocking=False):  # one refresher at a time; others use the last one
            try:
                self._checked = now
                self._refresh()
            finally:
                self._lock.release()
        return self.merged

    def _refresh(self) -> None:
        engine = self._engine
        try:
            version = read_within(engine, lambda: provider_state.version(engine), REFRESH_DEADLINE_S)
            if version == self._version:
                return
            values = read_within(engine, lambda: provider_state.decrypt_all(engine, self._identities),
                                 REFRESH_DEADLINE_S)
        except provider_state.StateCryptoError as e:
            self._version = version  # a key that cannot open this version will not later: logged once per version
            log.error("provider state not read (keeping the last routing): %s", e)
            return
        except Exception as e:  # the database: tried again at the next check
            log.error("provider state not read (keeping the last routing): %s", type(e).__name__)
            return
        self._version = version
        secrets: dict[tuple[str, str], list[str]] = {}
        for (slug, path), (current, previous) in values.items():
            provider = PROVIDER_OF_PATH.get(path)
            if provider is not None:
                REDACTOR.add(current, previous)
                secrets[(slug, provider)] = [v for v in (current, previous) if v]  # forgotten: previous only
        self.merged = with_provider_state(self.base, secrets)
        log.info("provider state version %d: %d webhook secret(s) in use", version, len(secrets))


@dataclass(frozen=True)
class StateRouting(Routing):
    """The base routing whose `tenant()` answers from the refresher's latest merge."""

    refresher: StateRefresher | None = field(default=None, compare=False, repr=False, kw_only=True)

    def tenant(self, slug: str, provider: str | None = None) -> TenantRoute | None:
        """As Routing.tenant; a PROVIDER the state store issues secrets for (Nuki) that the tenant has
        no route for yet is looked up again after MISS_GAP_S. Other providers never wait for the store:
        a Hospitable request asking the database four times a second per worker measured ~5 % of a
        worker's time under load."""
        if self.refresher is None:
            return super().tenant(slug)
        found = self.refresher.routing().tenant(slug)
        wanted = STATE_PROVIDERS if provider is None else STATE_PROVIDERS & {provider}
        if found is not None and any(p not in found.providers for p in wanted):
            found = self.refresher.routing(miss=True).tenant(slug)
        return found


def following_state(base: Routing, engine: Engine, interval_s: float) -> Routing:
    """BASE, kept up to date with the provider state store (see the module docstring)."""
    try:
        identities = provider_state.identities_from_env()
    except provider_state.StateCryptoError as e:
        log.error("provider state not followed: %s", e)
        return base
    refresher = StateRefresher(base, engine, identities, interval_s)
    refresher.routing()
    return StateRouting(base.tenants, base.owners, base.loaded, base.account_owners, base.meta_app_keys,
                        refresher=refresher)
