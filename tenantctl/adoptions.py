"""Adoption intents: addresses of foreign live resources the operator asked tenantctl to take over.

`tenantctl adopt ADDRESS` checks that the resource matches what the tenant file declares and records its
address here; every later `plan` passes the recorded addresses to the providers (ProviderContext.adopt),
which then plan the adoption (an UPDATE marked `adoption`); `apply` performs it like any planned change.
So an adoption is always shown by a plan before anything is written, and a saved plan carries it.

Stored as JSON in the local state directory (TENANTCTL_STATE_DIR), `{"adopt": ["<address>", ...]}`,
written atomically. An intent whose resource is no longer foreign (adopted, or deleted by hand) matches
nothing and is harmless; `adopt --cancel ADDRESS` removes one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from reconciler.providers.base import ProviderContext

FILE_NAME = "adoptions.json"


def _path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def load(state_dir: Path) -> frozenset[str]:
    """The recorded addresses; none when the file does not exist. A damaged file raises ValueError."""
    path = _path(state_dir)
    if not path.is_file():
        return frozenset()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return frozenset(str(a) for a in data["adopt"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not an adoption list ({e}); remove the file to start over") from None


def _save(state_dir: Path, addresses: frozenset[str]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = _path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps({"adopt": sorted(addresses)}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, _path(state_dir))


def add(state_dir: Path, address: str) -> None:
    _save(state_dir, load(state_dir) | {address})


def remove(state_dir: Path, address: str) -> bool:
    """Forget one intent; False when it was not recorded."""
    current = load(state_dir)
    if address not in current:
        return False
    _save(state_dir, current - {address})
    return True


def with_adoptions(ctx: ProviderContext, state_dir: Path) -> ProviderContext:
    """`ctx` with the recorded adoption intents, for every plan the CLI makes."""
    return dataclasses.replace(ctx, adopt=ctx.adopt | load(state_dir))
