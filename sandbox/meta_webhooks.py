"""Status webhooks the sandbox sends after a message, as Meta does: `sent`, then `delivered`.

Shape: Meta's `messages` field change (`entry[].changes[].value.statuses[]`, the spec's webhook
components, v23.0), signed `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body with the app secret>`.
They go to the callback URL Meta would use: the phone number's override, else the WABA subscription's
`override_callback_uri` for the sending token's app, else the app's callback.

Only to loopback: `TENANTCTL_SANDBOX_WEBHOOK_TARGET` (e.g. `http://127.0.0.1:8080`) replaces the scheme and
host of the callback URL, path kept, so `https://<domain>/api/webhooks/wa/t/acme` reaches a local
`tenantctl serve`. Without it, or with a target that is not loopback, nothing is sent (recorded in the
delivery log as skipped). The app secret is the first of `TENANTCTL_META_APP_SECRETS` (the one the webhook
server checks with). Each webhook is tried at most `ATTEMPTS` times (Meta retries non-2xx answers), in a
daemon thread, so the messages call answers at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import httpx

TARGET_ENV = "TENANTCTL_SANDBOX_WEBHOOK_TARGET"
SECRET_ENV = "TENANTCTL_META_APP_SECRETS"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
ATTEMPTS = 4
BACKOFF_S = (0.2, 0.5, 1.0)
STEP_DELAY_S = 0.05  # between `sent` and `delivered`


@dataclasses.dataclass(frozen=True)
class Delivery:
    """What became of one status webhook: `delivered` (2xx), `failed` (attempts exhausted) or `skipped`."""

    message_id: str
    status: str
    outcome: str
    attempts: int
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class StatusJob:
    waba_id: str
    phone_number_id: str
    display_phone_number: str
    message_id: str
    recipient: str
    callback_url: str | None
    category: str  # pricing category: "utility" for a template, "service" in a customer-service window


def target_url(callback_url: str, target: str | None) -> str | None:
    """The loopback URL standing in for `callback_url`, or None (no target, or not loopback). Pure."""
    if not target:
        return None
    t, cb = urllib.parse.urlsplit(target), urllib.parse.urlsplit(callback_url)
    if t.scheme not in ("http", "https") or (t.hostname or "") not in LOOPBACK or cb.scheme != "https":
        return None
    path = t.path.rstrip("/") + cb.path
    return urllib.parse.urlunsplit((t.scheme, t.netloc, path, cb.query, ""))


def status_payload(job: StatusJob, status: str, at: float) -> dict[str, Any]:
    """Meta's status webhook for one message (`messages` field, one status)."""
    return {"object": "whatsapp_business_account", "entry": [{"id": job.waba_id, "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": job.display_phone_number,
                         "phone_number_id": job.phone_number_id},
            "statuses": [{
                "id": job.message_id, "status": status, "timestamp": str(int(at)),
                "recipient_id": job.recipient,
                "conversation": {"id": hashlib.sha256(job.recipient.encode()).hexdigest()[:32],
                                 "origin": {"type": job.category}},
                "pricing": {"billable": True, "pricing_model": "PMP", "category": job.category},
            }],
        }}]}]}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _secret() -> str | None:
    first = os.environ.get(SECRET_ENV, "").split(",")[0].strip()
    return first or None


class StatusSender:
    """Sends a message's status webhooks in the background; `log` keeps what became of each."""

    def __init__(self, *, target: Callable[[], str | None] = lambda: os.environ.get(TARGET_ENV),
                 secret: Callable[[], str | None] = _secret, sleep: Callable[[float], None] = time.sleep,
                 statuses: Sequence[str] = ("sent", "delivered")) -> None:
        self._target, self._secret, self._sleep, self.statuses = target, secret, sleep, tuple(statuses)
        self.log: list[Delivery] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def submit(self, job: StatusJob) -> None:
        thread = threading.Thread(target=self._run, args=(job,), name=f"meta-status-{job.message_id[-8:]}",
                                  daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait for every delivery under way (tests, and before the sandbox's state is saved)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _note(self, d: Delivery) -> None:
        with self._lock:
            self.log.append(d)

    def _run(self, job: StatusJob) -> None:
        url = target_url(job.callback_url, self._target()) if job.callback_url else None
        secret = self._secret()
        if url is None or secret is None:
            why = ("no callback URL" if not job.callback_url else
                   f"{TARGET_ENV} unset or not loopback" if url is None else f"{SECRET_ENV} unset")
            for status in self.statuses:
                self._note(Delivery(job.message_id, status, "skipped", 0, why))
            return
        with httpx.Client(timeout=5.0, follow_redirects=False, trust_env=False) as client:
            for i, status in enumerate(self.statuses):
                if i:
                    self._sleep(STEP_DELAY_S)
                d = self._post(client, url, secret, job, status)
                self._note(d)
                if d.outcome != "delivered":
                    return  # Meta does not report `delivered` for a message whose `sent` never arrived

    def _post(self, client: httpx.Client, url: str, secret: str, job: StatusJob, status: str) -> Delivery:
        body = json.dumps(status_payload(job, status, time.time()), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body),
                   "User-Agent": "facebookexternalua"}
        detail = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                resp = client.post(url, content=body, headers=headers)
                if resp.status_code < 300:
                    return Delivery(job.message_id, status, "delivered", attempt)
                detail = f"HTTP {resp.status_code}"
            except httpx.HTTPError as err:
                detail = type(err).__name__
            if attempt < ATTEMPTS:
                self._sleep(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)])
        return Delivery(job.message_id, status, "failed", ATTEMPTS, detail)
