"""`tenantctl plan | apply | health`: wire tenants, providers, the HTTP client and the database.

Exit codes (Terraform's detailed exit code): plan 0 no changes, 2 changes, 1 error; apply 0 success,
1 any failure. `health` lives in tenantctl/commands/health.py.

Database: every plan and apply is recorded (store.runs). The local SQLite default is migrated
automatically at first use (a fresh checkout just works); any other database (PostgreSQL, shared with the
webhook server) must be migrated explicitly with `tenantctl db upgrade`, as the webhook server requires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import httpx
import typer
from sqlalchemy import Engine, make_url

from reconciler import engine as eng
from reconciler import platform
from reconciler.config import ReconcileConfig, host_of, limits_for, limits_from_env, make_config
from reconciler.errors import ReconcileError, StalePlan
from reconciler.http import HttpClient
from reconciler.plan import (
    Plan,
    PlanFileError,
    SavedPlan,
    check_fresh,
    load_plan,
    safety_violations,
    save_plan,
)
from reconciler.providers.base import Provider, ProviderContext
from reconciler.providers.meta_app import PLATFORM, MetaAppSubscription
from reconciler.providers.registry import PROVIDERS, get_providers
from reconciler.render import (
    plan_document,
    render_markdown,
    render_report,
    render_report_json,
    render_text,
)
from store import locks, migrate, provider_state
from store.engine import make_engine, redact_url
from store.errors import DatabaseNotMigrated, LockHeld, StoreError
from store.locks import default_holder
from tenancy.loader import LoadedTenant
from tenancy.redact import REDACTOR
from tenantctl.adoptions import with_adoptions
from tenantctl.changed import ChangedSinceError, changed_tenants
from tenantctl.commands.sandbox import inprocess_transport
from tenantctl.context import Context
from tenantctl.options import complete_slug
from tenantctl.progress import QuietOpt, showing

TenantOpt = Annotated[list[str] | None,
                      typer.Option("--tenant", "-t", help="Only this tenant (repeatable).",
                                   autocompletion=complete_slug)]
ProviderOpt = Annotated[list[str] | None,
                        typer.Option("--provider", "-p",
                                     help=f"Only this provider (repeatable): {', '.join(PROVIDERS)}.")]
SandboxOpt = Annotated[bool,
                       typer.Option("--sandbox", envvar="TENANTCTL_SANDBOX", help="Use the local sandbox.")]
# --prune: why a flag and not the hint removed. A foreign Nuki webhook (another vendor's, left from a
# migration) keeps receiving every lock event, and removing it is a real cleanup an operator asks for; but
# tenantctl never deletes what it did not make unless asked, per run, in the reviewed plan. So foreign
# resources become deletions only with --prune, they show in the plan first, and only where the provider
# can delete them and they are not people's access (hand-made keypad codes and intercom users are never
# pruned; another app's WhatsApp subscription cannot be).
PruneOpt = Annotated[bool, typer.Option("--prune", help="Also delete foreign resources the plan lists "
                                        "(shown in the plan first; only those the provider can delete).")]


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("apply")(apply)


@dataclass
class Session:
    c: Context
    loaded: list[LoadedTenant]
    providers: list[Provider]
    config: ReconcileConfig
    http: HttpClient
    ctx: ProviderContext
    db: Engine | None
    app: MetaAppSubscription  # the platform-level resource (the Meta app's webhook subscription)
    with_platform: bool  # whole-platform runs carry it; a run limited to some tenants does not


def _fail(c: Context, message: str) -> typer.Exit:
    c.last_error = REDACTOR.scrub(message)
    c.err.print(f"error: {c.last_error}", markup=False)
    return typer.Exit(1)


def open_db(c: Context) -> Engine:
    """The database for commands that record (plan, apply, health): the local SQLite default is created and
    migrated on first use, so a fresh checkout just works; PostgreSQL must be at head (`db upgrade`)."""
    url = c.settings.resolved_database_url
    db = make_engine(url)
    if db.dialect.name == "sqlite":
        migrate.upgrade(db)  # the local default: migrate on first use
    else:
        migrate.require_up_to_date(db)
    return db


def _require_sandbox(c: Context, url: str) -> None:
    """A sandbox nobody started is one clear error naming the URL and the setting, not a row per provider."""
    try:
        httpx.get(url, timeout=3.0, trust_env=False)
    except httpx.TransportError as e:
        raise _fail(c, f"cannot reach the sandbox at {url} ({type(e).__name__}): start it with `tenantctl "
                       "sandbox serve`, or set TENANTCTL_SANDBOX_URL to where it listens (e.g. "
                       "`export TENANTCTL_SANDBOX_URL=http://127.0.0.1:PORT` for `sandbox serve --port PORT`)"
                    ) from None


def read_db(c: Context, *, quiet: bool = False) -> Engine | None:
    """The database for commands that only read (runs, lock, provider-state): never created nor migrated.
    None, after saying "no database yet at <path>: nothing recorded" on stderr (unless `quiet`), when the
    local SQLite file does not exist or holds no schema yet. An outdated schema, or a PostgreSQL database
    without one, exits 1 naming `tenantctl db upgrade`."""
    url = c.settings.resolved_database_url
    where = make_url(url)
    path = where.database if where.get_backend_name() == "sqlite" else None
    if path is not None and path not in ("", ":memory:") and not Path(path).exists():
        _nothing_yet(c, path, quiet)
        return None
    db = make_engine(url)
    try:
        if path is not None and migrate.current_revision(db) is None:
            db.dispose()
            _nothing_yet(c, path, quiet)
            return None
        migrate.require_up_to_date(db)
    except DatabaseNotMigrated as e:
        db.dispose()
        raise _fail(c, f"{e} (database {redact_url(url)})") from None
    return db


def _nothing_yet(c: Context, path: str, quiet: bool) -> None:
    if not quiet:
        c.err.print(f"no database yet at {path}: nothing recorded", markup=False)


@contextlib.contextmanager
def session(c: Context, tenants: Sequence[str] | None, providers: Sequence[str] | None, sandbox: bool, *,
            with_db: bool = True, with_platform: bool | None = None, prune: bool = False) -> Iterator[Session]:
    app = MetaAppSubscription(c.settings.meta_app_id, c.settings.meta_app_token, c.settings.meta_verify_token)
    if with_platform is None:
        with_platform = not tenants
    with_platform = with_platform and app.enabled and (not providers or app.name in providers)
    tenants = [t for t in tenants or () if t != PLATFORM] or None
    result = c.load()
    if not result.ok:
        for f in result.errors:
            if c.data_on_stdout:
                c.err.print(REDACTOR.scrub(f.text()), markup=False)
            else:
                c.echo(f.text())
        raise _fail(c, f"{len(result.errors)} error(s) in the tenant files: run `tenantctl validate`")
    by_slug = result.by_slug()
    unknown = sorted(set(tenants or ()) - set(by_slug))
    if unknown:
        raise _fail(c, f"no such tenant(s) in {c.tenants_dir}: {', '.join(unknown)}")
    loaded = [by_slug[s] for s in sorted(set(tenants))] if tenants else list(result.tenants)
    try:
        chosen: list[Provider] = list(get_providers(list(providers) if providers else None))
    except (KeyError, ValueError) as e:
        raise _fail(c, f"unknown provider: {e}") from None
    sandbox = sandbox or c.settings.sandbox
    limits = limits_from_env(limits_for(sandbox=sandbox), os.environ)
    try:
        config = make_config([lt.tenant for lt in loaded], sandbox=sandbox, sandbox_url=c.settings.sandbox_url,
                             domain=c.settings.domain, limits=limits)
    except ReconcileError as e:
        raise _fail(c, str(e)) from None
    if sandbox:
        # Loud, on stderr (stdout may be a JSON plan): every real token goes to the local sandbox instead.
        c.err.print(f"SANDBOX MODE: talking only to the local sandbox at {host_of(c.settings.sandbox_url)} "
                    "(TENANTCTL_SANDBOX / --sandbox); no real provider is contacted.", markup=False)
    db: Engine | None = None
    try:
        db = open_db(c) if with_db else None
        if db is not None:
            locks.reap_stale(db)  # a run whose process died is marked aborted whenever anyone looks
        evidence = eng.last_verified(db, [lt.tenant for lt in loaded]) if db is not None else {}
        if db is not None:
            loaded = with_provider_state(db, loaded)
    except (StoreError, provider_state.StateCryptoError) as e:
        raise _fail(c, str(e)) from None
    with inprocess_transport() as transport, HttpClient(config, transport=transport) as http:
        if sandbox and transport is None:
            _require_sandbox(c, c.settings.sandbox_url)
        try:
            ctx = with_adoptions(eng.make_context(config, evidence, prune=prune), c.settings.state_dir)
            yield Session(c, loaded, chosen, config, http, ctx, db, app, with_platform)  # ctx: tenantctl adopt
        finally:
            if db is not None:
                db.dispose()


def with_provider_state(db: Engine, loaded: Sequence[LoadedTenant]) -> list[LoadedTenant]:
    """The tenants from git with what providers issued once (store.provider_state) put in place."""
    values = provider_state.decrypt_all(db, provider_state.identities_from_env(),
                                        [lt.tenant.slug for lt in loaded])
    for current, previous in values.values():
        REDACTOR.add(current, previous)
    return [dataclasses.replace(lt, tenant=provider_state.overlay(lt.tenant, values)) for lt in loaded]


def _plan(s: Session) -> Plan:
    with showing(s.c.quiet, s.http) as progress:
        p = eng.make_plan([lt.tenant for lt in s.loaded], s.providers, s.ctx, s.http,
                          workers=s.config.limits.tenant_workers, sandbox=s.config.sandbox, progress=progress)
    return platform.with_platform(p, platform.plan_items(s.app, s.ctx, s.http)) if s.with_platform else p


def _show(s: Session, text: str) -> None:
    s.c.echo(text)


def plan(
    ctx: typer.Context,
    *,
    tenant: TenantOpt = None,
    provider: ProviderOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Save the plan (JSON) for `apply FILE`.")] = None,
    fmt: Annotated[Literal["text", "json", "markdown"], typer.Option("--format", help="Output format.")] = "text",
    changed_since: Annotated[str | None, typer.Option(
        "--changed-since", metavar="REV",
        help="Only the tenants whose files changed since git REV (merge base); every tenant when "
             ".sops.yaml, the tool or the workflows changed.")] = None,
    sandbox: SandboxOpt = False,
    prune: PruneOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show what apply would change. Exit 0: no changes, 2: changes, 1: error."""
    c: Context = ctx.obj
    c.quiet = quiet
    if fmt not in ("text", "json", "markdown"):
        raise typer.BadParameter("use text, json or markdown", param_hint="--format")
    if changed_since is not None:
        picked = _changed(c, changed_since, tenant)
        if picked is not None and not picked:
            _show_empty(c, fmt, changed_since, out, sandbox or c.settings.sandbox)
            raise typer.Exit(0)
        tenant = picked
    with session(c, tenant, provider, sandbox, prune=prune) as s:
        p = _plan(s)
        if s.db is not None:
            eng.record_plan(s.db, p, eng.actor())
        safety = _safety(s, p)
        doc = {**plan_document(p), "safety": safety}
        if out is not None:
            save_plan(doc, out)
        if fmt == "json":
            _show(s, REDACTOR.scrub(json.dumps(doc, indent=2)))
        elif fmt == "markdown":
            _show(s, render_markdown(p) + "\n" + _safety_line(safety, markdown=True))
        else:
            _show(s, render_text(p, colour=c.colour))
            _show(s, _safety_line(safety, markdown=False))
            if out is not None:
                _show(s, f"Saved the plan to {out}: apply exactly it with `tenantctl apply {out}`.")
    raise typer.Exit(1 if p.errors else 2 if p.has_changes else 0)


