"""Meta Graph API (WhatsApp Business Platform, v23.0): WABA subscriptions, phone numbers and messages.

Messages (`POST /{Phone-Number-ID}/messages`, sendMessage): a template the WABA knows (`templates`,
`hello_world`/`en_US` by default, as every new WABA has) may go to any number; free-form text only to a
recipient in a customer-service window (`open_windows`, someone who wrote within 24 h), else code 131047,
as Meta answers. An accepted message is kept in `messages` and its `sent` and `delivered` status webhooks
are sent to the callback URL Meta would use (sandbox.meta_webhooks: signed, loopback only).

Mounted at `/meta/{version}`. Errors follow Graph's envelope
`{"error": {"message", "type", "code", "error_subcode"?, "error_data"?, "fbtrace_id"}}` with an
`x-fb-trace-id` header; clients must decide on `code`, not on the HTTP status.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import urllib.parse
from collections import deque
from typing import Any

import falcon

from sandbox.common import Clock, base_url, bearer_token, default_clock, is_invalid, read_body, send_json
from sandbox.meta_webhooks import StatusJob, StatusSender

PROVIDER = "meta"
PREFIX = "/meta"
DEFAULT_APP_ID = "900000000000001"

# The `fields` each phone-number read knows: the properties of the object the v23.0 spec documents as
# its answer (a test compares them with specs/). A name outside them is refused with code 100, as Graph
# does; a known name the sandbox has no value for is left out, as Graph leaves out unset fields.
PHONE_FIELDS = frozenset({  # getPhoneNumberById → PhoneNumberInfo, plus webhook_configuration, which the
    # spec omits (Meta's "Webhook overrides" page documents it; see sandbox.spec_allowances.UNDOCUMENTED)
    "id", "display_phone_number", "verified_name", "quality_rating", "code_verification_status", "name_status",
    "webhook_configuration",
})
PHONE_DEFAULT_FIELDS = ("display_phone_number", "verified_name", "quality_rating")  # the spec's defaults
LIST_FIELDS = frozenset({  # getWhatsAppBusinessAccountPhoneNumbers → WhatsAppBusinessAccountPhoneNumber
    "id", "display_phone_number", "verified_name", "status", "quality_rating", "country_code",
    "country_dial_code", "code_verification_status", "unified_cert_status", "account_mode", "host_platform",
    "messaging_limit_tier", "is_official_business_account", "username",
})
LIST_DEFAULT_FIELDS = ("display_phone_number", "verified_name", "status", "quality_rating",
                       "code_verification_status")


# Every operation the sandbox emulates: (method, the spec's template variable of the node, edge). The
# spec-conformance tests run over each; anything else is answered as Graph answers an unknown path.
OPERATIONS = frozenset({
    ("GET", "WABA-ID", None),  # getWhatsAppBusinessAccountDetails
    ("GET", "WABA-ID", "subscribed_apps"),  # getAllSubscriptionsForAWaba
    ("POST", "WABA-ID", "subscribed_apps"),  # subscribeToWabaWebhooks
    ("DELETE", "WABA-ID", "subscribed_apps"),  # unsubscribeFromWabaWebhooks
    ("GET", "WABA-ID", "phone_numbers"),  # getWhatsAppBusinessAccountPhoneNumbers
    ("GET", "Phone-Number-ID", None),  # getPhoneNumberById
    ("POST", "Phone-Number-ID", None),  # updatePhoneNumberStatus
    ("POST", "Phone-Number-ID", "messages"),  # sendMessage
    # Not in the v23.0 spec: Graph API reference, Application "subscriptions" edge (app access token).
    ("GET", "Application-ID", "subscriptions"),
    ("POST", "Application-ID", "subscriptions"),
})
GRAPH_VERSION = "v23.0"


@dataclasses.dataclass
class AppSubscription:
    """The app's webhook subscription to one object type (e.g. `whatsapp_business_account`)."""

    callback_url: str
    fields: list[str] = dataclasses.field(default_factory=list)
    active: bool = True
    # Kept to emulate the handshake's secret; never returned by any GET.
    verify_token: str | None = None


