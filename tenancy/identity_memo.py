"""A memo of values computed from objects, by the objects' identity, kept from one round to the next.

A reload (the server's SIGHUP) sees the same Tenant objects again for every file whose bytes did not
change (tenancy.loader.TenantCache), so what was derived from each (its routing keys, its routes) can be
reused instead of derived again for all 10,000. Identity, not equality: a Tenant is not hashable, and an
object equal to an old one is still a new load. Only the objects of the latest round are kept, so nothing
outlives the tenants it was computed from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityMemo(Generic[K, V]):
    """``map(objects)`` = ``[compute(o) for o in objects]``, reusing the previous round's value of each
    object passed then too (the very same object). Thread-safe."""

    def __init__(self, compute: Callable[[K], V]) -> None:
        self._compute = compute
        self._kept: dict[int, tuple[K, V]] = {}  # id → (the object, which keeps its id unique; its value)
        self._lock = threading.Lock()

    def map(self, objects: Sequence[K]) -> list[V]:
        with self._lock:
            previous, kept = self._kept, {}
            values: list[V] = []
            for obj in objects:
                hit = previous.get(id(obj))
                value = hit[1] if hit is not None and hit[0] is obj else self._compute(obj)
                kept[id(obj)] = (obj, value)
                values.append(value)
            self._kept = kept
            return values
