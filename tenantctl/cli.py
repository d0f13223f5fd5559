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
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    tenants: Annotated[
        Path | None,
        typer.Option("--tenants", help="Tenant directory (else $TENANTCTL_TENANTS, else tenants/)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (secrets scrubbed).")] = False,
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
                   "provider_state", "runs", "access"):
        try:
            mod = __import__(f"tenantctl.commands.{module}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"tenantctl.commands.{module}":
                raise
            continue
        mod.register(app)


_register()


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
        if isinstance(e, typer.TyperException) and hasattr(e, "show"):
            # A usage error (mistyped flag or command): click's usage text and hint. Exit 1, never
            # click's 2: for plan, 2 means "changes" and a script must not read a typo as a plan.
            e.show()
            sys.exit(1 if e.exit_code == 2 else e.exit_code)
        if debug:
            sys.stderr.write(REDACTOR.scrub("".join(traceback.format_exception(e))))
        sys.stderr.write(REDACTOR.scrub(f"error: {e.__class__.__name__}: {e}") + "\n")
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
