"""Tenant files: validate, new, show, list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, SecretStr
from rich.table import Table

from tenancy.findings import Severity
from tenancy.fingerprint import masked, tenant_key
from tenancy.loader import LoadResult
from tenancy.onboarding import OnboardingError, create_tenant
from tenancy.urls import tenant_domain, webhook_url
from tenantctl.context import Context

FORMAT_VERSION = 1


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("new")(new)
    app.command("show")(show)
    app.command("list")(list_tenants)


def validate(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Tenant files or directories (default: --tenants).")
    ] = None,
    fmt: Annotated[Literal["text", "json"], typer.Option("--format", help="Output format.")] = "text",
) -> None:
    """Check tenant files: syntax, schema, encryption, routing keys, cross-tenant uniqueness. Exit 1 on errors."""
    c: Context = ctx.obj
    result = c.load(paths)
    if fmt == "json":
        c.echo(json.dumps({
            "version": FORMAT_VERSION,
            "files": result.files,
            "tenants": [t.tenant.slug for t in result.tenants],
            "ok": result.ok,
            "findings": [f.as_json() for f in result.findings],
        }, indent=2))
    elif fmt == "text":
        for f in result.findings:
            c.echo(f"{f.severity.value}: {f.text()}" if f.severity is Severity.WARNING else f.text())
        n_err = len(result.errors)
        n_warn = len(result.findings) - n_err
        c.echo(f"{result.files} tenant file(s): {n_err} error(s), {n_warn} warning(s)"
               + ("" if n_err else ": valid"))
    else:
        raise typer.BadParameter("use text or json", param_hint="--format")
    raise typer.Exit(0 if result.ok else 1)


def new(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant's slug (lower-case letters, digits, hyphens).")],
    display_name: Annotated[str | None, typer.Option("--name", help="Company name.")] = None,
) -> None:
    """Scaffold tenants/SLUG.yaml with generated secrets, encrypted with SOPS, and print the checklist."""
    c: Context = ctx.obj
    try:
        created = create_tenant(c.tenants_dir, slug, c.settings.domain, display_name)
    except OnboardingError as e:
        c.err.print(f"error: {e}")
        raise typer.Exit(1) from None
    c.echo(f"created {created.path} (secrets encrypted)")
    c.echo("Onboarding checklist:")
    for i, step in enumerate(created.checklist, 1):
        c.echo(f"  {i}. {step}")


def _masked_dump(node: Any, key: bytes) -> Any:
    if isinstance(node, SecretStr):
        return masked(node, key)
    if isinstance(node, BaseModel):
        return {k: _masked_dump(getattr(node, k), key) for k in type(node).model_fields
                if getattr(node, k) is not None}
    if isinstance(node, list):
        return [_masked_dump(v, key) for v in node]
    if hasattr(node, "isoformat"):
        return node.isoformat()
    return node.value if hasattr(node, "value") else node


def _require_valid(c: Context, result: LoadResult) -> None:
    if not result.ok:
        for f in result.errors:
            c.echo(f.text())
        c.err.print(f"error: {len(result.errors)} error(s) in the tenant files: run `tenantctl validate`")
        raise typer.Exit(1)


def show(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument()],
    fmt: Annotated[Literal["yaml", "json"], typer.Option("--format", help="Output format.")] = "yaml",
) -> None:
    """Print a decrypted tenant with every secret masked: (sensitive) plus a keyed fingerprint."""
    c: Context = ctx.obj
    path = c.tenants_dir / f"{slug}.yaml"
    if not path.is_file():
        c.err.print(f"error: no tenant {slug!r} in {c.tenants_dir}")
        raise typer.Exit(1)
    result = c.load([path])
    _require_valid(c, result)
    lt = result.tenants[0]
    data = _masked_dump(lt.tenant, tenant_key(lt.tenant))
    domain = tenant_domain(lt.tenant, c.settings.domain)
    data["webhook_urls"] = {p: webhook_url(p, slug, domain) for p in ("hospitable", "wa", "beds24", "nuki")}
    if fmt == "json":
        c.echo(json.dumps(data, indent=2))
    else:
        import io

        from ruamel.yaml import YAML

        buf = io.StringIO()
        yaml = YAML(typ="rt")
        yaml.default_flow_style = False
        yaml.dump(data, buf)
        c.echo(buf.getvalue().rstrip())


def list_tenants(ctx: typer.Context) -> None:
    """A table of the tenants: status, providers, properties, locks, 2N devices."""
    c: Context = ctx.obj
    result = c.load()
    table = Table(title=f"Tenants in {c.tenants_dir}")
    for col in ("slug", "status", "providers", "properties", "locks", "2N devices", "teammates"):
        table.add_column(col, justify="right" if col in ("properties", "locks", "2N devices", "teammates") else "left")
    for lt in result.tenants:
        t = lt.tenant
        table.add_row(t.slug, t.status.value, ", ".join(t.providers()) or "-", str(len(t.properties)),
                      str(sum(len(p.nuki_lock_ids) for p in t.properties)),
                      str(sum(1 for p in t.properties if p.intercom)), str(len(t.teammates)))
    c.out.print(table)
    if not result.ok:
        c.err.print(f"{len(result.errors)} error(s): run `tenantctl validate`")
        raise typer.Exit(1)
