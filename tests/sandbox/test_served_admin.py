"""The served sandbox's admin surface (`tenantctl sandbox serve`, and the fake platform alone: `sandbox
platform`): only this run's token opens it, however the path is spelled; a second one on a busy port leaves
the running one's token alone."""

from __future__ import annotations

import contextlib
import http.client
import os
import pathlib
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tenantctl.run_token import LOCK_WAIT_S
from tests.sandbox.planted import planted_link, untouched
from tests.sandbox.test_run_token import held_lock

ROOT = pathlib.Path(__file__).resolve().parents[2]
ADMIN_READS = ["/_sandbox/state", "/_sandbox/faults", "/_sandbox/calls", "/_platform/received",
               "/_platform/mode", "/_platform/body/msg_1"]
SPELLINGS = ["//_sandbox/state", "/./_sandbox/state", "/%2F_sandbox/state", "/_sandbox//state",
             "/_sandbox/./state", "/x/../_sandbox/state", "/%2e/_sandbox/state", "//_platform/received"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, method: str, path: str, token: str | None = None, body: bytes | None = None
            ) -> tuple[int, bytes]:
    """One request with the path sent byte for byte (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Host": f"127.0.0.1:{port}"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    try:
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Served:
    port: int
    state_dir: pathlib.Path
    home: pathlib.Path
    proc: subprocess.Popen[bytes]
    command: str = "serve"

    @property
    def token(self) -> str:
        name = "sandbox-admin-token" if self.command == "serve" else "platform-admin-token"
        return (self.state_dir / name).read_text().strip()

    def env(self) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")},
                "TENANTCTL_STATE_DIR": str(self.state_dir), "HOME": str(self.home)}


@contextlib.contextmanager
def served(tmp_path: pathlib.Path, command: str = "serve", *args: str,
           log: pathlib.Path | None = None) -> Iterator[Served]:
    """`tenantctl sandbox <command>` on a free port until it answers; its output to ``log`` (else dropped)."""
    port, home = _free_port(), tmp_path / "home"
    home.mkdir(exist_ok=True)  # a test may serve twice from one tmp_path (one state dir)
    s = Served(port, tmp_path / "state", home, None, command)  # type: ignore[arg-type]
    extra = ["--threads", "2"] if command == "serve" else []
    with (log.open("wb") if log is not None else open(os.devnull, "wb")) as out:
        s.proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "sandbox", command, "--port", str(port),
                                   *extra, *args], cwd=ROOT, env={**s.env(), "PYTHONUNBUFFERED": "1"}, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                if request(port, "GET", "/_sandbox/healthz")[0] == 200:
                    break
            assert s.proc.poll() is None and time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.1)
        yield s
    finally:
        with contextlib.suppress(ProcessLookupError):  # a test may have stopped it
            os.killpg(s.proc.pid, signal.SIGTERM)
        s.proc.wait(timeout=10)


@pytest.mark.slow
def test_served_admin_needs_the_token_however_the_path_is_spelled(tmp_path: pathlib.Path) -> None:
    with served(tmp_path) as s:
        assert request(s.port, "GET", "/_sandbox/state")[0] == 401
        assert request(s.port, "GET", "/_sandbox/state", s.token)[0] == 200
        for path in SPELLINGS:
            status, body = request(s.port, "GET", path)
            assert status in (400, 401, 404), (path, status)
            assert b"nuki" not in body and body != b"[]", path
        # A write through an odd spelling changes nothing either.
        assert request(s.port, "PUT", "//_sandbox/faults", body=b'{"rate": 1}')[0] in (400, 401)
        assert request(s.port, "GET", "/_sandbox/faults", s.token) == (200, b"null")
        assert request(s.port, "GET", "/_sandbox/healthz")[0] == 200  # liveness stays open


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "platform"])
def test_the_fake_platform_admin_needs_the_token_too(tmp_path: pathlib.Path, command: str) -> None:
    with served(tmp_path, command) as s:
        for path in [p for p in ADMIN_READS if command == "serve" or p.startswith("/_platform/")]:
            assert request(s.port, "GET", path)[0] == 401, path
        assert request(s.port, "GET", "/_platform/received", s.token) == (200, b"[]")
        assert request(s.port, "PUT", "/_platform/mode", body=b'{"fail_percent": 100}')[0] == 401
        status, mode = request(s.port, "GET", "/_platform/mode", s.token)
        assert status == 200 and b'"fail_percent": 0.0' in mode
        # The platform's delivery endpoint stays open: it checks each delivery's signature itself.
        assert request(s.port, "POST", "/platform/hospitable", body=b"{}")[0] == 401


@pytest.mark.slow
def test_a_second_serve_on_a_busy_port_leaves_the_running_sandbox_alone(tmp_path: pathlib.Path) -> None:
    with served(tmp_path) as s:
        token = s.token
        second = subprocess.run([sys.executable, "-m", "tenantctl", "sandbox", "serve", "--port", str(s.port)],
                                cwd=ROOT, env=s.env(), capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert f"cannot listen on 127.0.0.1:{s.port}" in second.stderr
        assert s.token == token
        assert request(s.port, "GET", "/_sandbox/state", token)[0] == 200
        # gunicorn's control socket would land in $HOME/.gunicorn, shared by every gunicorn of the user.
        assert not (s.home / ".gunicorn").exists()


@pytest.mark.slow
def test_the_platform_alone_refuses_odd_paths_foreign_hosts_and_bad_modes_and_a_busy_port(
        tmp_path: pathlib.Path) -> None:
    with served(tmp_path, "platform") as s:
        for path in ["//_platform/received", "/%2F_platform/received", "/_platform/./received",
                     "/x/../_platform/received", "/_platform//mode"]:
            status, body = request(s.port, "GET", path)
            assert status in (400, 401, 404), (path, status)
            assert b"fail_percent" not in body and body != b"[]", path
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        conn.request("GET", "/_platform/mode", headers={"Host": "attacker.example", "Authorization":
                                                         f"Bearer {s.token}"})
        assert conn.getresponse().status == 421  # DNS rebinding: a page's script cannot reach it by name
        conn.close()
        assert request(s.port, "PUT", "/_platform/mode", s.token, b'{"fail_percent": 300}')[0] == 400
        assert request(s.port, "PUT", "/_platform/mode", s.token, b'[1]')[0] == 400
        status, mode = request(s.port, "PUT", "/_platform/mode", s.token, b'{"fail_percent": 100}')
        assert status == 200 and b'"fail_percent": 100.0' in mode
        assert request(s.port, "GET", "/_platform/body/msg_unknown", s.token)[0] == 404
        token = s.token
        second = subprocess.run([sys.executable, "-m", "tenantctl", "sandbox", "platform", "--port", str(s.port)],
                                cwd=ROOT, env=s.env(), capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1 and f"cannot listen on 127.0.0.1:{s.port}" in second.stderr
        assert s.token == token


@pytest.mark.slow
def test_the_platform_alone_logs_one_printable_line_per_request_when_asked(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "platform.log"
    with served(tmp_path, "platform", "--access-log", log=log) as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        conn.request("GET", "/_sandbox/healthz", headers={"Host": f"127.0.0.1:{s.port}",
                                                           "User-Agent": "evil\x1b[2Jagent"})
        conn.getresponse().read()
        conn.close()
        deadline = time.monotonic() + 5
        while "evil" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = log.read_text()
        assert "GET /_sandbox/healthz" in text and "evil\\x1b[2Jagent" in text and "\x1b" not in text


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "platform"])
def test_an_odd_authorization_header_is_refused_like_a_wrong_token(tmp_path: pathlib.Path, command: str) -> None:
    """Bytes that are no UTF-8, or the right token beside a second Authorization header: 401 from both servers
    (the aiohttp one answered 500 to the first and let the second in)."""
    with served(tmp_path, command) as s:
        for auth in ([b"Bearer \xff\xfe"], [f"Bearer {s.token}".encode(), b"Bearer x"],
                     [b"Bearer x", f"Bearer {s.token}".encode()]):
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
                sock.sendall(b"GET /_platform/mode HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % s.port
                             + b"".join(b"Authorization: " + a + b"\r\n" for a in auth)
                             + b"Connection: close\r\n\r\n")
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.split(b"\r\n", 1)[0].endswith(b" 401 Unauthorized"), (auth, answer[:200])
        assert request(s.port, "GET", "/_platform/mode", s.token)[0] == 200


@pytest.mark.slow
@pytest.mark.parametrize(("command", "bound_s"), [("platform", 3), ("serve", 9)])
def test_sigterm_stops_the_platform_in_bounded_time_with_a_delayed_delivery_in_flight(
        tmp_path: pathlib.Path, command: str, bound_s: float) -> None:
    """A delivery held by the mode's delay does not hold the stop for the delay. The platform alone answers it 503
    (the worker retries it) and exits at once, not after twice aiohttp's 5 s shutdown timeout; gunicorn, which
    cannot end a thread's sleep, waits 5 s for it (the same as aiohttp's), not its own 30."""
    with served(tmp_path, command) as s:
        assert request(s.port, "PUT", "/_platform/mode", s.token, b'{"delay_s": 60}')[0] == 200
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            sock.sendall(b"POST /platform/hospitable HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 2\r\n\r\n{}"
                         % s.port)
            time.sleep(0.5)  # the delivery is in its delay
            began = time.monotonic()
            os.killpg(s.proc.pid, signal.SIGTERM)
            s.proc.wait(timeout=15)
            stopped_after = time.monotonic() - began
            answer = sock.recv(65536)
        assert stopped_after < bound_s, stopped_after
        if command == "platform":
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "platform"])
def test_an_encoded_slash_is_refused_by_both_platforms_even_with_the_token(tmp_path: pathlib.Path,
                                                                          command: str) -> None:
    """`/_platform%2Fmode`: the Falcon-mounted platform decoded it and answered as /_platform/mode, aiohttp's
    answered 404; the refusal says encoded '/' segments are not taken, and both now refuse it (400)."""
    with served(tmp_path, command) as s:
        for path in ["/_platform%2Fmode", "/_platform%2fmode", "/_platform/body/a%2Fb", "/_platform%5Cmode"]:
            assert request(s.port, "GET", path, s.token)[0] == 400, path
        assert request(s.port, "GET", "/_platform/mode?next=%2F", s.token)[0] == 200  # a query may hold one


@pytest.mark.slow
def test_the_platform_alone_on_ipv6_loopback_names_a_url_that_reaches_it(tmp_path: pathlib.Path) -> None:
    """TENANTCTL_SANDBOX_URL on [::1]: the URL printed for the deliveries is one a client can use as it is."""
    port, home = _free_port(), tmp_path / "home"
    home.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")},
           "TENANTCTL_STATE_DIR": str(tmp_path / "state"), "HOME": str(home),
           "TENANTCTL_SANDBOX_URL": "http://[::1]:8790"}
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "sandbox", "platform", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stderr is not None
        line = ""
        while "listening on" not in line:
            line = proc.stderr.readline().decode()
            assert line, "the platform said nothing"
        url = line.split("listening on ", 1)[1].split()[0]
        assert url == f"http://[::1]:{port}/platform/{{name}}"
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("::1", port, timeout=5)
                try:
                    conn.request("GET", "/_sandbox/healthz", headers={"Host": f"[::1]:{port}"})
                    assert conn.getresponse().status == 200
                    break
                finally:
                    conn.close()
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.slow
def test_serve_and_the_platform_alone_on_one_state_dir_keep_tokens_of_their_own(tmp_path: pathlib.Path) -> None:
    with served(tmp_path, "serve") as sandbox:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "sandbox", "platform", "--port", str(port)],
                                cwd=ROOT, env=sandbox.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while not (sandbox.state_dir / "platform-admin-token").exists():
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            # serve's clients (`sandbox seed`) still hold the right token, and the platform has its own.
            assert request(sandbox.port, "GET", "/_sandbox/state", sandbox.token)[0] == 200
            assert (sandbox.state_dir / "platform-admin-token").read_text() != sandbox.token
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "platform"])
def test_a_second_one_on_the_same_state_dir_shares_the_running_ones_token(tmp_path: pathlib.Path,
                                                                         command: str) -> None:
    """Started again on another port with the same state dir, it used to write a fresh token over the first one's:
    the first kept answering to its own, and every client reading the file was locked out of it. Now the second
    takes the token of the one running, so the file opens both; once none runs, the next start writes a fresh
    one (a token never outlives the runs that share it)."""
    with served(tmp_path, command) as first:
        token = first.token
        log = tmp_path / "second.log"
        with served(tmp_path, command, log=log) as second:
            assert first.token == second.token == token  # the file was not rewritten
            for port in (first.port, second.port):
                assert request(port, "GET", "/_platform/mode", token)[0] == 200, port
            kind = "sandbox" if command == "serve" else "platform"
            said = log.read_text()
            assert f"another {kind} runs on this state dir; sharing its token in {first.state_dir}" in said
            assert token not in said
        # The second stopped: the first still answers to the token in the file.
        assert request(first.port, "GET", "/_platform/mode", first.token)[0] == 200
    with served(tmp_path, command) as again:
        assert again.token != token
        assert request(again.port, "GET", "/_platform/mode", again.token)[0] == 200


def _sandbox(command: str, state_dir: pathlib.Path, home: pathlib.Path, *args: str) -> tuple[int, str]:
    """`tenantctl sandbox <command> --port <a free one>` expected to stop on its own (refused) within 30 s: its exit
    status and output. One that serves instead is stopped, with everything it started, and the test fails."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")},
           "TENANTCTL_STATE_DIR": str(state_dir), "HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "sandbox", command, "--port", str(_free_port()),
                             *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`sandbox {command}` did not stop on its own")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    return proc.returncode, out


