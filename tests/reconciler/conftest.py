"""A tiny stand-in for reconciler.http: the Http protocol over any httpx transport, errors by status.

It keeps what providers rely on (errors as reconciler.errors, Graph's `error.code` on the error) and
nothing else: no retries, no allow-list. The real client replaces it once it exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest

from reconciler.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    PermanentError,
    PermissionDenied,
    ProviderError,
    TemporaryError,
)

_BY_STATUS: dict[int, type[ProviderError]] = {400: InvalidRequest, 401: AuthError, 403: PermissionDenied,
                                              404: NotFound, 409: InvalidRequest, 422: InvalidRequest}


class SimpleHttp:
    def __init__(self, transport: httpx.BaseTransport) -> None:
        self.client = httpx.Client(transport=transport, timeout=5.0)

    def request(self, provider: str, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None, json: Any = None,
                data: Mapping[str, str] | None = None, auth: httpx.Auth | None = None,
                secrets: Sequence[str] = (), tenant: str | None = None) -> httpx.Response:
        resp = self.client.request(method, url, headers=headers, params=params, json=json, data=data,  # type: ignore[arg-type]
                                   auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT)
        if resp.status_code < 400:
            return resp
        code = None
        try:
            body = resp.json()
            err = body.get("error") if isinstance(body, dict) else None
            code = err.get("code") if isinstance(err, dict) else None  # Graph's error.code
        except ValueError:
            pass
        cls = TemporaryError if resp.status_code == 429 or resp.status_code >= 500 else \
            _BY_STATUS.get(resp.status_code, PermanentError)
        raise cls(provider, f"{method} {httpx.URL(url).path} failed", status=resp.status_code, code=code)


class NoHttp:
    """For plan(): any request is a test failure."""

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        raise AssertionError("plan() made an HTTP request")


@pytest.fixture
def no_http() -> NoHttp:
    return NoHttp()
