"""The Meta app's own webhook subscription: a platform-level resource, checked always, set with an app token."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from reconciler.errors import PermanentError
from reconciler.model import Action
from reconciler.platform import plan_items
from reconciler.providers.meta_app import APP_FIELDS, PLATFORM, MetaAppSubscription
from sandbox.meta import AppSubscription
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tests.reconciler.conftest import SimpleHttp
from tests.reconciler.providers.helpers import DOMAIN, META_TOKEN, make_ctx, make_world, spec_checked_http

APP_ID = "900000000000001"
APP_TOKEN = f"{APP_ID}|app-secret-for-tests"
VERIFY = "platform-verify-token"
URL = f"https://{DOMAIN}/api/webhooks/wa"
ADDRESS = f"whatsapp.app_subscription[{PLATFORM}]"


def managed(world: World) -> MetaAppSubscription:
    world.meta.add_app_token(APP_TOKEN, APP_ID)
    return MetaAppSubscription(APP_ID, SecretStr(APP_TOKEN), SecretStr(VERIFY))


def test_a_missing_subscription_is_created_with_every_needed_field_and_converges() -> None:
    world, ctx = make_world(), make_ctx()
    app, http = managed(world), spec_checked_http(world)  # every call conforms (the edge is a listed allowance)
    [change] = app.plan(ctx, app.observe(ctx, http))
    assert (change.address, change.action) == (ADDRESS, Action.CREATE)
    result = app.apply(ctx, change, http)
    sub = world.meta.apps[APP_ID].subscriptions["whatsapp_business_account"]
    assert (sub.callback_url, sub.fields, sub.verify_token) == (URL, list(APP_FIELDS), VERIFY)
    assert URL in result.detail
    assert [c.action for c in app.plan(ctx, app.observe(ctx, http))] == [Action.NOOP]
    assert all(check.ok for check in app.health(ctx, http))


def test_a_callback_elsewhere_or_a_missing_field_is_updated_and_extra_fields_are_kept() -> None:
    world, ctx = make_world(), make_ctx()
    app, http = managed(world), spec_checked_http(world)
    world.meta.apps[APP_ID].subscriptions["whatsapp_business_account"] = AppSubscription(
        "https://old.example.net/wa", ["messages", "security"], True, "old")
    [change] = app.plan(ctx, app.observe(ctx, http))
    assert change.action is Action.UPDATE
    assert {f.field for f in change.fields} == {"callback_url", "fields"}
    assert not all(check.ok for check in app.health(ctx, http))
    app.apply(ctx, change, http)
    sub = world.meta.apps[APP_ID].subscriptions["whatsapp_business_account"]
    assert sub.callback_url == URL and set(sub.fields) == {*APP_FIELDS, "security"}
    assert [c.action for c in app.plan(ctx, app.observe(ctx, http))] == [Action.NOOP]


def test_without_an_app_token_the_plan_says_what_to_set_by_hand_and_calls_nothing() -> None:
    world, ctx = make_world(), make_ctx()
    app = MetaAppSubscription(APP_ID)
    assert app.observe(ctx, spec_checked_http(world)) == []
    [step] = app.plan(ctx, [])
    assert (step.address, step.action, step.done) == (ADDRESS, Action.MANUAL, False)
    assert URL in step.note and all(f in step.note for f in APP_FIELDS)
    assert "TENANTCTL_META_APP_TOKEN" in step.note
    assert app.health(ctx, spec_checked_http(world)) == []
    assert world.calls.calls("meta") == []


def test_without_an_app_id_there_is_no_platform_item() -> None:
    world, ctx = make_world(), make_ctx()
    assert plan_items(MetaAppSubscription(None, SecretStr(APP_TOKEN), SecretStr(VERIFY)), ctx,
                      spec_checked_http(world)) == []


def test_a_token_that_is_not_the_apps_is_an_observe_error_that_names_no_secret() -> None:
    world, ctx = make_world(), make_ctx()
    app = MetaAppSubscription(APP_ID, SecretStr(META_TOKEN), SecretStr(VERIFY))  # a WABA's user token
    [item] = plan_items(app, ctx, spec_checked_http(world))
    assert item.tenant == PLATFORM and item.error is not None
    assert META_TOKEN not in item.error and VERIFY not in item.error
    [check] = app.health(ctx, spec_checked_http(world))
    assert not check.ok


class _DropWrites(httpx.BaseTransport):
    """Meta says success but nothing sticks."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"success": True}, request=request)
        return self.inner.handle_request(request)


def test_a_subscription_that_does_not_stick_fails_the_apply() -> None:
    world, ctx = make_world(), make_ctx()
    app, http = managed(world), SimpleHttp(_DropWrites(sandbox_transport(world)))
    [change] = app.plan(ctx, app.observe(ctx, http))
    with pytest.raises(PermanentError, match="did not stick"):
        app.apply(ctx, change, http)
