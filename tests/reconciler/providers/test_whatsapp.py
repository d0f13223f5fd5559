"""WhatsApp: the WABA subscription and the phone number route to the tenant's URL, checked against Meta."""

from __future__ import annotations

import httpx
import pytest

from reconciler.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    PermanentError,
    PermissionDenied,
    TemporaryError,
)
from reconciler.model import Action, Resource
from reconciler.providers.whatsapp import WhatsAppProvider, classify_graph_error, graph_error_class
from sandbox.spec_check import SpecCheckingTransport
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tests.reconciler.conftest import SimpleHttp
from tests.reconciler.providers.helpers import (
    META_TOKEN,
    PHONE,
    SLUG,
    VERIFY,
    WABA,
    actions,
    apply_all,
    make_ctx,
    make_tenant,
    make_world,
    plan_live,
    spec_checked_http,
    writes,
)

URL = "https://ops.example.com/api/webhooks/wa/t/acme"
ELSEWHERE = "https://elsewhere.example.net/hook"
SUB = f"whatsapp.waba_subscription[{SLUG}]"
NUMBER = f"whatsapp.phone_number[{SLUG}/{PHONE}]"
PHONE_HOOK = f"whatsapp.phone_webhook[{SLUG}/{PHONE}]"
provider = WhatsAppProvider()


def http_for(world: World) -> SimpleHttp:
    return spec_checked_http(world)  # every call of every test conforms to the vendored spec


def test_converges_and_speaks_the_meta_spec() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    checking = SpecCheckingTransport(sandbox_transport(world))
    http = SimpleHttp(checking)

    first = plan_live(provider, tenant, ctx, http)
    assert actions(first) == {SUB: Action.CREATE, NUMBER: Action.NOOP, PHONE_HOOK: Action.NOOP}
    apply_all(provider, tenant, ctx, first, http)
    sub = world.meta.wabas[WABA].subscriptions
    assert [(s.override_callback_uri, s.verify_token) for s in sub.values()] == [(URL, VERIFY)]

    world.calls.clear()
    second = plan_live(provider, tenant, ctx, http)
    assert {c.action for c in second} == {Action.NOOP}
    apply_all(provider, tenant, ctx, second, http)
    assert world.calls.writes() == []
    assert len(world.calls.calls("meta")) == 3  # the whole cost of a no-op plan
    assert checking.violations == []
    assert checking.checked > 0


def test_a_phone_level_override_elsewhere_is_set_to_ours() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.subscribe(WABA, override_callback_uri=URL, verify_token=VERIFY)
    world.meta.phones[PHONE].override_callback_uri = ELSEWHERE
    world.meta.phones[PHONE].override_verify_token = "theirs"
    http = http_for(world)

    plan = plan_live(provider, tenant, ctx, http)
    [change] = writes(plan)
    assert (change.address, change.action) == (PHONE_HOOK, Action.UPDATE)
    assert [(f.old, f.new) for f in change.fields] == [(ELSEWHERE, URL)]
    apply_all(provider, tenant, ctx, plan, http)
    assert world.meta.phones[PHONE].override_callback_uri == URL
    assert world.meta.phones[PHONE].override_verify_token == VERIFY
    assert writes(plan_live(provider, tenant, ctx, http)) == []


def test_a_phone_level_override_that_is_ours_is_accepted() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.subscribe(WABA, override_callback_uri=URL, verify_token=VERIFY)
    world.meta.phones[PHONE].override_callback_uri = URL
    assert writes(plan_live(provider, tenant, ctx, http_for(world))) == []


def test_a_waba_override_elsewhere_is_updated() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.subscribe(WABA, override_callback_uri=ELSEWHERE, verify_token="old")
    http = http_for(world)
    [change] = writes(plan_live(provider, tenant, ctx, http))
    assert (change.address, change.action) == (SUB, Action.UPDATE)
    apply_all(provider, tenant, ctx, [change], http)
    assert world.meta.wabas[WABA].subscriptions["900000000000001"].override_callback_uri == URL


def test_another_app_on_the_waba_is_reported_and_left_alone() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.add_app("800000000000002", "someone-else")
    world.meta.subscribe(WABA, override_callback_uri=URL, verify_token=VERIFY)
    world.meta.subscribe(WABA, app_id="800000000000002", override_callback_uri=ELSEWHERE, verify_token="x")
    plan = plan_live(provider, tenant, ctx, http_for(world))
    assert writes(plan) == []
    [report] = [c for c in plan if c.action is Action.REPORT]
    assert report.address == f"whatsapp.waba_subscription[{SLUG}/app-800000000000002]"
    assert report.severity == "info"


