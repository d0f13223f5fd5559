"""Scrub secret values from text: every decrypted value, by value, wherever it would be printed or logged.

SecretStr keeps secrets out of reprs; this catches the rest (a token echoed inside a provider's error
message, an exception string, a URL). Registered values are held only in memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from pydantic import BaseModel, SecretStr

from tenancy.model import PLACEHOLDER

MASK = "(sensitive)"
_MIN_LEN = 6  # shorter values (e.g. a port) would mask ordinary text; no real secret is that short


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._ordered: list[str] = []
        self._dirty = False

    def add(self, *values: str | SecretStr | None) -> None:
        with self._lock:
            for v in values:
                raw = v.get_secret_value() if isinstance(v, SecretStr) else v
                if raw and len(raw) >= _MIN_LEN and raw != PLACEHOLDER and raw not in self._values:
                    self._values.add(raw)
                    self._dirty = True

    def add_model(self, model: BaseModel) -> None:
        self.add(*secret_values(model))

    def scrub(self, text: str) -> str:
        if self._dirty:
            with self._lock:
                # Longest first, so a secret containing another is masked whole.
                self._ordered = sorted(self._values, key=len, reverse=True)
                self._dirty = False
        for v in self._ordered:
            if v in text:
                text = text.replace(v, MASK)
        return text


# Field values that hold nothing further: not walked into (a tenant has ~100 of them, ~10 secrets).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def secret_values(node: object) -> Iterable[SecretStr]:
    if isinstance(node, SecretStr):
        yield node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            value = getattr(node, name)
            if type(value) not in _PLAIN:
                yield from secret_values(value)
    elif isinstance(node, list | tuple):
        for v in node:
            if type(v) not in _PLAIN:
                yield from secret_values(v)


REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """Logging filter: renders the message, scrubs it, and freezes the result into the record."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._redactor.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        record.msg, record.args = self._redactor.scrub(msg), None
        return True
