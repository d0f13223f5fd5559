"""Plans and apply reports as text (people), JSON (machines) and Markdown (pull-request comments).

No secret can appear: attribute values pass through `plan.encode_value`, which turns every Sensitive
value into `(sensitive)` plus a keyed fingerprint, and the final text is scrubbed by the redactor.

JSON plan format, version 1 (`tenantctl plan --format json`, and the file `plan --out FILE` writes)
-------------------------------------------------------------------------------------------------
    {
      "format_version": 1,                     # bumped on any incompatible change
      "checksum": "sha256:<hex>",              # over format_version, sandbox and items (not created_at)
      "created_at": "2026-11-27T12:00:00+00:00",
      "sandbox": false,                        # made against the local sandbox?
      "prune": false,                          # made with --prune (foreign resources deleted)?
      "summary": {"create": 1, "update": 2, "delete": 0, "manual": 1, "report": 1, "noop": 9,
                  "errors": 0},
      "items": [                               # one per tenant x provider that applies to the tenant
        {
          "tenant": "acme",
          "provider": "nuki",
          "live_digest": "sha256:<hex>",       # digest of the observed live resources; null on error
          "live_count": 4,                     # live resources tenantctl owns (the safety base)
          "error": null,                       # why the provider could not be observed, else null
          "changes": [                         # no-ops left out
            {
              "address": "nuki.keypad_code[acme/17010001/maria]",
              "action": "create",              # create | update | delete | manual | report
              "provider": "nuki", "kind": "keypad_code",
              "fields": [
                {"field": "code", "old": null,
                 "new": {"sensitive": true, "fingerprint": "<12 hex>"}, "sensitive": true},
                {"field": "name", "old": null, "new": "Maria Lopez", "sensitive": false}
              ],
              "note": "...",                   # optional: instructions (manual) or reason (report)
              "severity": "error",             # optional: error | info (reports; notes of other changes)
              "done": false                    # manual steps only: already observed done
            }
          ]
        }
      ]
    }
Fingerprints are HMAC-SHA256 keyed by the tenant's own secrets (12 hex digits): equal fingerprints mean
equal values, and a short secret (a keypad code) cannot be recovered by trying every candidate.
Consumers must ignore keys they do not know; removing or re-typing a key bumps `format_version`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from reconciler.access import access_diff, md, still_open
from reconciler.engine import ApplyReport, Outcome, hidden_text
from reconciler.model import Action, Change, FieldChange
from reconciler.plan import FORMAT_VERSION, Plan, ProviderPlan, encode_value
from tenancy.redact import REDACTOR

GITHUB_COMMENT_LIMIT = 65_536
SIGNS = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.MANUAL: "!",
         Action.REPORT: "i", Action.NOOP: " "}
COLOURS = {Action.CREATE: "32", Action.UPDATE: "33", Action.DELETE: "31", Action.MANUAL: "35",
           Action.REPORT: "36", Action.NOOP: "0"}
VERBS = {Action.CREATE: "to create", Action.UPDATE: "to update", Action.DELETE: "to delete",
         Action.MANUAL: "manual", Action.REPORT: "to know"}


def plan_document(plan: Plan) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "checksum": plan.checksum,
        "created_at": plan.created_at.isoformat(),
        "sandbox": plan.sandbox,
        "prune": plan.prune,
        "summary": plan.counts(),
        "items": plan.items_json(),
    }


def render_json(plan: Plan) -> str:
    return REDACTOR.scrub(json.dumps(plan_document(plan), indent=2))


# Values ------------------------------------------------------------------------------------------------
def show_value(value: Any, key: bytes) -> str:
    v = encode_value(value, key)
    if isinstance(v, dict) and v.get("sensitive") is True:
        return f"(sensitive) #{v['fingerprint']}"
    if v is None:
        return "(none)"
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def field_line(f: FieldChange, action: Action, key: bytes) -> str:
    if action is Action.CREATE:
        return f"{f.field} = {show_value(f.new, key)}"
    if action is Action.DELETE:
        return f"{f.field} = {show_value(f.old, key)}"
    return f"{f.field}: {show_value(f.old, key)} → {show_value(f.new, key)}"


def _tenant_summary(changes: list[Change], unobserved: int = 0) -> str:
    """"2 create, 1 update", "no changes"; never "no changes" when a provider could not be observed (its
    changes are unknown, not absent)."""
    counts = {a: sum(1 for c in changes if c.action is a) for a in VERBS}
    parts = [f"{n} {VERBS[a]}" for a, n in counts.items() if n]
    if unobserved:
        return "; ".join([*([", ".join(parts)] if parts else []),
                          f"{unobserved} provider(s) could not be observed"])
    return ", ".join(parts) or "no changes"


def _visible(item: ProviderPlan) -> list[Change]:
    return [c for c in item.changes if c.action is not Action.NOOP]


def _by_tenant(plan: Plan) -> Iterator[tuple[str, list[ProviderPlan]]]:
    for tenant in plan.tenants:
        yield tenant, [i for i in plan.items if i.tenant == tenant]


def change_lines(change: Change, key: bytes) -> list[str]:
    head = f"{SIGNS[change.action]} {change.address}"
    if change.action is Action.MANUAL:
        head += " (done)" if change.done else " (to do by hand)"
    lines = [head]
    if change.action in (Action.CREATE, Action.UPDATE, Action.DELETE):
        lines += [f"    {field_line(f, change.action, key)}" for f in change.fields]
    if change.note:
        lines += [f"    {line}" for line in change.shown_note.splitlines()]
    return lines


# Text ------------------------------------------------------------------------------------------------
def render_text(plan: Plan, *, colour: bool = False) -> str:
    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colour and code != "0" else text

    out: list[str] = []
    for tenant, items in _by_tenant(plan):
        changes = [c for i in items for c in _visible(i)]
        errors = [i for i in items if i.error]
        out.append(paint(f"tenant {tenant}", "1") + f": {_tenant_summary(changes, len(errors))}")
        for i in errors:
            out.append(paint(f"  x {i.provider}: could not observe: {hidden_text(i.error or '', i.hidden)}",
                             "31"))
        for c in changes:
            lines = change_lines(c, plan.key(tenant))
            out.append("  " + paint(lines[0], COLOURS[c.action]))
            out += ["  " + line for line in lines[1:]]
        out += access_lines(items, "  ")
        out.append("")
    out.append(summary_line(plan))
    return REDACTOR.scrub("\n".join(out))


def summary_line(plan: Plan) -> str:
    n = plan.counts()
    text = (f"Plan: {n['create']} to create, {n['update']} to update, {n['delete']} to delete"
            f"; {len(plan.manual_pending)} manual step(s) pending, {n['report']} to know")
    if plan.errors:
        text += f"; {len(plan.errors)} provider(s) could not be observed"
    return text + f". Checksum {plan.checksum[:19]}…"


# Markdown --------------------------------------------------------------------------------------------
def render_markdown(plan: Plan, *, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """A pull-request comment: one collapsed <details> per tenant with changes, kept under `limit`."""
    head = [f"### tenantctl plan{' (sandbox)' if plan.sandbox else ''}", "", summary_line(plan), ""]
    if plan.errors:
        head += ["**Could not observe:**", ""]
        head += [f"- `{i.tenant}` / {i.provider}: {_md_escape(hidden_text(i.error or '', i.hidden))}"
                 for i in plan.errors] + [""]
    sections: list[tuple[str, int]] = []
    for tenant, items in _by_tenant(plan):
        changes = [c for i in items for c in _visible(i)]
        if not changes:
            continue
        body = [line for c in changes for line in change_lines(c, plan.key(tenant))]
        unobserved = sum(1 for i in items if i.error)
        text = "\n".join([f"<details><summary><code>{tenant}</code>: {_tenant_summary(changes, unobserved)}"
                          "</summary>",
                          "", *access_markdown(items), "```diff", *body, "```", "", "</details>", ""])
        sections.append((text, len(changes)))
    text = "\n".join(head)
    reserve = 400  # room for the "not shown" footer
    shown = 0
    for section, _ in sections:
        if len(text) + len(section) + reserve > limit:
            break
        text += section + "\n"
        shown += 1
    if shown < len(sections):
        rest = sections[shown:]
        text += (f"\n… {len(rest)} more tenant(s) with {sum(n for _, n in rest)} change(s) not shown "
                 f"(GitHub's comment limit): run `tenantctl plan` or read the JSON plan artifact.\n")
    return REDACTOR.scrub(text)


# Access diff ---------------------------------------------------------------------------------------
def access_lines(items: list[ProviderPlan], indent: str) -> list[str]:
    """Who gains or loses which door, in local time (reconciler.access), under a tenant's changes."""
    lines = access_diff(c for i in items for c in i.changes)
    return [f"{indent}access:", *(f"{indent}  {line}" for line in lines)] if lines else []


