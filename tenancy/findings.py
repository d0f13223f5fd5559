"""Findings: one problem in one file, located to the line, with what to do about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int
    column: int
    field: str  # dotted path such as `properties[1].nuki_lock_ids[0]`, or "" for the whole file
    message: str  # never contains a secret value
    hint: str = ""
    rule: str = ""  # stable machine name, e.g. `plaintext-secret`
    severity: Severity = Severity.ERROR

    def text(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        head = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return f"{head}\n    → {self.hint}" if self.hint else head

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def field_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
