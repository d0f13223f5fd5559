"""Live progress of `plan`, `apply` and `health` on stderr (stdout keeps only the final output).

- On a terminal: rich's progress display (tenants done / total, the latest provider call, retry waits
  explained as they happen: "nuki: 429, retrying in 2 s"); transient, so it is cleared when the phase ends.
- Without a terminal (CI): one line per finished tenant, and one per retry wait, so a long run is never
  silent.
- `tenantctl --quiet` (or TENANTCTL_QUIET=1): neither.
Every text that came from a provider or a tenant file is scrubbed of known secrets and of control
characters before it reaches the terminal.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import IO, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from reconciler.http import HttpClient
from reconciler.progress import NO_PROGRESS, Progress
from tenancy.redact import REDACTOR
from tenantctl.context import colour_opted_out

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", envvar="TENANTCTL_QUIET",
                                        help="No live progress on stderr (the output on stdout is the same).")]


def _clean(text: str) -> str:
    """Scrubbed, one line, no control characters (a provider's text must not drive the terminal)."""
    return "".join(ch if ch.isprintable() else "?" for ch in REDACTOR.scrub(text))


def seconds(value: float) -> str:
    """2.4 → "2 s", 0.25 → "0.2 s", 0.012 → "12 ms"."""
    if value >= 1:
        return f"{value:.0f} s"
    return f"{value:.1f} s" if value >= 0.1 else f"{value * 1000:.0f} ms"


class LineProgress:
    """One line per finished tenant (and per retry wait) on a stream: for CI logs."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._phase, self._total, self._done = "", 0, 0

    def _write(self, line: str) -> None:
        with self._lock:
            self._stream.write(_clean(line) + "\n")
            self._stream.flush()

    def start(self, phase: str, total: int) -> None:
        with self._lock:
            self._phase, self._total, self._done = phase, total, 0

    def tenant_done(self, tenant: str, summary: str) -> None:
        with self._lock:
            self._done += 1
            n = self._done
        self._write(f"{self._phase}: {tenant} done ({n}/{self._total}): {summary}")

    def call(self, provider: str, what: str) -> None:
        pass  # too many for a log; the terminal display shows them

    def wait(self, provider: str, reason: str, seconds_: float) -> None:
        self._write(f"{self._phase}: {provider}: {reason}, retrying in {seconds(seconds_)}")


class LiveProgress:
    """rich's progress display on a terminal; `stop()` clears it."""

    def __init__(self, console: Console) -> None:
        self._rich = RichProgress(TextColumn("{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("tenants"), TimeElapsedColumn(), TextColumn("{task.fields[now]}"),
                                  console=console, transient=True, refresh_per_second=8)
        self._task = self._rich.add_task("", total=None, phase="", now="", visible=False)
        self._rich.start()

    def start(self, phase: str, total: int) -> None:
        self._rich.reset(self._task, total=total, completed=0, phase=phase, now="", visible=True)

    def tenant_done(self, tenant: str, summary: str) -> None:
        self._rich.update(self._task, advance=1, now=escape(_clean(f"{tenant}: {summary}")))

    def call(self, provider: str, what: str) -> None:
        self._rich.update(self._task, now=escape(_clean(what)))

    def wait(self, provider: str, reason: str, seconds_: float) -> None:
        self._rich.update(self._task, now=escape(_clean(f"{provider}: {reason}, retrying in {seconds(seconds_)}")))

    def stop(self) -> None:
        self._rich.stop()


def choose(*, quiet: bool, stream: IO[str] | None = None) -> Progress | LiveProgress:
    # The process's own stderr, not whatever sys.stderr was swapped for: progress is a side channel of the
    # terminal or the CI log, never part of a command's output (in-process test runners capture that).
    stream = stream or sys.__stderr__ or sys.stderr
    if quiet:
        return NO_PROGRESS
    # A live display moves the cursor with escape codes: only on a terminal that did not opt out of them
    # (NO_COLOR, TERM=dumb, --no-color: tenantctl.context), else plain lines.
    if stream.isatty() and not colour_opted_out():
        return LiveProgress(Console(file=stream, highlight=False))
    return LineProgress(stream)


@contextlib.contextmanager
def showing(quiet: bool, http: HttpClient | None = None) -> Iterator[Progress]:
    """Progress for one phase: attached to `http` (calls, waits) for the block, cleared at its end."""
    progress = choose(quiet=quiet)
    if http is not None:
        http.progress = progress
    try:
        yield progress
    finally:
        if http is not None:
            http.progress = NO_PROGRESS
        if isinstance(progress, LiveProgress):
            progress.stop()
