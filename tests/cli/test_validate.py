"""`tenantctl validate`: every rule, through the CLI, with the exit code, file:line and field it names."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import CliResult, RunCli, ThrowawayKey, WriteTenant, write_sops_config

BASE = """\
slug: acme
display_name: Acme Stays
status: active
hospitable:
  api_key: hk-secret-value-1
  webhook_secret: hmac-secret-value-1
whatsapp:
  phone_number_id: "106540352242922"
  business_account_id: "102290129340398"
  verify_token: verify-secret-value-1
  access_token: meta-secret-value-1
nuki:
  api_token: nuki-secret-value-1
properties:
  - key: loft
    name: Loft
    hospitable_property_id: 6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f70
    nuki_lock_ids: [17010001]
teammates:
  - key: maria
    name: Maria
    role: cleaner
    properties: [loft]
    access:
      keypad_code: "583947"
"""
SECRETS = ["hk-secret-value-1", "hmac-secret-value-1", "verify-secret-value-1", "meta-secret-value-1",
           "nuki-secret-value-1", "583947", "482913", "0123456", "42798"]  # 42798: 0123456 read as octal

# A second teammate, appended to BASE's teammates.
JONAS = """\
  - key: jonas
    name: Jonas
    role: host
    properties: [{props}]
    access:
      {field}: "{value}"
"""
INTERCOM = """\
    intercom:
      host: {host}
      device_id: 54-0001
      username: admin
      password: pw-secret-value-1