def _changed(c: Context, since: str, chosen: Sequence[str] | None) -> list[str] | None:
    """The tenants to plan: those changed since SINCE (within CHOSEN); None: every tenant (or CHOSEN)."""
    try:
        changed = changed_tenants(c.tenants_dir, since)
    except ChangedSinceError as e:
        raise _fail(c, str(e)) from None
    if changed is None:  # the tool, .sops.yaml or the workflow changed: every tenant
        return list(chosen) if chosen else None
    present = {p.stem for p in c.tenants_dir.glob("*.yaml") if p.name != ".sops.yaml"}
    picked = sorted(changed & present)
    return [t for t in picked if not chosen or t in chosen]


def _show_empty(c: Context, fmt: str, since: str, out: Path | None, sandbox: bool) -> None:
    """No tenant changed: an empty plan (saved too, so the merge of such a change applies nothing)."""
    doc = {**plan_document(Plan(items=(), sandbox=sandbox)), "changed_since": since,
           "safety": {"needs_force": False, "violations": []}}
    if out is not None:
        save_plan(doc, out)
    if fmt == "json":
        c.echo(json.dumps(doc, indent=2))
    else:
        c.echo(f"No tenant file changed since {since}: nothing to plan.")


def _safety(s: Session, p: Plan) -> dict[str, object]:
    """The apply-time safety limit, computed now: a plan that will need --force says so in every format."""
    share, minimum = s.config.limits.safety_share, s.config.limits.safety_min_changes
    violations = safety_violations(p, share=share, min_changes=minimum)
    return {"needs_force": bool(violations), "share": share, "min_changes": minimum,
            "violations": [{"tenant": v.tenant, "rewrites": v.rewrites, "existing": v.existing, "text": str(v)}
                           for v in violations]}


