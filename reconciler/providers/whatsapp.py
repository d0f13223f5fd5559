"""WhatsApp Cloud API (Meta Graph): route the tenant's WABA and phone number to the tenant's webhook URL.

Resources (address → what it means)
- `whatsapp.waba_subscription[slug]`: our app is subscribed to the tenant's WABA with
  `override_callback_uri` = the tenant's webhook URL. CREATE and UPDATE are the same call
  (`POST /{waba}/subscribed_apps`, an upsert for the token's app). Other apps subscribed to the WABA are
  reported (they receive the tenant's messages too), never touched.
- `whatsapp.phone_number[slug/<id>]`: the number is in the WABA, on the Cloud API and verified. Nothing
  we can create: a problem is a REPORT (error), a healthy number a NOOP.
- `whatsapp.phone_webhook[slug/<id>]`: the phone-level override, which beats the WABA's. Absent or ours
  is fine; pointing elsewhere is drift, fixed by *setting it to our URL* rather than clearing it: one write
  makes routing right whatever the WABA level says and in whatever order the changes run (clearing would
  depend on the WABA override having stuck first).

Which subscription is ours: Graph lists apps without saying which one the token belongs to. The entry
whose override is our URL is ours; failing that, a lone entry is taken as ours (updating it subscribes the
token's app, which is an upsert); with several and none ours, we plan a CREATE and the read-back finds ours
by URL.

The verify token: Meta never returns it, so a plan cannot see it drift. It only matters during the
handshake Meta performs when an override is written; a rotated token takes effect the next time the
override is written (a URL change). Forcing a rewrite is out of scope.

Calls (per tenant): a no-op plan makes 3 GETs (subscribed_apps, phone_numbers with limit=100, the phone's
webhook_configuration); each write is 1 POST + 1 GET read-back. Each call names the operation of the
vendored v23.0 spec (specs/meta-whatsapp-business-messaging-api_v23.0.yaml) it follows, or the public
source where the spec is silent; docs/provider-calls.md lists them all. A field the spec does not document
that Meta leaves out never becomes an error: the check it feeds is skipped and the plan says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.diff import diff, sort_changes
from reconciler.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    PermanentError,
    PermissionDenied,
    ProviderError,
    TemporaryError,
)
from reconciler.health_status import Health
from reconciler.model import Action, Change, Resource, Severity, report
from reconciler.providers.base import (
    ApplyResult,
    HealthCheck,
    Http,
    ProviderContext,
    StatusEvidence,
    check,
    error_check,
    inbound_check,
    plan_health,
)
from tenancy.model import Tenant
from tenancy.urls import tenant_webhook_url

NAME = "whatsapp"
# Spec: getWhatsAppBusinessAccountPhoneNumbers answers WhatsAppBusinessAccountPhoneNumber objects; every
# name asked for is one of its properties (`host_platform`, not the `platform_type` some libraries use).
PHONE_LIST_FIELDS = "id,display_phone_number,verified_name,code_verification_status,host_platform,status"
CLOUD_API = "CLOUD_API"  # WhatsAppBusinessAccountHostPlatform
PAGE_LIMIT = 100

# Graph error codes (decide on `code`, never on the HTTP status: sources disagree on the status).
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
TRANSIENT_CODES = frozenset({1, 2})  # "unknown error" / "service temporarily unavailable"
AUTH_CODES = frozenset({190})
UNKNOWN_OBJECT_SUBCODE = 33
# `--active`: Meta's sample utility template, approved in every new WABA. A template, because a test
# recipient is rarely inside a 24-hour customer-service window, outside which free-form text is refused.
TEST_TEMPLATE = ("hello_world", "en_US")


def graph_error_class(code: int, *, method: str = "GET", subcode: int | None = None) -> type[ProviderError]:
    """The error class for a Graph `error.code`. Pure; the HTTP client may use it too."""
    if code in RATE_LIMIT_CODES or code in TRANSIENT_CODES:
        return TemporaryError
    if code in AUTH_CODES:
        return AuthError
    if code == 10 or 200 <= code <= 299:
        return PermissionDenied
    if code == 100:
        # 100 is "invalid parameter"; on a read, or with subcode 33, it means the object does not exist.
        return NotFound if subcode == UNKNOWN_OBJECT_SUBCODE or method == "GET" else InvalidRequest
    return PermanentError


def classify_graph_error(status: int, body: Any, *, method: str = "GET",
                         request_id: str | None = None, retry_after: float | None = None) -> ProviderError:
    """A Graph error response → the reconciler's error (message and trace ID only, never the body)."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping) or not isinstance(err.get("code"), int):
        cls: type[ProviderError] = TemporaryError if status == 429 or status >= 500 else PermanentError
        return cls(NAME, "Graph API error", status=status, request_id=request_id, retry_after=retry_after)
    code = int(err["code"])
    subcode = err.get("error_subcode") if isinstance(err.get("error_subcode"), int) else None
    trace = err.get("fbtrace_id") if isinstance(err.get("fbtrace_id"), str) else request_id
    cls = graph_error_class(code, method=method, subcode=subcode)
    return cls(NAME, f"Graph API error {code}", status=status, request_id=trace, code=code,
               retry_after=retry_after)


