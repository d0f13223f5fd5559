"""The `tenantctl` command line: wires the packages together; no logic of its own."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
import typer.core

from tenancy.escape import printable
from tenancy.redact import REDACTOR, RedactingFilter
from tenancy.settings import load_dotenv, load_settings
from tenantctl.argv import command_word, join_bash_assignments, own_argv
from tenantctl.context import Context, colour_allowed, colour_opted_out, console

app = typer.Typer(
    name="tenantctl",
    help="Config-as-code for tenant integrations: validate, plan, apply, serve webhooks.",
    no_args_is_help=True,
    # Pretty tracebacks print local variables, which may hold decrypted secrets.
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion
    rich_markup_mode=None,  # help text is plain: examples keep their quotes and brackets
    context_settings={"max_content_width": 120, "help_option_names": ["--help", "-h"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    tenants: Annotated[
        Path | None,
        typer.Option("--tenants", envvar="TENANTCTL_TENANTS", help="Tenant directory (default: tenants/)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", envvar="TENANTCTL_DEBUG",
                                        help="Show tracebacks (secrets scrubbed).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log provider calls and retries.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colour (also NO_COLOR=1 or TERM=dumb).")] = False,
) -> None:
    if verbose or debug:
        handler = logging.StreamHandler()
        handler.addFilter(RedactingFilter())  # every line scrubbed of every known secret value
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
        # Alembic, imported only when a command migrates, lists its plugins at INFO as it loads: noise.
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    settings = load_settings()
    ctx.obj = Context(settings=settings, tenants_dir=tenants or settings.tenants, debug=debug,
                      out=console(no_color=no_color), err=console(stderr=True, no_color=no_color),
                      colour=colour_allowed(no_color))


# Which module registers each top-level command: `tenantctl plan ...` imports only reconcile's, so a
# command starts without the imports of every other one (0.6 s of 0.9 s for `--help` here). Kept true by
# tests/cli/test_lazy_commands.py, which compares it with what the modules register.
COMMAND_MODULES: dict[str, str] = {
    "validate": "tenants", "new": "tenants", "show": "tenants", "list": "tenants",
    "db": "db", "webhooks": "webhooks", "serve": "serve", "deliver": "deliver", "plan": "reconcile",
    "apply": "reconcile", "health": "health", "simulate": "simulate", "sandbox": "sandbox", "lock": "lock",
    "provider-state": "provider_state", "runs": "runs", "access": "access", "state": "state",
    "adopt": "adopt", "import": "adopt", "keygen": "keygen",
}
MODULES = tuple(dict.fromkeys(COMMAND_MODULES.values()))


def invoked_module(argv: list[str], environ: Mapping[str, str] = os.environ) -> str | None:
    """The module of the command ARGV names (after the root options), or None: every module is needed
    (help, no or an unknown command, which click answers with its suggestions). During shell completion
    (ENVIRON has ``_TENANTCTL_COMPLETE``) the command is read from the words typed so far instead: a TAB after
    a command typed in full imports that command's module only; completing the command's name needs them all."""
    if "_TENANTCTL_COMPLETE" in environ:
        argv = _completed_words(environ)
    word = command_word(argv)
    return None if word is None else COMMAND_MODULES.get(word)


def _completed_words(environ: Mapping[str, str]) -> list[str]:
    """The words before the one being completed, without the program's name: bash passes the line and the
    cursor's word (COMP_WORDS, COMP_CWORD); zsh, fish and PowerShell pass the line in _TYPER_COMPLETE_ARGS,
    whose last word may still be in progress, so it is left out (the worst case imports every module)."""
    try:
        if "COMP_WORDS" in environ:
            return shlex.split(environ["COMP_WORDS"])[1:int(environ.get("COMP_CWORD", "0"))]
        return shlex.split(environ.get("_TYPER_COMPLETE_ARGS", ""))[1:-1]
    except ValueError:  # an open quote, a cursor that is no number: complete with every command
        return []


def _register(modules: tuple[str, ...]) -> None:
    for module in modules:
        __import__(f"tenantctl.commands.{module}", fromlist=["register"]).register(app)


if "_TENANTCTL_COMPLETE" in os.environ and "COMP_WORDS" in os.environ:
    # Before typer reads them: bash split `--tenants=DIR` into three words, and click took "=" for the value.
    with contextlib.suppress(ValueError):  # an open quote, a cursor that is no number: left to typer as they are
        _words, _cword = join_bash_assignments(shlex.split(os.environ["COMP_WORDS"]), int(os.environ["COMP_CWORD"]))
        os.environ["COMP_WORDS"], os.environ["COMP_CWORD"] = shlex.join(_words), str(_cword)
_argv = own_argv()
_only = None if _argv is None else invoked_module(_argv)
_register(MODULES if _only is None else (_only,))


def _add_examples(t: typer.Typer, prefix: str = "") -> None:
    """End every command's help with its examples (tenantctl.help_text)."""
    from tenantctl.help_text import epilog

    for command in t.registered_commands:
        name = command.name or (command.callback.__name__.replace("_", "-") if command.callback else "")
        command.epilog = command.epilog or epilog(f"{prefix}{name}")
    for group in t.registered_groups:
        name = group.name or (group.typer_instance.info.name if group.typer_instance is not None else None) or ""
        group.epilog = group.epilog or epilog(f"{prefix}{name}")
        if group.typer_instance is not None:
            group.typer_instance.info.epilog = group.typer_instance.info.epilog or epilog(f"{prefix}{name}")
            _add_examples(group.typer_instance, f"{prefix}{name} ")


