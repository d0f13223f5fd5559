"""`tenantctl adopt ADDRESS` (alias `import`): take over a foreign live resource that matches the file.

Design: `adopt` records an intent, it writes nothing to the provider. It observes the resource's tenant
and provider, asks the provider to plan with the adoption (reconciler ProviderContext.adopt), and:
- refuses, with the reason, when the address is not a live resource, is already ours, or matches nothing
  the tenant file declares (e.g. a hand-made Nuki keypad code whose code is no teammate's declared code on
  that lock);
- otherwise records the address (tenantctl.adoptions) and prints the adoption as the plan will show it.
The next `plan` shows the adoption (an UPDATE marked `adoption`: Nuki renames the code to our `tc:` name
and sets the declared windows) and `apply` performs exactly it, so "a plan shows every write before it
happens" holds for adoptions too, and a saved plan (`plan --out`) carries it to CI.

Adoptable today: hand-made Nuki keypad codes (`nuki.keypad_code[...]`). A WhatsApp subscription of our app
made by hand needs no adoption: a WABA's only subscription is taken as ours already.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from reconciler.render import change_lines
from tenancy.fingerprint import tenant_key
from tenancy.redact import REDACTOR
from tenantctl import adoptions
from tenantctl.commands.reconcile import SandboxOpt, _fail, session
from tenantctl.commands.state import provider_of, tenant_of
from tenantctl.context import Context

# What makes a foreign resource adoptable, per kind (the refusal says it).
RULES = {
    ("nuki", "keypad_code"): "a hand-made keypad code is adopted only when its code is the keypad code the "
                             "tenant file declares for a teammate on that lock, and that teammate has no "
                             "code of ours there yet",
}


def adopt(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The foreign resource's address, as `state list` prints it.")],
    *,
    cancel: Annotated[bool, typer.Option("--cancel", help="Forget a recorded adoption instead.")] = False,
    sandbox: SandboxOpt = False,
) -> None:
    """Take over a foreign live resource that matches the tenant file: the next plan shows it, apply does it.

    Writes nothing to the provider. Exit 0: recorded (or cancelled); 1: refused, with the reason.
    """
    c: Context = ctx.obj
    state_dir = c.settings.state_dir
    if cancel:
        found = adoptions.remove(state_dir, address)
        c.echo(f"forgot the adoption of {address}" if found else f"no adoption of {address} was recorded")
        return
    try:
        slug, provider_name = tenant_of(address), provider_of(address)
    except ValueError as e:
        raise _fail(c, str(e)) from None
    with session(c, [slug], [provider_name], sandbox, with_db=False, with_platform=False) as s:
        if not s.loaded or not s.providers:
            raise _fail(c, f"{provider_name} does not apply to tenant {slug}")
        tenant, provider = s.loaded[0].tenant, s.providers[0]
        if not provider.applies_to(tenant):
            raise _fail(c, f"tenant {slug} has no {provider_name} section: nothing there to adopt")
        try:
            live = provider.observe(tenant, s.ctx, s.http)
        except Exception as e:
            raise _fail(c, f"could not observe {provider_name} for {slug}: {e}") from None
        target = next((r for r in live if r.address == address), None)
        if target is None:
            raise _fail(c, f"no live resource {address}: `tenantctl state list -t {slug}` lists them")
        if target.owned:
            raise _fail(c, f"{address} is already managed by tenantctl: nothing to adopt")
        asked = dataclasses.replace(s.ctx, adopt=s.ctx.adopt | {address})
        change = next((ch for ch in provider.plan(tenant, asked, live)
                       if ch.adoption and ch.live is not None and ch.live.address == address), None)
        if change is None:
            rule = RULES.get((target.provider, target.kind),
                             f"tenantctl cannot adopt a {target.provider} {target.kind}; adoptable: "
                             + ", ".join(f"{p}.{k}" for p, k in RULES))
            raise _fail(c, f"refused: {address} does not match what {slug}'s tenant file declares: {rule}. "
                        "Nothing was recorded or written.")
    adoptions.add(state_dir, address)
    c.echo(REDACTOR.scrub("\n".join(change_lines(change, tenant_key(tenant)))))
    c.echo(f"Recorded the adoption of {address}: `tenantctl plan` shows it and `tenantctl apply` performs it. "
           "Nothing was written yet.")


def register(app: typer.Typer) -> None:
    app.command("adopt")(adopt)
    app.command("import", help="Same as `adopt` (Terraform's name).")(adopt)
