"""New access codes that the providers accept, drawn with `secrets`. No I/O.

- Nuki keypad code: 6 digits 1-9, not starting with 12 (spec: SmartlockAuthCreate.code), unique on every
  lock the teammate opens: no other teammate of the file holds it on one of those locks.
- 2N PIN (8 digits) and QR code (12 digits; 2N needs ≥ 10 for QR entry): unique per device, across PINs
  and switch codes of every teammate on the intercoms the teammate opens.
A new code never equals the one it replaces. Codes made by hand on a device are not in the file: the plan
reports such a clash, and `rotate` can simply be run again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from tenancy.model import Tenant

KEYPAD_DIGITS = "123456789"
PIN_LENGTH = 8
QR_LENGTH = 12
FIELDS = {"keypad": "keypad_code", "pin": "intercom_pin", "qr": "intercom_qr"}


def _draw(length: int, alphabet: str, taken: set[str]) -> str:
    while True:
        # The first digit is never 0: a code must survive a trip through a spreadsheet or an int.
        code = secrets.choice(alphabet.replace("0", "")) + "".join(secrets.choice(alphabet)
                                                                   for _ in range(length - 1))
        if code not in taken and not (alphabet == KEYPAD_DIGITS and code.startswith("12")):
            return code


def _secrets_of(tenant: Tenant, doors: Iterable[str], kinds: Iterable[str], skip: str) -> set[str]:
    """Codes of kinds `kinds` held by teammates other than `skip` on any door in `doors`."""
    door_set = set(doors)
    out: set[str] = set()
    for tm in tenant.teammates:
        if tm.key == skip or tm.access is None:
            continue
        mine = _doors(tenant, tm.key, "keypad" if "keypad_code" in kinds else "intercom")
        if not mine & door_set:
            continue
        for kind in kinds:
            value = getattr(tm.access, kind)
            if value is not None:
                out.add(value.get_secret_value())
    return out


def _doors(tenant: Tenant, teammate: str, kind: str) -> set[str]:
    tm = next(t for t in tenant.teammates if t.key == teammate)
    out: set[str] = set()
    for key in tm.properties:
        prop = tenant.property(key)
        if prop is None:
            continue
        if kind == "keypad":
            out |= {f"lock:{lock}" for lock in prop.nuki_lock_ids}
        elif prop.intercom is not None:
            out.add(f"2n:{prop.intercom.device_id}")
    return out


def new_code(tenant: Tenant, teammate: str, what: str) -> str:
    """A fresh code for `what` ("keypad" | "pin" | "qr") of `teammate` (a key of `tenant.teammates`).

    Raises KeyError for an unknown teammate or kind.
    """
    if what not in FIELDS:
        raise KeyError(what)
    tm = next((t for t in tenant.teammates if t.key == teammate), None)
    if tm is None:
        raise KeyError(teammate)
    current = getattr(tm.access, FIELDS[what]) if tm.access is not None else None
    taken = {current.get_secret_value()} if current is not None else set()
    if what == "keypad":
        taken |= _secrets_of(tenant, _doors(tenant, teammate, "keypad"), ["keypad_code"], teammate)
        return _draw(6, KEYPAD_DIGITS, taken)
    taken |= _secrets_of(tenant, _doors(tenant, teammate, "intercom"), ["intercom_pin", "intercom_qr"], teammate)
    if tm.access is not None:  # a PIN and a QR code of one user must differ too
        taken |= {s.get_secret_value() for s in (tm.access.intercom_pin, tm.access.intercom_qr) if s is not None}
    return _draw(PIN_LENGTH if what == "pin" else QR_LENGTH, "0123456789", taken)


def new_keypad_code(taken: set[str]) -> str:
    """A Nuki keypad code (6 digits 1-9, not starting with 12) that is none of `taken`."""
    return _draw(6, KEYPAD_DIGITS, taken)


def file_keypad_codes(tenant: Tenant) -> set[str]:
    """Every keypad code the tenant file declares."""
    return {tm.access.keypad_code.get_secret_value() for tm in tenant.teammates
            if tm.access is not None and tm.access.keypad_code is not None}
