"""Bounding the rows that refused webhook requests write (an unauthenticated client can send millions).

Every refusal is counted, but only the first ``sample`` refusals of one kind per minute get a row of
their own; the rest of that minute are folded into ONE row whose ``repeats`` says how many more it
stands for. A kind is (tenant, provider, status, reason class): the class is the reason before its
first ``:``, so refusals for a million made-up tenant slugs are still one kind. The rows a flood can
write are therefore at most (sample + 1) per kind, minute and worker process.

Pure bookkeeping with a lock: the group-commit store asks :meth:`RefusalFolder.admit` on the request
side and writes :meth:`RefusalFolder.due` rows with its next batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store.webhook_log import WebhookRecord

REASON_LENGTH = 64

_Kind = tuple[str | None, str, int, str, int]  # tenant, provider, status, reason class, minute


@dataclass
class _Folded:
    first: WebhookRecord
    count: int = 0
    last: datetime | None = None
    same_reason: bool = True


def _minute(at: datetime) -> int:
    return int(at.timestamp() // 60)


class RefusalFolder:
    """Decides which refusals get a row; accumulates the others per kind and minute.

    ``sample``: rows per kind and minute before folding starts (0 folds every refusal).
    """

    def __init__(self, sample: int = 20) -> None:
        self.sample = sample
        self._lock = threading.Lock()
        self._seen: dict[_Kind, int] = {}
        self._folded: dict[_Kind, _Folded] = {}
        self.folded_total = 0  # observability and tests

    @staticmethod
    def _kind(rec: WebhookRecord) -> _Kind:
        reason_class = (rec.reason or "").split(":", 1)[0]
        return (rec.tenant, rec.provider, rec.status_code, reason_class, _minute(rec.received_at))

    def admit(self, rec: WebhookRecord) -> bool:
        """True: write REC as its own row. False: it was counted into its kind's folded row."""
        kind = self._kind(rec)
        with self._lock:
            seen = self._seen.get(kind, 0)
            if seen < self.sample:
                self._seen[kind] = seen + 1
                return True
            folded = self._folded.get(kind)
            if folded is None:
                self._folded[kind] = _Folded(rec, 1, rec.received_at)
            else:
                folded.count += 1
                folded.last = rec.received_at
                folded.same_reason = folded.same_reason and folded.first.reason == rec.reason
            self.folded_total += 1
            return False

    def pending(self) -> bool:
        return bool(self._folded)

    def due(self, now: datetime | None = None) -> list[WebhookRecord]:
        """The folded rows of minutes that have ended before NOW (all of them when NOW is None)."""
        current = None if now is None else _minute(now)
        with self._lock:
            ready = [k for k in self._folded if current is None or k[4] < current]
            rows = [self._row(self._folded.pop(k)) for k in ready]
            for k in [k for k in self._seen if current is None or k[4] < current]:
                del self._seen[k]
        return rows

    @staticmethod
    def _row(f: _Folded) -> WebhookRecord:
        reason = f.first.reason if f.same_reason else f"{(f.first.reason or '').split(':', 1)[0]}:(various)"
        # One row for COUNT refusals: itself plus `repeats` more. Per-request details are not kept.
        return replace(f.first, received_at=f.last or f.first.received_at, reason=(reason or None) and
                       reason[:REASON_LENGTH], event_id=None, headers=None, body=None, latency_ms=None,
                       item_keys=(), repeats=f.count - 1)


__all__ = ["RefusalFolder"]
