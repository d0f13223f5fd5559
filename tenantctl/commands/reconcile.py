"""`tenantctl plan | apply | health`: wire tenants, providers, the HTTP client and the database.

Exit codes (Terraform's detailed exit code): plan 0 no changes, 2 changes, 1 error; apply 0 success,
1 any failure; health 0 all checks pass, 1 otherwise.

Database: every plan and apply is recorded (store.runs). The local SQLite default is migrated
automatically at first use (a fresh checkout just works); any other database (PostgreSQL, shared with the
webhook server) must be migrated explicitly with `tenantctl db upgrade`, as the webhook server requires.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table
from sqlalchemy import Engine

from reconciler import engine as eng
from reconciler import platform
from reconciler.config import ReconcileConfig, limits_for, limits_from_env, make_config
from reconciler.errors import ReconcileError, StalePlan
from reconciler.health import all_ok, run_health
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
from reconciler.render import plan_document, render_json, render_markdown, render_report, render_text
from store import migrate
from store.engine import make_engine
from store.errors import LockHeld, StoreError
from store.locks import default_holder
from tenancy.loader import LoadedTenant
from tenancy.redact import REDACTOR
from tenancy.sops import set_value
from tenancy.sops_config import SOPS_CONFIG_NAME
from tenantctl.adoptions import with_adoptions
from tenantctl.commands.sandbox import inprocess_transport
from tenantctl.context import Context
from tenantctl.progress import QuietOpt, showing

TenantOpt = Annotated[list[str] | None,
                      typer.Option("--tenant", "-t", help="Only this tenant (repeatable).")]
ProviderOpt = Annotated[list[str] | None,
                        typer.Option("--provider", "-p",
                                     help=f"Only this provider (repeatable): {', '.join(PROVIDERS)}.")]
SandboxOpt = Annotated[bool,
                       typer.Option("--sandbox", envvar="TENANTCTL_SANDBOX", help="Use the local sandbox.")]


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("apply")(apply)
    app.command("health")(health)


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
    c.err.print(REDACTOR.scrub(f"error: {message}"), markup=False)
    return typer.Exit(1)


def open_db(c: Context) -> Engine:
    url = c.settings.resolved_database_url
    db = make_engine(url)
    if db.dialect.name == "sqlite":
        migrate.upgrade(db)  # the local default: migrate on first use
    else:
        migrate.require_up_to_date(db)
    return db


@contextlib.contextmanager
def session(c: Context, tenants: Sequence[str] | None, providers: Sequence[str] | None, sandbox: bool, *,
            with_db: bool = True, with_platform: bool | None = None) -> Iterator[Session]:
    app = MetaAppSubscription(c.settings.meta_app_id, c.settings.meta_app_token, c.settings.meta_verify_token)
    if with_platform is None:
        with_platform = not tenants
    with_platform = with_platform and app.enabled and (not providers or app.name in providers)
    tenants = [t for t in tenants or () if t != PLATFORM] or None
    result = c.load()
    if not result.ok:
        for f in result.errors:
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
    config = make_config([lt.tenant for lt in loaded], sandbox=sandbox, sandbox_url=c.settings.sandbox_url,
                         domain=c.settings.domain, limits=limits)
    db: Engine | None = None
    try:
        db = open_db(c) if with_db else None
        evidence = eng.last_verified(db, [lt.tenant for lt in loaded]) if db is not None else {}
    except StoreError as e:
        raise _fail(c, str(e)) from None
    with inprocess_transport() as transport, HttpClient(config, transport=transport) as http:
        try:
            ctx = with_adoptions(eng.make_context(config, evidence), c.settings.state_dir)  # tenantctl adopt
            yield Session(c, loaded, chosen, config, http, ctx, db, app, with_platform)
        finally:
            if db is not None:
                db.dispose()


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
    sandbox: SandboxOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show what apply would change. Exit 0: no changes, 2: changes, 1: error."""
    c: Context = ctx.obj
    c.quiet = quiet
    if fmt not in ("text", "json", "markdown"):
        raise typer.BadParameter("use text, json or markdown", param_hint="--format")
    with session(c, tenant, provider, sandbox) as s:
        p = _plan(s)
        if s.db is not None:
            eng.record_plan(s.db, p, eng.actor())
        if out is not None:
            save_plan(plan_document(p), out)
        if fmt == "json":
            _show(s, render_json(p))
        elif fmt == "markdown":
            _show(s, render_markdown(p))
        else:
            _show(s, render_text(p, colour=sys.stdout.isatty()))
            if out is not None:
                _show(s, f"Saved the plan to {out}: apply exactly it with `tenantctl apply {out}`.")
    raise typer.Exit(1 if p.errors else 2 if p.has_changes else 0)


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
    quiet: QuietOpt = False,
) -> None:
    """Apply changes: a saved plan (refused if the live state changed since), or plan, confirm, apply."""
    c: Context = ctx.obj
    c.quiet = quiet
    saved: SavedPlan | None = None
    if file is not None:
        if tenant or provider:
            raise _fail(c, "a saved plan already names its tenants and providers: drop --tenant/--provider")
        try:
            saved = load_plan(file)
        except PlanFileError as e:
            raise _fail(c, str(e)) from None
        tenant, provider, sandbox = saved.tenants, saved.providers, saved.sandbox
    with session(c, tenant, provider, sandbox,
                 with_platform=PLATFORM in saved.tenants if saved is not None else None) as s:
        assert s.db is not None  # noqa: S101  (session opens it)
        code = _apply(s, s.db, saved, auto_approve=auto_approve, force=force)
    raise typer.Exit(code)


