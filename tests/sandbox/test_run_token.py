"""The admin token a served sandbox or fake platform gives its clients through the state dir: fresh when none
of its kind runs there, shared while one does, and never held by a process that is gone (tenantctl/run_token.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tenantctl.run_token import take

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
