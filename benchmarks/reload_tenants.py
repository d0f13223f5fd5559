"""Benchmark: a full load of N encrypted tenants against a reload (unchanged, and after one file changed).

    .venv/bin/python benchmarks/reload_tenants.py [--sizes 1000,10000] [--repeat 3]

The tenants are those of benchmarks/load_tenants.py (5 properties, 2 locks each, 2 teammates, 10 secrets).
One template is encrypted by the real sops binary; the N files are made from it by rewriting plain fields
only (slug, routing keys, lock IDs), which `mac_only_encrypted: true` leaves outside the MAC, so 10,000
files take seconds to make instead of minutes of sops. Cached under .state/bench/reload-N.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pyrage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tenancy.loader import TenantCache, load_tenants  # noqa: E402
from tenancy.model import encrypted_regex  # noqa: E402
from tenancy.sops import encrypt_text  # noqa: E402

TEMPLATE = """slug: SLUG
display_name: Tenant SLUG
status: active
hospitable:
  api_key: hosp-key-abcdef
  webhook_secret: hmac-0123456789abcdef0123456789abcdef
whatsapp:
  phone_number_id: "PHONE"
  business_account_id: "WABA"
  verify_token: verify-xyz
  access_token: meta-EAAG
nuki:
  api_token: nuki-token
properties:
""" + "".join(f"""  - key: p{p}
    name: Property {p}
    hospitable_property_id: HOSP{p}
    nuki_lock_ids: [LOCK{p}A, LOCK{p}B]
""" for p in range(5)) + """teammates:
  - key: a
    name: Cleaner
    role: cleaner
    properties: [p0, p1]
    access:
      keypad_code: "583947"
  - key: b
    name: Host
    role: host
    properties: [p2]
"""


def tenant_text(encrypted_template: str, i: int) -> str:
    # sops writes the template's "PHONE" unquoted: the digits must be quoted again to stay strings.
    text = encrypted_template.replace("SLUG", f"t{i:05d}").replace('"PHONE"', "PHONE").replace(
        "PHONE", f'"{10**14 + i}"').replace('"WABA"', "WABA").replace("WABA", f'"{2 * 10**14 + i}"')
    for p in range(5):
        lock = (i * 10 + p) * 2 + 100_000_000
        text = text.replace(f"HOSP{p}", f"{i:08x}-{p:04x}-4000-8000-{i * 10 + p:012x}")
        text = text.replace(f"LOCK{p}A", str(lock)).replace(f"LOCK{p}B", str(lock + 1))
    return text


TEMPLATE_FILE = ".template.enc"  # a dot file: never read as a tenant


def encrypted_template(d: Path) -> str:
    """The encrypted template the tenants of directory D (made by generate) were made from."""
    return (d / TEMPLATE_FILE).read_text()


def generate(n: int, key: pyrage.x25519.Identity) -> Path:
    d = REPO / ".state" / "bench" / f"reload-{n}"
    marker = d / ".complete"
    if marker.exists() and (d / "key.txt").read_text().strip() == str(key) and (d / TEMPLATE_FILE).exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.yaml"):
        f.unlink()
    (d / "key.txt").write_text(str(key) + "\n")
    cfg = d / ".sops.yaml"
    cfg.write_text(f"creation_rules:\n  - path_regex: ^[a-z0-9-]+\\.yaml$\n    age: {key.to_public()}\n"
                   f"    mac_only_encrypted: true\n    encrypted_regex: {encrypted_regex()}\n")
    template = encrypt_text(TEMPLATE, "template.yaml", cfg)
    (d / TEMPLATE_FILE).write_text(template)  # more tenants are made from it (benchmarks/serve_scale.py)
    for i in range(n):
        (d / f"t{i:05d}.yaml").write_text(tenant_text(template, i))
    marker.write_text("ok\n")
    return d


def timed_load(d: Path, cache: TenantCache, n: int) -> float:
    t0 = time.perf_counter()
    result = load_tenants([d], check_config=True, cache=cache)
    elapsed = time.perf_counter() - t0
    assert result.ok and len(result.tenants) == n, [f.text() for f in result.errors[:3]]
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    key_file = REPO / ".state" / "bench" / "bench.agekey"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        key_file.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    key = pyrage.x25519.Identity.from_str(key_file.read_text().strip())
    os.environ["SOPS_AGE_KEY_FILE"] = str(key_file)
    print(f"cpus={os.cpu_count()}  best of {args.repeat}")
    print(f"{'N':>6} {'full load':>11} {'reload, unchanged':>18} {'reload, 1 changed':>18} {'speed-up':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        d = generate(n, key)
        changed = d / "t00000.yaml"
        original = changed.read_text()
        full, same, one = [], [], []
        try:
            for r in range(args.repeat):
                cache = TenantCache()
                full.append(timed_load(d, cache, n))
                same.append(timed_load(d, cache, n))
                # A plain field edited, as a reviewer may: a new digest, so only this file is loaded again.
                changed.write_text(original.replace("display_name: Tenant", f"display_name: Tenant r{r}"))
                one.append(timed_load(d, cache, n))
        finally:
            changed.write_text(original)
        print(f"{n:>6} {min(full):>9.3f} s {min(same):>16.3f} s {min(one):>16.3f} s "
              f"{min(full) / min(one):>8.1f}x")


if __name__ == "__main__":
    main()
