"""The sender against a real loopback platform that misbehaves on a kept-alive connection: an answer counts
only for its own request, and a 2xx counts once its status and headers are read, whatever its body does."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from sqlalchemy import Engine, select

from delivery.destinations import Destinations
from delivery.retry import RetryPolicy
from delivery.worker import Worker, WorkerConfig
from outbound.policy import Answer, OutboundPolicy, allow_list
from outbound.sender import Sender, SendFailed, SendTimeout, _CheckedResolver, _Connector, _Response
from store.schema import delivery_attempts, webhook_log

from ..delivery.harness import accepted, insert

KEY = b"k" * 32

# What the platform writes for the n-th request it reads (from 0); False ends the connection.
Answerer = Callable[[int, asyncio.StreamWriter], Awaitable[bool]]


def _answer(status: int, body: bytes = b"", reason: str = "X") -> bytes:
    return b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\n\r\n%s" % (status, reason.encode(), len(body), body)


class Platform:
    """A loopback HTTP/1.1 peer on a thread of its own, keeping connections alive: it reads each request
    (head and content-length body) and lets ``answerer`` write what it likes. ``requests`` holds, per request
    read, the number of the connection it came on; ``hung_up`` the connections the client closed between
    requests; ``wrote`` is set whenever an answerer calls :meth:`done`."""

    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer
        self.requests: list[int] = []
        self.connections = 0
        self.hung_up: list[int] = []
        self.wrote = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result(5)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/in"

    def done(self) -> None:
        self.wrote.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if not exc.partial:
                        self.hung_up.append(number)
                    return
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.requests.append(number)
                if not await self.answerer(len(self.requests) - 1, writer):
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        async def shut() -> None:
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture
def platform() -> Iterator[Callable[[Answerer], Platform]]:
    started: list[Platform] = []

    def start(answerer: Answerer) -> Platform:
        started.append(Platform(answerer))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def _policy(url: str, *, connect_timeout_s: float = 0.5, timeout_s: float = 1.0) -> OutboundPolicy:
    return OutboundPolicy(allowed_hosts=allow_list([url]), allow_loopback_http=True,
                          connect_timeout_s=connect_timeout_s, timeout_s=timeout_s)


async def _post(sender: Sender, url: str) -> Answer | Exception:
    try:
        return await sender.post(url, content=b"{}", headers={"content-type": "application/json"})
    except (SendFailed, SendTimeout) as exc:
        return exc


async def _late_204(n: int, writer: asyncio.StreamWriter) -> bool:
    """The attacker's platform: 500 to every request, then, 50 ms later, a 204 on the idle connection."""
    writer.write(_answer(500))
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(_answer(204, reason="Smuggled"))
    await writer.drain()
    return True


def _post_in_turn(url: str, times: int) -> list[Answer | Exception]:
    """TIMES posts to URL one after the other through one sender (one pool)."""

    async def go() -> list[Answer | Exception]:
        sender = Sender(_policy(url))
        try:
            return [await _post(sender, url) for _ in range(times)]
        finally:
            await sender.close()

    return asyncio.run(go())


def _statuses(results: list[Answer | Exception]) -> list[int | str]:
    return [r.status if isinstance(r, Answer) else type(r).__name__ for r in results]


# -- an answer counts only for its own request (aio-libs/aiohttp#13656) ---------------------------------------

STRAYS = {
    "an answer": _answer(204, reason="Smuggled"),
    "an answer whose body is unfinished": b"HTTP/1.1 204 Smuggled\r\ncontent-length: 0\r\n\r\n"
                                          b"HTTP/1.1 200 Smuggled\r\ncontent-length: 10\r\n\r\nabc",
    "the head of an answer": b"HTTP/1.1 200 Smuggled\r\ncontent-length: 0\r\n",
    "bytes that are not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
}


@pytest.mark.parametrize("first", [204, 500])
@pytest.mark.parametrize("stray", list(STRAYS))
def test_what_arrives_on_an_idle_kept_alive_connection_is_never_the_next_requests_answer(
        platform: Callable[[Answerer], Platform], first: int, stray: str) -> None:
    """The platform answers the first request, then writes more on the idle connection; the second request,
    sent once that has arrived, gets the platform's own answer to it (500) or fails, never the stray."""

    async def answerer(n: int, writer: asyncio.StreamWriter) -> bool:
        if n == 0:
            writer.write(_answer(first))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(STRAYS[stray])
            await writer.drain()
            peer.done()
        else:
            writer.write(_answer(500))
        return True

    peer = platform(answerer)

    async def go() -> list[Answer | Exception]:
        sender = Sender(_policy(peer.url))
        try:
            results = [await _post(sender, peer.url)]
            while not peer.wrote.is_set():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the stray is read by the client's loop while the connection is idle
            results.append(await _post(sender, peer.url))
            return results
        finally:
            await sender.close()

    results = asyncio.run(go())
    assert _statuses(results) == [first, 500], results
    assert len(peer.requests) == 2
    if stray != "the head of an answer":  # a fragment is dropped with its parser; the rest: a new connection
        assert peer.requests == [1, 2]