def access_markdown(items: list[ProviderPlan]) -> list[str]:
    lines = access_diff(c for i in items for c in i.changes)
    return ["**Access changes**", "", *(f"- {md(line)}" for line in lines), ""] if lines else []


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


# Apply reports ---------------------------------------------------------------------------------------
MARKS = {Outcome.APPLIED: "done", Outcome.CONFIRMED: "done", Outcome.NOT_APPLIED: "NOT APPLIED",
         Outcome.UNKNOWN: "UNKNOWN", Outcome.FAILED: "FAILED", Outcome.NOT_ATTEMPTED: "not attempted"}
REPORT_FORMAT_VERSION = 1


def render_report(report: ApplyReport) -> str:
    """One line per change: done (applied, or "applied (confirmed by read-back)" after a lost answer),
    NOT APPLIED, UNKNOWN (with what to check), FAILED, not attempted (with what it depends on)."""
    out: list[str] = []
    tenants = sorted({r.change.tenant for r in report.results} | {u.tenant for u in report.unobserved})
    for tenant in tenants:
        out.append(f"tenant {tenant}:")
        for u in (u for u in report.unobserved if u.tenant == tenant):
            out.append(f"  FAILED        {u.provider}: could not observe, nothing attempted: "
                       f"{hidden_text(u.error, u.hidden)}")
        for r in (r for r in report.results if r.change.tenant == tenant):
            line = f"  {MARKS[r.outcome]:<13} {r.change.action.value} {r.change.address}"
            if r.outcome is Outcome.CONFIRMED:
                line += ": applied (confirmed by read-back)"
            elif r.detail and r.outcome is Outcome.APPLIED:
                line += f": {r.detail}"
            if r.error:
                line += f": {r.error}"
            out.append(line)
            out += [f"                secret stored encrypted: {w}" for w in r.wrote_back]
    open_ = still_open(r.change for r in report.results if r.outcome is not Outcome.APPLIED)
    if open_:
        out.append("ACCESS STILL OPEN (revocations that did not happen; run apply again):")
        out += [f"  {line}" for line in open_]
    n = report.counts()
    parts = [f"{n['applied'] + n['confirmed']} applied"
             + (f" ({n['confirmed']} confirmed by read-back)" if n["confirmed"] else ""),
             f"{n['failed']} failed"]
    parts += [f"{n[k]} {label}" for k, label in (("not_applied", "not applied"), ("unknown", "unknown")) if n[k]]
    parts.append(f"{n['not_attempted']} not attempted")
    if n["unobserved"]:
        parts.append(f"{n['unobserved']} provider(s) not observed")
    out.append("Apply: " + ", ".join(parts)
               + (": done." if report.ok else ": run `tenantctl apply` again once the cause is fixed."))
    return REDACTOR.scrub("\n".join(out))


def report_document(report: ApplyReport) -> dict[str, Any]:
    """The apply report for machines (`apply --format json`), version 1:

        {"format_version": 1, "ok": false, "counts": {"applied": 3, "confirmed": 1, ...},
         "results": [{"tenant", "provider", "address", "action",
                      "outcome": "applied | confirmed | not_applied | unknown | failed | not_attempted",
                      "detail", "error", "wrote_back": [...]}],
         "unobserved": [{"tenant", "provider", "error", "hidden": [addresses]}]}
    """
    return {
        "format_version": REPORT_FORMAT_VERSION,
        "ok": report.ok,
        "counts": report.counts(),
        "results": [{"tenant": r.change.tenant, "provider": r.change.provider, "address": r.change.address,
                     "action": r.change.action.value, "outcome": r.outcome.value, "detail": r.detail,
                     "error": r.error, "wrote_back": list(r.wrote_back)} for r in report.results],
        "unobserved": [{"tenant": u.tenant, "provider": u.provider, "error": u.error, "hidden": list(u.hidden)}
                       for u in report.unobserved],
    }


def render_report_json(report: ApplyReport) -> str:
    return REDACTOR.scrub(json.dumps(report_document(report), indent=2, sort_keys=True))
