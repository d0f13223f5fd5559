"""What a long run reports while it runs: an optional observer the engine and the HTTP client call.

Pure vocabulary, no I/O: the CLI implements it (tenantctl.progress) with a live display on a terminal or
one line per finished tenant elsewhere. Every method may be called from any worker thread at any time, so
implementations must be thread-safe and fast (they run inside provider calls).
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, phase: str, total: int) -> None:
        """A phase begins ("plan", "apply", "health") over `total` tenants."""

    def tenant_done(self, tenant: str, summary: str) -> None:
        """One tenant of the phase finished; `summary` says how ("3 changes", "1 failed")."""

    def call(self, provider: str, what: str) -> None:
        """A request is about to be sent: `what` is "GET https://host/path" (query left out, scrubbed)."""

    def wait(self, provider: str, reason: str, seconds: float) -> None:
        """A retry waits `seconds` because of `reason` ("429", "503", "connect")."""


class NoProgress:
    """The default: report nothing."""

    def start(self, phase: str, total: int) -> None:
        pass

    def tenant_done(self, tenant: str, summary: str) -> None:
        pass

    def call(self, provider: str, what: str) -> None:
        pass

    def wait(self, provider: str, reason: str, seconds: float) -> None:
        pass


NO_PROGRESS = NoProgress()


def count_summary(counts: dict[str, int]) -> str:
    """{"create": 2, "update": 0, "error": 1} → "2 create, 1 error"; "no changes" when all are zero."""
    parts = [f"{n} {name}" for name, n in counts.items() if n]
    return ", ".join(parts) or "no changes"
