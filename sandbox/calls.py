"""The call log: what clients asked each provider, so tests can assert "no write call"."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from typing import Any

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclasses.dataclass(frozen=True)
class Call:
    provider: str
    method: str
    path: str
    status: int | None  # None: no response reached the client (timeout, reset, lost response)
    fault: str | None = None

    @property
    def is_write(self) -> bool:
        # 2N's directory query is a POST that changes nothing.
        return self.method in WRITE_METHODS and not self.path.endswith("/api/dir/query")


class CallLog:
    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self, provider: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if provider is None or c.provider == provider]

    def writes(self, provider: str | None = None) -> list[Call]:
        return [c for c in self.calls(provider) if c.is_write]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def to_dict(self) -> dict[str, Any]:
        calls = self.calls()
        return {
            "calls": [dataclasses.asdict(c) for c in calls],
            "counts": dict(Counter(c.provider for c in calls)),
            "writes": dict(Counter(c.provider for c in calls if c.is_write)),
        }