def test_a_late_answer_after_an_error_is_not_the_answer_to_the_request_sent_next(
        platform: Callable[[Answerer], Platform]) -> None:
    """The attacker's late 204: every request is answered 500, and 50 ms later a 204 follows on the connection.
    The next request goes out at once, before the 204 arrives: it must still get its own 500."""

    peer = platform(_late_204)
    results = _post_in_turn(peer.url, 4)
    assert _statuses(results) == [500] * 4
    assert len(peer.requests) == 4


def test_a_2xx_answer_keeps_its_connection_alive(platform: Callable[[Answerer], Platform]) -> None:
    """The hot path: 2xx answers, with a body or none, reuse one connection."""

    async def answerer(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(_answer(200, b'{"ok":true}') if n % 2 else _answer(204))
        return True

    peer = platform(answerer)
    results = _post_in_turn(peer.url, 6)
    assert _statuses(results) == [204, 200] * 3
    assert peer.requests == [1] * 6


def test_a_connection_that_answered_an_error_is_closed_at_once(platform: Callable[[Answerer], Platform]) -> None:
    """Not left idle in the pool until its next use or the keep-alive timeout: the client hangs up."""

    async def answerer(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(_answer(503) if n == 0 else _answer(500, b"no"))
        return True

    peer = platform(answerer)

    async def go() -> list[Answer | Exception]:
        sender = Sender(_policy(peer.url))
        try:
            results = []
            for n in (1, 2):  # without a body (put back in the pool inside aiohttp), then with one
                results.append(await _post(sender, peer.url))
                for _ in range(50):
                    if len(peer.hung_up) == n:
                        break
                    await asyncio.sleep(0.01)
                assert peer.hung_up == list(range(1, n + 1)), n
            return results
        finally:
            await sender.close()

    results = asyncio.run(go())
    assert _statuses(results) == [503, 500]
    assert peer.requests == [1, 2] and peer.hung_up == [1, 2]


def test_the_worker_counts_no_late_answer_as_a_delivery(platform: Callable[[Answerer], Platform],
                                                        db: Engine) -> None:
    """The attack itself, through the worker and the real sender: each event's only attempt is answered 500
    (then a 204 follows on the idle connection); none may end delivered."""

    peer = platform(_late_204)
    insert(db, accepted(3))
    policy = _policy(peer.url)
    config = WorkerConfig(policy=policy, retry=RetryPolicy(max_attempts=1), keys=[KEY], concurrency=1,
                          poll_s=0.02)
    worker = Worker(db, Destinations({"hospitable": peer.url}), config, Sender(policy), worker_id="w1")
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    c, a = webhook_log.c, delivery_attempts.c
    with db.connect() as conn:
        states = conn.execute(select(c.delivery_state, c.last_status)).all()
        attempts = conn.execute(select(a.outcome, a.status_code)).all()
    assert sorted(map(tuple, states)) == [("dead", 500)] * 3
    assert sorted(map(tuple, attempts)) == [("failed", 500)] * 3
    assert len(peer.requests) == 3


def test_the_aiohttp_internals_the_sender_relies_on_are_still_there() -> None:
    """_Connector overrides the private BaseConnector._get(key, traces) and reads the protocol's should_close;
    _Response overrides ClientResponse.start(connection) and calls force_close. If aiohttp renames or reshapes
    any of these, this fails (the tests above would then show what broke). See aio-libs/aiohttp#13656."""
    assert list(inspect.signature(aiohttp.BaseConnector._get).parameters) == ["self", "key", "traces"]
    assert inspect.iscoroutinefunction(aiohttp.BaseConnector._get)
    assert "_get" in vars(_Connector) and _Connector._get is not aiohttp.TCPConnector._get
    assert "should_close" in aiohttp.BaseConnector._release.__code__.co_names  # checked when a connection returns
    assert isinstance(inspect.getattr_static(ResponseHandler, "should_close"), property)
    assert callable(ResponseHandler.force_close) and callable(ResponseHandler.close)
    assert list(inspect.signature(aiohttp.ClientResponse.start).parameters) == ["self", "connection"]
    assert "response_class" in inspect.signature(aiohttp.ClientSession).parameters
    assert issubclass(_Response, aiohttp.ClientResponse)


# -- a 2xx counts once its status and headers are read --------------------------------------------------------

async def _trickle_body(n: int, writer: asyncio.StreamWriter, status: int = 200) -> bool:
    writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 1000\r\n\r\n" % status)
    for _ in range(1000):  # a byte every 0.2 s, well inside the read timeout: only the total deadline ends it
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.2)
    return True


async def _silent_body(n: int, writer: asyncio.StreamWriter, status: int = 200) -> bool:
    writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 1000\r\n\r\nabc" % status)
    await writer.drain()
    await asyncio.sleep(30)
    return False


async def _reset_body(n: int, writer: asyncio.StreamWriter, status: int = 200) -> bool:
    writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 1000\r\n\r\nabc" % status)
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.transport.abort()  # RST mid-body
    return False


async def _closed_mid_body(n: int, writer: asyncio.StreamWriter, status: int = 200) -> bool:
    writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 1000\r\n\r\nabc" % status)
    await writer.drain()
    return False  # FIN mid-body


async def _bad_chunk(n: int, writer: asyncio.StreamWriter, status: int = 200) -> bool:
    writer.write(b"HTTP/1.1 %d X\r\ntransfer-encoding: chunked\r\n\r\n" % status)
    await writer.drain()
    await asyncio.sleep(0.05)  # in the head's own segment, aiohttp's parser fails before handing the head over
    writer.write(b"ZZZZ\r\nabc\r\n")
    await writer.drain()
    await asyncio.sleep(30)
    return False


BODY_FAILURES = [_trickle_body, _silent_body, _reset_body, _closed_mid_body, _bad_chunk]


@pytest.mark.parametrize("body", BODY_FAILURES)
def test_a_2xx_whose_body_fails_is_a_success_inside_the_deadline(
        platform: Callable[[Answerer], Platform], body: Callable[[int, asyncio.StreamWriter], Awaitable[bool]]) -> None:
    """The platform accepted the event once it answered 2xx: a body that trickles past the deadline, stops,
    resets or is malformed does not make the attempt an error. The attempt still ends by the total deadline
    (connect + read timeout), and the connection is not reused."""
    peer = platform(lambda n, w: body(n, w) if n == 0 else _answer_now(w, 204))

    async def go() -> tuple[Answer | Exception, float, Answer | Exception]:
        sender = Sender(_policy(peer.url, connect_timeout_s=0.5, timeout_s=1.0))
        try:
            started = time.monotonic()
            first = await _post(sender, peer.url)
            took = time.monotonic() - started
            return first, took, await _post(sender, peer.url)
        finally:
            await sender.close()

    first, took, second = asyncio.run(go())
    assert isinstance(first, Answer) and first.status == 200, first
    assert first.body in (b"", b"abc") or set(first.body) == {ord("x")}
    assert took < 0.5 + 1.0 + 0.5  # connect + read deadline, and scheduling slack
    assert isinstance(second, Answer) and second.status == 204
    assert peer.requests == [1, 2]  # the first connection, its body unfinished, was dropped


async def _answer_now(writer: asyncio.StreamWriter, status: int) -> bool:
    writer.write(_answer(status))
    return True


@pytest.mark.parametrize(("body", "error"), [
    (_trickle_body, SendTimeout), (_silent_body, SendTimeout), (_reset_body, SendFailed),
    (_closed_mid_body, SendFailed),
    (_bad_chunk, SendTimeout),  # aiohttp closes the connection but leaves the body's reader waiting
])
def test_a_non_2xx_whose_body_fails_is_still_an_error(
        platform: Callable[[Answerer], Platform], body: Callable[..., Awaitable[bool]],
        error: type[Exception]) -> None:
    peer = platform(lambda n, w: body(n, w, 500))

    async def go() -> tuple[Answer | Exception, float]:
        sender = Sender(_policy(peer.url, connect_timeout_s=0.5, timeout_s=1.0))
        try:
            started = time.monotonic()
            return await _post(sender, peer.url), time.monotonic() - started
        finally:
            await sender.close()

    result, took = asyncio.run(go())
    assert isinstance(result, error), result
    assert took < 0.5 + 1.0 + 0.5


def test_the_worker_records_a_2xx_whose_body_was_reset_as_delivered(
        platform: Callable[[Answerer], Platform], db: Engine) -> None:
    peer = platform(_reset_body)
    insert(db, accepted(2))
    policy = _policy(peer.url)
    config = WorkerConfig(policy=policy, retry=RetryPolicy(max_attempts=3, max_age=timedelta(days=1)), keys=[KEY],
                          concurrency=2, poll_s=0.02)
    worker = Worker(db, Destinations({"hospitable": peer.url}), config, Sender(policy), worker_id="w1")
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    c, a = webhook_log.c, delivery_attempts.c
    with db.connect() as conn:
        states = conn.execute(select(c.delivery_state, c.last_status, c.attempts)).all()
        attempts = conn.execute(select(a.outcome, a.status_code)).all()
    assert sorted(map(tuple, states)) == [("delivered", 200, 1)] * 2
    assert sorted(map(tuple, attempts)) == [("delivered", 200)] * 2


class _Names(AbstractResolver):
    """A DNS of fixed answers: name -> addresses."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=0) for a in self.names[host]]

    async def close(self) -> None:
        pass


def test_a_name_that_resolves_only_to_a_metadata_address_is_never_connected_to() -> None:
    """The allow-list names the destination; what the name resolves to must still be a destination's address
    (a DNS answer is not the operator's choice)."""
    url = "https://platform.test/in"
    policy = OutboundPolicy(allowed_hosts=allow_list([url]), timeout_s=1, connect_timeout_s=1)
    sender = Sender(policy, resolver=_Names({"platform.test": ["169.254.169.254"]}))

    async def post() -> None:
        try:
            await sender.post(url, content=b"{}", headers={})
        finally:
            await sender.close()

    started = time.monotonic()
    with pytest.raises(SendFailed):
        asyncio.run(post())
    assert time.monotonic() - started < 0.5  # refused, not a connect that timed out


def test_of_a_names_addresses_only_those_a_destination_may_have_are_kept() -> None:
    names = _Names({"platform.test": ["169.254.169.254", "10.1.2.3", "::ffff:169.254.169.254", "127.0.0.1"]})
    kept = asyncio.run(_CheckedResolver(names).resolve("platform.test", 443))
    assert [r["host"] for r in kept] == ["10.1.2.3", "127.0.0.1"]


class _NoDns(AbstractResolver):
    """A DNS that knows no name."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        pass


def _failure(url: str, resolver: AbstractResolver | None = None) -> str:
    """The message of the SendFailed a POST to ``url`` ends in."""
    policy = OutboundPolicy(allowed_hosts=allow_list([url]), allow_loopback_http=True, timeout_s=2,
                            connect_timeout_s=2)
    sender = Sender(policy, resolver=resolver)

    async def post() -> None:
        try:
            await sender.post(url, content=b"{}", headers={})
        finally:
            await sender.close()

    with pytest.raises(SendFailed) as caught:
        asyncio.run(post())
    return str(caught.value)


def test_a_failed_connection_says_what_failed_and_where() -> None:
    """An operator reading `webhooks attempts` learns the cause and the address, not an aiohttp class name."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _failure(f"http://127.0.0.1:{port}/in") == f"connection refused (127.0.0.1:{port})"
    assert _failure("https://platform.test/in", _NoDns()) == "DNS lookup failed (platform.test)"
    assert _failure("https://platform.test/in", _Names({"platform.test": ["169.254.169.254"]})) \
        == "DNS: platform.test resolves to no address a destination may have"


def test_a_tls_handshake_with_a_plain_http_server_says_tls_failed() -> None:
    """https:// to a server that speaks plain HTTP (it answers the ClientHello with an HTTP error)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def plain_http() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    thread = threading.Thread(target=plain_http, daemon=True)
    thread.start()
    try:
        assert _failure(f"https://127.0.0.1:{port}/in").startswith(f"TLS handshake failed (127.0.0.1:{port})")
    finally:
        thread.join(5)
        server.close()


def test_a_malformed_answer_is_named_without_quoting_it(platform: Callable[[Answerer], Platform]) -> None:
    """The platform's own words are attacker-controlled: they never reach the error column or the logs."""
    async def answerer(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"\x1b[2JEVIL-TEXT not http at all\r\n\r\n")
        await writer.drain()
        return False

    peer = platform(answerer)
    message = _failure(peer.url)
    assert message == f"malformed answer ({peer.url.split('/')[2]})"
    assert "EVIL" not in message


def test_the_worker_records_where_a_connection_was_refused(db: Engine) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/in"
    insert(db, accepted(1))
    policy = _policy(url)
    config = WorkerConfig(policy=policy, retry=RetryPolicy(max_attempts=1), keys=[KEY], concurrency=1, poll_s=0.02)
    worker = Worker(db, Destinations({"hospitable": url}), config, Sender(policy), worker_id="w1")
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    with db.connect() as conn:
        assert conn.execute(select(webhook_log.c.last_error)).scalar_one() == f"connection refused (127.0.0.1:{port})"
        assert conn.execute(select(delivery_attempts.c.error)).scalar_one() == f"connection refused (127.0.0.1:{port})"