@dataclasses.dataclass
class MetaApp:
    app_id: str
    name: str
    callback_url: str
    subscriptions: dict[str, AppSubscription] = dataclasses.field(default_factory=dict)  # by object


@dataclasses.dataclass
class MetaToken:
    app_id: str
    wabas: list[str] = dataclasses.field(default_factory=list)
    expired: bool = False
    app_token: bool = False  # an app access token (`{app-id}|{app-secret}`): app-level edges only


@dataclasses.dataclass
class WabaSubscription:
    override_callback_uri: str | None = None
    # Kept to emulate the handshake's secret; never returned by any GET.
    verify_token: str | None = None


@dataclasses.dataclass
class PhoneNumber:
    id: str
    waba_id: str
    display_phone_number: str
    verified_name: str = "Sandbox Rentals"
    quality_rating: str = "GREEN"
    # The spec's enums (VERIFIED/UNVERIFIED, LINKED, CLOUD_API...) win over the values seen in the wild.
    code_verification_status: str = "VERIFIED"
    host_platform: str = "CLOUD_API"  # WhatsAppBusinessAccountHostPlatform: CLOUD_API | ON_PREMISE | ...
    status: str = "LINKED"
    account_mode: str = "LIVE"
    override_callback_uri: str | None = None
    override_verify_token: str | None = None


@dataclasses.dataclass
class Waba:
    id: str
    name: str
    phone_numbers: list[str] = dataclasses.field(default_factory=list)
    subscriptions: dict[str, WabaSubscription] = dataclasses.field(default_factory=dict)  # by app id


@dataclasses.dataclass
class SentMessage:
    """A message the sandbox accepted (what Meta would deliver)."""

    id: str
    phone_number_id: str
    to: str
    type: str
    template: str | None = None