@pytest.mark.slow
def test_a_start_behind_a_lock_held_by_something_else_fails_in_bounded_time_naming_the_lock_and_holder(
        tmp_path: pathlib.Path) -> None:
    """`flock -x <state>/platform-admin-token.lock` by another program: `sandbox platform` hung silently for ever."""
    lock = tmp_path / "state" / "platform-admin-token.lock"
    with held_lock(lock, "EX") as holder:
        began = time.monotonic()
        status, out = _sandbox("platform", tmp_path / "state", tmp_path)
        took = time.monotonic() - began
    assert status == 1, out
    assert f"{lock} stayed locked for {LOCK_WAIT_S:g} s" in out and f"pid {holder.pid} (" in out
    assert LOCK_WAIT_S <= took < LOCK_WAIT_S + 20


@pytest.mark.slow
@pytest.mark.parametrize(("command", "name"), [("serve", "sandbox-admin-token"), ("platform", "platform-admin-token")])
def test_a_symlinked_token_file_is_refused_naming_it_and_its_target_is_left_alone(
        tmp_path: pathlib.Path, command: str, name: str) -> None:
    """`ln -s /elsewhere/victim <state>/platform-admin-token`: the start wrote the token over `victim` (made 0600)
    and created `victim.lock` beside it."""
    state, victim = planted_link(tmp_path, name)
    status, out = _sandbox(command, state, tmp_path)
    assert status == 1, out
    assert f"error: refusing {state / name}: it is a symlink" in out
    assert untouched(victim)
    assert [p.name for p in state.iterdir()] == [name]


@pytest.mark.slow
def test_a_second_serve_on_the_same_state_dir_leaves_the_running_ones_smtp_to_health_checks(
        tmp_path: pathlib.Path) -> None:
    """The second wrote its own SMTP port and certificate over the first one's and left them when it stopped:
    `health --sandbox -p smtp` then went to a dead port. The files stay the first one's, and reach its SMTP over
    STARTTLS with that certificate, as `health` does."""
    port_file, pem_file = tmp_path / "state" / "sandbox-smtp.port", tmp_path / "state" / "sandbox-smtp.pem"
    with served(tmp_path) as first:
        port, pem = port_file.read_text(), pem_file.read_bytes()
        log = tmp_path / "second.log"
        with served(tmp_path, log=log):
            assert (port_file.read_text(), pem_file.read_bytes()) == (port, pem)
            assert f"sandbox SMTP: the running sandbox's (its port in {first.state_dir / 'sandbox-smtp.port'})" \
                in log.read_text()
        assert (port_file.read_text(), pem_file.read_bytes()) == (port, pem)
        tls = ssl.create_default_context(cafile=str(pem_file))
        with smtplib.SMTP("127.0.0.1", int(port), timeout=10) as smtp:
            assert smtp.starttls(context=tls)[0] == 220
