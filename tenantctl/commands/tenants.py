"""Tenant files: validate, new, show, list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from pydantic import BaseModel, SecretStr
from rich.markup import escape
from rich.table import Table

from tenancy.findings import Severity
from tenancy.fingerprint import masked, tenant_key
from tenancy.loader import LoadResult, tenant_files
from tenancy.onboarding import OnboardingError, create_tenant
from tenancy.urls import tenant_domain, webhook_url
from tenancy.yaml_source import YamlError, parse
from tenantctl.context import Context
from tenantctl.options import TextOrJson, complete_slug

if TYPE_CHECKING:
    from store import provider_state

FORMAT_VERSION = 1


def _state_entries(c: Context, slugs: list[str]) -> tuple[list[provider_state.Entry], str | None]:
    """What the provider state store keeps for SLUGS (metadata, no value), or why it could not be read."""
    # Imported here, as the database is: `validate` without --state, `new` and `list` start without SQLAlchemy.
    from store import provider_state
    from tenantctl.commands.reconcile import read_db

    try:
        db = read_db(c, quiet=True)
    except typer.Exit:  # not migrated: read_db said so; validation of the files still stands
        return [], "provider state not read: the database schema is not current (`tenantctl db upgrade`)"
    except Exception as e:  # unreachable: validation of the files still stands
        return [], f"provider state not read: {type(e).__name__}: {e}"
    if db is None:
        return [], None  # no database yet: nothing stored
    try:
        return provider_state.list_entries(db, slugs), None
    except Exception as e:
        return [], f"provider state not read: {type(e).__name__}"
    finally:
        db.dispose()


def _entry_json(e: provider_state.Entry) -> dict[str, Any]:
    return {"tenant": e.tenant, "provider": e.provider, "path": e.path, "revision": e.revision,
            "updated_at": e.updated_at.isoformat(timespec="seconds"), "updated_by": e.updated_by,
            "has_previous": e.has_previous, "value": "(sensitive)"}


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
    state: Annotated[bool, typer.Option("--state/--no-state",
                                        help="Also list what the provider state store keeps.")] = True,
) -> None:
    """Check tenant files: syntax, schema, encryption, routing keys, cross-tenant uniqueness. Exit 1 on errors."""
    c: Context = ctx.obj
    result = c.load(paths)
    entries, state_note = _state_entries(c, [t.tenant.slug for t in result.tenants]) if state else ([], None)
    if fmt == "json":
        c.echo(json.dumps({
            "version": FORMAT_VERSION,
            "files": result.files,
            "tenants": [t.tenant.slug for t in result.tenants],
            "ok": result.ok,
            "findings": [f.as_json() for f in result.findings],
            "provider_state": [_entry_json(e) for e in entries],
            "provider_state_note": state_note,
        }, indent=2))
    else:
        for f in result.findings:
            c.echo(f"{f.severity.value}: {f.text()}" if f.severity is Severity.WARNING else f.text())
        for e in entries:
            c.echo(f"info: {e.tenant}: {e.path} is kept in the provider state store (issued by {e.provider}, "
                   f"{e.updated_at.isoformat(timespec='seconds')}, by {e.updated_by})")
        if state_note:
            c.echo(f"note: {state_note}")
        n_err = len(result.errors)
        n_warn = len(result.findings) - n_err
        c.echo(f"{result.files} tenant file(s): {n_err} error(s), {n_warn} warning(s)"
               + ("" if n_err else ": valid"))
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


_STATE_MARK = "\x00provider-state"  # stands for a value show never decrypts


def _masked_dump(node: Any, key: bytes) -> Any:
    if isinstance(node, SecretStr) and node.get_secret_value() == _STATE_MARK:
        return "(sensitive) in the provider state store"
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
    slug: Annotated[str, typer.Argument(autocompletion=complete_slug)],
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
    tenant = lt.tenant
    entries, state_note = _state_entries(c, [slug])
    if entries:  # the values exist but are not in the file: show that they are there, masked
        from store import provider_state

        tenant = provider_state.overlay(tenant, {(slug, e.path): (_STATE_MARK, None) for e in entries})
    data = _masked_dump(tenant, tenant_key(lt.tenant))
    if entries or state_note:
        data["provider_state"] = [_entry_json(e) for e in entries] or state_note
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


PROVIDER_SECTIONS = ("hospitable", "whatsapp", "nuki", "smtp", "beds24")


def _plain_row(path: Path) -> dict[str, Any]:
    """A tenant's plain fields, read without decrypting (the structure and names are never encrypted)."""
    try:
        data = parse(path.read_text(encoding="utf-8")).data
    except (OSError, UnicodeDecodeError, YamlError) as e:
        return {"file": str(path), "slug": path.stem, "error": f"unreadable: {type(e).__name__}"}
    if not isinstance(data, dict):
        return {"file": str(path), "slug": path.stem, "error": "not a mapping"}
    props = [p for p in data.get("properties") or [] if isinstance(p, dict)]
    providers = [n for n in PROVIDER_SECTIONS if data.get(n) is not None]
    if any(p.get("intercom") for p in props):
        providers.append("twon")
    return {"file": str(path), "slug": str(data.get("slug", path.stem)), "status": str(data.get("status", "-")),
            "providers": providers, "properties": len(props),
            "locks": sum(len(p.get("nuki_lock_ids") or []) for p in props),
            "intercoms": sum(1 for p in props if p.get("intercom")),
            "teammates": len(data.get("teammates") or []), "encrypted": "sops" in data, "error": None}


def list_tenants(
    ctx: typer.Context,
    fmt: TextOrJson = "text",
) -> None:
    """A table of the tenants from their plain fields (no key needed): status, providers, properties, locks,
    2N devices. `validate` checks them."""
    c: Context = ctx.obj
    c.require_tenants_dir()
    files, findings = tenant_files([c.tenants_dir])
    rows = sorted((_plain_row(f) for f in files), key=lambda r: str(r["slug"]))
    if fmt == "json":
        c.echo(json.dumps({"version": FORMAT_VERSION, "tenants": rows,
                           "errors": [f.as_json() for f in findings]}, indent=2))
    else:
        table = Table(title=escape(f"Tenants in {c.tenants_dir}"))
        for col in ("slug", "status", "providers", "properties", "locks", "2N devices", "teammates"):
            table.add_column(col, justify="right" if col in ("properties", "locks", "2N devices", "teammates")
                             else "left")
        for r in rows:
            if r["error"]:
                table.add_row(escape(str(r["slug"])), escape(str(r["error"])), "", "", "", "", "")
                continue
            table.add_row(escape(str(r["slug"])), escape(str(r["status"])),
                          escape(", ".join(r["providers"]) or "-"), str(r["properties"]), str(r["locks"]),
                          str(r["intercoms"]), str(r["teammates"]))
        c.out.print(table)
        for f in findings:
            c.err.print(escape(f.text()))
    bad = findings or any(r["error"] for r in rows)
    raise typer.Exit(1 if bad else 0)
