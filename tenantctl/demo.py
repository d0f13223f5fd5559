"""`make demo`: the main job on embedded defaults, as a new user would run it step by step.

Example tenants with their public demo key, SQLite under .state/demo, the local sandbox for every provider.
Each step is a real `tenantctl` command in a subprocess, printed before it runs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

# (command, exit codes that are success for this step)
STEPS: list[tuple[list[str], set[int]]] = [
    (["validate"], {0}),
    (["list"], {0}),
]


def run(args: list[str], ok: set[int]) -> None:
    print(f"\n$ tenantctl {shlex.join(args)}", flush=True)
    code = subprocess.call([sys.executable, "-m", "tenantctl", *args], env=os.environ.copy())
    if code not in ok:
        print(f"demo step failed with exit code {code}", file=sys.stderr)
        sys.exit(code or 1)


def main() -> None:
    for args, ok in STEPS:
        run(args, ok)
    print("\ndemo finished: every step above ran against the example tenants.")


if __name__ == "__main__":
    main()
