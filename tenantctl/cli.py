"""The `tenantctl` command line: wires the packages together; no logic of its own."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
import typer.core

from tenancy.redact import REDACTOR, RedactingFilter
from tenancy.settings import load_dotenv, load_settings
from tenantctl.context import Context, colour_allowed, colour_opted_out, console

app = typer.Typer(
    name="tenantctl",
    help="Config-as-code for tenant integrations: validate, plan, apply, serve webhooks.",
    no_args_is_help=True,
    # Pretty tracebacks print local variables, which may hold decrypted secrets.
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion
    rich_markup_mode=None,  # help text is plain: examples keep their quotes and brackets
    context_settings={"max_content_width": 120},
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
    settings = load_settings()
    ctx.obj = Context(settings=settings, tenants_dir=tenants or settings.tenants, debug=debug,
                      out=console(no_color=no_color), err=console(stderr=True, no_color=no_color),
                      colour=colour_allowed(no_color))


def _register() -> None:
    from tenantctl.commands import tenants

    tenants.register(app)
    for module in ("db", "webhooks", "serve", "deliver", "reconcile", "health", "simulate", "sandbox", "lock",
                   "provider_state", "runs", "access", "state", "adopt", "keygen"):
        try:
            mod = __import__(f"tenantctl.commands.{module}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"tenantctl.commands.{module}":
                raise
            continue
        mod.register(app)


_register()


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
        import click

        # typer vendors its own click: its usage errors are not `click.ClickException`s, but show alike.
        if isinstance(e, click.ClickException) or (callable(getattr(e, "show", None))
                                                   and isinstance(getattr(e, "exit_code", None), int)):
            # A usage error (mistyped flag or command): click's usage text and hint. Exit 1, never
            # click's 2: for plan, 2 means "changes" and a script must not read a typo as a plan.
            e.show()  # type: ignore[attr-defined]
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
    sys.exit(rv if isinstance(rv, int) else 0)
