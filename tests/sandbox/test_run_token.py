"""The admin token a served sandbox or fake platform gives its clients through the state dir: fresh when none
of its kind runs there, shared while one does, and never held by a process that is gone (tenantctl/run_token.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantctl import run_token
from tenantctl.run_token import RunTokenError, take
from tests.sandbox.planted import planted_link, untouched

ROOT = Path(__file__).resolve().parents[2]


def test_the_token_is_shared_while_a_holder_runs_and_fresh_once_none_does(tmp_path: Path) -> None:
    path = tmp_path / "state" / "platform-admin-token"
    first = take(path)
    second = take(path)
    assert (first.reused, second.reused) == (False, True)
    assert second.value == first.value == path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    os.close(first.lock_fd)  # the first stops; the second still runs
    third = take(path)
    assert third.reused and third.value == first.value
    os.close(second.lock_fd)
    os.close(third.lock_fd)
    fresh = take(path)  # none runs
    assert not fresh.reused and fresh.value != first.value and path.read_text() == fresh.value
    os.close(fresh.lock_fd)


def test_a_holder_killed_outright_leaves_no_claim_on_the_token(tmp_path: Path) -> None:
    """kill -9 ends a run without a word: the kernel frees its lock, and the next start writes a fresh token
    instead of sharing a dead run's."""
    path = tmp_path / "platform-admin-token"
    holder = subprocess.Popen([sys.executable, "-c", "import pathlib, time; from tenantctl.run_token import take; "
                               f"take(pathlib.Path({str(path)!r})); print('held', flush=True); time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        alive = take(path)
        os.close(alive.lock_fd)
        assert alive.reused and alive.value == path.read_text()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    after = take(path)
    os.close(after.lock_fd)
    assert not after.reused and after.value != alive.value


@contextlib.contextmanager
def held_lock(path: Path, how: str) -> Iterator[subprocess.Popen[str]]:
    """Another process, no server, holding ``flock`` on ``path`` (``how``: "EX" or "SH") until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # It waits on its stdin: it ends with the test's process, even one killed outright.
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys; "
                               f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o600); "
                               f"fcntl.flock(fd, fcntl.LOCK_{how}); print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait(10)
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize("name", ["platform-admin-token.lock", "platform-admin-token"])
def test_a_lock_held_by_something_else_fails_the_start_in_bounded_time_naming_the_file_and_holder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """`flock -x` on either file by a process that is no server: flock() had no timeout, and the start hung for
    ever without a word (and every later one queued behind it)."""
    monkeypatch.setattr(run_token, "LOCK_WAIT_S", 0.5)
    path = tmp_path / "platform-admin-token"
    path.write_text("the last run's token")
    with held_lock(tmp_path / name, "EX") as holder:
        began = time.monotonic()
        with pytest.raises(RunTokenError) as refused:
            take(path)
        assert time.monotonic() - began < 5
    said = str(refused.value)
    assert str(tmp_path / name) in said and f"pid {holder.pid} (" in said and "stayed locked" in said
    assert path.read_text() == "the last run's token"  # nothing written
    after = take(path)  # the holder gone, a start goes through at once
    os.close(after.lock_fd)
    assert not after.reused


def test_a_lock_held_shared_by_something_else_reads_as_a_server_running(tmp_path: Path) -> None:
    """The accepted gap (see take): the file's token is kept, not renewed, and is the one served, so the server
    and its clients still agree on it."""
    path = tmp_path / "platform-admin-token"
    old = take(path)
    os.close(old.lock_fd)
    with held_lock(tmp_path / "platform-admin-token.lock", "SH"):
        kept = take(path)
        os.close(kept.lock_fd)
    assert kept.reused and kept.value == old.value == path.read_text()


@pytest.mark.parametrize("name", ["platform-admin-token", "platform-admin-token.lock"])
def test_a_symlinked_token_or_lock_file_is_refused_naming_it_and_nothing_changes(tmp_path: Path, name: str) -> None:
    """A link planted in the state dir had the token written over its target (made 0600), and its lock created
    beside the target, outside the state dir."""
    state, victim = planted_link(tmp_path, name)
    with pytest.raises(RunTokenError) as refused:
        take(state / "platform-admin-token")
    assert f"refusing {state / name}: it is a symlink" in str(refused.value)
    assert untouched(victim)
    assert [p.name for p in state.iterdir()] == [name]  # the other file not created either


@pytest.mark.parametrize("name", ["sandbox-smtp.port", "sandbox-smtp.pem"])
def test_the_sandbox_smtp_refuses_a_symlinked_port_or_certificate_file_before_it_starts(tmp_path: Path,
                                                                                       name: str) -> None:
    """A link planted where the sandbox's SMTP writes its port or certificate had them written over its target."""
    from sandbox.smtp import SandboxSmtp
    from sandbox.world import World

    state, victim = planted_link(tmp_path, name)
    smtp = SandboxSmtp(World(), state)
    with pytest.raises(OSError, match=f"refusing {state / name}: it is a symlink"):
        smtp.start()
    assert untouched(victim) and smtp.port == 0  # refused before it took a port
