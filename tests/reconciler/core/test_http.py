"""The one outbound client: allow-list, https, secrets, redirects, error mapping, retries."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from reconciler import errors
from reconciler.config import ReconcileConfig
from reconciler.http import HttpClient, TokenBucket
from tenancy.redact import REDACTOR

TOKEN = "tok-Secret-123456"


def client(config: ReconcileConfig, handler: Callable[[httpx.Request], httpx.Response],
           sleeps: list[float] | None = None) -> HttpClient:
    return HttpClient(config, transport=httpx.MockTransport(handler),
                      sleep=(sleeps.append if sleeps is not None else lambda s: None), jitter=lambda: 1.0)


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


@pytest.mark.parametrize(("url", "reason"), [
    ("https://evil.example/x", "not allow-listed"),
    ("http://api.nuki.io/smartlock", "refused outside the sandbox"),
    (f"https://api.nuki.io/smartlock?token={TOKEN}", "secret in the URL"),
    (f"https://api.nuki.io/smartlock?q=a%20{TOKEN}", "secret in the URL"),
])
def test_refuses_before_sending(config: ReconcileConfig, url: str, reason: str) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return ok(request)

    with pytest.raises(errors.OutboundBlocked, match=reason) as e:
        client(config, handler).request("nuki", "GET", url, secrets=[TOKEN])
    assert not sent
    assert TOKEN not in str(e.value)


def test_a_secret_the_redactor_knows_is_refused_in_a_query_too(config: ReconcileConfig) -> None:
    REDACTOR.add("known-tenant-secret-42")
    with pytest.raises(errors.OutboundBlocked):
        client(config, ok).request("nuki", "GET", "https://api.nuki.io/x", params={"k": "known-tenant-secret-42"})


def test_sandbox_mode_allows_http_to_the_sandbox_only(config: ReconcileConfig) -> None:
    import dataclasses

    sandbox = dataclasses.replace(config, sandbox=True, allowed_hosts={"*": frozenset({"127.0.0.1:8790"})})
    c = client(sandbox, ok)
    assert c.request("nuki", "GET", "http://127.0.0.1:8790/nuki/smartlock").status_code == 200
    with pytest.raises(errors.OutboundBlocked):
        c.request("nuki", "GET", "https://api.nuki.io/smartlock")


def test_a_redirect_is_an_error_and_is_not_followed(config: ReconcileConfig) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": "https://collector.example/steal"})

    with pytest.raises(errors.PermanentError, match=r"redirected to collector\.example"):
        client(config, handler).request("nuki", "GET", "https://api.nuki.io/smartlock",
                                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert seen == ["https://api.nuki.io/smartlock"]


@pytest.mark.parametrize(("status", "cls"), [
    (400, errors.InvalidRequest), (401, errors.AuthError), (403, errors.PermissionDenied),
    (404, errors.NotFound), (409, errors.InvalidRequest), (422, errors.InvalidRequest),
])
def test_permanent_errors_by_status_are_not_retried(config: ReconcileConfig, status: int,
                                                    cls: type[errors.ProviderError]) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"detailMessage": f"bad {TOKEN}"}, headers={"x-request-id": "r-1"})

    with pytest.raises(cls) as e:
        client(config, handler).request("nuki", "GET", "https://api.nuki.io/x", secrets=[TOKEN])
    assert type(e.value) is cls and e.value.status == status and e.value.request_id == "r-1"
    assert TOKEN not in str(e.value) and TOKEN not in repr(e.value)
    assert len(calls) == 1


def test_429_is_retried_after_retry_after(config: ReconcileConfig) -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json={})]
    sleeps: list[float] = []
    c = client(config, lambda r: answers.pop(0), sleeps)
    assert c.request("nuki", "POST", "https://api.nuki.io/x", json={}).status_code == 200
    assert sleeps == [2.0]
    assert c.calls["nuki"] == 2 and c.retries["nuki"] == 1


def test_a_5xx_on_a_non_idempotent_write_is_not_retried(config: ReconcileConfig) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(500)

    with pytest.raises(errors.TemporaryError):
        client(config, handler).request("nuki", "PUT", "https://api.nuki.io/smartlock/1/auth", json={})
    assert len(calls) == 1


def test_reads_are_retried_on_5xx_timeouts_and_resets_until_attempts_run_out(config: ReconcileConfig) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        if len(calls) == 2:
            raise httpx.RemoteProtocolError("reset", request=request)
        return httpx.Response(502)

    sleeps: list[float] = []
    with pytest.raises(errors.TemporaryError, match="HTTP 502"):
        client(config, handler, sleeps).request("nuki", "GET", "https://api.nuki.io/x")
    assert len(calls) == config.limits.retry.max_attempts
    assert sleeps == [0.01, 0.02, 0.04]


@pytest.mark.parametrize(("body", "cls", "retried"), [
    ({"error": {"code": 4, "message": "limit"}}, errors.TemporaryError, True),
    ({"error": {"code": 80007, "message": "limit"}}, errors.TemporaryError, True),
    ({"error": {"code": 190, "message": "expired"}}, errors.AuthError, False),
    ({"error": {"code": 200, "message": "perm"}}, errors.PermissionDenied, False),
    ({"error": {"code": 100, "error_subcode": 33, "message": "no"}}, errors.NotFound, False),
])
def test_meta_errors_are_classified_by_code_not_status(config: ReconcileConfig, body: dict[str, object],
                                                       cls: type[errors.ProviderError], retried: bool) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) > 1:
            return httpx.Response(200, json={})
        return httpx.Response(400, content=json.dumps(body).encode(), headers={"x-fb-trace-id": "T1"})

    c = client(config, handler)
    if retried:
        assert c.request("whatsapp", "GET", "https://graph.facebook.com/v23.0/1").status_code == 200
    else:
        with pytest.raises(cls) as e:
            c.request("whatsapp", "GET", "https://graph.facebook.com/v23.0/1")
        assert type(e.value) is cls and e.value.request_id == "T1"
    assert len(calls) == (2 if retried else 1)


def test_a_providers_own_classifier_wins(config: ReconcileConfig) -> None:
    def classify(response: httpx.Response) -> errors.ProviderError | None:
        return errors.TemporaryError("nuki", "busy lock") if response.status_code == 409 else None

    answers = [httpx.Response(409), httpx.Response(200)]
    c = HttpClient(config, transport=httpx.MockTransport(lambda r: answers.pop(0)),
                   classifiers={"nuki": classify}, sleep=lambda s: None)
    assert c.request("nuki", "GET", "https://api.nuki.io/x").status_code == 200


def test_token_bucket_spaces_calls_beyond_the_burst() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(rate=10.0, burst=2, clock=lambda: now[0], sleep=sleep)
    waits = [bucket.take() for _ in range(4)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2] == pytest.approx(0.1) and waits[3] == pytest.approx(0.1)


@pytest.mark.parametrize(("method", "answers", "lost"), [
    ("PUT", ["timeout"], True),  # sent, no answer: may have happened
    ("PUT", [500], True),  # a 5xx on a write: may have happened
    ("DELETE", ["timeout", 429, 429, 429], True),  # lost once, then refused: still may have happened
    ("PUT", [503], False),  # unavailable: the provider did nothing
    ("GET", ["timeout"], False),  # a read changes nothing
])
def test_a_write_whose_answer_may_have_been_lost_says_so(config: ReconcileConfig, method: str,
                                                         answers: list[object], lost: bool) -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers[min(len(seen), len(answers) - 1)]
        seen.append(1)
        if answer == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(int(str(answer)), headers={"retry-after": "0"})

    with pytest.raises(errors.TemporaryError) as caught:
        client(config, handler).request("nuki", method, "https://api.nuki.io/smartlock/1/auth")
    assert isinstance(caught.value, errors.AnswerLost) is lost
