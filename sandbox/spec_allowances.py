"""What the spec checks accept beyond the vendored specs, each entry with its reason or public source.

- `ERRATA`: where the sandbox follows the real service over a spec that is demonstrably wrong (applied by
  the loaders in sandbox/spec_check.py).
- `UNDOCUMENTED`: names the reconciler needs that a spec does not document (a property, a whole
  operation), with the public source relied on. `add_undocumented` adds them to the loaded document, never
  to the vendored file, and refuses one the spec has come to document itself (then drop the entry).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from sandbox.spec_schema import resolver

ERRATA = {
    "hospitable GET /properties": "links.next/prev and meta.from/to are null at the ends (Laravel "
                                  "paginator); the spec types them as string/integer",
    "nuki SmartlockAuth.type": "the spec caps `type` at 2, yet documents 13 (keypad code) in the same field",
}

META_OVERRIDE_DOC = ("Meta for Developers, WhatsApp Business Platform, 'Webhook overrides' "
                     "(https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/"
                     "override/)")


@dataclasses.dataclass(frozen=True)
class Undocumented:
    """A name the reconciler needs that the vendored spec does not document.

    `value` is added to the loaded spec at JSON pointer `where` under `name` (a property schema, or a
    whole path item); `source` is the public document the shape comes from.
    """

    provider: str
    where: str
    name: str
    value: dict[str, Any]
    source: str


_STRING: dict[str, Any] = {"type": "string"}

UNDOCUMENTED: tuple[Undocumented, ...] = (
    Undocumented(
        "meta", "/components/schemas/PhoneNumberInfo/properties", "webhook_configuration",
        {"type": "object", "description": "The callback URL in effect for this app, per level (unset levels "
         "are left out)", "properties": {"phone_number": _STRING, "whatsapp_business_account": _STRING,
                                         "application": _STRING}},
        f"{META_OVERRIDE_DOC}: `GET /<PHONE_NUMBER_ID>?fields=webhook_configuration` answers the callback "
        "URL of each level; getPhoneNumberById's `fields` and PhoneNumberInfo omit it"),
    Undocumented(
        "meta", "/components/schemas/SubscribedApp/properties", "whatsapp_business_api_data",
        {"type": "object", "properties": {"id": _STRING, "name": _STRING, "link": _STRING}},
        "the spec's own examples of getAllSubscriptionsForAWaba and subscribeToWabaWebhooks carry it "
        "(its SubscribedApp schema does not); Graph API reference, WhatsApp Business Account "
        "'subscribed_apps' edge (https://developers.facebook.com/docs/graph-api/reference/"
        "whats-app-business-account/subscribed_apps/)"),
    Undocumented(
        "meta", "/components/schemas/SubscribedApp/properties", "override_callback_uri",
        {"type": "string"},
        f"the spec's example `custom_callback_success` of subscribeToWabaWebhooks; {META_OVERRIDE_DOC}: "
        "`GET /<WABA_ID>/subscribed_apps` shows the WABA-level override of each app"),
    Undocumented(
        "meta", "/components/schemas/GraphAPIError/properties/error/properties", "error_data",
        {"type": "object", "properties": {"messaging_product": _STRING, "details": _STRING}},
        "Meta for Developers, WhatsApp Cloud API 'Error codes' (https://developers.facebook.com/"
        "documentation/business-messaging/whatsapp/support/error-codes/): `error.error_data.details` "
        "explains the error"),
)


APP_SUBSCRIPTIONS_DOC = ("Graph API reference, Application 'subscriptions' edge (https://developers.facebook.com/"
                         "docs/graph-api/reference/app/subscriptions/): read and set with an app access token")
_GRAPH_ERRORS = {status: {"description": "Graph error", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/GraphAPIError"}}}} for status in ("400", "401", "403")}
_APP_PARAMETERS = [
    {"name": "Version", "in": "path", "required": True, "schema": {"type": "string", "pattern": r"^v[0-9]+\.[0-9]+$"}},
    {"name": "Application-ID", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
]
_APP_SUBSCRIPTION = {"type": "object", "properties": {
    "object": _STRING, "callback_url": _STRING, "active": {"type": "boolean"},
    "fields": {"type": "array", "items": {"type": "object", "properties": {"name": _STRING, "version": _STRING}}},
}}
_APP_SUBSCRIBE = {"type": "object", "required": ["object", "callback_url", "verify_token"], "properties": {
    "object": _STRING, "callback_url": _STRING, "verify_token": _STRING, "include_values": {"type": "boolean"},
    "fields": {"oneOf": [_STRING, {"type": "array", "items": _STRING}]},
}}
UNDOCUMENTED += (
    Undocumented("meta", "/paths", "/{Version}/{Application-ID}/subscriptions", {
        "get": {"operationId": "getAppSubscriptions", "parameters": _APP_PARAMETERS, "responses": {
            "200": {"description": "the app's subscriptions", "content": {"application/json": {"schema": {
                "type": "object", "required": ["data"],
                "properties": {"data": {"type": "array", "items": _APP_SUBSCRIPTION}}}}}},
            **_GRAPH_ERRORS}},
        "post": {"operationId": "setAppSubscription", "parameters": _APP_PARAMETERS,
                 "requestBody": {"required": True, "content": {"application/json": {"schema": _APP_SUBSCRIBE}}},
                 "responses": {"200": {"description": "subscribed", "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/SuccessResponse"}}}}, **_GRAPH_ERRORS}},
    }, f"{APP_SUBSCRIPTIONS_DOC}; the v23.0 spec has no app-level operation for webhooks"),
)


def add_undocumented(provider: str, document: dict[str, Any],
                     entries: tuple[Undocumented, ...] = UNDOCUMENTED) -> None:
    """Add each entry of `provider` to the loaded document; refuse one the spec now documents itself."""
    for entry in (e for e in entries if e.provider == provider):
        target = resolver(document)("#" + entry.where)
        if entry.name in target:
            raise ValueError(f"{provider} spec now documents {entry.where}/{entry.name}: drop it from "
                             "sandbox.spec_allowances.UNDOCUMENTED")
        target[entry.name] = copy.deepcopy(entry.value)
