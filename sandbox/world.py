"""The sandbox's whole state: one object per provider, one lock, JSON in and out.

Seeding is one call per fact, e.g. `world.meta.add_waba(token, waba_id, name)`,
`world.nuki.add_smartlock(token, 17, "Front door")`, `world.twon.add_device("gate", "admin", "pw")`.
Seed before serving, or under `with world.lock:` while a server runs.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

from sandbox.beds24 import Beds24State
from sandbox.calls import CallLog
from sandbox.common import Clock, default_clock
from sandbox.faults import FaultConfig, FaultInjector
from sandbox.hospitable import HospitableState
from sandbox.meta import MetaState
from sandbox.nuki import NukiState
from sandbox.serde import from_plain, to_plain
from sandbox.smtp import SmtpState
from sandbox.twon import TwoNState

PROVIDERS = ("meta", "nuki", "hospitable", "beds24", "2n")
_STATE_FIELDS = ("meta", "nuki", "hospitable", "beds24", "twon", "smtp")


@dataclasses.dataclass
class World:
    meta: MetaState = dataclasses.field(default_factory=MetaState)
    nuki: NukiState = dataclasses.field(default_factory=NukiState)
    hospitable: HospitableState = dataclasses.field(default_factory=HospitableState)
    beds24: Beds24State = dataclasses.field(default_factory=Beds24State)
    twon: TwoNState = dataclasses.field(default_factory=TwoNState)
    smtp: SmtpState = dataclasses.field(default_factory=SmtpState)
    # Runtime only, never serialised: the lock every request holds, the call log, served-mode faults.
    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock, repr=False, compare=False)
    calls: CallLog = dataclasses.field(default_factory=CallLog, repr=False, compare=False)
    clock: Clock = dataclasses.field(default=default_clock, repr=False, compare=False)
    _fault_injector: FaultInjector | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.set_clock(self.clock)

    def set_clock(self, clock: Clock) -> None:
        """Inject the time source (rate-limit windows, Nuki's delayed writes, timestamps)."""
        self.clock = clock
        for state in (self.meta, self.nuki, self.beds24):
            state._clock = clock

    # Serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        with self.lock:
            return {name: to_plain(getattr(self, name)) for name in _STATE_FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> World:
        unknown = set(data) - set(_STATE_FIELDS)
        if unknown:
            raise ValueError(f"unknown providers in state: {sorted(unknown)}")
        classes: dict[str, type[Any]] = {"meta": MetaState, "nuki": NukiState, "hospitable": HospitableState,
                                          "beds24": Beds24State, "twon": TwoNState, "smtp": SmtpState}
        kwargs = {name: from_plain(classes[name], value) for name, value in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> World:
        return cls.from_dict(json.loads(text))

    def replace_with(self, other: World) -> None:
        """Swap in another world's state, keeping this world's lock, call log and clock."""
        with self.lock:
            for name in _STATE_FIELDS:
                setattr(self, name, getattr(other, name))
            self.set_clock(self.clock)

    def reset(self) -> None:
        self.replace_with(World())

    # Served-mode faults ----------------------------------------------------------------------------
    @property
    def faults(self) -> FaultConfig | None:
        return None if self._fault_injector is None else self._fault_injector.config

    def set_faults(self, config: FaultConfig | None) -> None:
        self._fault_injector = None if config is None or config.rate <= 0 else FaultInjector(config)

    @property
    def fault_injector(self) -> FaultInjector | None:
        return self._fault_injector
