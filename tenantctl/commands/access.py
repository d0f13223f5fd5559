"""`tenantctl access matrix | rotate | qr`: who can open which door, new codes, QR images for 2N.

Exit codes: 0 done, 1 an error (bad input, an invalid tenant file, a refused output path).
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import yaml

from reconciler.access import access_diff, matrix, matrix_json, matrix_markdown, matrix_text, open_at, plain
from reconciler.access_plan import access_changes
from reconciler.providers.base import ProviderContext
from reconciler.render import change_lines
from tenancy.access_codes import FIELDS, file_keypad_codes, new_code, new_keypad_code
from tenancy.access_time import label as label_of
from tenancy.access_time import parse_duration, zone_name
from tenancy.fingerprint import tenant_key
from tenancy.loader import LoadedTenant, LoadResult
from tenancy.model import Tenant
from tenancy.sops import SopsError, set_value
from tenancy.sops_config import SOPS_CONFIG_NAME
from tenantctl.commands.reconcile import SandboxOpt
from tenantctl.context import Context
from tenantctl.options import TextJsonOrMarkdown, complete_slug

access_app = typer.Typer(name="access", help="Team access: who can open what, codes, QR codes.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(access_app)


def _fail(c: Context, message: str) -> NoReturn:
    c.err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def _valid(c: Context, result: LoadResult) -> None:
    if not result.ok:
        for f in result.errors:
            c.echo(f.text())
        c.err.print(f"error: {len(result.errors)} error(s) in the tenant files: run `tenantctl validate`")
        raise typer.Exit(1)


def _tenants(c: Context, slug: str | None) -> list[LoadedTenant]:
    if slug is None:
        result = c.load()
        _valid(c, result)
        return result.tenants
    path = c.tenants_dir / f"{slug}.yaml"
    if not path.is_file():
        c.err.print(f"error: no tenant {slug!r} in {c.tenants_dir}", markup=False)
        raise typer.Exit(1)
    result = c.load([path])
    _valid(c, result)
    return result.tenants


@access_app.command("matrix")
def matrix_cmd(
    ctx: typer.Context,
    slug: Annotated[str | None, typer.Argument(help="One tenant (default: all).", autocompletion=complete_slug)] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help='Only who can open at this local moment, e.g. "2026-12-24 22:00" (each property\'s zone).',
    )] = None,
    fmt: TextJsonOrMarkdown = "text",
) -> None:
    """Per property and door (Nuki lock, 2N intercom): the teammates who can open it, in local time."""
    c: Context = ctx.obj
    moment = None
    if at is not None:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            _fail(c, '--at: give a local date and time like "2026-12-24 22:00"')
        if moment.tzinfo is not None:
            _fail(c, "--at: give local time without an offset: each door is read in its own zone")
    rows = [r for lt in _tenants(c, slug) for r in matrix(lt.tenant)]
    if moment is not None:
        rows = open_at(rows, moment)
    if fmt == "json":
        c.echo(json.dumps({"version": 1, "at": moment.isoformat() if moment else None,
                           "doors": matrix_json(rows)}, indent=2, ensure_ascii=False))
    elif fmt == "markdown":
        c.echo(matrix_markdown(rows))
    else:
        if moment is not None:
            c.echo(f"Who can open at {moment:%Y-%m-%d %H:%M} (local time of each property):")
        c.echo(matrix_text(rows, moment) or "no doors")


# Rotate ----------------------------------------------------------------------------------------------
LABELS = {"keypad": "keypad code", "pin": "2N PIN", "qr": "2N QR code"}


def _teammate_index(c: Context, lt: LoadedTenant, teammate: str) -> int:
    found = [i for i, tm in enumerate(lt.tenant.teammates) if tm.key == teammate]
    if not found:
        keys = ", ".join(tm.key for tm in lt.tenant.teammates) or "(none)"
        _fail(c, f"no teammate {teammate!r} in {lt.path}: use one of {keys}")
    return found[0]


def _encrypts(path: Path, field: str) -> bool:
    """Does the file's own SOPS rule (the one `sops set` follows) encrypt `field`?"""
    doc = yaml.safe_load(path.read_text())
    rule = (doc or {}).get("sops", {}).get("encrypted_regex") if isinstance(doc, dict) else None
    return isinstance(rule, str) and re.search(rule, field) is not None


def _doors_for(t: Tenant, teammate: str, what: str) -> bool:
    tm = next(x for x in t.teammates if x.key == teammate)
    props = [p for k in tm.properties if (p := t.property(k)) is not None]
    if what == "keypad":
        return t.nuki is not None and any(p.nuki_lock_ids for p in props)
    return any(p.intercom is not None for p in props)


