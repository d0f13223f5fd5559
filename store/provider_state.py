"""Values a provider issues once (Nuki's decentral-webhook secret), kept in the database, age-encrypted.

Why here and not in the tenant file: the merge job of CI runs on a throw-away checkout and must not push to
the repository; a value written into the file would be lost with the runner, and the next plan would
replace the webhook again. Like Terraform's state, the database keeps what the provider handed back, and
every reader (plan, apply, show, validate, the webhook server) overlays it on the tenant from git.

- One row per (tenant, provider, path): `path` is the value's place in the tenant model, dotted
  ("nuki.webhook_secret"). The value is encrypted with age to the recipients that `.sops.yaml` gives the
  tenant's file, so exactly the people (and CI) who can read `tenants/<slug>.yaml` can read it; the
  database only ever holds ciphertext (base64 of the binary age file).
- `previous` keeps the value it replaced: a webhook created before the replacement may still deliver
  signed with it (the server accepts both, newest first).
- `revision` is a table-wide counter (the highest + 1 at each write, under the write lock): a reader that
  caches the decrypted values compares `version()` (one indexed MAX) to know when to read again.

Rotation: `tenantctl provider-state forget SLUG PATH` forgets a value (a tombstone row keeps it as `previous` and
moves the revision on); the next plan sees no secret and replaces the provider's resource, whose new
secret lands here (docs/ci.md, "Provider state").

Errors: StateCryptoError (no recipients for the tenant, or no identity opens a value); never with a
plaintext value in its message.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pyrage
import yaml
from pydantic import BaseModel, SecretStr
from sqlalchemy import Connection, Engine, func, insert, select, update

from store.engine import begin_write, utcnow
from store.schema import provider_state
from tenancy.escape import printable
from tenancy.model import Tenant
from tenancy.sops_age import SopsError, parse_identities
from tenancy.sops_config import SOPS_CONFIG_NAME

__all__ = [
    "Entry",
    "StateCryptoError",
    "decrypt_all",
    "forget",
    "identities_from_env",
    "list_entries",
    "overlay",
    "put",
    "recipients_for",
    "version",
]


class StateCryptoError(Exception):
    """Encrypting or decrypting a state value failed; the message never holds the value."""


@dataclass(frozen=True)
class Entry:
    """A row's metadata: what is stored, for which tenant, since when, by whom (never the value)."""

    tenant: str
    provider: str
    path: str
    revision: int
    updated_at: datetime
    updated_by: str
    has_previous: bool
    recipients: int


# -- age ------------------------------------------------------------------------------------------------
def recipients_for(tenants_dir: Path, slug: str) -> list[str]:
    """The age recipients of the first `.sops.yaml` creation rule matching `<slug>.yaml` (sops' order)."""
    config = tenants_dir / SOPS_CONFIG_NAME
    try:
        doc = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise StateCryptoError(f"cannot read {config}: {type(e).__name__}") from None
    for rule in doc.get("creation_rules") or [] if isinstance(doc, dict) else []:
        if not isinstance(rule, dict):
            continue
        rx = rule.get("path_regex")
        if rx is not None and not re.search(str(rx), f"{slug}.yaml"):
            continue
        age = rule.get("age")
        items = age if isinstance(age, list) else str(age or "").replace("\n", ",").split(",")
        found = [str(a).strip() for a in items if str(a).strip()]
        if found:
            return found
    raise StateCryptoError(f"{config}: no creation rule with age recipients covers {slug}.yaml")


