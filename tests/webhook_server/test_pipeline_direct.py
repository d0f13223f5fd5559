"""The pipeline without Falcon: the body read is capped whatever the Content-Length says."""

from __future__ import annotations

import io

from webhook_server.pipeline import Inbound, Limits, Pipeline
from webhook_server.routing import build_routing

from .helpers import SECRETS, FakeStore, FixedClock, app_secrets, dumps, sign_hex, tenants

SECRET = SECRETS["acme"]["hospitable"]


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, n: int | None = -1) -> bytes:
        self.asked.append(-1 if n is None else n)
        return super().read(n)


def _pipeline(store: FakeStore) -> Pipeline:
    return Pipeline(build_routing(tenants(), app_secrets()), store, FixedClock(), Limits(1024))


def _inbound(body: bytes, stream: io.BytesIO, length: int | None) -> Inbound:
    return Inbound("hospitable", "acme", {"signature": sign_hex(SECRET, body)}, length, stream.read)


def test_a_body_without_content_length_is_read_and_accepted() -> None:
    store = FakeStore()
    body = dumps({"id": "e1"})
    reply = _pipeline(store).post(_inbound(body, io.BytesIO(body), None))
    assert reply.status == 200
    assert store.last.outcome == "accepted"


def test_a_lying_content_length_cannot_make_the_server_read_more_than_the_limit() -> None:
    store = FakeStore()
    body = dumps({"id": "e1", "pad": "x" * 10_000})
    stream = CountingStream(body)
    reply = _pipeline(store).post(_inbound(body, stream, 10))
    assert reply.status == 413
    assert stream.asked == [1025]
    assert store.last.body_size == 1025


def test_content_length_over_the_limit_is_refused_before_reading() -> None:
    store = FakeStore()
    stream = CountingStream(b"{}")
    assert _pipeline(store).post(_inbound(b"{}", stream, 2048)).status == 413
    assert stream.asked == []
    assert (store.last.reason, store.last.body_size) == ("body-too-large", 2048)
