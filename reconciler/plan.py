"""The Plan: every tenant/provider's changes, what the live side looked like, a checksum, safety limits.

- Secrets never enter a plan document: a Sensitive value becomes `{"sensitive": true, "fingerprint": ...}`
  where the fingerprint is an HMAC keyed by the tenant's own secrets. A plain SHA-256 of a 6-digit
  keypad code could be reversed by trying all 531,441 codes; without the key it cannot.
- `live_digest` per tenant+provider digests the observed live resources. `apply FILE` re-observes and
  refuses (StalePlan) when a digest differs (someone changed the live side) or, digests equal, when the
  re-computed plan's checksum differs (the tenant files changed): it applies exactly the reviewed plan.
- The checksum covers the items (changes, digests, errors), not the timestamp, so the same situation
  gives the same checksum; editing a saved plan file breaks it and `load_plan` refuses the file.
- Safety (octoDNS-style): a tenant whose updates+deletes exceed `safety_min_changes` and
  `safety_share` of its live resources is unsafe; `apply` needs --force.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from reconciler.errors import ReconcileError, StalePlan
from reconciler.model import Action, Change, Resource, Sensitive
from tenancy.fingerprint import keyed_fingerprint

FORMAT_VERSION = 1


def fingerprint(value: Sensitive, key: bytes) -> str:
    return keyed_fingerprint(value.reveal(), key)


def encode_value(value: Any, key: bytes) -> Any:
    """A JSON value for an attribute; secrets become a keyed fingerprint."""
    if isinstance(value, Sensitive):
        return {"sensitive": True, "fingerprint": fingerprint(value, key)}
    if isinstance(value, SecretStr):  # a provider slip must not leak either
        return {"sensitive": True, "fingerprint": fingerprint(Sensitive(value.get_secret_value()), key)}
    if isinstance(value, Mapping):
        return {str(k): encode_value(v, key) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set | frozenset):
        items = [encode_value(v, key) for v in value]
        return sorted(items, key=_canonical) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return encode_value(value.value, key)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode_change(change: Change, key: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {
        "address": change.address,
        "action": change.action.value,
        "provider": change.provider,
        "kind": change.kind,
        "fields": [
            {"field": f.field, "old": encode_value(f.old, key), "new": encode_value(f.new, key),
             "sensitive": f.sensitive}
            for f in change.fields
        ],
    }
    if change.note:
        out["note"] = change.note
    if change.action is Action.MANUAL:
        out["done"] = change.done
    if change.adoption:
        out["adoption"] = True
    if change.severity is not None:
        out["severity"] = change.severity.value
    return out


def live_digest(resources: Iterable[Resource], key: bytes) -> str:
    rows = sorted(
        ({"address": r.address, "remote_id": r.remote_id, "owned": r.owned,
          "attrs": encode_value(r.attrs, key)} for r in resources),
        key=lambda row: (str(row["address"]), str(row["remote_id"])),
    )
    return "sha256:" + hashlib.sha256(_canonical(rows).encode()).hexdigest()


@dataclass(frozen=True)
class ProviderPlan:
    """One tenant/provider: its changes, or the error that kept us from observing it."""

    tenant: str
    provider: str
    changes: tuple[Change, ...] = ()
    live_digest: str | None = None  # None when observing failed
    live_count: int = 0  # live resources we own (the base of the safety share)
    error: str | None = None
    # When observing failed: the addresses whose changes (if any) this error hides from the plan.
    hidden: tuple[str, ...] = ()

    @property
    def writes(self) -> list[Change]:
        return [c for c in self.changes if c.is_write]


@dataclass(frozen=True)
class Plan:
    items: tuple[ProviderPlan, ...]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    sandbox: bool = False
    keys: Mapping[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    prune: bool = False  # foreign resources the providers can delete are planned as deletions

    def key(self, tenant: str) -> bytes:
        return self.keys.get(tenant, b"")

    @property
    def changes(self) -> list[Change]:
        return [c for item in self.items for c in item.changes]

    @property
    def writes(self) -> list[Change]:
        return [c for c in self.changes if c.is_write]

    @property
    def manual_pending(self) -> list[Change]:
        return [c for c in self.changes if c.action is Action.MANUAL and not c.done]

    @property
    def has_changes(self) -> bool:
        """What `plan`'s exit code 2 means: there are writes to apply (manual steps do not count:
        `apply` cannot do them, and they would keep a converged plan from ever reaching 0)."""
        return bool(self.writes)

    @property
    def errors(self) -> list[ProviderPlan]:
        return [i for i in self.items if i.error is not None]

    @property
    def tenants(self) -> list[str]:
        return sorted({i.tenant for i in self.items})

    def items_json(self) -> list[dict[str, Any]]:
        return [item_json(i, self.key(i.tenant)) for i in self.items]

    @property
    def checksum(self) -> str:
        return checksum(self.items_json(), sandbox=self.sandbox)

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for c in self.changes:
            out[c.action.value] += 1
        out["errors"] = len(self.errors)
        return out


def item_json(item: ProviderPlan, key: bytes) -> dict[str, Any]:
    return {
        "tenant": item.tenant,
        "provider": item.provider,
        "live_digest": item.live_digest,
        "live_count": item.live_count,
        "error": item.error,
        **({"hidden": list(item.hidden)} if item.hidden else {}),
        "changes": [encode_change(c, key) for c in item.changes if c.action is not Action.NOOP],
    }


def checksum(items: Sequence[Mapping[str, Any]], *, sandbox: bool) -> str:
    doc = {"format_version": FORMAT_VERSION, "sandbox": sandbox, "items": list(items)}
    return "sha256:" + hashlib.sha256(_canonical(doc).encode()).hexdigest()


# Safety -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SafetyViolation:
    tenant: str
    rewrites: int  # updates + deletes
    existing: int

    def __str__(self) -> str:
        share = self.rewrites / self.existing if self.existing else 1.0
        return (f"{self.tenant}: {self.rewrites} update(s)/delete(s) of {self.existing} live resource(s) "
                f"({share:.0%})")


def safety_violations(plan: Plan, *, share: float, min_changes: int) -> list[SafetyViolation]:
    out: list[SafetyViolation] = []
    for tenant in plan.tenants:
        items = [i for i in plan.items if i.tenant == tenant]
        rewrites = sum(1 for i in items for c in i.changes if c.action in (Action.UPDATE, Action.DELETE))
        existing = sum(i.live_count for i in items)
        if rewrites > min_changes and rewrites > share * existing:
            out.append(SafetyViolation(tenant, rewrites, existing))
    return out


# Plan files -------------------------------------------------------------------------------------------
class PlanFileError(ReconcileError):
    pass


@dataclass(frozen=True)
class SavedPlan:
    checksum: str
    sandbox: bool
    created_at: str
    items: tuple[Mapping[str, Any], ...]
    prune: bool = False  # made with --prune: re-planned the same way (its deletions are in the checksum)

    @property
    def targets(self) -> list[tuple[str, str]]:
        return [(str(i["tenant"]), str(i["provider"])) for i in self.items]

    @property
    def tenants(self) -> list[str]:
        return sorted({t for t, _ in self.targets})

    @property
    def providers(self) -> list[str]:
        return sorted({p for _, p in self.targets})


def save_plan(document: Mapping[str, Any], path: Path) -> None:
    """Write the JSON document (render.plan_document) of a plan; it holds no secret by construction."""
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def load_plan(path: Path) -> SavedPlan:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PlanFileError(f"cannot read plan file {path}: {e.__class__.__name__}") from None
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        raise PlanFileError(f"{path}: not a tenantctl plan (format_version {FORMAT_VERSION} expected)")
    items = doc.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PlanFileError(f"{path}: no items")
    stripped = [{k: i.get(k) for k in ("tenant", "provider", "live_digest", "live_count", "error")}
                | ({"hidden": i["hidden"]} if "hidden" in i else {}) | {"changes": i.get("changes")}
                for i in items]
    sandbox = bool(doc.get("sandbox", False))
    if checksum(stripped, sandbox=sandbox) != doc.get("checksum"):
        raise PlanFileError(f"{path}: checksum mismatch: the plan file was edited after it was made")
    return SavedPlan(str(doc["checksum"]), sandbox, str(doc.get("created_at", "")), tuple(stripped),
                     prune=bool(doc.get("prune", False)))


def check_fresh(saved: SavedPlan, current: Plan) -> None:
    """Raise StalePlan unless `current` (re-observed now) is exactly the saved plan."""
    if saved.sandbox != current.sandbox:
        where = "the sandbox" if saved.sandbox else "the real providers"
        raise StalePlan(f"the plan was made against {where}; apply it the same way")
    errors = [f"{i['tenant']}/{i['provider']}" for i in saved.items if i.get("error")]
    if errors:
        raise StalePlan(f"the saved plan has errors ({', '.join(errors)}): make a new plan")
    now = {(i.tenant, i.provider): i for i in current.items}
    changed: list[str] = []
    for saved_item in saved.items:
        target = (str(saved_item["tenant"]), str(saved_item["provider"]))
        cur = now.get(target)
        if cur is None or cur.error is not None or cur.live_digest != saved_item.get("live_digest"):
            changed.append("/".join(target) + (f" ({cur.error})" if cur is not None and cur.error else ""))
    if changed:
        raise StalePlan("the live state changed since the plan was made: " + ", ".join(changed)
                        + "; run plan again and review it")
    if current.checksum != saved.checksum:
        raise StalePlan("the tenant files (desired state) changed since the plan was made; run plan again")
