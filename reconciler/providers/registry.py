"""The explicit provider registry: a name in a tenant file or on the command line picks one of these.

No class paths from configuration: adding a provider means adding it here.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.providers.base import Provider
from reconciler.providers.beds24 import Beds24Provider
from reconciler.providers.hospitable import HospitableProvider
from reconciler.providers.nuki import NukiProvider
from reconciler.providers.smtp import SmtpProvider
from reconciler.providers.twon import TwoNProvider
from reconciler.providers.whatsapp import WhatsAppProvider

_ALL: tuple[Provider, ...] = (HospitableProvider(), WhatsAppProvider(), NukiProvider(), Beds24Provider(),
                               TwoNProvider(), SmtpProvider())
PROVIDERS: dict[str, Provider] = {p.name: p for p in _ALL}


def get_providers(names: Iterable[str] | None = None) -> list[Provider]:
    """The providers named (all of them when `names` is None), in registry order; unknown names raise."""
    if names is None:
        return list(PROVIDERS.values())
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in PROVIDERS]
    if unknown:
        raise KeyError(f"unknown provider(s): {', '.join(unknown)} (known: {', '.join(PROVIDERS)})")
    return [p for n, p in PROVIDERS.items() if n in wanted]