def _apply(s: Session, db: Engine, saved: SavedPlan | None, *, auto_approve: bool, force: bool) -> int:
    c = s.c
    slugs = [lt.tenant.slug for lt in s.loaded]
    who = eng.actor()
    try:
        with eng.tenant_locks(db, slugs, default_holder()):
            p = _plan(s)
            if saved is not None:
                check_fresh(saved, p)
            _show(s, render_text(p, colour=sys.stdout.isatty()))
            if not p.writes:
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
            try:
                done = platform.apply_platform(p, s.app, s.ctx, s.http)
                with showing(c.quiet, s.http) as progress:
                    report = eng.apply_plan(platform.tenants_part(p),
                                            {lt.tenant.slug: lt.tenant for lt in s.loaded},
                                            {pr.name: pr for pr in s.providers}, s.ctx, s.http,
                                            workers=s.config.limits.tenant_workers, write_back=_writer(s.loaded),
                                            progress=progress)
                report = platform.merge_report(report, done, p)
            except BaseException as e:
                eng.finish_apply(db, run_id, None, error=eng.describe_error(e))
                raise
            eng.finish_apply(db, run_id, report)
            _show(s, render_report(report))
            return 0 if report.ok else 1
    except LockHeld as e:
        raise _fail(c, f"{e}; nothing was applied. If that run is dead: tenantctl lock release {e.tenant}") \
            from None
    except StalePlan as e:
        raise _fail(c, f"stale plan: {e}") from None
    except ReconcileError as e:
        raise _fail(c, str(e)) from None


def _writer(loaded: Sequence[LoadedTenant]) -> eng.WriteBack:
    by_slug = {lt.tenant.slug: lt for lt in loaded}

    def write(slug: str, path: tuple[str | int, ...], value: str) -> str:
        lt = by_slug[slug]
        target = lt.path.resolve()  # sops runs in the config's directory: relative paths would break
        set_value(target, target.parent / SOPS_CONFIG_NAME, list(path), value)
        return f"{'.'.join(str(p) for p in path)} in {lt.path}"

    return write


def health(
    ctx: typer.Context,
    *,
    tenant: TenantOpt = None,
    provider: ProviderOpt = None,
    sandbox: SandboxOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the providers' read-only health checks; exit 1 if any fails."""
    c: Context = ctx.obj
    c.quiet = quiet
    # The database is read for evidence only: a verified Hospitable webhook marks its manual step done.
    with session(c, tenant, provider, sandbox) as s:
        with showing(c.quiet, s.http) as progress:
            checks = run_health([lt.tenant for lt in s.loaded], s.providers, s.ctx, s.http,
                                workers=s.config.limits.tenant_workers, progress=progress)
        if s.with_platform:
            checks = [*s.app.health(s.ctx, s.http), *checks]
    table = Table(title="Health")
    for col in ("tenant", "provider", "check", "ok", "detail"):
        table.add_column(col)
    for ch in checks:
        table.add_row(ch.tenant, ch.provider, ch.name, "ok" if ch.ok else "FAIL", REDACTOR.scrub(ch.detail))
    c.out.print(table)
    failed = sum(1 for ch in checks if not ch.ok)
    c.echo(f"{len(checks)} check(s), {failed} failed")
    raise typer.Exit(0 if all_ok(checks) else 1)
