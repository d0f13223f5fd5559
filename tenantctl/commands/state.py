"""`tenantctl state list | show`: the inventory of what tenantctl observed at each provider (read-only).

Terraform users reach for `terraform state list` first; tenantctl keeps no state file, so its inventory is
what the providers show right now: every live resource its providers' `observe` returns, owned (with its
address and the provider's ID) or foreign (what it is, and why it is not ours). Only `observe` is called,
never `apply`: listing cannot write anything. Secrets are masked exactly as plans mask them (a keyed
fingerprint, reconciler.plan.encode_value).

JSON (`state list --format json`), a list of entries sorted by tenant, provider, address:
    {"tenant": "acme", "provider": "nuki", "kind": "keypad_code",
     "address": "nuki.keypad_code[acme/17010001/~4]", "id": "4", "owned": false,
     "reason": "made by hand: its name lacks tenantctl's `tc:` prefix"}      # null when owned
and one entry per tenant/provider that could not be observed: {"tenant", "provider", "error"}.
`state show ADDRESS --format json` adds "attrs" (secrets as {"sensitive": true, "fingerprint": ...}).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import typer

from reconciler.engine import describe_error
from reconciler.model import Action, Resource
from reconciler.plan import encode_value
from reconciler.providers.base import Http, Provider, ProviderContext
from tenancy.fingerprint import tenant_key
from tenancy.model import Tenant
from tenancy.redact import REDACTOR
from tenantctl.commands.reconcile import ProviderOpt, SandboxOpt, TenantOpt, _fail, session
from tenantctl.context import Context

state_app = typer.Typer(help="What tenantctl observed at each provider: owned and foreign live resources "
                        "(read-only).", no_args_is_help=True)

# Why a live resource of this kind is foreign, when its provider's plan gives no reason of its own.
FOREIGN_REASONS: dict[tuple[str, str], str] = {
    ("nuki", "keypad_code"): "made by hand: its name lacks tenantctl's `tc:` prefix",
    ("nuki", "lock"): "no property of the tenant lists this lock",
    ("nuki", "decentral_webhook"): "a webhook to another URL than this tenant's Nuki webhook URL",
    ("whatsapp", "waba_subscription"): "another app's subscription (its callback is not this tenant's URL)",
    ("twon", "device"): "another device answers at this host (its serial number is not the declared one)",
    ("twon", "dir_user"): "a directory user tenantctl did not make (another owner)",
}


@dataclass(frozen=True)
class Entry:
    """One live resource as the inventory shows it, or one tenant/provider that could not be observed."""

    tenant: str
    provider: str
    address: str = ""
    kind: str = ""
    remote_id: str | None = None
    owned: bool = True
    reason: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)  # encoded: secrets as fingerprints
    error: str | None = None

    def as_json(self, *, with_attrs: bool = False) -> dict[str, Any]:
        if self.error is not None:
            return {"tenant": self.tenant, "provider": self.provider, "error": self.error}
        out: dict[str, Any] = {"tenant": self.tenant, "provider": self.provider, "kind": self.kind,
                               "address": self.address, "id": self.remote_id, "owned": self.owned,
                               "reason": self.reason}
        if with_attrs:
            out["attrs"] = self.attrs
        return out


def _strip_severity(note: str) -> str:
    """A note written the old way ("info: ...") reads as the reason without its prefix."""
    for prefix in ("error: ", "info: "):
        if note.startswith(prefix):
            return note[len(prefix):]
    return note


def classify(provider: Provider, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Entry]:
    """Live resources → entries. Foreign: the provider marks it not ours, or its (pure) plan reports it as
    something no tenant file declares (e.g. a Hospitable property no tenant property maps)."""
    reports = {c.address: _strip_severity(c.note) for c in provider.plan(tenant, ctx, live)
               if c.action is Action.REPORT and c.desired is None and c.live is not None}
    key = tenant_key(tenant)
    out = []
    for r in live:
        owned = r.owned and r.address not in reports
        reason = None
        if not owned:
            reason = reports.get(r.address) or FOREIGN_REASONS.get(
                (r.provider, r.kind), "not marked as tenantctl's")
        out.append(Entry(r.tenant, r.provider, r.address, r.kind, r.remote_id, owned, reason,
                         encode_value(dict(r.attrs), key)))
    return out


def observe_tenant(tenant: Tenant, providers: Sequence[Provider], ctx: ProviderContext, http: Http) -> list[Entry]:
    """Every provider's `observe` for one tenant (reads only); a failure becomes an error entry."""
    out: list[Entry] = []
    for provider in providers:
        if not provider.applies_to(tenant):
            continue
        try:
            live = provider.observe(tenant, ctx, http)
            out.extend(classify(provider, tenant, ctx, live))
        except Exception as e:  # one provider's failure is shown, never fatal to the others
            out.append(Entry(tenant.slug, provider.name, error=describe_error(e)))
    return out


