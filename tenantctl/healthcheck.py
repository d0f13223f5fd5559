"""The container image's health check: `python -m tenantctl.healthcheck [URL]` (default: $TENANTCTL_HEALTH_URL).

Exit 0 when URL answers 200 within 2 s and, if the answer is the delivery worker's Prometheus /metrics, the
worker read the delivery queue from the database for this very request (`tenantctl_delivery_queue_up 1`);
exit 1 otherwise, with the reason on stderr (Docker keeps it: `docker inspect --format '{{json .State.Health}}'`).

What a pass proves (docs/deploy.md):
- `serve` (URL .../readyz): the server answers, its tenant files are loaded and its database answers a
  `SELECT 1` within TENANTCTL_READY_TIMEOUT_S (docs/operations.md).
- `deliver` (URL .../metrics, from `--metrics-port`/TENANTCTL_DELIVER_METRICS_PORT): the process lives, its
  metrics thread answers, and the database is readable with the worker's settings. Not that the delivery
  loop is making progress: a loop stuck elsewhere still passes; alert on
  `tenantctl_delivery_oldest_pending_age_seconds` for that.

Standard library only, and nothing of the project is imported: Docker starts it every 15 s.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.error
import urllib.request

QUEUE_UP = re.compile(rb"^tenantctl_delivery_queue_up\s+(\S+)\s*$", re.M)


def check(url: str, timeout: float = 2.0) -> str | None:
    """Why URL is not healthy, or None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310  # the operator's own URL
            status, body = resp.status, resp.read(1 << 20)
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return f"no answer ({type(e).__name__}: {e})"
    if status != 200:
        return f"HTTP {status}"
    up = QUEUE_UP.search(body)
    if up is not None and up.group(1) not in (b"1", b"1.0"):
        return "the delivery worker cannot read its database (tenantctl_delivery_queue_up 0)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else os.environ.get("TENANTCTL_HEALTH_URL", "")
    if not url:
        print("healthcheck: no URL: set TENANTCTL_HEALTH_URL", file=sys.stderr)
        return 1
    why = check(url)
    if why is not None:
        print(f"healthcheck: {url}: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
