"""Every operation the sandbox emulates (Meta, Nuki, Hospitable) against the vendored specs, table-driven:
it conforms as the reconciler calls it; a request naming something the spec does not document fails; an
answer carrying a property the spec does not define fails. The sandbox cannot agree with the reconciler
where the spec does not."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

import falcon
import httpx
import pytest

from sandbox import hospitable, meta, nuki
from sandbox.meta import AppSubscription
from sandbox.nuki import Webhook
from sandbox.spec_allowances import UNDOCUMENTED, Undocumented, add_undocumented
from sandbox.spec_check import SpecCheckingTransport, SpecRegistry
from sandbox.spec_schema import graph_fields, object_fields
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tests.sandbox.conftest import HOSP_TOKEN, LOCK, META_TOKEN, NUKI_TOKEN, PHONES, WABA

PROPERTY = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
AUTH = "{auth}"  # replaced by the seeded keypad authorisation's ID
TOKENS = {"meta": META_TOKEN, "nuki": NUKI_TOKEN, "hospitable": HOSP_TOKEN}
HOOK = {"override_callback_uri": "https://hooks.example/t/acme", "verify_token": "t"}
APP = "900000000000001"
APP_TOKEN = f"{APP}|app-secret"
APP_SUBSCRIBE = {"object": "whatsapp_business_account", "callback_url": "https://hooks.example/api/webhooks/wa",
                 "fields": "messages,account_update", "verify_token": "t"}
MESSAGE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "4915112345678",
           "type": "template",
           "template": {"name": "hello_world", "language": {"policy": "deterministic", "code": "en_US"}}}
CODE = {"name": "tc:Maria", "allowedWeekDays": 124, "allowedFromTime": 480, "allowedUntilTime": 1080,
        "remoteAllowed": False, "code": 345679}


@dataclasses.dataclass(frozen=True)
class Op:
    """One emulated operation: how the reconciler calls it, and the same call naming `bad` undocumented."""

    spec_ref: str  # operationId, or METHOD path in the Swagger document
    provider: str
    method: str
    path: str
    emulates: tuple[str, str | None] | str  # meta: (node kind, edge); else the sandbox's route template
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    body: dict[str, Any] | None = None
    bad_params: dict[str, str] | None = None
    bad_body: dict[str, Any] | None = None
    token: str | None = None  # another token than the provider's usual one

    @property
    def bad(self) -> str:
        """The undocumented name the bad variant carries."""
        if self.bad_params is not None:
            return next(v if k == "fields" else k for k, v in self.bad_params.items()
                        if k not in self.params or v != self.params[k]).split(",")[-1]
        return "undocumented_flag"


def _with_flag(body: dict[str, Any], *where: str) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    target = out
    for key in where:
        target = target[key]
    target["undocumented_flag"] = True
    return out


OPS = [
    # Meta Graph v23.0 ----------------------------------------------------------------------------
    Op("getWhatsAppBusinessAccountDetails", "meta", "GET", f"/meta/v23.0/{WABA}", ("WABA-ID", None),
       bad_params={"fields": "id,platform_type"}),
    Op("getAllSubscriptionsForAWaba", "meta", "GET", f"/meta/v23.0/{WABA}/subscribed_apps",
       ("WABA-ID", "subscribed_apps"), bad_params={"fields": "id,callback_url"}),
    Op("subscribeToWabaWebhooks", "meta", "POST", f"/meta/v23.0/{WABA}/subscribed_apps",
       ("WABA-ID", "subscribed_apps"), body=HOOK, bad_body=_with_flag(HOOK)),
    Op("unsubscribeFromWabaWebhooks", "meta", "DELETE", f"/meta/v23.0/{WABA}/subscribed_apps",
       ("WABA-ID", "subscribed_apps"), bad_params={"app_id": "900000000000001"}),
    Op("getWhatsAppBusinessAccountPhoneNumbers", "meta", "GET", f"/meta/v23.0/{WABA}/phone_numbers",
       ("WABA-ID", "phone_numbers"),
       params={"fields": "id,display_phone_number,verified_name,code_verification_status,host_platform,status",
               "limit": "100"},
       bad_params={"fields": "id,code_verification_status,platform_type", "limit": "100"}),
    Op("getPhoneNumberById", "meta", "GET", f"/meta/v23.0/{PHONES[0]}", ("Phone-Number-ID", None),
       params={"fields": "webhook_configuration"}, bad_params={"fields": "webhook_configuration,throughput"}),
    Op("updatePhoneNumberStatus", "meta", "POST", f"/meta/v23.0/{PHONES[0]}", ("Phone-Number-ID", None),
       body={"webhook_configuration": HOOK},
       bad_body=_with_flag({"webhook_configuration": HOOK}, "webhook_configuration")),
    Op("sendMessage", "meta", "POST", f"/meta/v23.0/{PHONES[0]}/messages", ("Phone-Number-ID", "messages"),
       body=MESSAGE, bad_body=_with_flag(MESSAGE, "template")),
    # Not in the v23.0 spec: the app's own subscription (sandbox.spec_allowances.UNDOCUMENTED gives its shape).
    Op("getAppSubscriptions", "meta", "GET", f"/meta/v23.0/{APP}/subscriptions", ("Application-ID", "subscriptions"),
       bad_params={"limit": "5"}, token=APP_TOKEN),
    Op("setAppSubscription", "meta", "POST", f"/meta/v23.0/{APP}/subscriptions", ("Application-ID", "subscriptions"),
       body=APP_SUBSCRIBE, bad_body=_with_flag(APP_SUBSCRIBE), token=APP_TOKEN),
    # Nuki Web API 4.4.1 --------------------------------------------------------------------------
    Op("GET /smartlock", "nuki", "GET", "/nuki/smartlock", "/nuki/smartlock", bad_params={"favorite": "1"}),
    Op("GET /smartlock/auth", "nuki", "GET", "/nuki/smartlock/auth", "/nuki/smartlock/auth",
       params={"types": "13"}, bad_params={"types": "13", "smartlockId": str(LOCK)}),
    Op("GET /smartlock/{smartlockId}/auth", "nuki", "GET", f"/nuki/smartlock/{LOCK}/auth",
       "/nuki/smartlock/{smartlock_id}/auth", params={"types": "13"}, bad_params={"types": "13", "code": "1"}),
    Op("PUT /smartlock/{smartlockId}/auth", "nuki", "PUT", f"/nuki/smartlock/{LOCK}/auth",
       "/nuki/smartlock/{smartlock_id}/auth", body={**CODE, "type": 13},
       bad_body=_with_flag({**CODE, "type": 13})),
    Op("GET /smartlock/{smartlockId}/auth/{id}", "nuki", "GET", f"/nuki/smartlock/{LOCK}/auth/{AUTH}",
       "/nuki/smartlock/{smartlock_id}/auth/{auth_key}", bad_params={"withCode": "true"}),
    Op("POST /smartlock/{smartlockId}/auth/{id}", "nuki", "POST", f"/nuki/smartlock/{LOCK}/auth/{AUTH}",
       "/nuki/smartlock/{smartlock_id}/auth/{auth_key}", body={**CODE, "enabled": True},
       bad_body=_with_flag({**CODE, "enabled": True})),
    Op("DELETE /smartlock/{smartlockId}/auth/{id}", "nuki", "DELETE", f"/nuki/smartlock/{LOCK}/auth/{AUTH}",
       "/nuki/smartlock/{smartlock_id}/auth/{auth_key}", bad_params={"force": "true"}),
    Op("GET /api/decentralWebhook", "nuki", "GET", "/nuki/api/decentralWebhook", "/nuki/api/decentralWebhook",
       bad_params={"webhookUrl": "https://hooks.example/n"}),
    Op("PUT /api/decentralWebhook", "nuki", "PUT", "/nuki/api/decentralWebhook", "/nuki/api/decentralWebhook",
       body={"webhookUrl": "https://hooks.example/n", "webhookFeatures": ["DEVICE_AUTHS"]},
       bad_body=_with_flag({"webhookUrl": "https://hooks.example/n", "webhookFeatures": ["DEVICE_AUTHS"]})),
    Op("DELETE /api/decentralWebhook/{id}", "nuki", "DELETE", "/nuki/api/decentralWebhook/1",
       "/nuki/api/decentralWebhook/{webhook_id}", bad_params={"secret": "s"}),
    # Hospitable Public API v2 --------------------------------------------------------------------
    Op("get-properties", "hospitable", "GET", "/hospitable/v2/properties", "/hospitable/v2/properties",
       params={"page": "1", "per_page": "100"}, bad_params={"page": "1", "per_page": "100", "search": "Loft"}),
]
IDS = [f"{op.provider}:{op.spec_ref}" for op in OPS]


@pytest.fixture
def seeded(world: World) -> World:
    """A world where every emulated operation has something to answer about."""
    world.nuki.apply_after_reads = 0
    world.meta.subscribe(WABA, override_callback_uri=HOOK["override_callback_uri"], verify_token="t")
    world.meta.phones[PHONES[0]].override_callback_uri = "https://hooks.example/p"
    world.meta.add_app_token(APP_TOKEN, APP)
    world.meta.apps[APP].subscriptions["whatsapp_business_account"] = AppSubscription(
        "https://hooks.example/api/webhooks/wa", ["messages"], True, "t")
    world.nuki.add_keypad_code(NUKI_TOKEN, LOCK, "tc:Tom", 456789)
    world.nuki.accounts[NUKI_TOKEN].webhooks[1] = Webhook(1, "https://hooks.example/n", ["DEVICE_AUTHS"], "s")
    world.nuki.next_webhook_id = 2
    world.hospitable.add_property(HOSP_TOKEN, PROPERTY, "Loft")
    return world


def _call(world: World, transport: httpx.BaseTransport, op: Op, *, bad: bool = False) -> httpx.Response:
    [auth] = world.nuki.accounts[NUKI_TOKEN].smartlocks[LOCK].auths
    path = op.path.replace(AUTH, auth)
    params = op.bad_params if bad and op.bad_params is not None else op.params
    body = op.bad_body if bad and op.bad_body is not None else op.body
    with httpx.Client(transport=transport, base_url="http://sandbox",
                      headers={"Authorization": f"Bearer {op.token or TOKENS[op.provider]}"}) as client:
        return client.request(op.method, path, params=params, json=body)


def _checking(world: World, specs: SpecRegistry, inner: httpx.BaseTransport | None = None) -> SpecCheckingTransport:
    return SpecCheckingTransport(inner or sandbox_transport(world), specs, node_kind=world.meta.node_kind)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_each_emulated_operation_conforms_to_its_spec(seeded: World, specs: SpecRegistry, op: Op) -> None:
    checked = _checking(seeded, specs)
    resp = _call(seeded, checked, op)
    assert resp.status_code < 400, resp.text
    assert [str(v) for v in checked.violations] == []
    assert checked.checked == 1


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_a_request_naming_an_undocumented_field_fails(seeded: World, specs: SpecRegistry, op: Op) -> None:
    checked = _checking(seeded, specs)
    _call(seeded, checked, op, bad=True)
    problems = [v.message for v in checked.violations if v.phase == "request"]
    assert any(repr(op.bad) in m for m in problems), problems


class _AddUndocumented(httpx.BaseTransport):
    """The sandbox's answer plus one property no spec defines (a body, where the spec documents none)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self.inner.handle_request(request)
        resp.read()
        if resp.status_code >= 400:
            return resp
        body: Any = json.loads(resp.content) if resp.content else None
        if body is None:
            body = {"undocumented_flag": True}
        else:
            target = body["data"][0] if isinstance(body, dict) and body.get("data") else body
            target = target[0] if isinstance(target, list) else target
            target["undocumented_flag"] = True
        return httpx.Response(resp.status_code, json=body, request=request)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_an_answer_carrying_an_undocumented_property_fails(seeded: World, specs: SpecRegistry, op: Op) -> None:
    checked = _checking(seeded, specs, _AddUndocumented(sandbox_transport(seeded)))
    assert _call(seeded, checked, op).status_code < 400
    problems = [v.message for v in checked.violations if v.phase == "response"]
    assert any("'undocumented_flag'" in m or "where the spec documents none" in m for m in problems), problems


