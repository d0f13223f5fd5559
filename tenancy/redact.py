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


# Up to this many values, scrub looks for each in the text; beyond, it looks each text position up in an
# index of the values' first _MIN_LEN characters. A server with 10,000 tenants holds ~100,000 secrets: one
# `in` per secret cost ~20 ms per log line (every access-log line of every request), the index ~15 us
# (benchmarks/redact.py).
_DIRECT_MAX = 128


class Redactor:
    """Registered secret values, masked wherever they occur in a text (``scrub``).

    Every occurrence of every value is masked, overlapping ones included: the text spans they cover are
    merged and each merged span becomes one MASK. ``add`` is incremental (no index rebuilt), so a reload
    that registers one new tenant's secrets costs as little as that tenant. Thread-safe.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._listed: tuple[str, ...] = ()  # replaced, never mutated: scrub reads it without the lock
        self._by_prefix: dict[str, str | _Bucket] = {}  # the values by their first _MIN_LEN characters

    def add(self, *values: str | SecretStr | None) -> None:
        with self._lock:
            added: list[str] = []
            for v in values:
                raw = v.get_secret_value() if isinstance(v, SecretStr) else v
                if raw and len(raw) >= _MIN_LEN and raw != PLACEHOLDER and raw not in self._values:
                    self._values.add(raw)
                    added.append(raw)
                    head = raw[:_MIN_LEN]
                    same = self._by_prefix.get(head)
                    if same is None:  # the common case: one value per prefix, kept as it is
                        self._by_prefix[head] = raw
                    elif isinstance(same, str):
                        self._by_prefix[head] = _Bucket.of(_MIN_LEN, same, raw)
                    else:
                        same.add(raw)
            if added and len(self._values) <= _DIRECT_MAX:
                self._listed = (*self._listed, *added)

    def add_model(self, model: BaseModel) -> None:
        self.add(*secret_values(model))

    def scrub(self, text: str) -> str:
        spans = self._spans_direct(text) if len(self._values) <= _DIRECT_MAX else self._spans_indexed(text)
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        done = 0  # the text before this is written out (or masked)
        span_start, span_end = spans[0]
        for start, end in spans[1:]:
            if start < span_end:  # overlapping: one span
                span_end = max(span_end, end)
                continue
            out += (text[done:span_start], MASK)
            done, span_start, span_end = span_end, start, end
        out += (text[done:span_start], MASK, text[span_end:])
        return "".join(out)

    def _spans_direct(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        listed = self._listed
        for v in listed:  # most texts hold no secret: a plain search first
            if v in text:
                break
        else:
            return spans
        for v in listed:
            at = text.find(v)
            while at >= 0:
                spans.append((at, at + len(v)))
                at = text.find(v, at + 1)
        return spans

    def _spans_indexed(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        index = self._by_prefix
        for at in range(len(text) - _MIN_LEN + 1):
            bucket = index.get(text[at:at + _MIN_LEN])
            if bucket is None:
                continue
            if isinstance(bucket, str):
                if text.startswith(bucket, at):
                    spans.append((at, at + len(bucket)))
            else:
                length = bucket.longest(text, at)
                if length:
                    spans.append((at, at + length))
        return spans


class _Bucket:
    """The values that share their first ``depth`` characters (all of a provider's secrets may share a
    prefix, `whsec_` say, and come in many lengths): those that end within the next _MIN_LEN characters by
    length, the longer ones by their next _MIN_LEN characters, in nested buckets (a value alone there is
    kept as it is). A text position costs one lookup per _MIN_LEN characters it shares with some value, and
    at most _MIN_LEN lengths tried per bucket it reaches, however many lengths the values come in: text
    from outside that repeats a known prefix cannot make a scrub slow. Written under the Redactor's lock;
    read without it: ``lengths`` is replaced whole, a bucket is complete before it is linked in, and a
    set's or dict's membership test is atomic."""

    __slots__ = ("depth", "lengths", "longer", "values")

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.lengths: tuple[int, ...] = ()  # longest first
        self.values: dict[int, set[str]] = {}
        self.longer: dict[str, str | _Bucket] = {}  # by the _MIN_LEN characters after depth

    @classmethod
    def of(cls, depth: int, first: str, second: str) -> _Bucket:
        bucket = cls(depth)
        bucket.add(first)
        bucket.add(second)
        return bucket

    def add(self, value: str) -> None:
        if len(value) < self.depth + _MIN_LEN:
            same = self.values.get(len(value))
            if same is None:
                self.values[len(value)] = {value}
                self.lengths = tuple(sorted((*self.lengths, len(value)), reverse=True))
            else:
                same.add(value)
            return
        key = value[self.depth:self.depth + _MIN_LEN]
        next_ = self.longer.get(key)
        if next_ is None:
            self.longer[key] = value
        elif isinstance(next_, str):
            if next_ != value:
                self.longer[key] = _Bucket.of(self.depth + _MIN_LEN, next_, value)
        else:
            next_.add(value)

    def longest(self, text: str, at: int) -> int:
        """The length of the longest value found at TEXT[AT:] (which starts with ``depth`` of its
        characters), 0 when none is."""
        next_ = self.longer.get(text[at + self.depth:at + self.depth + _MIN_LEN])
        if isinstance(next_, str):
            if text.startswith(next_, at):
                return len(next_)
        elif next_ is not None:
            found = next_.longest(text, at)
            if found:
                return found  # longer than any value ending here
        for length in self.lengths:  # longest first: the longest one starting here covers the others
            if text[at:at + length] in self.values[length]:
                return length
        return 0


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
