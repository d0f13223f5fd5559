"""The reconciler's vocabulary: resources, changes and plans. Frozen values, no I/O.

A Resource is one thing at a provider that a tenant's file implies (desired) or that the provider has
(live), named by an address such as `whatsapp.waba_subscription[acme]` or `nuki.keypad_code[acme/17010001/maria]`.
Secret attributes hold `Sensitive` values: they compare by digest and render as `(sensitive)`, so a plan
can say a secret changed without ever containing it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, eq=False)
class Sensitive:
    """A secret attribute value. Equality and hashing use the SHA-256 digest; repr never shows it."""

    _value: str = field(repr=False)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self._value.encode("utf-8")).hexdigest()

    @property
    def fingerprint(self) -> str:
        return self.digest[:8]

    def reveal(self) -> str:
        """Only for the request that sends it to its provider."""
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sensitive) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return "Sensitive((sensitive))"

    __str__ = __repr__


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    MANUAL = "manual"  # only a person can do it (e.g. paste a URL into a provider's UI)
    REPORT = "report"  # something to know that tenantctl will not change (foreign resource, missing lock)
    NOOP = "noop"


class Severity(StrEnum):
    """How much a REPORT (or a note on another change) matters: `error` fails health and plan review."""

    ERROR = "error"
    INFO = "info"


# The order changes are applied in: creations before updates before deletions, so a replacement
# never leaves a gap (octoDNS applies in the same spirit).
ACTION_ORDER = {Action.CREATE: 0, Action.UPDATE: 1, Action.DELETE: 2, Action.MANUAL: 3, Action.REPORT: 4,
                Action.NOOP: 5}
WRITES = frozenset({Action.CREATE, Action.UPDATE, Action.DELETE})


@dataclass(frozen=True)
class Resource:
    provider: str  # "whatsapp" | "nuki" | "hospitable" | ...
    kind: str  # "waba_subscription", "keypad_code", ...
    tenant: str
    name: str  # unique within provider+kind+tenant, e.g. "17010001/maria"
    attrs: Mapping[str, Any] = field(default_factory=dict)  # JSON-like values or Sensitive
    remote_id: str | None = None  # the provider's ID, when known (live side)
    owned: bool = True  # False: made by hand or by someone else; never changed unless pruning

    @property
    def address(self) -> str:
        return f"{self.provider}.{self.kind}[{self.tenant}/{self.name}]" if self.name else \
            f"{self.provider}.{self.kind}[{self.tenant}]"


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any  # None when absent; Sensitive for secrets
    new: Any

    @property
    def sensitive(self) -> bool:
        return isinstance(self.old, Sensitive) or isinstance(self.new, Sensitive)


@dataclass(frozen=True)
class Change:
    action: Action
    provider: str
    kind: str
    tenant: str
    address: str
    fields: tuple[FieldChange, ...] = ()
    desired: Resource | None = None
    live: Resource | None = None
    note: str = ""  # instructions for MANUAL, the reason for REPORT, side effects (e.g. a secret written back)
    done: bool = False  # MANUAL steps already observed done (e.g. a verified webhook arrived)
    # An UPDATE that takes over a foreign live resource (`live`, made by hand) because it matches what the
    # file declares (`desired`) and the operator asked for it (`tenantctl adopt`): applying it marks it ours.
    adoption: bool = False
    severity: Severity | None = None  # REPORTs: error (something wrong) or info; None: a plain note

    @property
    def shown_note(self) -> str:
        """The note as people read it: prefixed by its severity ("error: lock 17 is not on ...")."""
        return f"{self.severity.value}: {self.note}" if self.severity is not None and self.note else self.note

    @property
    def is_write(self) -> bool:
        return self.action in WRITES

    @property
    def is_error(self) -> bool:
        """A REPORT of something wrong (a missing lock, an unverified number), not mere information.

        The severity field says it; a note written the old way ("error: ...", severity None) still counts.
        """
        if self.action is not Action.REPORT:
            return False
        return self.severity is Severity.ERROR or (self.severity is None and self.note.startswith("error:"))


def report(severity: Severity, provider: str, kind: str, tenant: str, address: str, note: str, *,
           desired: Resource | None = None, live: Resource | None = None) -> Change:
    """A REPORT: something to know that tenantctl will not change, with its severity."""
    return Change(Action.REPORT, provider, kind, tenant, address, desired=desired, live=live, note=note,
                  severity=severity)
