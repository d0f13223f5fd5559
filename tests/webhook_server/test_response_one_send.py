"""A response leaves in one send: the head gunicorn sends first waits for its body (webhook_server/worker.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from webhook_server.worker import DeadlineSocket, Load

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n"
BODY = b'{"status":"ok"}'


class Recording:
    """A socket that records what is sent and what is done, in order."""

    def __init__(self, incoming: bytes = b"") -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.incoming = incoming

    def sendall(self, data: bytes, *flags: int) -> None:
        self.calls.append(("sendall", data))

    def recv(self, size: int, *flags: int) -> bytes:
        self.calls.append(("recv", b""))
        data, self.incoming = self.incoming[:size], self.incoming[size:]
        return data

    def settimeout(self, value: float | None) -> None:
        pass

    def close(self) -> None:
        self.calls.append(("close", b""))

    def getsockopt(self, *args: int) -> int:
        self.calls.append(("getsockopt", b""))
        return 0


def wrap(raw: Recording) -> DeadlineSocket:
    return DeadlineSocket(raw, 10.0, Load(100))  # type: ignore[arg-type]


def test_the_head_and_the_body_go_out_in_one_send() -> None:
    raw = Recording()
    sock = wrap(raw)
    sock.sendall(HEAD)
    assert raw.calls == []
    sock.sendall(BODY)
    assert raw.calls == [("sendall", HEAD + BODY)]


def test_a_head_without_a_body_goes_out_before_the_next_read() -> None:
    raw = Recording(incoming=b"GET /healthz HTTP/1.1\r\n\r\n")
    sock = wrap(raw)
    sock.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    sock.recv(1024)
    assert raw.calls[0] == ("sendall", b"HTTP/1.1 204 No Content\r\n\r\n")
    assert raw.calls[1][0] == "recv"


@pytest.mark.parametrize("then", ["close", "getsockopt"])
def test_a_held_head_goes_out_before_anything_else_is_done(then: str) -> None:
    raw = Recording()
    sock = wrap(raw)
    sock.sendall(HEAD)
    getattr(sock, then)(*((socket.SOL_SOCKET, socket.SO_ERROR) if then == "getsockopt" else ()))
    assert raw.calls == [("sendall", HEAD), (then, b"")]


def test_other_data_is_sent_at_once() -> None:
    raw = Recording()
    sock = wrap(raw)
    sock.sendall(b"5\r\nhello\r\n")  # a chunk of a streamed body
    assert raw.calls == [("sendall", b"5\r\nhello\r\n")]


@pytest.fixture
def served() -> Iterator[str]:
    """The URL of a loopback server answering one request through DeadlineSocket."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        sock = wrap(conn)  # type: ignore[arg-type]
        sock.recv(65536)
        sock.sendall(HEAD)
        sock.sendall(BODY)
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    listener.close()


def test_a_real_client_reads_the_whole_answer(served: str) -> None:
    r = httpx.get(served, timeout=5)
    assert (r.status_code, r.content) == (200, BODY)


def test_an_answer_without_a_body_leaves_when_its_request_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 303's head alone: the next request may already sit in gunicorn's buffer (pipelined), so no read of the
    # socket would send it; the worker sends it when the request's handling returns.
    from gunicorn.workers.ggevent import GeventWorker

    from webhook_server.worker import DeadlineGeventWorker

    see_other = b"HTTP/1.1 303 See Other\r\nLocation: /\r\nContent-Length: 0\r\n\r\n"

    def answer(self: object, listener_name: object, req: object, sock: DeadlineSocket, addr: object) -> bool:
        sock.sendall(see_other)
        assert raw.calls == []  # held, as a head whose body may follow
        return True

    monkeypatch.setattr(GeventWorker, "handle_request", answer)
    raw = Recording()
    worker = object.__new__(DeadlineGeventWorker)
    assert worker.handle_request("", None, wrap(raw), None) is True
    assert raw.calls == [("sendall", see_other)]


def test_a_connection_gone_before_the_held_head_leaves_keeps_the_requests_own_ending(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # gunicorn ends a connection to close with StopIteration: a failed send of the held head must not replace it.
    from gunicorn.workers.ggevent import GeventWorker

    from webhook_server.worker import DeadlineGeventWorker

    class Gone(Recording):
        def sendall(self, data: bytes, *flags: int) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    def answer_and_close(self: object, listener_name: object, req: object, sock: DeadlineSocket,
                         addr: object) -> bool:
        sock.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        raise StopIteration

    monkeypatch.setattr(GeventWorker, "handle_request", answer_and_close)
    worker = object.__new__(DeadlineGeventWorker)
    with pytest.raises(StopIteration):
        worker.handle_request("", None, wrap(Gone()), None)