@dataclasses.dataclass
class MetaState:
    apps: dict[str, MetaApp] = dataclasses.field(default_factory=dict)
    tokens: dict[str, MetaToken] = dataclasses.field(default_factory=dict)
    wabas: dict[str, Waba] = dataclasses.field(default_factory=dict)
    phones: dict[str, PhoneNumber] = dataclasses.field(default_factory=dict)
    page_size: int = 2  # small on purpose, so clients must follow the cursors
    call_budget: int = 10_000  # per token per window; answering code 80007 beyond it
    budget_window_s: float = 3600.0
    rate_limit_http_status: int = 429  # sources disagree (400/403/429): one setting
    templates: dict[str, list[str]] = dataclasses.field(default_factory=lambda: {"hello_world": ["en_US"]})
    open_windows: list[str] = dataclasses.field(default_factory=list)  # recipients who wrote within 24 h
    messages: dict[str, SentMessage] = dataclasses.field(default_factory=dict)
    _sender: StatusSender = dataclasses.field(default_factory=StatusSender, repr=False, compare=False)
    _clock: Clock = dataclasses.field(default=default_clock, repr=False, compare=False)
    _recent: dict[str, deque[float]] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    # Seeding -----------------------------------------------------------------------------------
    def add_app(self, app_id: str, name: str = "tenantctl", callback_url: str = "") -> MetaApp:
        app = MetaApp(app_id, name, callback_url or f"https://app-{app_id}.sandbox.invalid/webhooks/meta")
        self.apps[app_id] = app
        return app

    def add_token(self, token: str, app_id: str = DEFAULT_APP_ID) -> MetaToken:
        if app_id not in self.apps:
            self.add_app(app_id)
        tok = self.tokens.setdefault(token, MetaToken(app_id=app_id))
        return tok

    def add_waba(self, token: str, waba_id: str, name: str, app_id: str = DEFAULT_APP_ID) -> Waba:
        tok = self.tokens.get(token) or self.add_token(token, app_id)
        waba = self.wabas.setdefault(waba_id, Waba(id=waba_id, name=name))
        if waba_id not in tok.wabas:
            tok.wabas.append(waba_id)
        return waba

    def add_app_token(self, token: str, app_id: str = DEFAULT_APP_ID) -> MetaToken:
        """An app access token: it reads and writes the app's own subscriptions, no WABA."""
        if app_id not in self.apps:
            self.add_app(app_id)
        tok = self.tokens.setdefault(token, MetaToken(app_id=app_id, app_token=True))
        return tok

    def grant(self, token: str, waba_id: str) -> None:
        """Authorise one more token on an existing WABA."""
        tok = self.tokens.get(token) or self.add_token(token)
        if waba_id not in tok.wabas:
            tok.wabas.append(waba_id)

    def add_phone_number(
        self,
        waba_id: str,
        phone_number_id: str,
        display_phone_number: str,
        *,
        verified: bool = True,
        host_platform: str = "CLOUD_API",
        verified_name: str = "Sandbox Rentals",
    ) -> PhoneNumber:
        phone = PhoneNumber(
            id=phone_number_id,
            waba_id=waba_id,
            display_phone_number=display_phone_number,
            verified_name=verified_name,
            code_verification_status="VERIFIED" if verified else "UNVERIFIED",
            host_platform=host_platform,
        )
        self.phones[phone_number_id] = phone
        waba = self.wabas[waba_id]
        if phone_number_id not in waba.phone_numbers:
            waba.phone_numbers.append(phone_number_id)
        return phone

    def subscribe(self, waba_id: str, *, app_id: str = DEFAULT_APP_ID,
                  override_callback_uri: str | None = None, verify_token: str | None = None) -> None:
        self.wabas[waba_id].subscriptions[app_id] = WabaSubscription(override_callback_uri, verify_token)

    def expire_token(self, token: str) -> None:
        self.tokens[token].expired = True

    def node_kind(self, node_id: str) -> str | None:
        """The spec's template variable for a Graph node ID ("WABA-ID", ...), for the spec check."""
        if node_id in self.wabas:
            return "WABA-ID"
        if node_id in self.phones:
            return "Phone-Number-ID"
        if node_id in self.apps:
            return "Application-ID"
        return None