def _reclassify(err: ProviderError, method: str) -> ProviderError:
    """The HTTP client classifies by status; Graph must be classified by code when the client kept it."""
    try:
        code = int(err.code) if err.code is not None else None
    except ValueError:
        code = None
    if code is None:
        return err
    cls = graph_error_class(code, method=method)
    if type(err) is cls:
        return err
    return cls(err.provider, err.message, status=err.status, request_id=err.request_id, code=err.code,
               retry_after=err.retry_after)


@dataclass
class WhatsAppProvider:
    poll_s: float = 0.1  # how often the round trip reads the webhook log
    _sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    name = NAME

    def applies_to(self, tenant: Tenant) -> bool:
        return tenant.whatsapp is not None

    # Desired --------------------------------------------------------------------------------------
    def desired(self, tenant: Tenant, ctx: ProviderContext) -> list[Resource]:
        wa = tenant.whatsapp
        if wa is None or wa.business_account_id is None:
            return []
        url = _url(tenant, ctx)
        out = [Resource(NAME, "waba_subscription", tenant.slug, "", {"override_callback_uri": url})]
        if wa.phone_number_id:
            pid = wa.phone_number_id
            out.append(Resource(NAME, "phone_number", tenant.slug, pid, {
                "in_waba": True, "code_verification_status": "VERIFIED", "host_platform": CLOUD_API}))
            out.append(Resource(NAME, "phone_webhook", tenant.slug, pid, {"override_callback_uri": url}))
        return out

    # Observe --------------------------------------------------------------------------------------
    def observe(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Resource]:
        wa = tenant.whatsapp
        if wa is None or wa.business_account_id is None:
            return []
        url = _url(tenant, ctx)
        base = _base(ctx)
        waba = wa.business_account_id
        token = wa.access_token.get_secret_value()
        # Spec: getAllSubscriptionsForAWaba. Each entry's `override_callback_uri` and
        # `whatsapp_business_api_data` are not in its SubscribedApp schema, only in the spec's examples and
        # Meta's "Webhook overrides" page: an entry without an override reads as "no override" (an UPDATE).
        subs = self._get(http, f"{base}/{waba}/subscribed_apps", token)
        live = _subscriptions(tenant.slug, subs.get("data") or [], url)
        pid = wa.phone_number_id
        if pid is None:
            return live
        phone = self._find_phone(http, base, waba, pid, token)
        if phone is None:
            return live
        live.append(Resource(NAME, "phone_number", tenant.slug, pid, {
            "in_waba": True,
            "code_verification_status": phone.get("code_verification_status"),
            "host_platform": phone.get("host_platform"),
        }, remote_id=pid))
        conf = self._webhook_configuration(http, base, pid, token)
        if conf is None:
            return live  # Graph would not say: the plan reports the override as not checked
        wc = conf.get("webhook_configuration") or {}
        live.append(Resource(NAME, "phone_webhook", tenant.slug, pid,
                             {"override_callback_uri": wc.get("phone_number") or None}, remote_id=pid))
        return live

    def _webhook_configuration(self, http: Http, base: str, pid: str, token: str) -> dict[str, Any] | None:
        """The phone's callback URLs by level. NOT IN THE SPEC: getPhoneNumberById's `fields` and its
        PhoneNumberInfo answer do not name `webhook_configuration`; Meta's "Webhook overrides" page does
        (https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/override/):
        `GET /<PHONE_NUMBER_ID>?fields=webhook_configuration` → {"webhook_configuration": {"phone_number",
        "whatsapp_business_account", "application"}, "id"}. Absent in the answer: no phone-level override.
        None when Graph refuses the field (code 100; the number itself was just listed): not knowable."""
        try:
            return self._get(http, f"{base}/{pid}", token, params={"fields": "webhook_configuration"})
        except NotFound as err:
            if str(err.code) == "100":
                return None
            raise

    def _find_phone(self, http: Http, base: str, waba: str, pid: str, token: str) -> dict[str, Any] | None:
        # Spec: getWhatsAppBusinessAccountPhoneNumbers (fields, limit ≤ 100, cursor `after`).
        params: dict[str, Any] = {"fields": PHONE_LIST_FIELDS, "limit": PAGE_LIMIT}
        while True:
            page = self._get(http, f"{base}/{waba}/phone_numbers", token, params=params)
            for item in page.get("data") or []:
                if str(item.get("id")) == pid:
                    return dict(item)
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            # Follow our own URL with the cursor, not `paging.next` (never let a body pick the host).
            if not paging.get("next") or not after:
                return None
            params = {**params, "after": after}

    # Plan -----------------------------------------------------------------------------------------
    def plan(self, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]:
        wa = tenant.whatsapp
        if wa is None:
            return []
        slug = tenant.slug
        if wa.business_account_id is None:
            return [report(Severity.ERROR, NAME, "waba_subscription", slug, f"{NAME}.waba_subscription[{slug}]",
                           "whatsapp.business_account_id is not set: nothing can be routed")]
        desired = self.desired(tenant, ctx)
        have = {r.address: r for r in live}
        changes: list[Change] = []
        rest: list[Resource] = []
        for d in desired:
            if d.kind == "phone_number":
                changes.append(_phone_check(d, have.get(d.address)))
            elif d.kind == "phone_webhook":
                phone_ok = (NAME + ".phone_number[" + f"{slug}/{d.name}]") in have
                lv = have.get(d.address)
                if not phone_ok:
                    continue  # no such number: the phone_number REPORT says so
                if lv is None:
                    changes.append(report(Severity.INFO, NAME, d.kind, slug, d.address, desired=d, note=(
                        "Meta would not show the number's webhook_configuration (not in the v23.0 spec): "
                        "a phone-level override, which would beat the WABA's, is not checked")))
                    continue
                if lv.attrs.get("override_callback_uri") is None:
                    # No phone-level override: the WABA level (ours) governs. Nothing to do.
                    changes.append(Change(Action.NOOP, NAME, d.kind, slug, d.address, desired=d, live=lv,
                                          note="no phone-level override: the WABA subscription routes it"))
                else:
                    changes.extend(diff([d], [lv]))
            else:
                rest.append(d)
        others = [r for r in live if r.kind == "waba_subscription"]
        foreign = "another app is subscribed to this WABA and receives its webhooks too; left untouched"
        changes.extend(replace(c, note=foreign, severity=Severity.INFO) if c.action is Action.REPORT else c
                       for c in diff(rest, others))
        return sort_changes(changes)

    # Apply ----------------------------------------------------------------------------------------
    def apply(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult:
        wa = tenant.whatsapp
        if wa is None or wa.business_account_id is None or change.desired is None:
            raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")
        base = _base(ctx)
        token = wa.access_token.get_secret_value()
        verify = wa.verify_token.get_secret_value()
        url = str(change.desired.attrs["override_callback_uri"])
        if change.kind == "waba_subscription" and change.action in (Action.CREATE, Action.UPDATE):
            # Spec: subscribeToWabaWebhooks (SubscriptionRequest: override_callback_uri, verify_token), then
            # getAllSubscriptionsForAWaba to read it back.
            edge = f"{base}/{wa.business_account_id}/subscribed_apps"
            self._post(http, edge, token, {"override_callback_uri": url, "verify_token": verify}, verify)
            seen = self._get(http, edge, token).get("data") or []
            uris = sorted({str(e["override_callback_uri"]) for e in seen if e.get("override_callback_uri")})
            if url not in uris:
                raise PermanentError(NAME, "the WABA override did not stick: Meta accepted the subscription "
                                     f"but shows {uris or 'no override'} instead of {url}")
            return ApplyResult(change, detail=f"app subscribed to WABA {wa.business_account_id} → {url}")
        if change.kind == "phone_webhook" and change.action is Action.UPDATE:
            pid = change.desired.name
            # Spec: updatePhoneNumberStatus (PhoneNumberStatusUpdateRequest.webhook_configuration).
            body = {"webhook_configuration": {"override_callback_uri": url, "verify_token": verify}}
            self._post(http, f"{base}/{pid}", token, body, verify)
            conf = self._webhook_configuration(http, base, pid, token)
            if conf is None or "webhook_configuration" not in conf:  # not in the v23.0 spec: no read-back
                return ApplyResult(change, detail=f"phone number {pid} → {url} (Meta accepted it; its answer "
                                   "has no webhook_configuration to confirm it)")
            now = (conf.get("webhook_configuration") or {}).get("phone_number")
            if now != url:
                raise PermanentError(NAME, f"the phone-number override did not stick: Meta shows {now!r} "
                                     f"instead of {url}")
            return ApplyResult(change, detail=f"phone number {pid} → {url}")
        raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")

    # Health ---------------------------------------------------------------------------------------
    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        """The plan's rows (token, subscription callback = the tenant's URL, number verified), plus the
        number's quality rating (FLAGGED/RED, or an account-level event in the window: degraded) and the
        inbound messages in the window."""
        wa = tenant.whatsapp
        if wa is not None and wa.business_account_id is None:
            # observe() makes no call without a WABA: a row that read healthy would vouch for an unread token
            return [check(NAME, tenant.slug, f"{NAME}.token[{tenant.slug}]", Health.MISSING,
                          "not checked: whatsapp.business_account_id is not set",
                          "set whatsapp.business_account_id and the access_token in the tenant file "
                          "(`sops <file>`), then run `tenantctl health` again", duration_s=0.0)]
        checks = plan_health(self, tenant, ctx, http, "the access token reads the WABA")
        if wa is None or not any(c.name == f"{NAME}.token[{tenant.slug}]" and c.ok for c in checks):
            return checks
        if wa.phone_number_id:
            checks.append(self._quality_check(tenant, ctx, http, wa.phone_number_id,
                                              wa.access_token.get_secret_value()))
        return [*checks, *inbound_check(
            NAME, tenant, ctx,
            stale_hint="send a test message to the number; if it does not appear in `tenantctl webhooks log`, "
                       "check the WABA subscription (`tenantctl plan`) and the app's webhook in Meta's App Dashboard",
            never_hint="send a test message to the number and check `tenantctl webhooks log`")]

    def _quality_check(self, tenant: Tenant, ctx: ProviderContext, http: Http, pid: str, token: str) -> HealthCheck:
        address = f"{NAME}.phone_quality[{tenant.slug}/{pid}]"
        started = time.monotonic()
        try:
            # getPhoneNumberById documents quality_rating and name_status (specs/, v23.0); not `status`.
            phone = self._get(http, f"{_base(ctx)}/{pid}", token, params={"fields": "quality_rating,name_status"})
        except ProviderError as err:
            return error_check(NAME, tenant.slug, address, err, time.monotonic() - started)
        took = time.monotonic() - started
        rating = str(phone.get("quality_rating") or "UNKNOWN").upper()
        alerts = list(ctx.account_events.get(tenant.slug, ()))
        detail = f"quality rating {rating}" + (f"; name status {phone['name_status']}"
                                               if phone.get("name_status") else "")
        if rating in ("FLAGGED", "RED") or alerts:
            why = "; ".join([detail, *(f"recorded in the window: {a}" for a in alerts[:5])])
            return check(NAME, tenant.slug, address, Health.DEGRADED, why,
                         "open WhatsApp Manager → Phone numbers / Account quality: read the notice, fix the "
                         "template or messaging pattern it names; a flagged number may lose its messaging limit",
                         duration_s=took)
        return check(NAME, tenant.slug, address, Health.HEALTHY, detail, duration_s=took)

    # Active round trip --------------------------------------------------------------------------
    def round_trip(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        """`--active`: send the template TEST_TEMPLATE to `whatsapp.test_recipient` (sendMessage, v23.0 spec:
        `POST /{Phone-Number-ID}/messages`) and wait, at most `ctx.status_wait_s`, until the webhook log holds
        its `sent` status webhook (then a little longer for `delivered`). Row `whatsapp.round_trip[slug/<id>]`
        with the times, measured from the send. Nothing is created that could be left behind: a sent message
        cannot be recalled (the Cloud API has no delete), and the wait ends at its deadline whatever happens."""
        wa = tenant.whatsapp
        if wa is None or not wa.phone_number_id:
            return []
        slug, pid = tenant.slug, wa.phone_number_id
        address = f"{NAME}.round_trip[{slug}/{pid}]"
        if not wa.test_recipient:
            return [check(NAME, slug, address, Health.UNKNOWN, "not run: the tenant file names no test recipient",
                          "add whatsapp.test_recipient (digits of a phone that may receive a test message, "
                          "E.164 without '+') to the tenant file", duration_s=0.0)]
        if ctx.message_evidence is None:
            return [check(NAME, slug, address, Health.UNKNOWN, "not run: no webhook log to see the status in",
                          "point TENANTCTL_DATABASE_URL at the database `tenantctl serve` records to",
                          duration_s=0.0)]
        to = f"…{wa.test_recipient[-4:]}"
        started, since = time.monotonic(), datetime.now(UTC) - timedelta(seconds=1)
        name, lang = TEST_TEMPLATE
        try:
            sent = self._call(http, "POST", f"{_base(ctx)}/{pid}/messages", wa.access_token.get_secret_value(),
                              json={"messaging_product": "whatsapp", "recipient_type": "individual",
                                    "to": wa.test_recipient, "type": "template",
                                    "template": {"name": name, "language": {"policy": "deterministic", "code": lang}}})
            wamid = str(((sent.get("messages") or [{}])[0]).get("id") or "")
            if not wamid:
                raise PermanentError(NAME, "Meta accepted the message but returned no message ID")
        except ProviderError as err:
            row = error_check(NAME, slug, address, err, time.monotonic() - started)
            return [replace(row, detail=f"the send step failed: {row.detail}; nothing was sent",
                            hint=row.hint or f"check that the template {name!r} ({lang}) is approved in WhatsApp "
                            "Manager and that the test recipient is a WhatsApp number")]
        accepted = time.monotonic() - started
        try:
            seen, evidence = self._await_statuses(ctx.message_evidence, slug, wamid, since, started,
                                                  ctx.status_wait_s)
        except Exception as err:  # the log could not be read: we could not look
            return [check(NAME, slug, address, Health.UNKNOWN,
                          f"sent {wamid} to {to}, then the webhook log could not be read ({type(err).__name__})",
                          "check the database, then run `tenantctl health --active` again",
                          duration_s=time.monotonic() - started)]
        return [_round_trip_row(slug, address, wamid, to, accepted, seen, evidence, ctx,
                                time.monotonic() - started, tenant)]

    def _await_statuses(self, read: Callable[[str, str, datetime], StatusEvidence], slug: str, wamid: str,
                        since: datetime, started: float, wait_s: float) -> tuple[dict[str, float], StatusEvidence]:
        """Status → seconds after the send at which it was first seen in the log. Stops at `delivered`,
        `read` or `failed`; once `sent` is in, waits at most DELIVERED_GRACE_S more for `delivered`. The
        wait counts from now (the send's answer), the times from `started` (the send)."""
        seen: dict[str, float] = {}
        deadline = time.monotonic() + wait_s
        while True:
            evidence = read(slug, wamid, since)
            now = time.monotonic()
            for status in evidence.statuses:
                seen.setdefault(status, now - started)
            if seen.keys() & {"delivered", "read", "failed"} or now >= deadline:
                return seen, evidence
            if "sent" in seen:
                deadline = min(deadline, started + seen["sent"] + DELIVERED_GRACE_S)  # both monotonic
            self._sleep(min(self.poll_s, max(0.0, deadline - now)))

    # HTTP -----------------------------------------------------------------------------------------
    def _get(self, http: Http, url: str, token: str,
             params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._call(http, "GET", url, token, params=params)

    def _post(self, http: Http, url: str, token: str, body: Any, verify: str) -> dict[str, Any]:
        return self._call(http, "POST", url, token, json=body, extra_secret=verify)

    def _call(self, http: Http, method: str, url: str, token: str, *, params: Mapping[str, Any] | None = None,
              json: Any = None, extra_secret: str = "") -> dict[str, Any]:
        secrets = [token, extra_secret] if extra_secret else [token]
        try:
            resp = http.request(NAME, method, url, headers={"Authorization": f"Bearer {token}"},
                                params=params, json=json, secrets=secrets)
        except ProviderError as err:
            raise _reclassify(err, method) from err
        body = resp.json() if resp.content else {}
        if resp.status_code >= 400:  # a client that hands error responses back instead of raising
            raise classify_graph_error(resp.status_code, body, method=method,
                                       request_id=resp.headers.get("x-fb-trace-id"))
        return dict(body) if isinstance(body, Mapping) else {}


DELIVERED_GRACE_S = 5.0


def _round_trip_row(slug: str, address: str, wamid: str, to: str, accepted: float, seen: Mapping[str, float],
                    evidence: StatusEvidence, ctx: ProviderContext, took: float, tenant: Tenant) -> HealthCheck:
    times = f"accepted in {accepted:.2f} s" + "".join(
        f", {s} recorded after {seen[s]:.2f} s" for s in ("sent", "delivered", "read", "failed") if s in seen)
    head = f"template {TEST_TEMPLATE[0]} to {to} ({wamid}) {times}"
    if "failed" in seen:
        return check(NAME, slug, address, Health.DEGRADED, head + ": Meta reported the message failed",
                     "read the failed status in `tenantctl webhooks log` (its error code); check the test recipient "
                     "is a WhatsApp number and the number's messaging limit in WhatsApp Manager", duration_s=took)
    if "sent" in seen or "delivered" in seen or "read" in seen:
        round_trip = min(seen[s] for s in ("sent", "delivered", "read") if s in seen)
        note = "" if seen.keys() & {"delivered", "read"} else \
            f"; not delivered within {DELIVERED_GRACE_S:g} s (the recipient's phone may be offline)"
        return check(NAME, slug, address, Health.HEALTHY, f"{head}; round trip {round_trip:.2f} s{note}",
                     duration_s=took)
    url = _url(tenant, ctx)
    if evidence.refusals:
        return check(NAME, slug, address, Health.DEGRADED,
                     f"{head}; its status webhook was refused: {evidence.refusals[0]}",
                     "the webhook server refused Meta's status webhook: check TENANTCTL_META_APP_SECRETS holds "
                     "the Meta app's secret (App Dashboard → App settings → Basic)", duration_s=took)
    return check(NAME, slug, address, Health.DEGRADED,
                 f"{head}; no status webhook recorded within {ctx.status_wait_s:g} s",
                 f"Meta accepted the message but no status for it reached the webhook log: check that `tenantctl "
                 f"serve` is running and reachable at {url}, that the WABA's callback is that URL (`tenantctl plan "
                 f"-t {slug}`), and `tenantctl webhooks log -t {slug}`", duration_s=took)


def _url(tenant: Tenant, ctx: ProviderContext) -> str:
    return tenant_webhook_url("wa", tenant, ctx.domain)


def _base(ctx: ProviderContext) -> str:
    return ctx.base_urls[NAME].rstrip("/")


def _subscriptions(slug: str, data: Sequence[Any], url: str) -> list[Resource]:
    entries = [e for e in data if isinstance(e, Mapping)]

    def app_of(e: Mapping[str, Any]) -> Mapping[str, Any]:
        app = e.get("whatsapp_business_api_data")
        return app if isinstance(app, Mapping) else {}

    ours = next((i for i, e in enumerate(entries) if e.get("override_callback_uri") == url), None)
    if ours is None and len(entries) == 1:
        ours = 0
    out: list[Resource] = []
    for i, e in enumerate(entries):
        app = app_of(e)
        app_id = str(app.get("id", ""))
        attrs = {"override_callback_uri": e.get("override_callback_uri") or None}
        if i == ours:
            out.append(Resource(NAME, "waba_subscription", slug, "", attrs, remote_id=app_id))
        else:
            out.append(Resource(NAME, "waba_subscription", slug, f"app-{app_id}",
                                {**attrs, "app": app.get("name")}, remote_id=app_id, owned=False))
    return out


def _phone_check(d: Resource, lv: Resource | None) -> Change:
    problems: list[str] = []
    if lv is None:
        problems.append(f"phone number {d.name} is not in the WABA (or the token cannot see it)")
    else:
        # Both are optional in the spec's WhatsAppBusinessAccountPhoneNumber: a value that is there and
        # wrong is an error; one Meta leaves out is not checked, and the plan says so.
        platform = lv.attrs.get("host_platform")
        if platform is not None and platform != CLOUD_API:
            problems.append(f"the number is hosted on {platform!r}, not the Cloud API")
        verification = lv.attrs.get("code_verification_status")
        if verification is not None and verification != "VERIFIED":
            problems.append(f"the number is not verified ({verification!r})")
    if not problems:
        unknown = [k for k in ("host_platform", "code_verification_status")
                   if lv is not None and lv.attrs.get(k) is None]
        note = f"Meta did not return {' or '.join(unknown)}; not checked" if unknown else ""
        return Change(Action.NOOP, NAME, d.kind, d.tenant, d.address, desired=d, live=lv, note=note,
                      severity=Severity.INFO if note else None)
    return report(Severity.ERROR, NAME, d.kind, d.tenant, d.address,
                  "; ".join(problems) + ": fix it in WhatsApp Manager (tenantctl cannot)", desired=d, live=lv)
