"""Injected faults: which request fails, and how.

The decision for a request is a pure function of (seed, provider, method, path, how many times that same
request was seen before), so a run is reproducible even when a thread pool interleaves the calls
differently. Every kind but "lost-response" fails *before* the emulator touches its state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import Counter
from typing import Any

KINDS = frozenset({"429", "500", "timeout", "reset", "lost-response"})


@dataclasses.dataclass(frozen=True)
class FaultConfig:
    """`rate` is the probability per request; `providers` None means every provider."""

    rate: float = 0.0
    kinds: frozenset[str] = frozenset({"429", "500", "timeout", "reset"})
    retry_after_s: float = 1.0
    seed: int = 0
    providers: frozenset[str] | None = None
    # Served mode only: how long a "timeout" request hangs before the server gives up on it.
    served_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        unknown = set(self.kinds) - KINDS
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if not self.kinds and self.rate > 0:
            raise ValueError("a positive rate needs at least one kind")
        # Accept any iterable from callers and JSON, keep frozensets inside.
        object.__setattr__(self, "kinds", frozenset(self.kinds))
        if self.providers is not None:
            object.__setattr__(self, "providers", frozenset(self.providers))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "kinds": sorted(self.kinds),
            "retry_after_s": self.retry_after_s,
            "seed": self.seed,
            "providers": None if self.providers is None else sorted(self.providers),
            "served_timeout_s": self.served_timeout_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        kwargs = dict(data)
        if "kinds" in kwargs:
            kwargs["kinds"] = frozenset(kwargs["kinds"])
        if kwargs.get("providers") is not None:
            kwargs["providers"] = frozenset(kwargs["providers"])
        return cls(**kwargs)


class FaultInjector:
    """Decides, per request, whether and how to fail it. Thread-safe."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._seen: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def decide(self, provider: str, method: str, path: str) -> str | None:
        cfg = self.config
        if cfg.rate <= 0.0 or (cfg.providers is not None and provider not in cfg.providers):
            return None
        key = (provider, method.upper(), path)
        with self._lock:
            n = self._seen[key]
            self._seen[key] = n + 1
        digest = hashlib.sha256(f"{cfg.seed}|{provider}|{key[1]}|{path}|{n}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        if draw >= cfg.rate:
            return None
        kinds = sorted(cfg.kinds)
        return kinds[int.from_bytes(digest[8:12], "big") % len(kinds)]
