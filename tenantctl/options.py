"""Option types shared by commands: one spelling of `--format`, so help lists the choices and click refuses
any other value before a command runs (exit 1, like every usage error)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

TextOrJson = Annotated[Literal["text", "json"], typer.Option("--format", help="Output format.")]
TextJsonOrMarkdown = Annotated[Literal["text", "json", "markdown"], typer.Option("--format", help="Output format.")]


def complete_slug(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of a tenant's slug: the slugs of the tenant files in `--tenants` (or TENANTCTL_TENANTS,
    or the settings' default) that start with INCOMPLETE, sorted; a file name that is no slug is left out.
    Only names are listed: no file is read or decrypted, so a TAB costs no key. A `~` is expanded, as the
    shell does for the command but not for the words a TAB passes. An unreadable directory, or settings that
    do not load, complete nothing."""
    from tenancy.loader import tenant_files  # imported on TAB only: the root callback has not run here
    from tenancy.model import is_slug

    given = ctx.find_root().params.get("tenants")
    if given is None:
        from tenancy.settings import load_settings

        try:
            given = load_settings().tenants
        except Exception:  # a bad setting: the command itself says which; a TAB must not print mid-line
            return []
    files, _ = tenant_files([Path(given).expanduser()])
    # Slugs only: a file named with an escape sequence or a space is a finding of `validate`, and the shell
    # would print the one and split the other.
    return [f.stem for f in files if is_slug(f.stem) and f.stem.startswith(incomplete)]
