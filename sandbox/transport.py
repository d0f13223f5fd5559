"""In-process sandbox for tests and benchmarks: an httpx transport over the Falcon app.

Latency is a `time.sleep` outside the world's lock, so threaded clients overlap as against real
servers. Faults are decided before the app runs (nothing half-applied), except "lost-response", which
lets the write happen and then loses the answer.
"""

from __future__ import annotations

import time

import httpx

from sandbox.app import FAULT_HEADER, create_app, fault_response, provider_of
from sandbox.calls import Call
from sandbox.faults import FaultConfig, FaultInjector
from sandbox.world import World


class SandboxTransport(httpx.BaseTransport):
    def __init__(self, world: World, faults: FaultConfig | None = None, latency_s: float = 0.0) -> None:
        self.world = world
        self.latency_s = latency_s
        self.injector = FaultInjector(faults) if faults is not None else None
        self._inner = httpx.WSGITransport(app=create_app(world))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        provider = provider_of(request.url.path)
        kind = None
        if provider is not None and self.injector is not None:
            kind = self.injector.decide(provider, request.method, request.url.path)
        if kind is None:
            return self._inner.handle_request(request)
        assert provider is not None  # noqa: S101  (narrowing for mypy)
        if kind in ("429", "500"):
            status, headers, body = fault_response(
                self.world, provider, kind, self.injector.config.retry_after_s if self.injector else 0.0)
            self.world.calls.record(Call(provider, request.method, request.url.path, status, kind))
            return httpx.Response(status, headers=headers, content=body, request=request)
        if kind == "lost-response":
            request.headers[FAULT_HEADER] = kind
            self._inner.handle_request(request).read()
            raise httpx.ReadTimeout("sandbox: response lost after the write was applied", request=request)
        self.world.calls.record(Call(provider, request.method, request.url.path, None, kind))
        if kind == "timeout":
            raise httpx.ReadTimeout("sandbox: injected read timeout", request=request)
        raise httpx.RemoteProtocolError("sandbox: server disconnected without sending a response",
                                        request=request)

    def close(self) -> None:
        self._inner.close()


def sandbox_transport(world: World, *, faults: FaultConfig | None = None,
                      latency_s: float = 0.0) -> httpx.BaseTransport:
    """A transport serving `world`; safe to share between threads."""
    return SandboxTransport(world, faults=faults, latency_s=latency_s)