class _Routes:
    """Stands in for the Falcon app: records each (method, route) a provider module registers."""

    def __init__(self) -> None:
        self.found: set[tuple[str, str]] = set()

    def add_route(self, template: str, resource: object, suffix: str | None = None) -> None:
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(resource, f"on_{method}" + (f"_{suffix}" if suffix else "")):
                self.found.add((method.upper(), template))


def test_the_table_covers_every_operation_the_sandbox_emulates() -> None:
    routes = _Routes()
    for module in (nuki, hospitable):
        module.register(cast("falcon.App[falcon.Request, falcon.Response]", routes), lambda: None)
    assert {(op.method, op.emulates) for op in OPS if op.provider != "meta"} == routes.found
    assert {(op.method, *op.emulates) for op in OPS if op.provider == "meta"} == meta.OPERATIONS


def _ok_schema(specs: SpecRegistry, template: str) -> Any:
    return specs.meta().operation(template, "get")["responses"]["200"]["content"]["application/json"]["schema"]


def test_the_sandbox_knows_exactly_the_phone_fields_the_spec_documents(specs: SpecRegistry) -> None:
    spec = specs.meta()
    assert object_fields(_ok_schema(specs, "/{Version}/{Phone-Number-ID}"), spec.resolve) == meta.PHONE_FIELDS
    assert object_fields(_ok_schema(specs, "/{Version}/{WABA-ID}/phone_numbers"), spec.resolve) == meta.LIST_FIELDS
    assert "host_platform" in meta.LIST_FIELDS and "platform_type" not in meta.LIST_FIELDS


