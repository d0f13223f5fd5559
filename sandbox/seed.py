"""Seed a World from tenant files: the accounts, WABAs, numbers, locks and properties they name, with drift.

The tenants' own credentials become the sandbox's accounts (the sandbox keys accounts by token), so the
CLI talks to it exactly as to the real APIs. With `drift=True` (the default) the live state differs from
the files the way real accounts drift, so a first plan has something to show:
- WhatsApp: the first tenant with a phone number has a phone-level webhook override pointing at an old
  vendor (UPDATE); the second WhatsApp tenant's WABA is not subscribed at all (CREATE); the rest are right.
- Nuki (first tenant with keypad codes): one managed code is missing (CREATE), one is stale (its time
  window changed: UPDATE), a code made by hand sits on the first lock (REPORTed, never touched), and a
  managed code of a former teammate is left over (DELETE). No tenant has its decentral webhook yet
  (CREATE, whose secret apply writes back into the tenant file).
- Hospitable: the first tenant's account has one property no tenant property maps (REPORT).
With `drift=False` everything matches, except webhooks whose secret the tenant file does not hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time

from sandbox.nuki import Webhook
from sandbox.world import World
from tenancy.access_time import date_labels, nuki_date, window_of, zone_name
from tenancy.model import Teammate, Tenant, Weekday
from tenancy.urls import webhook_url

OLD_VENDOR_URL = "https://legacy-inbox.example.net/whatsapp/hook"
HAND_MADE_NAME = "Front desk"
FORMER_TEAMMATE = "tc:Former Cleaner"
UNMAPPED_PROPERTY = "00000000-0000-4000-8000-00000000beef"
NUKI_FEATURES = ["DEVICE_AUTHS", "DEVICE_LOGS", "DEVICE_STATUS"]
_BITS = {Weekday.MON: 64, Weekday.TUE: 32, Weekday.WED: 16, Weekday.THU: 8, Weekday.FRI: 4,
         Weekday.SAT: 2, Weekday.SUN: 1}


def _minutes(t: time | None) -> int:
    return t.hour * 60 + t.minute if t else 0


def _unused_code(taken: set[int]) -> int:
    code = 987654
    while code in taken:
        code -= 1
        while "0" in str(code):
            code -= 1
    return code


def _code_fields(tm: Teammate, zone_id: str) -> dict[str, object]:
    a = tm.access
    assert a is not None  # noqa: S101  (callers pass teammates with access)
    start, end = date_labels(window_of(a, zone_id))  # local days of the lock's zone, as UTC instants
    return {
        "allowed_week_days": sum(_BITS[Weekday(d)] for d in set(a.weekdays)),
        "allowed_from_time": _minutes(a.from_time),
        "allowed_until_time": _minutes(a.until_time),
        "allowed_from_date": nuki_date(start),
        "allowed_until_date": nuki_date(end),
    }


def seed_world(tenants: Sequence[Tenant], *, domain: str, drift: bool = True,
               world: World | None = None) -> World:
    world = world or World()
    wa_seen = 0
    phone_drift_done = nuki_drift_done = hosp_drift_done = False
    for t in sorted(tenants, key=lambda t: t.slug):
        dom = t.domain or domain
        if t.smtp is not None:  # the sandbox's SMTP server accepts the tenant's login
            world.smtp.add_account(t.smtp.username, t.smtp.password.get_secret_value())
        wa = t.whatsapp
        if wa is not None and wa.business_account_id is not None:
            token = wa.access_token.get_secret_value()
            waba = wa.business_account_id
            world.meta.add_waba(token, waba, t.display_name)
            wa_seen += 1
            if not (drift and wa_seen == 2):
                world.meta.subscribe(waba, override_callback_uri=webhook_url("wa", t.slug, dom),
                                     verify_token=wa.verify_token.get_secret_value())
            if wa.phone_number_id:
                pid = wa.phone_number_id
                phone = world.meta.add_phone_number(waba, pid, f"+49 30 {pid[-7:]}",
                                                    verified_name=t.display_name)
                if drift and not phone_drift_done:
                    phone.override_callback_uri = OLD_VENDOR_URL
                    phone_drift_done = True

        if t.nuki is not None:
            token = t.nuki.api_token.get_secret_value()
            world.nuki.add_account(token)
            for prop in t.properties:
                for i, lock in enumerate(prop.nuki_lock_ids, 1):
                    world.nuki.add_smartlock(token, lock, f"{prop.name} door {i}"[:32])
            wanted = [(lock, tm) for tm in t.teammates if tm.access and tm.access.keypad_code
                      for key in tm.properties for prop in [t.property(key)] if prop
                      for lock in prop.nuki_lock_ids]
            # A lock reached through two properties counts once.
            wanted = list({(lock, tm.key): (lock, tm) for lock, tm in wanted}.values())
            tenant_drift = drift and not nuki_drift_done and len(wanted) >= 2
            for n, (lock, tm) in enumerate(wanted):
                assert tm.access is not None and tm.access.keypad_code is not None  # noqa: S101
                if tenant_drift and n == 0:
                    continue  # missing: CREATE
                zone_id = next((zone_name(t, p) for p in t.properties if lock in p.nuki_lock_ids), "UTC")
                fields = _code_fields(tm, zone_id)
                if tenant_drift and n == 1:
                    # A stale window: someone widened it by hand.
                    fields["allowed_from_time"], fields["allowed_until_time"] = 6 * 60, 22 * 60
                world.nuki.add_keypad_code(token, lock, ("tc:" + tm.name)[:32],
                                           int(tm.access.keypad_code.get_secret_value()), **fields)
            if tenant_drift:
                first = wanted[0][0]
                taken = {int(tm.access.keypad_code.get_secret_value()) for _, tm in wanted
                         if tm.access and tm.access.keypad_code}
                hand = _unused_code(taken)
                world.nuki.add_keypad_code(token, first, HAND_MADE_NAME, hand)
                world.nuki.add_keypad_code(token, first, FORMER_TEAMMATE, _unused_code(taken | {hand}))
                nuki_drift_done = True
            if not drift and t.nuki.webhook_secret is not None:
                account = world.nuki.accounts[token]
                hid = world.nuki.next_webhook_id
                world.nuki.next_webhook_id += 1
                account.webhooks[hid] = Webhook(hid, webhook_url("nuki", t.slug, dom), list(NUKI_FEATURES),
                                                t.nuki.webhook_secret.get_secret_value())

        if t.hospitable is not None:
            token = t.hospitable.api_key.get_secret_value()
            world.hospitable.add_account(token)
            for prop in t.properties:
                if prop.hospitable_property_id:
                    world.hospitable.add_property(token, prop.hospitable_property_id.lower(), prop.name)
            if drift and not hosp_drift_done:
                world.hospitable.add_property(token, UNMAPPED_PROPERTY, "Unmapped Cottage")
                hosp_drift_done = True

        if t.beds24 is not None:
            token = t.beds24.token.get_secret_value()
            world.beds24.add_account(token)
            for b24 in t.beds24.property_ids:
                world.beds24.add_property(token, b24, f"{t.display_name} {b24}")

        for prop in t.properties:
            if prop.intercom is not None:
                ic = prop.intercom
                world.twon.add_device(ic.device_id, ic.username, ic.password.get_secret_value(),
                                      device_name=f"{prop.name} intercom"[:64], serial_number=ic.device_id)
    return world
