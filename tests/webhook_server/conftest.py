from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest
from pydantic import SecretStr

from tenancy.settings import Settings
from webhook_server.app import create_app
from webhook_server.routing import build_routing

from .helpers import ADMIN_TOKEN, FakeStore, FixedClock, app_secrets, tenants


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"meta_app_secrets": app_secrets(), "admin_token": SecretStr(ADMIN_TOKEN),
                            "max_body_bytes": 4096}
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def make_client(store: FakeStore) -> Callable[..., falcon.testing.TestClient]:
    def make(**settings: Any) -> falcon.testing.TestClient:
        s = make_settings(**settings)
        routing = build_routing(tenants(), s.meta_app_secrets)
        return falcon.testing.TestClient(create_app(routing, store, s, FixedClock()))

    return make


@pytest.fixture
def client(make_client: Callable[..., falcon.testing.TestClient]) -> falcon.testing.TestClient:
    return make_client()