def inventory(tenants: Sequence[Tenant], providers: Sequence[Provider], ctx: ProviderContext, http: Http, *,
              workers: int) -> list[Entry]:
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tenants) or 1))) as pool:
        found = [e for es in pool.map(lambda t: observe_tenant(t, providers, ctx, http), tenants) for e in es]
    return sorted(found, key=lambda e: (e.tenant, e.provider, e.address))


def _collect(c: Context, tenant: list[str] | None, provider: list[str] | None, sandbox: bool) -> list[Entry]:
    with session(c, tenant, provider, sandbox, with_db=False, with_platform=False) as s:
        return inventory([lt.tenant for lt in s.loaded], s.providers, s.ctx, s.http,
                         workers=s.config.limits.tenant_workers)


def _check_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--format")


def render_list(entries: Sequence[Entry]) -> str:
    lines: list[str] = []
    current: tuple[str, str] | None = None
    for e in entries:
        if (e.tenant, e.provider) != current:
            current = (e.tenant, e.provider)
            lines.append(f"{e.tenant} / {e.provider}")
        if e.error is not None:
            lines.append(f"  x could not observe: {e.error}")
            continue
        rid = f"  id {e.remote_id}" if e.remote_id else ""
        if e.owned:
            lines.append(f"  owned    {e.address}{rid}")
        else:
            lines.append(f"  foreign  {e.address}{rid}: {e.reason}")
    owned = sum(1 for e in entries if e.error is None and e.owned)
    foreign = sum(1 for e in entries if e.error is None and not e.owned)
    errors = sum(1 for e in entries if e.error is not None)
    lines.append(f"{owned} owned, {foreign} foreign"
                 + (f", {errors} provider(s) could not be observed" if errors else ""))
    return "\n".join(lines)


def render_show(e: Entry) -> str:
    lines = [e.address, f"  tenant    {e.tenant}", f"  provider  {e.provider}", f"  kind      {e.kind}",
             f"  id        {e.remote_id or '(none)'}",
             f"  owned     {'yes' if e.owned else 'no: ' + (e.reason or '')}", "  attributes"]
    for k, v in sorted(e.attrs.items()):
        shown = f"(sensitive) #{v['fingerprint']}" if isinstance(v, dict) and v.get("sensitive") is True \
            else "(none)" if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)
        lines.append(f"    {k} = {shown}")
    return "\n".join(lines)


@state_app.command("list")
def list_(
    ctx: typer.Context,
    *,
    tenant: TenantOpt = None,
    provider: ProviderOpt = None,
    fmt: Annotated[Literal["text", "json"], typer.Option("--format", help="Output format.")] = "text",
    sandbox: SandboxOpt = False,
) -> None:
    """List every live resource tenantctl observed, per tenant and provider: owned and foreign.

    Exit 0, or 1 when a provider could not be observed. Reads only: no provider is ever written to.
    """
    c: Context = ctx.obj
    _check_format(fmt)
    entries = _collect(c, tenant, provider, sandbox)
    if fmt == "json":
        c.echo(REDACTOR.scrub(json.dumps([e.as_json() for e in entries], indent=2)))
    else:
        c.echo(render_list(entries))
    raise typer.Exit(1 if any(e.error is not None for e in entries) else 0)


def tenant_of(address: str) -> str:
    """`nuki.keypad_code[acme/17010001/maria]` → `acme`; raises ValueError for anything else."""
    head, sep, rest = address.partition("[")
    if not sep or not rest.endswith("]") or "." not in head:
        raise ValueError(f"not a resource address: {address!r} (like nuki.keypad_code[acme/17010001/maria])")
    return rest[:-1].split("/", 1)[0]


def provider_of(address: str) -> str:
    return address.split(".", 1)[0]


@state_app.command("show")
def show(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="A resource address, as `state list` prints it.")],
    *,
    fmt: Annotated[Literal["text", "json"], typer.Option("--format", help="Output format.")] = "text",
    sandbox: SandboxOpt = False,
) -> None:
    """Show one live resource with its attributes (secrets masked, as plans mask them)."""
    c: Context = ctx.obj
    _check_format(fmt)
    try:
        slug = tenant_of(address)
    except ValueError as e:
        raise _fail(c, str(e)) from None
    entries = _collect(c, [slug], [provider_of(address)], sandbox)
    failed = [e for e in entries if e.error is not None]
    found = next((e for e in entries if e.address == address), None)
    if found is None:
        why = f" ({failed[0].provider} could not be observed: {failed[0].error})" if failed else ""
        raise _fail(c, f"no live resource {address}{why}: `tenantctl state list -t {slug}` lists them")
    if fmt == "json":
        c.echo(REDACTOR.scrub(json.dumps(found.as_json(with_attrs=True), indent=2)))
    else:
        c.echo(REDACTOR.scrub(render_show(found)))


def register(app: typer.Typer) -> None:
    app.add_typer(state_app, name="state")
