"""Scrubbing one log line against N registered secrets: the Redactor's prefix index against one search per
secret (what it did before), side by side in one run.

    .venv/bin/python benchmarks/redact.py [--sizes 10,128,129,1000,100000] [--lines 2000]

A server with 10,000 tenants holds ~100,000 secrets (10 each), and every log line, each request's access-log
line included, is scrubbed of all of them. Secrets are random (token_urlsafe(32)); half carry a common
prefix (`whsec_`), as a provider's secrets do. Reported per size: microseconds per line for each way, the
ratio, and the time to register the N secrets.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tenancy.redact import MASK, Redactor

LINE = '203.0.113.7 "POST /api/webhooks/hospitable/t/t00042 HTTP/1.1" 200 15 0.71ms "Hospitable-Webhooks/2.0"'


def per_secret(values: list[str], text: str) -> str:
    """The former way: each secret searched for in the text, longest first."""
    for v in values:
        if v in text:
            text = text.replace(v, MASK)
    return text


def per_line_us(scrub: object, lines: int) -> float:
    started = time.perf_counter()
    for _ in range(lines):
        scrub(LINE)  # type: ignore[operator]
    return (time.perf_counter() - started) / lines * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,128,129,1000,100000")
    ap.add_argument("--lines", type=int, default=2000)
    args = ap.parse_args()
    print(f"{'secrets':>8} {'index us/line':>14} {'per-secret us/line':>19} {'ratio':>8} {'register s':>11}")
    for n in (int(s) for s in args.sizes.split(",")):
        values = [("whsec_" if i % 2 else "") + secrets.token_urlsafe(32) for i in range(n)]
        r = Redactor()
        started = time.perf_counter()
        r.add(*values)
        register_s = time.perf_counter() - started
        ordered = sorted(values, key=len, reverse=True)
        assert r.scrub(f"x {values[-1]} y") == f"x {MASK} y"
        # Fewer lines for the slow way at large sizes: it takes ~20 ms a line at 100,000.
        slow_lines = max(5, min(args.lines, 2_000_000 // n))
        index_us = per_line_us(r.scrub, args.lines)
        slow_us = per_line_us(lambda t, by=ordered: per_secret(by, t), slow_lines)
        print(f"{n:>8} {index_us:>14.1f} {slow_us:>19.1f} {slow_us / index_us:>7.1f}x {register_s:>11.3f}")


if __name__ == "__main__":
    main()
