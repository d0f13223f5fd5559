"""Fixtures for the reconciler core: a config that allows only test hosts, fake providers."""

from __future__ import annotations

import pytest

from reconciler.config import Limits, ProviderLimit, ReconcileConfig
from reconciler.retry import RetryPolicy


@pytest.fixture
def config() -> ReconcileConfig:
    return ReconcileConfig(
        base_urls={"nuki": "https://api.nuki.io", "whatsapp": "https://graph.facebook.com/v23.0"},
        allowed_hosts={"nuki": frozenset({"api.nuki.io"}), "whatsapp": frozenset({"graph.facebook.com"})},
        sandbox=False,
        limits=Limits(providers={}, default=ProviderLimit(concurrency=4, rate=None),
                      retry=RetryPolicy(max_attempts=4, base_delay_s=0.01, read_attempts=None)),
        domain="ops.example.com",
    )
