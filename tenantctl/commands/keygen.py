"""`tenantctl keygen --out FILE`: a new age identity for SOPS, without installing age-keygen.

The file holds the same lines age-keygen writes (`# created:`, `# public key:`, the AGE-SECRET-KEY-1…
identity), is created with mode 0600 and never overwrites an existing file. The public recipient (age1…)
is printed on stdout: it goes into tenants/.sops.yaml; the file is what SOPS_AGE_KEY_FILE points at.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import pyrage
import typer

from tenantctl.context import Context


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)


def keygen(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Where to write the private key (created with mode 0600; "
                                      "an existing file is never overwritten).")],
) -> None:
    """Create an age key for SOPS; print its public recipient (age1…) for tenants/.sops.yaml."""
    c: Context = ctx.obj
    ident = pyrage.x25519.Identity.generate()
    recipient = str(ident.to_public())
    created = datetime.now(UTC).isoformat(timespec="seconds")
    body = f"# created: {created}\n# public key: {recipient}\n{ident}\n"
    try:
        # O_EXCL: refuse an existing file (or a link) atomically; 0600 from the start, never widened later.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        c.err.print(f"error: {out} already exists: not overwritten (choose another --out, or use the key "
                    "that is there: its `# public key:` line is the recipient)", markup=False)
        raise typer.Exit(1) from None
    except OSError as e:
        c.err.print(f"error: cannot create {out}: {e.strerror}", markup=False)
        raise typer.Exit(1) from None
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.chmod(out, 0o600)  # the umask may have narrowed it further; make it exactly 0600
    c.echo(recipient)
    c.err.print(f"wrote the private key to {out} (mode 0600); keep it out of git and back it up.\n"
                f"next: put {recipient} in tenants/.sops.yaml (creation_rules[0].age, comma-separated with your "
                f"team's keys) and export SOPS_AGE_KEY_FILE={out}", markup=False, soft_wrap=True)
