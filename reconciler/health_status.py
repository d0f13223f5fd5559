"""Health in the operators' vocabulary: statuses, their order, the exit code and the report formats. Pure.

Health follows Argo CD's assessment (healthy, progressing, degraded, missing, unknown, suspended); the sync
status from a fresh plan is kept apart (in sync / out of sync), as Crossplane keeps Synced apart from
Ready. A row names its resource by address, says how long its check took and, when it is not healthy,
what an admin can do about it.

Formats: text rows for people; JSON (`FORMAT_VERSION`, documented in docs/health.md); JUnit XML in the
shape GitHub's test reporters read (one `<testsuite>` per tenant, one `<testcase>` per row; degraded and
missing rows of active tenants are `<failure>`, unknown/progressing/suspended are `<skipped>`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from xml.etree import ElementTree as ET

FORMAT_VERSION = 1


class Health(StrEnum):
    HEALTHY = "healthy"
    PROGRESSING = "progressing"
    DEGRADED = "degraded"
    MISSING = "missing"
    UNKNOWN = "unknown"
    SUSPENDED = "suspended"


class Sync(StrEnum):
    IN_SYNC = "in sync"
    OUT_OF_SYNC = "out of sync"


# Worst first: a tenant's or provider's summary is its worst row (Argo CD's aggregation order).
SEVERITY: dict[Health, int] = {Health.DEGRADED: 0, Health.MISSING: 1, Health.UNKNOWN: 2,
                               Health.PROGRESSING: 3, Health.SUSPENDED: 4, Health.HEALTHY: 5}
FAILING = frozenset({Health.DEGRADED, Health.MISSING})


@dataclass(frozen=True)
class Row:
    """One checked resource. `duration_s` in seconds; `hint` empty when healthy."""

    tenant: str
    provider: str
    address: str
    health: Health
    sync: Sync | None
    detail: str
    hint: str
    duration_s: float
    tenant_status: str  # onboarding | active | suspended (the tenant file's status)


def for_tenant_status(health: Health, tenant_status: str, hint: str) -> tuple[Health, str]:
    """Overlay the tenant's lifecycle: an onboarding tenant's gaps are progress, a suspended one is paused.

    Unknown stays unknown (we could not look); healthy stays healthy.
    """
    if tenant_status == "suspended":
        return Health.SUSPENDED, "the tenant is suspended: set status: active to check it again"
    if tenant_status == "onboarding" and health in FAILING:
        return Health.PROGRESSING, hint
    return health, hint


def worst(statuses: Sequence[Health]) -> Health:
    return min(statuses, key=SEVERITY.__getitem__) if statuses else Health.UNKNOWN


def _fails(r: Row) -> bool:
    return r.health in FAILING and r.tenant_status == "active"


def exit_code(rows: Sequence[Row]) -> int:
    """1 when a row of an active tenant is degraded or missing; 0 otherwise (unknown never fails)."""
    return 1 if any(_fails(r) for r in rows) else 0


def counts(rows: Sequence[Row]) -> dict[str, int]:
    out = {h.value: 0 for h in Health}
    for r in rows:
        out[r.health.value] += 1
    return out


def to_json_doc(rows: Sequence[Row], *, checked_at: datetime, window_s: float) -> dict[str, Any]:
    """The versioned JSON document (docs/health.md): `format_version`, `checked_at` (ISO 8601 UTC),
    `window_seconds`, `exit_code`, `summary` (count per health status) and `rows`."""
    return {
        "format_version": FORMAT_VERSION,
        "checked_at": checked_at.isoformat(),
        "window_seconds": window_s,
        "exit_code": exit_code(rows),
        "summary": counts(rows),
        "rows": [{
            "tenant": r.tenant, "tenant_status": r.tenant_status, "provider": r.provider, "address": r.address,
            "health": r.health.value, "sync": None if r.sync is None else r.sync.value, "detail": r.detail,
            "hint": r.hint, "duration_ms": round(r.duration_s * 1000, 1),
        } for r in rows],
    }


def to_junit(rows: Sequence[Row], *, checked_at: datetime) -> str:
    """JUnit XML: `<testsuites>` → a `<testsuite>` per tenant → a `<testcase>` per row (time in seconds)."""
    root = ET.Element("testsuites", name="tenantctl health")
    by_tenant: dict[str, list[Row]] = {}
    for r in rows:
        by_tenant.setdefault(r.tenant, []).append(r)
    total = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
    for tenant, trs in by_tenant.items():
        failures = sum(1 for r in trs if _fails(r))
        skipped = sum(1 for r in trs if r.health is not Health.HEALTHY and not _fails(r))
        secs = sum(r.duration_s for r in trs)
        suite = ET.SubElement(root, "testsuite", name=tenant, tests=str(len(trs)), failures=str(failures),
                              errors="0", skipped=str(skipped), time=f"{secs:.3f}",
                              timestamp=checked_at.replace(tzinfo=None).isoformat(timespec="seconds"))
        for r in trs:
            case = ET.SubElement(suite, "testcase", name=r.address, classname=f"{tenant}.{r.provider}",
                                 time=f"{r.duration_s:.3f}")
            message = f"{r.health.value}: {r.detail}"
            text = "\n".join(x for x in (r.detail, f"what to do: {r.hint}" if r.hint else "") if x)
            if _fails(r):
                ET.SubElement(case, "failure", message=message, type=r.health.value).text = text
            elif r.health is not Health.HEALTHY:
                ET.SubElement(case, "skipped", message=message)
            out = ET.SubElement(case, "system-out")
            out.text = f"health={r.health.value} sync={r.sync.value if r.sync else '-'}"
        total["tests"] += len(trs)
        total["failures"] += failures
        total["skipped"] += skipped
        total["time"] += secs
    root.set("tests", str(total["tests"]))
    root.set("failures", str(total["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(total["skipped"]))
    root.set("time", f"{total['time']:.3f}")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> float:
    """"24h", "30m", "7d", "90s" (or plain seconds) → seconds. Raises ValueError naming the accepted forms."""
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _UNITS else "s"
    number = raw[:-1] if raw[-1:] in _UNITS else raw
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration: use e.g. 24h, 30m, 7d or 90s") from None
    if value <= 0:
        raise ValueError(f"{text!r}: the window must be positive")
    return value * _UNITS[unit]
