"""`tenantctl simulate booking SLUG`: the end of onboarding, rehearsed against a running webhook server.

Sends what a new booking makes the providers send: a Hospitable `reservation.created` signed with the
tenant's `hospitable.webhook_secret` (hex HMAC-SHA256 of the body in `Signature`), and a WhatsApp inbound
message to the tenant's number signed with the Meta app secret (`X-Hub-Signature-256: sha256=<hex>`,
TENANTCTL_META_APP_SECRETS). Each must be answered 200: the server answers so only after the event is
committed to its log. With TENANTCTL_ADMIN_TOKEN set, each event is also looked
up in `/admin/webhook-logs` by its ID. Exit 0 when every event was accepted, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer

from tenancy.escape import printable
from tenancy.model import Tenant
from tenancy.redact import REDACTOR
from tenantctl.context import Context
from tenantctl.options import complete_slug
from webhook_server.server_config import bind_problem

DEFAULT_SERVER = "http://127.0.0.1:8000"  # `tenantctl serve`'s default bind


def server_from_bind(bind: str | None) -> str | None:
    """The base URL a client on this machine reaches `tenantctl serve` at, from the address it binds
    (TENANTCTL_BIND, gunicorn's HOST:PORT): a wildcard address (0.0.0.0, [::], none) becomes loopback, a
    missing port gunicorn's 8000. DEFAULT_SERVER when unset; None for a bind no URL reaches (unix:, fd://)."""
    bind = (bind or "").split(",")[0].strip().removeprefix("tcp://")
    if not bind:
        return DEFAULT_SERVER
    if bind.startswith(("unix:", "fd://")):
        return None
    if bind.startswith("["):
        host, _, rest = bind[1:].partition("]")
        port = rest.removeprefix(":") or "8000"
        host = "[::1]" if host in ("::", "") else f"[{host}]"
    else:
        host, _, port = bind.partition(":")
        port = port or "8000"
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104  # the wildcard, not a bind
    return f"http://{host}:{port}"

simulate_app = typer.Typer(help="Rehearse what providers send, against a running webhook server.",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(simulate_app, name="simulate")


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hospitable_booking(tenant: Tenant, now: datetime) -> tuple[str, bytes]:
    """(event id, body) of a Hospitable v2 `reservation.created` for the tenant's first mapped property."""
    prop = next((p.hospitable_property_id for p in tenant.properties if p.hospitable_property_id), None)
    event = f"tenantctl-sim-{uuid.uuid4()}"
    body = _dumps({"id": event, "action": "reservation.created", "version": "v2", "created": now.isoformat(),
                   "data": {"id": str(uuid.uuid4()), "platform": "direct", "status": "accepted",
                            "properties": [{"id": prop}] if prop else [],
                            "guests": {"total": 2}, "arrival_date": now.date().isoformat()}})
    return event, body


def whatsapp_message(phone_number_id: str, now: datetime, waba_id: str | None = None) -> tuple[str, bytes]:
    """(message id, body) of an inbound text message, in Meta's `messages` webhook shape: `entry[].id` is
    the tenant's WABA, which the server checks next to the phone-number ID (docs/whatsapp-webhooks.md)."""
    wamid = f"wamid.tenantctl-sim-{uuid.uuid4().hex}"
    body = _dumps({"object": "whatsapp_business_account", "entry": [{"id": waba_id or "0", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": "tenantctl simulate"}, "wa_id": "10000000000"}],
            "messages": [{"from": "10000000000", "id": wamid, "timestamp": str(int(now.timestamp())),
                          "type": "text", "text": {"body": "Hello, we just booked: what is the door code?"}}],
        }}]}]})
    return wamid, body