# Errors -----------------------------------------------------------------------------------------
class GraphError(Exception):
    def __init__(self, http: int, code: int, message: str, *, type_: str = "OAuthException",
                 subcode: int | None = None, details: str | None = None, transient: bool = False,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.http, self.code, self.message, self.type = http, code, message, type_
        self.subcode, self.details, self.transient = subcode, details, transient
        self.headers = headers or {}

    def body(self, trace_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        if self.details:
            err["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        if self.transient:
            err["is_transient"] = True
        err["fbtrace_id"] = trace_id
        return {"error": err}


def _trace_id() -> str:
    return "A" + secrets.token_urlsafe(16)[:22]


def error_response(err: GraphError) -> tuple[int, dict[str, str], bytes]:
    trace = _trace_id()
    headers = {"x-fb-trace-id": trace, "content-type": "application/json", **err.headers}
    if err.code == 190:
        headers["WWW-Authenticate"] = f'OAuth "Facebook Platform" "invalid_token" "{err.message}"'
    return err.http, headers, json.dumps(err.body(trace)).encode()


def fault_response(kind: str, retry_after_s: float,
                   rate_limit_http: int = 429) -> tuple[int, dict[str, str], bytes]:
    if kind == "429":
        err = GraphError(rate_limit_http, 4, "(#4) Application request limit reached", transient=True,
                         details="Too many calls from this application; retry later.",
                         headers={"Retry-After": _retry_after(retry_after_s)})
    else:
        err = GraphError(500, 2, "An unexpected error has occurred. Please retry your request later.",
                         transient=True)
    return error_response(err)


def _retry_after(seconds: float) -> str:
    return str(max(0, round(seconds)))


def _unknown_object(node: str, method: str) -> GraphError:
    return GraphError(
        400, 100,
        f"Unsupported {method.lower()} request. Object with ID '{node}' does not exist, cannot be loaded due "
        "to missing permissions, or does not support this operation.",
        type_="GraphMethodException", subcode=33)


# Resource ---------------------------------------------------------------------------------------
class GraphResource:
    def __init__(self, state_ref: Any) -> None:
        # `state_ref()` returns the current MetaState: the world may be replaced by PUT /_sandbox/state.
        self._state = state_ref

    def on_get(self, req: falcon.Request, resp: falcon.Response, version: str, node: str) -> None:
        self._run(req, resp, version, node, None)

    def on_post(self, req: falcon.Request, resp: falcon.Response, version: str, node: str) -> None:
        self._run(req, resp, version, node, None)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, version: str, node: str) -> None:
        self._run(req, resp, version, node, None)

    def on_get_edge(self, req: falcon.Request, resp: falcon.Response, version: str, node: str,
                    edge: str) -> None:
        self._run(req, resp, version, node, edge)

    def on_post_edge(self, req: falcon.Request, resp: falcon.Response, version: str, node: str,
                     edge: str) -> None:
        self._run(req, resp, version, node, edge)

    def on_delete_edge(self, req: falcon.Request, resp: falcon.Response, version: str, node: str,
                       edge: str) -> None:
        self._run(req, resp, version, node, edge)

    def _run(self, req: falcon.Request, resp: falcon.Response, version: str, node: str,
             edge: str | None) -> None:
        state: MetaState = self._state()
        try:
            if not version.startswith("v"):
                raise GraphError(400, 2500, f"Unknown path components: /{version}", type_="OAuthException")
            params = _params(req)
            token = self._authenticate(state, req, params)
            body = self._dispatch(state, req, token, (node, edge), params)
        except GraphError as err:
            status, headers, data = error_response(err)
            resp.status = status
            resp.data = data
            for k, v in headers.items():
                resp.set_header(k, v)
            return
        send_json(resp, 200, body, {"x-fb-trace-id": _trace_id()})

    @staticmethod
    def _authenticate(state: MetaState, req: falcon.Request, params: dict[str, Any]) -> MetaToken:
        token = bearer_token(req) or params.pop("access_token", None)
        if not token:
            raise GraphError(400, 2500, "An active access token must be used to query information about the "
                             "current user.")
        tok = state.tokens.get(token)
        if tok is None:
            raise GraphError(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if tok.expired:
            raise GraphError(401, 190, "Error validating access token: Session has expired.", subcode=463)
        now = state._clock()
        window = state._recent.setdefault(token, deque())
        while window and window[0] <= now - state.budget_window_s:
            window.popleft()
        if len(window) >= state.call_budget:
            retry = (window[0] + state.budget_window_s - now) if window else state.budget_window_s
            raise GraphError(state.rate_limit_http_status, 80007,
                             "(#80007) There have been too many calls to this WhatsApp Business account.",
                             transient=True, details="Rate limit hit; retry later.",
                             headers={"Retry-After": _retry_after(max(retry, 1.0))})
        window.append(now)
        return tok

    def _dispatch(self, state: MetaState, req: falcon.Request, tok: MetaToken, target: tuple[str, str | None],
                  params: dict[str, Any]) -> Any:
        node, edge = target
        method = req.method
        if (method, state.node_kind(node), edge) not in OPERATIONS:
            raise _unknown_object(node, method) if edge is None or node not in state.wabas else GraphError(
                400, 100, f"Unknown path components: /{edge}", type_="OAuthException")
        if node in state.wabas:
            waba = state.wabas[node]
            if node not in tok.wabas:
                raise _permission_error()
            if edge is None and method == "GET":
                return {"id": waba.id, "name": waba.name}
            if edge == "subscribed_apps":
                return self._subscribed_apps(state, method, waba, tok, params)
            if edge == "phone_numbers" and method == "GET":
                return self._phone_numbers(state, req, waba, params)
        elif node in state.apps:
            if not tok.app_token or tok.app_id != node:
                raise GraphError(400, 15, "(#15) This method must be called with an app access_token.")
            return self._app_subscriptions(state.apps[node], method, params)
        elif node in state.phones:
            phone = state.phones[node]
            if phone.waba_id not in tok.wabas:
                raise _permission_error()
            if edge is None and method == "GET":
                fields = _fields(params, PHONE_DEFAULT_FIELDS, PHONE_FIELDS, "WhatsAppBusinessPhoneNumber")
                return _phone_view(state, phone, tok, fields)
            if edge is None and method == "POST":
                return self._update_phone(phone, params)
            if edge == "messages" and method == "POST":
                return _send_message(state, phone, tok, params)
        raise _unknown_object(node, method) if edge is None or node not in state.wabas else GraphError(
            400, 100, f"Unknown path components: /{edge}", type_="OAuthException")

    @staticmethod
    def _subscribed_apps(state: MetaState, method: str, waba: Waba, tok: MetaToken,
                         params: dict[str, Any]) -> Any:
        if method == "GET":
            data = []
            for app_id, sub in waba.subscriptions.items():
                app = state.apps.get(app_id) or MetaApp(app_id, app_id, "")
                item: dict[str, Any] = {"whatsapp_business_api_data": {
                    "id": app.app_id, "name": app.name,
                    "link": f"https://www.facebook.com/games/?app_id={app.app_id}"}}
                if sub.override_callback_uri:
                    item["override_callback_uri"] = sub.override_callback_uri
                data.append(item)
            return {"data": data}
        if method == "POST":
            uri = params.get("override_callback_uri")
            verify = params.get("verify_token")
            if uri:
                _check_callback(uri, verify)
            # Posting without an override removes the WABA-level override (documented way to clear it).
            waba.subscriptions[tok.app_id] = WabaSubscription(uri or None, verify if uri else None)
            return {"success": True}
        if method == "DELETE":
            waba.subscriptions.pop(tok.app_id, None)
            return {"success": True}
        raise _unknown_object(waba.id, method)

    @staticmethod
    def _app_subscriptions(app: MetaApp, method: str, params: dict[str, Any]) -> Any:
        """GET: {data: [{object, callback_url, active, fields: [{name, version}]}]}; POST: set the callback
        and add fields (subscribing to a field leaves the others subscribed)."""
        if method == "GET":
            return {"data": [
                {"object": obj, "callback_url": sub.callback_url, "active": sub.active,
                 "fields": [{"name": f, "version": GRAPH_VERSION} for f in sub.fields]}
                for obj, sub in app.subscriptions.items()]}
        obj = params.get("object")
        if not isinstance(obj, str) or not obj:
            raise GraphError(400, 100, "(#100) The parameter object is required")
        url = params.get("callback_url")
        _check_callback(url, params.get("verify_token"), name="callback_url")
        raw = params.get("fields") or []
        fields = [f.strip() for f in raw.split(",")] if isinstance(raw, str) else [str(f) for f in raw]
        current = app.subscriptions.get(obj)
        known = current.fields if current is not None else []
        app.subscriptions[obj] = AppSubscription(str(url), [*known, *(f for f in fields if f and f not in known)],
                                                 True, str(params.get("verify_token")))
        return {"success": True}

    @staticmethod
    def _phone_numbers(state: MetaState, req: falcon.Request, waba: Waba, params: dict[str, Any]) -> Any:
        try:
            limit = int(params.get("limit", state.page_size))
        except ValueError as exc:
            raise GraphError(400, 100, "(#100) Param limit must be a number") from exc
        if limit < 1:
            raise GraphError(400, 100, "(#100) Param limit must be a positive number")
        ids = waba.phone_numbers
        start = 0
        if params.get("after"):
            start = _decode_cursor(params["after"], ids) + 1
        elif params.get("before"):
            start = max(0, _decode_cursor(params["before"], ids) - limit)
        page = ids[start:start + limit]
        fields = _fields(params, LIST_DEFAULT_FIELDS, LIST_FIELDS, "WhatsAppBusinessPhoneNumber")
        data = [_phone_view(state, state.phones[i], None, fields) for i in page]
        body: dict[str, Any] = {"data": data}
        if page:
            body["paging"] = {"cursors": {"before": _cursor(page[0]), "after": _cursor(page[-1])}}
            if start + limit < len(ids):
                query = {k: v for k, v in params.items() if k not in ("after", "before")}
                query.update({"limit": str(limit), "after": _cursor(page[-1])})
                body["paging"]["next"] = (f"{base_url(req)}{req.path}?" + urllib.parse.urlencode(query))
            if start > 0:
                query = {k: v for k, v in params.items() if k not in ("after", "before")}
                query.update({"limit": str(limit), "before": _cursor(page[0])})
                body["paging"]["previous"] = (f"{base_url(req)}{req.path}?" + urllib.parse.urlencode(query))
        return body

    @staticmethod
    def _update_phone(phone: PhoneNumber, params: dict[str, Any]) -> Any:
        conf = params.get("webhook_configuration")
        if isinstance(conf, str):  # form-encoded callers send the object as a JSON string
            try:
                conf = json.loads(conf)
            except ValueError as exc:
                raise GraphError(400, 100, "(#100) Param webhook_configuration must be a JSON object") \
                    from exc
        if not isinstance(conf, dict):
            raise GraphError(400, 100, "(#100) The parameter webhook_configuration is required")
        if "override_callback_uri" not in conf:
            raise GraphError(400, 100, "(#100) The parameter override_callback_uri is required")
        uri = conf.get("override_callback_uri") or ""
        if uri == "":
            # An empty override_callback_uri is how the docs say to remove the phone-level override.
            phone.override_callback_uri = None
            phone.override_verify_token = None
            return {"success": True}
        _check_callback(uri, conf.get("verify_token"))
        phone.override_callback_uri = uri
        phone.override_verify_token = conf.get("verify_token")
        return {"success": True}


def _send_message(state: MetaState, phone: PhoneNumber, tok: MetaToken, params: dict[str, Any]) -> Any:
    """sendMessage: validate as Meta does, keep the message, schedule its status webhooks. Answers the
    spec's MessageResponsePayload."""
    if params.get("messaging_product") != "whatsapp":
        raise GraphError(400, 100, "(#100) The parameter messaging_product is required and must be whatsapp")
    to = str(params.get("to") or "").lstrip("+")
    if not to.isdigit() or not 7 <= len(to) <= 15:
        raise GraphError(400, 100, "(#100) Invalid parameter: to must be a phone number in E.164 format")
    kind = params.get("type") or "text"
    template: str | None = None
    if kind == "template":
        tpl = params.get("template")
        name = tpl.get("name") if isinstance(tpl, dict) else None
        lang = tpl.get("language") if isinstance(tpl, dict) else None
        code = lang.get("code") if isinstance(lang, dict) else None
        if not isinstance(name, str) or code not in state.templates.get(name, []):
            raise GraphError(404, 132001, "(#132001) Template name does not exist in the translation",
                             details=f"template name ({name}) does not exist in {code}")
        template = name
    elif kind == "text":
        if to not in state.open_windows:
            raise GraphError(400, 131047, "Re-engagement message", details="Message failed to send because "
                             "more than 24 hours have passed since the customer last replied to this number.")
    else:
        raise GraphError(400, 131051, "Unsupported message type", details=f"message type {kind!r} is not "
                         "emulated by the sandbox")
    wamid = "wamid." + base64.urlsafe_b64encode(secrets.token_bytes(30)).decode().rstrip("=")
    state.messages[wamid] = SentMessage(wamid, phone.id, to, str(kind), template)
    state._sender.submit(StatusJob(phone.waba_id, phone.id, phone.display_phone_number, wamid, to,
                                   _callback_url(state, phone, tok), "utility" if template else "service"))
    return {"messaging_product": "whatsapp", "contacts": [{"input": str(params.get("to")), "wa_id": to}],
            "messages": [{"id": wamid, "message_status": "accepted"}]}


def _callback_url(state: MetaState, phone: PhoneNumber, tok: MetaToken) -> str | None:
    """Where Meta sends this number's webhooks for the token's app: the phone's override, else the WABA's,
    else the app's callback (Meta's "Webhook overrides" precedence)."""
    conf = _webhook_configuration(state, phone, tok)
    return conf.get("phone_number") or conf.get("whatsapp_business_account") or conf.get("application")


def _permission_error() -> GraphError:
    return GraphError(403, 200, "(#200) Permissions error", details="The access token is not authorized "
                      "for this WhatsApp Business Account.")


def _check_callback(uri: Any, verify_token: Any, name: str = "override_callback_uri") -> None:
    parsed = urllib.parse.urlparse(str(uri))
    if parsed.scheme != "https" or not parsed.netloc:
        raise GraphError(400, 100, f"(#100) Param {name} must be a valid https URL")
    if not verify_token:
        raise GraphError(400, 100, "(#100) The parameter verify_token is required")


def _params(req: falcon.Request) -> dict[str, Any]:
    """Graph takes parameters from the query string, a form body or a JSON body alike."""
    params: dict[str, Any] = dict(req.params)
    if req.method in ("POST", "DELETE"):
        _, parsed = read_body(req)
        if is_invalid(parsed):
            raise GraphError(400, 100, "(#100) Invalid JSON body")
        if isinstance(parsed, dict):
            params.update(parsed)
    return params


def _fields(params: dict[str, Any], default: tuple[str, ...], known: frozenset[str],
            node_type: str) -> tuple[str, ...]:
    """The names of a `fields=` list; one the node does not have is refused as Graph refuses it."""
    raw = params.get("fields")
    if not raw:
        return default
    names = tuple(f.strip() for f in str(raw).split(",") if f.strip())
    for name in names:
        if name not in known:
            raise GraphError(400, 100, f"(#100) Tried accessing nonexisting field ({name}) on node type "
                             f"({node_type})", type_="OAuthException")
    return names


def _cursor(phone_id: str) -> str:
    return base64.urlsafe_b64encode(phone_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, ids: list[str]) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return ids.index(raw)
    except ValueError as exc:
        raise GraphError(400, 100, "(#100) Invalid cursor") from exc


def _phone_view(state: MetaState, phone: PhoneNumber, tok: MetaToken | None, fields: tuple[str, ...]) -> Any:
    view: dict[str, Any] = {}
    values: dict[str, Any] = {
        "display_phone_number": phone.display_phone_number,
        "verified_name": phone.verified_name,
        "quality_rating": phone.quality_rating,
        "code_verification_status": phone.code_verification_status,
        "host_platform": phone.host_platform,
        "status": phone.status,
        "account_mode": phone.account_mode,
    }
    for field in fields:
        if field == "webhook_configuration":
            if tok is not None:
                view[field] = _webhook_configuration(state, phone, tok)
        elif field in values:
            view[field] = values[field]
    view["id"] = phone.id
    return view


def _webhook_configuration(state: MetaState, phone: PhoneNumber, tok: MetaToken) -> dict[str, str]:
    """The effective callbacks for this app, by level (the real response omits unset levels)."""
    conf: dict[str, str] = {}
    if phone.override_callback_uri:
        conf["phone_number"] = phone.override_callback_uri
    sub = state.wabas[phone.waba_id].subscriptions.get(tok.app_id)
    if sub and sub.override_callback_uri:
        conf["whatsapp_business_account"] = sub.override_callback_uri
    app = state.apps.get(tok.app_id)
    if app:
        conf["application"] = app.callback_url
    return conf


def register(app: falcon.App[falcon.Request, falcon.Response], state_ref: Any) -> None:
    res = GraphResource(state_ref)
    app.add_route(PREFIX + "/{version}/{node}", res)
    app.add_route(PREFIX + "/{version}/{node}/{edge}", res, suffix="edge")
