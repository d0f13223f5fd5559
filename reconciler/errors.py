"""Errors of the reconciler. Every provider error is temporary (retry) or permanent (do not).

    ReconcileError
    ├── OutboundBlocked          the HTTP client refused to send (host not allowed, http outside sandbox)
    ├── ProviderError            a provider answered badly or not at all
    │   ├── TemporaryError       retry with backoff: 429, 5xx, timeouts, resets, rate-limit error codes
    │   │   └── AnswerLost       a write was sent but its answer lost (timeout/reset after sending, or a
    │   │                        5xx on a write): it may or may not have happened; read back to know
    │   └── PermanentError       do not retry
    │       ├── AuthError        401 / expired or wrong token (Meta code 190)
    │       ├── PermissionDenied 403 / missing permission (Meta 10, 200-299)
    │       ├── NotFound         404 / unknown object (Meta code 100 on an unknown ID)
    │       └── InvalidRequest   400 / the provider rejected what we sent
    ├── OutcomeUnknown           a write was sent, and neither its answer nor a read-back tells if it happened
    ├── StalePlan                the live state changed since the saved plan was made
    └── UnsafePlan               the plan deletes or rewrites too much without --force
reprs show the provider, status and request ID, never a body that might echo a secret.
"""

from __future__ import annotations


class ReconcileError(Exception):
    pass


class OutboundBlocked(ReconcileError):
    pass


class ProviderError(ReconcileError):
    def __init__(self, provider: str, message: str, *, status: int | None = None,
                 request_id: str | None = None, code: int | str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message
        self.status = status
        self.request_id = request_id
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        bits = [f"{self.provider}: {self.message}"]
        if self.status is not None:
            bits.append(f"HTTP {self.status}")
        if self.code is not None:
            bits.append(f"code {self.code}")
        if self.request_id:
            bits.append(f"request {self.request_id}")
        return " · ".join(bits)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self})"


class TemporaryError(ProviderError):
    pass


class AnswerLost(TemporaryError):
    """The request was sent and may have been applied; only reading the resource back can tell."""


class PermanentError(ProviderError):
    pass


class AuthError(PermanentError):
    pass


class PermissionDenied(PermanentError):
    pass


class NotFound(PermanentError):
    pass


class InvalidRequest(PermanentError):
    pass


class OutcomeUnknown(ReconcileError):
    """Whether a write happened cannot be told; `check` says what a person should look at."""

    def __init__(self, message: str, check: str) -> None:
        super().__init__(message)
        self.check = check


class StalePlan(ReconcileError):
    pass


class UnsafePlan(ReconcileError):
    pass
