"""tenantctl: config-as-code for the integrations of a multi-tenant rental platform (README.md)."""

import sys
from types import TracebackType


def _interrupted_quietly(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """A Ctrl-C that no command caught (one during the imports, before a command's own handler) ends the
    program with one line instead of a traceback. Python still ends the process by SIGINT afterwards, so the
    shell and systemd see an interrupt (exit status 130), as without this hook."""
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write("tenantctl: interrupted\n")
    else:
        sys.__excepthook__(kind, value, tb)


# Before any other import, which a Ctrl-C may interrupt too; given back below when tenantctl is only imported.
_importers_hook, sys.excepthook = sys.excepthook, _interrupted_quietly

import signal  # noqa: E402

from tenantctl.argv import command_word, own_argv  # noqa: E402
from webhook_server.boot_signals import hold_hangups  # noqa: E402


def _stopped_while_starting(signum: int, frame: object) -> None:
    """SIGTERM before a service has its own handler: it ends as a stop ends it once it runs (exit 0; systemd's
    `stop` and a container's stop are no failure), not killed by the signal."""
    raise SystemExit(0)


def _is_service(argv: list[str]) -> bool:
    """`serve`, `deliver`, `sandbox serve` and `sandbox platform`: the commands that run until stopped."""
    word = command_word(argv)
    return word in ("serve", "deliver") or (word == "sandbox" and any(a in ("serve", "platform") for a in argv))


# The process's first line: `serve` and `deliver` reload on SIGHUP, and `sandbox serve` is a gunicorn; none of
# the services has its handlers before its imports (and serve's tenant load) are done, and until then a SIGHUP
# killed it.
if (_argv := own_argv()) is None:
    sys.excepthook = _importers_hook  # tests, `-c`: the importing program's own
else:
    # pyrage runs Python code while it initialises and panics when that is interrupted (a Rust backtrace, then
    # PanicException): it is loaded here (1 ms) with SIGINT blocked, and a Ctrl-C that came meanwhile is raised
    # as KeyboardInterrupt once it is in.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        import pyrage  # noqa: F401
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if _is_service(_argv):
        hold_hangups()
        signal.signal(signal.SIGTERM, _stopped_while_starting)