def identities_from_env(environ: Mapping[str, str] | None = None) -> list[Any]:
    """The age identities of SOPS_AGE_KEY and SOPS_AGE_KEY_FILE (what decrypts the tenant files)."""
    env = os.environ if environ is None else environ
    text = env.get("SOPS_AGE_KEY", "")
    key_file = env.get("SOPS_AGE_KEY_FILE")
    if key_file:
        try:
            text += "\n" + Path(key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise StateCryptoError(printable(f"cannot read SOPS_AGE_KEY_FILE={key_file}: "
                                             f"{e.strerror or type(e).__name__}")) from None
    try:
        return parse_identities(text) if text.strip() else []
    except SopsError as e:
        raise StateCryptoError(str(e)) from None


def _encrypt(value: str, recipients: Sequence[str]) -> str:
    try:
        parsed = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
        return base64.b64encode(pyrage.encrypt(value.encode("utf-8"), parsed)).decode("ascii")
    except Exception as e:  # pyrage raises its own types: name the kind, never the value
        raise StateCryptoError(f"age encryption failed: {type(e).__name__}") from None


def _decrypt(blob: str, identities: Sequence[Any], where: str) -> str:
    try:
        return bytes(pyrage.decrypt(base64.b64decode(blob), list(identities))).decode("utf-8")
    except Exception as e:
        raise StateCryptoError(f"{where}: no age identity opens the stored value ({type(e).__name__}); "
                               "set SOPS_AGE_KEY or SOPS_AGE_KEY_FILE to a key of the tenant's recipients") \
            from None


# -- rows -----------------------------------------------------------------------------------------------
def put(engine: Engine, tenant: str, provider: str, path: str, value: str, recipients: Sequence[str],
        who: str) -> int:
    """Store VALUE (encrypted to RECIPIENTS) at (tenant, provider, path); the old value becomes `previous`.

    Returns the new table revision.
    """
    if not recipients:
        raise StateCryptoError(f"no age recipients for tenant {tenant}")
    blob = _encrypt(value, recipients)
    t = provider_state
    with begin_write(engine) as conn:
        rev = _next_revision(conn)
        key = (t.c.tenant == tenant) & (t.c.provider == provider) & (t.c.path == path)
        row = conn.execute(select(t.c.ciphertext, t.c.previous).where(key)).one_or_none()
        # After `forget` the row is a tombstone (ciphertext ""): the value it forgot is its previous.
        previous = None if row is None else (row.ciphertext or row.previous)
        values = {"ciphertext": blob, "previous": previous, "recipients": ",".join(recipients), "revision": rev,
                  "updated_at": utcnow(), "updated_by": who}
        if row is None:
            conn.execute(insert(t).values(tenant=tenant, provider=provider, path=path, **values))
        else:
            conn.execute(update(t).where(key).values(**values))
    return rev


def forget(engine: Engine, tenant: str, provider: str, path: str, who: str = "") -> bool:
    """Forget a value (rotation: the next plan replaces the provider's resource). True if there was one.

    The row stays as a tombstone (no current value, the forgotten one as `previous`, a new revision): the
    revision never goes back, so a reader comparing versions cannot miss a forget followed by a put, and
    the webhook server keeps accepting the old secret until the replacement's secret is stored.
    """
    t = provider_state
    key = (t.c.tenant == tenant) & (t.c.provider == provider) & (t.c.path == path) & (t.c.ciphertext != "")
    with begin_write(engine) as conn:
        row = conn.execute(select(t.c.ciphertext).where(key)).one_or_none()
        if row is None:
            return False
        conn.execute(update(t).where(key).values(ciphertext="", previous=row.ciphertext,
                                                 revision=_next_revision(conn), updated_at=utcnow(),
                                                 updated_by=who or "forget"))
    return True


def _next_revision(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(provider_state.c.revision), 0))).scalar_one()) + 1


def version(engine: Engine) -> int:
    """The table's revision: changes whenever a value is written (0 when empty). One indexed MAX."""
    with engine.connect() as conn:
        v = conn.execute(select(func.max(provider_state.c.revision))).scalar_one_or_none()
    return int(v or 0)


def list_entries(engine: Engine, tenants: Sequence[str] | None = None) -> list[Entry]:
    t = provider_state
    stmt = select(t.c.tenant, t.c.provider, t.c.path, t.c.revision, t.c.updated_at, t.c.updated_by,
                  t.c.previous, t.c.recipients).order_by(t.c.tenant, t.c.provider, t.c.path)
    stmt = stmt.where(t.c.ciphertext != "")  # not the tombstones of forgotten values
    if tenants is not None:
        stmt = stmt.where(t.c.tenant.in_(list(tenants)))
    with engine.connect() as conn:
        return [Entry(r.tenant, r.provider, r.path, int(r.revision), r.updated_at, r.updated_by,
                      r.previous is not None, len([x for x in r.recipients.split(",") if x]))
                for r in conn.execute(stmt)]


# (tenant, path) → (current, previous); current None: forgotten (a tombstone keeping the previous value)
Values = dict[tuple[str, str], tuple[str | None, str | None]]


def decrypt_all(engine: Engine, identities: Sequence[Any], tenants: Sequence[str] | None = None) -> Values:
    """Every stored value, decrypted. Raises StateCryptoError naming the row (never its value)."""
    t = provider_state
    stmt = select(t.c.tenant, t.c.path, t.c.ciphertext, t.c.previous)
    if tenants is not None:
        stmt = stmt.where(t.c.tenant.in_(list(tenants)))
    out: Values = {}
    with engine.connect() as conn:
        rows = list(conn.execute(stmt))
    for r in rows:
        where = f"provider state {r.tenant}/{r.path}"
        prev = _decrypt(r.previous, identities, where) if r.previous else None
        out[(r.tenant, r.path)] = (_decrypt(r.ciphertext, identities, where) if r.ciphertext else None, prev)
    return out


# -- overlay on the tenant from git ---------------------------------------------------------------------
M = TypeVar("M", bound=BaseModel)


def _set(model: M, parts: Sequence[str], value: str) -> M:
    head, *rest = parts
    if not rest:
        return model.model_copy(update={head: SecretStr(value)})
    child = getattr(model, head, None)
    if not isinstance(child, BaseModel):
        return model  # the section is gone from the file: the stored value has nothing to attach to
    return model.model_copy(update={head: _set(child, rest, value)})


def overlay(tenant: Tenant, values: Values) -> Tenant:
    """TENANT with every stored value of it put in place (the state wins: it is what the provider issued
    last; the file's value, if any, is older)."""
    out = tenant
    for (slug, path), (current, _prev) in sorted(values.items()):
        if slug == tenant.slug and current is not None:
            out = _set(out, path.split("."), current)
    return out
