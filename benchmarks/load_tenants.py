"""Benchmark: load + validate N encrypted tenants, next to serial `sops decrypt` of the same files.

    .venv/bin/python benchmarks/load_tenants.py [--sizes 10,100,1000] [--sops-sample 100]

Generates N tenant files (5 properties, 2 locks each, 2 teammates; 10 secrets) encrypted by the real sops
binary to a throwaway age key, cached under .state/bench/tenants-N. Target: 1,000 tenants < 5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyrage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tenancy.loader import load_tenants  # noqa: E402
from tenancy.model import encrypted_regex  # noqa: E402
from tenancy.sops import binary_path, encrypt_text  # noqa: E402


def tenant_yaml(i: int) -> str:
    props = "".join(
        f"""  - key: p{p}
    name: Property {i}-{p}
    hospitable_property_id: {i:08x}-{p:04x}-4000-8000-{i * 10 + p:012x}
    nuki_lock_ids: [{(i * 10 + p) * 2 + 100_000_000}, {(i * 10 + p) * 2 + 100_000_001}]
""" for p in range(5))
    return f"""slug: t{i:05d}
display_name: Tenant {i}
status: active
hospitable:
  api_key: hosp-key-{i:05d}-abcdef
  webhook_secret: hmac-{i:05d}-0123456789abcdef0123456789abcdef
whatsapp:
  phone_number_id: "{10**14 + i}"
  business_account_id: "{2 * 10**14 + i}"
  verify_token: verify-{i:05d}-xyz
  access_token: meta-{i:05d}-EAAG
nuki:
  api_token: nuki-{i:05d}-token
properties:
{props}teammates:
  - key: a
    name: Cleaner {i}
    role: cleaner
    properties: [p0, p1]
    access:
      keypad_code: "58394{1 + i % 9}"
  - key: b
    name: Host {i}
    role: host
    properties: [p2]
"""


def generate(n: int, key: pyrage.x25519.Identity) -> Path:
    d = REPO / ".state" / "bench" / f"tenants-{n}"
    marker = d / ".complete"
    if marker.exists() and (d / "key.txt").read_text().strip() == str(key):
        return d
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.yaml"):
        f.unlink()
    (d / "key.txt").write_text(str(key) + "\n")
    cfg = d / ".sops.yaml"
    cfg.write_text(f"creation_rules:\n  - path_regex: ^[a-z0-9-]+\\.yaml$\n    age: {key.to_public()}\n"
                   f"    mac_only_encrypted: true\n    encrypted_regex: {encrypted_regex()}\n")

    def one(i: int) -> None:
        (d / f"t{i:05d}.yaml").write_text(encrypt_text(tenant_yaml(i), f"t{i:05d}.yaml", cfg))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(one, range(n)))
    marker.write_text("ok\n")
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--sops-sample", type=int, default=100,
                    help="files decrypted serially with the binary to estimate its per-file cost")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    key_file = REPO / ".state" / "bench" / "bench.agekey"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        key_file.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    key = pyrage.x25519.Identity.from_str(key_file.read_text().strip())
    os.environ["SOPS_AGE_KEY_FILE"] = str(key_file)
    print(f"cpus={os.cpu_count()}  sops={binary_path()}")
    print(f"{'N':>6} {f'load+validate (best of {args.repeat})':>28} {'per tenant':>11} "
          f"{'serial sops decrypt':>20} {'speed-up':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        d = generate(n, key)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = load_tenants([d], check_config=True)
            times.append(time.perf_counter() - t0)
            assert result.ok and len(result.tenants) == n, [f.text() for f in result.errors[:3]]
        best = min(times)
        files = sorted(f for f in d.glob("*.yaml") if not f.name.startswith("."))[: args.sops_sample]
        per = []
        for f in files:
            t0 = time.perf_counter()
            subprocess.run([binary_path(), "decrypt", "--output-type", "json", str(f)], check=True,
                           capture_output=True)
            per.append(time.perf_counter() - t0)
        sops_total = statistics.mean(per) * n
        est = "" if len(files) == n else " (est.)"
        print(f"{n:>6} {best:>26.3f} s {best / n * 1000:>8.2f} ms {sops_total:>12.2f} s{est:<6} "
              f"{sops_total / best:>8.1f}x")


if __name__ == "__main__":
    main()