@simulate_app.command("booking")
def booking(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant.", autocompletion=complete_slug)],
    *,
    server: Annotated[str | None, typer.Option(
        "--server", show_default=False,
        help="The webhook server's base URL. Default: where `tenantctl serve` binds, TENANTCTL_BIND from the "
             f"environment or .env (0.0.0.0 and [::] as loopback), else {DEFAULT_SERVER}.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, max=3600, help="Seconds per request.")] = 10.0,
) -> None:
    """Send a signed Hospitable booking and a signed WhatsApp message; confirm both were accepted."""
    c: Context = ctx.obj
    if server is None:
        bind = os.environ.get("TENANTCTL_BIND", "")
        first = bind.split(",")[0].strip()
        # What serve would refuse is no address of it (a URL made of `127.0.0.1:80@host` would go to host).
        problem = None if first.startswith(("unix:", "fd://")) or not first else bind_problem(first)
        server = None if problem else server_from_bind(bind)
        if server is None:
            why = f": {problem};" if problem else " is no TCP address:"
            c.err.print(printable(f"error: TENANTCTL_BIND={bind}{why} pass --server URL where the webhook server "
                                  "listens"), markup=False)
            raise typer.Exit(1)
    result = c.load()
    tenant = next((lt.tenant for lt in result.tenants if lt.tenant.slug == slug), None)
    if tenant is None:
        for f in result.errors:
            c.echo(f.text())
        c.err.print(f"error: no valid tenant {slug!r} in {c.tenants_dir}", markup=False)
        raise typer.Exit(1)
    now = datetime.now(UTC)
    sends: list[tuple[str, str, str, bytes, dict[str, str]]] = []  # provider, url segment, id, body, headers
    if tenant.hospitable is not None:
        event, body = hospitable_booking(tenant, now)
        sends.append(("hospitable", "hospitable", event, body, {
            "Signature": _hex(tenant.hospitable.webhook_secret.get_secret_value(), body)}))
    else:
        c.echo("hospitable: skipped (the tenant has no hospitable section)")
    wa = tenant.whatsapp
    if wa is not None and wa.phone_number_id and c.settings.meta_app_secrets:
        wamid, body = whatsapp_message(wa.phone_number_id, now, wa.business_account_id)
        sends.append(("whatsapp", "wa", wamid, body, {
            "X-Hub-Signature-256": "sha256=" + _hex(c.settings.meta_app_secrets[0].get_secret_value(), body)}))
    elif wa is not None:
        missing = [name for name, present in (("whatsapp.phone_number_id in the tenant file", wa.phone_number_id),
                                              ("TENANTCTL_META_APP_SECRETS", c.settings.meta_app_secrets))
                   if not present]
        c.echo(f"whatsapp: skipped (no {' and no '.join(missing)})")
    if not sends:
        c.err.print(f"error: tenant {slug} has nothing to simulate", markup=False)
        raise typer.Exit(1)
    failed = 0
    with httpx.Client(base_url=server.rstrip("/"), timeout=timeout, trust_env=False) as client:
        for provider, segment, event, body, headers in sends:
            ok, line = _send(client, c, slug, provider, segment, event, body, headers)
            failed += not ok
            c.echo(REDACTOR.scrub(line))
    raise typer.Exit(1 if failed else 0)


def _send(client: httpx.Client, c: Context, slug: str, provider: str, segment: str, event: str, body: bytes,
          headers: dict[str, str]) -> tuple[bool, str]:
    started = time.monotonic()
    try:
        resp = client.post(f"/api/webhooks/{segment}/t/{slug}", content=body,
                           headers={**headers, "Content-Type": "application/json"})
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        return False, (f"{provider}: cannot reach the server at {client.base_url} ({type(e).__name__}): start "
                       "`tenantctl serve`, or pass --server URL where it listens")
    except httpx.TimeoutException as e:  # connected: the server is up, but did not answer in time
        return False, (f"{provider}: no answer from the server at {client.base_url} within {_deadline(client)} "
                       f"({type(e).__name__}): it may be busy or its database slow (see its log and /readyz); the "
                       "event may still be recorded, and a resend is de-duplicated")
    except httpx.HTTPError as e:
        return False, (f"{provider}: the exchange with the server at {client.base_url} failed "
                       f"({type(e).__name__}): is --server the webhook server (`tenantctl serve`)?")
    ms = (time.monotonic() - started) * 1000
    if resp.status_code == 503:
        return False, (f"{provider}: not recorded, HTTP 503: the server could not commit it (its database: see its "
                       "log and /readyz); a provider would send it again")
    if resp.status_code != 200:
        return False, (f"{provider}: refused, HTTP {resp.status_code}: see `tenantctl webhooks log --rejected` "
                       "for the reason")
    # 200 is only answered once the event is committed; "duplicate" would mean it was recorded before.
    line = f"{provider}: accepted {event} in {ms:.0f} ms" + (
        " (as a duplicate)" if _status(resp) == "duplicate" else "")
    token = c.settings.admin_token
    if token is None:
        return True, line + " (set TENANTCTL_ADMIN_TOKEN to confirm it in the log)"
    found = _in_log(client, token.get_secret_value(), slug, provider, event)
    if found is None:
        return True, line + " (the admin log could not be read)"
    return found, line + ("; recorded as accepted in the webhook log" if found else
                          "; but it is NOT in the webhook log as accepted")


def _deadline(client: httpx.Client) -> str:
    read = client.timeout.read
    return "its timeout" if read is None else f"{read:g} s"


def _status(resp: httpx.Response) -> str | None:
    try:
        doc = resp.json()
    except ValueError:
        return None
    return str(doc.get("status")) if isinstance(doc, dict) else None


def _in_log(client: httpx.Client, token: str, slug: str, provider: str, event: str) -> bool | None:
    try:
        resp = client.get("/admin/webhook-logs", params={"tenant": slug, "provider": provider,
                                                          "outcome": "accepted", "limit": 50},
                          headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    try:
        doc = resp.json()
    except ValueError:  # not the admin log's JSON: --server is some other server
        return None
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return None
    return any(isinstance(i, dict) and (event in str(i.get("event_id") or "") or event in str(i.get("body") or ""))
               for i in items)