def test_an_undocumented_property_deep_in_an_answer_fails(seeded: World, specs: SpecRegistry) -> None:
    class Deep(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            locks = sandbox_transport(seeded).handle_request(request)
            locks.read()
            body = json.loads(locks.content)
            body[0]["state"]["doorSensorBattery"] = 80
            return httpx.Response(200, json=body, request=request)

    checked = _checking(seeded, specs, Deep())
    _call(seeded, checked, OPS[IDS.index("nuki:GET /smartlock")])
    assert [v.message for v in checked.violations] == ["/0/state: undocumented property 'doorSensorBattery'"]


def test_nuki_path_parameters_are_checked_against_their_declared_type(seeded: World, specs: SpecRegistry) -> None:
    checked = _checking(seeded, specs)
    with httpx.Client(transport=checked, base_url="http://sandbox/nuki",
                      headers={"Authorization": f"Bearer {NUKI_TOKEN}"}) as client:
        client.get("/smartlock/old-town/auth", params={"types": "13"})
    assert any("path parameter 'smartlockId'" in v.message and "'integer'" in v.message
               for v in checked.violations)


@pytest.mark.parametrize("entry", UNDOCUMENTED, ids=lambda e: f"{e.provider}:{e.name}")
def test_each_allowance_names_its_public_source_and_is_added_to_the_loaded_spec(specs: SpecRegistry,
                                                                               entry: Undocumented) -> None:
    assert "https://" in entry.source or "spec's own example" in entry.source
    loaded = {"meta": specs.meta, "hospitable": specs.hospitable, "nuki": specs.nuki}[entry.provider]()
    assert entry.name in loaded.resolve("#" + entry.where)


def test_an_allowance_for_something_the_spec_documents_is_refused() -> None:
    doc = {"components": {"schemas": {"PhoneNumberInfo": {"properties": {"verified_name": {}}}}}}
    already = Undocumented("meta", "/components/schemas/PhoneNumberInfo/properties", "verified_name", {}, "x")
    with pytest.raises(ValueError, match="now documents"):
        add_undocumented("meta", doc, (already,))


@pytest.mark.parametrize(("raw", "names"), [
    ("id,host_platform", ["id", "host_platform"]),
    ("webhook_configuration{phone_number,application},data.limit(5)", ["webhook_configuration", "data"]),
    (" id , ,name ", ["id", "name"]),
])
def test_graph_fields_lists_are_read_by_their_top_level_names(raw: str, names: list[str]) -> None:
    assert graph_fields(raw) == names
