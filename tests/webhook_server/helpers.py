"""Signing helpers, fakes and in-memory tenants for the webhook-server tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from store.errors import DatabaseUnavailable
from store.webhook_log import RecordResult, WebhookRecord
from tenancy.model import Tenant

APP_SECRET = "meta-app-secret-current-7f3a9c"
OLD_APP_SECRET = "meta-app-secret-previous-0b1e44"
ADMIN_TOKEN = "admin-token-5d2c8e1f9a"

ACME_PHONE = "106540352242922"
BLUE_PHONE = "106540352242933"
ACME_WABA = "102290129340398"
BLUE_WABA = "102290129340399"

SECRETS = {
    "acme": {
        "hospitable": "acme-hosp-secret-aa11", "hospitable_prev": "acme-hosp-previous-bb22",
        "verify_token": "acme-verify-token-cc33", "nuki": "acme-nuki-secret-dd44",
        "beds24": "acme-beds24-secret-ee55",
    },
    "blue-harbor": {
        "hospitable": "blue-hosp-secret-ff66", "verify_token": "blue-verify-token-0077",
        "beds24": "blue-beds24-secret-1188",
    },
}


def sign_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_meta(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + sign_hex(secret, body)


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def tenant_dicts() -> list[dict[str, Any]]:
    a, b = SECRETS["acme"], SECRETS["blue-harbor"]
    return [
        {
            "slug": "acme", "display_name": "Acme", "status": "active",
            "hospitable": {"api_key": "acme-api-key-9911", "webhook_secret": a["hospitable"],
                           "previous_webhook_secret": a["hospitable_prev"]},
            "whatsapp": {"phone_number_id": ACME_PHONE, "business_account_id": ACME_WABA,
                         "verify_token": a["verify_token"],
                         "access_token": "acme-wa-access-2233"},
            "nuki": {"api_token": "acme-nuki-api-4455", "webhook_secret": a["nuki"]},
            "beds24": {"token": "acme-beds24-token-6677", "webhook_secret": a["beds24"]},
        },
        {
            "slug": "blue-harbor", "display_name": "Blue Harbor", "status": "active",
            "hospitable": {"api_key": "blue-api-key-8899", "webhook_secret": b["hospitable"]},
            "whatsapp": {"phone_number_id": BLUE_PHONE, "business_account_id": BLUE_WABA,
                         "verify_token": b["verify_token"],
                         "access_token": "blue-wa-access-0011"},
            # Nuki without a webhook secret yet: its webhook URL does not exist.
            "nuki": {"api_token": "blue-nuki-api-2211"},
            "beds24": {"token": "blue-beds24-token-3344", "webhook_secret": b["beds24"]},
        },
        # Only WhatsApp, still onboarding: no phone number ID yet.
        {"slug": "casa-sol", "display_name": "Casa Sol",
         "whatsapp": {"verify_token": "casa-verify-token-5566", "access_token": "casa-wa-access-7788"}},
    ]


def tenants() -> list[Tenant]:
    return [Tenant.model_validate(d) for d in tenant_dicts()]


def app_secrets() -> list[SecretStr]:
    return [SecretStr(APP_SECRET), SecretStr(OLD_APP_SECRET)]


def wa_payload(phone: str = ACME_PHONE, *message_ids: str) -> dict[str, Any]:
    """A messages change for PHONE, sent from that number's WABA (acme's for a number nobody owns)."""
    ids = message_ids or ("wamid.TEST1",)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": BLUE_WABA if phone == BLUE_PHONE else ACME_WABA, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone},
            "messages": [{"from": "16505551234", "id": i, "timestamp": "1749416383", "type": "text",
                          "text": {"body": "hello"}} for i in ids],
        }}]}],
    }


class FixedClock:
    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        self._mono += 0.001
        return self._mono


@dataclass
class FakeStore:
    """The EventStore contract in memory: de-duplicates accepted events; can be made unavailable."""

    records: list[WebhookRecord] = field(default_factory=list)
    fail: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, rec: WebhookRecord) -> RecordResult:
        with self._lock:
            if self.fail:
                raise DatabaseUnavailable("could not record the webhook: OperationalError: down")
            if rec.outcome == "accepted" and rec.event_id is not None and any(
                r.outcome == "accepted" and (r.provider, r.tenant, r.event_id)
                == (rec.provider, rec.tenant, rec.event_id) for r in self.records
            ):
                self.records.append(rec.as_duplicate())
                return RecordResult.DUPLICATE
            self.records.append(rec)
            return RecordResult.STORED

    def close(self) -> None:
        pass

    @property
    def last(self) -> WebhookRecord:
        return self.records[-1]
