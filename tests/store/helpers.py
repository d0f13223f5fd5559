"""Builders shared by the store tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from store.webhook_log import WebhookRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def rec(**overrides: Any) -> WebhookRecord:
    """An accepted Hospitable event for tenant acme, with whatever fields the test cares about."""
    values: dict[str, Any] = {
        "received_at": T0,
        "tenant": "acme",
        "provider": "hospitable",
        "outcome": "accepted",
        "status_code": 200,
        "reason": None,
        "event_id": "evt-1",
        "headers": {"content-type": "application/json"},
        "body_size": 15,
        "body": '{"id": "evt-1"}',
        "latency_ms": 1.5,
    }
    values.update(overrides)
    return WebhookRecord(**values)
