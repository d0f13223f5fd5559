"""A fake platform endpoint: where `tenantctl deliver` hands accepted webhooks in the sandbox.

Mounted in the sandbox app (sandbox/app.py):
  POST /platform/{name}        receive one delivery: verify its Standard Webhooks signature, record it,
                               answer as the current mode says (2xx, a failure, slowly, or "down")
  GET|DELETE /_platform/received   the deliveries recorded (each attempt, with the status answered) | clear
  GET|PUT /_platform/mode          how to answer: {"fail_percent": 0-100, "fail_status": 500,
                                   "delay_s": 0, "down_for_s": 0, "retry_after_s": null}

The signature is checked here with its own few lines of HMAC (not tenantctl's signer), against the secrets
in $TENANTCTL_DELIVERY_SECRETS; a delivery that does not verify is answered 401 and recorded as such.
The /_platform/* endpoints are admin: served, they need the sandbox run's token (`Authorization: Bearer`,
from `<state dir>/sandbox-admin-token`; `sandbox platform`'s from `platform-admin-token`), like /_sandbox/*.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import falcon

from sandbox.common import AdminResource, send_json

SECRETS_ENV = "TENANTCTL_DELIVERY_SECRETS"


def _keys(secrets: str) -> list[bytes]:
    keys = []
    for secret in secrets.split(","):
        text = secret.strip().removeprefix("whsec_")
        if text:
            try:
                key = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                continue
            if key:  # a typo that decodes to nothing would be a key anyone can sign with
                keys.append(key)
    return keys


def signature_ok(keys: list[bytes], msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = [base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode() for k in keys]
    given = [p.partition(",")[2] for p in header.split() if p.startswith("v1,")]
    return any(hmac.compare_digest(g, e) for g in given for e in expected)


# The longest a mode may delay each answer, keep the platform down, or ask a sender to wait (seconds).
MAX_DELAY_S = 3600.0
MAX_DOWN_FOR_S = 7 * 24 * 3600.0
MAX_RETRY_AFTER_S = 7 * 24 * 3600.0
_MODE_FIELDS = {"fail_percent", "fail_status", "delay_s", "down_for_s", "retry_after_s"}


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON has")


def _number(data: dict[str, Any], field: str, default: float, low: float, high: float) -> float:
    value = data.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"{field}: a number {low:g}-{high:g}")
    return float(value)


@dataclass
class Mode:
    fail_percent: float = 0.0
    fail_status: int = 500
    delay_s: float = 0.0
    down_until: float = 0.0  # time.time() until which every request is answered 503
    retry_after_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "down_for_s": max(0.0, self.down_until - time.time())}


@dataclass(frozen=True)
class Received:
    at: float
    path: str
    webhook_id: str
    timestamp: str
    signature: str
    attempt: str
    tenant: str
    provider: str
    event_id: str
    received_at: str
    content_type: str
    body_sha256: str
    body_size: int
    signature_ok: bool
    status: int


class Platform:
    """What the fake platform knows and does, whichever server serves it (Falcon here, aiohttp in
    sandbox/platform_server.py): modes, the deliveries received, the last body delivered per webhook-id."""

    def __init__(self, secrets: str, rng: random.Random | None = None) -> None:
        self.keys = _keys(secrets)
        self.mode = Mode()
        self.received: list[Received] = []
        self.bodies: dict[str, bytes] = {}  # the last body per webhook-id
        self.lock = threading.Lock()
        self.rng = rng or random.Random()

    def draw(self) -> tuple[Mode, bool]:
        """The mode for one delivery (a copy) and whether it is one of the ``fail_percent`` that fail."""
        with self.lock:
            return Mode(**asdict(self.mode)), self.rng.random() * 100 < self.mode.fail_percent

    def answer(self, name: str, headers: Mapping[str, str], body: bytes, mode: Mode, fail: bool
               ) -> tuple[int, dict[str, str]]:
        """Verify, record and decide one delivery (after the mode's delay); ``headers`` with lower-case names.

        Returns the status and the response headers to send."""
        msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
        ok = bool(self.keys) and signature_ok(self.keys, msg_id, ts, body, headers.get("webhook-signature", ""))
        if not ok:
            status = 401
        elif time.time() < mode.down_until:
            status = 503
        elif fail:
            status = mode.fail_status
        else:
            status = 204
        record = Received(
            at=time.time(), path=f"/platform/{name}", webhook_id=msg_id, timestamp=ts,
            signature=headers.get("webhook-signature", ""),
            attempt=headers.get("x-tenantctl-attempt", ""), tenant=headers.get("x-tenantctl-tenant", ""),
            provider=headers.get("x-tenantctl-provider", ""), event_id=headers.get("x-tenantctl-event-id", ""),
            received_at=headers.get("x-tenantctl-received-at", ""), content_type=headers.get("content-type", ""),
            body_sha256=hashlib.sha256(body).hexdigest(), body_size=len(body), signature_ok=ok, status=status,
        )
        with self.lock:
            self.received.append(record)
            if status < 300:
                self.bodies[msg_id] = body
        if status in (429, 503) and mode.retry_after_s is not None:
            return status, {"Retry-After": str(int(mode.retry_after_s))}
        return status, {}

    def received_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(r) for r in self.received]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.bodies.clear()

    def body(self, webhook_id: str) -> bytes | None:
        with self.lock:
            return self.bodies.get(webhook_id)

    def set_mode(self, raw: bytes) -> Mode:
        """A new mode from a PUT body (a JSON object of Mode's fields and ``down_for_s``); ValueError if invalid.

        Every field is a JSON number (``fail_status`` an integer, ``retry_after_s`` also null), finite and in
        range: a NaN, an Infinity or a string would be taken and only fail later, on each delivery (a 500 or a
        sleep that never ends) or in the mode's own JSON (``NaN`` is no JSON)."""
        try:
            data = json.loads(raw or b"{}", parse_constant=_no_constant)
            if not isinstance(data, dict):
                raise TypeError("a JSON object")
            unknown = set(data) - _MODE_FIELDS
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))} (known: "
                                 f"{', '.join(sorted(_MODE_FIELDS))})")
            fail_percent = _number(data, "fail_percent", 0.0, 0, 100)
            delay_s = _number(data, "delay_s", 0.0, 0, MAX_DELAY_S)
            down_for = _number(data, "down_for_s", 0.0, 0, MAX_DOWN_FOR_S)
            fail_status = data.get("fail_status", 500)
            if type(fail_status) is not int or not 400 <= fail_status <= 599:
                raise ValueError("fail_status: an integer 400-599")
            retry_after = None if data.get("retry_after_s") is None else _number(
                data, "retry_after_s", 0.0, 0, MAX_RETRY_AFTER_S)
            mode = Mode(fail_percent=fail_percent, fail_status=fail_status, delay_s=delay_s,
                        down_until=time.time() + down_for if down_for > 0 else 0.0, retry_after_s=retry_after)
        except (ValueError, TypeError, RecursionError) as exc:
            raise ValueError(str(exc)) from exc
        with self.lock:
            self.mode = mode
        return mode

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = req.bounded_stream.read()
        mode, fail = self.draw()
        if mode.delay_s:
            time.sleep(mode.delay_s)
        status, headers = self.answer(name, {k.lower(): v for k, v in req.headers.items()}, body, mode, fail)
        resp.status = status
        for header, value in headers.items():
            resp.set_header(header, value)