def _safety_line(safety: Mapping[str, object], *, markdown: bool) -> str:
    violations = safety["violations"]
    assert isinstance(violations, list)  # noqa: S101  (built by _safety)
    limit = (f"over {float(str(safety['share'])):.0%} of a tenant's live resources and more than "
             f"{safety['min_changes']} updates/deletes")
    if not violations:
        return f"Safety limit ({limit}): within."
    names = "; ".join(str(v["text"]) for v in violations)
    if markdown:
        return (f"**Needs --force:** this plan passes the safety limit ({limit}): {_md(names)}. "
                "Applying it needs the `tenantctl:force` label (CI) or `apply --force`.")
    return f"Needs --force: this plan passes the safety limit ({limit}): {names}."


def _md(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


def apply(
    ctx: typer.Context,
    file: Annotated[Path | None,
                    typer.Argument(help="A plan saved by `plan --out`: apply exactly it.")] = None,
    *,
    auto_approve: Annotated[bool,
                            typer.Option("--auto-approve", help="Do not ask for confirmation.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Allow plans over the safety limits.")] = False,
    tenant: TenantOpt = None,
    provider: ProviderOpt = None,
    sandbox: SandboxOpt = False,
    prune: PruneOpt = False,
    fmt: Annotated[Literal["text", "json"], typer.Option("--format", help="The report's format (json needs "
                                                 "--auto-approve or a plan file).")] = "text",
    quiet: QuietOpt = False,
) -> None:
    """Apply changes: a saved plan (refused if the live state changed since), or plan, confirm, apply."""
    c: Context = ctx.obj
    c.quiet = quiet
    if fmt == "json" and file is None and not auto_approve:
        raise _fail(c, "--format json prints no plan to confirm: give --auto-approve or a plan file")
    if file is None and not auto_approve and not sys.stdin.isatty():
        raise _fail(c, "no terminal to confirm on: pass --auto-approve, or apply a reviewed plan "
                    "(`tenantctl plan --out plan.json`, then `tenantctl apply plan.json`); nothing was applied")
    saved: SavedPlan | None = None
    if file is not None:
        if tenant or provider or prune:
            raise _fail(c, "a saved plan already names its tenants, providers and --prune: drop "
                        "--tenant/--provider/--prune")
        try:
            saved = load_plan(file)
        except PlanFileError as e:
            raise _fail(c, str(e)) from None
        if not saved.items:  # a reviewed change that touched no tenant (plan --changed-since)
            c.echo(f"The plan {file} covers no tenant: nothing to apply.")
            raise typer.Exit(0)
        tenant, provider, sandbox, prune = saved.tenants, saved.providers, saved.sandbox, saved.prune
    with session(c, tenant, provider, sandbox, prune=prune,
                 with_platform=PLATFORM in saved.tenants if saved is not None else None) as s:
        assert s.db is not None  # noqa: S101  (session opens it)
        code = _apply(s, s.db, saved, auto_approve=auto_approve, force=force, as_json=fmt == "json")
    raise typer.Exit(code)


def _apply(s: Session, db: Engine, saved: SavedPlan | None, *, auto_approve: bool, force: bool,
           as_json: bool = False) -> int:
    c = s.c
    slugs = [lt.tenant.slug for lt in s.loaded]
    who = eng.actor()
    try:
        holder = default_holder()
        with eng.tenant_locks(db, slugs, holder) as took_over:
            for message in took_over:
                c.err.print(REDACTOR.scrub(f"warning: {message}"), markup=False)
            p = _plan(s)
            if saved is not None:
                check_fresh(saved, p)
            if not as_json:
                _show(s, render_text(p, colour=c.colour))
            if not p.writes:
                if as_json:
                    _show(s, render_report_json(eng.apply_plan(p, {}, {}, s.ctx, s.http, workers=1)))
                else:
                    _show(s, "No changes to apply.")
                return 1 if p.errors else 0
            violations = safety_violations(p, share=s.config.limits.safety_share,
                                           min_changes=s.config.limits.safety_min_changes)
            if violations and not force:
                raise _fail(c, "the plan rewrites too much of a tenant (over "
                            f"{s.config.limits.safety_share:.0%} and more than "
                            f"{s.config.limits.safety_min_changes} updates/deletes): "
                            + "; ".join(map(str, violations)) + ". Review it, then apply with --force.")
            approved = saved is not None or auto_approve  # applying a reviewed plan file is the approval
            if not approved and not typer.confirm("Apply these changes?", default=False):
                raise _fail(c, "cancelled: nothing was applied")
            run_id = eng.start_apply(db, who, p.tenants, p.checksum)
            locks.set_run(db, slugs, holder, run_id)  # `lock list` shows which run holds a tenant
            try:
                done = platform.apply_platform(p, s.app, s.ctx, s.http)
                with showing(c.quiet, s.http) as progress:
                    report = eng.apply_plan(platform.tenants_part(p),
                                            {lt.tenant.slug: lt.tenant for lt in s.loaded},
                                            {pr.name: pr for pr in s.providers}, s.ctx, s.http,
                                            workers=s.config.limits.tenant_workers,
                                            write_back=_writer(s.loaded, db, who), progress=progress)
                report = platform.merge_report(report, done, p)
            except BaseException as e:
                eng.finish_apply(db, run_id, None, error=eng.describe_error(e))
                raise
            eng.finish_apply(db, run_id, report)
            _show(s, render_report_json(report) if as_json else render_report(report))
            return 0 if report.ok else 1
    except LockHeld as e:
        raise _fail(c, f"{e}; nothing was applied. If that run is dead: tenantctl lock release {e.tenant}") \
            from None
    except StalePlan as e:
        raise _fail(c, f"stale plan: {e}") from None
    except ReconcileError as e:
        raise _fail(c, str(e)) from None


def _writer(loaded: Sequence[LoadedTenant], db: Engine, who: str) -> eng.WriteBack:
    """Values a provider returns go to the provider state store (encrypted to the tenant's recipients),
    not into the tenant file: CI's merge job has no way to commit a file, the database outlives it."""
    by_slug = {lt.tenant.slug: lt for lt in loaded}

    def write(slug: str, path: tuple[str | int, ...], value: str) -> str:
        lt = by_slug[slug]
        dotted = ".".join(str(p) for p in path)
        recipients = provider_state.recipients_for(lt.path.parent, slug)
        provider_state.put(db, slug, str(path[0]), dotted, value, recipients, who)
        return f"{dotted} in the provider state store (tenantctl provider-state list)"

    return write