"""


def _with_intercom(text: str, host: str = "door.example") -> str:
    return text.replace("    nuki_lock_ids: [17010001]\n",
                        "    nuki_lock_ids: [17010001]\n" + INTERCOM.format(host=host))


def _with_delivery(text: str, url: str) -> str:
    """TEXT with `delivery: {hospitable: URL}`; URL is written as a YAML double-quoted scalar (\\e is ESC)."""
    return text + f'delivery:\n  hospitable: "{url}"\n'


def _two_properties(text: str) -> str:
    """loft has lock 17010001; attic has locks 17010002 and 17010003; maria opens both."""
    return text.replace("    nuki_lock_ids: [17010001]\n", "    nuki_lock_ids: [17010001]\n"
                        "  - key: attic\n    name: Attic\n    nuki_lock_ids: [17010002, 17010003]\n").replace(
        "properties: [loft]", "properties: [loft, attic]")


SHARED_KEYPAD = BASE + JONAS.format(props="loft", field="keypad_code", value="583947")
SHARED_KEYPAD_ON_A_PROPERTY = _two_properties(BASE) + JONAS.format(props="attic", field="keypad_code",
                                                                    value="583947")
SHARED_PIN = _with_intercom(BASE).replace('      keypad_code: "583947"\n',
                                          '      keypad_code: "583947"\n      intercom_pin: "482913"\n') + \
    JONAS.format(props="loft", field="intercom_pin", value="482913")
ALIASES = BASE.replace("display_name: Acme Stays", "display_name: &name Acme Stays").replace(
    "    name: Loft", "    name: *name")


def test_a_valid_tenant_passes(cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path) -> None:
    write_tenant(BASE)
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 0, r.all
    assert "1 tenant file(s): 0 error(s)" in r.out


def test_a_delivery_destination_may_be_loopback_a_private_address_or_a_public_name(
    cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path,
) -> None:
    # Loopback (the sandbox's fake platform, a platform on the same host) and the operator's own network.
    write_tenant(BASE + "delivery:\n  hospitable: http://127.0.0.1:8000/platform/acme\n"
                 "  whatsapp: https://10.0.0.5/in/wa\n  nuki: https://[::1]:8443/in/nuki\n"
                 "  beds24: https://platform.example.com/in/beds24?tenant=acme\n")
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 0, r.all


# (case, text, encrypt, line (or text found on that line of the file as written), field, message fragment).
# sops rewrites the layout of what it encrypts, so some lines are found by their content.
BROKEN = [
    ("yaml syntax", BASE.replace("status: active", "status: [active"), True, 4, None, "YAML syntax"),
    ("duplicate key", BASE.replace("status: active\n", "status: active\nstatus: active\n"), True, 4, "status",
     "duplicate key 'status'"),
    ("unknown field", BASE.replace("status: active\n", "status: active\ncolour: blue\n"), True, 4, "colour",
     "unknown field"),
    ("wrong type", BASE.replace("nuki_lock_ids: [17010001]", "nuki_lock_ids: [lock-one]"), True, "lock-one",
     "properties[0].nuki_lock_ids[0]", "integer"),
    ("bad slug", BASE.replace("slug: acme", "slug: Acme_Co"), True, 1, "slug", "pattern"),
    ("slug differs from file name", BASE.replace("slug: acme", "slug: other"), True, 1, "slug",
     "does not match the file name"),
    ("plaintext secret", BASE, False, 5, "hospitable.api_key", "not encrypted"),
    ("missing routing key", BASE.replace('  phone_number_id: "106540352242922"\n', ""), True, 7, "whatsapp",
     "silently rejected"),
    ("bad keypad code", BASE.replace('"583947"', '"123456"'), True, "keypad_code", "teammates[0].access.keypad_code",
     "must not start with 12"),
    ("unknown property reference", BASE.replace("properties: [loft]", "properties: [attic]"), True, "- attic",
     "teammates[0].properties[0]", "unknown property 'attic'"),
    ("missing required field", BASE.replace("  api_token: nuki-secret-value-1\n", "  {}\n").replace(
        "nuki:\n  {}", "nuki: {}"), True, 12, "nuki.api_token", "required field is missing"),
    # The providers refuse a second identical code on one lock (Nuki: 409) or device (2N).
    ("keypad code twice on one lock", SHARED_KEYPAD, True, ("keypad_code", 2), "teammates[1].access.keypad_code",
     "same keypad code as teammate 'maria'"),
    ("keypad code twice on the locks of one property", SHARED_KEYPAD_ON_A_PROPERTY, True, ("keypad_code", 2),
     "teammates[1].access.keypad_code", "on Nuki lock 17010002 and 1 more"),
    ("2N PIN twice on one device", SHARED_PIN, True, ("intercom_pin", 2), "teammates[1].access.intercom_pin",
     "same 2N PIN as teammate 'maria' (line"),
    # Secrets the server could never verify with, and secrets YAML turned into something else.
    ("whitespace-only secret", BASE.replace("webhook_secret: hmac-secret-value-1", 'webhook_secret: "   "'), True,
     "webhook_secret", "hospitable.webhook_secret", "a secret is empty or only whitespace"),
    ("empty secret", BASE.replace("webhook_secret: hmac-secret-value-1", 'webhook_secret: ""'), True,
     "webhook_secret", "hospitable.webhook_secret", "a secret is empty or only whitespace"),
    ("secret written as a YAML integer", BASE.replace("verify_token: verify-secret-value-1", "verify_token: 0123456"),
     True, "verify_token", "whatsapp.verify_token", "a secret written as a YAML integer"),
    ("secret written as a YAML boolean", BASE.replace("access_token: meta-secret-value-1", "access_token: true"),
     True, "access_token", "whatsapp.access_token", "a secret written as a YAML boolean"),
    # Input that would cost seconds and hundreds of MB is refused before it is expanded or read.
    ("anchors and aliases", ALIASES, False, 2, None, "anchors and aliases are not allowed in tenant files"),
    ("file larger than the limit", BASE.replace("Acme Stays", "A" * 300_000), False, 1, None,
     "the file is too large (300,"),
    # Python refuses to convert an integer of more than 4,300 digits (a ValueError, not a YAML error).
    ("number with too many digits", BASE.replace("[17010001]", f"[{'7' * 5000}]"), False, "nuki_lock_ids", None,
     "a number of 5,000 digits is too long"),
    ("display_name too long", BASE.replace("Acme Stays", "A" * 201), True, 2, "display_name",
     "at most 200 characters"),
    # An intercom host that is this machine, a metadata service, another provider or an odd IPv4 form.
    ("intercom host on loopback", _with_intercom(BASE, "127.0.0.1:8080"), True, "host:",
     "properties[0].intercom.host", "a loopback address"),
    ("intercom host is a metadata service", _with_intercom(BASE, "metadata.google.internal"), True, "host:",
     "properties[0].intercom.host", "a cloud metadata service"),
    ("intercom host is a provider", _with_intercom(BASE, "api.nuki.io"), True, "host:",
     "properties[0].intercom.host", "a provider's API domain"),
    ("intercom host in hex", _with_intercom(BASE, "0x7f000001"), True, "host:",
     "properties[0].intercom.host", "four decimal numbers"),
    # A delivery destination that is never a platform: metadata, unspecified, disguised or odd addresses,
    # and text with control characters (a terminal would obey them).
    ("delivery to the metadata service", _with_delivery(BASE, "https://169.254.169.254/latest/meta-data/"), True,
     ("hospitable:", 2), "delivery.hospitable", "a link-local address"),
    ("delivery to the unspecified address", _with_delivery(BASE, "https://0.0.0.0:19103/"), True,
     ("hospitable:", 2), "delivery.hospitable", "reaches this machine"),
    ("delivery to the IPv6 unspecified address", _with_delivery(BASE, "https://[::]:19103/"), True,
     ("hospitable:", 2), "delivery.hospitable", "the unspecified address"),
    ("delivery to IPv4-mapped loopback", _with_delivery(BASE, "https://[::ffff:127.0.0.1]:19103/"), True,
     ("hospitable:", 2), "delivery.hospitable", "an IPv4 address written inside an IPv6 address"),
    ("delivery to IPv4-mapped loopback in hex", _with_delivery(BASE, "https://[::ffff:7f00:1]:19103/"), True,
     ("hospitable:", 2), "delivery.hospitable", "an IPv4 address written inside an IPv6 address"),
    ("delivery to a hex IPv4 address", _with_delivery(BASE, "https://0x7f000001:19103/"), True,
     ("hospitable:", 2), "delivery.hospitable", "four decimal numbers"),
    ("delivery to a decimal IPv4 address", _with_delivery(BASE, "https://2130706433/"), True,
     ("hospitable:", 2), "delivery.hospitable", "four decimal numbers"),
    ("delivery to an octal IPv4 address", _with_delivery(BASE, "https://0177.0.0.1/"), True,
     ("hospitable:", 2), "delivery.hospitable", "four decimal numbers"),
    ("delivery to a shortened IPv4 address", _with_delivery(BASE, "https://127.1/"), True,
     ("hospitable:", 2), "delivery.hospitable", "four decimal numbers"),
    ("delivery over plain http to another machine", _with_delivery(BASE, "http://platform.example.com/acme"), True,
     ("hospitable:", 2), "delivery.hospitable", "plain http is refused except to loopback"),
    ("delivery URL with control characters", _with_delivery(BASE, "http://evil\\ec\\e7.example/x"), True,
     ("hospitable:", 2), "delivery.hospitable", "printable ASCII without spaces"),
    ("delivery URL with backspaces", _with_delivery(BASE, "https://platform.example.com/x\\b\\b\\b"), True,
     ("hospitable:", 2), "delivery.hospitable", "printable ASCII without spaces"),
]
RAW = {"yaml syntax", "duplicate key", "anchors and aliases", "file larger than the limit",
       "number with too many digits"}
# The fix printed under each new rule's finding (the `→` line).
HINTS = {
    "keypad code twice on one lock": "give teammate 'jonas' a keypad code of their own",
    "2N PIN twice on one device": "give teammate 'jonas' a 2N PIN of their own",
    "whitespace-only secret": "set the real value with sops",
    "secret written as a YAML integer": "quote it: YAML reads 034567 as an octal number",
    "secret written as a YAML boolean": "quote it",
    "anchors and aliases": "write each value out in full",
    "file larger than the limit": "remove what does not belong there",
    "number with too many digits": "quote it if it is text",
    "intercom host on loopback": "use the device's DNS name or its address on the site's network",
    "delivery to the metadata service": "the platform's https URL",
    "delivery URL with control characters": "the platform's https URL",
}


@pytest.mark.parametrize(("case", "text", "encrypt", "line", "field", "fragment"), BROKEN,
                         ids=[b[0] for b in BROKEN])
def test_each_broken_file_is_reported_with_file_line_and_field(
    cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path,
    case: str, text: str, encrypt: bool, line: int | str | tuple[str, int], field: str | None, fragment: str,
) -> None:
    path = _raw(tenant_dir, text) if case in RAW else write_tenant(text, encrypt=encrypt)
    before = path.read_bytes()
    if not isinstance(line, int):  # the n-th line (1-based) holding a text
        text_on_line, nth = (line, 1) if isinstance(line, str) else line
        line = [i for i, ln in enumerate(path.read_text().splitlines(), 1) if text_on_line in ln][nth - 1]
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 1, r.all
    expected = f"{path}:{line}:"
    lines = r.out.splitlines()
    matching = [n for n, ln in enumerate(lines) if ln.startswith(expected) and fragment in ln]
    assert matching, f"no finding at {expected} with {fragment!r}:\n{r.out}"
    if field is not None:
        assert f": {field}: " in lines[matching[0]]
    if case in HINTS:
        assert lines[matching[0] + 1].strip().startswith("→ ") and HINTS[case] in lines[matching[0] + 1], r.out
    assert path.read_bytes() == before, "validate must change nothing"
    for s in SECRETS:
        assert s not in r.all
    assert not any(ch in r.all for ch in "\x1b\x07\x08"), "a control character reached the terminal"


def _raw(tenant_dir: Path, text: str) -> Path:
    # sops refuses to encrypt broken YAML; a hand-broken file is what a bad merge leaves behind.
    path = tenant_dir / "acme.yaml"
    path.write_text(text)
    return path


def test_a_tampered_file_fails_its_mac(cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path) -> None:
    path = write_tenant(BASE)
    lines = path.read_text().splitlines()
    # Swap two secrets' ciphertexts: each is bound to its own key path, so the swap cannot go unnoticed.
    i, j = (next(n for n, ln in enumerate(lines) if ln.strip().startswith(k)) for k in ("api_key:", "api_token:"))
    ki, _, vi = lines[i].partition(": ")
    kj, _, vj = lines[j].partition(": ")
    lines[i], lines[j] = f"{ki}: {vj}", f"{kj}: {vi}"
    path.write_text("\n".join(lines) + "\n")
    # The first swapped value fails its own tag (its key path is the AAD): reported at its line and field.
    first = min(i, j)
    field = "hospitable.api_key" if first == i else "nuki.api_token"
    column = len(lines[first]) - len(lines[first].lstrip()) + 1
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 1
    assert f"{path}:{first + 1}:{column}: {field}: " in r.out, r.out
    assert "fails authentication" in r.out and "edited without sops" in r.out
    for s in SECRETS:
        assert s not in r.all


def test_an_edited_mac_is_reported_at_the_sops_metadata(cli: RunCli, write_tenant: WriteTenant,
                                                        tenant_dir: Path) -> None:
    path = write_tenant(BASE)
    lines = path.read_text().splitlines()
    # Every value left still authenticates; only the document's MAC fails (a secret was removed).
    del lines[next(n for n, ln in enumerate(lines) if ln.strip().startswith("api_token:"))]
    path.write_text("\n".join(lines) + "\n")
    sops_line = next(n for n, ln in enumerate(lines, 1) if ln.startswith("sops:"))
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 1
    assert f"{path}:{sops_line}:1: sops: " in r.out and "MAC mismatch" in r.out, r.out


def test_a_file_without_the_key_cannot_be_decrypted(cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path,
                                                     tmp_path: Path) -> None:
    write_tenant(BASE)
    other = tmp_path / "other.agekey"
    import pyrage

    other.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    r = cli("--tenants", str(tenant_dir), "validate", env={"SOPS_AGE_KEY_FILE": str(other)})
    assert r.code == 1
    sops_line = next(n for n, ln in enumerate((tenant_dir / "acme.yaml").read_text().splitlines(), 1)
                     if ln.startswith("sops:"))
    assert f"{tenant_dir / 'acme.yaml'}:{sops_line}:1: sops: no available key" in r.out


CROSS = [
    ("WhatsApp phone_number_id", "whatsapp.phone_number_id"),
    ("Hospitable property ID", "properties[0].hospitable_property_id"),
    ("Nuki lock ID", "properties[0].nuki_lock_ids[0]"),
]


@pytest.mark.parametrize(("label", "field"), CROSS)
def test_routing_keys_are_unique_across_tenants(cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path,
                                                label: str, field: str) -> None:
    write_tenant(BASE)
    other = BASE.replace("slug: acme", "slug: bravo")
    # Keep only the one routing key under test shared with acme.
    if label != "WhatsApp phone_number_id":
        other = other.replace("106540352242922", "106540352249999")
    if label != "Hospitable property ID":
        other = other.replace("6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f70", "7b2d4e1f-9e3c-4d8b-8f2a-3c4d5e6f7a81")
    if label != "Nuki lock ID":
        other = other.replace("17010001", "17019999")
    write_tenant(other, name="bravo")
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 1
    line = next(ln for ln in r.out.splitlines() if label in ln)
    assert line.startswith(str(tenant_dir / "bravo.yaml")) and f": {field}: " in line
    assert "already used by tenant 'acme'" in line


def test_two_dn_devices_with_one_id_are_refused(cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path) -> None:
    intercom = ("    intercom:\n      host: door.example\n      device_id: 54-0001\n      username: u\n"
                "      password: pw-secret-1\n")
    write_tenant(BASE.replace("    nuki_lock_ids: [17010001]\n", "    nuki_lock_ids: [17010001]\n" + intercom))
    second = BASE.replace("slug: acme", "slug: bravo").replace("106540352242922", "106540352249999").replace(
        "6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f70", "7b2d4e1f-9e3c-4d8b-8f2a-3c4d5e6f7a81").replace(
        "17010001", "17019999")
    write_tenant(second.replace("    nuki_lock_ids: [17019999]\n", "    nuki_lock_ids: [17019999]\n" + intercom),
                 name="bravo")
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 1
    assert "2N device ID 54-0001 is already used by tenant 'acme'" in r.out
    assert "pw-secret-1" not in r.all


@pytest.mark.parametrize(("regex", "fragment"), [
    ("^(api_key|token)$", "missing access_token"),
    ("^(access_token|api_key|api_token|intercom_pin|keypad_code|password|previous_webhook_secret|token|"
     "verify_token|webhook_secret|display_name)$", "names non-secret display_name"),
])
def test_sops_config_must_encrypt_exactly_the_secret_fields(cli: RunCli, tenant_dir: Path, throwaway_key: ThrowawayKey,
                                                            regex: str, fragment: str) -> None:
    write_sops_config(tenant_dir, throwaway_key.recipient, regex)
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 1
    assert f"{tenant_dir / '.sops.yaml'}:5:" in r.out and fragment in r.out


def test_json_output_lists_the_same_findings(cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path) -> None:
    write_tenant(BASE.replace("status: active\n", "status: active\ncolour: blue\n"))
    r = cli("--tenants", str(tenant_dir), "validate", "--format", "json")
    assert r.code == 1
    data = json.loads(r.out)
    assert data["version"] == 1 and data["ok"] is False
    [f] = [f for f in data["findings"] if f["severity"] == "error"]
    assert (f["line"], f["field"], f["message"]) == (4, "colour", "unknown field")


def test_tenants_dir_comes_from_the_environment(cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path) -> None:
    write_tenant(BASE.replace("status: active\n", "status: active\ncolour: blue\n"))
    r = cli("validate", env={"TENANTCTL_TENANTS": str(tenant_dir)})
    assert r.code == 1 and "colour" in r.out


def test_one_run_reports_a_collision_next_to_a_tenants_other_errors(cli: RunCli, write_tenant: WriteTenant,
                                                                     tenant_dir: Path) -> None:
    write_tenant(BASE)
    # bravo is broken on its own (no routing key) AND shares acme's lock: both must be reported at once.
    bravo = BASE.replace("slug: acme", "slug: bravo").replace('  phone_number_id: "106540352242922"\n', "")
    bravo = bravo.replace("6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f70", "7b2d4e1f-9e3c-4d8b-8f2a-3c4d5e6f7a81")
    write_tenant(bravo, name="bravo")
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 1
    bravo_lines = [ln for ln in r.out.splitlines() if ln.startswith(str(tenant_dir / "bravo.yaml"))]
    assert any("silently rejected" in ln for ln in bravo_lines)
    assert any("Nuki lock ID 17010001 is already used by tenant 'acme'" in ln for ln in bravo_lines)


def test_a_slug_used_in_two_directories_is_refused(cli: RunCli, write_tenant: WriteTenant, tenant_dir: Path,
                                                   tmp_path: Path, throwaway_key: ThrowawayKey) -> None:
    write_tenant(BASE)
    other = tmp_path / "more"
    other.mkdir()
    write_sops_config(other, throwaway_key.recipient)
    from tenancy.sops import encrypt_text

    text = BASE.replace("106540352242922", "106540352249999").replace(
        "6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f70", "7b2d4e1f-9e3c-4d8b-8f2a-3c4d5e6f7a81").replace("17010001", "17019999")
    (other / "acme.yaml").write_text(encrypt_text(text, "acme.yaml", other / ".sops.yaml"))
    r = cli("validate", str(tenant_dir), str(other))
    assert r.code == 1
    assert f"{other / 'acme.yaml'}:1:1: slug: slug acme is already used by tenant 'acme'" in r.out


# Nine levels of nine aliases: ~387 million nodes once expanded (a 337-byte file once took 21 s and 578 MB).
ALIAS_BOMB = BASE + "x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]\n" for i in range(1, 10))


def _timed(cli: RunCli, *args: str) -> tuple[CliResult, float]:
    start = time.perf_counter()
    r = cli(*args)
    return r, time.perf_counter() - start


def test_an_alias_bomb_is_refused_at_its_first_anchor_without_expanding(cli: RunCli, tenant_dir: Path) -> None:
    path = _raw(tenant_dir, ALIAS_BOMB)
    anchor_line = BASE.count("\n") + 1
    r, elapsed = _timed(cli, "--tenants", str(tenant_dir), "validate")
    assert r.code == 1
    assert f"{path}:{anchor_line}:5: anchors and aliases are not allowed in tenant files" in r.out
    # The process's start dominates (~1 s on a busy machine); expanding would take minutes and gigabytes.
    assert elapsed < 15, elapsed


def test_a_40_mb_display_name_is_refused_by_the_file_size_limit(cli: RunCli, tenant_dir: Path) -> None:
    path = _raw(tenant_dir, BASE.replace("Acme Stays", "A" * 40_000_000))
    r, elapsed = _timed(cli, "--tenants", str(tenant_dir), "validate")
    assert r.code == 1
    assert f"{path}:1:1: the file is too large (40,00" in r.out and "at most 262,144 bytes (256 KiB)" in r.out
    assert elapsed < 15, elapsed


def _outside_tenant(tmp_path: Path, throwaway_key: ThrowawayKey) -> Path:
    """A valid tenant file `bravo.yaml` in a directory beside the tenants directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    write_sops_config(outside, throwaway_key.recipient)
    from tenancy.sops import encrypt_text

    text = BASE.replace("slug: acme", "slug: bravo").replace("106540352242922", "106540352249999").replace(
        "6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f70", "7b2d4e1f-9e3c-4d8b-8f2a-3c4d5e6f7a81").replace("17010001", "17019999")
    target = outside / "bravo.yaml"
    target.write_text(encrypt_text(text, "bravo.yaml", outside / ".sops.yaml"))
    return target