def _write_codes(c: Context, lt: LoadedTenant, index: int, kinds: list[str]) -> tuple[Tenant, dict[str, str]]:
    """New codes for `kinds`, written encrypted with `sops set`; returns the tenant as re-read."""
    tm = lt.tenant.teammates[index]
    for what in kinds:
        if not _doors_for(lt.tenant, tm.key, what):
            _fail(c, f"{tm.key} opens no {'Nuki lock' if what == 'keypad' else '2N intercom'}: "
                     f"a {LABELS[what]} would open nothing (add the property to their list first)")
        if not _encrypts(lt.path, FIELDS[what]):
            _fail(c, f"{lt.path}: its SOPS rule (sops.encrypted_regex) does not encrypt {FIELDS[what]}: the code "
                     "would be written in plaintext. Re-encrypt the file with the current .sops.yaml first "
                     "(`sops decrypt FILE > tmp && sops encrypt --filename-override FILE tmp > FILE`)")
    config = lt.path.parent / SOPS_CONFIG_NAME
    made: dict[str, str] = {}
    tenant = lt.tenant
    for what in kinds:
        value = new_code(tenant, tm.key, what)
        try:
            set_value(lt.path, config, ["teammates", index, "access", FIELDS[what]], value)
        except SopsError as e:
            _fail(c, f"{lt.path}: sops could not write the new {LABELS[what]}: {e}")
        made[what] = value
        reread = c.load([lt.path])
        _valid(c, reread)
        tenant = reread.tenants[0].tenant
    return tenant, made


@access_app.command("rotate")
def rotate(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant.", autocompletion=complete_slug)],
    teammate: Annotated[str, typer.Argument(help="The teammate's key.")],
    keypad: Annotated[bool, typer.Option("--keypad", help="A new Nuki keypad code.")] = False,
    pin: Annotated[bool, typer.Option("--pin", help="A new 2N PIN.")] = False,
    qr: Annotated[bool, typer.Option("--qr", help="A new 2N QR code.")] = False,
    reveal: Annotated[bool, typer.Option("--reveal", help="Print the new codes once (to a terminal only).")] = False,
) -> None:
    """Generate new codes for a teammate (default: every code they hold), write them encrypted, show the plan."""
    c: Context = ctx.obj
    if reveal and not sys.stdout.isatty():
        _fail(c, "--reveal prints codes to a terminal only, and stdout is not one: nothing was changed")
    [lt] = _tenants(c, slug)
    index = _teammate_index(c, lt, teammate)
    access = lt.tenant.teammates[index].access
    kinds = [k for k, on in (("keypad", keypad), ("pin", pin), ("qr", qr)) if on] or \
        [k for k in FIELDS if access is not None and getattr(access, FIELDS[k]) is not None]
    if not kinds:
        _fail(c, f"{teammate} holds no code yet: say which to generate (--keypad, --pin, --qr)")
    before = lt.tenant
    after, made = _write_codes(c, lt, index, kinds)
    c.echo(f"{teammate}: new {', '.join(LABELS[k] for k in made)} written to {lt.path} (encrypted)")
    _show_access_plan(c, before, after)
    if reveal:
        # Straight to the terminal: the redactor would rightly mask a value it now knows.
        sys.stdout.write("".join(f"{LABELS[k]}: {v}\n" for k, v in made.items()))
        sys.stdout.flush()


def _show_access_plan(c: Context, before: Tenant, after: Tenant) -> None:
    changes = access_changes(before, after, ProviderContext(domain=c.settings.domain, base_urls={}))
    if not changes:
        c.echo("no access changes")
        return
    key = tenant_key(after)
    c.echo("the next plan (with the devices in sync) will show:")
    for ch in changes:
        c.echo("\n".join("  " + line for line in change_lines(ch, key)))
    for line in access_diff(changes):
        c.echo(f"  access: {line}")
    c.echo("run `tenantctl plan` to check against the devices, then `tenantctl apply`")


