"""The `tenantctl` command line: wires the packages together; no logic of its own."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from tenancy.redact import REDACTOR, RedactingFilter
from tenancy.settings import load_settings
from tenantctl.context import Context

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
) -> None:
    if verbose or debug:
        handler = logging.StreamHandler()
        handler.addFilter(RedactingFilter())  # every line scrubbed of every known secret value
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
    settings = load_settings()
    ctx.obj = Context(settings=settings, tenants_dir=tenants or settings.tenants, debug=debug)


def _register() -> None:
    from tenantctl.commands import tenants

    tenants.register(app)
    for module in ("db", "webhooks", "serve", "reconcile", "sandbox", "lock", "state", "adopt"):
        try:
            mod = __import__(f"tenantctl.commands.{module}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"tenantctl.commands.{module}":
                raise
            continue
        mod.register(app)


_register()


def _explain(e: BaseException) -> str | None:
    """A message that teaches (tenantctl.errors) for failures a user can fix, else None."""
    from tenantctl.errors import explain

    try:
        url: str | None = load_settings().resolved_database_url
    except Exception:
        url = None
    return explain(e, url)


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        rv = app(standalone_mode=False)
    except SystemExit:
        raise
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except Exception as e:  # the last line of defence: scrub, never dump locals
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        taught = _explain(e)
        if taught is not None:
            if debug or os.environ.get("TENANTCTL_DEBUG"):
                sys.stderr.write(REDACTOR.scrub("".join(traceback.format_exception(e))))
            sys.stderr.write(f"error: {taught}\n")
            sys.exit(1)
        if debug or os.environ.get("TENANTCTL_DEBUG"):
            sys.stderr.write(REDACTOR.scrub("".join(traceback.format_exception(e))))
        sys.stderr.write(REDACTOR.scrub(f"error: {e.__class__.__name__}: {e}") + "\n")
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