def test_a_link_that_leaves_the_tenants_directory_is_refused(cli: RunCli, write_tenant: WriteTenant,
                                                               tenant_dir: Path, tmp_path: Path,
                                                               throwaway_key: ThrowawayKey) -> None:
    write_tenant(BASE)
    link = tenant_dir / "bravo.yaml"
    link.symlink_to(_outside_tenant(tmp_path, throwaway_key))
    for args in (("--tenants", str(tenant_dir), "validate"), ("validate", str(link))):
        r = cli(*args)
        assert r.code == 1, r.all
        assert f"{link}:1:1: a symbolic link that leads outside the tenants directory" in r.out
        assert "→ copy the file into the tenants directory" in r.out


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_link_to_the_process_environment_is_never_read(cli: RunCli, write_tenant: WriteTenant,
                                                         tenant_dir: Path) -> None:
    write_tenant(BASE)
    (tenant_dir / "env.yaml").symlink_to("/proc/self/environ")
    r = cli("--tenants", str(tenant_dir), "validate", env={"TENANTCTL_PROBE": "env-secret-value-1"})
    assert r.code == 1
    assert f"{tenant_dir / 'env.yaml'}:1:1: a symbolic link that leads outside the tenants directory" in r.out
    assert "env-secret-value-1" not in r.all and "TENANTCTL_PROBE" not in r.all


def test_a_link_that_stays_inside_the_tenants_directory_is_read(cli: RunCli, write_tenant: WriteTenant,
                                                                tenant_dir: Path) -> None:
    real = write_tenant(BASE)
    (tenant_dir / "archive").mkdir()
    moved = real.rename(tenant_dir / "archive" / "acme.yaml")
    (tenant_dir / "acme.yaml").symlink_to(Path("archive") / "acme.yaml")
    r = cli("--tenants", str(tenant_dir), "validate")
    assert r.code == 0, r.all
    assert moved.is_file()


def test_a_fifo_named_like_a_tenant_file_is_not_a_regular_file(cli: RunCli, write_tenant: WriteTenant,
                                                               tenant_dir: Path) -> None:
    write_tenant(BASE)
    fifo = tenant_dir / "fifo.yaml"
    os.mkfifo(fifo)
    for args in (("--tenants", str(tenant_dir), "validate"), ("validate", str(fifo))):
        r = cli(*args)
        assert r.code == 1, r.all
        assert f"{fifo}:1:1: not a regular file" in r.out, r.all
        assert "no such file" not in r.all