# Maintenance -----------------------------------------------------------------------------------------
@access_app.command("maintenance")
def maintenance(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant.", autocompletion=complete_slug)],
    prop_key: Annotated[str, typer.Argument(metavar="PROPERTY", help="The property's key.")],
    span: Annotated[str, typer.Option("--for", help="How long it opens: 2h, 90m, 1d, 1h30m (at most 30 days).")],
    name: Annotated[str, typer.Option("--name", help="Shown on the lock as tc:mnt:NAME.")] = "maintenance",
    sandbox: SandboxOpt = False,
) -> None:
    """Issue a temporary keypad code on the property's Nuki locks now; print it once (terminal only)."""
    from reconciler.errors import ReconcileError
    from reconciler.providers.nuki import NukiProvider
    from tenantctl.commands.reconcile import session

    c: Context = ctx.obj
    if not sys.stdout.isatty():
        _fail(c, "the code is printed once, to a terminal only, and stdout is not one: nothing was issued")
    try:
        length = parse_duration(span)
    except ValueError as e:
        _fail(c, f"--for: {e}")
    label = plain(name.strip())[:24]
    if not label:
        _fail(c, "--name: give a name to show on the lock")
    with session(c, [slug], ["nuki"], sandbox, with_db=False) as s:
        tenant = s.loaded[0].tenant
        prop = tenant.property(prop_key)
        if prop is None or not prop.nuki_lock_ids or tenant.nuki is None:
            _fail(c, f"{slug}: {prop_key!r} is no property with Nuki locks "
                     f"(properties: {', '.join(p.key for p in tenant.properties) or 'none'})")
        provider = NukiProvider()
        try:
            taken = file_keypad_codes(tenant)
            for lock in prop.nuki_lock_ids:
                taken |= provider.live_codes(tenant, s.ctx, s.http, lock)
        except ReconcileError as e:
            _fail(c, f"could not read the locks' codes, nothing was issued: {e}")
        code = new_keypad_code(taken)
        until = datetime.now(UTC) + length
        issued, failed = [], []
        for lock in prop.nuki_lock_ids:
            try:
                provider.issue_maintenance_code(tenant, s.ctx, s.http, lock, label, code, until)
                issued.append(lock)
            except ReconcileError as e:
                failed.append(f"lock {lock}: {e}")
    zone_id = zone_name(tenant, prop)
    for line in failed:
        c.err.print(f"error: {line}", markup=False)
    if issued:
        c.echo(f"tc:mnt:{label} on {prop.key}, lock(s) {', '.join(map(str, issued))}, valid until "
               f"{label_of(until, zone_id)}; the first apply after that removes it")
        # Straight to the terminal, once: the redactor would mask a value it knows.
        sys.stdout.write(f"maintenance code: {code}\n")
        sys.stdout.flush()
    if failed:
        raise typer.Exit(1)


# QR --------------------------------------------------------------------------------------------------
def repositories(*starts: Path) -> list[Path]:
    """The git work trees holding any of `starts` (a directory with `.git` in it or above it)."""
    found: list[Path] = []
    for start in starts:
        here = start.resolve()
        for d in (here, *here.parents):
            if (d / ".git").exists():
                found.append(d)
                break
    return found


def _inside(target: Path, roots: list[Path]) -> Path | None:
    return next((r for r in roots if r == target or r in target.parents), None)


@access_app.command("qr")
def qr_cmd(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant.", autocompletion=complete_slug)],
    teammate: Annotated[str, typer.Argument(help="The teammate's key.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write: NAME.svg or NAME.png, outside the repository.")],
) -> None:
    """Render the teammate's 2N QR code (access.intercom_qr) with their name and property under it."""
    from tenancy.access_qr import write_qr  # segno and Pillow only when an image is made

    c: Context = ctx.obj
    target = out.expanduser().resolve()
    if target.suffix.lower() not in (".svg", ".png"):
        _fail(c, f"--out {out}: use a .svg or .png file name")
    # Any git work tree, not only this one: walk up from where the image would land.
    repo = _inside(target, repositories(target.parent, Path.cwd(), c.tenants_dir))
    if repo is not None:
        _fail(c, f"--out {out}: inside the repository (git work tree) {repo}: the image opens a door and "
                 "must never be "
                 "committed; write it elsewhere (e.g. ~/Desktop/maria.png)")
    if not target.parent.is_dir():
        _fail(c, f"--out {out}: no directory {target.parent}")
    [lt] = _tenants(c, slug)
    tm = lt.tenant.teammates[_teammate_index(c, lt, teammate)]
    code = tm.access.intercom_qr if tm.access is not None else None
    if code is None:
        _fail(c, f"{teammate} has no 2N QR code: generate one with `tenantctl access rotate {slug} {teammate} --qr`")
    places = [p.name for k in tm.properties if (p := lt.tenant.property(k)) is not None and p.intercom]
    write_qr(target, code.get_secret_value(), [plain(tm.name), plain(", ".join(places))])
    c.echo(f"wrote {target} (mode 0600): {teammate}'s 2N QR code for {', '.join(places)}; "
           "send it privately and delete it after")


__all__ = ["access_app", "register", "repositories"]
