"""Why the webhook server refused a request, in words an admin can act on. Pure."""

from __future__ import annotations

_TEXT = {
    "bad-signature": "signature did not match: check the secret pasted at the provider (Hospitable: the "
                     "webhook's signing secret; Nuki: apply again; WhatsApp: TENANTCTL_META_APP_SECRETS)",
    "missing-signature": "no signature header: the sender is not the provider, or its webhook is set up "
                         "without signing",
    "malformed-signature": "the signature header is garbled: not the provider's format",
    "no-secret-configured": "the tenant file holds no secret for this provider: add it and merge",
    "missing-secret-header": "Beds24 sent no secret header: add the custom header with beds24.webhook_secret "
                             "in Beds24's webhook settings",
    "malformed-secret-header": "the Beds24 secret header is garbled",
    "bad-secret-header": "the Beds24 secret header does not match beds24.webhook_secret: paste it again in "
                         "Beds24",
    "handshake-bad-token": "Meta's verification handshake sent another verify token: the app's webhook "
                           "settings must use whatsapp.verify_token",
    "handshake-missing-challenge": "a verification request without hub.challenge: not Meta",
    "body-too-large": "the body exceeded the size limit (TENANTCTL_MAX_BODY_BYTES)",
    "invalid-json": "the body is not JSON",
    "json-not-an-object": "the body is JSON but not an object",
    "provider-not-configured": "this tenant has no section for this provider: add it to the tenant file, "
                               "or remove the webhook at the provider",
    "missing-routing-key": "the WhatsApp payload names no phone-number ID: not a message for any tenant",
}
_PREFIX = {
    "unknown-tenant": "no tenant has this slug: the URL at the provider names a tenant that does not exist "
                      "(typo, or a tenant that was removed)",
    "cross-tenant": "the payload belongs to another tenant's phone number: the provider calls the wrong "
                    "tenant's URL; check the WABA subscription (tenantctl plan)",
}


def explain(reason: str | None) -> str:
    if not reason:
        return ""
    if reason in _TEXT:
        return _TEXT[reason]
    head = reason.split(":", 1)[0]
    return _PREFIX.get(head, "see the webhook server's documentation for this reason")


KNOWN = tuple(sorted([*_TEXT, *(f"{p}:" for p in _PREFIX)]))