class ReceivedResource(AdminResource):
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, 200, self.platform.received_list())

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.platform.clear()
        resp.status = 204


class BodyResource(AdminResource):
    """GET /_platform/body/{webhook_id}: the last body delivered with 2xx under that id (raw bytes)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def on_get(self, req: falcon.Request, resp: falcon.Response, webhook_id: str) -> None:
        body = self.platform.body(webhook_id)
        if body is None:
            raise falcon.HTTPNotFound()
        resp.content_type = "application/octet-stream"
        resp.data = body


class ModeResource(AdminResource):
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, 200, self.platform.mode.to_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            mode = self.platform.set_mode(req.bounded_stream.read())
        except ValueError as exc:
            raise falcon.HTTPBadRequest(title="invalid mode", description=str(exc)) from exc
        send_json(resp, 200, mode.to_dict())


def register(app: falcon.App[falcon.Request, falcon.Response], secrets: str | None = None) -> Platform:
    platform = Platform(os.environ.get(SECRETS_ENV, "") if secrets is None else secrets)
    app.add_route("/platform/{name}", platform)
    app.add_route("/_platform/received", ReceivedResource(platform))
    app.add_route("/_platform/body/{webhook_id}", BodyResource(platform))
    app.add_route("/_platform/mode", ModeResource(platform))
    return platform