app.info.epilog = app.info.epilog or __import__("tenantctl.help_text", fromlist=["epilog"]).epilog("")
_add_examples(app)


def _explain(e: BaseException) -> str | None:
    """A message that teaches (tenantctl.errors) for failures a user can fix, else None."""
    from tenantctl.errors import explain

    try:
        url: str | None = load_settings().resolved_database_url
    except Exception:
        url = None
    return explain(e, url)


_ROOT_OPTIONS = ("--tenants", "--debug", "--verbose", "-v", "--no-color")


# pydantic's range errors: the words said before the bound, and the bound's key in the error's ctx.
_BOUNDS = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le"),
           "greater_than": ("more than", "gt"), "less_than": ("less than", "lt")}


def _finite(given: object) -> bool:
    try:
        return math.isfinite(float(str(given)))
    except ValueError:
        return True  # not a number at all: said as out of range, with the value


def _in_plain_words(e: BaseException) -> None:
    """A usage error's message as a sentence that names the value given: typer checks a parameter's type with
    pydantic and passes on its wording ("Input should be a valid integer, unable to parse string as an
    integer", "Value error, ..."), which names neither."""
    cause, message = e.__cause__, getattr(e, "message", None)
    errors = cause.errors() if callable(getattr(cause, "errors", None)) else None  # type: ignore[union-attr]
    if not errors or not isinstance(message, str):
        return
    kind, given, bounds = errors[0].get("type"), errors[0].get("input"), errors[0].get("ctx") or {}
    shown = printable(str(given))
    if kind in ("int_parsing", "int_from_float") and isinstance(given, str):
        e.message = f"'{shown}' is not a whole number"  # type: ignore[attr-defined]
    elif kind == "float_parsing" and isinstance(given, str):
        e.message = f"'{shown}' is not a number"  # type: ignore[attr-defined]
    elif kind in _BOUNDS and _finite(given):
        words, key = _BOUNDS[kind]
        e.message = f"'{shown}' is out of range: {words} {bounds.get(key, '')}".rstrip()  # type: ignore[attr-defined]
    elif kind in _BOUNDS:
        e.message = f"'{shown}' is not a finite number"  # type: ignore[attr-defined]
    elif kind == "string_unicode":
        e.message = "the value is not text in UTF-8"  # type: ignore[attr-defined]
    elif message.startswith("Value error, "):
        e.message = message.removeprefix("Value error, ")  # type: ignore[attr-defined]


def _root_option(e: BaseException) -> str | None:
    """The root option a usage error's unknown option is, when it was given after the command."""
    name = getattr(e, "option_name", None)
    return name if type(e).__name__ == "NoSuchOption" and name in _ROOT_OPTIONS else None


def main() -> None:
    load_dotenv()  # .env for every command and every process it starts; the environment wins
    debug = "--debug" in sys.argv or bool(os.environ.get("TENANTCTL_DEBUG"))
    if "--no-color" in sys.argv:
        os.environ["NO_COLOR"] = "1"  # before anything prints; subprocesses (sops, gunicorn) inherit it
    if colour_opted_out():
        # typer's help and usage errors go through rich, which keeps bold and boxes under NO_COLOR; plain
        # click output has no escape codes at all (typer reads this flag at call time).
        typer.core.HAS_RICH = False
    try:
        rv = app(standalone_mode=False, prog_name="tenantctl")
    except SystemExit:
        raise
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except Exception as e:  # the last line of defence: scrub, never dump locals
        # A usage error of click's kind, recognised by its shape: typer vendors its own click (typer._click), and
        # click itself is no dependency of a plain install (importing it here failed there, traceback and all).
        if callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int):
            # A usage error (mistyped flag or command): click's usage text and hint. Exit 1, never
            # click's 2: for plan, 2 means "changes" and a script must not read a typo as a plan.
            _in_plain_words(e)
            e.show()  # type: ignore[attr-defined]
            if (root := _root_option(e)) is not None:
                sys.stderr.write(f"hint: {root} is an option of tenantctl itself: put it before the command "
                                 f"(tenantctl {root}{' DIR' if root == '--tenants' else ''} COMMAND ...)\n")
            code = e.exit_code  # type: ignore[attr-defined]
            sys.exit(1 if code == 2 else code)
        taught = _explain(e)
        if taught is not None:
            if debug:
                sys.stderr.write(REDACTOR.scrub("".join(traceback.format_exception(e))))
            sys.stderr.write(f"error: {taught}\n")
            sys.exit(1)
        if debug:
            sys.stderr.write(REDACTOR.scrub("".join(traceback.format_exception(e))))
        sys.stderr.write(REDACTOR.scrub(f"error: {e.__class__.__name__}: {e}") + "\n")
        sys.exit(1)
    if rv == 130:  # typer's answer to a Ctrl-C before the command's own handler: said as at the start
        sys.stderr.write("tenantctl: interrupted\n")
    sys.exit(rv if isinstance(rv, int) else 0)