@pytest.mark.parametrize(("seed", "problem"), [
    ("missing", "is not in the WABA"),
    ("unverified", "not verified"),
    ("on-premise", "not the Cloud API"),
])
def test_a_phone_number_problem_is_an_error_report(seed: str, problem: str) -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.subscribe(WABA, override_callback_uri=URL, verify_token=VERIFY)
    if seed == "missing":
        world.meta.wabas[WABA].phone_numbers.remove(PHONE)
    elif seed == "unverified":
        world.meta.phones[PHONE].code_verification_status = "UNVERIFIED"
    else:
        world.meta.phones[PHONE].host_platform = "ON_PREMISE"
    plan = plan_live(provider, tenant, ctx, http_for(world))
    [report] = [c for c in plan if c.action is Action.REPORT]
    assert report.address == NUMBER
    assert report.severity == "error"
    assert problem in report.note
    assert writes(plan) == []


class _DropWrites(httpx.BaseTransport):
    """Meta says success but nothing sticks (seen in the wild)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"success": True}, request=request)
        return self.inner.handle_request(request)


def test_an_override_that_does_not_stick_fails_the_apply() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    http = SimpleHttp(_DropWrites(sandbox_transport(world)))
    plan = plan_live(provider, tenant, ctx, http)
    with pytest.raises(PermanentError, match="did not stick"):
        apply_all(provider, tenant, ctx, plan, http)


def test_plan_is_pure_and_works_from_live_resources_alone() -> None:
    tenant, ctx = make_tenant(), make_ctx()
    live = [
        Resource("whatsapp", "waba_subscription", SLUG, "", {"override_callback_uri": URL}),
        Resource("whatsapp", "phone_number", SLUG, PHONE, {
            "in_waba": True, "code_verification_status": "VERIFIED", "host_platform": "CLOUD_API"}),
        Resource("whatsapp", "phone_webhook", SLUG, PHONE, {"override_callback_uri": ELSEWHERE}),
    ]
    plan = provider.plan(tenant, ctx, live)
    assert actions(plan) == {SUB: Action.NOOP, NUMBER: Action.NOOP, PHONE_HOOK: Action.UPDATE}
    assert actions(provider.plan(tenant, ctx, [])) == {SUB: Action.CREATE, NUMBER: Action.REPORT}


def test_the_plan_never_contains_the_verify_token() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    plan = plan_live(provider, tenant, ctx, http_for(world))
    assert VERIFY not in repr(plan)
    assert META_TOKEN not in repr(plan)


def test_a_tenant_without_a_waba_is_an_error_report() -> None:
    tenant = make_tenant(whatsapp={"verify_token": VERIFY, "access_token": META_TOKEN})
    [report] = provider.plan(tenant, make_ctx(), [])
    assert report.action is Action.REPORT
    assert report.severity == "error"


@pytest.mark.parametrize(("code", "method", "subcode", "expected"), [
    (4, "GET", None, TemporaryError),
    (80007, "POST", None, TemporaryError),
    (130429, "POST", None, TemporaryError),
    (131056, "POST", None, TemporaryError),
    (2, "GET", None, TemporaryError),
    (190, "GET", 463, AuthError),
    (10, "POST", None, PermissionDenied),
    (200, "GET", None, PermissionDenied),
    (299, "GET", None, PermissionDenied),
    (100, "GET", 33, NotFound),
    (100, "POST", 33, NotFound),
    (100, "POST", None, InvalidRequest),
    (131009, "POST", None, PermanentError),
])
def test_graph_errors_are_classified_by_code(code: int, method: str, subcode: int | None,
                                             expected: type[Exception]) -> None:
    assert graph_error_class(code, method=method, subcode=subcode) is expected
    body = {"error": {"message": "secret-echo", "code": code, "error_subcode": subcode, "fbtrace_id": "T1"}}
    err = classify_graph_error(400, body, method=method)
    assert type(err) is expected
    assert err.request_id == "T1"
    assert "secret-echo" not in str(err)


def test_a_rate_limit_answered_with_400_is_temporary() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.call_budget = 2  # the third call of observe hits the limit
    world.meta.rate_limit_http_status = 400
    with pytest.raises(TemporaryError) as caught:
        provider.observe(tenant, ctx, http_for(world))
    assert caught.value.code == 80007


def test_an_expired_token_fails_health_with_an_auth_error() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.expire_token(META_TOKEN)
    with pytest.raises(AuthError):
        provider.observe(tenant, ctx, http_for(world))
    [check] = provider.health(tenant, ctx, http_for(world))
    assert not check.ok


def test_health_is_green_once_applied() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    http = http_for(world)
    assert not all(c.ok for c in provider.health(tenant, ctx, http))
    apply_all(provider, tenant, ctx, plan_live(provider, tenant, ctx, http), http)
    checks = provider.health(tenant, ctx, http)
    assert all(c.ok for c in checks), checks
    assert {c.name for c in checks} >= {"whatsapp.token[acme]", SUB, NUMBER}


class _Without(httpx.BaseTransport):
    """Meta answering without some optional or undocumented fields (the spec does not promise them)."""

    def __init__(self, inner: httpx.BaseTransport, *names: str) -> None:
        self.inner, self.names = inner, names

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self.inner.handle_request(request)
        resp.read()
        if request.method != "GET" or resp.status_code != 200:
            return resp
        body = resp.json()
        for item in [body, *body.get("data", [])]:
            for name in self.names:
                item.pop(name, None)
        return httpx.Response(200, json=body, request=request)


def test_the_phone_check_asks_meta_only_for_documented_fields() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    checking = SpecCheckingTransport(sandbox_transport(world), strict=True)
    provider.observe(tenant, ctx, SimpleHttp(checking))
    [listing] = [c for c in world.calls.calls("meta") if c.path.endswith("/phone_numbers")]
    assert checking.violations == []
    assert listing.status == 200


def test_fields_meta_leaves_out_are_not_turned_into_errors() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.subscribe(WABA, override_callback_uri=URL, verify_token=VERIFY)
    http = SimpleHttp(_Without(sandbox_transport(world), "host_platform", "code_verification_status",
                               "webhook_configuration"))
    plan = plan_live(provider, tenant, ctx, http)
    assert actions(plan) == {SUB: Action.NOOP, NUMBER: Action.NOOP, PHONE_HOOK: Action.NOOP}
    [number] = [c for c in plan if c.address == NUMBER]
    assert number.shown_note == "info: Meta did not return host_platform or code_verification_status; not checked"
    assert all(c.ok for c in provider.health(tenant, ctx, http))


def test_a_phone_override_write_that_cannot_be_read_back_is_applied_and_says_so() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.subscribe(WABA, override_callback_uri=URL, verify_token=VERIFY)
    world.meta.phones[PHONE].override_callback_uri = ELSEWHERE
    plan = plan_live(provider, tenant, ctx, http_for(world))
    [change] = writes(plan)
    [result] = apply_all(provider, tenant, ctx, [change], SimpleHttp(_Without(sandbox_transport(world),
                                                                             "webhook_configuration")))
    assert world.meta.phones[PHONE].override_callback_uri == URL
    assert "no webhook_configuration to confirm it" in result.detail


class _RefuseWebhookConfiguration(httpx.BaseTransport):
    """Graph refusing the undocumented field as it refuses any unknown one (code 100)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "webhook_configuration" in request.url.params.get("fields", ""):
            return httpx.Response(400, json={"error": {
                "message": "(#100) Tried accessing nonexisting field (webhook_configuration)",
                "type": "OAuthException", "code": 100, "fbtrace_id": "T"}}, request=request)
        return self.inner.handle_request(request)


def test_a_refused_webhook_configuration_is_reported_as_not_checked_not_as_an_error() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    world.meta.subscribe(WABA, override_callback_uri=URL, verify_token=VERIFY)
    http = SimpleHttp(_RefuseWebhookConfiguration(sandbox_transport(world)))
    plan = plan_live(provider, tenant, ctx, http)
    assert actions(plan) == {SUB: Action.NOOP, NUMBER: Action.NOOP, PHONE_HOOK: Action.REPORT}
    [hook] = [c for c in plan if c.address == PHONE_HOOK]
    assert hook.severity == "info" and not hook.is_error
    assert all(c.ok for c in provider.health(tenant, ctx, http))
