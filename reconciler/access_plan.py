"""What a change to the tenant file does to door access, before any provider is asked.

`access_changes(before, after, ctx)`: the providers' desired keypad codes and 2N users of `after`
diffed against those of `before`, as if the devices were in sync with `before`: exactly what the next
`plan` will list when they are. Uses only the providers' pure `desired`; no request is made.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.diff import diff
from reconciler.model import Action, Change
from reconciler.providers.base import ProviderContext
from reconciler.providers.registry import get_providers
from tenancy.model import Tenant

ACCESS_KINDS = ("keypad_code", "dir_user")


def access_changes(before: Tenant, after: Tenant, ctx: ProviderContext) -> list[Change]:
    out: list[Change] = []
    for provider in get_providers(["nuki", "twon"]):
        old = [r for r in provider.desired(before, ctx) if r.kind in ACCESS_KINDS] \
            if provider.applies_to(before) else []
        new = [r for r in provider.desired(after, ctx) if r.kind in ACCESS_KINDS] \
            if provider.applies_to(after) else []
        # The old desired state stands in for the live one: ours, and known in full.
        out += [c for c in diff(new, [replace(r, owned=True) for r in old]) if c.action is not Action.NOOP]
    return out
