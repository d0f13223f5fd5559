"""A hostile platform: absurd or malformed Retry-After, answers that never come, trickle, never end, reset,
or are not HTTP at all, and a destination whose name does not resolve. Each attempt ends inside its deadline
as a failed attempt, the event stays queued for a retry, and the worker goes on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from delivery.destinations import Destinations
from delivery.retry import RetryPolicy
from delivery.worker import Worker, WorkerConfig
from outbound.policy import Answer, OutboundPolicy, allow_list
from outbound.retry_after import parse_retry_after
from outbound.sender import Sender, SendFailed, SendTimeout
from store.schema import delivery_attempts, webhook_log

from .harness import accepted, insert
from .test_worker import KEY, POLICY, URL, Clock

MAX_DELAY_S = 60
RETRY_AFTER_CAP = timedelta(hours=1)  # the longest Retry-After honoured


class _Answers:
    """A platform answering every POST with one status and headers, as aiohttp hands them over (any text)."""

    policy = POLICY

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> Answer:
        return Answer(self.status, self.headers, b"", 0.001)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("retry_after", [
    "99999999999999999999",  # more seconds than a timedelta holds
    "999999999",  # 31 years: past the 3-day age limit
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "\u00b2",  # a digit to str.isdigit, not to float (aiohttp decodes a 0xC2 0xB2 header as this)
    "\u0661\u0662",  # Arabic-Indic "12"
    "-5", "1e9", "",
])
def test_an_absurd_retry_after_neither_dead_letters_the_event_nor_breaks_the_attempt(
        db: Engine, retry_after: str) -> None:
    insert(db, accepted(1))
    clock = Clock()
    config = WorkerConfig(policy=POLICY, retry=RetryPolicy(base_delay_s=1, max_delay_s=MAX_DELAY_S), keys=[KEY],
                          concurrency=2)
    worker = Worker(db, Destinations({"hospitable": URL}), config, _Answers(503, {"retry-after": retry_after}),
                    worker_id="w1", now=clock, jitter=lambda: 1.0)
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    c, a = webhook_log.c, delivery_attempts.c
    with db.connect() as conn:
        state, due, error = conn.execute(select(c.delivery_state, c.next_attempt_at, c.last_error)).one()
        attempt = conn.execute(select(a.outcome, a.status_code)).one()
    assert (state, error) == ("retrying", "HTTP 503")
    assert tuple(attempt) == ("failed", 503)  # the platform's answer, not "internal error"
    assert clock.now < due <= clock.now + RETRY_AFTER_CAP


@pytest.mark.parametrize(("value", "expected"), [
    ("\u00b2", None), ("\u0661\u0662", None), ("99999999999999999999", 99999999999999999999.0), (" 7 ", 7.0),
])
def test_retry_after_reads_ascii_digits_only(value: str, expected: float | None) -> None:
    from datetime import UTC, datetime

    assert parse_retry_after(value, datetime(2026, 12, 1, tzinfo=UTC)) == expected


# -- the sender against raw TCP peers ----------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for byte in b"HTTP/1.1 204 No Content\r\nx-pad: " + b"p" * 100 + b"\r\n\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.2)  # each byte well inside the read timeout: only the total deadline ends it


async def _trickle_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # An error's body: a 2xx counts once its head is read, whatever its body does (tests/outbound/test_sender.py).
    writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 1000\r\n\r\n")
    for _ in range(1000):
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.2)


async def _endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    for _ in range(2000):  # 128 MiB at most, should anybody read it all
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 100\r\n\r\nabc")  # an error's body, as above
    await writer.drain()
    writer.transport.abort()


async def _not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()


async def _endless_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 204 No Content\r\n" + b"".join(b"x-%d: y\r\n" % i for i in range(100_000)))
    await writer.drain()


@pytest.fixture
def raw_peer(request: pytest.FixtureRequest) -> Iterator[Callable[[Handler], str]]:
    """Serves one handler on a loopback port, in a thread of its own; yields a function giving its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers: list[asyncio.AbstractServer] = []

    def serve(handler: Handler) -> str:
        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                await handler(reader, writer)
            except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(wrapped, "127.0.0.1", 0), loop).result(5)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/in"

    yield serve

    async def shut() -> None:
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()  # the handlers still writing to a client that gave up
        for server in servers:
            server.close()
        await asyncio.sleep(0.05)

    asyncio.run_coroutine_threadsafe(shut(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _post(url: str, **policy: float) -> tuple[Answer | Exception, float]:
    rules = OutboundPolicy(allowed_hosts=allow_list([url]), allow_loopback_http=True, **policy)  # type: ignore[arg-type]

    async def go() -> Answer | Exception:
        sender = Sender(rules)
        try:
            return await sender.post(url, content=b"{}", headers={"content-type": "application/json"})
        except (SendFailed, SendTimeout) as exc:
            return exc
        finally:
            await sender.close()

    started = time.monotonic()
    result = asyncio.run(go())
    return result, time.monotonic() - started


@pytest.mark.parametrize("handler", [_silent, _trickle, _trickle_body])
def test_a_platform_that_never_finishes_its_answer_is_cut_at_the_total_deadline(
        raw_peer: Callable[[Handler], str], handler: Handler) -> None:
    result, took = _post(raw_peer(handler), connect_timeout_s=0.5, timeout_s=1.0)
    assert isinstance(result, SendTimeout)
    assert took < 0.5 + 1.0 + 0.5  # connect + read deadline, and scheduling slack


def test_an_endless_answer_is_read_up_to_the_cap_only(raw_peer: Callable[[Handler], str]) -> None:
    result, took = _post(raw_peer(_endless), max_response_bytes=1000)
    assert isinstance(result, Answer) and result.status == 200 and len(result.body) == 1000
    assert took < 1.0


@pytest.mark.parametrize("handler", [_reset, _not_http, _endless_headers])
def test_a_reset_or_an_answer_that_is_not_http_is_a_failed_send(raw_peer: Callable[[Handler], str],
                                                                 handler: Handler) -> None:
    result, took = _post(raw_peer(handler))
    assert isinstance(result, SendFailed) and took < 2.0


def test_a_destination_whose_name_does_not_resolve_is_a_failed_send_inside_the_connect_timeout() -> None:
    url = "https://no-such-platform.invalid/in"  # .invalid never resolves (RFC 6761)
    result, took = _post(url, connect_timeout_s=2.0, timeout_s=1.0)
    assert isinstance(result, SendFailed | SendTimeout), result
    assert took < 3.5


class _SlowPlatform:
    """Answers 204 after ``delay_s``; counts the requests per webhook-id."""

    policy = POLICY

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.seen: dict[str, int] = {}

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> Answer:
        msg_id = headers["webhook-id"]
        self.seen[msg_id] = self.seen.get(msg_id, 0) + 1
        await asyncio.sleep(self.delay_s)
        return Answer(204, {}, b"", self.delay_s)

    async def close(self) -> None:
        pass


def test_a_slow_platform_does_not_use_up_the_attempts_of_events_waiting_their_turn(db: Engine) -> None:
    """Events claimed ahead that wait too long for a slot are not started (their lease could not cover the
    attempt); they are handed back, not counted as attempts nor held back for a whole lease."""
    insert(db, accepted(6))
    platform = _SlowPlatform(delay_s=0.7)
    config = WorkerConfig(policy=POLICY, retry=RetryPolicy(max_attempts=1), keys=[KEY], concurrency=1,
                          poll_s=0.02, lease_margin_s=1.0)  # a claim waits at most 0.5 s for a slot
    worker = Worker(db, Destinations({"hospitable": URL}), config, platform, worker_id="w1")
    stop = threading.Event()
    # Until all six are delivered, not until idle: on a loaded machine a round itself may outlast the start
    # window, and its events then wait out their lease (uncounted as well) before they are due again.
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    c, a = webhook_log.c, delivery_attempts.c
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with db.connect() as conn:
            if conn.execute(select(func.count()).where(c.delivery_state == "delivered")).scalar_one() == 6:
                break
        time.sleep(0.1)
    stop.set()
    runner.join(10)
    worker.close()
    with db.connect() as conn:
        rows = conn.execute(select(c.event_id, c.delivery_state, c.attempts)).all()
        made = conn.execute(select(a.log_id)).scalars().all()
    assert sorted(platform.seen.values()) == [1] * 6 and len(made) == 6
    assert {(state, attempts) for _, state, attempts in rows} == {("delivered", 1)}, rows
