"""The Meta app's WhatsApp webhook subscription: one platform-level resource, not a tenant's.

Meta sends the WABA-level fields (message_template_status_update, account_update,
phone_number_quality_update, template_category_update) only to the app's own callback URL, never to a
WABA or phone-number override (Meta's "Webhook overrides" page, https://developers.facebook.com/
documentation/business-messaging/whatsapp/webhooks/override/). So the platform needs the app subscribed
to object `whatsapp_business_account` with callback `https://<domain>/api/webhooks/wa` and at least
`messages` plus those fields (extra fields are left alone).

Resource `whatsapp.app_subscription[(platform)]`, attrs {callback_url, fields (the needed ones present),
active}:
- app ID, app access token and platform verify token configured: observed; missing or different → CREATE
  or UPDATE (one POST, which sets the callback and adds fields, then a read-back GET);
- otherwise: a MANUAL step saying what to set in the App Dashboard, and which settings let tenantctl do it.

NOT IN THE SPEC: the v23.0 spec has no `/{app-id}/subscriptions`. Source: Graph API reference, Application
"subscriptions" edge (https://developers.facebook.com/docs/graph-api/reference/app/subscriptions/):
`GET /{app-id}/subscriptions` → {data: [{object, callback_url, active, fields: [{name, version}]}]};
`POST /{app-id}/subscriptions` with object, callback_url, fields, verify_token; both with an app access
token. The sandbox emulates it and `sandbox.spec_allowances.UNDOCUMENTED` holds both to that shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from reconciler.diff import diff
from reconciler.errors import InvalidRequest, PermanentError, ProviderError
from reconciler.model import Action, Change, Resource
from reconciler.providers.base import ApplyResult, HealthCheck, Http, ProviderContext
from reconciler.providers.whatsapp import NAME, classify_graph_error, graph_error_class
from tenancy.urls import whatsapp_app_callback_url

PLATFORM = "(platform)"  # the tenant column of platform-level resources
KIND = "app_subscription"
OBJECT = "whatsapp_business_account"
APP_FIELDS = ("messages", "message_template_status_update", "account_update", "phone_number_quality_update",
              "template_category_update")


class MetaAppSubscription:
    """Plans and sets the app's subscription; `app_id` None turns the resource off altogether."""

    name = NAME

    def __init__(self, app_id: str | None, app_token: SecretStr | None = None,
                 verify_token: SecretStr | None = None) -> None:
        self.app_id = app_id
        self._token = app_token.get_secret_value() if app_token is not None else ""
        self._verify = verify_token.get_secret_value() if verify_token is not None else ""

    @property
    def enabled(self) -> bool:
        return bool(self.app_id)

    @property
    def managed(self) -> bool:
        """tenantctl reads and writes the subscription (else the plan holds a MANUAL step)."""
        return self.enabled and bool(self._token) and bool(self._verify)

    def desired(self, ctx: ProviderContext) -> Resource:
        return Resource(NAME, KIND, PLATFORM, "", {
            "callback_url": whatsapp_app_callback_url(ctx.domain), "fields": list(APP_FIELDS), "active": True})

    def observe(self, ctx: ProviderContext, http: Http) -> list[Resource]:
        if not self.managed:
            return []
        body = self._call(http, "GET", self._url(ctx))
        for sub in body.get("data") or []:
            if isinstance(sub, Mapping) and sub.get("object") == OBJECT:
                names = {str(f.get("name")) for f in sub.get("fields") or [] if isinstance(f, Mapping)}
                return [Resource(NAME, KIND, PLATFORM, "", {
                    "callback_url": sub.get("callback_url") or None,
                    "fields": [f for f in APP_FIELDS if f in names],
                    "active": bool(sub.get("active", False)),
                }, remote_id=self.app_id)]
        return []

    def plan(self, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]:
        want = self.desired(ctx)
        if not self.managed:
            return [Change(Action.MANUAL, NAME, KIND, PLATFORM, want.address, desired=want,
                           note=_instructions(want, self.app_id))]
        return diff([want], live)

    def apply(self, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult:
        if not self.managed or change.desired is None or change.action not in (Action.CREATE, Action.UPDATE):
            raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")
        want = change.desired.attrs
        self._call(http, "POST", self._url(ctx), json={
            "object": OBJECT, "callback_url": want["callback_url"], "fields": ",".join(want["fields"]),
            "verify_token": self._verify})
        seen = self.observe(ctx, http)
        if not seen or dict(seen[0].attrs) != dict(want):
            raise PermanentError(NAME, "the app subscription did not stick: Meta accepted it but shows "
                                 f"{dict(seen[0].attrs) if seen else 'none'}")
        return ApplyResult(change, detail=f"app {self.app_id} subscribed to {OBJECT} → {want['callback_url']}")

    def health(self, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        """One check when tenantctl can read the subscription; none otherwise (nothing it could verify)."""
        if not self.managed:
            return []
        try:
            changes = self.plan(ctx, self.observe(ctx, http))
        except ProviderError as err:
            return [HealthCheck(NAME, PLATFORM, "app_subscription", False, str(err))]
        return [HealthCheck(NAME, PLATFORM, c.address, c.action is Action.NOOP,
                            "ok" if c.action is Action.NOOP else f"out of sync: {c.action.value} pending "
                            "(run apply)") for c in changes]

    def _url(self, ctx: ProviderContext) -> str:
        return f"{ctx.base_urls[NAME].rstrip('/')}/{self.app_id}/subscriptions"

    def _call(self, http: Http, method: str, url: str, *, json: Any = None) -> dict[str, Any]:
        secrets = [s for s in (self._token, self._verify) if s]
        try:
            resp = http.request(NAME, method, url, headers={"Authorization": f"Bearer {self._token}"},
                                json=json, secrets=secrets)
        except ProviderError as err:
            if err.code is None or not str(err.code).isdigit():
                raise
            cls = graph_error_class(int(err.code), method=method)
            if type(err) is cls:
                raise
            raise cls(err.provider, err.message, status=err.status, request_id=err.request_id, code=err.code,
                      retry_after=err.retry_after) from err
        body = resp.json() if resp.content else {}
        if resp.status_code >= 400:
            raise classify_graph_error(resp.status_code, body, method=method,
                                       request_id=resp.headers.get("x-fb-trace-id"))
        return dict(body) if isinstance(body, Mapping) else {}


def _instructions(want: Resource, app_id: str | None) -> str:
    return (f"In the Meta App Dashboard (app {app_id or '<your app>'}): WhatsApp → Configuration → Webhook: "
            f"callback URL {want.attrs['callback_url']} , verify token = the platform's verify token; subscribe "
            f"the fields {', '.join(APP_FIELDS)}. Or set TENANTCTL_META_APP_ID, TENANTCTL_META_APP_TOKEN and "
            "TENANTCTL_META_VERIFY_TOKEN and let `tenantctl apply` do it.")
